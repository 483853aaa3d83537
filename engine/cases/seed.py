"""A case's fresh store: an in-memory SQLite store reset to an empty template before
each case, then seeded with `[given.user]` (linked to the token's subject) and
`[[given.accounts]]`.

Why a reset and not a new store per case: creating the schema costs about 4 ms
(sqlite-utils introspection), while `sqlite3.Connection.deserialize` of the empty
database, serialized once, takes some 20 µs and gives exactly a fresh in-memory
database — and a run may hold a thousand cases. The workspace's store is never opened.
"""

from __future__ import annotations

import sqlite3
from datetime import datetime

from engine.cases.model import Account
from engine.config import Config, Connection
from engine.steps import Subject
from engine.store import LOCAL_SOURCE, SqliteStore, UserWrite, layout_for
from engine.store.sqlite import SqliteTransaction


class StoreFactory:
    """Fresh in-memory stores for one config (one at a time: each `fresh()` empties it)."""

    def __init__(self, config: Config) -> None:
        self.layout = layout_for(config)
        self.store = SqliteStore(":memory:", self.layout)
        self._template: bytes | None = None
        if hasattr(sqlite3.Connection, "deserialize"):  # SQLite built with serialize
            self._template = self.store.conn.serialize()
        self._used = False

    def fresh(self) -> SqliteStore:
        """The store, emptied: the same connection holding a new copy of the template."""
        if self._used:
            if self._template is not None:
                self.store.conn.deserialize(self._template)
            else:
                self.store.close()
                self.store = SqliteStore(":memory:", self.layout)
        self._used = True
        return self.store

    def close(self) -> None:
        self.store.close()


def seed(
    store: SqliteStore,
    conn: Connection,
    user: Account | None,
    accounts: tuple[Account, ...],
    subject: Subject | None,
    now: datetime,
) -> int | None:
    """Store the case's accounts; returns the id of `[given.user]` (None without one).

    `[given.user]` is linked to (connection, subject) unless the subject is transient
    (the pipeline never looks a transient subject up: it finds its account by link_by
    only) or the token has none; its set members have the connection as source, its
    `local` members and every member of `[[given.accounts]]` the source `local`.
    """

    def work(txn: SqliteTransaction) -> int | None:
        user_id = None
        if user is not None:
            user_id = _insert(txn, user, conn.id, now)
            if subject is not None and not subject.transient:
                txn.write_link(conn.id, subject.value, subject.key, user_id, now)
        for account in accounts:
            _insert(txn, account, LOCAL_SOURCE, now)
        return user_id

    return store.atomic(work)


def _insert(txn: SqliteTransaction, account: Account, source: str, now: datetime) -> int:
    user_id = txn.insert_user(account.fields, now)
    insert: dict[str, list[tuple[str, str]]] = {}
    for name, values in account.members.items():
        insert.setdefault(name, []).extend((v, source) for v in values)
    for name, values in account.local.items():
        rows = insert.setdefault(name, [])
        rows.extend((v, LOCAL_SOURCE) for v in values if (v, LOCAL_SOURCE) not in rows)
    txn.write_members(user_id, UserWrite(insert=insert))
    return user_id
