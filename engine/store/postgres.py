"""The PostgreSQL user store (`[store] url = "postgresql://..."`): the same tables as the
SQLite store, for several application servers sharing one store (docs/provisioning.md).

Concurrency by design, not by retry. Every token runs in one READ COMMITTED transaction
that locks what its decisions read, always in the same order:
1. its identity link: a transaction-scoped advisory lock on the hashed (connection,
   subject key) — taken before the link is looked up, so two first logins of one person
   queue here and the second finds the account the first made;
2. the case-insensitive keys it looks up or writes (`username`, the `link_by` field):
   advisory locks on the hashed (field, key);
3. the account's row (`SELECT … FOR NO KEY UPDATE`), which also serialises sign-ins of one
   person through two connections.
A lock is waited for only when it comes later in that order (rank, then hash) than every
lock the transaction holds; one that would come earlier is only tried, and when another
sign-in holds it the transaction lets go of everything and begins again. No wait can
close a cycle, so sign-ins never deadlock: two for different people never wait on each
other, two for the same person take turns, and the store ends as a one-by-one order of
the tokens would leave it. A serialization failure, a deadlock or a unique key taken
first (from writers outside jitprov) is still retried whole, as a backstop.

Each process keeps a pool of connections (psycopg_pool): `pool` at most, a sign-in waits
`pool_timeout` seconds for one and is then an `error`. Each token's statements run in
pipeline mode: statements whose results are not needed yet travel together, so an update
of a known account is two round trips (the lookups with the link's lock, then the writes
with the commit), and psycopg prepares the hot statements on each connection. A
connection found broken before the commit was sent is replaced and the token runs again
(nothing of it was committed); for one lost while committing, the server is asked what
became of the transaction (`txid_status`): committed stands, rolled back runs again, and
only when it cannot tell is the token an `error` saying the outcome is unknown. Values are stored exactly as in SQLite (text,
numbers as canonical text, booleans as 0/1, moments as ISO 8601 text), so a store can move
between the two and queries read the same.

psycopg 3 and psycopg_pool are imported on use: they come with the `postgres` extra.
"""

from __future__ import annotations

import hashlib
import logging
import random
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from engine.store.base import AuditRow, StoredUser, StoreError, T, UserWrite, retried
from engine.store.pg_schema import has_tables, migrate, read_meta
from engine.store.reads import AccountReads
from engine.store.schema import Layout, key_column, set_table
from engine.store.values import fold, iso
from engine.store.versions import behind, check_version, is_current
from engine.store.writes import AUDIT_INSERT, SqlTransaction, audit_values
from rules.plan import Scalar

# serialization_failure, deadlock_detected, lock_not_available (NOWAIT): run it again.
_RETRY_STATES = ("40001", "40P01", "55P03")
# unique_violation: a key a writer outside jitprov took between our check and our insert
# (jitprov's own writers hold the key's lock); a few retries, and a real duplicate fails.
_UNIQUE_VIOLATION, _UNIQUE_RETRIES = "23505", 3
_LOST_RETRIES = 3  # connections found broken before the commit, replaced in a row
_IN_PROGRESS_SECONDS = 5.0  # how long a broken commit's outcome is waited for
_LINK, _KEY, _USER = 0, 1, 2  # lock ranks: the order in which a transaction takes them

logging.getLogger("psycopg").addHandler(logging.NullHandler())  # no stray stderr lines


class LockBusy(Exception):
    """A lock that comes earlier in the order is held by another sign-in: begin again."""


class _Lost(Exception):
    """The connection broke during a token; `in_doubt`: after its COMMIT was sent, and
    the server cannot say whether it was committed."""

    def __init__(self, in_doubt: bool, cause: BaseException) -> None:
        super().__init__(str(cause))
        self.in_doubt = in_doubt


def lock_key(*parts: str) -> int:
    """The advisory lock key (a signed 64-bit integer) of a name's parts."""
    text = "\0".join(parts).encode("utf-8", "surrogatepass")
    return int.from_bytes(hashlib.blake2b(text, digest_size=8).digest(), "big", signed=True)


class PostgresTransaction(SqlTransaction):
    """The Transaction of one token on a pooled connection (see base.Transaction), with
    the locks of the module's docstring. One per thread, bound to a connection per token."""

    _for_update = " FOR UPDATE"

    def __init__(self, store: PostgresStore) -> None:
        super().__init__(store, "%s", None)  # bound to a connection in `start`
        self._pg: PostgresStore = store
        self._write = True
        self._top: tuple[int, int] = (-1, 0)  # the latest (rank, key) of the locks held
        self._held: set[int] = set()
        self._loaded: dict[int, Mapping[str, Scalar]] = {}  # accounts read, by id
        self.xid: Any = None  # a cursor whose row is this transaction's id, once sent
        self._expected: tuple[str, str] | None = None  # the link find_linked_user will ask
        self._queued: tuple[tuple[str, str], Any, Any] | None = None  # its lookup, sent
        self._pending_touch: tuple[str, str, str] | None = None  # last_seen_at, held back

    def start(self, conn: Any, write: bool) -> None:
        self._conn = conn
        self._write = write
        self._top = (-1, 0)
        self._held.clear()
        self._loaded.clear()
        self._expected = self._queued = None
        self.xid = None
        self._pending_touch = None

    def need_xid(self) -> None:
        """Send for the transaction's id, if no claim carried it: it arrives with the
        next results, at no round trip of its own (PostgresStore._outcome)."""
        if self._write and self.xid is None:
            self.xid = self._conn.execute("SELECT txid_current()")

    # -- locks ----------------------------------------------------------------------

    def _lock(self, rank: int, *parts: str) -> None:
        key = lock_key(*parts)
        if key in self._held:
            return
        if (rank, key) > self._top:
            # Waited for in the pipeline: the statements after it run once it is granted.
            self._conn.execute("SELECT pg_advisory_xact_lock(%s)", (key,))
            self._top = (rank, key)
        else:
            row = self._conn.execute("SELECT pg_try_advisory_xact_lock(%s)", (key,)).fetchone()
            if not row[0]:
                raise LockBusy(f"another sign-in holds the lock of {parts[0]} {parts[1:]!r}")
        self._held.add(key)

    def _lock_keys(self, pairs: Iterable[tuple[str, Scalar]]) -> None:
        """The key locks of (field, value) pairs, in hash order (None values have none)."""
        names = {("key", field, str(fold(value))) for field, value in pairs if value is not None}
        for parts in sorted(names, key=lambda p: lock_key(*p)):
            self._lock(_KEY, *parts)

    # -- the Transaction ----------------------------------------------------------------

    def _insert(self, sql: str, values: Sequence[object]) -> int:
        self.need_xid()
        row = self._conn.execute(sql + " RETURNING id", values).fetchone()
        assert row is not None
        return int(row[0])

    def _many(self, sql: str, rows: list[tuple[object, ...]]) -> None:
        self._conn.cursor().executemany(sql, rows)  # queued in the pipeline

    def expect_link(self, connection: str, subject_key: str) -> None:
        if self._write:
            self._expected = (connection, subject_key)

    def claim_token(
        self, connection: str, token_id: str, expires_at: datetime | None, now: datetime
    ) -> bool:
        values: tuple[object, ...] = (
            connection,
            token_id,
            None if expires_at is None else iso(expires_at),
            iso(now),
        )
        # The transaction's id comes back with the claim (for a commit whose answer is
        # lost: PostgresStore._outcome), and the link's lock is taken by it: fewer
        # statements, each of which costs the client more than the server.
        returning = " RETURNING txid_current()"
        link = None
        if self._expected is not None:
            link = lock_key("link", *self._expected)
            if link not in self._held and (_LINK, link) > self._top:
                returning += ", pg_advisory_xact_lock(%s)"
                values += (link,)
                self._held.add(link)  # (a replay returns no row: it then needs none)
                self._top = (_LINK, link)
        claimed = self._conn.execute(self._claim + returning, values)
        self.xid = claimed
        if self._expected is not None:  # the link's lookup travels with the claim
            self._queue_link(*self._expected)
        return claimed.fetchone() is not None

    def _queue_link(self, connection: str, subject_key: str) -> None:
        """Send the link's lock and the lookup of its account, without waiting."""
        self.need_xid()
        self._lock(_LINK, "link", connection, subject_key)
        store = self._pg
        params = (connection, subject_key)
        main = self._conn.execute(store.select_linked_locked, params)
        members = self._conn.execute(store.members_by_link, params * store.member_parts)
        self._queued = (params, main, members)

    def find_linked_user(self, connection: str, subject_key: str) -> StoredUser | None:
        if not self._write:
            return super().find_linked_user(connection, subject_key)
        if self._queued is None or self._queued[0] != (connection, subject_key):
            self._queue_link(connection, subject_key)
        assert self._queued is not None
        _, main, members = self._queued
        self._queued = None
        row = main.fetchone()  # one round trip at most: the lock, the account, its members
        if row is None:
            return None
        store = self._pg
        return self._locked(store.filled(store.user_row(row), members.fetchall()))

    def load_user(self, user_id: int) -> StoredUser | None:
        if not self._write:
            return super().load_user(user_id)
        self.need_xid()
        store = self._pg
        wait = "" if self._top < (_USER, 0) else " NOWAIT"  # a second account: try only
        main = self._conn.execute(store.select_user_locked + wait, (user_id,))
        members = self._conn.execute(store.members_of, (user_id,) * store.member_parts)
        row = main.fetchone()
        if row is None:
            return None
        return self._locked(store.filled(store.user_row(row), members.fetchall()))

    def _locked(self, user: StoredUser) -> StoredUser:
        self._top = max(self._top, (_USER, 0))
        self._loaded[user.id] = user.fields
        return user

    def touch_link(self, connection: str, subject_key: str, now: datetime) -> None:
        self._pending_touch = (iso(now), connection, subject_key)  # sent with the audit row

    def write_audit(self, row: AuditRow) -> None:
        if self._pending_touch is None:
            super().write_audit(row)
            return
        touch, self._pending_touch = self._pending_touch, None
        self._conn.execute(self._pg.touch_and_audit, (*touch, *audit_values(row)))

    def flush(self) -> None:
        """Send what is held back (a link's touch that no audit row carried)."""
        if self._pending_touch is not None:
            touch, self._pending_touch = self._pending_touch, None
            self._conn.execute(self._touch_link, touch)

    def find_by_key(self, field: str, value: Scalar) -> list[int]:
        self.need_xid()
        if self._write and value is not None:
            self._lock(_KEY, "key", field, str(fold(value)))
        return super().find_by_key(field, value)

    def insert_user(self, fields: Mapping[str, Scalar], now: datetime) -> int:
        self._lock_keys((name, fields.get(name)) for name in self._layout.keys)
        return super().insert_user(fields, now)

    def update_user(self, user_id: int, write: UserWrite, now: datetime) -> None:
        changed = [name for name in write.fields if name in self._layout.keys]
        if changed:  # the new keys and the old ones (a link_by lookup may hold either)
            old = self._loaded.get(user_id, {})
            pairs = [(name, write.fields[name]) for name in changed]
            self._lock_keys(pairs + [(name, old.get(name)) for name in changed])
        super().update_user(user_id, write, now)


class PostgresStore(AccountReads):
    """A PostgreSQL database holding users, links, audit and replay entries; safe to
    share between threads (each transaction has a pooled connection of its own)."""

    def __init__(
        self,
        url: str,
        layout: Layout,
        *,
        retry_seconds: float = 120.0,
        pool: int = 10,
        pool_timeout: float = 5.0,
        statement_timeout: float = 30.0,
        migrate: str = "auto",
    ) -> None:
        self.url = url
        self.label = redacted(url)
        self.layout = layout
        self.retry_seconds = retry_seconds
        self.pool_size = pool
        self.pool_timeout = pool_timeout
        try:
            import psycopg
            import psycopg_pool
        except ImportError:
            raise StoreError(
                "the PostgreSQL store needs psycopg: pip install 'jitprov[postgres]'"
            ) from None
        self._psycopg = psycopg
        self._pool_timeout_error = psycopg_pool.PoolTimeout
        self._kwargs: dict[str, Any] = {
            "autocommit": True,
            "connect_timeout": 10,
            "application_name": "jitprov",
            "options": f"-c statement_timeout={round(statement_timeout * 1000)}",
        }
        self._local = threading.local()
        self._direct: Any = None  # a connection for use outside transactions (`conn`)
        self._direct_lock = threading.Lock()
        self._statements(layout)
        first = self._connect()  # a clear message when the server or database is wrong
        try:
            self._open_schema(first, migrate)
        finally:
            first.close()
        self._pool = psycopg_pool.ConnectionPool(
            url,
            min_size=1,
            max_size=pool,
            timeout=pool_timeout,
            kwargs=self._kwargs,
            name="jitprov",
            open=False,
        )
        self._pool.open(wait=False)

    def _statements(self, layout: Layout) -> None:
        self.init_reads(layout, "%s")
        keys = [key_column(k) for k in layout.keys]
        names = [*(f'"{n}"' for n in layout.scalars), *(f'"{k}"' for k in keys)]
        names += ["created_at", "updated_at"]
        self.insert_sql = (
            f"INSERT INTO users ({', '.join(names)}) VALUES ({', '.join('%s' for _ in names)})"
        )
        prefixed = ", ".join(f'u."{name}"' for name in layout.scalars)
        self.select_linked = (
            f"SELECT u.id, u.created_at, u.updated_at, {prefixed}, u.disabled_at"
            " FROM identity_links l"
            " JOIN users u ON u.id = l.user_id WHERE l.connection = %s AND l.subject_key = %s"
        )
        self.select_linked_locked = self.select_linked + " FOR NO KEY UPDATE OF u"
        self.select_user_locked = f"{self._select_user} WHERE id = %s FOR NO KEY UPDATE"
        linked = "(SELECT user_id FROM identity_links WHERE connection = %s AND subject_key = %s)"
        parts = [
            f'SELECT {i}, value, source FROM "{set_table(name)}" WHERE user_id = {linked}'
            for i, name in enumerate(layout.sets)
        ]
        parts.append(f"SELECT -1, connection, subject FROM identity_links WHERE user_id = {linked}")
        self.members_by_link = " UNION ALL ".join(parts)
        self.touch_and_audit = (
            "WITH touched AS (UPDATE identity_links SET last_seen_at = %s"
            " WHERE connection = %s AND subject_key = %s) " + AUDIT_INSERT.format(m="%s")
        )
        self.members_of = self._select_members
        self.member_parts = len(parts)

    def _connect(self) -> Any:
        try:
            return self._psycopg.connect(self.url, **self._kwargs)
        except self._psycopg.Error as exc:
            raise StoreError(f"cannot open the store {self.label}: {_first_line(exc)}") from None

    def _open_schema(self, conn: Any, mode: str) -> None:
        """No DDL when `store_meta` says the schema is current (one read); else migrate
        (`auto`, or an empty store) or refuse (`manual`)."""
        try:
            meta = read_meta(conn)
            if mode == "never" or (meta is not None and is_current(meta, self.layout)):
                return
            check_version(meta or {}, self.label)
            if mode == "manual" and has_tables(conn):
                raise behind(self.label)
            migrate(conn, self.layout, self.label)
        except self._psycopg.Error as exc:
            raise StoreError(f"store {self.label}: {_first_line(exc)}") from None

    @property
    def conn(self) -> Any:
        """The connection of this thread's transaction; outside one, a connection of the
        store's own (administration, tests)."""
        current = getattr(self._local, "conn", None)
        if current is not None:
            return current
        with self._direct_lock:
            if self._direct is None or self._direct.closed or self._direct.broken:
                self._direct = self._connect()
            return self._direct

    # -- transactions ---------------------------------------------------------------

    def atomic(self, work: Callable[[PostgresTransaction], T], *, write: bool = True) -> T:
        deadline = time.monotonic() + self.retry_seconds
        delay, unique_retries, lost_retries = 0.002, _UNIQUE_RETRIES, _LOST_RETRIES
        while True:
            try:
                return self._attempt(work, write)
            except LockBusy:
                pass  # begin again, after the backoff below
            except _Lost as lost:
                if lost.in_doubt:
                    raise StoreError(
                        f"store {self.label}: the connection was lost while committing and"
                        " the server cannot say whether the commit happened, so whether"
                        f" this token was written is unknown (its audit row tells):"
                        f" {_first_line(lost)}"
                    ) from None
                lost_retries -= 1
                if lost_retries < 0:
                    raise StoreError(
                        f"store {self.label}: connection lost: {_first_line(lost)}"
                    ) from None
                retried("postgresql")
                if lost_retries == _LOST_RETRIES - 1:
                    # A restart leaves every idle connection of the pool dead: test them
                    # all now, so the token's next try has a live one.
                    self._pool.check()
                continue  # nothing was committed: at once, on another connection
            except self._psycopg.Error as exc:
                state = getattr(exc, "sqlstate", None)
                if state == _UNIQUE_VIOLATION and unique_retries > 0:
                    unique_retries -= 1
                    state = _RETRY_STATES[0]
                if state not in _RETRY_STATES or time.monotonic() >= deadline:
                    raise StoreError(f"store {self.label}: {_first_line(exc)}") from exc
            retried("postgresql")
            time.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, 0.1)

    def _attempt(self, work: Callable[[PostgresTransaction], T], write: bool) -> T:
        try:
            conn = self._pool.getconn()
        except self._pool_timeout_error:
            raise StoreError(
                f"store {self.label}: no connection to the store within"
                f" {self.pool_timeout:g} s (a pool of {self.pool_size} per process): the"
                " server is down, slow or at its connection limit, or the pool is too small"
                " for the load"
            ) from None
        txn: PostgresTransaction | None = getattr(self._local, "txn", None)
        if txn is None:
            txn = self._local.txn = PostgresTransaction(self)
        txn.start(conn, write)
        self._local.conn = conn
        committing = False
        try:
            with conn.pipeline():
                conn.execute("BEGIN" if write else "BEGIN READ ONLY")
                value = work(txn)
                txn.flush()
                txn.need_xid()  # when nothing has asked for it (its answer comes with COMMIT's)
                committing = write
                conn.execute("COMMIT" if write else "ROLLBACK")
            return value
        except BaseException as exc:
            if not self._broken(conn, exc):
                self._rollback(conn)
                raise
            if not conn.closed:
                conn.close()  # the pool then replaces it
            outcome = self._outcome(txn.xid) if committing else "aborted"
            if outcome == "committed":
                return value  # the commit went through; only its answer was lost
            raise _Lost(outcome != "aborted", exc) from exc
        finally:
            self._local.conn = None
            self._pool.putconn(conn)

    def _broken(self, conn: Any, exc: BaseException) -> bool:
        """Whether `exc` means the connection is gone (or no longer usable): broken, a
        server shutting down (57P01–57P03, class 08), or a client-side failure that left
        the connection mid-answer (psycopg's "cannot exit pipeline mode while busy" when
        the server went away between two results). Its transaction's outcome is then
        asked of the server."""
        if not isinstance(exc, self._psycopg.OperationalError):
            return False
        state = getattr(exc, "sqlstate", None)
        if conn.broken or (state is not None and state.startswith(("57P", "08"))):
            return True
        status = self._psycopg.pq.TransactionStatus
        return state is None and conn.info.transaction_status in (status.ACTIVE, status.UNKNOWN)

    def _outcome(self, xid: Any) -> str | None:
        """What became of a transaction whose connection broke: "committed", "aborted",
        or None when that cannot be known (its id never arrived, the server is away)."""
        try:
            row = xid.fetchone() if xid is not None else None
        except self._psycopg.Error:
            row = None
        if row is None:
            return None
        # A restarting server is back within moments, and a transaction still "in
        # progress" (the connection broke on the way, not the server) ends soon: both
        # are asked again, for a few seconds, before the outcome is called unknown.
        deadline = time.monotonic() + _IN_PROGRESS_SECONDS
        while True:
            try:
                with self._psycopg.connect(self.url, **self._kwargs) as conn:
                    status = conn.execute("SELECT txid_status(%s)", (row[0],)).fetchone()
                found = status[0] if status else None
                if found != "in progress":
                    return found
            except self._psycopg.Error:
                pass
            if time.monotonic() > deadline:
                return None
            time.sleep(0.05)

    def _rollback(self, conn: Any) -> None:
        """Roll back an open transaction; a failing rollback must not hide the cause."""
        try:
            if conn.info.transaction_status != self._psycopg.pq.TransactionStatus.IDLE:
                conn.execute("ROLLBACK")
        except self._psycopg.Error:
            pass

    def write_audit(self, row: AuditRow) -> None:
        self.atomic(lambda txn: txn.write_audit(row))

    # -- reads ----------------------------------------------------------------------

    def contains(self, query: str, columns: list[str]) -> tuple[str, list[object]]:
        return _contains(query, columns)

    def close(self) -> None:
        self._pool.close()
        with self._direct_lock:
            if self._direct is not None:
                self._direct.close()
                self._direct = None


def migrate_url(url: str, layout: Layout, *, apply: bool = True) -> list[str] | None:
    """`jitprov migrate` on a PostgreSQL store, on a connection of its own (no pool):
    None when the schema is current, else what changed (or would, without `apply`)."""
    try:
        import psycopg
    except ImportError:
        raise StoreError(
            "the PostgreSQL store needs psycopg: pip install 'jitprov[postgres]'"
        ) from None
    label = redacted(url)
    try:
        with psycopg.connect(url, autocommit=True, connect_timeout=10) as conn:
            return migrate(conn, layout, label, apply=apply)
    except psycopg.Error as exc:
        raise StoreError(f"store {label}: {_first_line(exc)}") from None


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
