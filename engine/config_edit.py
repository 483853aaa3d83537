"""Write one connection back into `jitprov.toml`, keeping comments and layout.

The TUI's connection form (and anything else that edits the config) goes through
`save_connection`: it edits the TOML document with tomlkit, touching only the keys whose
value changed, validates the new text with the very `parse_config` every command uses,
and only then replaces the file (atomically, through a temporary file in the same
folder). An invalid edit raises `ConfigError` naming the key, and leaves the file alone.

Layout choices: a changed value keeps its key's padding and its trailing comment; a new
key goes after the table's last key (before any blank line or comment that introduces
the next table) and is padded like its neighbours when they are aligned; a new
connection is appended as a `[connections.ID]` table at the end of the file.
"""

from __future__ import annotations

import os
import tempfile
from collections import Counter
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import tomlkit
from tomlkit.container import Container
from tomlkit.items import Comment, SingleKey, Table, Whitespace

from engine.config import Config, ConfigError, parse_config

# The order a new connection's keys are written in (product.md §1's example order).
KEY_ORDER = (
    "protocol",
    "issuer",
    "certificate",
    "metadata",
    "metadata_url",
    "metadata_certificate",
    "metadata_signed",
    "jwks",
    "client_secret_env",
    "audience",
    "recipient",
    "require_signed",
    "decryption_key",
    "sp_certificate",
    "sp_key",
    "sp_encryption_certificate",
    "clock_skew",
    "check_cert_dates",
    "allow_sha1",
    "require_in_response_to",
    "max_token_bytes",
    "rules",
    "subject_from",
    "attributes",
    "mode",
    "link_by",
    "on_error",
    "redact",
)


def edit_connection_text(
    text: str, connection_id: str, values: Mapping[str, Any], remove: Iterable[str] = ()
) -> str:
    """The config text with connection `connection_id` given `values` and without the
    keys in `remove`; a value of None also removes its key. Creates the connection when
    it does not exist. Does not validate (see `save_connection`)."""
    doc = tomlkit.parse(text)
    connections = doc.get("connections")
    if connections is None:
        connections = tomlkit.table(is_super_table=True)
        doc["connections"] = connections
    if not isinstance(connections, Table):
        raise ConfigError("jitprov.toml", "connections", "expected a table")
    table = connections.get(connection_id)
    if table is None:
        table = tomlkit.table()
        for key in sorted(values, key=_order):
            if values[key] is not None:
                table[key] = values[key]
        connections[connection_id] = table
        return tomlkit.dumps(doc)
    if not isinstance(table, Table):
        raise ConfigError("jitprov.toml", f"connections.{connection_id}", "expected a table")
    for key in [*remove, *(k for k, v in values.items() if v is None)]:
        if key in table:
            del table[key]
    for key in sorted(values, key=_order):
        value = values[key]
        if value is None:
            continue
        if key in table:
            if _plain(table[key]) != value:
                table[key] = value
        else:
            _append_key(table, key, value)
    return tomlkit.dumps(doc)


def save_connection(
    path: Path, connection_id: str, values: Mapping[str, Any], remove: Iterable[str] = ()
) -> Config:
    """Edit connection `connection_id` in the config file at `path`, validate the result
    with `parse_config`, write it, and return the new Config. Raises ConfigError (and
    writes nothing) when the result is invalid or the file cannot be read or written."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(path.name, None, f"cannot read: {exc}") from None
    new_text = edit_connection_text(text, connection_id, values, remove)
    config = parse_config(new_text, path.resolve())
    if new_text != text:
        write_atomically(path, new_text)
    return config


def connection_problems(
    path: Path, connection_id: str, values: Mapping[str, Any], remove: Iterable[str] = ()
) -> list[tuple[str | None, str]]:
    """Every problem `save_connection` would refuse the edit for, not only the first:
    (the connection's key, or None for the rest of the file; the message), in the order
    the loader finds them. The loader stops at the first problem, so each key found
    wrong is taken out (a required one given a stand-in value) and the edit checked
    again, until it loads or a key is found wrong twice (a problem the next ones hang
    on). Writes nothing; an empty list when the edit would save."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        return [(None, f"cannot read {path.name}: {exc}")]
    stand_ins = {"issuer": "stand-in", "audience": "stand-in", "rules": str(path.resolve())}
    candidate = dict(values)
    prefix = f"connections.{connection_id}."
    problems: list[tuple[str | None, str]] = []
    wrong: set[str] = set()
    for _ in range(len(candidate) + len(stand_ins) + 2):  # each round takes a key out
        try:
            new_text = edit_connection_text(text, connection_id, candidate, remove)
            parse_config(new_text, path.resolve())
            return problems
        except ConfigError as exc:
            where = exc.key or ""
            key = where.removeprefix(prefix).split(".", 1)[0] if where.startswith(prefix) else None
            if key in wrong:  # what follows from taking it out: said already
                return problems
            problems.append((key, exc.detail))
            if key is None:
                return problems
            wrong.add(key)
            candidate[key] = stand_ins.get(key)
    return problems


def write_atomically(path: Path, text: str) -> None:
    """Replace `path` with `text` so a reader never sees half a file."""
    folder = path.resolve().parent
    try:
        fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", dir=folder)
        try:
            with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
                handle.write(text)
            if path.exists():
                os.chmod(temp, path.stat().st_mode & 0o7777)
            os.replace(temp, path)
        except BaseException:
            Path(temp).unlink(missing_ok=True)
            raise
    except OSError as exc:
        raise ConfigError(path.name, None, f"cannot write: {exc.strerror or exc}") from None


def _order(key: str) -> tuple[int, str]:
    return (KEY_ORDER.index(key) if key in KEY_ORDER else len(KEY_ORDER), key)


def _plain(item: Any) -> Any:
    """A tomlkit item as plain Python data, for comparing with a new value."""
    return item.unwrap() if hasattr(item, "unwrap") else item


def _append_key(table: Table, key: str, value: Any) -> None:
    """Insert `key` after the table's last key, padded like its aligned neighbours."""
    container: Container = table.value
    body = container.body
    last = -1
    widths: Counter[int] = Counter()
    for index, (existing, item) in enumerate(body):
        if existing is not None and not isinstance(item, Whitespace | Comment):
            last = index
            # The column where the value starts: the key as written plus its separator.
            widths[len(existing.as_string()) + len(existing.sep)] += 1
    column, count = widths.most_common(1)[0] if widths else (0, 0)
    padding = column - len(key) - len("= ")
    if count > 1 and padding >= 1:
        new_key = SingleKey(key, sep="= ", original=key + " " * padding)
    else:
        new_key = SingleKey(key)
    item = tomlkit.item(value)
    if last == -1 or last == len(body) - 1:
        table.add(new_key, item)
        return
    # tomlkit has no public "insert after"; _insert_at keeps its index maps consistent.
    container._insert_at(last + 1, new_key, item)
