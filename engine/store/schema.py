"""The store's tables (product.md §4), created and migrated through sqlite-utils.

Migration is additive only: a new `[store.fields]` entry adds a column (or a set
table), a new `link_by` field adds its case-insensitive key column (back-filled) and
index. Nothing is ever dropped, renamed or retyped; a column left over from an old field
stays. Key columns computed another way than `values.fold` (a store written when keys
were `str.casefold`) are recomputed once (engine.store.rekey).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from engine.store.base import SchemaError
from engine.store.rekey import META_TABLE, rekey
from rules.vocabulary import FieldType

# Columns of `users` that are not fields; a declared field must not take these names.
USER_META_COLUMNS = ("id", "created_at", "updated_at", "disabled_at")
# Numbers are kept as their canonical text (rules-language.md §3: "the store uses the same
# form"), exact for decimals; booleans as 0/1.
_COLUMN_TYPES: dict[str, Any] = {"text": str, "number": str, "bool": int}


# Sign-ins this SP started: the AuthnRequest's ID (SAML) or the `state` (OIDC), until its
# answer arrives (single use) or it expires; where the person goes next. Schema version 2;
# version 3 adds the OIDC request's `nonce` and PKCE `verifier`, and the SHA-256 of the
# browser's sign-in cookie (`browser`) that binds the answer to the browser that asked.
PENDING_TABLE = """CREATE TABLE IF NOT EXISTS pending_requests (
    connection TEXT NOT NULL,
    request_id TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    return_to TEXT,
    created_at TEXT NOT NULL,
    PRIMARY KEY (connection, request_id)
)"""
PENDING_COLUMNS = ("nonce", "verifier", "browser")
PENDING_INDEX = (
    "CREATE INDEX IF NOT EXISTS idx_pending_requests_expires_at ON pending_requests (expires_at)"
)

# Sign-ins handed to the application (schema version 3): the sha256 of the one-time
# `jitprov_ref` the browser carries back, the result object (JSON) the application picks
# up once with the service token, and when it may no longer be picked up.
HANDOFF_TABLE = """CREATE TABLE IF NOT EXISTS handoffs (
    ref_hash TEXT PRIMARY KEY,
    connection TEXT NOT NULL,
    result TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    picked_at TEXT,
    created_at TEXT NOT NULL
)"""
HANDOFF_INDEX = "CREATE INDEX IF NOT EXISTS idx_handoffs_expires_at ON handoffs (expires_at)"


# Sign-ins recorded for `jitprov plan` (schema version 4): per identity, the latest
# validated attribute bag (JSON, before rules; redacted attributes as keyed hashes unless
# the connection says record_redacted), when it arrived, what it gave and under which
# rules. One row per (connection, subject_key), replaced by each sign-in.
RECORDED_TABLE = """CREATE TABLE IF NOT EXISTS recorded_signins (
    connection TEXT NOT NULL,
    subject_key TEXT NOT NULL,
    subject TEXT NOT NULL,
    user_id {integer},
    outcome TEXT NOT NULL,
    at TEXT NOT NULL,
    rules_sha256 TEXT,
    bag TEXT NOT NULL,
    PRIMARY KEY (connection, subject_key)
){options}"""
# The per-store secret of the keyed hashes of redacted attributes (a `store_meta` row).
RECORD_SECRET_ROW = "record_secret"


def record_secret_row() -> tuple[str, str]:
    """A new `store_meta` row holding a random 256-bit secret (hex)."""
    import secrets

    return RECORD_SECRET_ROW, secrets.token_hex(32)


def key_column(field: str) -> str:
    """The case-insensitive lookup column kept beside a field (`username_key`,
    `email_key`): `values.fold` of the field."""
    return f"{field}_key"


def set_table(field: str) -> str:
    """The table holding a set field's members (`groups` → `user_groups`)."""
    return f"user_{field}"


@dataclass(frozen=True, slots=True)
class Layout:
    """Which fields the store holds: scalar columns, set tables, case-insensitive keys."""

    scalars: dict[str, FieldType]
    sets: tuple[str, ...]
    keys: tuple[str, ...]  # fields with a key column (values.fold): username + link_by

    @classmethod
    def build(cls, fields: Mapping[str, FieldType], link_by: tuple[str, ...] = ()) -> Layout:
        """A layout for these fields; `link_by` names fields looked up case-insensitively."""
        scalars: dict[str, FieldType] = {n: k for n, k in fields.items() if k != "set"}
        sets = tuple(name for name, kind in fields.items() if kind == "set")
        keys = tuple(dict.fromkeys(("username", *(f for f in link_by if f in scalars))))
        layout = cls(scalars, sets, keys)
        layout.check()
        return layout

    def check(self) -> None:
        """Refuse a field whose column would collide with one the store keeps itself."""
        internal = {*USER_META_COLUMNS, *(key_column(k) for k in self.keys)}
        for name in self.scalars:
            if name in internal:
                raise SchemaError(
                    f"field {name!r} collides with the store's own column {name!r} of "
                    "table users; rename the field in [store.fields]"
                )


def ensure_schema(conn: sqlite3.Connection, layout: Layout) -> None:
    """Create missing tables, columns and indexes. Call inside a write transaction:
    sqlite-utils nests its own work in savepoints, so concurrent openers serialise.
    sqlite-utils is imported here, on use: most runs open a store whose schema is
    current, and importing it (with numpy or pandas when they are installed) is a tenth
    of a second of every command's start."""
    import sqlite_utils

    db = sqlite_utils.Database(conn, recursive_triggers=False, execute_plugins=False)
    users = db.table("users")
    user_columns: dict[str, Any] = {"id": int}
    for name, kind in layout.scalars.items():
        user_columns[name] = _COLUMN_TYPES[kind]
    for name in layout.keys:
        user_columns[key_column(name)] = str
    user_columns.update(created_at=str, updated_at=str, disabled_at=str)
    fresh: set[str] = set()  # key columns made (and filled with values.fold) just now
    if not users.exists():
        users.create(user_columns, pk="id")
        fresh.update(key_column(k) for k in layout.keys)
    else:
        existing = {c.lower() for c in users.columns_dict}
        for name, kind in user_columns.items():
            if name.lower() not in existing:
                users.add_column(name, kind)
                if name.endswith("_key") and name[: -len("_key")] in layout.keys:
                    field = name[: -len("_key")]
                    conn.execute(
                        f"UPDATE users SET [{name}] = jitprov_fold([{field}])"
                        f" WHERE [{field}] IS NOT NULL"
                    )
                    fresh.add(name)
    for name in layout.keys:
        users.create_index([key_column(name)], unique=name == "username", if_not_exists=True)
    for name in layout.sets:
        table = db.table(set_table(name))
        if not table.exists():
            table.create(
                {"user_id": int, "value": str, "source": str},
                foreign_keys=[("user_id", "users", "id")],
                not_null=["user_id", "value", "source"],
            )
        table.create_index(["user_id", "value", "source"], unique=True, if_not_exists=True)
        table.create_index(["value"], if_not_exists=True)
    links = db.table("identity_links")
    if not links.exists():
        links.create(
            {
                "connection": str,
                "subject": str,
                "subject_key": str,
                "user_id": int,
                "created_at": str,
                "last_seen_at": str,
            },
            foreign_keys=[("user_id", "users", "id")],
            not_null=["connection", "subject", "subject_key", "user_id"],
        )
    links.create_index(["connection", "subject_key"], unique=True, if_not_exists=True)
    links.create_index(["user_id"], if_not_exists=True)
    audit = db.table("audit")
    if not audit.exists():
        audit.create(
            {
                "id": int,
                "at": str,
                "connection": str,
                "subject": str,
                "token_id": str,
                "outcome": str,
                "reason": str,
                "message": str,
                "user_id": int,
                "changes": str,
                "trace": str,
                "rules_sha256": str,
            },
            pk="id",
        )
    audit.create_index(["user_id"], if_not_exists=True)
    seen = db.table("seen_tokens")
    if not seen.exists():
        seen.create(
            {"connection": str, "token_id": str, "expires_at": str},
            pk=("connection", "token_id"),
            not_null=["connection", "token_id"],
        )
    conn.execute(
        f"CREATE TABLE IF NOT EXISTS {META_TABLE} (name TEXT PRIMARY KEY, value TEXT NOT NULL)"
    )
    conn.execute(PENDING_TABLE)
    pending = {row[1] for row in conn.execute("PRAGMA table_info(pending_requests)")}
    for name in PENDING_COLUMNS:
        if name not in pending:
            conn.execute(f"ALTER TABLE pending_requests ADD COLUMN {name} TEXT")
    conn.execute(PENDING_INDEX)
    conn.execute(HANDOFF_TABLE)
    conn.execute(HANDOFF_INDEX)
    # WITHOUT ROWID: the row lives in its key's b-tree, so each sign-in's upsert writes
    # one tree, not a table and its key index.
    conn.execute(RECORDED_TABLE.format(integer="INTEGER", options=" WITHOUT ROWID"))
    conn.execute(
        f"INSERT INTO {META_TABLE} (name, value) VALUES (?, ?) ON CONFLICT (name) DO NOTHING",
        record_secret_row(),
    )
    keys = [(name, key_column(name)) for name in layout.keys]
    rekey(conn, lambda sql, rows: conn.executemany(sql, rows), keys, "?", fresh=fresh)
