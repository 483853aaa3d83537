"""`jitprov explain`: `apply --dry-run` for people — the plan, the trace, skipped rules.

Writes nothing; exits as `apply` would (0, 2 denied, 3 rejected, 4 store error).
`--json` is the `apply --json` object plus `attributes` and `skipped`.
"""

from __future__ import annotations

import argparse
from typing import Any

from tui.cli import Workspace, print_json
from tui.commands.apply import (
    add_token_options,
    apply_one,
    exit_code,
    parse_at,
    provisioner_for,
    read_token_file,
)
from tui.render import explain_lines


def register(subparsers: Any, common: argparse.ArgumentParser) -> None:
    parser = subparsers.add_parser(
        "explain",
        parents=[common],
        help="show what apply would do with a token, and why",
        description="The plan and the trace (which rule and line set each field), the "
        "skipped rules and why, the decoded attributes and the diff against the stored "
        "account. Writes nothing.",
    )
    add_token_options(parser)
    parser.add_argument("token", metavar="TOKEN|-", help="a token file, or - for stdin")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace, ws: Workspace) -> int:
    now = parse_at(args.at)
    raw = read_token_file(args.token)
    provisioner = provisioner_for(args, ws)
    try:
        result = apply_one(args, provisioner, raw, now, dry_run=True)
    finally:
        provisioner.close()
    if args.json:
        print_json(result.explain_json())
    else:
        print("\n".join(explain_lines(result)))
    return exit_code(result)
