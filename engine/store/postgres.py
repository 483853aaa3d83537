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
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from engine.store.base import AuditRow, StoreError, T, retried
from engine.store.pg_schema import ensure_schema
from engine.store.reads import AccountReads
from engine.store.schema import Layout, key_column
from engine.store.values import fold
from engine.store.writes import SqlTransaction

# serialization_failure, deadlock_detected: the transaction is re-run and decides again.
_RETRY_STATES = ("40001", "40P01")
# unique_violation: a key another server took between our check and our insert. The
# pipeline reads every key before it writes one, so SERIALIZABLE reports that race as
# 40001; a few retries cover the rest, and a real duplicate fails at once.
_UNIQUE_VIOLATION, _UNIQUE_RETRIES = "23505", 3


class PostgresTransaction(SqlTransaction):
    """The Transaction of one token on an open psycopg connection (see base.Transaction)."""

    def __init__(self, store: PostgresStore) -> None:
        super().__init__(store, "%s")

    def _insert(self, sql: str, values: Sequence[object]) -> int:
        row = self._conn.execute(sql + " RETURNING id", values).fetchone()
        assert row is not None
        return int(row[0])

    def _many(self, sql: str, rows: list[tuple[object, ...]]) -> None:
        with self._conn.cursor() as cursor:
            cursor.executemany(sql, rows)


class PostgresStore(AccountReads):
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
        self.conn: Any = self._connect()
        try:
            self._retrying(lambda: self._in_transaction(lambda: ensure_schema(self.conn, layout)))
        except StoreError:
            self.conn.close()
            raise
        self._txn = PostgresTransaction(self)
        self.init_reads(layout, "%s")
        keys = [key_column(k) for k in layout.keys]
        names = [*(f'"{n}"' for n in layout.scalars), *(f'"{k}"' for k in keys)]
        names += ["created_at", "updated_at"]
        self.insert_sql = (
            f"INSERT INTO users ({', '.join(names)}) VALUES ({', '.join('%s' for _ in names)})"
        )
        prefixed = ", ".join(f'u."{name}"' for name in layout.scalars)
        self.select_linked = (
            f"SELECT u.id, u.created_at, u.updated_at, {prefixed} FROM identity_links l"
            " JOIN users u ON u.id = l.user_id WHERE l.connection = %s AND l.subject_key = %s"
        )

    # -- transactions ---------------------------------------------------------------

    def _connect(self) -> Any:
        try:
            return self._psycopg.connect(self.url, autocommit=True, connect_timeout=10)
        except self._psycopg.Error as exc:
            raise StoreError(f"cannot open the store {self.label}: {_first_line(exc)}") from None

    def atomic(self, work: Callable[[PostgresTransaction], T], *, write: bool = True) -> T:
        if self.conn.broken or self.conn.closed:
            self._reconnect()  # a token broke the connection mid-way (and was an error)
        begin = "BEGIN ISOLATION LEVEL SERIALIZABLE" + ("" if write else " READ ONLY")
        return self._retrying(
            lambda: self._in_transaction(lambda: work(self._txn), begin, write=write)
        )

    def _reconnect(self) -> None:
        self.conn = self._connect()
        self._txn = PostgresTransaction(self)

    def _begin(self, begin: str) -> None:
        try:
            self.conn.execute(begin)
        except self._psycopg.OperationalError:
            if not self.conn.broken:
                raise
            # The server went away while we were idle (a restart, a failover, an idle
            # timeout): nothing of this token was sent, so connect again and begin. A
            # connection lost later in a token is not retried — its COMMIT may or may
            # not have happened — and that token is an error.
            self._reconnect()
            self.conn.execute(begin)

    def _in_transaction(
        self, work: Callable[[], T], begin: str = "BEGIN", *, write: bool = True
    ) -> T:
        self._begin(begin)
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
                    retried("postgresql")
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

    def contains(self, query: str, columns: list[str]) -> tuple[str, list[object]]:
        return _contains(query, columns)

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
    """A WHERE clause: any of `columns` contains `query`, compared in lower case: the
    query folded in Python (values.fold: NFC, then lower), the columns by PostgreSQL's
    lower(). That is search for people, never identity: lower() follows the database's
    LC_CTYPE (in a "C" database it lower-cases ASCII letters only) and does not
    normalise to NFC, so a stored text in NFD or with non-ASCII capitals may not be found
    by every spelling. Keys that decide identity are computed in Python, never here."""
    needle = fold(query.strip())
    if not needle or not columns:
        return "", []
    tests = " OR ".join(f"strpos(lower({c}), %s) > 0" for c in columns)
    return f" WHERE ({tests})", [needle] * len(columns)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
