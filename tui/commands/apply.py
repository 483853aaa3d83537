"""`jitprov apply`: provision one token (a file or stdin), or a batch of them.

Exit codes (product.md §3): 0 created/updated/linked/unchanged, 1 usage/config error or
an unreadable token file, 2 denied, 3 rejected, 4 store error; `--batch`: 0 unless any
token ended in `error` (then 4) — denied and rejected tokens are results, one a line.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from engine.provision import Provisioner, RulesError
from engine.result import Result
from engine.store import SchemaError
from tui.cli import (
    EXIT_DENIED,
    EXIT_OK,
    EXIT_REJECTED,
    EXIT_STORE,
    CommandError,
    Workspace,
    parse_time,
    print_json,
)
from tui.render import result_lines

EXIT_CODES = {"denied": EXIT_DENIED, "rejected": EXIT_REJECTED, "error": EXIT_STORE}


def exit_code(result: Result) -> int:
    return EXIT_CODES.get(result.outcome, EXIT_OK)


def add_token_options(parser: argparse.ArgumentParser) -> None:
    """Options `apply` and `explain` share."""
    parser.add_argument("-c", "--connection", required=True, help="the connection id")
    parser.add_argument(
        "--at", metavar="TIME", help="validate as of this ISO 8601 time (with Z or an offset)"
    )
    parser.add_argument(
        "--unsigned-samples",
        action="store_true",
        help="accept TOML samples (unsigned stand-ins for tokens, for rule testing)",
    )
    parser.add_argument("--request-id", metavar="ID", help="SAML: expected InResponseTo")
    parser.add_argument("--nonce", metavar="N", help="OIDC: expected nonce")


def register(subparsers: Any, common: argparse.ArgumentParser) -> None:
    parser = subparsers.add_parser(
        "apply",
        parents=[common],
        help="provision one token, or a batch",
        description="Validate a token, run the connection's rules and write the account.",
    )
    add_token_options(parser)
    parser.add_argument("--dry-run", action="store_true", help="write nothing")
    parser.add_argument(
        "--batch",
        metavar="DIR|FILE.jsonl",
        help="many tokens: the files of DIR in name order, or one JSON object a line",
    )
    parser.add_argument("token", nargs="?", metavar="TOKEN|-", help="a token file, or - for stdin")
    parser.set_defaults(run=run)


def parse_at(text: str | None) -> datetime | None:
    """`--at`: ISO 8601 with Z or an offset (a time without a zone is ambiguous), in
    UTC; a moment beyond what UTC can hold is clamped (tui.cli.parse_time)."""
    return None if text is None else parse_time(text)


def read_token_file(name: str) -> bytes:
    """The token's bytes from a file or stdin (`-`); unreadable → exit 1."""
    if name == "-":
        return sys.stdin.buffer.read()
    try:
        return Path(name).read_bytes()
    except FileNotFoundError:
        raise CommandError(f"{name}: no such token file") from None
    except IsADirectoryError:
        raise CommandError(f"{name}: is a folder (use --batch for a folder of tokens)") from None
    except OSError as exc:
        raise CommandError(f"{name}: cannot read: {exc.strerror}") from None


def provisioner_for(args: argparse.Namespace, ws: Workspace) -> Provisioner:
    """A provisioner with the connection's rules compiled (errors exit 1, rendered)."""
    try:
        provisioner = Provisioner(ws.config)
    except SchemaError as exc:
        raise CommandError(f"{ws.config.path.name}: {exc}") from None
    try:
        provisioner.rules(args.connection)
    except RulesError as exc:
        raise CommandError(str(exc)) from None
    return provisioner


def run(args: argparse.Namespace, ws: Workspace) -> int:
    if args.batch and args.token:
        raise CommandError("give either TOKEN or --batch, not both")
    if not args.batch and not args.token:
        raise CommandError("missing TOKEN: a token file, or - for stdin (or --batch)")
    now = parse_at(args.at)
    provisioner = provisioner_for(args, ws)
    try:
        if args.batch:
            return run_batch(args, provisioner, now)
        result = apply_one(args, provisioner, read_token_file(args.token), now, args.dry_run)
    finally:
        provisioner.close()
    if args.json:
        print_json(result.to_json())
    else:
        print("\n".join(result_lines(result)))
    return exit_code(result)


def apply_one(
    args: argparse.Namespace,
    provisioner: Provisioner,
    raw: bytes,
    now: datetime | None,
    dry_run: bool,
) -> Result:
    """One token with the options `apply` and `explain` share."""
    return provisioner.apply(
        args.connection,
        raw,
        now=now,
        dry_run=dry_run,
        allow_samples=args.unsigned_samples,
        request_id=args.request_id,
        nonce=args.nonce,
    )


@dataclass(slots=True)
class Item:
    """One token of a batch, or why it could not be read."""

    label: str
    raw: bytes | None
    request_id: str | None = None
    nonce: str | None = None
    at: datetime | None = None
    problem: str | None = None


def batch_items(source: Path, now: datetime | None) -> tuple[int, Iterator[Item]]:
    """How many items, and the items in input order (files by name, or JSONL lines)."""
    if source.is_dir():
        files = sorted((p for p in source.iterdir() if p.is_file()), key=lambda p: p.name)
        return len(files), (_file_item(p) for p in files)
    try:
        lines = source.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise CommandError(f"--batch {source}: no such file or folder") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise CommandError(f"--batch {source}: cannot read: {exc}") from None
    numbered = [(n, line) for n, line in enumerate(lines, 1) if line.strip()]
    return len(numbered), (_line_item(f"{source.name}:{n}", line, now) for n, line in numbered)


def _file_item(path: Path) -> Item:
    try:
        return Item(path.name, path.read_bytes())
    except OSError as exc:
        return Item(path.name, None, problem=f"cannot read {path.name}: {exc.strerror}")


def _line_item(label: str, line: str, now: datetime | None) -> Item:
    try:
        data = json.loads(line)
    except ValueError as exc:
        return Item(label, None, problem=f"{label}: not JSON: {exc}")
    if not isinstance(data, dict) or not isinstance(data.get("token"), str):
        return Item(label, None, problem=f'{label}: expected {{"token": "<the token text>"}}')
    item = Item(label, data["token"].encode("utf-8"), at=now)
    for key in ("request_id", "nonce", "at"):
        value = data.get(key)
        if value is not None and not isinstance(value, str):
            return Item(label, None, problem=f"{label}: {key}: expected a string")
    item.request_id, item.nonce = data.get("request_id"), data.get("nonce")
    if data.get("at") is not None:
        try:
            item.at = parse_at(data["at"])
        except CommandError as exc:
            return Item(label, None, problem=f"{label}: {exc}")
    return item


def run_batch(args: argparse.Namespace, provisioner: Provisioner, now: datetime | None) -> int:
    total, items = batch_items(Path(args.batch), now)
    conn = provisioner.config.connection(args.connection)
    code = EXIT_OK
    with _Progress(total) as advance:
        for item in items:
            if item.raw is None:
                result = provisioner.reject(
                    conn,
                    "malformed",
                    item.problem or "unreadable",
                    now=item.at or now or datetime.now(UTC),
                    dry_run=args.dry_run,
                )
            else:
                result = provisioner.apply(
                    args.connection,
                    item.raw,
                    now=item.at or now,
                    dry_run=args.dry_run,
                    allow_samples=args.unsigned_samples,
                    request_id=item.request_id or args.request_id,
                    nonce=item.nonce or args.nonce,
                )
            if result.outcome == "error":
                code = EXIT_STORE
            if args.json:
                print_json(result.to_json())
            else:
                print(f"{item.label}: " + "\n".join(result_lines(result)))
            sys.stdout.flush()
            advance()
    return code


class _Progress:
    """A rich progress bar on stderr, only when stderr is a terminal."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.bar: Any = None

    def __enter__(self) -> Any:
        if not sys.stderr.isatty():
            return lambda: None
        from rich.console import Console
        from rich.progress import Progress

        self.bar = Progress(console=Console(stderr=True), transient=True)
        self.bar.start()
        task = self.bar.add_task("provisioning", total=self.total)
        return lambda: self.bar.advance(task)

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.stop()
