"""The SQLite user store: sqlite-utils for the schema, prepared SQL on the hot path.

Durability and concurrency choices (docs/provisioning.md): WAL, `synchronous=NORMAL`
(a crashed process loses nothing committed; a power cut may lose the last commits but
never corrupts), foreign keys on, a 5 s busy timeout per statement, and every token in
one `BEGIN IMMEDIATE` transaction that is retried whole, with jittered backoff, for up to
`retry_seconds` while another process holds the write lock — so several processes can
provision into one file and nobody sees "database is locked".
"""

from __future__ import annotations

import fcntl
import os
import random
import sqlite3
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from engine.store import sqlite_writers as writers
from engine.store.base import (
    AuditRow,
    StoreError,
    T,
    retried,
)
from engine.store.reads import AccountReads
from engine.store.rekey import META_TABLE, write_meta
from engine.store.schema import Layout, ensure_schema, key_column
from engine.store.sqlite_writers import (
    AUTOCHECKPOINT_PAGES,
    Checkpointer,
    busy,
    rollback,
    writer_lock,
)
from engine.store.values import fold, iso
from engine.store.versions import Shape, behind, check_version, describe, is_current, layout_rows
from engine.store.writes import SqlTransaction

ID_FLOOR_ROW = "users_id_floor"  # the highest id of a deleted account (store_meta)


class SqliteTransaction(SqlTransaction):
    """The Transaction of one token on an open SQLite connection (see base.Transaction)."""

    def __init__(self, store: SqliteStore) -> None:
        super().__init__(store, "?", store.conn)
        # The row id of the link find_linked_user found in this transaction, so that
        # touch_link updates it without a second search of the links index.
        self.found_link: tuple[str, str, int] | None = None

    def _insert(self, sql: str, values: Sequence[object]) -> int:
        row_id = self._conn.execute(sql, values).lastrowid
        assert row_id is not None
        return int(row_id)

    def _many(self, sql: str, rows: list[tuple[object, ...]]) -> None:
        self._conn.executemany(sql, rows)

    def _found(self, connection: str, subject_key: str, row: tuple[Any, ...]) -> None:
        self.found_link = (connection, subject_key, row[-1])

    def delete_user(self, user_id: int) -> dict[str, int]:
        counts = super().delete_user(user_id)
        self._conn.execute(  # no later account takes this id (SqliteStore._insert_sql)
            f"INSERT INTO {META_TABLE} (name, value) VALUES (?, ?) ON CONFLICT (name)"
            " DO UPDATE SET value = MAX(CAST(value AS INTEGER), CAST(excluded.value AS INTEGER))",
            (ID_FLOOR_ROW, str(user_id)),
        )
        return counts

    def touch_link(self, connection: str, subject_key: str, now: datetime) -> None:
        found = self.found_link
        if found is not None and found[0] == connection and found[1] == subject_key:
            self._conn.execute(
                "UPDATE identity_links SET last_seen_at = ? WHERE rowid = ?", (iso(now), found[2])
            )
            return
        super().touch_link(connection, subject_key, now)


class SqliteStore(AccountReads):
    """A SQLite file (or ":memory:") holding users, links, audit and replay entries."""

    conn: sqlite3.Connection

    def __init__(
        self,
        path: Path | str,
        layout: Layout,
        *,
        busy_timeout_ms: int = 5000,
        retry_seconds: float = 120.0,
        synchronous: str = "NORMAL",
        pragmas: Mapping[str, object] | None = None,
        migrate: str = "auto",
    ) -> None:
        self.path = str(path)
        self.layout = layout
        self.retry_seconds = retry_seconds
        self._lock_fd: int | None = None  # opened on the first write (dry runs make none)
        self._checkpointer: Checkpointer | None = None
        self._commits = 0
        try:
            self.conn = sqlite3.connect(
                self.path,
                isolation_level=None,
                timeout=busy_timeout_ms / 1000,
                check_same_thread=False,
                cached_statements=256,
            )
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open the store {self.path}: {exc}") from None
        self.conn.create_function("jitprov_fold", 1, fold_sql, deterministic=True)
        try:
            self._retrying(lambda: self._setup(synchronous, pragmas or {}, migrate))
        except StoreError:
            self.conn.close()
            raise
        self._txn = SqliteTransaction(self)  # stateless: one serves every transaction
        self.insert_sql = self._insert_sql()
        self.init_reads(layout, "?")
        prefixed = ", ".join(f'u."{name}"' for name in layout.scalars)
        self.select_linked = (  # the account's row and the link's row id in one statement
            f"SELECT u.id, u.created_at, u.updated_at, {prefixed}, u.disabled_at, l.rowid"
            " FROM identity_links l"
            " JOIN users u ON u.id = l.user_id WHERE l.connection = ? AND l.subject_key = ?"
        )

    def _setup(self, synchronous: str, pragmas: Mapping[str, object], migrate: str) -> None:
        conn = self.conn
        if self.path != ":memory:":
            mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
            if str(mode).lower() != "wal":
                conn.execute("PRAGMA journal_mode = WAL")
        conn.execute(f"PRAGMA synchronous = {synchronous}")
        # Checkpoints run in a background thread (Checkpointer) so that no sign-in pays
        # for one; SQLite's own automatic checkpoint stays as a backstop, far later.
        conn.execute(f"PRAGMA wal_autocheckpoint = {AUTOCHECKPOINT_PAGES}")
        conn.execute("PRAGMA foreign_keys = ON")
        meta = read_meta(conn)
        if migrate != "never" and (meta is None or not is_current(meta, self.layout)):
            check_version(meta or {}, self.path)
            if migrate == "manual" and has_tables(conn):
                raise behind(self.path)
            self.migrate()
        for name, value in pragmas.items():  # e.g. tests' query_only, max_page_count
            conn.execute(f"PRAGMA {name} = {value}")

    def _insert_sql(self) -> str:
        # A new account's id is past every id ever given, deleted ones included (SQLite
        # would otherwise give a deleted last account's id again, and the audit rows of
        # the deleted account would read as the new one's history): the larger of the
        # highest id and the floor `users delete` leaves in store_meta, plus one.
        names = [*self.layout.scalars, *(key_column(k) for k in self.layout.keys)]
        names += ["created_at", "updated_at"]
        columns = ", ".join(f"[{n}]" for n in names)
        marks = ", ".join("?" for _ in names)
        next_id = (
            "(SELECT MAX(COALESCE((SELECT MAX(id) FROM users), 0),"
            f" COALESCE((SELECT CAST(value AS INTEGER) FROM {META_TABLE}"
            f" WHERE name = '{ID_FLOOR_ROW}'), 0)) + 1)"
        )
        return f"INSERT INTO users (id, {columns}) VALUES ({next_id}, {marks})"

    def migrate(self, *, apply: bool = True) -> list[str] | None:
        """Bring the schema up to the layout (engine.store.versions): None when it was,
        else what changed (`apply=False`: what would change; nothing is kept)."""
        conn = self.conn
        conn.execute("BEGIN IMMEDIATE")  # the write lock: openers at once queue here
        try:
            meta = read_meta(conn) or {}
            check_version(meta, self.path)
            if is_current(meta, self.layout):
                conn.execute("ROLLBACK")
                return None
            before = _shape(conn)
            ensure_schema(conn, self.layout)
            write_meta(conn.executemany, layout_rows(self.layout), "?")
            changes = describe(before, _shape(conn))
            conn.execute("COMMIT" if apply else "ROLLBACK")
            return changes
        except BaseException:
            rollback(conn)
            raise

    # -- transactions ---------------------------------------------------------------

    def atomic(self, work: Callable[[SqliteTransaction], T], *, write: bool = True) -> T:
        if not write:
            return self._transaction(work, "BEGIN", "ROLLBACK")
        if self._lock_fd is None:
            self._lock_fd = writer_lock(self.path)
            if self._lock_fd is None:
                return self._transaction(work, "BEGIN IMMEDIATE", "COMMIT")
        self._commits += 1
        if self._commits % writers.CHECKPOINT_EVERY == 0:
            if self._checkpointer is None:
                self._checkpointer = Checkpointer(self.path)
            self._checkpointer.poke()
        # Writers queue on an advisory file lock first: the kernel wakes the next one
        # the moment the lock is released, where SQLite's busy handler would sleep in
        # steps of up to 100 ms. SQLite's own locking still guards against writers
        # that do not take this lock (another tool on the same file).
        fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
        try:
            return self._transaction(work, "BEGIN IMMEDIATE", "COMMIT")
        finally:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)

    def writer_turn(self, wait: bool = True) -> bool:
        """Take this store's turn in the writers' queue (`<store>.lock`) ahead of the
        next write transaction, which keeps it and gives it up when it ends. Without
        `wait`, False at once when another writer has the turn; True where there is no
        queue (an in-memory store). `jitprov serve` takes its turn this way so that a
        worker can validate other tokens while another process writes."""
        if self._lock_fd is None:
            self._lock_fd = writer_lock(self.path)
            if self._lock_fd is None:
                return True
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    def end_writer_turn(self) -> None:
        """Give up a turn taken with `writer_turn` that no transaction used (harmless
        when it was not taken or is already given up)."""
        if self._lock_fd is not None:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)

    def _transaction(self, work: Callable[[SqliteTransaction], T], begin: str, end: str) -> T:
        """`work` in one transaction (`begin` ... `end`); retried whole while busy."""
        try:
            return self._attempt(work, begin, end)
        except sqlite3.Error as exc:
            if not busy(exc):
                raise StoreError(f"store {self.path}: {exc}") from exc
        return self._retrying(lambda: self._attempt(work, begin, end))

    def _attempt(self, work: Callable[[SqliteTransaction], T], begin: str, end: str) -> T:
        conn = self.conn
        self._txn.found_link = None
        conn.execute(begin)
        try:
            value = work(self._txn)
            conn.execute(end)
            return value
        except BaseException:
            rollback(conn)
            raise

    def _retrying(self, attempt: Callable[[], T]) -> T:
        """Run `attempt`, again while SQLite reports busy, for up to `retry_seconds`;
        other errors → StoreError."""
        deadline = time.monotonic() + self.retry_seconds
        delay = 0.002
        while True:
            try:
                return attempt()
            except sqlite3.Error as exc:
                if busy(exc) and time.monotonic() < deadline:
                    retried("sqlite")
                    time.sleep(delay * (0.5 + random.random()))
                    delay = min(delay * 2, 0.1)
                    continue
                raise StoreError(f"store {self.path}: {exc}") from exc

    def write_audit(self, row: AuditRow) -> None:
        self.atomic(lambda txn: txn.write_audit(row))

    # -- reads ----------------------------------------------------------------------

    def contains(self, query: str, columns: list[str]) -> tuple[str, list[object]]:
        """Any of `columns` contains `query`, case-insensitively (values.fold, through
        the `jitprov_fold` SQL function)."""
        needle = fold(query.strip())
        if not needle or not columns:
            return "", []
        tests = " OR ".join(f"instr(jitprov_fold({c}), ?) > 0" for c in columns)
        return f" WHERE ({tests})", [needle] * len(columns)

    def close(self) -> None:
        if self._checkpointer is not None:
            self._checkpointer.close()
            self._checkpointer = None
        self.conn.close()
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None


def read_meta(conn: sqlite3.Connection) -> dict[str, str] | None:
    """The `store_meta` rows, or None when the store has no such table."""
    found = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (META_TABLE,)
    ).fetchone()
    if found is None:
        return None
    return {str(n): str(v) for n, v in conn.execute(f"SELECT name, value FROM {META_TABLE}")}


def has_tables(conn: sqlite3.Connection) -> bool:
    """True when the store holds jitprov's tables (it is not a new, empty file)."""
    found = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'users'")
    return found.fetchone() is not None


def _shape(conn: sqlite3.Connection) -> Shape:
    shape: Shape = {"": set()}
    for kind, name in conn.execute("SELECT type, name FROM sqlite_master").fetchall():
        if kind == "table" and not name.startswith("sqlite_"):
            shape[name] = {str(r[1]) for r in conn.execute(f"PRAGMA table_info([{name}])")}
        elif kind == "index" and not name.startswith("sqlite_autoindex"):
            shape[""].add(str(name))
    return shape


def fold_sql(value: object) -> str | None:
    """The `jitprov_fold` SQL function: `values.fold` of a column's text (SQLite's own
    lower() folds ASCII letters only, and nothing normalises to NFC)."""
    return None if value is None else fold(str(value))
