"""One token's reads and writes (base.Transaction) over a DB-API connection, shared by the
SQLite and PostgreSQL stores: the statements are built once per store with its
parameter mark; each store subclasses for what differs (how a new row's id comes back,
how many rows are written at once, SQLite's link update by row id)."""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from engine.recorded import Recorded
from engine.store.base import AuditRow, StoredUser, StoreError, UserWrite
from engine.store.codecs import encoded
from engine.store.rekey import META_TABLE
from engine.store.schema import RECORD_SECRET_ROW, Layout, key_column, set_table
from engine.store.values import fold, iso, to_column
from rules.plan import Scalar


class SqlTransaction:
    """The Transaction of one token on an open connection (see base.Transaction)."""

    def __init__(self, store: Any, mark: str, conn: Any) -> None:
        self._store = store
        self._conn = conn  # PostgreSQL binds one per transaction
        self._mark = m = mark
        layout: Layout = store.layout
        self._layout = layout
        self._claim = (
            f"INSERT INTO seen_tokens (connection, token_id, expires_at) VALUES ({m}, {m}, {m})"
            " ON CONFLICT (connection, token_id) DO UPDATE SET expires_at = excluded.expires_at"
            f" WHERE seen_tokens.expires_at IS NOT NULL AND seen_tokens.expires_at <= {m}"
        )
        self._seen = f"SELECT expires_at FROM seen_tokens WHERE connection = {m} AND token_id = {m}"
        self._by_key = {
            name: f'SELECT id FROM users WHERE "{key_column(name)}" = {m} ORDER BY id LIMIT 2'
            for name in layout.keys
        }
        self._touch = f"UPDATE users SET updated_at = {m} WHERE id = {m}"
        self._delete_member = {
            name: f'DELETE FROM "{set_table(name)}"'
            f" WHERE user_id = {m} AND value = {m} AND source = {m}"
            for name in layout.sets
        }
        self._insert_member = {
            name: f'INSERT INTO "{set_table(name)}" (user_id, value, source) VALUES ({m}, {m}, {m})'
            for name in layout.sets
        }
        self._write_link = (
            "INSERT INTO identity_links"
            " (connection, subject, subject_key, user_id, created_at, last_seen_at)"
            f" VALUES ({m}, {m}, {m}, {m}, {m}, {m})"
        )
        self._touch_link = (
            f"UPDATE identity_links SET last_seen_at = {m}"
            f" WHERE connection = {m} AND subject_key = {m}"
        )
        self._write_audit = AUDIT_INSERT.format(m=m)
        self._record = (
            "INSERT INTO recorded_signins (connection, subject_key, subject, user_id, outcome,"
            f" at, rules_sha256, bag) VALUES ({m}, {m}, {m}, {m}, {m}, {m}, {m}, {m})"
            " ON CONFLICT (connection, subject_key) DO UPDATE SET subject = excluded.subject,"
            " user_id = excluded.user_id, outcome = excluded.outcome, at = excluded.at,"
            " rules_sha256 = excluded.rules_sha256, bag = excluded.bag"
        )
        self._set_disabled = f"UPDATE users SET disabled_at = {m}, updated_at = {m} WHERE id = {m}"
        self._secret = f"SELECT value FROM {META_TABLE} WHERE name = {m}"

    # -- what each store does its own way ---------------------------------------------

    def _insert(self, sql: str, values: Sequence[object]) -> int:
        """Run an INSERT and give the new row's id."""
        raise NotImplementedError

    def _many(self, sql: str, rows: list[tuple[object, ...]]) -> None:
        """Run one statement for each of `rows`."""
        raise NotImplementedError

    # -- the Transaction ----------------------------------------------------------------

    def expect_link(self, connection: str, subject_key: str) -> None:
        """A hint (see base.Transaction); the SQLite store has no round trips to save."""

    def claim_token(
        self, connection: str, token_id: str, expires_at: datetime | None, now: datetime
    ) -> bool:
        cursor = self._conn.execute(
            self._claim,
            (connection, token_id, None if expires_at is None else iso(expires_at), iso(now)),
        )
        return bool(cursor.rowcount == 1)

    def token_seen(self, connection: str, token_id: str, now: datetime) -> bool:
        row = self._conn.execute(self._seen, (connection, token_id)).fetchone()
        return row is not None and (row[0] is None or row[0] > iso(now))

    def load_user(self, user_id: int) -> StoredUser | None:
        found: StoredUser | None = self._store.load_user(user_id)
        return found

    def find_linked_user(self, connection: str, subject_key: str) -> StoredUser | None:
        row = self._conn.execute(self._store.select_linked, (connection, subject_key)).fetchone()
        if row is None:
            return None
        self._found(connection, subject_key, row)
        user: StoredUser = self._store.complete(row)
        return user

    def _found(self, connection: str, subject_key: str, row: tuple[Any, ...]) -> None:
        """The link find_linked_user found (SQLite keeps its row id)."""

    def find_by_key(self, field: str, value: Scalar) -> list[int]:
        sql = self._by_key.get(field)
        if sql is None:
            raise StoreError(f"field {field!r} has no case-insensitive key column")
        return [int(r[0]) for r in self._conn.execute(sql, (fold(value),)).fetchall()]

    def insert_user(self, fields: Mapping[str, Scalar], now: datetime) -> int:
        layout = self._layout
        values = [to_column(fields.get(name)) for name in layout.scalars]
        values += [fold(fields.get(name)) for name in layout.keys]
        stamp = iso(now)
        return self._insert(self._store.insert_sql, (*values, stamp, stamp))

    def update_user(self, user_id: int, write: UserWrite, now: datetime) -> None:
        keys = self._layout.keys
        if write.fields:
            names: list[str] = []
            values: list[object] = []
            for name, value in write.fields.items():
                names.append(name)
                values.append(to_column(value))
                if name in keys:
                    names.append(key_column(name))
                    values.append(fold(value))
            sql = update_sql(tuple(names), self._mark)
            self._conn.execute(sql, (*values, iso(now), user_id))
        elif write:
            self._conn.execute(self._touch, (iso(now), user_id))
        self.write_members(user_id, write)

    def write_members(self, user_id: int, write: UserWrite) -> None:
        for name, rows in write.delete.items():
            if rows:
                self._many(self._delete_member[name], [(user_id, v, s) for v, s in rows])
        for name, rows in write.insert.items():
            if rows:
                self._many(self._insert_member[name], [(user_id, v, s) for v, s in rows])

    def write_link(
        self, connection: str, subject: str, subject_key: str, user_id: int, now: datetime
    ) -> None:
        stamp = iso(now)
        self._conn.execute(
            self._write_link, (connection, subject, subject_key, user_id, stamp, stamp)
        )

    def touch_link(self, connection: str, subject_key: str, now: datetime) -> None:
        self._conn.execute(self._touch_link, (iso(now), connection, subject_key))

    def write_audit(self, row: AuditRow) -> None:
        self._conn.execute(self._write_audit, audit_values(row))

    def record_signin(self, row: Recorded) -> None:
        self._conn.execute(
            self._record,
            (
                row.connection,
                row.subject_key,
                row.subject,
                row.user_id,
                row.outcome,
                row.at,
                row.rules_sha256,
                row.bag,
            ),
        )

    def record_secret(self) -> bytes:
        secret: bytes | None = getattr(self._store, "record_key", None)
        if secret is None:  # read once per store (it never changes)
            found = self._conn.execute(self._secret, (RECORD_SECRET_ROW,)).fetchone()
            if found is None:
                raise StoreError("the store has no record secret; run `jitprov migrate`")
            secret = bytes.fromhex(str(found[0]))
            self._store.record_key = secret
        return secret

    # -- administration (engine.lifecycle), each in a transaction of its own ------------

    _for_update = ""  # PostgreSQL: " FOR UPDATE" (waits for a sign-in of the account)

    def lock_user(self, user_id: int) -> bool:
        """Take the account's row for a change; False when there is no such account."""
        sql = f"SELECT id FROM users WHERE id = {self._mark}{self._for_update}"
        return self._conn.execute(sql, (user_id,)).fetchone() is not None

    def delete_user(self, user_id: int) -> dict[str, int]:
        """Delete an account with its set members, links and recorded sign-ins: how many
        rows of each went."""
        m = self._mark
        counts: dict[str, int] = {}
        for name in self._layout.sets:
            counts[name] = self._count(
                f'DELETE FROM "{set_table(name)}" WHERE user_id = {m}', user_id
            )
        counts["recorded"] = self._count(
            f"DELETE FROM recorded_signins WHERE user_id = {m} OR (connection, subject_key) IN"
            f" (SELECT connection, subject_key FROM identity_links WHERE user_id = {m})",
            user_id,
            user_id,
        )
        counts["links"] = self._count(f"DELETE FROM identity_links WHERE user_id = {m}", user_id)
        counts["users"] = self._count(f"DELETE FROM users WHERE id = {m}", user_id)
        return counts

    def delete_batch(self, table: str, where: str, params: tuple[object, ...], limit: int) -> int:
        """Delete at most `limit` rows of `table` matching `where` (marks as `{m}`), the
        oldest first by its key: how many went."""
        key = _KEYS[table]
        sql = (
            f"DELETE FROM {table} WHERE ({key}) IN (SELECT {key} FROM {table}"
            f" WHERE {where.format(m=self._mark)} LIMIT {int(limit)})"
        )
        return self._count(sql, *params)

    def _count(self, sql: str, *params: object) -> int:
        return len(self._conn.execute(sql + " RETURNING 1", params).fetchall())

    def set_disabled(self, user_id: int, at: datetime | None, now: datetime) -> None:
        self._conn.execute(self._set_disabled, (None if at is None else iso(at), iso(now), user_id))


# The key of each table `delete_batch` prunes.
_KEYS = {
    "audit": "id",
    "seen_tokens": "connection, token_id",
    "pending_requests": "connection, request_id",
    "handoffs": "ref_hash",
    "recorded_signins": "connection, subject_key",
}

AUDIT_INSERT = (
    "INSERT INTO audit (at, connection, subject, token_id, outcome, reason, message,"
    " user_id, changes, trace, rules_sha256)"
    " VALUES ({m}, {m}, {m}, {m}, {m}, {m}, {m}, {m}, {m}, {m}, {m})"
)


def audit_values(row: AuditRow) -> tuple[object, ...]:
    """The parameters of AUDIT_INSERT for `row`."""
    return (
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
    )


@functools.lru_cache(maxsize=256)
def update_sql(columns: tuple[str, ...], mark: str) -> str:
    """The UPDATE for one set of changed columns (few distinct sets: built once each)."""
    assignments = ", ".join(f'"{n}" = {mark}' for n in columns)
    return f"UPDATE users SET {assignments}, updated_at = {mark} WHERE id = {mark}"
