"""Human-readable text for provisioning results, accounts and audit rows (CLI output).

Plain lines (no colour codes), so the output reads the same in a terminal, a pipe and a
log file; the JSON forms live in the engine (`Result.to_json`, `user_json`).
"""

from __future__ import annotations

from typing import Any

from engine.result import REDACTED, Result
from engine.store import AuditRow
from rules.plan import SetOp


def show(value: Any) -> str:
    """One value for people: null as "(none)", lists comma-separated."""
    if value is None:
        return "(none)"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(show(v) for v in value) + "]"
    return str(value)


def headline(result: Result) -> str:
    """One line: outcome, account, connection, subject; the message for refusals."""
    who = f"subject {result.subject}" if result.subject is not None else "no subject"
    where = f"{result.connection}, {who}"
    username = (result.user or {}).get("username")
    if "username" in result.redact and username is not None:
        username = REDACTED
    dry = " (dry run: nothing written)" if result.dry_run else ""
    if result.outcome == "rejected":
        return f"rejected [{result.reason}] ({where}): {result.message}{dry}"
    if result.outcome in ("denied", "error"):
        sso = f" — sign-on: {result.sso}" if result.outcome == "error" else ""
        return f"{result.outcome} ({where}): {result.message}{sso}{dry}"
    return f"{result.outcome} {username} ({where}){dry}"


def change_lines(result: Result, indent: str = "  ") -> list[str]:
    """`field: old → new` and `set: +added −removed`, redacted where configured."""
    lines = []
    for name, change in result.redacted_changes().items():
        if isinstance(change, dict):
            parts = [f"+{v}" for v in change.get("added", [])]
            parts += [f"-{v}" for v in change.get("removed", [])]
            lines.append(f"{indent}{name}: {' '.join(parts)}")
        else:
            old, new = change
            lines.append(f"{indent}{name}: {show(old)} → {show(new)}")
    return lines


def result_lines(result: Result) -> list[str]:
    return [headline(result), *change_lines(result)]


def explain_lines(result: Result) -> list[str]:
    """`explain` for people: attributes, plan with trace, skipped rules, changes."""
    lines = [headline(result), "", "decoded attributes:"]
    attributes = result.redacted_attributes()
    width = max((len(n) for n in attributes), default=0)
    lines += [f"  {n.ljust(width)}  {show(v)}" for n, v in attributes.items()] or ["  (none)"]
    lines += ["", "plan (field, operation, value, and the line and rule that set it):"]
    lines += _plan_lines(result) or ["  (nothing assigned)"]
    if result.skipped:
        lines += ["", "skipped rules:"]
        lines += [f'  "{s.rule}" (line {s.line}): {s.reason}' for s in result.skipped]
    lines += ["", "changes against the stored account:"]
    lines += change_lines(result) or ["  (none)"]
    return lines


def _plan_lines(result: Result) -> list[str]:
    plan = result.plan
    if plan is None:
        return []
    ops: dict[tuple[str, int], SetOp] = {(op.field, op.line): op for op in plan.set_ops}
    last_line = {t.field: t.line for t in plan.trace}
    width = max((len(t.field) for t in plan.trace), default=0)
    lines = []
    for entry in plan.trace:
        op = ops.get((entry.field, entry.line))
        if op is not None:
            value: Any = list(op.values)
        elif last_line[entry.field] == entry.line:
            value = plan.fields.get(entry.field)
        else:
            value = "(overridden below)"
        if entry.field in result.redact and value not in (None, "(overridden below)"):
            value = REDACTED
        rule = f' in rule "{entry.rule}"' if entry.rule else ""
        lines.append(
            f"  {entry.field.ljust(width)}  {entry.op:<5} {show(value)}  ← line {entry.line}{rule}"
        )
    return lines


def user_lines(user: dict[str, Any]) -> list[str]:
    """`users show`: one `key: value` line per field."""
    width = max(len(k) for k in user)
    lines = []
    for key, value in user.items():
        if key == "links":
            value = [f"{link['connection']}:{link['subject']}" for link in value]
        lines.append(f"{key.ljust(width)}  {show(value)}")
    return lines


def users_table(users: list[dict[str, Any]]) -> list[str]:
    """`users list`: id, username, email, display name, groups, linked connections."""
    if not users:
        return ["no accounts"]
    rows = [("id", "username", "email", "display_name", "groups", "links")]
    for u in users:
        links = sorted({link["connection"] for link in u.get("links", [])})
        rows.append(
            (
                str(u["id"]),
                show(u.get("username")),
                show(u.get("email")),
                show(u.get("display_name")),
                ", ".join(u.get("groups", [])),
                ", ".join(links),
            )
        )
    return _table(rows)


def stale_table(users: list[dict[str, Any]]) -> list[str]:
    """`users list --not-seen-since`: the oldest first, with when each was last seen."""
    rows = [("id", "username", "last seen", "links", "state")]
    for u in users:
        links = sorted({link["connection"] for link in u.get("links", [])})
        rows.append(
            (
                str(u["id"]),
                show(u.get("username")),
                show(u.get("last_seen_at")),
                ", ".join(links),
                "disabled" if u.get("disabled_at") else "",
            )
        )
    return _table(rows)


def audit_table(rows: list[AuditRow]) -> list[str]:
    """`audit`: newest first, one line per token."""
    if not rows:
        return ["no audit rows"]
    table = [("id", "at", "connection", "subject", "outcome", "user", "message")]
    for r in rows:
        outcome = f"{r.outcome} [{r.reason}]" if r.reason else r.outcome
        table.append(
            (
                str(r.id),
                r.at,
                show(r.connection),
                show(r.subject),
                outcome,
                show(r.user_id),
                r.message or "",
            )
        )
    return _table(table)


def _table(rows: list[tuple[str, ...]]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return [
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows
    ]
