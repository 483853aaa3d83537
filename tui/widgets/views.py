"""The values the facade hands to the screens and widgets ("attributes down").

Plain frozen dataclasses: a widget receives one and draws it, and never reaches back
into the engine. `tui.facade` builds them from the engine's results, with the helpers
at the end of this module (which read only plain values: JSON-ready dicts and rows).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Problem:
    """One diagnostic, placed for the editor (lines and columns from 1)."""

    severity: str
    code: str
    message: str
    hint: str | None
    line: int
    column: int
    end_line: int
    end_column: int

    @property
    def label(self) -> str:
        icon = "✘" if self.severity == "error" else "⚠"
        return f"{icon} {self.line}:{self.column} {self.code} {self.message}"


@dataclass(frozen=True, slots=True)
class Check:
    """The result of checking one rules text: its problems and, when it compiled, the
    compiled rules (reused by the preview so a keystroke compiles once)."""

    source: str
    problems: tuple[Problem, ...]
    compiled: Any = None

    @property
    def errors(self) -> int:
        return sum(p.severity == "error" for p in self.problems)

    @property
    def warnings(self) -> int:
        return sum(p.severity != "error" for p in self.problems)


@dataclass(frozen=True, slots=True)
class ConnectionRow:
    """A connection as the lists show it, with its rules file's status."""

    id: str
    protocol: str
    mode: str
    rules: str
    errors: int = 0
    warnings: int = 0
    unreadable: str | None = None  # why the rules file could not be read

    @property
    def status(self) -> str:
        if self.unreadable:
            return "✘ unreadable"
        if self.errors:
            return f"✘ {self.errors} error{'s' * (self.errors != 1)}"
        if self.warnings:
            return f"⚠ {self.warnings} warning{'s' * (self.warnings != 1)}"
        return "✔"


PAGE = 200  # rows per page in the Users and Audit tables
USER_COLUMNS = ("username", "email", "display_name", "active")


@dataclass(frozen=True, slots=True)
class PreviewRow:
    """One field of the planned account: its value, the stored one, and the lines."""

    field: str
    value: str
    diff: str | None  # against the stored account: "new", "was x", "+a -b"
    changed: bool
    lines: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Preview:
    """A dry run of one token against the edited rules."""

    outcome: str
    message: str | None = None
    token: str = ""
    rows: tuple[PreviewRow, ...] = ()

    @classmethod
    def failed(cls, message: str, token: str = "") -> Preview:
        return cls("—", message, token)


# Saving rules asks first when their plan would deny, or remove set members from, more
# accounts than the smaller of CONFIRM_ACCOUNTS and CONFIRM_SHARE of those recorded.
CONFIRM_ACCOUNTS = 10
CONFIRM_SHARE = 0.10
IMPACT_GROUPS = 20  # groups of changes the impact panel lists (`jitprov plan` has them all)
IMPACT_DENIED = 50  # denied accounts the impact panel lists


@dataclass(frozen=True, slots=True)
class ImpactGroup:
    """One kind of change and how many accounts it touches: `op` is `+` (a set member
    added), `-` (one removed) or `=` (a field given a value); `label` says it as
    `jitprov plan` does (`groups +staff`, `department = sales`)."""

    field: str
    op: str
    label: str
    count: int
    examples: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Denial:
    """An account the rules would newly deny: its name (redacted where the connection
    redacts it), the deny message and the `deny` line."""

    account: str
    message: str
    line: int | None


@dataclass(frozen=True, slots=True)
class Impact:
    """The plan of a rules text over a connection's recorded sign-ins (`jitprov plan`):
    how many accounts would change, be denied or stay the same, the most common
    changes, and the accounts that would be denied. Values come redacted."""

    recorded: int = 0
    change: int = 0
    deny: int = 0
    same: int = 0
    removing: int = 0  # accounts (not denied) that would lose a set member
    groups: tuple[ImpactGroup, ...] = ()
    more_groups: int = 0  # groups left out of `groups`
    denied: tuple[Denial, ...] = ()  # the first IMPACT_DENIED of `deny`
    warnings: tuple[str, ...] = ()

    @property
    def summary(self) -> str:
        if not self.recorded:
            return "no sign-ins recorded for this connection yet"
        return (
            f"would change {self.change:,} · denied {self.deny:,} · unchanged {self.same:,}"
            f" of {self.recorded:,} recorded"
        )

    @property
    def affected(self) -> int:
        """Accounts that would be denied or lose a set member."""
        return self.deny + self.removing

    @property
    def threshold(self) -> float:
        """Saving asks first above this many affected accounts."""
        return min(CONFIRM_ACCOUNTS, CONFIRM_SHARE * self.recorded)

    @property
    def asks_before_saving(self) -> bool:
        return self.affected > self.threshold

    @property
    def threshold_label(self) -> str:
        if CONFIRM_SHARE * self.recorded >= CONFIRM_ACCOUNTS:
            return f"more than {CONFIRM_ACCOUNTS} accounts"
        return f"more than {CONFIRM_SHARE:.0%} of the {self.recorded} recorded"


@dataclass(frozen=True, slots=True)
class Decoded:
    """A decoded token: its attributes, or why validation refused it."""

    kind: str | None
    subject: str | None
    attributes: tuple[tuple[str, tuple[str, ...]], ...]
    reason: str | None = None
    message: str | None = None

    @property
    def label(self) -> str:
        if self.reason:
            return f"✘ rejected ({self.reason}): {self.message}"
        if self.kind == "sample":
            return "⚠ unsigned sample: accepted for testing only, never by apply"
        return "✔ valid"


@dataclass(frozen=True, slots=True)
class CaseOutcome:
    """One case's line in the bench: its name, passed/failed/error, and the detail
    (problems or the diff) shown when it is selected."""

    name: str
    status: str
    detail: str


@dataclass(frozen=True, slots=True)
class UserRow:
    id: int
    username: str
    email: str
    display_name: str
    active: str
    disabled_at: str | None = None  # when an administrator disabled it (None: enabled)


@dataclass(frozen=True, slots=True)
class UsersPage:
    rows: tuple[UserRow, ...]
    total: int
    offset: int


AuditLine = tuple[int, str, str, str, str, str, str]  # id, at, conn, subject, outcome, ...


@dataclass(frozen=True, slots=True)
class AuditPage:
    rows: tuple[AuditLine, ...]
    total: int
    offset: int


@dataclass(frozen=True, slots=True)
class UserDetail:
    id: int
    fields: tuple[tuple[str, str], ...]
    sets: tuple[tuple[str, tuple[tuple[str, str], ...]], ...]  # field, (value, source)
    links: tuple[tuple[str, str], ...]
    created_at: str | None
    updated_at: str | None
    audit: tuple[AuditLine, ...]
    disabled_at: str | None = None  # when an administrator disabled it (None: enabled)


def cell(value: object) -> str:
    """A stored value as a table cell."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def audit_line(row: Any) -> AuditLine:
    """A row of the store's `audit` table as the tables show it."""
    detail = row.reason or row.message or ""
    return (
        int(row.id or 0),
        str(row.at),
        row.connection or "",
        row.subject or "",
        row.outcome,
        detail,
        "" if row.user_id is None else str(row.user_id),
    )


def preview_of(result: Any, token: str) -> Preview:
    """The Preview of a dry-run Result: the planned account's fields, each with its old
    value (from `changes`) and the lines that set it (from the trace)."""
    data = result.to_json()
    lines: dict[str, list[int]] = {}
    for entry in result.trace:
        lines.setdefault(entry.field, []).append(entry.line)
    changes = data.get("changes") or {}
    rows = []
    for name, value in (data.get("user") or {}).items():
        if name in ("id", "links", "created_at", "updated_at", "disabled_at"):
            continue
        change = changes.get(name)
        diff: str | None = None
        if isinstance(change, dict):
            added = " ".join(f"+{v}" for v in change.get("added", []))
            removed = " ".join(f"-{v}" for v in change.get("removed", []))
            diff = " ".join(p for p in (added, removed) if p) or None
        elif isinstance(change, list | tuple) and change:
            diff = "new" if change[0] is None else f"was {cell(change[0])}"
        shown = ", ".join(map(str, value)) if isinstance(value, list) else cell(value)
        if not shown and change is None and name not in lines:
            continue  # an empty field the rules do not touch
        rows.append(
            PreviewRow(
                name, shown, diff, change is not None, tuple(sorted(set(lines.get(name, ()))))
            )
        )
    return Preview(data["outcome"], data.get("message"), token, tuple(rows))


def impact_of(report: Any) -> Impact:
    """The Impact of an `engine.plan.PlanReport` (its accounts and groups come redacted)."""
    removing = sum(
        1
        for account in report.accounts
        if account.verdict == "change"
        and any(isinstance(c, dict) and c.get("removed") for c in account.changes.values())
    )
    denied = tuple(
        Denial(a.username or a.subject, a.message or "", a.deny_line)
        for a in report.accounts
        if a.verdict == "deny"
    )
    groups = tuple(
        ImpactGroup(g.field, g.op, g.label, g.count, tuple(g.examples))
        for g in report.groups[:IMPACT_GROUPS]
    )
    return Impact(
        recorded=report.recorded,
        change=report.counts["change"],
        deny=report.counts["deny"],
        same=report.counts["same"],
        removing=removing,
        groups=groups,
        more_groups=max(0, len(report.groups) - IMPACT_GROUPS),
        denied=denied[:IMPACT_DENIED],
        warnings=tuple(report.warnings),
    )
