"""`jitprov audit [--limit N] [--user USER]`: the audit log, newest first."""

from __future__ import annotations

import argparse
from dataclasses import asdict
from typing import Any

from engine.store import StoreError
from tui.cli import EXIT_OK, EXIT_STORE, CommandError, Workspace, print_json
from tui.commands.users import open_for_reading
from tui.render import audit_table

AUDIT_KEYS = (
    "id",
    "at",
    "connection",
    "subject",
    "token_id",
    "outcome",
    "reason",
    "message",
    "user_id",
    "changes",
    "trace",
    "rules_sha256",
)


def _positive(text: str) -> int:
    try:
        number = int(text)
    except ValueError:
        number = 0
    if number < 1:
        raise argparse.ArgumentTypeError(f"expected a positive whole number, got {text!r}")
    return number


def register(subparsers: Any, common: argparse.ArgumentParser) -> None:
    parser = subparsers.add_parser(
        "audit",
        parents=[common],
        help="the audit log, newest first",
        description="One row per token processed (not for dry runs), newest first.",
    )
    parser.add_argument("--limit", type=_positive, metavar="N", help="at most N rows")
    parser.add_argument("--user", metavar="USER", help="only rows about this username")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace, ws: Workspace) -> int:
    store = open_for_reading(ws)
    try:
        user_id = None
        if args.user is not None:
            user = store.user_by_username(args.user)
            if user is None:
                raise CommandError(f"no user named {args.user!r}")
            user_id = user.id
        rows = store.audit(limit=args.limit, user_id=user_id)
    except StoreError as exc:
        raise CommandError(f"store error: {exc}", EXIT_STORE) from None
    finally:
        store.close()
    if args.json:
        print_json([{key: asdict(row)[key] for key in AUDIT_KEYS} for row in rows])
    else:
        print("\n".join(audit_table(rows)))
    return EXIT_OK
