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
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from engine.store import sqlite_writers as writers
from engine.store.base import (
    AuditRow,
    Member,
    StoredUser,
    StoreError,
    T,
    UserWrite,
)
from engine.store.schema import Layout, ensure_schema, key_column, schema_is_current, set_table
from engine.store.sqlite_sql import (
    SELECT_AUDIT,
    audit_row_from,
    casefold_sql,
    contains,
    encoded,
    member_sql,
    update_sql,
)
from engine.store.sqlite_writers import (
    AUTOCHECKPOINT_PAGES,
    Checkpointer,
    busy,
    rollback,
    writer_lock,
)
from engine.store.values import fold, from_column, iso, to_column
from rules.plan import Scalar


class SqliteTransaction:
    """The Transaction of one token on an open connection (see base.Transaction)."""

    def __init__(self, store: SqliteStore) -> None:
        self._store = store
        self._conn = store.conn
        # The row id of the link find_linked_user found in this transaction, so that
        # touch_link updates it without a second search of the links index.
        self.found_link: tuple[str, str, int] | None = None

    def claim_token(
        self, connection: str, token_id: str, expires_at: datetime | None, now: datetime
    ) -> bool:
        cursor = self._conn.execute(
            "INSERT INTO seen_tokens (connection, token_id, expires_at) VALUES (?, ?, ?) "
            "ON CONFLICT (connection, token_id) DO UPDATE SET expires_at = excluded.expires_at"
            " WHERE seen_tokens.expires_at IS NOT NULL AND seen_tokens.expires_at <= ?",
            (connection, token_id, None if expires_at is None else iso(expires_at), iso(now)),
        )
        return cursor.rowcount == 1

    def token_seen(self, connection: str, token_id: str, now: datetime) -> bool:
        row = self._conn.execute(
            "SELECT expires_at FROM seen_tokens WHERE connection = ? AND token_id = ?",
            (connection, token_id),
        ).fetchone()
        return row is not None and (row[0] is None or row[0] > iso(now))

    def load_user(self, user_id: int) -> StoredUser | None:
        return self._store.load_user(user_id)

    def find_linked_user(self, connection: str, subject_key: str) -> StoredUser | None:
        row = self._conn.execute(self._store.select_linked, (connection, subject_key)).fetchone()
        if row is None:
            return None
        self.found_link = (connection, subject_key, row[-1])
        return self._store.complete(row)

    def find_by_key(self, field: str, value: Scalar) -> list[int]:
        if field not in self._store.layout.keys:
            raise StoreError(f"field {field!r} has no case-insensitive key column")
        rows = self._conn.execute(
            f"SELECT id FROM users WHERE [{key_column(field)}] = ? ORDER BY id LIMIT 2",
            (fold(value),),
        ).fetchall()
        return [int(r[0]) for r in rows]

    def insert_user(self, fields: Mapping[str, Scalar], now: datetime) -> int:
        layout = self._store.layout
        values = [to_column(fields.get(name)) for name in layout.scalars]
        values += [fold(fields.get(name)) for name in layout.keys]
        stamp = iso(now)
        cursor = self._conn.execute(self._store.insert_sql, (*values, stamp, stamp))
        user_id = cursor.lastrowid
        assert user_id is not None
        return user_id

    def update_user(self, user_id: int, write: UserWrite, now: datetime) -> None:
        layout = self._store.layout
        if write.fields:
            names: list[str] = []
            values: list[object] = []
            for name, value in write.fields.items():
                names.append(name)
                values.append(to_column(value))
                if name in layout.keys:
                    names.append(key_column(name))
                    values.append(fold(value))
            self._conn.execute(update_sql(tuple(names)), (*values, iso(now), user_id))
        elif write:
            self._conn.execute("UPDATE users SET updated_at = ? WHERE id = ?", (iso(now), user_id))
        self.write_members(user_id, write)

    def write_members(self, user_id: int, write: UserWrite) -> None:
        for name, rows in write.delete.items():
            if rows:
                self._conn.executemany(
                    member_sql(
                        "DELETE FROM [{}] WHERE user_id = ? AND value = ? AND source = ?", name
                    ),
                    [(user_id, value, source) for value, source in rows],
                )
        for name, rows in write.insert.items():
            if rows:
                self._conn.executemany(
                    member_sql("INSERT INTO [{}] (user_id, value, source) VALUES (?, ?, ?)", name),
                    [(user_id, value, source) for value, source in rows],
                )

    def write_link(
        self, connection: str, subject: str, subject_key: str, user_id: int, now: datetime
    ) -> None:
        stamp = iso(now)
        self._conn.execute(
            "INSERT INTO identity_links"
            " (connection, subject, subject_key, user_id, created_at, last_seen_at)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (connection, subject, subject_key, user_id, stamp, stamp),
        )

    def touch_link(self, connection: str, subject_key: str, now: datetime) -> None:
        found = self.found_link
        if found is not None and found[0] == connection and found[1] == subject_key:
            self._conn.execute(
                "UPDATE identity_links SET last_seen_at = ? WHERE rowid = ?", (iso(now), found[2])
            )
            return
        self._conn.execute(
            "UPDATE identity_links SET last_seen_at = ? WHERE connection = ? AND subject_key = ?",
            (iso(now), connection, subject_key),
        )

    def write_audit(self, row: AuditRow) -> int:
        cursor = self._conn.execute(
            "INSERT INTO audit (at, connection, subject, token_id, outcome, reason, message,"
            " user_id, changes, trace, rules_sha256) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                row.at,
                row.connection,
                row.subject,
                row.token_id,
                row.outcome,
                row.reason,
                row.message,
                row.user_id,
                encoded(row.changes),
                encoded(row.trace),
                row.rules_sha256,
            ),
        )
        assert cursor.lastrowid is not None
        return cursor.lastrowid


class SqliteStore:
    """A SQLite file (or ":memory:") holding users, links, audit and replay entries."""

    def __init__(
        self,
        path: Path | str,
        layout: Layout,
        *,
        busy_timeout_ms: int = 5000,
        retry_seconds: float = 120.0,
        synchronous: str = "NORMAL",
        pragmas: Mapping[str, object] | None = None,
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
        self.conn.create_function("jitprov_casefold", 1, casefold_sql, deterministic=True)
        try:
            self._retrying(lambda: self._setup(synchronous, pragmas or {}))
        except StoreError:
            self.conn.close()
            raise
        self._txn = SqliteTransaction(self)  # stateless: one serves every transaction
        self.insert_sql = self._insert_sql()
        self._scalars = tuple(layout.scalars)
        self._typed = [(n, k) for n, k in layout.scalars.items() if k != "text"]
        columns = ", ".join(f"[{name}]" for name in layout.scalars)
        self._select_user = f"SELECT id, created_at, updated_at, {columns} FROM users"
        prefixed = ", ".join(f"u.[{name}]" for name in layout.scalars)
        self.select_linked = (  # the account's row and the link's row id in one statement
            f"SELECT u.id, u.created_at, u.updated_at, {prefixed}, l.rowid FROM identity_links l"
            " JOIN users u ON u.id = l.user_id WHERE l.connection = ? AND l.subject_key = ?"
        )
        # One statement for every set's member rows and the links (index -1): the account's
        # whole state in two round trips, however many set fields there are.
        parts = [
            f"SELECT {i}, value, source FROM [{set_table(name)}] WHERE user_id = ?"
            for i, name in enumerate(layout.sets)
        ]
        parts.append("SELECT -1, connection, subject FROM identity_links WHERE user_id = ?")
        self._select_members = " UNION ALL ".join(parts)
        self._member_params = len(parts)

    def _setup(self, synchronous: str, pragmas: Mapping[str, object]) -> None:
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
        if not schema_is_current(conn, self.layout):
            conn.execute("BEGIN IMMEDIATE")
            try:
                ensure_schema(conn, self.layout)
                conn.execute("COMMIT")
            except BaseException:
                rollback(conn)
                raise
        for name, value in pragmas.items():  # e.g. tests' query_only, max_page_count
            conn.execute(f"PRAGMA {name} = {value}")

    def _insert_sql(self) -> str:
        names = [*self.layout.scalars, *(key_column(k) for k in self.layout.keys)]
        names += ["created_at", "updated_at"]
        columns = ", ".join(f"[{n}]" for n in names)
        marks = ", ".join("?" for _ in names)
        return f"INSERT INTO users ({columns}) VALUES ({marks})"

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
                    time.sleep(delay * (0.5 + random.random()))
                    delay = min(delay * 2, 0.1)
                    continue
                raise StoreError(f"store {self.path}: {exc}") from exc

    def write_audit(self, row: AuditRow) -> int:
        return self.atomic(lambda txn: txn.write_audit(row))

    # -- reads ----------------------------------------------------------------------

    def load_user(self, user_id: int) -> StoredUser | None:
        """One account with its members and links (inside or outside a transaction)."""
        row = self.conn.execute(self._select_user + " WHERE id = ?", (user_id,)).fetchone()
        return None if row is None else self.complete(row)

    def complete(self, row: tuple[Any, ...]) -> StoredUser:
        """An account from its `users` row, with its members and links read."""
        user = self._user(row)
        sets, members, links = self.layout.sets, user.members, user.links
        for index, first, second in self.conn.execute(
            self._select_members, (user.id,) * self._member_params
        ):
            if index < 0:
                links.append((first, second))
            else:
                members[sets[index]].add((first, second))
        links.sort()
        return user

    def _user(self, row: tuple[Any, ...]) -> StoredUser:
        """An account from its `users` row (id, created_at, updated_at, the scalars, then
        anything else), no members yet. Text columns come back as text; the other kinds are converted."""
        scalars = self._scalars
        fields: dict[str, Scalar] = dict(zip(scalars, row[3 : 3 + len(scalars)], strict=True))
        for name, kind in self._typed:
            if fields[name] is not None:
                fields[name] = from_column(kind, fields[name])
        members: dict[str, set[Member]] = {name: set() for name in self.layout.sets}
        return StoredUser(row[0], fields, members, [], row[1], row[2])

    def users(self) -> list[StoredUser]:
        def read(_: SqliteTransaction) -> list[StoredUser]:
            users = {
                u.id: u
                for u in map(self._user, self.conn.execute(self._select_user + " ORDER BY id"))
            }
            for name in self.layout.sets:
                sql = f"SELECT user_id, value, source FROM [{set_table(name)}]"
                for user_id, value, source in self.conn.execute(sql):
                    if user_id in users:
                        users[user_id].members[name].add((value, source))
            sql = "SELECT user_id, connection, subject FROM identity_links"
            for user_id, connection, subject in self.conn.execute(sql):
                if user_id in users:
                    users[user_id].links.append((connection, subject))
            for user in users.values():
                user.links.sort()
            return list(users.values())

        return self.atomic(read, write=False)

    def user_by_username(self, username: str) -> StoredUser | None:
        def read(_: SqliteTransaction) -> StoredUser | None:
            row = self.conn.execute(
                "SELECT id FROM users WHERE username_key = ?", (username.casefold(),)
            ).fetchone()
            return None if row is None else self.load_user(int(row[0]))

        return self.atomic(read, write=False)

    def audit(self, *, limit: int | None = None, user_id: int | None = None) -> list[AuditRow]:
        sql = SELECT_AUDIT
        params: list[object] = []
        if user_id is not None:
            sql += " WHERE user_id = ?"
            params.append(user_id)
        sql += " ORDER BY id DESC"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)

        def read(_: SqliteTransaction) -> list[AuditRow]:
            return [audit_row_from(r) for r in self.conn.execute(sql, params)]

        return self.atomic(read, write=False)

    def search_users(
        self, query: str, *, limit: int, offset: int = 0
    ) -> tuple[list[StoredUser], int]:
        texts = [n for n, kind in self.layout.scalars.items() if kind == "text"]
        where, params = contains(query, [f"[{n}]" for n in texts])

        def read(_: SqliteTransaction) -> tuple[list[StoredUser], int]:
            total = self.conn.execute(f"SELECT count(*) FROM users{where}", params).fetchone()
            rows = self.conn.execute(
                f"{self._select_user}{where} ORDER BY id LIMIT ? OFFSET ?",
                [*params, limit, offset],
            ).fetchall()
            return [self.complete(row) for row in rows], int(total[0])

        return self.atomic(read, write=False)

    def search_audit(
        self, query: str, *, limit: int, offset: int = 0
    ) -> tuple[list[AuditRow], int]:
        columns = ["connection", "subject", "token_id", "outcome", "reason", "message"]
        where, params = contains(query, columns)

        def read(_: SqliteTransaction) -> tuple[list[AuditRow], int]:
            total = self.conn.execute(f"SELECT count(*) FROM audit{where}", params).fetchone()
            rows = self.conn.execute(
                f"{SELECT_AUDIT}{where} ORDER BY id DESC LIMIT ? OFFSET ?",
                [*params, limit, offset],
            )
            return [audit_row_from(r) for r in rows], int(total[0])

        return self.atomic(read, write=False)

    def add_members(self, user_id: int, set_field: str, members: Iterable[Member]) -> None:
        rows = list(members)
        self.atomic(lambda txn: txn.write_members(user_id, UserWrite(insert={set_field: rows})))

    def close(self) -> None:
        if self._checkpointer is not None:
            self._checkpointer.close()
            self._checkpointer = None
        self.conn.close()
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None
