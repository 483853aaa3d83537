"""The load stage's peer: the sign-in endpoint a team would write today without jitprov.

A Flask app: `POST /acs` checks a SAML response with python3-saml
(`OneLogin_Saml2_Response(settings, b64).is_valid(request_data)`, strict, assertions
signed), `POST /oidc` checks an RS256 ID token with joserfc against the JWKS file (issuer,
audience, expiry with the same 120 s leeway as jitprov); either maps the attributes or
claims by hand, the same mapping as the bench connection's rules, and upserts the account
with sqlite-utils (`db["users"].upsert(..., pk="username")`) in one transaction, on a WAL
store with `synchronous=NORMAL` (jitprov's durability). Settings, keys and the claims
registry are loaded once per worker; each pipeline thread opens its own sqlite-utils
`Database` (sqlite3 connections stay in their thread). No replay cache, no audit row, no
identity links: what jitprov does beyond this is its own cost.

It runs under the same server as `jitprov serve` (bench/load_server.py: uvicorn, the
same knobs and worker count), the WSGI app wrapped as ASGI by `a2wsgi.WSGIMiddleware`
(its default pool of 10 threads). The workspace folder (BENCH_PEER_FOLDER) holds
`peer.json`, written by `bench.bench_load`, and the store `peer.db` (`create_store`,
made before the workers start).
"""

from __future__ import annotations

import json
import os
import re
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.floors.pipeline import saml_mapping  # the same rules, by hand

__all__ = ["create_flask", "create_store", "oidc_mapping", "saml_mapping"]

FOLDER_ENV = "BENCH_PEER_FOLDER"
LEEWAY_SECONDS = 120  # jitprov's default clock_skew
TEAM_GROUP = re.compile(r"^(eng|sales|ops)-")


def create_store(path: Path) -> None:
    """The peer's table, WAL mode: made once, before the workers start."""
    import sqlite_utils

    db = sqlite_utils.Database(path)
    db.enable_wal()
    db.table("users").create(
        {
            "username": str,
            "email": str,
            "display_name": str,
            "department": str,
            "groups": str,
            "subject": str,
            "updated_at": str,
        },
        pk="username",
        if_not_exists=True,
    )
    db.close()


def oidc_mapping(claims: dict[str, Any]) -> dict[str, Any] | None:
    """The bench OIDC connection's rules, by hand (None: denied, no e-mail)."""
    mail = claims.get("email")
    if not isinstance(mail, str) or not mail:
        return None
    mail = mail.lower()
    groups = [g.lower() for g in claims.get("groups", []) if TEAM_GROUP.match(g)]
    names = [claims.get("given_name"), claims.get("family_name")]
    return {
        "username": mail.rsplit("@", 1)[0],
        "email": mail,
        "display_name": " ".join(n for n in names if n) or None,
        "department": claims.get("department") or "unknown",
        "groups": sorted({*groups, "everyone"}),
    }


def create_flask(folder: Path) -> Any:
    """The Flask app for the workspace `folder` (its peer.json and peer.db)."""
    import sqlite_utils
    from flask import Flask, jsonify, request
    from joserfc import jwt
    from joserfc.errors import JoseError
    from joserfc.jwk import KeySet
    from onelogin.saml2.response import OneLogin_Saml2_Response
    from onelogin.saml2.settings import OneLogin_Saml2_Settings

    peer = json.loads((folder / "peer.json").read_text())
    cert_body = "".join(Path(peer["idp_cert"]).read_text().splitlines()[1:-1])
    settings = OneLogin_Saml2_Settings(
        {
            "strict": True,
            "sp": {
                "entityId": peer["audience"],
                "assertionConsumerService": {
                    "url": peer["recipient"],
                    "binding": "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST",
                },
                "NameIDFormat": "urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress",
            },
            "idp": {
                "entityId": peer["issuer"],
                "singleSignOnService": {"url": peer["issuer"] + "/sso"},
                "x509cert": cert_body,
            },
            "security": {"wantAssertionsSigned": True},
        },
        sp_validation_only=True,
    )
    host, script = peer["recipient"].removeprefix("https://").split("/", 1)
    keys = KeySet.import_key_set(json.loads(Path(peer["jwks"]).read_text()))
    registry = jwt.JWTClaimsRegistry(
        leeway=LEEWAY_SECONDS,
        iss={"essential": True, "value": peer["oidc_issuer"]},
        aud={"essential": True, "value": peer["oidc_audience"]},
        sub={"essential": True},
        exp={"essential": True},
        iat={"essential": True},
    )
    local = threading.local()

    def database() -> Any:
        db = getattr(local, "db", None)
        if db is None:
            db = local.db = sqlite_utils.Database(folder / "peer.db")
            db.execute("PRAGMA synchronous = NORMAL")
        return db

    def upsert(subject: str, user: dict[str, Any]) -> Any:
        db = database()
        user = {**user, "subject": subject, "updated_at": datetime.now(UTC).isoformat()}
        with db.conn:  # one transaction: committed, or rolled back on an exception
            # The write lock first: a deferred BEGIN reads the schema, then fails to
            # upgrade with "database is locked" as soon as another thread has written.
            db.conn.execute("BEGIN IMMEDIATE")
            db["users"].upsert(user, pk="username")
        return jsonify({"outcome": "upserted", "username": user["username"]})

    # python3-saml compiles its XML schema on every call, in whichever thread serves the
    # request. The first compile of a process sets up libxml2's built-in schema types;
    # several threads doing that at once can break the process for good (every later
    # validation fails). A team meets this under its first burst and compiles once at
    # start, as here; jitprov serializes its compiles for the same reason.
    from lxml import etree
    from onelogin.saml2.xml_utils import OneLogin_Saml2_XML

    OneLogin_Saml2_XML.validate_xml(etree.fromstring(b"<x/>"), "saml-schema-protocol-2.0.xsd")

    app = Flask("peer")

    @app.post("/acs")
    def acs() -> Any:
        b64 = request.form.get("SAMLResponse")
        if not b64:
            return jsonify({"error": "expected SAMLResponse"}), 400
        request_data = {
            "https": "on",  # behind the TLS terminator: the public ACS URL
            "http_host": host,
            "script_name": "/" + script,
            "get_data": request.args.copy(),
            "post_data": request.form.copy(),
        }
        response = OneLogin_Saml2_Response(settings, b64)
        if not response.is_valid(request_data):
            return jsonify({"outcome": "rejected", "message": response.get_error()}), 401
        user = saml_mapping(response.get_attributes())
        if user is None:
            return jsonify({"outcome": "denied"}), 403
        return upsert(response.get_nameid(), user)

    @app.post("/oidc")
    def oidc() -> Any:
        token = request.form.get("id_token")
        if not token:
            return jsonify({"error": "expected id_token"}), 400
        try:
            decoded = jwt.decode(token, keys, algorithms=["RS256"])
            registry.validate(decoded.claims)
        except (JoseError, ValueError) as exc:
            return jsonify({"outcome": "rejected", "message": str(exc)}), 401
        user = oidc_mapping(decoded.claims)
        if user is None:
            return jsonify({"outcome": "denied"}), 403
        return upsert(decoded.claims["sub"], user)

    @app.get("/healthz")
    def healthz() -> Any:
        return jsonify({"status": "ok"})

    return app


def asgi_from_environment() -> Any:
    """One worker's application (uvicorn's factory): Flask, wrapped as ASGI."""
    from a2wsgi import WSGIMiddleware

    return WSGIMiddleware(create_flask(Path(os.environ[FOLDER_ENV])))
