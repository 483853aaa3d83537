"""`jitprov prune [--dry-run]`: remove what the store no longer needs, in short batches.

Expired replay entries, sign-in requests and hand-offs always; audit rows and recorded
sign-ins older than `[retention]`'s `audit_days` and `recorded_days` (kept for ever when
unset). `jitprov serve` runs the same pruning hourly (engine.lifecycle)."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from typing import Any

from engine import lifecycle
from engine.store import SchemaError, StoreError, open_store
from tui.cli import EXIT_OK, EXIT_STORE, CommandError, Workspace, parse_time, print_json

LABELS = {
    "replay": "expired replay entries",
    "requests": "expired sign-in requests",
    "handoffs": "expired hand-offs",
    "audit": "audit rows past audit_days",
    "recorded": "recorded sign-ins past recorded_days",
}


def register(subparsers: Any, common: argparse.ArgumentParser) -> None:
    parser = subparsers.add_parser(
        "prune",
        parents=[common],
        help="remove expired replay entries and data past its [retention]",
        description=(
            "Remove expired replay entries, sign-in requests and hand-offs, and the audit"
            " rows and recorded sign-ins older than [retention] audit_days and"
            f" recorded_days, {lifecycle.PRUNE_BATCH} rows per transaction so that"
            " sign-ins never wait long behind it."
        ),
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="count what would be removed; remove nothing"
    )
    parser.add_argument(
        "--at", metavar="TIME", help="prune as of this ISO 8601 time (default: now)"
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace, ws: Workspace) -> int:
    config = ws.config
    now = parse_time(args.at) if args.at else datetime.now(UTC)
    try:
        store = open_store(config, read_only_if_missing=args.dry_run)
    except SchemaError as exc:
        raise CommandError(f"{config.path.name}: {exc}") from None
    except StoreError as exc:
        raise CommandError(f"store error: {exc}", EXIT_STORE) from None
    try:
        pruned = lifecycle.prune(store, config, now, dry_run=args.dry_run)
    except StoreError as exc:
        raise CommandError(f"store error: {exc}", EXIT_STORE) from None
    finally:
        store.close()
    if args.json:
        print_json({"dry_run": args.dry_run, **pruned.counts})
        return EXIT_OK
    verb = "would remove" if args.dry_run else "removed"
    for name, count in pruned.counts.items():
        kept = ""
        if name == "audit" and config.retention.audit_days is None:
            kept = " (kept for ever: no [retention] audit_days)"
        if name == "recorded" and config.retention.recorded_days is None:
            kept = " (kept for ever: no [retention] recorded_days)"
        print(f"{verb} {count} {LABELS[name]}{kept}")
    return EXIT_OK
