"""The PostgreSQL user store (`[store] url = "postgresql://..."`): the same tables as the
SQLite store, for several application servers sharing one store (product.md §4).

Every token runs in one SERIALIZABLE transaction, retried whole, with jittered backoff,
when PostgreSQL reports a serialization failure, a deadlock, or a unique key another
server took first — so whatever the interleaving, the store ends as some one-by-one
order of the tokens would leave it: no lost update, no duplicate account. Values are
stored exactly as in SQLite (text, numbers as canonical text, booleans as 0/1, moments
as ISO 8601 text), so a store can move between the two and queries read the same.

psycopg 3 is imported on use: it comes with the `postgres` extra.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from engine.store.base import AuditRow, Member, StoredUser, StoreError, T, UserWrite
from engine.store.pg_schema import ensure_schema
from engine.store.schema import Layout, key_column, set_table
from engine.store.sqlite_sql import SELECT_AUDIT, audit_row_from, encoded
from engine.store.values import fold, from_column, iso, to_column
from rules.plan import Scalar

# serialization_failure, deadlock_detected: the transaction is re-run and decides again.
_RETRY_STATES = ("40001", "40P01")
# unique_violation: a key another server took between our check and our insert. The
# pipeline reads every key before it writes one, so SERIALIZABLE reports that race as
# 40001; a few retries cover the rest, and a real duplicate fails at once.
_UNIQUE_VIOLATION, _UNIQUE_RETRIES = "23505", 3


class PostgresTransaction:
    """The Transaction of one token (see base.Transaction)."""

    def __init__(self, store: PostgresStore) -> None:
        self._store = store
        self._conn = store.conn

    def claim_token(
        self, connection: str, token_id: str, expires_at: datetime | None, now: datetime
    ) -> bool:
        cursor = self._conn.execute(
            "INSERT INTO seen_tokens (connection, token_id, expires_at) VALUES (%s, %s, %s)"
            " ON CONFLICT (connection, token_id) DO UPDATE SET expires_at = excluded.expires_at"
            " WHERE seen_tokens.expires_at IS NOT NULL AND seen_tokens.expires_at <= %s",
            (connection, token_id, None if expires_at is None else iso(expires_at), iso(now)),
        )
        return bool(cursor.rowcount == 1)

    def token_seen(self, connection: str, token_id: str, now: datetime) -> bool:
        row = self._conn.execute(
            "SELECT expires_at FROM seen_tokens WHERE connection = %s AND token_id = %s",
            (connection, token_id),
        ).fetchone()
        return row is not None and (row[0] is None or row[0] > iso(now))

    def load_user(self, user_id: int) -> StoredUser | None:
        return self._store.load_user(user_id)

    def find_linked_user(self, connection: str, subject_key: str) -> StoredUser | None:
        row = self._conn.execute(self._store.select_linked, (connection, subject_key)).fetchone()
        return None if row is None else self._store.complete(row)

    def find_by_key(self, field: str, value: Scalar) -> list[int]:
        if field not in self._store.layout.keys:
            raise StoreError(f"field {field!r} has no case-insensitive key column")
        rows = self._conn.execute(
            f'SELECT id FROM users WHERE "{key_column(field)}" = %s ORDER BY id LIMIT 2',
            (fold(value),),
        ).fetchall()
        return [int(r[0]) for r in rows]

    def insert_user(self, fields: Mapping[str, Scalar], now: datetime) -> int:
        layout = self._store.layout
        values = [to_column(fields.get(name)) for name in layout.scalars]
        values += [fold(fields.get(name)) for name in layout.keys]
        stamp = iso(now)
        row = self._conn.execute(self._store.insert_sql, (*values, stamp, stamp)).fetchone()
        assert row is not None
        return int(row[0])

    def update_user(self, user_id: int, write: UserWrite, now: datetime) -> None:
        layout = self._store.layout
        if write.fields:
            assignments: list[str] = []
            values: list[object] = []
            for name, value in write.fields.items():
                assignments.append(f'"{name}" = %s')
                values.append(to_column(value))
                if name in layout.keys:
                    assignments.append(f'"{key_column(name)}" = %s')
                    values.append(fold(value))
            self._conn.execute(
                f"UPDATE users SET {', '.join(assignments)}, updated_at = %s WHERE id = %s",
                (*values, iso(now), user_id),
            )
        elif write:
            self._conn.execute(
                "UPDATE users SET updated_at = %s WHERE id = %s", (iso(now), user_id)
            )
        self.write_members(user_id, write)

    def write_members(self, user_id: int, write: UserWrite) -> None:
        with self._conn.cursor() as cursor:
            for name, rows in write.delete.items():
                if rows:
                    cursor.executemany(
                        f'DELETE FROM "{set_table(name)}"'
                        " WHERE user_id = %s AND value = %s AND source = %s",
                        [(user_id, value, source) for value, source in rows],
                    )
            for name, rows in write.insert.items():
                if rows:
                    cursor.executemany(
                        f'INSERT INTO "{set_table(name)}" (user_id, value, source)'
                        " VALUES (%s, %s, %s)",
                        [(user_id, value, source) for value, source in rows],
                    )

    def write_link(
        self, connection: str, subject: str, subject_key: str, user_id: int, now: datetime
    ) -> None:
        stamp = iso(now)
        self._conn.execute(
            "INSERT INTO identity_links"
            " (connection, subject, subject_key, user_id, created_at, last_seen_at)"
            " VALUES (%s, %s, %s, %s, %s, %s)",
            (connection, subject, subject_key, user_id, stamp, stamp),
        )

    def touch_link(self, connection: str, subject_key: str, now: datetime) -> None:
        self._conn.execute(
            "UPDATE identity_links SET last_seen_at = %s"
            " WHERE connection = %s AND subject_key = %s",
            (iso(now), connection, subject_key),
        )

    def write_audit(self, row: AuditRow) -> int:
        found = self._conn.execute(
            "INSERT INTO audit (at, connection, subject, token_id, outcome, reason, message,"
            " user_id, changes, trace, rules_sha256)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING id",
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
        ).fetchone()
        assert found is not None
        return int(found[0])


class PostgresStore:
    """A PostgreSQL database holding users, links, audit and replay entries."""

    def __init__(self, url: str, layout: Layout, *, retry_seconds: float = 120.0) -> None:
        self.url = url
        self.label = redacted(url)
        self.layout = layout
        self.retry_seconds = retry_seconds
        try:
            import psycopg
        except ImportError:
            raise StoreError(
                "the PostgreSQL store needs psycopg: pip install 'jitprov[postgres]'"
            ) from None
        self._psycopg = psycopg
        try:
            self.conn: Any = psycopg.connect(url, autocommit=True, connect_timeout=10)
        except psycopg.Error as exc:
            raise StoreError(f"cannot open the store {self.label}: {_first_line(exc)}") from None
        try:
            self._retrying(lambda: self._in_transaction(lambda: ensure_schema(self.conn, layout)))
        except StoreError:
            self.conn.close()
            raise
        self._txn = PostgresTransaction(self)
        self._typed = [(n, k) for n, k in layout.scalars.items() if k != "text"]
        scalars = ", ".join(f'"{name}"' for name in layout.scalars)
        keys = [key_column(k) for k in layout.keys]
        names = [*(f'"{n}"' for n in layout.scalars), *(f'"{k}"' for k in keys)]
        names += ["created_at", "updated_at"]
        self.insert_sql = (
            f"INSERT INTO users ({', '.join(names)})"
            f" VALUES ({', '.join('%s' for _ in names)}) RETURNING id"
        )
        self._select_user = f"SELECT id, created_at, updated_at, {scalars} FROM users"
        prefixed = ", ".join(f'u."{name}"' for name in layout.scalars)
        self.select_linked = (
            f"SELECT u.id, u.created_at, u.updated_at, {prefixed} FROM identity_links l"
            " JOIN users u ON u.id = l.user_id WHERE l.connection = %s AND l.subject_key = %s"
        )
        parts = [
            f'SELECT {i}, value, source FROM "{set_table(name)}" WHERE user_id = %(id)s'
            for i, name in enumerate(layout.sets)
        ]
        parts.append("SELECT -1, connection, subject FROM identity_links WHERE user_id = %(id)s")
        self._select_members = " UNION ALL ".join(parts)

    # -- transactions ---------------------------------------------------------------

    def atomic(self, work: Callable[[PostgresTransaction], T], *, write: bool = True) -> T:
        begin = "BEGIN ISOLATION LEVEL SERIALIZABLE" + ("" if write else " READ ONLY")
        return self._retrying(
            lambda: self._in_transaction(lambda: work(self._txn), begin, write=write)
        )

    def _in_transaction(
        self, work: Callable[[], T], begin: str = "BEGIN", *, write: bool = True
    ) -> T:
        self.conn.execute(begin)
        try:
            value = work()
            self.conn.execute("COMMIT" if write else "ROLLBACK")
            return value
        except BaseException:
            self._rollback()
            raise

    def _retrying(self, attempt: Callable[[], T]) -> T:
        """Run `attempt`, again while PostgreSQL asks for a retry, for up to
        `retry_seconds`; other database errors → StoreError."""
        deadline = time.monotonic() + self.retry_seconds
        delay, unique_retries = 0.002, _UNIQUE_RETRIES
        while True:
            try:
                return attempt()
            except self._psycopg.Error as exc:
                state = getattr(exc, "sqlstate", None)
                if state == _UNIQUE_VIOLATION and unique_retries > 0:
                    unique_retries -= 1
                    state = _RETRY_STATES[0]
                if state in _RETRY_STATES and time.monotonic() < deadline:
                    time.sleep(delay * (0.5 + random.random()))
                    delay = min(delay * 2, 0.1)
                    continue
                raise StoreError(f"store {self.label}: {_first_line(exc)}") from exc

    def _rollback(self) -> None:
        """Roll back an open transaction; a failing rollback must not hide the cause."""
        try:
            if self.conn.info.transaction_status != self._psycopg.pq.TransactionStatus.IDLE:
                self.conn.execute("ROLLBACK")
        except self._psycopg.Error:
            pass

    def write_audit(self, row: AuditRow) -> int:
        return self.atomic(lambda txn: txn.write_audit(row))

    # -- reads ----------------------------------------------------------------------

    def load_user(self, user_id: int) -> StoredUser | None:
        row = self.conn.execute(self._select_user + " WHERE id = %s", (user_id,)).fetchone()
        return None if row is None else self.complete(row)

    def complete(self, row: tuple[Any, ...]) -> StoredUser:
        """An account from its `users` row, with its members and links read."""
        user = self._user(row)
        rows = self.conn.execute(self._select_members, {"id": user.id}).fetchall()
        for index, first, second in rows:
            if index < 0:
                user.links.append((first, second))
            else:
                user.members[self.layout.sets[index]].add((first, second))
        user.links.sort()
        return user

    def _user(self, row: tuple[Any, ...]) -> StoredUser:
        fields: dict[str, Scalar] = dict(zip(self.layout.scalars, row[3:], strict=True))
        for name, kind in self._typed:
            if fields[name] is not None:
                fields[name] = from_column(kind, fields[name])
        members: dict[str, set[Member]] = {name: set() for name in self.layout.sets}
        return StoredUser(int(row[0]), fields, members, [], row[1], row[2])

    def users(self) -> list[StoredUser]:
        def read(_: PostgresTransaction) -> list[StoredUser]:
            rows = self.conn.execute(self._select_user + " ORDER BY id").fetchall()
            users = {u.id: u for u in map(self._user, rows)}
            for name in self.layout.sets:
                sql = f'SELECT user_id, value, source FROM "{set_table(name)}"'
                for user_id, value, source in self.conn.execute(sql).fetchall():
                    if user_id in users:
                        users[user_id].members[name].add((value, source))
            sql = "SELECT user_id, connection, subject FROM identity_links"
            for user_id, connection, subject in self.conn.execute(sql).fetchall():
                if user_id in users:
                    users[user_id].links.append((connection, subject))
            for user in users.values():
                user.links.sort()
            return list(users.values())

        return self.atomic(read, write=False)

    def user_by_username(self, username: str) -> StoredUser | None:
        def read(_: PostgresTransaction) -> StoredUser | None:
            row = self.conn.execute(
                "SELECT id FROM users WHERE username_key = %s", (username.casefold(),)
            ).fetchone()
            return None if row is None else self.load_user(int(row[0]))

        return self.atomic(read, write=False)

    def audit(self, *, limit: int | None = None, user_id: int | None = None) -> list[AuditRow]:
        sql = SELECT_AUDIT
        params: list[object] = []
        if user_id is not None:
            sql += " WHERE user_id = %s"
            params.append(user_id)
        sql += " ORDER BY id DESC"
        if limit is not None:
            sql += " LIMIT %s"
            params.append(limit)

        def read(_: PostgresTransaction) -> list[AuditRow]:
            return [audit_row_from(r) for r in self.conn.execute(sql, params).fetchall()]

        return self.atomic(read, write=False)

    def search_users(
        self, query: str, *, limit: int, offset: int = 0
    ) -> tuple[list[StoredUser], int]:
        texts = [f'"{n}"' for n, kind in self.layout.scalars.items() if kind == "text"]
        where, params = _contains(query, texts)

        def read(_: PostgresTransaction) -> tuple[list[StoredUser], int]:
            total = self.conn.execute(f"SELECT count(*) FROM users{where}", params).fetchone()
            rows = self.conn.execute(
                f"{self._select_user}{where} ORDER BY id LIMIT %s OFFSET %s",
                [*params, limit, offset],
            ).fetchall()
            return [self.complete(row) for row in rows], int(total[0])

        return self.atomic(read, write=False)

    def search_audit(
        self, query: str, *, limit: int, offset: int = 0
    ) -> tuple[list[AuditRow], int]:
        columns = ["connection", "subject", "token_id", "outcome", "reason", "message"]
        where, params = _contains(query, columns)

        def read(_: PostgresTransaction) -> tuple[list[AuditRow], int]:
            total = self.conn.execute(f"SELECT count(*) FROM audit{where}", params).fetchone()
            rows = self.conn.execute(
                f"{SELECT_AUDIT}{where} ORDER BY id DESC LIMIT %s OFFSET %s",
                [*params, limit, offset],
            ).fetchall()
            return [audit_row_from(r) for r in rows], int(total[0])

        return self.atomic(read, write=False)

    def add_members(self, user_id: int, set_field: str, members: Iterable[Member]) -> None:
        rows = list(members)
        self.atomic(lambda txn: txn.write_members(user_id, UserWrite(insert={set_field: rows})))

    def close(self) -> None:
        self.conn.close()


def redacted(url: str) -> str:
    """The URL without its password, for messages."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "postgresql://…"
    if parts.password is None:
        return url
    host = parts.hostname or ""
    user = f"{parts.username}:***@" if parts.username else ":***@"
    port = f":{parts.port}" if parts.port else ""
    return urlunsplit(parts._replace(netloc=f"{user}{host}{port}"))


def _contains(query: str, columns: list[str]) -> tuple[str, list[object]]:
    """A WHERE clause: any of `columns` contains `query`, compared in lower case
    (PostgreSQL has no Unicode casefold; lower() differs from it only on a few letters,
    such as ß)."""
    needle = query.strip().lower()
    if not needle or not columns:
        return "", []
    tests = " OR ".join(f"strpos(lower({c}), %s) > 0" for c in columns)
    return f" WHERE ({tests})", [needle] * len(columns)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
