"""examples/idp/oidc_provider.py, the local OpenID Connect provider, driven over HTTP on
loopback (serve_provider): discovery and keys, the code flow with PKCE for each client
authentication method, the requests it must refuse, and its ID token provisioning a
user through `jitprov apply`."""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import warnings
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

pytest.importorskip("authlib", reason="the OIDC provider example is built on authlib")
pytest.importorskip("flask", reason="the OIDC provider example is a Flask app")

import httpx
from authlib.deprecate import AuthlibDeprecationWarning

with warnings.catch_warnings():  # authlib 1.9 asks for the httpx2 package, warns on httpx
    warnings.filterwarnings("ignore", "The httpx module", AuthlibDeprecationWarning)
    from authlib.integrations.httpx_client import OAuth2Client
from authlib.oauth2.rfc7523 import PrivateKeyJWT
from joserfc import jwt
from joserfc.jwk import KeySet, RSAKey

from engine import remote
from examples.idp.oidc_provider import KEY_FILE, Served, serve_provider
from tui.cli import run

REDIRECT = "http://127.0.0.1:9/callback"  # never contacted: redirects are not followed
SECRETS = {"app-basic": "basic-secret-0123456789", "app-post": "post-secret-0123456789"}
METHODS = {
    "app-basic": "client_secret_basic",
    "app-post": "client_secret_post",
    "app-jwt": "private_key_jwt",
}


@pytest.fixture(scope="module")
def client_key() -> RSAKey:
    """app-jwt's own key: it signs its client assertions; the provider has the public half."""
    return RSAKey.generate_key(2048, parameters={"kid": "app-jwt-1"}, auto_kid=False)


@pytest.fixture(scope="module")
def state_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("idp-state")


@pytest.fixture(scope="module")
def provider(state_dir: Path, client_key: RSAKey) -> Iterator[Served]:
    clients: list[dict[str, Any]] = [
        {
            "client_id": client_id,
            "client_secret": SECRETS[client_id],
            "redirect_uris": [REDIRECT],
            "token_endpoint_auth_method": METHODS[client_id],
        }
        for client_id in SECRETS
    ]
    clients.append(
        {
            "client_id": "app-jwt",
            "redirect_uris": [REDIRECT],
            "token_endpoint_auth_method": "private_key_jwt",
            "jwks": {"keys": [client_key.as_dict(private=False)]},
        }
    )
    with serve_provider(state_dir, clients) as served:
        yield served


@pytest.fixture
def http(provider: Served) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=provider.url, follow_redirects=False, timeout=10) as client:
        yield client


class Form(HTMLParser):
    """The inputs and buttons of the sign-in page."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.hidden: dict[str, str] = {}
        self.inputs: dict[str, dict[str, str | None]] = {}
        self.buttons: list[dict[str, str | None]] = []
        self._button: dict[str, str | None] | None = None
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        if tag == "input" and attributes.get("type") == "hidden":
            self.hidden[str(attributes["name"])] = attributes.get("value") or ""
        elif tag == "input":
            self.inputs[str(attributes.get("name"))] = attributes
        elif tag == "button":
            self._button = {**attributes, "text": ""}
            self.buttons.append(self._button)

    def handle_data(self, data: str) -> None:
        if self._button is not None:
            self._button["text"] = (self._button["text"] or "") + data

    def handle_endtag(self, tag: str) -> None:
        if tag == "button":
            self._button = None


class Flow:
    """One authorization request: its state, nonce and PKCE verifier."""

    def __init__(self, client_id: str, changes: dict[str, str | None] | None = None) -> None:
        self.client_id = client_id
        self.state = secrets.token_urlsafe(12)
        self.nonce = secrets.token_urlsafe(12)
        self.verifier = secrets.token_urlsafe(48)
        digest = hashlib.sha256(self.verifier.encode("ascii")).digest()
        challenge = base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")
        params: dict[str, str | None] = {
            "response_type": "code",
            "client_id": client_id,
            "redirect_uri": REDIRECT,
            "scope": "openid email profile groups",
            "state": self.state,
            "nonce": self.nonce,
            "code_challenge": challenge,
            "code_challenge_method": "S256",
        }
        params.update(changes or {})
        self.params = {k: v for k, v in params.items() if v is not None}

    def authorize(self, http: httpx.Client) -> httpx.Response:
        return http.get("/authorize", params=self.params)

    def sign_in(
        self, http: httpx.Client, username: str = "alice", password: str = "alice"
    ) -> httpx.Response:
        page = self.authorize(http)
        assert page.status_code == 200, page.text
        form = Form(page.text)
        return http.post(
            "/authorize", data={**form.hidden, "username": username, "password": password}
        )

    def code(self, http: httpx.Client) -> str:
        """Signed in as alice: the code from the redirect (whose state must be ours)."""
        response = self.sign_in(http)
        assert response.status_code == 302, response.text
        location = response.headers["location"]
        assert location.startswith(REDIRECT + "?")
        query = parse_qs(urlsplit(location).query)
        assert query["state"] == [self.state]
        return query["code"][0]

    def exchange(
        self, http: httpx.Client, code: str, verifier: str | None = None, secret: str | None = None
    ) -> httpx.Response:
        """The token request, authenticated with a client secret (basic or post)."""
        secret = secret if secret is not None else SECRETS[self.client_id]
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": REDIRECT,
            "code_verifier": verifier or self.verifier,
        }
        if METHODS[self.client_id] == "client_secret_post":
            return http.post(
                "/token", data={**form, "client_id": self.client_id, "client_secret": secret}
            )
        return http.post("/token", data=form, auth=(self.client_id, secret))


def oauth_client(flow: Flow, provider: Served, key: RSAKey) -> OAuth2Client:
    """authlib's httpx OAuth2Client for the flow's client, authenticating its way."""
    if METHODS[flow.client_id] == "private_key_jwt":
        token_endpoint = f"{provider.url}/token"
        return OAuth2Client(
            flow.client_id,
            key,
            token_endpoint_auth_method=PrivateKeyJWT(token_endpoint),
            redirect_uri=REDIRECT,
        )
    return OAuth2Client(
        flow.client_id,
        SECRETS[flow.client_id],
        token_endpoint_auth_method=METHODS[flow.client_id],
        redirect_uri=REDIRECT,
    )


def verified(http: httpx.Client, id_token: str) -> jwt.Token:
    """The ID token, its signature checked against the provider's /jwks."""
    keys = KeySet.import_key_set(http.get("/jwks").json())
    return jwt.decode(id_token, keys, algorithms=["RS256"])


def refused_page(response: httpx.Response) -> str:
    """A refused authorization request: a 400 page, not a redirect."""
    assert response.status_code == 400, response.text
    assert "location" not in response.headers
    assert response.headers["content-type"].startswith("text/html")
    return response.text


# --- discovery and keys --------------------------------------------------------------


def test_discovery_describes_the_provider(http: httpx.Client, provider: Served) -> None:
    issuer = provider.url
    document = http.get("/.well-known/openid-configuration").json()
    assert document["issuer"] == issuer
    assert document["authorization_endpoint"] == f"{issuer}/authorize"
    assert document["token_endpoint"] == f"{issuer}/token"
    assert document["jwks_uri"] == f"{issuer}/jwks"
    assert document["response_types_supported"] == ["code"]
    assert document["subject_types_supported"] == ["public"]
    assert document["id_token_signing_alg_values_supported"] == ["RS256"]
    assert document["code_challenge_methods_supported"] == ["S256"]
    assert document["token_endpoint_auth_methods_supported"] == [
        "client_secret_basic",
        "client_secret_post",
        "private_key_jwt",
    ]
    assert document["scopes_supported"] == ["openid", "email", "profile", "groups"]


def test_jwks_publishes_the_public_signing_key_kept_in_the_state_dir(
    http: httpx.Client, state_dir: Path
) -> None:
    (jwk,) = http.get("/jwks").json()["keys"]
    assert jwk["kty"] == "RSA" and jwk["use"] == "sig" and jwk["alg"] == "RS256"
    assert jwk["kid"]
    assert not {"d", "p", "q", "dp", "dq", "qi"} & set(jwk)
    stored = json.loads((state_dir / KEY_FILE).read_text(encoding="utf-8"))
    assert "d" in stored and stored["n"] == jwk["n"]
    assert (state_dir / KEY_FILE).stat().st_mode & 0o077 == 0


def test_the_signing_key_is_reused_by_the_next_start(http: httpx.Client, state_dir: Path) -> None:
    before = http.get("/jwks").json()
    clients = [{"client_id": "x", "client_secret": "s", "redirect_uris": [REDIRECT]}]
    with serve_provider(state_dir, clients) as again:
        after = httpx.get(f"{again.url}/jwks").json()
    assert after == before


# --- the code flow -------------------------------------------------------------------


@pytest.mark.parametrize("client_id", ["app-basic", "app-post", "app-jwt"])
def test_the_code_flow_with_pkce_gives_a_verifiable_id_token(
    client_id: str, http: httpx.Client, provider: Served, client_key: RSAKey
) -> None:
    flow = Flow(client_id)
    page = flow.authorize(http)
    assert page.status_code == 200
    form = Form(page.text)
    assert form.inputs["username"]["id"] == "username"
    assert form.inputs["password"]["id"] == "password"
    assert form.inputs["password"]["type"] == "password"
    assert [b["text"] for b in form.buttons] == ["Sign in", "Cancel"]
    assert form.buttons[1]["name"] == "cancel"
    code = flow.code(http)

    with oauth_client(flow, provider, client_key) as client:
        token = client.fetch_token(
            f"{provider.url}/token",
            grant_type="authorization_code",
            code=code,
            code_verifier=flow.verifier,
        )
    assert token["token_type"] == "Bearer" and token["access_token"]
    assert token["expires_in"] > 0
    id_token = verified(http, token["id_token"])
    claims = id_token.claims
    assert id_token.header["kid"] == http.get("/jwks").json()["keys"][0]["kid"]
    assert claims["iss"] == provider.url
    assert claims["aud"] == client_id
    assert claims["sub"] == "alice-0001"
    assert claims["nonce"] == flow.nonce
    assert claims["email"] == "alice@example.com" and claims["email_verified"] is True
    assert claims["given_name"] == "Alice" and claims["family_name"] == "Liddell"
    assert claims["groups"] == ["engineering", "staff"]
    assert claims["exp"] - claims["iat"] == 300
    assert claims["iat"] - 5 <= claims["auth_time"] <= claims["iat"]


def test_bob_signs_in_with_his_own_claims(http: httpx.Client) -> None:
    flow = Flow("app-basic")
    response = flow.sign_in(http, "bob", "bob")
    code = parse_qs(urlsplit(response.headers["location"]).query)["code"][0]
    claims = verified(http, flow.exchange(http, code).json()["id_token"]).claims
    assert claims["sub"] == "bob-0002" and claims["groups"] == ["sales"]
    assert claims["email"] == "bob@example.com"


# --- refusals ------------------------------------------------------------------------


def test_a_wrong_code_verifier_is_invalid_grant(http: httpx.Client) -> None:
    flow = Flow("app-basic")
    response = flow.exchange(http, flow.code(http), verifier=secrets.token_urlsafe(48))
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_grant"


def test_a_code_is_good_once(http: httpx.Client) -> None:
    flow = Flow("app-post")
    code = flow.code(http)
    assert flow.exchange(http, code).status_code == 200
    again = flow.exchange(http, code)
    assert again.status_code == 400
    assert again.json()["error"] == "invalid_grant"


def test_a_wrong_client_secret_is_invalid_client(http: httpx.Client) -> None:
    flow = Flow("app-basic")
    response = flow.exchange(http, flow.code(http), secret="not-the-secret")
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"


def assertion_exchange(
    flow: Flow, http: httpx.Client, provider: Served, key: RSAKey, auth: PrivateKeyJWT
) -> httpx.Response:
    """app-jwt's token request, its client assertion made by `auth`."""
    form = {
        "grant_type": "authorization_code",
        "code": flow.code(http),
        "redirect_uri": REDIRECT,
        "code_verifier": flow.verifier,
    }
    with OAuth2Client("app-jwt", key, token_endpoint_auth_method=auth) as client:
        response: httpx.Response = client.post(
            f"{provider.url}/token", data=form, auth=client.client_auth(auth)
        )
    return response


def test_a_client_assertion_for_another_audience_is_invalid_client(
    http: httpx.Client, provider: Served, client_key: RSAKey
) -> None:
    elsewhere = PrivateKeyJWT("https://elsewhere.example/token")
    response = assertion_exchange(Flow("app-jwt"), http, provider, client_key, elsewhere)
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_client"
    assert "aud" in response.json()["error_description"]


def test_a_replayed_client_assertion_is_invalid_client(
    http: httpx.Client, provider: Served, client_key: RSAKey
) -> None:
    same_jti = PrivateKeyJWT(f"{provider.url}/token", claims={"jti": secrets.token_hex(16)})
    first = assertion_exchange(Flow("app-jwt"), http, provider, client_key, same_jti)
    assert first.status_code == 200, first.text
    again = assertion_exchange(Flow("app-jwt"), http, provider, client_key, same_jti)
    assert again.status_code == 400
    assert again.json()["error"] == "invalid_client"


def test_a_wrong_password_shows_the_form_again(http: httpx.Client) -> None:
    response = Flow("app-basic").sign_in(http, "alice", "bob")
    assert response.status_code == 401
    assert "Wrong username or password" in response.text
    assert "location" not in response.headers
    assert Form(response.text).hidden["client_id"] == "app-basic"


@pytest.mark.parametrize(
    ("changes", "says"),
    [
        ({"code_challenge": None, "code_challenge_method": None}, "code_challenge"),
        ({"code_challenge_method": "plain"}, "S256"),
        ({"nonce": None}, "nonce"),
        ({"redirect_uri": "https://attacker.example/callback"}, "Redirect URI"),
        ({"client_id": "nobody"}, "does not exist"),
        ({"scope": "email"}, "openid"),
    ],
    ids=[
        "no-pkce",
        "plain-pkce",
        "no-nonce",
        "unregistered-redirect",
        "unknown-client",
        "no-openid",
    ],
)
def test_a_bad_authorization_request_is_a_400_page(
    changes: dict[str, str | None], says: str, http: httpx.Client
) -> None:
    assert says in refused_page(Flow("app-basic", changes).authorize(http))


def test_a_form_posted_with_an_unregistered_redirect_uri_is_refused_too(
    http: httpx.Client,
) -> None:
    flow = Flow("app-basic")
    hidden = Form(flow.authorize(http).text).hidden
    hidden["redirect_uri"] = "https://attacker.example/callback"
    response = http.post("/authorize", data={**hidden, "username": "alice", "password": "alice"})
    refused_page(response)


def test_cancel_redirects_with_access_denied_and_the_state(http: httpx.Client) -> None:
    flow = Flow("app-basic")
    hidden = Form(flow.authorize(http).text).hidden
    response = http.post("/authorize", data={**hidden, "cancel": "1"})
    assert response.status_code == 302
    location = response.headers["location"]
    assert location.startswith(REDIRECT + "?")
    query = parse_qs(urlsplit(location).query)
    assert query["error"] == ["access_denied"]
    assert query["state"] == [flow.state]
    assert "code" not in query


def test_errors_are_short_and_plain(http: httpx.Client) -> None:
    missing = http.get("/no-such-page")
    assert missing.status_code == 404 and missing.text.strip() == "404 Not Found"
    wrong_method = http.get("/token")
    assert wrong_method.status_code == 405 and "Traceback" not in wrong_method.text


# --- jitprov validates the provider's ID token --------------------------------------

RULES = """\
username    = subject
email       = first(@email)
given_name  = first(@given_name)
family_name = first(@family_name)
groups      = @groups
"""


def test_jitprov_provisions_alice_from_the_provider_s_id_token(
    http: httpx.Client, provider: Served, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    flow = Flow("app-basic")
    id_token = flow.exchange(http, flow.code(http)).json()["id_token"]
    (tmp_path / "local.rules").write_text(RULES, encoding="utf-8")
    attributes = ["email", "email_verified", "name", "given_name", "family_name", "groups"]
    (tmp_path / "jitprov.toml").write_text(
        f"""\
[store]
path = "store.db"

[connections.local]
protocol = "oidc"
issuer = "{provider.url}"
audience = "app-basic"
jwks_uri = "{provider.url}/jwks"
rules = "local.rules"
attributes = {json.dumps(attributes)}
""",
        encoding="utf-8",
    )
    token_file = tmp_path / "id_token.jwt"
    token_file.write_text(id_token, encoding="utf-8")
    argv = ["--config", str(tmp_path), "apply", "-c", "local", str(token_file)]
    try:
        code = run([*argv, f"--nonce={flow.nonce}", "--json"])  # a nonce may start with -
        out = capsys.readouterr().out
        result: dict[str, Any] = json.loads(out)
        assert (code, result["outcome"]) == (0, "created"), out
        assert result["subject"] == "alice-0001"
        user = result["user"]
        assert user["username"] == "alice-0001"
        assert user["email"] == "alice@example.com"
        assert sorted(user["groups"]) == ["engineering", "staff"]

        wrong = run([*argv, "--nonce=not-the-nonce", "--json"])
        refused = json.loads(capsys.readouterr().out)
        assert (wrong, refused["outcome"], refused["reason"]) == (3, "rejected", "wrong-nonce")
    finally:
        remote.forget()
