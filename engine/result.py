"""What provisioning one token gives back: a `Result` value (product.md §3 `apply --json`).

Results are values, never exceptions: every outcome — including `rejected` and the
store's `error` — is a `Result`, and `to_json()` gives the same keys for each.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, TypeAlias

from engine.changes import json_value
from engine.store.base import StoredUser
from engine.store.schema import Layout
from rules.plan import Plan, Skipped, TraceEntry

Outcome: TypeAlias = Literal[
    "created", "updated", "linked", "unchanged", "denied", "rejected", "error"
]
OUTCOMES: tuple[str, ...] = Outcome.__args__  # type: ignore[attr-defined]
SUCCESS: frozenset[str] = frozenset({"created", "updated", "linked", "unchanged"})
REDACTED = "***"


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
    # The account after the write (or as planned): `user` is built from it on first use,
    # outside the store transaction and only when something shows it.
    account: tuple[StoredUser, Layout] | None = field(default=None, repr=False, compare=False)
    _user: dict[str, Any] | None = field(default=None, init=False, repr=False, compare=False)

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
            "user": self.user,
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
    return data
