"""`jitprov plan -c CONN [--rules FILE] [--since DATE] [--json]`: what a rules change would
do to the accounts of a connection, replayed over their recorded sign-ins (engine.plan).

Writes nothing. Exit 0 when no identity would be denied, 2 when some would be (newly:
one denied at its last sign-in and still denied counts as unchanged), 1 for a usage
error or rules that do not compile, 4 when the store fails."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from engine.moments import since
from engine.plan import AccountPlan, PlanReport, plan
from engine.provision import RulesError, read_rules_source, rules_from_source
from engine.store import SchemaError, StoreError
from tui.cli import EXIT_DENIED, EXIT_OK, EXIT_STORE, CommandError, Workspace, print_json

GROUPS_SHOWN = 20  # groups of changes in the text report (--json has them all)


def register(subparsers: Any, common: argparse.ArgumentParser) -> None:
    parser = subparsers.add_parser(
        "plan",
        parents=[common],
        help="show who a rules change would change or deny, before saving it",
        description=(
            "Replay a connection's rules (or FILE, e.g. an edited copy) over the latest"
            " recorded sign-in of every identity, against the accounts as stored now,"
            " writing nothing: how many would change, be denied or stay the same, the"
            " changes grouped by field and value, and each account's diff with the"
            " rules lines that cause it. Exit 0 when none would be denied, 2 when some"
            " would be."
        ),
    )
    parser.add_argument("-c", "--connection", required=True, help="the connection id")
    parser.add_argument(
        "--rules", metavar="FILE", help="the rules to plan (default: the connection's file)"
    )
    parser.add_argument(
        "--since",
        metavar="DATE",
        help="only identities whose latest sign-in is at or after DATE: an ISO 8601 date or"
        " time (UTC unless it says otherwise), or an age such as 30d, 12h or 2w",
    )
    parser.add_argument(
        "--workers",
        type=int,
        metavar="N",
        help="worker processes for large populations (default: one per CPU)",
    )
    parser.set_defaults(run=run)


def parse_since(text: str, option: str, now: datetime | None = None) -> datetime:
    """`--since` / `--not-seen-since`: an age (`90d`, `12h`, `2w`: that long before now) or
    an ISO 8601 date or time (UTC when it has no offset)."""
    try:
        return since(text, now or datetime.now(UTC))
    except ValueError as exc:
        raise CommandError(f"{option}: {exc}") from None


def run(args: argparse.Namespace, ws: Workspace) -> int:
    config = ws.config
    conn = config.connection(args.connection)
    if args.rules:
        path = Path(args.rules)
        try:
            source = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise CommandError(f"--rules: cannot read {args.rules}: {exc}") from None
        shown = args.rules
    else:
        try:
            source = read_rules_source(conn)
        except RulesError as exc:
            raise CommandError(str(exc)) from None
        shown = (
            str(conn.rules.relative_to(config.root))
            if conn.rules.is_relative_to(config.root)
            else str(conn.rules)
        )
    if args.rules:  # its errors name the file given (the plan compiles it again)
        try:
            rules_from_source(dataclasses.replace(conn, rules=path.resolve()), config, source)
        except RulesError as exc:
            raise CommandError(str(exc)) from None
    since = parse_since(args.since, "--since") if args.since else None
    if args.workers is not None and args.workers < 1:
        raise CommandError(f"--workers: expected 1 or more, got {args.workers}")
    try:
        with _progress(sys.stderr.isatty()) as progress:
            report = plan(
                config, conn.id, source, since=since, workers=args.workers, progress=progress
            )
    except RulesError as exc:
        raise CommandError(str(exc)) from None
    except SchemaError as exc:
        raise CommandError(f"{config.path.name}: {exc}") from None
    except StoreError as exc:
        raise CommandError(f"store error: {exc}", EXIT_STORE) from None
    if args.json:
        print_json(
            {
                "summary": report.summary_json(),
                "accounts": [a.to_json() for a in report.accounts],
            }
        )
    else:
        sys.stdout.write("\n".join(report_lines(report, shown, since)) + "\n")
    return EXIT_DENIED if report.denies else EXIT_OK


@contextmanager
def _progress(shown: bool) -> Iterator[Callable[[int, int], None] | None]:
    """A progress bar on a terminal's stderr (none when stderr is not a terminal)."""
    if not shown:
        yield None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    with Progress(
        TextColumn("planning"),
        BarColumn(),
        MofNCompleteColumn(),
        console=Console(stderr=True),
        transient=True,
    ) as bar:
        task = bar.add_task("plan", total=None)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield update


def _plural(n: int, one: str, many: str | None = None) -> str:
    return f"{n} {one if n == 1 else (many or one + 's')}"


def report_lines(report: PlanReport, shown: str, since: datetime | None) -> list[str]:
    """The plan as text: the summary first, then the groups, then each account."""
    scope = f" since {since.isoformat()}" if since else ""
    lines = [
        f"plan of {shown} (sha256 {report.rules_sha256[:12]}) for connection"
        f" {report.connection!r}: {_plural(report.recorded, 'recorded identity', 'recorded identities')}{scope}",
        f"  would change: {report.counts['change']}   would be denied: {report.counts['deny']}"
        f"   unchanged: {report.counts['same']}",
    ]
    for warning in report.warnings:
        lines.append(f"  note: {warning}")
    if report.recorded == 0:
        lines.append(
            "  no sign-ins are recorded for this connection yet: each sign-in records its"
            " identity's attributes (record = true), and plan replays them"
        )
        return lines
    if report.groups:
        lines += ["", "changes by field and value:"]
        width = max(len(g.label) for g in report.groups[:GROUPS_SHOWN])
        for group in report.groups[:GROUPS_SHOWN]:
            examples = ", ".join(group.examples)
            lines.append(
                f"  {group.label.ljust(width)}  {_plural(group.count, 'account')}  (e.g. {examples})"
            )
        if len(report.groups) > GROUPS_SHOWN:
            lines.append(
                f"  … and {len(report.groups) - GROUPS_SHOWN} more (--json lists them all)"
            )
    if report.accounts:
        lines += ["", "accounts:"]
        for account in report.accounts:
            lines += account_lines(account)
    return lines


def account_lines(account: AccountPlan) -> list[str]:
    name = account.username or "(no account)"
    head = f"  {name} (subject {account.subject}): would be {account.outcome}"
    if account.verdict == "deny":
        where = f" [line {account.deny_line}]" if account.deny_line else ""
        return [head, f"    {account.message}{where}"]
    lines = [head]
    for field, change in account.changes.items():
        where = account.lines.get(field)
        at = f"  [line {', '.join(map(str, where))}]" if where else ""
        if isinstance(change, dict):
            parts = [f"+{v}" for v in change.get("added", [])]
            parts += [f"-{v}" for v in change.get("removed", [])]
            lines.append(f"    {field}: {' '.join(parts)}{at}")
        else:
            lines.append(f"    {field}: {_show(change[0])} → {_show(change[1])}{at}")
    return lines


def _show(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, str):
        return f'"{value}"'
    return str(value).lower() if isinstance(value, bool) else str(value)
