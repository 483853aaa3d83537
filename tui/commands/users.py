"""`jitprov users [list|show USER]`: the provisioned accounts (USER: a username, any case)."""

from __future__ import annotations

import argparse
from typing import Any

from engine.result import user_json
from engine.store import SchemaError, Store, StoreError, layout_for, open_store
from tui.cli import EXIT_OK, EXIT_STORE, CommandError, Workspace, print_json
from tui.render import user_lines, users_table


def register(subparsers: Any, common: argparse.ArgumentParser) -> None:
    parser = subparsers.add_parser(
        "users",
        parents=[common],
        help="list or show provisioned accounts",
        description="`users` or `users list`: every account; `users show USER`: one.",
    )
    parser.add_argument("action", nargs="?", choices=("list", "show"), default="list")
    parser.add_argument("user", nargs="?", metavar="USER", help="a username (any case)")
    parser.set_defaults(run=run)


def open_for_reading(ws: Workspace) -> Store:
    """The store, without creating a missing file; a store error exits 4."""
    try:
        return open_store(ws.config, read_only_if_missing=True)
    except SchemaError as exc:
        raise CommandError(f"{ws.config.path.name}: {exc}") from None
    except StoreError as exc:
        raise CommandError(f"store error: {exc}", EXIT_STORE) from None


def run(args: argparse.Namespace, ws: Workspace) -> int:
    if args.action == "list" and args.user:
        raise CommandError(f"users list takes no USER (did you mean: users show {args.user})")
    if args.action == "show" and not args.user:
        raise CommandError("users show needs a USER (a username)")
    store = open_for_reading(ws)
    layout = layout_for(ws.config)
    try:
        if args.action == "list":
            users = [user_json(u, layout) for u in store.users()]
            if args.json:
                print_json(users)
            else:
                print("\n".join(users_table(users)))
            return EXIT_OK
        found = store.user_by_username(args.user)
    except StoreError as exc:
        raise CommandError(f"store error: {exc}", EXIT_STORE) from None
    finally:
        store.close()
    if found is None:
        raise CommandError(f"no user named {args.user!r}")
    data = user_json(found, layout)
    if args.json:
        print_json(data)
    else:
        print("\n".join(user_lines(data)))
    return EXIT_OK
