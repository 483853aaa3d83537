"""Re-keying a store whose case-insensitive keys were computed another way (product.md §1:
"A store whose keys were computed another way is re-keyed by the additive migration").

Each key column the store computes with `values.fold` has a row in `store_meta`
(`fold:users.username_key` = `nfc-lower`). Opening a store whose key column lacks that
row — a store written before keys were NFC + lower (they were `str.casefold`), or a
link_by key column left from an older config — recomputes the column from its field, once,
inside the schema transaction, and then writes the row. Both SQL stores share this code;
each passes its parameter mark and how it runs one statement for many rows.

Nothing is lost when two keys that used to differ become equal (`José` written in NFC
and in NFD are one username now):
- `username_key` is unique: the account whose key already had the new value keeps it
  (else the lowest id); the others get no key (NULL) until they are renamed, are
  reported, and stay linked, readable and provisionable through their links.
- `identity_links.subject_key` is unique per connection: the link keeps its old key and
  is reported; its account stays as it is.
- link_by key columns are not unique: equal keys are what link_by then reports as
  "several accounts have email x".
Links whose key equals their subject were not folded (persistent NameIDs, OIDC `sub`,
`subject_from` values compare exactly, §2 step 4) and are left alone; a link whose key
differs from its subject was an emailAddress NameID's and gets the new fold.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from engine.store.values import FOLD, fold

META_TABLE = "store_meta"
LINKS_MARK = "fold:identity_links.subject_key"
# A key no subject or username ever has, held by a link while its keys move (a unique
# index checks each row as it is updated, so keys are moved in two steps).
_PARKED = "\x01jitprov re-key {}"

log = logging.getLogger("jitprov.store")

Many = Callable[[str, list[tuple[object, ...]]], object]


def mark(column: str) -> str:
    """The `store_meta` name recording how a `users` key column was computed."""
    return f"fold:users.{column}"


def marked(conn: Any) -> set[str]:
    """The key columns (as `mark` names) recorded as computed with the current fold."""
    rows = conn.execute(f"SELECT name FROM {META_TABLE} WHERE value = '{FOLD}'").fetchall()
    return {str(row[0]) for row in rows}


def record(many: Many, names: Iterable[str], sql_mark: str) -> None:
    """Record `names` as computed with the current fold (an upsert)."""
    write_meta(many, {name: FOLD for name in names}, sql_mark)


def write_meta(many: Many, rows: Mapping[str, str], sql_mark: str) -> None:
    """Set `store_meta` rows (name → value), adding or replacing each."""
    if rows:
        many(
            f"INSERT INTO {META_TABLE} (name, value) VALUES ({sql_mark}, {sql_mark})"
            " ON CONFLICT (name) DO UPDATE SET value = excluded.value",
            list(rows.items()),
        )


def rekey_users(conn: Any, many: Many, field: str, column: str, m: str) -> list[str]:
    """Recompute `users.<column>` from `users.<field>`; the collisions, described."""
    rows = conn.execute(f'SELECT id, "{field}", "{column}" FROM users ORDER BY id').fetchall()
    final = {int(user_id): fold(value) for user_id, value, _ in rows}
    current = {int(user_id): key for user_id, _, key in rows}
    problems: list[str] = []
    if column == "username_key":
        problems = _settle_unique(rows, final, current)
    changed = [(uid, key) for uid, key in final.items() if key != current[uid]]
    if not changed:
        return problems
    if column == "username_key":  # unique: free every key that moves first
        many(f'UPDATE users SET "{column}" = NULL WHERE id = {m}', [(u,) for u, _ in changed])
    many(f'UPDATE users SET "{column}" = {m} WHERE id = {m}', [(k, u) for u, k in changed])
    return problems


def _settle_unique(
    rows: list[tuple[Any, ...]], final: dict[int, str | None], current: dict[int, Any]
) -> list[str]:
    """Make the new username keys unique: in a group of accounts whose usernames are now
    one, the one whose key already had that value keeps it (else the lowest id); the
    others get NULL. Describes each group."""
    groups: dict[str, list[int]] = {}
    for user_id, key in final.items():
        if key is not None:
            groups.setdefault(key, []).append(user_id)
    names = {int(r[0]): r[1] for r in rows}
    problems = []
    for key, ids in groups.items():
        if len(ids) < 2:
            continue
        keeper = next((i for i in ids if current[i] == key), ids[0])
        for other in ids:
            if other != keeper:
                final[other] = None
        listed = ", ".join(f"{i} ({names[i]!r})" for i in ids)
        problems.append(
            f"accounts {listed} now have the same username case-insensitively ({key!r}):"
            f" account {keeper} keeps it; rename the others (they keep working through"
            " their links but cannot be found by username until then)"
        )
    return problems


def rekey_links(conn: Any, many: Many, m: str) -> list[str]:
    """Give emailAddress NameID links (key ≠ subject) the new fold; the collisions."""
    rows = conn.execute(
        "SELECT connection, subject, subject_key FROM identity_links"
        " ORDER BY connection, created_at, subject_key"
    ).fetchall()
    taken = {(c, k) for c, _, k in rows}
    moves: list[tuple[str, str, str]] = []  # connection, old key, new key
    problems = []
    for connection, subject, key in rows:
        if key == subject:
            continue  # compared exactly: not a folded key
        new = fold(subject)
        if new == key:
            continue
        if (connection, new) in taken:
            problems.append(
                f"connection {connection!r}: the link of subject {subject!r} would have the"
                f" same key as another link ({new!r}); it keeps its old key {key!r}"
            )
            continue
        taken.discard((connection, key))
        taken.add((connection, new))
        moves.append((connection, key, new))
    if moves:
        update = (
            f"UPDATE identity_links SET subject_key = {m} WHERE connection = {m}"
            f" AND subject_key = {m}"
        )
        parked = [_PARKED.format(i) for i in range(len(moves))]
        many(update, [(p, c, old) for p, (c, old, _) in zip(parked, moves, strict=True)])
        many(update, [(new, c, p) for p, (c, _, new) in zip(parked, moves, strict=True)])
    return problems


def rekey(
    conn: Any, many: Many, keys: Iterable[tuple[str, str]], m: str, *, fresh: Iterable[str]
) -> None:
    """Re-key every `users` key column of `keys` ((field, key column) pairs) and the links'
    keys that lack their `store_meta` row, then record them all; `fresh` are key columns
    just added and filled with the current fold (recorded without a second pass).
    Collisions are logged."""
    done = marked(conn)
    fresh = set(fresh)
    problems: list[str] = []
    todo: list[str] = []
    for field, column in keys:
        if mark(column) in done:
            continue
        if column not in fresh:
            problems += rekey_users(conn, many, field, column, m)
        todo.append(mark(column))
    if LINKS_MARK not in done:
        problems += rekey_links(conn, many, m)
        todo.append(LINKS_MARK)
    record(many, todo, m)
    for problem in problems:
        log.warning("store upgrade (case-insensitive keys are now NFC + lower): %s", problem)
