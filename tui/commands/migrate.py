"""`jitprov migrate [--check]`: bring the store's schema up to the config, once."""

from __future__ import annotations

import argparse
from typing import Any

from engine.store import StoreError, migrate_store
from tui.cli import EXIT_OK, EXIT_STORE, EXIT_USAGE, CommandError, Workspace, print_json


def register(subparsers: Any, common: argparse.ArgumentParser) -> None:
    parser = subparsers.add_parser(
        "migrate",
        parents=[common],
        help="bring the store's tables up to the config (new fields, link_by keys)",
        description=(
            "Adds the tables, columns and indexes the config's fields and link_by keys"
            " need, in one transaction under the store's schema lock, and records the"
            " schema version. Nothing is dropped or renamed. Stores migrate the same way"
            ' on their first open unless [store] migrate = "manual"; sign-ins never'
            " change the schema. Exit 0 when the store is current (or was brought up to"
            " date), 1 with --check when it is not, 4 on a store error."
        ),
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="change nothing: list what would change, and exit 1 when anything would",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace, ws: Workspace) -> int:
    try:
        report = migrate_store(ws.config, apply=not args.check)
    except StoreError as exc:
        raise CommandError(f"store error: {exc}", EXIT_STORE) from None
    pending = args.check and bool(report.changes)
    if args.json:
        print_json(
            {
                "store": report.store,
                "schema_version": report.schema_version,
                "changes": report.changes,
                "applied": report.applied,
                "current": not report.changes or report.applied,
            }
        )
    else:
        verb = "would change" if args.check else "changed"
        if not report.changes:
            print(f"store {report.store}: up to date (schema version {report.schema_version})")
        else:
            made = " (a new store)" if report.created else ""
            print(f"store {report.store}{made}: {verb}:")
            for change in report.changes:
                print(f"  {change}")
    return EXIT_USAGE if pending else EXIT_OK
