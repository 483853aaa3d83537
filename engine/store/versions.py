"""The store's schema version and what it holds, recorded in `store_meta`, so that opening
a store is one read when nothing changed, and schema changes run only when needed (by
`jitprov migrate`, or by the first open of a store that is empty or behind).

Rows (name → value), beside the re-key marks of engine.store.rekey:
- `schema_version` → the version of jitprov's own tables and indexes (SCHEMA_VERSION);
- `field:users.<name>` → the kind of each field column the store has;
- `set:<name>` → each set field's member table.

A store whose version is newer than this jitprov's is refused (an older jitprov must not
write tables it does not know). A store without the rows — one made before they existed —
is brought up to date by the additive migration, which then writes them.
"""

from __future__ import annotations

from collections.abc import Mapping

from engine.store.base import StoreError
from engine.store.rekey import LINKS_MARK, mark
from engine.store.schema import Layout, key_column
from engine.store.values import FOLD

# 2: pending_requests (sign-ins this SP started); 3: their OIDC nonce and PKCE verifier,
# and handoffs (sign-ins handed to the application by a one-time reference); 4: recorded
# sign-ins (for `jitprov plan`), the secret of their keyed hashes, users.disabled_at
SCHEMA_VERSION = 4
VERSION_ROW = "schema_version"


class SchemaBehind(StoreError):
    """The store needs a schema change this process will not make (`migrate = "manual"`)."""


def layout_rows(layout: Layout) -> dict[str, str]:
    """The `store_meta` rows a store holding `layout` has (re-key marks excepted)."""
    rows = {VERSION_ROW: str(SCHEMA_VERSION)}
    rows.update({f"field:users.{name}": kind for name, kind in layout.scalars.items()})
    rows.update({f"set:{name}": "set" for name in layout.sets})
    return rows


def is_current(meta: Mapping[str, str], layout: Layout) -> bool:
    """True when `meta` (the store's rows) records everything `layout` needs."""
    if any(meta.get(name) != value for name, value in layout_rows(layout).items()):
        return False
    marks = [LINKS_MARK, *(mark(key_column(k)) for k in layout.keys)]
    return all(meta.get(name) == FOLD for name in marks)


def check_version(meta: Mapping[str, str], label: str) -> None:
    """Refuse a store made by a newer jitprov."""
    raw = meta.get(VERSION_ROW)
    if raw is None:
        return
    try:
        version = int(raw)
    except ValueError:
        raise StoreError(f"store {label}: unreadable schema version {raw!r}") from None
    if version > SCHEMA_VERSION:
        raise StoreError(
            f"store {label}: its schema version is {version}, newer than this jitprov's"
            f" ({SCHEMA_VERSION}); upgrade jitprov to use it"
        )


def behind(label: str) -> SchemaBehind:
    return SchemaBehind(
        f"store {label}: its schema is behind the config (new fields or link_by keys);"
        ' the config says migrate = "manual": run `jitprov migrate` first'
    )


Shape = dict[str, set[str]]  # table → columns, plus "index:<name>" entries under ""


def describe(before: Shape, after: Shape) -> list[str]:
    """What a migration changed, for people: tables, columns and indexes added."""
    changes: list[str] = []
    for table in sorted(after):
        if table == "":
            continue
        if table not in before:
            changes.append(f"created table {table}")
            continue
        for column in sorted(after[table] - before[table]):
            changes.append(f"added column {table}.{column}")
    for index in sorted(after.get("", set()) - before.get("", set())):
        changes.append(f"created index {index}")
    return changes
