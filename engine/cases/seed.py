"""A case's fresh store: a temporary SQLite file copied from a per-run template, seeded
with `[given.user]` (linked to the token's subject) and `[[given.accounts]]`.

Why a copied file and not `:memory:`: creating the schema costs about 4 ms per store
(sqlite-utils introspection), copying a ready template about 1 ms, and a run may hold a
thousand cases. The files live in a private temporary folder (on tmpfs when there is
one) and are deleted after each case; the workspace's store is never opened.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from engine.cases.model import Account
from engine.config import Config, Connection
from engine.provision import EMAIL_FORMAT, TRANSIENT_FORMAT
from engine.store import LOCAL_SOURCE, SqliteStore, UserWrite, layout_for
from engine.store.sqlite import SqliteTransaction
from engine.token import Token


@dataclass(frozen=True, slots=True)
class Subject:
    """The identity a token's account is linked under (product.md §2 step 4)."""

    value: str
    key: str  # case-folded for emailAddress NameIDs
    transient: bool


def subject_of(conn: Connection, token: Token) -> Subject | None:
    """The token's subject as the pipeline computes it; None when it has none.

    Mirrors `engine.provision._subject` (private there): `subject_from` takes the
    attribute's first value, compared exactly; an emailAddress NameID compares
    case-insensitively; a transient NameID is never linked.
    """
    if conn.subject_from:
        values = token.attributes.get(conn.subject_from) or []
        return Subject(values[0], values[0], False) if values else None
    if not token.name_id:
        return None
    fmt = token.name_id_format
    key = token.name_id.casefold() if fmt == EMAIL_FORMAT else token.name_id
    return Subject(token.name_id, key, fmt == TRANSIENT_FORMAT)


def scratch_base() -> str | None:
    """Where temporary stores go: tmpfs when there is one, else the system's default."""
    shm = Path("/dev/shm")
    return str(shm) if shm.is_dir() and os.access(shm, os.W_OK) else None


class StoreFactory:
    """Fresh stores for one config: a template file with the schema, copied per case."""

    def __init__(self, config: Config, parent: Path | None = None) -> None:
        self.layout = layout_for(config)
        self.folder = Path(tempfile.mkdtemp(prefix="jitprov-cases-", dir=parent or scratch_base()))
        self.template = self.folder / "template.db"
        SqliteStore(self.template, self.layout).close()
        self._count = 0

    def fresh(self) -> SqliteStore:
        """A new, empty store (its own file)."""
        self._count += 1
        path = self.folder / f"case-{self._count}.db"
        shutil.copyfile(self.template, path)
        return SqliteStore(path, self.layout, synchronous="OFF", retry_seconds=5.0)

    def discard(self, store: SqliteStore) -> None:
        """Close a store and delete its files."""
        store.close()
        for suffix in ("", "-wal", "-shm", "-journal"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(store.path + suffix)

    def close(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


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
