"""The OIDC authorization code flow through `serve`, at the HTTP level, against a real
OpenID Provider (examples/idp/oidc_provider.py, authlib's server): `GET /login` records
state, nonce and PKCE verifier and sends the browser to the provider; `GET /callback`
exchanges the code (client_secret_basic, client_secret_post, private_key_jwt) and
provisions. Every refusal — unknown or reused state, an IdP error, a code the token
endpoint will not exchange, a code carried into another sign-in — is a clear outcome,
an audit row and no account change."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from joserfc.jwk import KeySet, RSAKey
from starlette.testclient import TestClient

from engine import remote
from engine.config import load_config
from engine.service import create_app
from examples.idp.oidc_provider import Served, serve_provider

APP = "https://app.example.com/"
ERRORS = "https://app.example.com/sso-error"
BROWSER = {"Accept": "text/html"}
SECRET = "client-s3cret"
METHODS = ("client_secret_basic", "client_secret_post", "private_key_jwt")


class _Form(HTMLParser):
    """The provider's sign-in form: its hidden fields."""

    def __init__(self) -> None:
        super().__init__()
        self.fields: dict[str, str] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag == "input" and found.get("type") == "hidden" and found.get("name"):
            self.fields[str(found["name"])] = found.get("value") or ""


@pytest.fixture
def setup(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[TestClient, Served, Path]]:
    key = RSAKey.generate_key(2048, private=True)
    (tmp_path / "client.pem").write_bytes(key.as_pem(private=True))
    public = KeySet([key]).as_dict(private=False)
    public["keys"][0]["kid"] = key.thumbprint()
    clients = [
        {
            "client_id": method,
            "client_secret": SECRET,
            "redirect_uris": [f"http://127.0.0.1/callback/{method}"],
            "token_endpoint_auth_method": method,
        }
        for method in METHODS[:2]
    ]
    clients.append(
        {
            "client_id": "private_key_jwt",
            "redirect_uris": ["http://127.0.0.1/callback/private_key_jwt"],
            "token_endpoint_auth_method": "private_key_jwt",
            "jwks": public,
        }
    )
    provider = serve_provider(tmp_path / "op", clients)
    (tmp_path / "people.rules").write_text("username = first(@email) ?? subject\n")
    sections = []
    for method in METHODS:
        auth = (
            'client_key = "client.pem"'
            if method == "private_key_jwt"
            else 'client_secret_env = "TEST_OIDC_SECRET"'
        )
        sections.append(
            f"""
[connections.{method}]
protocol = "oidc"
issuer = "{provider.url}"
discovery = "{provider.url}/.well-known/openid-configuration"
audience = "{method}"
redirect_uri = "http://127.0.0.1/callback/{method}"
token_endpoint_auth_method = "{method}"
{auth}
rules = "people.rules"
return_urls = ["{APP}"]
error_url = "{ERRORS}"
"""
        )
    (tmp_path / "jitprov.toml").write_text('[store]\npath = "jitprov.db"\n' + "".join(sections))
    monkeypatch.setenv("TEST_OIDC_SECRET", SECRET)
    remote.forget()  # no fetched copy of another test's provider
    try:
        app = create_app(load_config(tmp_path / "jitprov.toml"))
        # https: the sign-in cookie is Secure (a browser sends it over https, or to localhost)
        with TestClient(app, base_url="https://testserver", follow_redirects=False) as client:
            yield client, provider, tmp_path
    finally:
        provider.stop()
        remote.forget()


def start(client: TestClient, connection: str) -> str:
    """GET /login: the provider's authorization URL."""
    answer = client.get(f"/login/{connection}", params={"return_to": f"{APP}home"}, headers=BROWSER)
    assert answer.status_code == 303, answer.text
    assert answer.headers["cache-control"] == "no-store"
    return answer.headers["location"]


def authorize(url: str, *, cancel: bool = False) -> dict[str, str]:
    """The person at the provider: signs in as alice (or cancels); where it sends them."""
    page = httpx.get(url)
    assert page.status_code == 200, page.text
    form = _Form()
    form.feed(page.text)
    fields = {**form.fields, "username": "alice", "password": "alice"}
    fields["cancel" if cancel else "sign_in"] = "1"
    answer = httpx.post(url.split("?")[0], data=fields)
    assert answer.status_code == 302, answer.text
    return {k: v[0] for k, v in parse_qs(urlsplit(answer.headers["location"]).query).items()}


def callback(client: TestClient, connection: str, params: dict[str, str]) -> str:
    answer = client.get(f"/callback/{connection}", params=params, headers=BROWSER)
    assert answer.status_code == 303, answer.text
    assert answer.headers["cache-control"] == "no-store"
    return answer.headers["location"]


def rows(root: Path, sql: str) -> list[tuple]:
    with sqlite3.connect(root / "jitprov.db") as db:
        return db.execute(sql).fetchall()


@pytest.mark.parametrize("method", METHODS)
def test_the_code_flow_provisions_with_each_client_authentication(
    setup: tuple[TestClient, Served, Path], method: str
) -> None:
    client, _, root = setup
    url = start(client, method)
    query = parse_qs(urlsplit(url).query)
    assert query["code_challenge_method"] == ["S256"] and query["scope"] == ["openid email profile"]
    state, nonce = query["state"][0], query["nonce"][0]
    assert rows(root, "SELECT request_id, nonce FROM pending_requests") == [(state, nonce)]
    location = callback(client, method, authorize(url))
    assert location.startswith(f"{APP}home?jitprov_ref=")
    ref = parse_qs(urlsplit(location).query)["jitprov_ref"][0]
    picked = client.post("/pickup", data={"jitprov_ref": ref})
    assert picked.status_code == 200
    result = picked.json()
    assert (result["outcome"], result["subject"]) == ("created", "alice-0001")
    assert result["user"]["username"] == "alice@example.com"
    assert rows(root, "SELECT count(*) FROM pending_requests") == [(0,)]


def test_state_unknown_missing_or_used_twice_is_wrong_request(
    setup: tuple[TestClient, Served, Path],
) -> None:
    client, _, root = setup
    assert callback(client, "client_secret_basic", {"code": "x", "state": "forged"}) == (
        f"{ERRORS}?error=wrong-request"
    )
    assert callback(client, "client_secret_basic", {"code": "x"}) == f"{ERRORS}?error=wrong-request"
    params = authorize(start(client, "client_secret_basic"))
    assert callback(client, "client_secret_basic", params).startswith(f"{APP}home?jitprov_ref=")
    # The same answer again (a replayed callback URL): its request is used up.
    assert callback(client, "client_secret_basic", params) == f"{ERRORS}?error=wrong-request"
    audit = rows(root, "SELECT outcome, reason FROM audit ORDER BY id")
    assert audit == [("rejected", "wrong-request")] * 2 + [("created", None)] + [
        ("rejected", "wrong-request")
    ]


def test_an_expired_request_is_wrong_request(setup: tuple[TestClient, Served, Path]) -> None:
    client, _, root = setup
    params = authorize(start(client, "client_secret_basic"))
    with sqlite3.connect(root / "jitprov.db") as db:
        db.execute("UPDATE pending_requests SET expires_at = '2001-01-01T00:00:00Z'")
    assert callback(client, "client_secret_basic", params) == f"{ERRORS}?error=wrong-request"
    assert rows(root, "SELECT count(*) FROM users") == [(0,)]


def test_the_idp_s_error_is_idp_error(setup: tuple[TestClient, Served, Path]) -> None:
    client, _, root = setup
    params = authorize(start(client, "client_secret_post"), cancel=True)
    assert params["error"] == "access_denied"
    assert callback(client, "client_secret_post", params) == f"{ERRORS}?error=idp-error"
    [(reason, message)] = rows(root, "SELECT reason, message FROM audit")
    assert reason == "idp-error" and "access_denied" in message
    assert rows(root, "SELECT count(*) FROM users") == [(0,)]


def test_a_code_the_token_endpoint_refuses_is_exchange_failed(
    setup: tuple[TestClient, Served, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    client, _, root = setup
    params = authorize(start(client, "client_secret_basic"))
    monkeypatch.setenv("TEST_OIDC_SECRET", "not-the-secret")
    assert callback(client, "client_secret_basic", params) == f"{ERRORS}?error=exchange-failed"
    [(reason, message)] = rows(root, "SELECT reason, message FROM audit")
    assert reason == "exchange-failed" and "HTTP 401" in message and "invalid_client" in message
    assert "not-the-secret" not in message
    assert rows(root, "SELECT count(*) FROM users") == [(0,)]


def test_a_code_carried_into_another_sign_in_fails_its_pkce_check(
    setup: tuple[TestClient, Served, Path],
) -> None:
    """An attacker's code (their own sign-in) injected into a victim's callback with the
    victim's state: the victim's verifier does not match the code's challenge."""
    client, _, root = setup
    attacker = authorize(start(client, "client_secret_basic"))
    victim_url = start(client, "client_secret_basic")
    victim_state = parse_qs(urlsplit(victim_url).query)["state"][0]
    injected = {"code": attacker["code"], "state": victim_state}
    assert callback(client, "client_secret_basic", injected) == f"{ERRORS}?error=exchange-failed"
    [(reason, message)] = rows(root, "SELECT reason, message FROM audit")
    assert reason == "exchange-failed" and "invalid_grant" in message
    assert rows(root, "SELECT count(*) FROM users") == [(0,)]


def test_login_needs_a_redirect_uri_and_an_oidc_connection_has_no_acs(
    tmp_path: Path,
) -> None:
    (tmp_path / "r.rules").write_text("username = subject\n")
    (tmp_path / "jwks.json").write_text('{"keys": []}')
    (tmp_path / "jitprov.toml").write_text(
        """[store]
path = "jitprov.db"
[connections.op]
protocol = "oidc"
issuer = "https://op.example"
audience = "app"
jwks = "jwks.json"
authorization_endpoint = "https://op.example/authorize"
rules = "r.rules"
"""
    )
    with TestClient(
        create_app(load_config(tmp_path / "jitprov.toml")), follow_redirects=False
    ) as c:
        answer = c.get("/login/op")
        assert answer.status_code == 400 and "redirect_uri" in answer.json()["error"]
        assert c.get("/callback/nope", headers=BROWSER).status_code == 404


def test_a_callback_in_another_browser_is_refused(setup: tuple[TestClient, Served, Path]) -> None:
    """Login CSRF: the attacker's own completed sign-in (code and state) opened in the
    victim's browser, which does not hold the attacker's sign-in cookie."""
    client, _, root = setup
    params = authorize(start(client, "client_secret_basic"))
    client.cookies.clear()
    client.cookies.set("jitprov_signin", "v" * 43)  # the victim's own, from another sign-in
    assert callback(client, "client_secret_basic", params) == f"{ERRORS}?error=wrong-request"
    [(message,)] = rows(root, "SELECT message FROM audit")
    assert "started in another browser" in message
    assert rows(root, "SELECT count(*) FROM users") == [(0,)]
