"""`jitprov apply`: provision one token (a file or stdin), or a batch of them.

Exit codes (product.md §3): 0 created/updated/linked/unchanged, 1 usage/config error or
an unreadable token file, 2 denied, 3 rejected, 4 store error; `--batch`: 0 unless any
token ended in `error` (then 4) — denied and rejected tokens are results, one a line.

A batch never stops on one bad item (BATCH_HELP says what the user sees): an item that
cannot be read is rejected through `Provisioner.reject`, the path a token that fails
intake takes (an audit row, nothing else written), and memory stays bounded by the
connection's max_token_bytes: a folder's file is read up to one byte past it, a JSONL
line up to `line_limit()`.
"""

from __future__ import annotations

import argparse
import json
import os
import stat
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

from engine.config import ConfigError, Connection
from engine.provision import Provisioner, RulesError, audit_row
from engine.result import Result
from engine.store import SchemaError, StoreError
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


BATCH_HELP = """\
--batch DIR reads the regular files of DIR (not its folders) in name order; --batch
FILE.jsonl reads one JSON object a line: {"token": "<the token text>"} with optional
"request_id", "nonce" and "at" (ISO 8601 with Z or an offset), which override the
options for that token. Every token gets one result, in input order (with --json, one
apply --json object a line). An item that cannot be read does not stop the batch: a
line that is not such an object, not UTF-8, nested too deeply, holding a lone
surrogate or a bad "at", or a file that is not a readable regular file, is rejected as
malformed, with its line number or file name in the message; a file over
max_token_bytes, or a line longer than 6 x max_token_bytes + 64 KiB (the most a token
within that limit can take as JSON), is rejected as too-large without being read
whole. Each is audited like any rejected token. Exit status: 0 unless a token ended in
error (the store failed, or an internal error on that token), then 4; denied and
rejected tokens are results, not failures."""


def register(subparsers: Any, common: argparse.ArgumentParser) -> None:
    parser = subparsers.add_parser(
        "apply",
        parents=[common],
        help="provision one token, or a batch",
        description="Validate a token, run the connection's rules and write the account.",
        epilog=BATCH_HELP,
    )
    add_token_options(parser)
    parser.add_argument("--dry-run", action="store_true", help="write nothing")
    parser.add_argument(
        "--batch",
        metavar="DIR|FILE.jsonl",
        help="many tokens: the files of DIR in name order, or one JSON object a line (see below)",
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


# A JSONL line may be this much longer than six times max_token_bytes: the keys, the
# optional request_id, nonce and at, and whitespace.
LINE_OVERHEAD = 64 * 1024
# JSON spells one byte of token text in at most six characters (`\u0000` for a control
# character; ensure_ascii spells a 2-, 3- or 4-byte UTF-8 character in 6 or 12).
JSON_EXPANSION = 6
_SKIP = 64 * 1024  # an over-long line is skipped in pieces of this size


def line_limit(conn: Connection) -> int:
    """The longest JSONL line read: the most a token within max_token_bytes can take
    as JSON, plus LINE_OVERHEAD. A longer line is not read (its token is too large)."""
    return JSON_EXPANSION * conn.max_token_bytes + LINE_OVERHEAD


@dataclass(slots=True)
class Item:
    """One token of a batch, or why it could not be read (`reason` and `problem`)."""

    label: str  # before the line of human output: the file name, or FILE.jsonl:N
    raw: bytes | None
    request_id: str | None = None
    nonce: str | None = None
    at: datetime | None = None
    reason: str = "malformed"
    problem: str | None = None  # begins with `where`
    where: str = ""  # in messages: the file name, or "line N"

    def __post_init__(self) -> None:
        self.where = self.where or self.label


def shown(name: str) -> str:
    """A file name as text that can be printed and stored: bytes that are not UTF-8
    (kept by the file system's surrogate escapes) become `\\xNN`."""
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def batch_items(
    source: Path, conn: Connection, now: datetime | None
) -> tuple[Callable[[], int | None], Iterator[Item]]:
    """A function counting the items (for the progress bar; None when it cannot be
    known in advance), and the items in input order: the files of a folder by name,
    or the non-blank lines of a JSONL file. Only a missing or unreadable `source`
    raises (CommandError); everything wrong with one item is that item's `problem`."""
    if source.is_dir():
        try:
            entries = sorted(os.scandir(source), key=lambda e: e.name)
        except OSError as exc:
            raise CommandError(f"--batch {source}: cannot read: {exc.strerror}") from None
        files = [e for e in entries if not _is_dir(e)]  # not recursive
        return lambda: len(files), (_file_item(e, conn) for e in files)
    try:
        handle = source.open("rb")
    except FileNotFoundError:
        raise CommandError(f"--batch {source}: no such file or folder") from None
    except OSError as exc:
        raise CommandError(f"--batch {source}: cannot read: {exc.strerror}") from None
    limit = line_limit(conn)

    def count() -> int | None:
        if not source.is_file():
            return None  # a pipe can be read once only
        with source.open("rb") as again:
            return sum(1 for _, line in _lines(again, limit) if line is None or line.strip())

    def items() -> Iterator[Item]:
        with handle:
            for number, line in _lines(handle, limit):
                if line is None:
                    yield Item(
                        f"{shown(source.name)}:{number}",
                        None,
                        where=f"line {number}",
                        reason="too-large",
                        problem=f"line {number}: longer than {limit} bytes, the most a "
                        f"token within max_token_bytes ({conn.max_token_bytes}) can take "
                        "as a JSON line: not read",
                    )
                elif line.strip():
                    yield _line_item(f"{shown(source.name)}:{number}", number, line, now)

    return count, items()


def _is_dir(entry: os.DirEntry[str]) -> bool:
    try:
        return entry.is_dir()  # a link to a folder too
    except OSError:
        return False  # reading it will say what is wrong


def _lines(handle: BinaryIO, limit: int) -> Iterator[tuple[int, bytes | None]]:
    """(line number from 1, the line without its end) for each line; None instead of a
    line longer than `limit`, which is skipped without being held in memory."""
    number = 0
    while True:
        line = handle.readline(limit + 1)
        if not line:
            return
        number += 1
        if len(line) > limit and not line.endswith(b"\n"):
            while line and not line.endswith(b"\n"):
                line = handle.readline(_SKIP)
            yield number, None
            continue
        if number == 1 and line.startswith(b"\xef\xbb\xbf"):  # a UTF-8 byte-order mark
            line = line[3:]
        yield number, line.rstrip(b"\r\n")


def _file_item(entry: os.DirEntry[str], conn: Connection) -> Item:
    """A file of a batch folder, read up to one byte past max_token_bytes."""
    label = shown(entry.name)
    limit = conn.max_token_bytes
    try:
        # O_NONBLOCK: opening a named pipe must not wait for a writer (it is then
        # refused as not a regular file); it changes nothing for a regular file.
        # Read with os.read on the descriptor: a buffered file object cost more than
        # the read itself, per file of a batch.
        fd = os.open(entry.path, os.O_RDONLY | os.O_NONBLOCK)
        try:
            status = os.fstat(fd)
            if not stat.S_ISREG(status.st_mode):
                return Item(label, None, problem=f"{label}: not a regular file")
            # The file's size (capped at the limit) plus one byte: enough to see a file
            # that grew past the limit, without allocating the limit for every file.
            raw = _read_up_to(fd, min(status.st_size, limit) + 1)
            if len(raw) > status.st_size:  # it grew since: read on, up to the limit
                raw += _read_up_to(fd, limit + 1 - len(raw))
        finally:
            os.close(fd)
    except OSError as exc:
        return Item(label, None, problem=f"{label}: cannot read: {exc.strerror or exc}")
    if len(raw) > limit:
        size = max(status.st_size, len(raw))
        return Item(
            label,
            None,
            reason="too-large",
            problem=f"{label}: expected at most {limit} bytes (max_token_bytes), found {size}",
        )
    return Item(label, raw)


def _read_up_to(fd: int, size: int) -> bytes:
    """Up to `size` bytes from `fd`, fewer only at the end of the file."""
    parts = []
    while size > 0:
        part = os.read(fd, size)
        if not part:
            break
        parts.append(part)
        size -= len(part)
    return b"".join(parts)


def _number(text: str) -> object:
    """Numbers in a batch line are never a value we read: not converted at all (a long
    one would hit Python's int/str limit), only kept apart from strings."""
    return _NOT_TEXT


_NOT_TEXT = object()


def _line_item(label: str, number: int, line: bytes, now: datetime | None) -> Item:
    """One JSONL line: `{"token": "...", "request_id"?, "nonce"?, "at"?}`."""
    item = _read_line(label, f"line {number}", line, now)
    item.where = f"line {number}"
    return item


def _read_line(label: str, where: str, line: bytes, now: datetime | None) -> Item:
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError as exc:
        problem = f"{where}: not UTF-8 (byte 0x{line[exc.start]:02x} at byte {exc.start + 1})"
        return Item(label, None, problem=problem)
    try:
        data = json.loads(text, parse_int=_number, parse_float=_number, parse_constant=_number)
    except json.JSONDecodeError as exc:
        return Item(label, None, problem=f"{where}: not JSON: {exc.msg} at column {exc.colno}")
    except RecursionError:
        return Item(label, None, problem=f"{where}: JSON nested too deeply")
    if not isinstance(data, dict) or not isinstance(data.get("token"), str):
        return Item(label, None, problem=f'{where}: expected {{"token": "<the token text>"}}')
    for key in ("token", "request_id", "nonce", "at"):
        value = data.get(key)
        if value is not None and not isinstance(value, str):
            return Item(label, None, problem=f"{where}: {key}: expected a string")
        if isinstance(value, str) and not _encodable(value):
            return Item(
                label,
                None,
                problem=f"{where}: {key}: holds a lone surrogate (\\uD800-\\uDFFF), "
                "which is not text",
            )
    item = Item(label, data["token"].encode("utf-8"), data.get("request_id"), data.get("nonce"))
    item.at = now
    if data.get("at") is not None:
        try:
            item.at = parse_time(data["at"], '"at"')
        except CommandError as exc:
            return Item(label, None, problem=f"{where}: {exc}")
    return item


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def run_batch(args: argparse.Namespace, provisioner: Provisioner, now: datetime | None) -> int:
    conn = provisioner.config.connection(args.connection)
    count, items = batch_items(Path(args.batch), conn, now)
    code = EXIT_OK
    with _Progress(count) as advance:
        for item in items:
            result = _batch_one(args, provisioner, conn, item, now)
            if result.outcome == "error":
                code = EXIT_STORE
            if args.json:
                print_json(result.to_json())
            else:
                print(f"{item.label}: " + "\n".join(result_lines(result)))
            sys.stdout.flush()
            advance()
    return code


def _batch_one(
    args: argparse.Namespace,
    provisioner: Provisioner,
    conn: Connection,
    item: Item,
    now: datetime | None,
) -> Result:
    """One item's result. An item that could not be read is rejected through the same
    engine path as a token that fails intake (Provisioner.reject: an audit row, nothing
    else written); a bug met on one token is that token's `error`, not the batch's end."""
    moment = item.at or now or datetime.now(UTC)
    if item.raw is None:
        problem = item.problem or "unreadable"
        return provisioner.reject(conn, item.reason, problem, now=moment, dry_run=args.dry_run)
    try:
        return provisioner.apply(
            args.connection,
            item.raw,
            now=moment,
            dry_run=args.dry_run,
            allow_samples=args.unsigned_samples,
            request_id=item.request_id or args.request_id,
            nonce=item.nonce or args.nonce,
        )
    except (RulesError, ConfigError):
        raise  # the same for every token: the batch cannot go on
    except Exception as exc:  # a bug must not stop the other tokens
        if os.environ.get("JITPROV_DEBUG"):
            raise
        return _internal_error(provisioner, conn, item, exc, moment, args.dry_run)


def _internal_error(
    provisioner: Provisioner,
    conn: Connection,
    item: Item,
    exc: Exception,
    now: datetime,
    dry_run: bool,
) -> Result:
    """`error` for a token whose processing raised: nothing of it was written (the
    store transaction rolled back); its audit row is attempted on its own, as for a
    store error (product.md §2 step 8)."""
    rules = provisioner.rules(conn.id)
    message = (
        f"{item.where}: internal error: {type(exc).__name__}: {exc} "
        "(set JITPROV_DEBUG=1 to see the traceback)"
    )
    message = message.encode("utf-8", "backslashreplace").decode("utf-8")
    result = Result(
        "error",
        conn.id,
        message=message,
        sso="continue" if conn.on_error == "continue" else "stop",
        redact=conn.redact,
        rules_sha256=rules.sha256,
        dry_run=dry_run,
    )
    if dry_run:
        return result
    try:
        provisioner.store().write_audit(audit_row(result, now))
        result.audit_written, note = True, "the audit row was written"
    except StoreError as failure:
        result.audit_written = False
        note = f"the audit row could not be written either: {failure}"
    result.message = f"{result.message}; {note}"
    return result


class _Progress:
    """A rich progress bar on stderr, only when stderr is a terminal."""

    def __init__(self, count: Callable[[], int | None]) -> None:
        self.count = count
        self.bar: Any = None

    def __enter__(self) -> Any:
        if not sys.stderr.isatty():
            return lambda: None
        from rich.console import Console
        from rich.progress import Progress

        self.bar = Progress(console=Console(stderr=True), transient=True)
        self.bar.start()
        task = self.bar.add_task("provisioning", total=self.count())
        return lambda: self.bar.advance(task)

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.stop()
