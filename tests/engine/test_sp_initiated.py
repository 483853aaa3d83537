"""SP-initiated SAML through `serve`: `GET /login/{connection}` records an AuthnRequest and
sends the browser to the IdP (HTTP-Redirect, signed with `sp_key`), and `POST /acs` takes
a response to it once, before it expires; every refusal is a `wrong-request` with its
audit row and no account change."""

from __future__ import annotations

import base64
import sqlite3
import sys
import zlib
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

import pytest
import xmlsec
from lxml import etree
from starlette.testclient import TestClient

if str(Path(__file__).parent) not in sys.path:  # tests/engine is not an importable package
    sys.path.insert(0, str(Path(__file__).parent))
from saml_fixtures import AUDIENCE, RECIPIENT, SP_CERT, SP_KEY
from sso_fixtures import APP, SSO, response, workspace

from engine.config import load_config
from engine.saml.authn_request import REQUEST_PREFIX
from engine.saml.xml import SAML, SAMLP
from engine.service import create_app


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    with TestClient(create_app(load_config(workspace(tmp_path))), follow_redirects=False) as c:
        yield c


def login(
    client: TestClient, query: str = f"?return_to={APP}home"
) -> tuple[str, dict, etree._Element]:
    answer = client.get(f"/login/idp{query}")
    assert answer.status_code == 303, answer.text
    assert answer.headers["cache-control"] == "no-store"
    location = answer.headers["location"]
    assert location.startswith(SSO + "?SAMLRequest=")
    params = parse_qs(urlsplit(location).query)
    xml = zlib.decompress(base64.b64decode(params["SAMLRequest"][0]), -15)
    request = etree.fromstring(xml)
    return location, params, request


def deliver(client: TestClient, token: bytes) -> tuple[int, dict]:
    body = {"SAMLResponse": base64.b64encode(token).decode()}
    answer = client.post("/acs/idp", data=body)
    return answer.status_code, answer.json()


def pending(root: Path) -> list[tuple[str, ...]]:
    with sqlite3.connect(root / "jitprov.db") as db:
        return db.execute("SELECT request_id, return_to FROM pending_requests").fetchall()


def test_a_sign_in_started_here_is_answered_once(client: TestClient, tmp_path: Path) -> None:
    _, _, request = login(client)
    request_id = request.get("ID")
    assert request_id.startswith(REQUEST_PREFIX)
    assert request.tag == f"{SAMLP}AuthnRequest" and request.get("Destination") == SSO
    assert request.get("AssertionConsumerServiceURL") == RECIPIENT
    assert request.findtext(f"{SAML}Issuer") == AUDIENCE
    assert pending(tmp_path) == [(request_id, f"{APP}home")]

    code, result = deliver(client, response("_a1", request_id))
    assert (code, result["outcome"]) == (200, "created")
    assert pending(tmp_path) == []  # single use
    # Another response to the same request (a new assertion, not a replay of the first).
    code, result = deliver(client, response("_a2", request_id))
    assert (code, result["outcome"], result["reason"]) == (401, "rejected", "wrong-request")
    assert "already answered" in result["message"]


def test_an_unknown_or_expired_request_is_wrong_request(client: TestClient, tmp_path: Path) -> None:
    code, result = deliver(client, response("_a1", REQUEST_PREFIX + "forged"))
    assert (code, result["reason"]) == (401, "wrong-request")
    _, _, request = login(client)
    with sqlite3.connect(tmp_path / "jitprov.db") as db:
        db.execute("UPDATE pending_requests SET expires_at = '2001-01-01T00:00:00Z'")
    code, result = deliver(client, response("_a2", request.get("ID")))
    assert (code, result["reason"]) == (401, "wrong-request") and "expired" in result["message"]
    with sqlite3.connect(tmp_path / "jitprov.db") as db:
        assert db.execute("SELECT count(*) FROM users").fetchone() == (0,)
        outcomes = db.execute("SELECT outcome, reason FROM audit ORDER BY id").fetchall()
    assert outcomes == [("rejected", "wrong-request"), ("rejected", "wrong-request")]


def test_responses_to_other_requests_and_unsolicited_ones_are_left_as_before(
    client: TestClient,
) -> None:
    assert deliver(client, response("_a1"))[1]["outcome"] == "created"  # IdP-initiated
    other = response("_a2", "_the-application-s-own")
    assert deliver(client, other)[1]["outcome"] in ("updated", "unchanged")


@pytest.mark.parametrize(
    ("query", "status", "message"),
    [
        ("?return_to=https://evil.example/", 400, "is not under any of connection 'idp'"),
        ("?return_to=/relative", 400, "is not an absolute http(s) URL"),
    ],
)
def test_return_to_outside_the_allowlist_is_refused(
    client: TestClient, tmp_path: Path, query: str, status: int, message: str
) -> None:
    answer = client.get(f"/login/idp{query}")
    assert answer.status_code == status and message in answer.json()["error"]
    assert "location" not in answer.headers
    assert not (tmp_path / "jitprov.db").exists() or pending(tmp_path) == []


def test_no_return_to_and_force_authn(client: TestClient) -> None:
    _, _, request = login(client, "?force_authn=1")
    assert request.get("ForceAuthn") == "true"
    assert client.get("/login/nope").status_code == 404


def test_with_sp_key_the_redirect_is_signed(tmp_path: Path) -> None:
    extra = f'sp_certificate = "certs/{SP_CERT.name}"\nsp_key = "certs/{SP_KEY.name}"\n'
    app = create_app(load_config(workspace(tmp_path, extra)))
    with TestClient(app, follow_redirects=False) as client:
        location, params, _ = login(client)
    assert params["SigAlg"] == ["http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"]
    query = urlsplit(location).query
    signed = query[: query.index("&Signature=")]
    signature = base64.b64decode(unquote(params["Signature"][0]))
    ctx = xmlsec.SignatureContext()
    ctx.key = xmlsec.Key.from_file(str(SP_CERT), xmlsec.constants.KeyDataFormatCertPem)
    assert (
        ctx.verify_binary(signed.encode(), xmlsec.constants.TransformRsaSha256, signature) is None
    )


def test_name_id_format_asks_the_idp_for_one(tmp_path: Path) -> None:
    app = create_app(load_config(workspace(tmp_path, 'name_id_format = "persistent"\n')))
    with TestClient(app, follow_redirects=False) as client:
        _, _, request = login(client)
    policy = request.find(f"{SAMLP}NameIDPolicy")
    assert policy.get("Format") == "urn:oasis:names:tc:SAML:2.0:nameid-format:persistent"
    assert policy.get("AllowCreate") == "true"
