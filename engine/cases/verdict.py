"""A case's verdict: compare what `[expect]` asks with what the run did, as `Problem`s.

Each problem is one key of `[expect]` with its expected and actual value and, where the
result's trace says, the rules line that produced the actual value: a failing case reads
as a diff a person can act on, without re-running `explain`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Literal

from engine.cases.model import Case, Expect, Value
from engine.result import Result
from engine.store import StoredUser
from rules.plan import TraceEntry

Status = Literal["passed", "failed", "error"]


@dataclass(slots=True)
class Problem:
    """One difference (or, for an error, what is wrong with the case file)."""

    key: str | None  # "outcome", "reason", "message_has", "user.FIELD"; the broken key
    message: str  # one line
    expected: Any = None
    actual: Any = None
    trace: str | None = None  # where the actual value came from
    detail: str | None = None  # e.g. the members missing from / unexpected in a set

    def lines(self) -> list[str]:
        """The problem as an indented diff block."""
        if self.key is None or (self.expected is None and self.actual is None):
            return [f"  {line}" for line in self.message.splitlines()]
        out = [
            f"  {self.key}:",
            f"    - expected: {show(self.expected)}",
            f"    + actual:   {show(self.actual)}",
        ]
        if self.detail:
            out.append(f"      {self.detail}")
        if self.trace:
            out.append(f"      ← {self.trace}")
        return out

    def to_json(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "message": self.message,
            "expected": jsonable(self.expected),
            "actual": jsonable(self.actual),
            "trace": self.trace,
        }


@dataclass(slots=True)
class Actual:
    """What a run did, kept for `--update`: the result and the account read after it."""

    outcome: str
    reason: str | None
    message: str | None
    user: dict[str, Value] | None  # every field; sets as sorted tuples
    assigned: list[str]  # fields the rules set, in trace order


@dataclass(slots=True)
class CaseResult:
    """One case's status, problems and timing (picklable: it crosses processes)."""

    name: str
    path: str
    status: Status
    problems: list[Problem] = field(default_factory=list)
    seconds: float = 0.0
    actual: Actual | None = None
    file: str = ""  # the case file's absolute path (for --update)

    def diff_lines(self) -> list[str]:
        return [line for p in self.problems for line in p.lines()]

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "path": self.path,
            "status": self.status,
            "problems": [p.to_json() for p in self.problems],
        }


def account_values(user: StoredUser | None, fields: dict[str, str]) -> dict[str, Value] | None:
    """An account as `[expect.user]` sees it: every field, sets as sorted distinct values."""
    if user is None:
        return None
    values: dict[str, Value] = {}
    for name, kind in fields.items():
        if kind == "set":
            values[name] = tuple(user.distinct(name))
        else:
            values[name] = user.fields.get(name)
    return values


def judge(
    case: Case, result: Result, actual: Actual, given_user: bool, rules: str = "line "
) -> list[Problem]:
    """Every way the run differs from the case's `[expect]`; `rules` prefixes line
    numbers in trace notes (`rules/okta.rules:`)."""
    expect = case.expect
    if expect is None:
        return [
            Problem(
                "expect",
                f"the case has no [expect] yet; the run gave {actual.outcome} "
                "(run with --update to record it)",
            )
        ]
    problems = _outcome(expect, result, rules)
    if expect.user and actual.user is None:
        problems.append(
            Problem("user", "[expect.user] is given but there is no account after the run")
        )
    elif expect.user and actual.user is not None:
        for name, wanted in expect.user.items():
            got = actual.user.get(name)
            if not _same(wanted, got):
                problems.append(_field_problem(name, wanted, got, result.trace, given_user, rules))
    return problems


def _outcome(expect: Expect, result: Result, rules: str) -> list[Problem]:
    problems: list[Problem] = []
    if result.outcome != expect.outcome:
        problems.append(
            Problem(
                "outcome",
                f"outcome: expected {expect.outcome}, got {result.outcome}",
                expect.outcome,
                result.outcome,
                trace=_why(result, rules),
            )
        )
    if expect.reason is not None and result.reason != expect.reason:
        problems.append(
            Problem(
                "reason",
                f"reason: expected {expect.reason}, got {result.reason}",
                expect.reason,
                result.reason,
                trace=result.message,
            )
        )
    if expect.message_has is not None and expect.message_has not in (result.message or ""):
        problems.append(
            Problem(
                "message_has",
                f"message_has: {expect.message_has!r} is not in the message",
                expect.message_has,
                result.message,
                detail="(expected a part of the message)",
            )
        )
    return problems


def _why(result: Result, rules: str) -> str | None:
    if result.outcome == "denied":
        line = result.plan.deny_line if result.plan is not None else None
        where = f" (deny at {rules}{line})" if line else ""
        return f"denied: {result.message}{where}"
    if result.outcome in ("rejected", "error"):
        return f"{result.outcome} ({result.reason or 'store'}): {result.message}"
    return None


def _same(wanted: Value, got: Value) -> bool:
    if wanted is None or wanted == ():
        return got in (None, "", ())
    if isinstance(wanted, bool) or isinstance(got, bool):
        return wanted is got
    if isinstance(wanted, int | Decimal) and isinstance(got, int | Decimal):
        return Decimal(wanted) == Decimal(got)
    return wanted == got


def _field_problem(
    name: str, wanted: Value, got: Value, trace: list[TraceEntry], given_user: bool, rules: str
) -> Problem:
    entries = [t for t in trace if t.field == name]
    if isinstance(wanted, tuple):
        entries_text = ", ".join(_entry(t, rules) for t in entries)
        have = set(got) if isinstance(got, tuple) else set()
        missing = [v for v in wanted if v not in have]
        unexpected = sorted(have - set(wanted))
        parts = []
        if missing:
            parts.append("missing " + ", ".join(show(v) for v in missing))
        if unexpected:
            parts.append("unexpected " + ", ".join(show(v) for v in unexpected))
        detail = "; ".join(parts) or None
    else:
        entries_text = _entry(entries[-1], rules) if entries else ""
        detail = None
    if not entries_text:
        entries_text = "not set by the rules" + (
            " (the value is the stored one, from [given.user])" if given_user else ""
        )
    else:
        entries_text = "set by " + entries_text
    return Problem(
        f"user.{name}",
        f"user.{name}: expected {show(wanted)}, got {show(got)}",
        wanted,
        got,
        trace=entries_text,
        detail=detail,
    )


def _entry(entry: TraceEntry, rules: str) -> str:
    rule = f' in rule "{entry.rule}"' if entry.rule else ""
    return f"{rules}{entry.line} ({entry.field} {entry.op}){rule}"


def jsonable(value: Any) -> Any:
    """A value for JSON: sets as lists, decimals as numbers' text."""
    if isinstance(value, tuple):
        return list(value)
    if isinstance(value, Decimal):
        return str(value)
    return value


def show(value: Any) -> str:
    """A value as people read it in a diff (JSON-like: strings quoted, null for none)."""
    return json.dumps(jsonable(value), ensure_ascii=False, default=str)
