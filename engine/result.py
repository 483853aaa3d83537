"""What provisioning one token gives back: a `Result` value (product.md §3 `apply --json`).

Results are values, never exceptions: every outcome — including `rejected` and the
store's `error` — is a `Result`, and `to_json()` gives the same keys for each.

Redaction (product.md §1 `redact`) is applied here, once: `changes` and the decoded
attributes by field or attribute name, and the message by value — every value of a
redacted attribute or field that the result knows (see `hide`) is replaced by "***"
when the Result is made, so the audit row, `apply --json`, `explain` and the TUI all
show the same redacted text, whichever step or rule wrote the message.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal, TypeAlias

from engine.changes import json_value
from engine.store.base import StoredUser
from engine.store.schema import Layout
from engine.store.values import to_column
from rules.plan import Plan, Scalar, Skipped, TraceEntry

Outcome: TypeAlias = Literal[
    "created", "updated", "linked", "unchanged", "denied", "rejected", "error"
]
OUTCOMES: tuple[str, ...] = Outcome.__args__  # type: ignore[attr-defined]
SUCCESS: frozenset[str] = frozenset({"created", "updated", "linked", "unchanged"})
REDACTED = "***"
# A redacted value shorter than this is hidden only where it stands as a word of its own
# (not inside a longer word), so that a short value cannot garble the text around it.
WHOLE_WORD_BELOW = 6


@dataclass(slots=True)
class Result:
    """One token's outcome. The first block is the `apply --json` object; the second
    holds what `explain` shows and what callers may want (ids, audit status)."""

    outcome: Outcome
    connection: str
    subject: str | None = None
    changes: dict[str, Any] = field(default_factory=dict)
    reason: str | None = None
    message: str | None = None
    sso: Literal["continue", "stop"] = "stop"
    trace: list[TraceEntry] = field(default_factory=list)

    token_id: str | None = None
    user_id: int | None = None
    attributes: dict[str, list[str]] | None = None
    skipped: list[Skipped] = field(default_factory=list)
    plan: Plan | None = None
    redact: tuple[str, ...] = ()
    rules_sha256: str | None = None
    dry_run: bool = False
    audit_written: bool | None = None  # None: not attempted (dry run)
    # A browser sign-in's next page: the return URL of the request it answers (not JSON).
    return_to: str | None = field(default=None, compare=False)
    # Values of redacted names the result cannot find in `attributes` and `plan` (the
    # stored account's, an earlier evaluation's); used to hide them in the message.
    hidden: tuple[str, ...] = field(default=(), repr=False, compare=False)
    # The account after the write (or as planned): `user` is built from it on first use,
    # outside the store transaction and only when something shows it.
    account: tuple[StoredUser, Layout] | None = field(default=None, repr=False, compare=False)
    _user: dict[str, Any] | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.redact and self.message:
            self.message = self.hide(self.message)

    def hide(self, text: str) -> str:
        """`text` with every value of a redacted attribute or field replaced by "***"."""
        return hide(text, self._secrets())

    def _secrets(self) -> Iterator[str]:
        """The values `redact` covers that this result knows: the token's attributes of
        those names, the plan's fields and set operations of those names, `hidden`."""
        plans = () if self.plan is None else (self.plan,)
        yield from redacted_values(self.redact, attributes=self.attributes, plans=plans)
        yield from self.hidden

    @property
    def user(self) -> dict[str, Any] | None:
        """The `users show` object of the account (None for denied, rejected, error);
        `id` is null for an account a dry run would create."""
        if self._user is None and self.account is not None:
            stored, layout = self.account
            self._user = user_json(stored, layout)
            self._user["id"] = stored.id or None
        return self._user

    @property
    def ok(self) -> bool:
        return self.outcome in SUCCESS

    def redacted_changes(self) -> dict[str, Any]:
        """`changes` with redacted fields' values as "***" (the shape is kept)."""
        if not self.redact:
            return self.changes
        out: dict[str, Any] = {}
        for name, change in self.changes.items():
            if name not in self.redact:
                out[name] = change
            elif isinstance(change, dict):
                out[name] = {k: [REDACTED for _ in v] for k, v in change.items()}
            else:
                out[name] = [None if v is None else REDACTED for v in change]
        return out

    def redacted_user(self) -> dict[str, Any] | None:
        """`user` with redacted fields' values as "***" (sets keep their length)."""
        user = self.user
        if user is None or not self.redact:
            return user
        return {
            name: (
                value
                if name not in self.redact or value is None
                else [REDACTED for _ in value]
                if isinstance(value, list)
                else REDACTED
            )
            for name, value in user.items()
        }

    def redacted_attributes(self) -> dict[str, list[str]]:
        return {
            name: [REDACTED for _ in values] if name in self.redact else list(values)
            for name, values in (self.attributes or {}).items()
        }

    def to_json(self) -> dict[str, Any]:
        """Exactly the keys of product.md §3's `apply --json` object."""
        return {
            "outcome": self.outcome,
            "connection": self.connection,
            "subject": self.subject,
            "user": self.redacted_user(),
            "changes": self.redacted_changes(),
            "reason": self.reason,
            "message": self.message,
            "sso": self.sso,
            "trace": trace_json(self.trace),
        }

    def explain_json(self) -> dict[str, Any]:
        """`explain --json`: the apply object plus the decoded attributes and skipped rules."""
        data = self.to_json()
        data["attributes"] = self.redacted_attributes() if self.attributes is not None else None
        data["skipped"] = [
            {"rule": s.rule, "line": s.line, "reason": s.reason} for s in self.skipped
        ]
        return data


def redacted_values(
    names: tuple[str, ...],
    *,
    attributes: dict[str, list[str]] | None = None,
    plans: Iterable[Plan] = (),
    accounts: Iterable[StoredUser] = (),
) -> Iterator[str]:
    """Every value of the attributes and fields `names` in the token's attributes, in
    the plans (fields and set operations) and in the stored accounts (fields and set
    members) — what a message must not show."""
    if not names:
        return
    for name in names:
        yield from (attributes or {}).get(name, ())
    for plan in plans:
        for name in names:
            if name in plan.fields:
                yield from value_texts(plan.fields[name])
        for op in plan.set_ops:
            if op.field in names:
                yield from op.values
    for account in accounts:
        for name in names:
            if name in account.fields:
                yield from value_texts(account.fields[name])
            yield from (value for value, _ in account.members.get(name, ()))


def value_texts(value: Scalar) -> tuple[str, ...]:
    """How a field value can appear in a message: as Python writes it (`{value}` in
    an f-string), and as the store writes it (canonical numbers)."""
    if value is None or value == "":
        return ()
    if isinstance(value, str):
        return (value,)
    return tuple(dict.fromkeys((str(value), str(to_column(value)))))


def hide(text: str, values: Iterable[str]) -> str:
    """`text` with each of `values` replaced by "***", ignoring case (so `lower()` and
    `upper()` of a value are hidden too). Longer values first, so a value inside another
    is not half-replaced; a value shorter than WHOLE_WORD_BELOW characters only where
    no letter or digit touches it (a department "IT" hides "IT", never the "it" in
    "limit"). Values a message cannot be matched on by this — a part of a value, a
    value rewritten (`substring`, `ascii`) — are the rule author's to keep out of `deny`
    texts; docs/provisioning.md says so."""
    words = sorted({v for v in values if v and v != REDACTED}, key=len, reverse=True)
    if not words:
        return text
    patterns = []
    for word in words:
        pattern = re.escape(word)
        if len(word) < WHOLE_WORD_BELOW:
            pattern = rf"(?<![^\W_]){pattern}(?![^\W_])"
        patterns.append(pattern)
    return re.sub("|".join(patterns), REDACTED, text, flags=re.IGNORECASE)


def trace_json(trace: list[TraceEntry]) -> list[dict[str, Any]]:
    return [{"field": t.field, "line": t.line, "rule": t.rule} for t in trace]


def user_json(user: StoredUser, layout: Layout) -> dict[str, Any]:
    """The `users show` object: id, every field, sets as sorted distinct lists, links,
    timestamps."""
    data: dict[str, Any] = {"id": user.id}
    for name in layout.scalars:
        data[name] = json_value(user.fields.get(name))
    for name in layout.sets:
        data[name] = user.distinct(name)
    data["links"] = [{"connection": c, "subject": s} for c, s in user.links]
    data["created_at"] = user.created_at
    data["updated_at"] = user.updated_at
    if user.disabled_at is not None:  # only on a disabled account: the shape stays
        data["disabled_at"] = user.disabled_at
    return data
