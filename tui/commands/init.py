"""`jitprov init [DIR]`: make a workspace that checks clean and whose cases pass."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from tui.cli import EXIT_OK, CommandError, Workspace, print_json


def register(subparsers: Any, common: argparse.ArgumentParser) -> None:
    parser = subparsers.add_parser(
        "init",
        parents=[common],
        help="make a workspace",
        description=(
            "Make a workspace: config, an example connection with rules, sample tokens, "
            "rule test cases and a test IdP key pair."
        ),
    )
    parser.add_argument("dir", nargs="?", default=".", metavar="DIR", help="default: here")
    parser.add_argument(
        "--sp-keys",
        action="store_true",
        help="also make this SP's signing key pair (certs/sp.key, certs/sp.crt), set as the"
        " example connection's sp_key and sp_certificate",
    )
    parser.set_defaults(run=run, needs_config=False)


def run(args: argparse.Namespace, ws: Workspace) -> int:
    from engine.workspace import WorkspaceExists, init_workspace

    try:
        result = init_workspace(Path(args.dir), sp_keys=args.sp_keys)
    except WorkspaceExists as exc:
        raise CommandError(str(exc)) from None
    except OSError as exc:
        raise CommandError(f"{args.dir}: cannot create the workspace: {exc.strerror}") from None
    shown = [os.path.relpath(path) for path in result.created]
    if args.json:
        print_json({"root": str(result.root), "created": shown})
        return EXIT_OK
    for path in shown:
        sys.stdout.write(f"created {path}\n")
    where = os.path.relpath(result.root)
    sys.stdout.write(
        f"\nNext: cd {where} && jitprov check && jitprov test\n"
        "      jitprov explain -c example samples/alice.toml --unsigned-samples\n"
    )
    return EXIT_OK
