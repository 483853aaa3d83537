"""The python3-saml pipeline: the sign-in a team would build today without jitprov.

python3-saml validates the POSTed (base64) response in strict mode with signed
assertions required (`OneLogin_Saml2_Response(settings, b64).is_valid(request_data)`),
`get_attributes()` reads the attributes, `saml_mapping` maps them by hand (the same
mapping as the end to end stage's rules), and `hand_store` writes the account with
sqlite3: a replay row, the identity link, the account inserted or updated, its groups
diffed, an audit row, in one `BEGIN IMMEDIATE` transaction on a WAL store with
`synchronous=NORMAL` (jitprov's durability). Settings are built once.

As a whole process, over a folder of base64 responses (one a file, read in name order;
one JSON line of outcome a response, as `jitprov apply --batch DIR --json` prints):

    python -m bench.floors.pipeline --cert IDP.crt --issuer I --audience A \\
        --recipient URL --db PEER.db DIR

No jitprov code: the standard library and python3-saml (lxml and xmlsec under it).
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
import unicodedata
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS users (id INTEGER PRIMARY KEY, username TEXT,
  username_key TEXT UNIQUE, email TEXT, display_name TEXT, department TEXT,
  created_at TEXT, updated_at TEXT);
CREATE TABLE IF NOT EXISTS user_groups (user_id INTEGER REFERENCES users(id), value TEXT,
  source TEXT, UNIQUE (user_id, value, source));
CREATE TABLE IF NOT EXISTS identity_links (connection TEXT, subject TEXT, user_id INTEGER
  REFERENCES users(id), created_at TEXT, last_seen_at TEXT, UNIQUE (connection, subject));
CREATE TABLE IF NOT EXISTS audit (id INTEGER PRIMARY KEY, at TEXT, connection TEXT,
  subject TEXT, token_id TEXT, outcome TEXT, user_id INTEGER, changes TEXT);
CREATE TABLE IF NOT EXISTS seen_tokens (connection TEXT, token_id TEXT, expires_at TEXT,
  UNIQUE (connection, token_id));
"""


def saml_mapping(attributes: dict[str, list[str]]) -> dict[str, Any] | None:
    """The end to end stage's rules, by hand (None: denied, no e-mail)."""
    emails = attributes.get("email") or []
    if not emails:
        return None
    mail = emails[0].lower()
    groups = []
    for dn in attributes.get("memberOf", []):
        if "ou=apps," in dn.lower():
            first = dn.split(",", 1)[0]
            if first[:3].lower() == "cn=":
                groups.append(first[3:].lower())
    names = [next(iter(attributes.get(name) or []), None) for name in ("givenName", "sn")]
    return {
        "username": mail.rsplit("@", 1)[0],
        "email": mail,
        "display_name": " ".join(n for n in names if n) or None,
        "department": (attributes.get("department") or ["unknown"])[0],
        "groups": sorted({*groups, "everyone"}),
    }


def python3_saml_settings(cert_pem: bytes, *, issuer: str, audience: str, recipient: str) -> Any:
    """python3-saml's settings for our SP and the IdP: strict, assertions signed."""
    from onelogin.saml2.settings import OneLogin_Saml2_Settings

    body = "".join(cert_pem.decode().strip().splitlines()[1:-1])
    return OneLogin_Saml2_Settings(
        {
            "strict": True,
            "sp": {
                "entityId": audience,
                "assertionConsumerService": {
                    "url": recipient,
                    "binding": "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST",
                },
                "NameIDFormat": "urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress",
            },
            "idp": {
                "entityId": issuer,
                "singleSignOnService": {"url": issuer + "/sso"},
                "x509cert": body,
            },
            "security": {"wantAssertionsSigned": True},
        },
        sp_validation_only=True,
    )


def python3_saml_request(recipient: str, b64: str) -> dict[str, object]:
    """The request python3-saml checks a POSTed response against (our ACS)."""
    host, _, path = recipient.removeprefix("https://").partition("/")
    return {
        "https": "on",
        "http_host": host,
        "script_name": "/" + path,
        "get_data": {},
        "post_data": {"SAMLResponse": b64},
    }


def hand_store(path: Path, connection: str = "bench") -> Callable[[str, str, dict[str, Any]], str]:
    """Hand-written sqlite3 writes: replay row, find by link, insert or update, audit."""
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode = WAL")
    db.execute("PRAGMA synchronous = NORMAL")
    db.execute("PRAGMA foreign_keys = ON")
    db.executescript(SCHEMA)
    ex = db.execute

    def write(subject: str, token_id: str, user: dict[str, Any]) -> str:
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        ex("BEGIN IMMEDIATE")
        try:
            ex("INSERT INTO seen_tokens VALUES (?, ?, NULL)", (connection, token_id))
            row = ex(
                "SELECT user_id FROM identity_links WHERE connection = ? AND subject = ?",
                (connection, subject),
            ).fetchone()
            groups = set(user["groups"])
            changes: dict[str, Any]
            if row is None:
                user_id = ex(
                    "INSERT INTO users (username, username_key, email, display_name, department,"
                    " created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (
                        user["username"],
                        unicodedata.normalize("NFC", str(user["username"])).lower(),
                        user["email"],
                        user["display_name"],
                        user["department"],
                        now,
                        now,
                    ),
                ).lastrowid
                db.executemany(
                    "INSERT INTO user_groups VALUES (?, ?, ?)",
                    [(user_id, g, connection) for g in groups],
                )
                ex(
                    "INSERT INTO identity_links VALUES (?, ?, ?, ?, ?)",
                    (connection, subject, user_id, now, now),
                )
                outcome, changes = "created", user
            else:
                user_id = row[0]
                old = ex(
                    "SELECT email, display_name, department FROM users WHERE id = ?", (user_id,)
                ).fetchone()
                new = (user["email"], user["display_name"], user["department"])
                had = {
                    v
                    for (v,) in ex(
                        "SELECT value FROM user_groups WHERE user_id = ? AND source = ?",
                        (user_id, connection),
                    )
                }
                changes = {}
                if tuple(old) != new:
                    ex(
                        "UPDATE users SET email = ?, display_name = ?, department = ?,"
                        " updated_at = ? WHERE id = ?",
                        (*new, now, user_id),
                    )
                    changes["fields"] = [list(old), list(new)]
                if had != groups:
                    db.executemany(
                        "DELETE FROM user_groups WHERE user_id = ? AND value = ? AND source = ?",
                        [(user_id, g, connection) for g in had - groups],
                    )
                    db.executemany(
                        "INSERT INTO user_groups VALUES (?, ?, ?)",
                        [(user_id, g, connection) for g in groups - had],
                    )
                    changes["groups"] = sorted(groups ^ had)
                ex(
                    "UPDATE identity_links SET last_seen_at = ? WHERE connection = ?"
                    " AND subject = ?",
                    (now, connection, subject),
                )
                outcome = "updated" if changes else "unchanged"
            ex(
                "INSERT INTO audit (at, connection, subject, token_id, outcome, user_id, changes)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (now, connection, subject, token_id, outcome, user_id, json.dumps(changes)),
            )
            ex("COMMIT")
        except BaseException:
            ex("ROLLBACK")
            raise
        return outcome

    return write


class Pipeline:
    """python3-saml + `saml_mapping` + `hand_store`: one sign-in a call."""

    def __init__(
        self, cert_pem: bytes, *, issuer: str, audience: str, recipient: str, db: Path
    ) -> None:
        from onelogin.saml2.response import OneLogin_Saml2_Response

        self._response = OneLogin_Saml2_Response
        self.settings = python3_saml_settings(
            cert_pem, issuer=issuer, audience=audience, recipient=recipient
        )
        self.recipient = recipient
        self.store = hand_store(db)

    def sign_in(self, b64: str) -> str:
        """The outcome of one base64 response ("created", "updated", "unchanged",
        "denied"); raises when python3-saml finds it invalid."""
        response = self._response(self.settings, b64)
        if not response.is_valid(python3_saml_request(self.recipient, b64), raise_exceptions=True):
            raise ValueError(response.get_error())
        user = saml_mapping(response.get_attributes())
        if user is None:
            return "denied"
        return self.store(response.get_nameid(), response.get_assertion_id(), user)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.floors.pipeline", description=__doc__)
    parser.add_argument("--cert", type=Path, required=True, help="the IdP's certificate (PEM)")
    parser.add_argument("--issuer", required=True)
    parser.add_argument("--audience", required=True)
    parser.add_argument("--recipient", required=True)
    parser.add_argument("--db", type=Path, required=True)
    parser.add_argument("folder", type=Path)
    args = parser.parse_args(argv)
    pipeline = Pipeline(
        args.cert.read_bytes(),
        issuer=args.issuer,
        audience=args.audience,
        recipient=args.recipient,
        db=args.db,
    )
    out = sys.stdout
    for path in sorted(p for p in args.folder.iterdir() if p.is_file()):
        try:
            outcome = pipeline.sign_in(path.read_text().strip())
        except Exception as exc:  # one bad response does not stop the folder
            out.write(json.dumps({"outcome": "rejected", "message": str(exc)}) + "\n")
            continue
        out.write(json.dumps({"outcome": outcome}) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
