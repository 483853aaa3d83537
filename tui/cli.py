"""The `jitprov` command line: argument parsing and dispatch to `tui.commands.*`.

Each command module defines `register(subparsers, common)` which adds its parser (with
`parents=[common]`, so `--config` and `--json` work before or after the command name)
and sets `run=` to a function `run(args, ws) -> int` returning the exit code. `ws` is a
`Workspace` giving the loaded config (loaded and validated before any command runs, when
one can be found). Errors a user can act on are raised as `CommandError` or
`ConfigError` and printed as one line on stderr; no traceback reaches a user.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn

from engine.config import Config, ConfigError, find_config, load_config
from engine.moments import utc

VERSION = "0.1.0"

# Exit codes of product.md §3.
EXIT_OK = 0
EXIT_USAGE = 1
EXIT_DENIED = 2
EXIT_REJECTED = 3
EXIT_STORE = 4

COMMANDS = (
    "init",
    "tui",
    "check",
    "fmt",
    "apply",
    "explain",
    "test",
    "mint",
    "users",
    "plan",
    "prune",
    "audit",
    "connection",
    "serve",
    "migrate",
)


class CommandError(Exception):
    """A usage or input problem to print as one line; `code` is the exit code."""

    def __init__(self, message: str, code: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.code = code


class Workspace:
    """The config for a command: found (upwards or by --config) and validated once."""

    def __init__(self, explicit: str | None, cwd: Path | None = None) -> None:
        self.explicit = explicit
        self.cwd = cwd or Path.cwd()
        self._config: Config | None = None
        self._path: Path | None = None

    def locate(self) -> Path | None:
        """The config file, or None when there is none (and none was asked for)."""
        if self._path is None:
            try:
                self._path = find_config(self.cwd, self.explicit)
            except ConfigError:
                if self.explicit is not None:
                    raise
                return None
        return self._path

    @property
    def config(self) -> Config:
        """The validated config; a ConfigError when there is none or it is invalid."""
        if self._config is None:
            path = self.locate()
            if path is None:
                find_config(self.cwd, None)  # raises the "not found" error
                raise AssertionError("unreachable")
            self._config = load_config(path)
        return self._config

    def load_if_present(self) -> Config | None:
        """Validate the config when there is one (every command does this first)."""
        return self.config if self.locate() is not None else None


def parse_time(text: str, option: str = "--at", *, naive_utc: bool = False) -> datetime:
    """A time given on the command line (`--at`, a batch line's `"at"`), in UTC.

    ISO 8601 with `Z` (or `z`) or an offset; without one it is an error, or UTC with
    `naive_utc`. A moment that exists in its own offset but not in UTC (the last hours
    of 9999-12-31 west of Greenwich, the first of 0001-01-01 east of it) is clamped to
    the nearest instant a datetime can hold (engine.moments): the engine then judges it
    like any far-off time (expired, not yet valid) instead of overflowing."""
    spelled = text.strip()
    if spelled[-1:] == "z":
        spelled = spelled[:-1] + "Z"
    try:
        moment = datetime.fromisoformat(spelled)
    except ValueError:
        raise CommandError(
            f"{option}: expected an ISO 8601 time such as 2024-05-01T12:00:00Z "
            f"(years 1 to 9999), got {text!r}"
        ) from None
    if moment.utcoffset() is None:
        if not naive_utc:
            raise CommandError(
                f"{option}: give a time zone (Z or an offset such as +02:00): {text!r}"
            )
        return moment.replace(tzinfo=UTC)
    return utc(moment)


def print_json(value: Any) -> None:
    """One JSON document on stdout."""
    sys.stdout.write(json.dumps(value, ensure_ascii=False, default=str) + "\n")


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error exits 1 (product.md §3): argparse's own 2 would read
    as "denied"."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def _common() -> argparse.ArgumentParser:
    common = _Parser(add_help=False)
    common.add_argument(
        "--config",
        metavar="PATH",
        default=argparse.SUPPRESS,
        help="the workspace's jitprov.toml (default: found in this folder or its parents)",
    )
    common.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="print JSON")
    return common


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The whole command line, or with `only` that command's parser alone: a command
    run needs only its own module, and importing all fifteen cost every run ~20 ms."""
    common = _common()
    parser = _Parser(
        prog="jitprov",
        parents=[common],
        description="Just-in-time user provisioning from SAML 2.0 and OIDC sign-ins.",
        epilog="With no command, jitprov opens the terminal interface.",
    )
    parser.add_argument("--version", action="version", version=f"jitprov {VERSION}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS if only is None else (only,):
        try:
            module = importlib.import_module(f"tui.commands.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"tui.commands.{name}":
                raise
            continue
        module.register(subparsers, common)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `jitprov` script; returns (and exits with) the exit code."""
    code = run(argv)
    sys.exit(code)


def command_in(argv: Sequence[str]) -> str | None:
    """The command a command line names, when it names a known one before any help
    option; None when the whole parser must be built (help, --version, no command, an
    unknown one, so that argparse lists every command)."""
    words = iter(argv)
    for word in words:
        if word == "--config":
            next(words, None)  # its value, which may spell a command's name
        elif word in ("-h", "--help", "--version"):
            return None
        elif not word.startswith("-"):
            return word if word in COMMANDS else None
    return None


def run(argv: Sequence[str] | None = None) -> int:
    words = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(command_in(words))
    args = parser.parse_args(words)
    args.json = getattr(args, "json", False)
    args.config = getattr(args, "config", None)
    if args.command is None:
        args.command = "tui"
        tui_module = importlib.import_module("tui.commands.tui")
        args.run = tui_module.run
    ws = Workspace(args.config)
    try:
        if getattr(args, "needs_config", True):
            ws.load_if_present()
        result: int = args.run(args, ws)
        return result
    except (CommandError, ConfigError) as exc:
        sys.stderr.write(f"jitprov: error: {exc}\n")
        return exc.code if isinstance(exc, CommandError) else EXIT_USAGE
    except KeyboardInterrupt:
        sys.stderr.write("jitprov: interrupted\n")
        return 130
    except BrokenPipeError:
        return EXIT_OK
    except Exception as exc:  # a bug: one line for users, the traceback on request
        if os.environ.get("JITPROV_DEBUG"):
            raise
        sys.stderr.write(
            f"jitprov: internal error: {type(exc).__name__}: {exc} "
            "(set JITPROV_DEBUG=1 to see the traceback)\n"
        )
        return EXIT_USAGE


if __name__ == "__main__":  # pragma: no cover
    main()
