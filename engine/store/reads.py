"""The reads both SQL stores share: an account with its members and links, every account,
the audit log, and paged search — over a DB-API connection. Each store (SQLite,
PostgreSQL) mixes this in and gives its parameter mark, its `atomic` and its
case-insensitive `contains` clause."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from typing import Any, TypeVar, cast

from engine.recorded import Recorded
from engine.store.base import (
    AuditRow,
    Handoff,
    Member,
    PendingRequest,
    StoredUser,
    StoreError,
    UserWrite,
)
from engine.store.codecs import SELECT_AUDIT, audit_row_from
from engine.store.schema import Layout, set_table
from engine.store.values import fold, from_column, iso
from rules.plan import Scalar

R = TypeVar("R")
PENDING_KEPT = timedelta(minutes=10)  # a request's row, after its expiry
MAX_PENDING = 100_000  # open sign-ins per connection (a flood of /login is refused past it)
HANDOFF_KEPT = timedelta(minutes=10)  # a hand-off's row, after its expiry (tells a reuse)


class TooManyPending(StoreError):
    """A connection has MAX_PENDING sign-ins in progress: a new one must wait."""


def _moment(text: object) -> datetime:
    """A stored ISO 8601 instant (`iso`) read back."""
    return datetime.fromisoformat(str(text).replace("Z", "+00:00"))


class AccountReads:
    """Reads over `self.conn`; `init_reads(layout, mark)` prepares the statements."""

    conn: Any
    layout: Layout

    def init_reads(self, layout: Layout, mark: str) -> None:
        self.layout = layout
        self._mark = mark
        self._scalars = tuple(layout.scalars)
        self._typed = [(n, k) for n, k in layout.scalars.items() if k != "text"]
        columns = ", ".join(f'"{name}"' for name in layout.scalars)
        self._select_user = f"SELECT id, created_at, updated_at, {columns}, disabled_at FROM users"
        # One statement for every set's member rows and the links (index -1): the account's
        # whole state in one round trip, however many set fields there are.
        parts = [
            f'SELECT {i}, value, source FROM "{set_table(name)}" WHERE user_id = {mark}'
            for i, name in enumerate(layout.sets)
        ]
        parts.append(f"SELECT -1, connection, subject FROM identity_links WHERE user_id = {mark}")
        self._select_members = " UNION ALL ".join(parts)
        self._member_params = len(parts)

    def atomic(self, work: Callable[[Any], R], *, write: bool = True) -> R:
        raise NotImplementedError  # each store's own

    def contains(self, query: str, columns: list[str]) -> tuple[str, list[object]]:
        """A WHERE clause: any of `columns` contains `query`, case-insensitively."""
        raise NotImplementedError  # each store's own

    def load_user(self, user_id: int) -> StoredUser | None:
        """One account with its members and links (inside or outside a transaction)."""
        row = self.conn.execute(
            f"{self._select_user} WHERE id = {self._mark}", (user_id,)
        ).fetchone()
        return None if row is None else self.complete(row)

    def complete(self, row: tuple[Any, ...]) -> StoredUser:
        """An account from its `users` row, with its members and links read."""
        rows = self.conn.execute(self._select_members, (row[0],) * self._member_params)
        return self.filled(self.user_row(row), rows.fetchall())

    def filled(self, user: StoredUser, rows: Iterable[tuple[Any, ...]]) -> StoredUser:
        """`user` with its member and link rows (as `_select_members` gives them)."""
        sets, members, links = self.layout.sets, user.members, user.links
        for index, first, second in rows:
            if index < 0:
                links.append((first, second))
            else:
                members[sets[index]].add((first, second))
        links.sort()
        return user

    def user_row(self, row: tuple[Any, ...]) -> StoredUser:
        """An account from its `users` row (id, created_at, updated_at, the scalars,
        disabled_at, then anything else), no members yet. Text comes back as text; other
        kinds are converted."""
        scalars = self._scalars
        end = 3 + len(scalars)
        fields: dict[str, Scalar] = dict(zip(scalars, row[3:end], strict=True))
        for name, kind in self._typed:
            if fields[name] is not None:
                fields[name] = from_column(kind, fields[name])
        members: dict[str, set[Member]] = {name: set() for name in self.layout.sets}
        return StoredUser(int(row[0]), fields, members, [], row[1], row[2], row[end])

    def users(self) -> list[StoredUser]:
        def read(_: object) -> list[StoredUser]:
            rows = self.conn.execute(self._select_user + " ORDER BY id").fetchall()
            users = {u.id: u for u in map(self.user_row, rows)}
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
        def read(_: object) -> StoredUser | None:
            row = self.conn.execute(
                f"SELECT id FROM users WHERE username_key = {self._mark}", (fold(username),)
            ).fetchone()
            return None if row is None else self.load_user(int(row[0]))

        return self.atomic(read, write=False)

    def audit(self, *, limit: int | None = None, user_id: int | None = None) -> list[AuditRow]:
        sql = SELECT_AUDIT
        params: list[object] = []
        if user_id is not None:
            sql += f" WHERE user_id = {self._mark}"
            params.append(user_id)
        sql += " ORDER BY id DESC"
        if limit is not None:
            sql += f" LIMIT {self._mark}"
            params.append(limit)

        def read(_: object) -> list[AuditRow]:
            return [audit_row_from(r) for r in self.conn.execute(sql, params).fetchall()]

        return self.atomic(read, write=False)

    def search_users(
        self, query: str, *, limit: int, offset: int = 0
    ) -> tuple[list[StoredUser], int]:
        texts = [f'"{n}"' for n, kind in self.layout.scalars.items() if kind == "text"]
        where, params = self.contains(query, texts)
        page = f"LIMIT {self._mark} OFFSET {self._mark}"

        def read(_: object) -> tuple[list[StoredUser], int]:
            total = self.conn.execute(f"SELECT count(*) FROM users{where}", params).fetchone()
            rows = self.conn.execute(
                f"{self._select_user}{where} ORDER BY id {page}", [*params, limit, offset]
            ).fetchall()
            return [self.complete(row) for row in rows], int(total[0])

        return self.atomic(read, write=False)

    def search_audit(
        self, query: str, *, limit: int, offset: int = 0
    ) -> tuple[list[AuditRow], int]:
        columns = ["connection", "subject", "token_id", "outcome", "reason", "message"]
        where, params = self.contains(query, columns)
        page = f"LIMIT {self._mark} OFFSET {self._mark}"

        def read(_: object) -> tuple[list[AuditRow], int]:
            total = self.conn.execute(f"SELECT count(*) FROM audit{where}", params).fetchone()
            rows = self.conn.execute(
                f"{SELECT_AUDIT}{where} ORDER BY id DESC {page}", [*params, limit, offset]
            ).fetchall()
            return [audit_row_from(r) for r in rows], int(total[0])

        return self.atomic(read, write=False)

    def add_pending(self, pending: PendingRequest, now: datetime) -> None:
        """Record a request this SP sent, and forget those expired PENDING_KEPT ago (until
        then a late answer is told it expired rather than unknown). At most MAX_PENDING
        open ones per connection (TooManyPending): anyone may start a sign-in, so a
        flood of them must not grow the store without end."""
        m = self._mark
        stale = iso(now - PENDING_KEPT)

        def write(_: object) -> None:
            self.conn.execute(f"DELETE FROM pending_requests WHERE expires_at < {m}", (stale,))
            (open_now,) = self.conn.execute(
                "SELECT count(*) FROM (SELECT 1 FROM pending_requests"
                f" WHERE connection = {m} LIMIT {MAX_PENDING}) AS open_requests",
                (pending.connection,),
            ).fetchone()
            if open_now >= MAX_PENDING:
                raise TooManyPending(
                    f"{MAX_PENDING} sign-ins of connection {pending.connection!r} are in"
                    " progress, the most jitprov keeps; try again in a few minutes"
                )
            self.conn.execute(
                "INSERT INTO pending_requests (connection, request_id, expires_at,"
                " return_to, nonce, verifier, browser, created_at)"
                f" VALUES ({m}, {m}, {m}, {m}, {m}, {m}, {m}, {m})",
                (
                    pending.connection,
                    pending.request_id,
                    iso(pending.expires_at),
                    pending.return_to,
                    pending.nonce,
                    pending.verifier,
                    pending.browser,
                    iso(now),
                ),
            )

        self.atomic(write)

    def take_pending(self, connection: str, request_id: str) -> PendingRequest | None:
        """The recorded request, removed (single use): None when there is none."""
        m = self._mark

        def take(_: object) -> PendingRequest | None:
            row = self.conn.execute(
                f"DELETE FROM pending_requests WHERE connection = {m} AND request_id = {m}"
                " RETURNING expires_at, return_to, nonce, verifier, browser",
                (connection, request_id),
            ).fetchone()
            if row is None:
                return None
            return PendingRequest(connection, request_id, _moment(row[0]), *row[1:])

        return self.atomic(take)

    def add_handoff(self, handoff: Handoff, now: datetime) -> None:
        """Record a hand-off; blank the results of expired ones, and forget those expired
        HANDOFF_KEPT ago (until then a reused reference is told apart from an unknown
        one)."""
        m = self._mark
        stale = iso(now - HANDOFF_KEPT)

        def write(_: object) -> None:
            self.conn.execute(f"DELETE FROM handoffs WHERE expires_at < {m}", (stale,))
            self.conn.execute(
                f"UPDATE handoffs SET result = '' WHERE expires_at < {m} AND result <> ''",
                (iso(now),),
            )
            self.conn.execute(
                "INSERT INTO handoffs (ref_hash, connection, result, expires_at, created_at)"
                f" VALUES ({m}, {m}, {m}, {m}, {m})",
                (
                    handoff.ref_hash,
                    handoff.connection,
                    handoff.result,
                    iso(handoff.expires_at),
                    iso(now),
                ),
            )

        self.atomic(write)

    def take_handoff(self, ref_hash: str, now: datetime) -> Handoff | None:
        """The hand-off as it was, now marked picked up (its result kept only until the
        first pickup: a second one finds `picked_at` and an empty result)."""
        m = self._mark

        def take(_: object) -> Handoff | None:
            row = self.conn.execute(
                f"SELECT connection, result, expires_at, picked_at FROM handoffs"
                f" WHERE ref_hash = {m}",
                (ref_hash,),
            ).fetchone()
            if row is None:
                return None
            if row[3] is None:
                self.conn.execute(
                    f"UPDATE handoffs SET picked_at = {m}, result = '' WHERE ref_hash = {m}",
                    (iso(now), ref_hash),
                )
            picked = None if row[3] is None else _moment(row[3])
            return Handoff(ref_hash, row[0], row[1], _moment(row[2]), picked)

        return self.atomic(take)

    def last_seen(self) -> dict[int, str | None]:
        def read(_: object) -> dict[int, str | None]:
            rows = self.conn.execute(
                "SELECT user_id, MAX(last_seen_at) FROM identity_links GROUP BY user_id"
            ).fetchall()
            return {int(user_id): seen for user_id, seen in rows}

        return self.atomic(read, write=False)

    def count_where(self, table: str, where: str, params: tuple[object, ...]) -> int:
        sql = f"SELECT COUNT(*) FROM {table} WHERE {where.format(m=self._mark)}"
        return self.atomic(lambda _: int(self.conn.execute(sql, params).fetchone()[0]), write=False)

    def recorded(
        self,
        connection: str,
        since: str | None = None,
        first: str | None = None,
        last: str | None = None,
    ) -> list[Recorded]:
        m = self._mark
        where, params = self._recorded_where(connection, since)
        if first is not None and last is not None:
            where += f" AND subject_key >= {m} AND subject_key <= {m}"
            params += [first, last]
        sql = (
            "SELECT connection, subject_key, subject, user_id, outcome, at, rules_sha256, bag"
            f" FROM recorded_signins WHERE {where} ORDER BY subject_key"
        )

        def read(_: object) -> list[Recorded]:
            return [Recorded(*row) for row in self.conn.execute(sql, params).fetchall()]

        return self.atomic(read, write=False)

    def recorded_keys(self, connection: str, since: str | None = None) -> list[str]:
        where, params = self._recorded_where(connection, since)
        sql = f"SELECT subject_key FROM recorded_signins WHERE {where} ORDER BY subject_key"
        return self.atomic(
            lambda _: [str(r[0]) for r in self.conn.execute(sql, params).fetchall()], write=False
        )

    def _recorded_where(self, connection: str, since: str | None) -> tuple[str, list[object]]:
        where, params = f"connection = {self._mark}", [cast(object, connection)]
        if since is not None:
            where += f" AND at >= {self._mark}"
            params.append(since)
        return where, params

    def add_members(self, user_id: int, set_field: str, members: Iterable[Member]) -> None:
        rows = list(members)
        self.atomic(lambda txn: txn.write_members(user_id, UserWrite(insert={set_field: rows})))
