"""`jitprov check [RULES...]`: compile and lint rules files (rules-language.md §9).

`jitprov check --emit-python FILE` prints the Python a rules file compiles to instead:
the very source the evaluator is compiled from (a debugging aid; docs/rules.md)."""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from engine.config import Config
from rules import SourceMap, compile_rules, render
from rules.vocabulary import BUILTIN_FIELDS
from tui.cli import EXIT_OK, EXIT_USAGE, CommandError, Workspace, print_json


def register(subparsers: Any, common: argparse.ArgumentParser) -> None:
    parser = subparsers.add_parser(
        "check",
        parents=[common],
        help="compile and lint rules files",
        description="Compile and lint rules files: every connection's by default.",
    )
    parser.add_argument("rules", nargs="*", metavar="RULES", help="rules files to check")
    parser.add_argument(
        "--emit-python",
        metavar="FILE",
        help="print the Python source FILE compiles to (checked against the config's "
        "fields), instead of checking",
    )
    parser.set_defaults(run=run)


@dataclass(frozen=True, slots=True)
class Target:
    """A rules file to check, with what it is checked against."""

    path: Path
    shown: str
    attributes: tuple[str, ...] | None


def display_path(path: Path) -> str:
    """A path as the user would type it: relative to the current folder when below it."""
    try:
        relative = os.path.relpath(path)
    except ValueError:
        return str(path)
    return str(path) if relative.startswith("..") else relative


def targets(args: argparse.Namespace, ws: Workspace) -> list[Target]:
    """The files named on the command line, or every connection's rules file."""
    config = ws.load_if_present()
    expected: dict[Path, tuple[str, ...] | None] = {}
    if config is not None:
        for connection in config.connections.values():
            expected.setdefault(connection.rules, connection.attributes)
    if args.rules:
        found = []
        for name in args.rules:
            path = Path(name).resolve()
            found.append(Target(path, name, expected.get(path)))
        return found
    if config is None:
        raise CommandError(
            "no rules files named and no jitprov.toml found (pass RULES or --config)"
        )
    return [Target(path, display_path(path), attrs) for path, attrs in expected.items()]


def read_rules(path: Path, shown: str) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CommandError(f"{shown}: no such file") from None
    except UnicodeDecodeError as exc:
        raise CommandError(f"{shown}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except OSError as exc:
        raise CommandError(f"{shown}: cannot read: {exc.strerror}") from None


def run(args: argparse.Namespace, ws: Workspace) -> int:
    if getattr(args, "emit_python", None) is not None:
        return emit_python(args, ws)
    config = ws.load_if_present()
    fields = config.fields if config is not None else dict(BUILTIN_FIELDS)
    reports: list[dict[str, object]] = []
    errors = warnings = 0
    texts: list[str] = []
    for target in targets(args, ws):
        source = read_rules(target.path, target.shown)
        result = compile_rules(source, fields, attributes=target.attributes)
        source_map = SourceMap(source)
        for diagnostic in result.diagnostics:
            if diagnostic.severity == "error":
                errors += 1
            else:
                warnings += 1
            reports.append(diagnostic.to_json(source_map, target.shown))
            texts.append(render(diagnostic, source_map, target.shown))
    if args.json:
        print_json(reports)
    else:
        for text in texts:
            sys.stdout.write(text + "\n\n")
        if config is not None and not args.rules:
            # The whole workspace: its keys too (`connection status` lists every source),
            # on stderr: warnings only, beside the rules' report rather than in it. A
            # file checked on save (RULES given) and --json stay about rules, and the
            # exit code too.
            for line in key_warnings(config):
                sys.stderr.write(f"jitprov: warning: {line}\n")
        sys.stdout.write(_summary(errors, warnings) + "\n")
    return EXIT_USAGE if errors else EXIT_OK


def emit_python(args: argparse.Namespace, ws: Workspace) -> int:
    """Print the generated Python for one rules file; its errors, if it has any."""
    if args.rules:
        raise CommandError("--emit-python takes one rules file: name no other RULES")
    config = ws.load_if_present()
    fields = config.fields if config is not None else dict(BUILTIN_FIELDS)
    shown = args.emit_python
    path = Path(shown).resolve()
    attributes = None
    if config is not None:
        for connection in config.connections.values():
            if connection.rules == path:
                attributes = connection.attributes
                break
    source = read_rules(path, shown)
    result = compile_rules(source, fields, attributes=attributes)
    if result.rules is None:
        source_map = SourceMap(source)
        if args.json:
            print_json([d.to_json(source_map, shown) for d in result.diagnostics])
        else:
            for diagnostic in result.diagnostics:
                sys.stdout.write(render(diagnostic, source_map, shown) + "\n\n")
            sys.stdout.write(_summary(len(result.errors), len(result.warnings)) + "\n")
        return EXIT_USAGE
    python = result.rules.python_source
    if python is None:
        raise CommandError(
            f"{shown}: no Python to show: an expression is nested too deeply for Python to "
            "compile, so the reference evaluator runs this file"
        )
    if args.json:
        print_json({"path": shown, "python": python})
    else:
        sys.stdout.write(python)
    return EXIT_OK


def key_warnings(config: Config) -> list[str]:
    """`connection ID: ...` for each key that expired, expires within 30 days, or whose
    last fetch failed (engine.keysources; nothing is fetched)."""
    from engine.keysources import key_status

    return [
        f"connection {status.connection}: {warning}"
        for status in key_status(config, datetime.now(UTC))
        for warning in status.warnings
    ]


def _summary(errors: int, warnings: int) -> str:
    if not errors and not warnings:
        return "no problems found"
    parts = [f"{errors} error{'s' * (errors != 1)}", f"{warnings} warning{'s' * (warnings != 1)}"]
    return ", ".join(parts)
