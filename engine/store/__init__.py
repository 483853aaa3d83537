"""User stores (product.md §4): the interface, and the opener the commands use."""

from __future__ import annotations

from pathlib import Path

from engine.config import Config
from engine.store.base import (
    LOCAL_SOURCE,
    AuditRow,
    Member,
    SchemaError,
    Store,
    StoredUser,
    StoreError,
    Transaction,
    UserWrite,
)
from engine.store.schema import Layout
from engine.store.sqlite import SqliteStore

__all__ = [
    "LOCAL_SOURCE",
    "AuditRow",
    "Layout",
    "Member",
    "SchemaError",
    "SqliteStore",
    "Store",
    "StoreError",
    "StoredUser",
    "Transaction",
    "UserWrite",
    "layout_for",
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

        return PostgresStore(config.store.url, layout_for(config))
    path = config.store.path or Path(config.root, "jitprov.db")
    layout = layout_for(config)
    if read_only_if_missing and not path.exists():
        return SqliteStore(":memory:", layout)
    return SqliteStore(path, layout)
