"""`jitprov users [list|show|disable|enable|delete] [USER]`: the provisioned accounts and
their lifecycle (USER: a username, any case).

`users list --not-seen-since AGE` lists the stale accounts: no sign-in through any of
their links since then (an account never signed in counts from its creation).
`disable` keeps the account but makes its sign-ins denied (or re-enabled, where the
connection says `on_disabled = "enable"`); `delete` removes it with its links, set
members and recorded sign-ins. Each change leaves an audit row (engine.lifecycle)."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from typing import Any

from engine import lifecycle
from engine.result import user_json
from engine.store import SchemaError, Store, StoreError, layout_for, open_store
from engine.store.schema import Layout
from tui.cli import EXIT_OK, EXIT_STORE, CommandError, Workspace, print_json
from tui.commands.plan import parse_since
from tui.render import stale_table, user_lines, users_table

ACTIONS = ("list", "show", "disable", "enable", "delete")


def register(subparsers: Any, common: argparse.ArgumentParser) -> None:
    parser = subparsers.add_parser(
        "users",
        parents=[common],
        help="list, show, disable, enable or delete provisioned accounts",
        description=(
            "`users` or `users list`: every account (--not-seen-since AGE: the stale"
            " ones); `users show USER`: one; `users disable|enable USER`: stop or allow"
            " its sign-ins; `users delete USER`: remove it with its links, set members"
            " and recorded sign-ins (the audit keeps a row saying so)."
        ),
    )
    parser.add_argument("action", nargs="?", choices=ACTIONS, default="list")
    parser.add_argument("user", nargs="?", metavar="USER", help="a username (any case)")
    parser.add_argument(
        "--not-seen-since",
        metavar="AGE",
        help="list only accounts with no sign-in since AGE: 90d, 12h, 2w, or an ISO 8601"
        " date or time",
    )
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
    if args.action != "list" and not args.user:
        raise CommandError(f"users {args.action} needs a USER (a username)")
    if args.not_seen_since and args.action != "list":
        raise CommandError("--not-seen-since goes with users list")
    if args.action in ("disable", "enable", "delete"):
        return change(args, ws)
    store = open_for_reading(ws)
    layout = layout_for(ws.config)
    try:
        if args.action == "list":
            return list_users(args, store, layout)
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


def list_users(args: argparse.Namespace, store: Store, layout: Layout) -> int:
    if not args.not_seen_since:
        users = [user_json(u, layout) for u in store.users()]
        if args.json:
            print_json(users)
        else:
            print("\n".join(users_table(users)))
        return EXIT_OK
    cutoff = parse_since(args.not_seen_since, "--not-seen-since")
    rows = []
    for user, seen in lifecycle.stale(store, cutoff):
        data = user_json(user, layout)
        data["last_seen_at"] = seen
        rows.append(data)
    if args.json:
        print_json(rows)
    elif not rows:
        print(f"no accounts unseen since {cutoff.isoformat()}")
    else:
        print("\n".join(stale_table(rows)))
    return EXIT_OK


def change(args: argparse.Namespace, ws: Workspace) -> int:
    """disable, enable or delete: one transaction with its audit row."""
    config = ws.config
    try:
        store = open_store(config)
    except SchemaError as exc:
        raise CommandError(f"{config.path.name}: {exc}") from None
    except StoreError as exc:
        raise CommandError(f"store error: {exc}", EXIT_STORE) from None
    layout = layout_for(config)
    now = datetime.now(UTC)
    try:
        if args.action == "delete":
            deleted = lifecycle.delete(store, config, args.user, now)
            data: dict[str, Any] = {"deleted": user_json(deleted.user, layout), **deleted.counts}
            text = deleted.sentence()
        else:
            disable = args.action == "disable"
            user, changed = lifecycle.set_disabled(store, config, args.user, disable, now)
            data = user_json(user, layout)
            name = f"{user.fields.get('username')} (account {user.id})"
            state = "disabled" if disable else "enabled"
            text = f"{state} {name}" if changed else f"{name} was already {state}"
    except lifecycle.NoSuchUser as exc:
        raise CommandError(str(exc)) from None
    except StoreError as exc:
        raise CommandError(f"store error: {exc}", EXIT_STORE) from None
    finally:
        store.close()
    if args.json:
        print_json(data)
    else:
        print(text)
    return EXIT_OK
