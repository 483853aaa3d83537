"""User stores (product.md §4): the interface, and the opener the commands use."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from engine.config import Config
from engine.store.base import (
    LOCAL_SOURCE,
    AuditRow,
    Handoff,
    Member,
    PendingRequest,
    SchemaError,
    Store,
    StoredUser,
    StoreError,
    Transaction,
    UserWrite,
)
from engine.store.schema import Layout
from engine.store.sqlite import SqliteStore
from engine.store.versions import SCHEMA_VERSION

__all__ = [
    "LOCAL_SOURCE",
    "AuditRow",
    "Handoff",
    "Layout",
    "Member",
    "Migration",
    "PendingRequest",
    "SchemaError",
    "SqliteStore",
    "Store",
    "StoreError",
    "StoredUser",
    "Transaction",
    "UserWrite",
    "layout_for",
    "migrate_store",
    "open_store",
]


def layout_for(config: Config) -> Layout:
    """The tables this config needs: every field, and a case-folded key per link_by."""
    link_by = tuple(c.link_by for c in config.connections.values() if c.link_by)
    return Layout.build(config.fields, link_by)


def open_store(config: Config, *, read_only_if_missing: bool = False) -> Store:
    """Open (creating or migrating) the config's store; raises StoreError.

    `read_only_if_missing`: when the SQLite file does not exist yet, use an empty
    in-memory store instead of creating it (dry runs and listings write nothing).
    """
    if config.store.url is not None:
        from engine.store.postgres import PostgresStore  # psycopg only when configured

        settings = config.store
        return PostgresStore(
            config.store.url,
            layout_for(config),
            pool=settings.pool,
            pool_timeout=settings.pool_timeout,
            statement_timeout=settings.statement_timeout,
            migrate=settings.migrate,
        )
    path = config.store.path or Path(config.root, "jitprov.db")
    layout = layout_for(config)
    if read_only_if_missing and not path.exists():
        return SqliteStore(":memory:", layout)
    return SqliteStore(path, layout, migrate=config.store.migrate)


@dataclass(frozen=True, slots=True)
class Migration:
    """What `jitprov migrate` found: the store, its schema version after the run, the
    changes (empty when the schema was current), and whether they were made."""

    store: str
    schema_version: int
    changes: list[str]
    applied: bool
    created: bool  # a SQLite file that did not exist (made now, or to be made)


def migrate_store(config: Config, *, apply: bool = True) -> Migration:
    """Bring the config's store up to its fields and link_by keys, under the store's
    schema lock (the same change every first open of a store that is behind makes when
    `migrate = "auto"`). Without `apply` nothing is written: the changes are worked out
    in a transaction that is rolled back. Raises StoreError."""
    layout = layout_for(config)
    if config.store.url is not None:
        from engine.store.postgres import migrate_url, redacted

        changes = migrate_url(config.store.url, layout, apply=apply)
        label = redacted(config.store.url)
        return Migration(label, SCHEMA_VERSION, changes or [], apply and bool(changes), False)
    path = config.store.path or Path(config.root, "jitprov.db")
    missing = not path.exists()
    target: Path | str = ":memory:" if missing and not apply else path
    store = SqliteStore(target, layout, migrate="never")
    try:
        changes = store.migrate(apply=apply)
    finally:
        store.close()
    return Migration(str(path), SCHEMA_VERSION, changes or [], apply and bool(changes), missing)
