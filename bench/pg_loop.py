"""The postgres stage's baseline: a hand-written psycopg loop provisioning sign-ins.

`python bench/pg_loop.py URL FILE.jsonl STAMP RULES_SHA256` reads the lines of FILE.jsonl
(`{"token": "<sample TOML>"}`), parses each sample with tomllib and writes it the way a
competent developer would by hand, into the store `jitprov migrate` made: one
transaction per sign-in (default `synchronous_commit`), the replay entry, the account
locked with `SELECT … FOR UPDATE`, its columns updated, its group rows diffed, the link
touched, an audit row with the same outcome, changes and trace JSON that jitprov
writes, and the identity's recorded sign-in (its attribute bag, upserted), for the
stage's rules:

    username   = first(@uid)
    email      = first(@email)
    department = first(@department)
    groups     = @groups

A transaction PostgreSQL aborts (deadlock, serialization failure, a key another writer
took first) is run again. Prints one JSON object: the count of each outcome.

This file imports nothing of jitprov (`rules`, `engine`, `tui`): it checks that before it
exits, so the baseline can never measure jitprov's own code.
"""

from __future__ import annotations

import json
import sys
import tomllib
import unicodedata
from collections import Counter

import psycopg
from psycopg import errors

FIELDS = ("username", "email", "department")  # the single-valued fields, in rules order
ATTRIBUTES = {"username": "uid", "email": "email", "department": "department"}
# The audit row's trace: which line of the rules set which field (no rule blocks).
TRACE = json.dumps(
    [{"field": f, "line": n, "rule": None} for n, f in enumerate((*FIELDS, "groups"), 1)]
)
ISSUER = "https://idp.example/"  # the stage's connection's (a sample carries no Issuer)
# jitprov keeps each identity's latest sign-in (its attributes, for `jitprov plan`).
RECORD = (
    "INSERT INTO recorded_signins (connection, subject_key, subject, user_id, outcome, at,"
    " rules_sha256, bag) VALUES ('okta', %s, %s, %s, %s, %s, %s, %s) ON CONFLICT"
    " (connection, subject_key) DO UPDATE SET subject = excluded.subject, user_id ="
    " excluded.user_id, outcome = excluded.outcome, at = excluded.at, rules_sha256 ="
    " excluded.rules_sha256, bag = excluded.bag"
)
RETRIED = (errors.DeadlockDetected, errors.SerializationFailure, errors.UniqueViolation)

AUDIT = (
    "INSERT INTO audit (at, connection, subject, token_id, outcome, reason, message,"
    " user_id, changes, trace, rules_sha256)"
    " VALUES (%s, 'okta', %s, %s, %s, NULL, NULL, %s, %s, %s, %s)"
)


def key(text: str) -> str:
    """The case-insensitive key of a username: NFC, then lower case."""
    return unicodedata.normalize("NFC", text).lower()


def first(values: object) -> str | None:
    if isinstance(values, list):
        return str(values[0]) if values else None
    return None if values is None else str(values)


class Loop:
    def __init__(self, url: str, stamp: str, rules_sha256: str) -> None:
        self.conn = psycopg.connect(url)
        self.stamp = stamp
        self.sha = rules_sha256

    def sign_in(self, sample: dict[str, object]) -> str:
        for attempt in range(10):
            try:
                with self.conn.transaction():
                    return self._write(sample)
            except RETRIED:
                if attempt == 9:
                    raise
        raise AssertionError("unreachable")

    def _write(self, sample: dict[str, object]) -> str:
        ex = self.conn.execute
        stamp = self.stamp
        subject, token_id = str(sample["subject"]), str(sample["token_id"])
        attrs = sample["attributes"]
        assert isinstance(attrs, dict)
        wanted = {f: first(attrs.get(ATTRIBUTES[f])) for f in FIELDS}
        groups = sorted({str(g) for g in attrs.get("groups", [])})
        claimed = ex(
            "INSERT INTO seen_tokens (connection, token_id, expires_at) VALUES ('okta', %s, NULL)"
            " ON CONFLICT (connection, token_id) DO NOTHING RETURNING 1",
            (token_id,),
        ).fetchone()
        if claimed is None:
            ex(AUDIT, (stamp, subject, token_id, "rejected", None, "{}", "[]", self.sha))
            return "rejected"
        row = ex(
            "SELECT u.id, u.username, u.email, u.department FROM identity_links l"
            " JOIN users u ON u.id = l.user_id"
            " WHERE l.connection = 'okta' AND l.subject_key = %s FOR UPDATE OF u",
            (subject,),
        ).fetchone()
        changes: dict[str, object] = {}
        if row is None:
            username = wanted["username"]
            assert username is not None
            taken = ex("SELECT 1 FROM users WHERE username_key = %s", (key(username),)).fetchone()
            if taken is not None:
                raise SystemExit(f"username {username!r} is taken: not in this benchmark's data")
            user = ex(
                "INSERT INTO users (username, username_key, email, department, created_at,"
                " updated_at) VALUES (%s, %s, %s, %s, %s, %s) RETURNING id",
                (username, key(username), wanted["email"], wanted["department"], stamp, stamp),
            ).fetchone()
            assert user is not None
            user_id = user[0]
            with self.conn.cursor() as cur:
                cur.executemany(
                    "INSERT INTO user_groups (user_id, value, source) VALUES (%s, %s, 'okta')",
                    [(user_id, g) for g in groups],
                )
            ex(
                "INSERT INTO identity_links (connection, subject, subject_key, user_id,"
                " created_at, last_seen_at) VALUES ('okta', %s, %s, %s, %s, %s)",
                (subject, subject, user_id, stamp, stamp),
            )
            changes = {f: [None, wanted[f]] for f in FIELDS if wanted[f] is not None}
            changes["groups"] = {"added": groups, "removed": []}
            outcome = "created"
        else:
            user_id = row[0]
            stored = dict(zip(FIELDS, row[1:], strict=True))
            members = ex(
                "SELECT value, source FROM user_groups WHERE user_id = %s", (user_id,)
            ).fetchall()
            mine = {v for v, s in members if s == "okta"}
            others = {v for v, s in members if s != "okta"}
            add, drop = sorted(set(groups) - mine), sorted(mine - set(groups))
            changed = [f for f in FIELDS if wanted[f] is not None and wanted[f] != stored[f]]
            if changed:
                sets = ", ".join(f"{f} = %s" for f in changed)
                values: list[object] = [wanted[f] for f in changed]
                if "username" in changed:
                    sets += ", username_key = %s"
                    values.append(key(str(wanted["username"])))
                ex(
                    f"UPDATE users SET {sets}, updated_at = %s WHERE id = %s",
                    (*values, stamp, user_id),
                )
            elif add or drop:
                ex("UPDATE users SET updated_at = %s WHERE id = %s", (stamp, user_id))
            with self.conn.cursor() as cur:
                if drop:
                    cur.executemany(
                        "DELETE FROM user_groups WHERE user_id = %s AND value = %s"
                        " AND source = 'okta'",
                        [(user_id, v) for v in drop],
                    )
                if add:
                    cur.executemany(
                        "INSERT INTO user_groups (user_id, value, source) VALUES (%s, %s, 'okta')",
                        [(user_id, v) for v in add],
                    )
            ex(
                "UPDATE identity_links SET last_seen_at = %s"
                " WHERE connection = 'okta' AND subject_key = %s",
                (stamp, subject),
            )
            changes = {f: [stored[f], wanted[f]] for f in changed}
            before, after = mine | others, set(groups) | others
            if before != after:
                changes["groups"] = {
                    "added": sorted(after - before),
                    "removed": sorted(before - after),
                }
            outcome = "updated" if changed or add or drop else "unchanged"
        ex(
            AUDIT,
            (stamp, subject, token_id, outcome, user_id, json.dumps(changes), TRACE, self.sha),
        )
        bag = {
            "v": 1,
            "kind": "sample",
            "name_id": subject,
            "name_id_format": None,
            "issuer": ISSUER,
            "authn_context": None,
            "email_verified": False,
            "attributes": {
                name: [str(v) for v in (values if isinstance(values, list) else [values])]
                for name, values in attrs.items()
            },
        }
        encoded = json.dumps(bag, ensure_ascii=False, separators=(",", ":"))
        ex(RECORD, (subject, subject, user_id, outcome, stamp, self.sha, encoded))
        return outcome

    def close(self) -> None:
        self.conn.close()


def main(argv: list[str]) -> int:
    url, path, stamp, sha = argv
    loop = Loop(url, stamp, sha)
    outcomes: Counter[str] = Counter()
    try:
        with open(path, "rb") as lines:
            for line in lines:
                if line.strip():
                    sample = tomllib.loads(json.loads(line)["token"])
                    outcomes[loop.sign_in(sample)] += 1
    finally:
        loop.close()
    borrowed = sorted(m for m in sys.modules if m.split(".")[0] in ("rules", "engine", "tui"))
    if borrowed:
        raise SystemExit(f"the baseline loop imported jitprov's code: {borrowed}")
    print(json.dumps(dict(outcomes)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
