"""Rule test cases (product.md §5): read a `*.case.toml` into a checked `Case`.

Every key is checked against the config: an unknown key, a wrong type, a field the
store does not have, a missing token file are a `CaseError` naming the file and the key
(`tests/x.case.toml: given.user.colour: unknown field; …`), never a traceback.

Choices where the spec is silent (docs/testing.md lists them all): `at` may be a TOML
date-time or an ISO 8601 string, but must carry a zone; an inline `[sample]` is an
unsigned sample like any other and needs `unsigned = true`; `request_id` and `nonce`
are accepted as `apply --request-id` / `--nonce`; a case without `[expect]` loads (it
fails, and `--update` records the current result); `""` in `[expect.user]` means "no
value".
"""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass, field
from datetime import date, datetime, time
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeAlias

from engine.config import Config, load_toml, toml_problem
from engine.result import OUTCOMES
from engine.sample import describe_value, parse_sample_text
from engine.store.values import fold
from engine.token import REASON_CODES, TokenRejected
from rules.plan import Scalar

CASE_SUFFIX = ".case.toml"
TOP_KEYS = ("connection", "token", "sample", "at", "unsigned", "request_id", "nonce")
_ALL_TOP = (*TOP_KEYS, "given", "expect")
EXPECT_KEYS = ("outcome", "reason", "message_has", "user")

# An expected or stored value: a scalar, or a set as its sorted distinct values.
Value: TypeAlias = Scalar | tuple[str, ...]


class CaseError(Exception):
    """A case file cannot be used: the message names the file, the key and why."""

    def __init__(self, path: str, key: str | None, message: str) -> None:
        self.path = path
        self.key = key
        self.detail = message
        super().__init__(f"{path}: {key}: {message}" if key else f"{path}: {message}")


@dataclass(frozen=True, slots=True)
class Account:
    """An account to store before the run: scalar fields, and set members by source
    (`members` take the case connection's source for `[given.user]`, `local` for
    `[[given.accounts]]`; `local` is always `local`)."""

    fields: dict[str, Scalar] = field(default_factory=dict)
    members: dict[str, tuple[str, ...]] = field(default_factory=dict)
    local: dict[str, tuple[str, ...]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Expect:
    """The verdict a case asks for; `user` maps field names to expected values."""

    outcome: str
    reason: str | None = None
    message_has: str | None = None
    user: dict[str, Value] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Case:
    """One checked case file, ready to run."""

    path: Path
    label: str  # the path as shown to people
    name: str
    connection: str
    token: bytes
    at: datetime | None = None
    unsigned: bool = False
    request_id: str | None = None
    nonce: str | None = None
    user: Account | None = None
    accounts: tuple[Account, ...] = ()
    expect: Expect | None = None


def case_name(path: Path) -> str:
    """A case's name: its file name without `.case.toml`."""
    name = path.name
    return name[: -len(CASE_SUFFIX)] if name.endswith(CASE_SUFFIX) else path.stem


def load_case(path: Path, config: Config, label: str | None = None) -> Case:
    """Read and check one case file against `config`; raises CaseError."""
    label = label or str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CaseError(label, None, f"cannot read: {exc}") from None
    try:
        data = load_toml(text)
    except (ValueError, RecursionError) as exc:  # TOMLDecodeError, over-long integers, nesting
        raise CaseError(label, None, f"invalid TOML: {toml_problem(exc)}") from None
    return _Reader(label, path, config).case(data)


class _Reader:
    """Checks one parsed case table; every error goes through `fail`."""

    def __init__(self, label: str, path: Path, config: Config) -> None:
        self.label = label
        self.path = path
        self.config = config

    def fail(self, key: str | None, message: str) -> CaseError:
        return CaseError(self.label, key, message)

    def keys(self, table: dict[str, Any], prefix: str, allowed: tuple[str, ...]) -> None:
        for key in table:
            if key not in allowed:
                where = f"{prefix}.{key}" if prefix else key
                hint = _did_you_mean(key, allowed)
                raise self.fail(where, f"unknown key{hint}; expected one of {', '.join(allowed)}")

    def text(self, table: dict[str, Any], key: str, where: str) -> str | None:
        value = table.get(key)
        if value is not None and not isinstance(value, str):
            raise self.fail(where, f"expected a string, got {describe_value(value)}")
        return value

    def table(self, table: dict[str, Any], key: str, where: str) -> dict[str, Any] | None:
        value = table.get(key)
        if value is not None and not isinstance(value, dict):
            raise self.fail(where, f"expected a table, got {describe_value(value)}")
        return value

    def case(self, data: dict[str, Any]) -> Case:
        self.keys(data, "", _ALL_TOP)
        connection = self.text(data, "connection", "connection")
        if connection is None:
            raise self.fail("connection", "missing (the id of a connection in the config)")
        if connection not in self.config.connections:
            known = ", ".join(sorted(self.config.connections)) or "none"
            raise self.fail("connection", f"unknown connection {connection!r} (known: {known})")
        unsigned = data.get("unsigned", False)
        if not isinstance(unsigned, bool):
            raise self.fail("unsigned", f"expected true or false, got {describe_value(unsigned)}")
        given = self.table(data, "given", "given") or {}
        self.keys(given, "given", ("user", "accounts"))
        user_table = self.table(given, "user", "given.user")
        accounts = given.get("accounts", [])
        if not isinstance(accounts, list) or not all(isinstance(a, dict) for a in accounts):
            raise self.fail("given.accounts", "expected an array of tables ([[given.accounts]])")
        user = None if user_table is None else self.account(user_table, "given.user", True)
        others = tuple(
            self.account(a, f"given.accounts[{i}]", False) for i, a in enumerate(accounts)
        )
        self.unique_usernames(user, others)
        expect_table = self.table(data, "expect", "expect")
        return Case(
            path=self.path,
            label=self.label,
            name=case_name(self.path),
            connection=connection,
            token=self.token(data),
            at=self.at(data.get("at")),
            unsigned=unsigned,
            request_id=self.text(data, "request_id", "request_id"),
            nonce=self.text(data, "nonce", "nonce"),
            user=user,
            accounts=others,
            expect=None if expect_table is None else self.expect(expect_table),
        )

    def token(self, data: dict[str, Any]) -> bytes:
        token = self.text(data, "token", "token")
        sample = self.table(data, "sample", "sample")
        if (token is None) == (sample is None):
            raise self.fail(
                "token",
                "give either token (a token file, relative to the case) or an inline "
                "[sample] table" + (", not both" if token is not None else ""),
            )
        if sample is not None:
            text = toml_text(sample)
            try:
                parse_sample_text(text)
            except TokenRejected as exc:
                detail = exc.message.removeprefix("sample: ")
                raise self.fail("sample", detail) from None
            return text.encode("utf-8")
        assert token is not None
        file = self.path.parent / token
        try:
            return file.read_bytes()
        except FileNotFoundError:
            raise self.fail("token", f"no such file {token!r} (relative to the case)") from None
        except OSError as exc:
            raise self.fail("token", f"cannot read {token!r}: {exc.strerror}") from None
        except ValueError:  # a NUL in the path
            raise self.fail("token", f"not a file name: {token!r}") from None

    def at(self, value: object) -> datetime | None:
        if value is None:
            return None
        if isinstance(value, str):
            try:
                value = datetime.fromisoformat(value.strip())
            except ValueError:
                raise self.fail(
                    "at", f"expected an ISO 8601 time such as 2024-05-01T12:00:00Z, got {value!r}"
                ) from None
        if not isinstance(value, datetime):
            raise self.fail("at", f"expected a date-time, got {describe_value(value)}")
        if value.tzinfo is None:
            raise self.fail("at", "add a zone (Z or an offset): a time without one is ambiguous")
        return value

    def account(self, table: dict[str, Any], where: str, linked: bool) -> Account:
        fields: dict[str, Scalar] = {}
        members: dict[str, tuple[str, ...]] = {}
        local: dict[str, tuple[str, ...]] = {}
        for name, value in table.items():
            if name == "local" and linked and isinstance(value, dict):
                for set_name, values in value.items():
                    key = f"{where}.local.{set_name}"
                    if self.config.fields.get(set_name) != "set":
                        raise self.fail(key, f"expected a set field ({self.set_names()})")
                    local[set_name] = self.members(values, key)
                continue
            kind = self.kind(name, f"{where}.{name}")
            if kind == "set":
                members[name] = self.members(value, f"{where}.{name}")
            else:
                fields[name] = self.scalar(value, kind, f"{where}.{name}")
        return Account(fields, members, local)

    def kind(self, name: str, where: str) -> str:
        kind = self.config.fields.get(name)
        if kind is None:
            known = ", ".join(self.config.fields)
            hint = _did_you_mean(name, tuple(self.config.fields))
            raise self.fail(where, f"unknown field{hint}; the store's fields are {known}")
        return kind

    def set_names(self) -> str:
        return ", ".join(n for n, k in self.config.fields.items() if k == "set")

    def members(self, value: object, where: str) -> tuple[str, ...]:
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self.fail(where, f"expected a list of strings, got {describe_value(value)}")
        return tuple(sorted(set(value)))

    def scalar(self, value: object, kind: str, where: str) -> Scalar:
        if kind == "bool":
            if not isinstance(value, bool):
                raise self.fail(where, f"expected true or false, got {describe_value(value)}")
            return value
        if kind == "number":
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise self.fail(where, f"expected a number, got {describe_value(value)}")
            return value if isinstance(value, int) else Decimal(str(value))
        if not isinstance(value, str):
            raise self.fail(where, f"expected a string, got {describe_value(value)}")
        return value

    def unique_usernames(self, user: Account | None, others: tuple[Account, ...]) -> None:
        seen: set[str] = set()
        accounts = [("given.user", user)] if user else []
        accounts += [(f"given.accounts[{i}]", a) for i, a in enumerate(others)]
        for where, account in accounts:
            name = account.fields.get("username")
            if isinstance(name, str):
                key = fold(name)
                if key in seen:
                    raise self.fail(f"{where}.username", f"{name!r} is given twice")
                seen.add(key)

    def expect(self, table: dict[str, Any]) -> Expect:
        self.keys(table, "expect", EXPECT_KEYS)
        outcome = self.text(table, "outcome", "expect.outcome")
        if outcome is None:
            raise self.fail("expect.outcome", f"missing; one of {', '.join(OUTCOMES)}")
        if outcome not in OUTCOMES:
            raise self.fail("expect.outcome", f"expected one of {', '.join(OUTCOMES)}")
        reason = self.text(table, "reason", "expect.reason")
        if reason is not None and reason not in REASON_CODES:
            raise self.fail("expect.reason", f"expected a reason code: {', '.join(REASON_CODES)}")
        if reason is not None and outcome != "rejected":
            raise self.fail("expect.reason", "only a rejected outcome has a reason")
        expected: dict[str, Value] = {}
        user = self.table(table, "user", "expect.user") or {}
        for name, value in user.items():
            where = f"expect.user.{name}"
            kind = self.kind(name, where)
            if kind == "set":
                expected[name] = self.members(value, where)
            elif value == "":
                expected[name] = None  # "no value", whatever the field's type
            else:
                expected[name] = self.scalar(value, kind, where)
        message_has = self.text(table, "message_has", "expect.message_has")
        return Expect(outcome, reason, message_has, expected)


def toml_text(table: dict[str, Any]) -> str:
    """TOML text for a table read by tomllib (an inline `[sample]`, handed to intake as
    a sample token). Much faster than tomlkit, and only ever fed tomllib's own types."""
    return "".join(f"{_toml_key(k)} = {_toml_value(v)}\n" for k, v in table.items())


def _toml_key(key: str) -> str:
    return _toml_string(key)


def _toml_string(text: str) -> str:
    # A JSON string is a TOML basic string, except that TOML also forbids a raw DEL.
    return json.dumps(text, ensure_ascii=False).replace("\x7f", "\\u007f")


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return _toml_string(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value)  # inf, -inf and nan are TOML too
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        items = ", ".join(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in value.items())
        return "{" + items + "}"
    raise TypeError(f"not a TOML value: {value!r}")


def _did_you_mean(name: str, known: tuple[str, ...]) -> str:
    close = difflib.get_close_matches(name, known, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""
