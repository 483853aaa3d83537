"""The store floor: the rows jitprov's SQLite store writes for a sign-in, by sqlite3.

Both writers open the store file jitprov made (its tables and indexes) with jitprov's
durability: WAL, `synchronous=NORMAL`, foreign keys on, one `BEGIN IMMEDIATE`
transaction per sign-in. Each sign-in is the replay entry, the identity link looked up
by its key, the account inserted (with its members and its link) or read, compared and
updated (members diffed, the link touched), the audit row with the same outcome,
changes and trace JSON jitprov writes, and the identity's recorded sign-in (its
attribute bag, upserted). Prepared statements, no abstraction.

- `baseline` is the store stage's loop: its tokens come decoded (`Token`), its fields
  are fixed (username, email, department, groups); tests/test_bench_store.py checks
  that it leaves exactly jitprov's store.
- `SqliteRows` writes any connection's plan: the fields and set operations a rules
  floor gives (bench.floors.rules). The trace and the rules' digest are constants given
  to it (the rules floors build no trace): for the bench's tokens every assignment takes
  effect, so the trace is the same for each. tests/test_bench_floors.py checks that it
  leaves jitprov's rows for the end to end stage's tokens.

No jitprov code: the standard library only.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import unicodedata
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

# The store stage's rules and what its audit rows record (bench/bench_store.py).
STORE_RULES = """\
username   = first(@uid)
email      = first(@email)
department = first(@department)
groups     = @groups
"""
STORE_TRACE = json.dumps(
    [
        {"field": f, "line": n, "rule": None}
        for n, f in enumerate(("username", "email", "department", "groups"), 1)
    ]
)
STORE_RULES_SHA256 = hashlib.sha256(STORE_RULES.encode()).hexdigest()
STAMP = "2025-05-01T12:00:00Z"


@dataclass(frozen=True, slots=True)
class Token:
    """One sign-in of the store stage, as sample bytes (jitprov's input) and as decoded
    values (the loop's)."""

    raw: bytes
    n: int
    token_id: str
    department: str
    groups: tuple[str, ...]


# jitprov records each identity's latest sign-in (its validated attributes, for `jitprov
# plan`): one upsert per sign-in, done here by hand too.
RECORD = (
    "INSERT INTO recorded_signins (connection, subject_key, subject, user_id, outcome, at,"
    " rules_sha256, bag) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (connection,"
    " subject_key) DO UPDATE SET subject = excluded.subject, user_id = excluded.user_id,"
    " outcome = excluded.outcome, at = excluded.at, rules_sha256 = excluded.rules_sha256,"
    " bag = excluded.bag"
)
_encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def bag(
    kind: str,
    name_id: str,
    name_id_format: str | None,
    issuer: str | None,
    authn_context: str | None,
    attributes: Mapping[str, list[str]],
) -> str:
    """The recorded attribute bag of a sign-in, as JSON."""
    return _encode(
        {
            "v": 1,
            "kind": kind,
            "name_id": name_id,
            "name_id_format": name_id_format,
            "issuer": issuer,
            "authn_context": authn_context,
            "email_verified": False,
            "attributes": attributes,
        }
    )


def connect(db: Path) -> sqlite3.Connection:
    """A connection with jitprov's durability settings."""
    conn = sqlite3.connect(db, isolation_level=None, timeout=5.0)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute("PRAGMA foreign_keys = ON")
    return conn


def baseline(
    db: Path,
    *,
    rules_sha256: str = STORE_RULES_SHA256,
    trace: str = STORE_TRACE,
    issuer: str = "https://idp.example/",
) -> tuple[Callable[[Token], object], Callable[[], None]]:
    """The store stage's hand-written loop: the same reads and writes as jitprov, by hand.
    It leaves a store identical to jitprov's, audit rows included (the trace and the
    rules' digest are constants here)."""
    conn = connect(db)
    ex = conn.execute

    def apply(t: Token) -> object:
        ex("BEGIN IMMEDIATE")
        cur = ex(
            "INSERT INTO seen_tokens (connection, token_id, expires_at) VALUES ('okta', ?, NULL)"
            " ON CONFLICT (connection, token_id) DO NOTHING",
            (t.token_id,),
        )
        assert cur.rowcount == 1
        row = ex(
            "SELECT user_id FROM identity_links WHERE connection = 'okta' AND subject_key = ?",
            (f"s{t.n}",),
        ).fetchone()
        changes: dict[str, object] = {}
        wanted = set(t.groups)
        if row is None:
            username, email = f"u{t.n}", f"u{t.n}@example.com"
            assert ex("SELECT id FROM users WHERE username_key = ?", (username,)).fetchone() is None
            user_id = ex(
                "INSERT INTO users (username, username_key, email, department, created_at,"
                " updated_at) VALUES (?, ?, ?, ?, ?, ?)",
                (username, username, email, t.department, STAMP, STAMP),
            ).lastrowid
            conn.executemany(
                "INSERT INTO user_groups (user_id, value, source) VALUES (?, ?, 'okta')",
                [(user_id, g) for g in sorted(wanted)],
            )
            ex(
                "INSERT INTO identity_links (connection, subject, subject_key, user_id,"
                " created_at, last_seen_at) VALUES ('okta', ?, ?, ?, ?, ?)",
                (f"s{t.n}", f"s{t.n}", user_id, STAMP, STAMP),
            )
            changes = {
                "username": [None, username],
                "email": [None, email],
                "department": [None, t.department],
                "groups": {"added": sorted(wanted), "removed": []},
            }
            outcome = "created"
        else:
            user_id = row[0]
            user = ex(
                "SELECT id, username, email, department FROM users WHERE id = ?", (user_id,)
            ).fetchone()
            members = set(ex("SELECT value, source FROM user_groups WHERE user_id = ?", (user_id,)))
            ex("SELECT connection, subject FROM identity_links WHERE user_id = ?", (user_id,))
            keep = {m for m in members if m[1] != "okta"} | {(g, "okta") for g in wanted}
            if user[3] != t.department:
                ex(
                    "UPDATE users SET department = ?, updated_at = ? WHERE id = ?",
                    (t.department, STAMP, user_id),
                )
                changes["department"] = [user[3], t.department]
            elif keep != members:
                ex("UPDATE users SET updated_at = ? WHERE id = ?", (STAMP, user_id))
            conn.executemany(
                "DELETE FROM user_groups WHERE user_id = ? AND value = ? AND source = ?",
                [(user_id, v, s) for v, s in members - keep],
            )
            conn.executemany(
                "INSERT INTO user_groups (user_id, value, source) VALUES (?, ?, ?)",
                [(user_id, v, s) for v, s in keep - members],
            )
            ex(
                "UPDATE identity_links SET last_seen_at = ? WHERE connection = 'okta'"
                " AND subject_key = ?",
                (STAMP, f"s{t.n}"),
            )
            old, new = {v for v, _ in members}, {v for v, _ in keep}
            if old != new:
                changes["groups"] = {"added": sorted(new - old), "removed": sorted(old - new)}
            outcome = "updated" if changes or keep != members else "unchanged"
        ex(
            "INSERT INTO audit (at, connection, subject, token_id, outcome, reason, message,"
            " user_id, changes, trace, rules_sha256) VALUES (?, 'okta', ?, ?, ?, NULL, NULL,"
            " ?, ?, ?, ?)",
            (
                STAMP,
                f"s{t.n}",
                t.token_id,
                outcome,
                user_id,
                json.dumps(changes),
                trace,
                rules_sha256,
            ),
        )
        attributes = {
            "uid": [f"u{t.n}"],
            "email": [f"u{t.n}@example.com"],
            "department": [t.department],
            "groups": list(t.groups),
        }
        recorded = bag("sample", f"s{t.n}", None, issuer, None, attributes)
        subject = f"s{t.n}"
        ex(RECORD, ("okta", subject, subject, user_id, outcome, STAMP, rules_sha256, recorded))
        ex("COMMIT")
        return outcome

    return apply, conn.close


# ------------------------------------------------------------- any connection's plan


def fold(text: str) -> str:
    """A case-insensitive key as jitprov keeps them: Unicode NFC, then `str.lower`."""
    return unicodedata.normalize("NFC", text).lower()


def _column(value: object) -> object:
    """A field value as its column holds it: booleans as 0/1, numbers as their text."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, Decimal):
        text = format(value.normalize(), "f")
        return text.rstrip("0").rstrip(".") if "." in text else text
    return str(value)


class Replayed(Exception):
    """The token ID was seen before: nothing is written."""


class SqliteRows:
    """Writes one connection's sign-ins into a jitprov SQLite store, by hand.

    `columns` are the `users` columns that hold fields (in the table's order), `sets`
    the set fields (each in table `user_<name>`); `trace` and `rules_sha256` are the
    audit row's constants; `email_subjects`: the subjects are emailAddress NameIDs,
    linked by their case-insensitive key (else exactly).
    """

    def __init__(
        self,
        db: Path,
        *,
        connection: str,
        columns: Sequence[str],
        sets: Sequence[str],
        trace: str,
        rules_sha256: str,
        email_subjects: bool = True,
    ) -> None:
        self.conn = connect(db)
        self.connection = connection
        self.columns = tuple(columns)
        self.sets = tuple(sets)
        self.trace = trace
        self.rules_sha256 = rules_sha256
        self.email_subjects = email_subjects
        names = ", ".join(f'"{c}"' for c in self.columns)
        marks = ", ".join("?" for _ in self.columns)
        self._insert_user = (
            f"INSERT INTO users ({names}, username_key, created_at, updated_at)"
            f" VALUES ({marks}, ?, ?, ?)"
        )
        self._select_user = f"SELECT {names} FROM users WHERE id = ?"
        self._members = {s: f'SELECT value, source FROM "user_{s}" WHERE user_id = ?' for s in sets}
        self._insert_member = {
            s: f'INSERT INTO "user_{s}" (user_id, value, source) VALUES (?, ?, ?)' for s in sets
        }
        self._delete_member = {
            s: f'DELETE FROM "user_{s}" WHERE user_id = ? AND value = ? AND source = ?'
            for s in sets
        }

    def close(self) -> None:
        self.conn.close()

    def _members_after(
        self,
        field: str,
        members: set[tuple[str, str]],
        ops: Iterable[tuple[str, str, tuple[str, ...]]],
    ) -> set[tuple[str, str]]:
        """A set's (value, source) rows once the plan's operations on it are applied."""
        source = self.connection
        after = set(members)
        for name, kind, values in ops:
            if name != field:
                continue
            if kind in ("replace", "clear"):
                after = {m for m in after if m[1] != source}
            if kind in ("replace", "add"):
                after.update((v, source) for v in values)
            elif kind == "remove":
                gone = set(values)
                after = {m for m in after if m[0] not in gone}
        return after

    def write(
        self,
        subject: str,
        token_id: str,
        expires_at: str | None,
        now: str,
        fields: Mapping[str, Any],
        ops: Sequence[tuple[str, str, tuple[str, ...]]],
        recorded: str | None = None,
    ) -> str:
        """One sign-in's transaction; its outcome ("created", "updated", "unchanged").
        `recorded`: the sign-in's attribute bag (`bag`), kept as jitprov keeps it.
        Raises Replayed for a token ID seen before."""
        conn, ex, source = self.conn, self.conn.execute, self.connection
        key = fold(subject) if self.email_subjects else subject
        ex("BEGIN IMMEDIATE")
        try:
            claimed = ex(
                "INSERT INTO seen_tokens (connection, token_id, expires_at) VALUES (?, ?, ?)"
                " ON CONFLICT (connection, token_id) DO NOTHING",
                (source, token_id, expires_at),
            )
            if claimed.rowcount != 1:
                raise Replayed(token_id)
            row = ex(
                "SELECT user_id FROM identity_links WHERE connection = ? AND subject_key = ?",
                (source, key),
            ).fetchone()
            changes: dict[str, object] = {}
            if row is None:
                username_key = fold(fields["username"])
                taken = ex("SELECT id FROM users WHERE username_key = ?", (username_key,))
                if taken.fetchone() is not None:
                    raise sqlite3.IntegrityError(f"username {fields['username']!r} is taken")
                values = [_column(fields.get(c)) for c in self.columns]
                user_id = ex(self._insert_user, (*values, username_key, now, now)).lastrowid
                for column, value in zip(self.columns, values, strict=True):
                    if value is not None:
                        changes[column] = [None, fields[column]]
                for name in self.sets:
                    after = self._members_after(name, set(), ops)
                    if after:
                        conn.executemany(
                            self._insert_member[name], [(user_id, v, s) for v, s in sorted(after)]
                        )
                        added = sorted({v for v, _ in after})
                        changes[name] = {"added": added, "removed": []}
                ex(
                    "INSERT INTO identity_links (connection, subject, subject_key, user_id,"
                    " created_at, last_seen_at) VALUES (?, ?, ?, ?, ?, ?)",
                    (source, subject, key, user_id, now, now),
                )
                outcome = "created"
            else:
                user_id = row[0]
                stored = dict(
                    zip(self.columns, ex(self._select_user, (user_id,)).fetchone(), strict=True)
                )
                changed = {
                    c: v for c, v in fields.items() if c in stored and _column(v) != stored[c]
                }
                touched = False
                diffs: dict[str, dict[str, list[str]]] = {}
                for name in self.sets:
                    members = set(ex(self._members[name], (user_id,)))
                    after = self._members_after(name, members, ops)
                    if after != members:
                        touched = True
                        conn.executemany(
                            self._delete_member[name],
                            [(user_id, v, s) for v, s in members - after],
                        )
                        conn.executemany(
                            self._insert_member[name],
                            [(user_id, v, s) for v, s in after - members],
                        )
                        old, new = {v for v, _ in members}, {v for v, _ in after}
                        if old != new:
                            diffs[name] = {
                                "added": sorted(new - old),
                                "removed": sorted(old - new),
                            }
                if changed:
                    names = list(changed)
                    values = [_column(changed[c]) for c in names]
                    if "username" in changed:
                        names.append("username_key")
                        values.append(fold(changed["username"]))
                    assignments = ", ".join(f'"{c}" = ?' for c in names)
                    ex(
                        f"UPDATE users SET {assignments}, updated_at = ? WHERE id = ?",
                        (*values, now, user_id),
                    )
                    for column in self.columns:
                        if column in changed:
                            changes[column] = [stored[column], changed[column]]
                elif touched:
                    ex("UPDATE users SET updated_at = ? WHERE id = ?", (now, user_id))
                changes.update(diffs)
                ex(
                    "UPDATE identity_links SET last_seen_at = ? WHERE connection = ?"
                    " AND subject_key = ?",
                    (now, source, key),
                )
                outcome = "updated" if changes or touched else "unchanged"
            ex(
                "INSERT INTO audit (at, connection, subject, token_id, outcome, reason,"
                " message, user_id, changes, trace, rules_sha256)"
                " VALUES (?, ?, ?, ?, ?, NULL, NULL, ?, ?, ?, ?)",
                (
                    now,
                    source,
                    subject,
                    token_id,
                    outcome,
                    user_id,
                    json.dumps(changes, ensure_ascii=False),
                    self.trace,
                    self.rules_sha256,
                ),
            )
            if recorded is not None:
                ex(
                    RECORD,
                    (source, key, subject, user_id, outcome, now, self.rules_sha256, recorded),
                )
        except BaseException:
            ex("ROLLBACK")
            raise
        ex("COMMIT")
        return outcome
