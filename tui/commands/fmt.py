"""`jitprov fmt [--check] RULES...`: rewrite rules files in the canonical layout."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from rules import SourceMap, render
from rules.format import FormatError, format_source
from tui.cli import EXIT_OK, EXIT_USAGE, CommandError, Workspace
from tui.commands.check import read_rules, targets


def register(subparsers: Any, common: argparse.ArgumentParser) -> None:
    parser = subparsers.add_parser(
        "fmt",
        parents=[common],
        help="format rules files canonically",
        description=(
            "Rewrite rules files in place in the canonical layout and list those changed "
            "(every connection's rules when none are named); `fmt -` formats stdin to stdout."
        ),
    )
    parser.add_argument("rules", nargs="*", metavar="RULES", help="rules files, or - for stdin")
    parser.add_argument(
        "--check", action="store_true", help="change nothing; exit 1 when a file would change"
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace, ws: Workspace) -> int:
    if args.rules == ["-"]:
        return _stdin(args)
    if "-" in args.rules:
        raise CommandError("`-` (stdin) cannot be mixed with file names")
    status = EXIT_OK
    for target in targets(args, ws):
        source = read_rules(target.path, target.shown)
        try:
            formatted = format_source(source)
        except FormatError as exc:
            source_map = SourceMap(source)
            for diagnostic in exc.diagnostics:
                sys.stderr.write(render(diagnostic, source_map, target.shown) + "\n")
            sys.stderr.write(f"{target.shown}: not formatted (syntax errors)\n")
            status = EXIT_USAGE
            continue
        if formatted == source:
            continue
        if args.check:
            sys.stdout.write(f"would reformat {target.shown}\n")
            status = EXIT_USAGE
            continue
        try:
            target.path.write_text(formatted, encoding="utf-8")
        except OSError as exc:
            raise CommandError(f"{target.shown}: cannot write: {exc.strerror}") from None
        sys.stdout.write(f"{target.shown}\n")
    return status


def _stdin(args: argparse.Namespace) -> int:
    source = sys.stdin.read()
    try:
        formatted = format_source(source)
    except FormatError as exc:
        source_map = SourceMap(source)
        for diagnostic in exc.diagnostics:
            sys.stderr.write(render(diagnostic, source_map, "<stdin>") + "\n")
        return EXIT_USAGE
    if args.check:
        return EXIT_OK if formatted == source else EXIT_USAGE
    sys.stdout.write(formatted)
    return EXIT_OK
