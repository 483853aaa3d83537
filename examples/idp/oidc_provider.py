"""A small local OpenID Connect provider, for tests and demos (never for production).

It signs people in with a username and password from a fixed list and gives an
application an ID token through the authorization code flow, with PKCE (S256) and a
nonce required, so that jitprov can be tried against real sign-ins on one machine. It is
built on authlib's server components: a Flask `AuthorizationServer`, the
`AuthorizationCodeGrant` with the `OpenIDCode` extension, `CodeChallenge` for PKCE and
RFC 7523 `private_key_jwt` client authentication. Everything but the signing key lives
in memory: codes, nonces and tokens are forgotten when the process ends.

Run it:

    python -m examples.idp.oidc_provider --port 8091 --state .idp-state \\
        --client client.json [--client other.json ...] [--users users.json]

The issuer is http://127.0.0.1:PORT (or --issuer); discovery is at
{issuer}/.well-known/openid-configuration. A client file holds one client, or a list:

    {"client_id": "demo", "client_secret": "demo-secret",
     "redirect_uris": ["http://127.0.0.1:8000/callback"],
     "token_endpoint_auth_method": "client_secret_basic"}

`token_endpoint_auth_method` is client_secret_basic, client_secret_post or
private_key_jwt (then `jwks`, the client's public JWKS, replaces the secret). A users
file maps usernames to {"password", "sub", "claims": {...}}; without one, alice/alice
and bob/bob sign in (DEFAULT_USERS). The signing key (RSA 2048) is generated on the first
start as STATE/oidc-signing.jwk.json and reused afterwards.

Endpoints:

- GET  /.well-known/openid-configuration  the provider's metadata
- GET  /jwks                              its public signing key (kid, use sig, RS256)
- GET  /authorize                         response_type=code, client_id, redirect_uri,
  scope (with openid), state, nonce, code_challenge, code_challenge_method=S256: the
  sign-in form; a bad request is a 400 page, never a redirect
- POST /authorize                         the form: username and password (a wrong one:
  the form again, 401), or cancel (a redirect with error=access_denied)
- POST /token                             grant_type=authorization_code, code,
  redirect_uri, code_verifier and the client's authentication: access_token,
  token_type, expires_in, scope and id_token

In tests, `serve_provider` starts one on a free port in a thread (see `serve_in_thread`
for how an app that needs its own URL is served on port 0).
"""

from __future__ import annotations

import argparse
import contextlib
import html
import json
import os
import secrets
import sys
import tempfile
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit
from wsgiref.types import StartResponse, WSGIApplication, WSGIEnvironment

from authlib.integrations.flask_oauth2 import AuthorizationServer
from authlib.oauth2.rfc6749 import (
    AuthorizationCodeGrant,
    ClientMixin,
    InvalidClientError,
    InvalidGrantError,
    InvalidRequestError,
    InvalidScopeError,
    OAuth2Error,
    OAuth2Request,
    UnsupportedResponseTypeError,
    scope_to_list,
)
from authlib.oauth2.rfc7523 import JWTBearerClientAssertion
from authlib.oauth2.rfc7636 import CodeChallenge
from authlib.oidc.core import AuthorizationCodeMixin, OpenIDCode
from flask import Flask, Response, jsonify, request
from joserfc.jwk import KeySet, RSAKey
from werkzeug.exceptions import HTTPException
from werkzeug.serving import BaseWSGIServer, make_server

KEY_FILE = "oidc-signing.jwk.json"
CODE_LIFETIME = 300  # seconds an authorization code can be exchanged
ID_TOKEN_LIFETIME = 300
ACCESS_TOKEN_LIFETIME = 300
SCOPES = ["openid", "email", "profile", "groups"]
AUTH_METHODS = ("client_secret_basic", "client_secret_post", "private_key_jwt")
FORM_FIELDS = {"username", "password", "sign_in", "cancel"}  # not authorization parameters
# Claims the provider sets itself: a user's claims may not replace them.
RESERVED_CLAIMS = {"iss", "sub", "aud", "exp", "iat", "nbf", "jti", "nonce", "auth_time"}
RESERVED_CLAIMS |= {"at_hash", "c_hash", "azp", "acr", "amr"}

DEFAULT_USERS: dict[str, dict[str, Any]] = {
    "alice": {
        "password": "alice",
        "sub": "alice-0001",
        "claims": {
            "email": "alice@example.com",
            "email_verified": True,
            "name": "Alice Liddell",
            "given_name": "Alice",
            "family_name": "Liddell",
            "groups": ["engineering", "staff"],
        },
    },
    "bob": {
        "password": "bob",
        "sub": "bob-0002",
        "claims": {
            "email": "bob@example.com",
            "email_verified": True,
            "name": "Bob Builder",
            "given_name": "Bob",
            "family_name": "Builder",
            "groups": ["sales"],
        },
    },
}


# --- models -------------------------------------------------------------------------


@dataclass(frozen=True)
class User:
    username: str
    password: str
    sub: str
    claims: dict[str, Any]


@dataclass(frozen=True)
class Client(ClientMixin):
    """A registered client (authlib's ClientMixin, without a database)."""

    client_id: str
    redirect_uris: tuple[str, ...]
    token_endpoint_auth_method: str
    client_secret: str | None = None
    jwks: dict[str, Any] | None = None

    def get_client_id(self) -> str:
        return self.client_id

    def get_default_redirect_uri(self) -> None:
        return None  # OpenID Connect: every authorization request names its redirect_uri

    def get_allowed_scope(self, scope: str | None) -> str:
        return " ".join(dict.fromkeys(s for s in scope_to_list(scope) or [] if s in SCOPES))

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        return redirect_uri in self.redirect_uris

    def check_client_secret(self, client_secret: str) -> bool:
        if self.client_secret is None:
            return False
        return secrets.compare_digest(self.client_secret.encode(), client_secret.encode())

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        return method == self.token_endpoint_auth_method if endpoint == "token" else True

    def check_response_type(self, response_type: str) -> bool:
        return response_type == "code"

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type == "authorization_code"


@dataclass(frozen=True)
class AuthorizationCode(AuthorizationCodeMixin):
    """An issued code, with what the token request is checked against."""

    code: str
    client_id: str
    redirect_uri: str
    scope: str
    username: str
    nonce: str | None
    code_challenge: str | None
    code_challenge_method: str | None
    auth_time: int
    issued_at: float = field(default_factory=time.time)

    def get_redirect_uri(self) -> str:
        return self.redirect_uri

    def get_scope(self) -> str:
        return self.scope

    def get_nonce(self) -> str | None:
        return self.nonce

    def get_auth_time(self) -> int:
        return self.auth_time

    def expired(self, now: float) -> bool:
        return now >= self.issued_at + CODE_LIFETIME


class Store:
    """The provider's state, in memory and shared by the server's threads."""

    def __init__(self, clients: Iterable[Client], users: Iterable[User]) -> None:
        self.clients = {c.client_id: c for c in clients}
        self.users = {u.username: u for u in users}
        self._lock = threading.Lock()
        self._codes: dict[str, AuthorizationCode] = {}
        self._nonces: set[tuple[str, str]] = set()
        self._jtis: dict[tuple[str, str], float] = {}  # (client, jti) -> until when it is kept
        self._tokens: dict[str, tuple[str, str, str, float]] = {}  # client, sub, scope, expiry

    def client(self, client_id: str) -> Client | None:
        return self.clients.get(client_id)

    def sign_in(self, username: str, password: str) -> User | None:
        user = self.users.get(username)
        expected = user.password if user else secrets.token_hex(16)  # same work either way
        ok = secrets.compare_digest(expected.encode(), password.encode())
        return user if ok and user else None

    def add_code(self, code: AuthorizationCode) -> None:
        with self._lock:
            now = time.time()
            self._codes = {k: c for k, c in self._codes.items() if not c.expired(now)}
            self._codes[code.code] = code
            if code.nonce:
                self._nonces.add((code.client_id, code.nonce))

    def find_code(self, code: str, client_id: str) -> AuthorizationCode | None:
        """The code, when it was issued to this client and is still unused and valid."""
        with self._lock:
            found = self._codes.get(code)
        if found is None or found.client_id != client_id or found.expired(time.time()):
            return None
        return found

    def use_code(self, code: str) -> bool:
        """Spend the code; False when it was already spent (two exchanges at once)."""
        with self._lock:
            return self._codes.pop(code, None) is not None

    def nonce_used(self, client_id: str, nonce: str) -> bool:
        with self._lock:
            return (client_id, nonce) in self._nonces

    def use_jti(self, client_id: str, jti: str, until: float) -> bool:
        """Record a client assertion's jti; False when it was seen before."""
        with self._lock:
            now = time.time()
            self._jtis = {k: t for k, t in self._jtis.items() if t > now}
            if (client_id, jti) in self._jtis:
                return False
            self._jtis[(client_id, jti)] = max(until, now) + 120
            return True

    def save_token(self, token: Mapping[str, Any], req: OAuth2Request) -> None:
        with self._lock:
            now = time.time()
            self._tokens = {k: t for k, t in self._tokens.items() if t[3] > now}
            expiry = now + float(token.get("expires_in", ACCESS_TOKEN_LIFETIME))
            sub = req.user.sub if req.user else ""
            self._tokens[token["access_token"]] = (
                req.client.client_id,
                sub,
                token.get("scope", ""),
                expiry,
            )


# --- authlib grants and extensions ---------------------------------------------------


class Provider(AuthorizationServer):
    """authlib's Flask AuthorizationServer with the provider's store, issuer and key."""

    def __init__(self, app: Flask, store: Store, issuer: str, key: RSAKey) -> None:
        self.store = store
        self.issuer = issuer
        self.signing_key = key
        app.config["OAUTH2_SCOPES_SUPPORTED"] = SCOPES
        app.config["OAUTH2_TOKEN_EXPIRES_IN"] = {"authorization_code": ACCESS_TOKEN_LIFETIME}
        super().__init__(app, query_client=store.client, save_token=store.save_token)


class CodeGrant(AuthorizationCodeGrant):
    """The authorization code grant over the in-memory store; openid scope required."""

    TOKEN_ENDPOINT_AUTH_METHODS = list(AUTH_METHODS)
    server: Provider

    def validate_authorization_request(self) -> str:
        redirect_uri: str = super().validate_authorization_request()
        if "openid" not in scope_to_list(self.request.payload.scope or ""):
            raise InvalidScopeError("The scope must include openid.")
        return redirect_uri

    def save_authorization_code(self, code: str, req: OAuth2Request) -> None:
        data = req.payload.data
        self.server.store.add_code(
            AuthorizationCode(
                code=code,
                client_id=req.client.client_id,
                redirect_uri=req.payload.redirect_uri,
                scope=req.scope,
                username=req.user.username,
                nonce=data.get("nonce"),
                code_challenge=data.get("code_challenge"),
                code_challenge_method=data.get("code_challenge_method"),
                auth_time=int(time.time()),  # the password was checked just now
            )
        )

    def query_authorization_code(self, code: str, client: Client) -> AuthorizationCode | None:
        return self.server.store.find_code(code, client.client_id)

    def delete_authorization_code(self, authorization_code: AuthorizationCode) -> None:
        if not self.server.store.use_code(authorization_code.code):
            raise InvalidGrantError("The code has already been used.")

    def authenticate_user(self, authorization_code: AuthorizationCode) -> User | None:
        return self.server.store.users.get(authorization_code.username)


class IdTokens(OpenIDCode):
    """OpenIDCode with authlib 1.9's hooks: the key, algorithm, header and claims."""

    def __init__(self, store: Store, issuer: str, key: RSAKey) -> None:
        super().__init__(require_nonce=True)
        self.store = store
        self.issuer = issuer
        self.key = key

    def exists_nonce(self, nonce: str, req: OAuth2Request) -> bool:
        return self.store.nonce_used(req.payload.client_id, nonce)

    def resolve_client_private_key(self, client: Client) -> RSAKey:
        return self.key

    def get_client_algorithm(self, client: Client) -> str:
        return "RS256"

    def get_encode_header(self, client: Client) -> dict[str, str]:
        return {"alg": "RS256", "kid": str(self.key.kid)}

    def get_client_claims(self, client: Client) -> dict[str, Any]:
        now = int(time.time())
        return {
            "iss": self.issuer,
            "aud": client.client_id,
            "iat": now,
            "exp": now + ID_TOKEN_LIFETIME,
        }

    def generate_user_info(self, user: User, scope: str) -> dict[str, Any]:
        return {**user.claims, "sub": user.sub}  # every claim whenever openid is asked


class S256Only(CodeChallenge):
    """PKCE required on every authorization request, with S256. (authlib's
    CodeChallenge(required=True) only insists at the token endpoint, and only for
    public clients; a request without code_challenge would pass.)"""

    SUPPORTED_CODE_CHALLENGE_METHOD = ["S256"]
    DEFAULT_CODE_CHALLENGE_METHOD = "S256"

    def validate_code_challenge(self, grant: CodeGrant, redirect_uri: str) -> None:
        data = grant.request.payload.data
        if not data.get("code_challenge"):
            raise InvalidRequestError("Missing code_challenge: PKCE with S256 is required.")
        if data.get("code_challenge_method") != "S256":
            raise InvalidRequestError("code_challenge_method must be S256.")
        super().validate_code_challenge(grant, redirect_uri)


class PrivateKeyJwt(JWTBearerClientAssertion):
    """RFC 7523 client authentication (`private_key_jwt`): the client signs an assertion
    with its key; its audience must be the token endpoint."""

    CLIENT_AUTH_METHOD = "private_key_jwt"

    def __init__(self, store: Store, token_endpoint: str) -> None:
        super().__init__()
        self.store = store
        self.token_endpoint = token_endpoint

    def get_audiences(self) -> list[str]:
        return [self.token_endpoint]

    def validate_jti(self, claims: Mapping[str, Any], jti: str) -> bool:
        return self.store.use_jti(str(claims["sub"]), str(jti), float(claims["exp"]))

    def resolve_client_public_key(self, client: Client) -> KeySet:
        if not client.jwks:
            raise InvalidClientError(description="The client has no registered keys.")
        return KeySet.import_key_set(client.jwks)  # type: ignore[arg-type]


# --- configuration -------------------------------------------------------------------


def load_signing_key(state_dir: Path) -> RSAKey:
    """The provider's RSA signing key from state_dir, made (mode 0600) on first use."""
    path = state_dir / KEY_FILE
    state_dir.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        key = RSAKey.generate_key(2048, parameters={"use": "sig", "alg": "RS256"}, auto_kid=True)
        fd, temp = tempfile.mkstemp(dir=state_dir, prefix=".oidc-signing-")  # mode 0600
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                json.dump(key.as_dict(private=True), out)
            with contextlib.suppress(FileExistsError):  # another process made one first
                os.link(temp, path)
        finally:
            os.unlink(temp)
    try:
        key = RSAKey.import_key(json.loads(path.read_text(encoding="utf-8")))
    except (ValueError, TypeError) as exc:  # joserfc's errors are ValueErrors
        raise ValueError(f"{path}: not an RSA private JWK ({exc})") from None
    if not key.is_private:
        raise ValueError(f"{path}: the key has no private part")
    key.ensure_kid()
    return key


def public_jwks(key: RSAKey) -> dict[str, Any]:
    jwk = {**key.as_dict(private=False), "kid": key.kid, "use": "sig", "alg": "RS256"}
    return {"keys": [jwk]}


def parse_client(data: Any) -> Client:
    """A Client from its JSON form; ValueError says what is wrong."""
    if not isinstance(data, Mapping):
        raise ValueError("a client must be a JSON object")
    client_id = data.get("client_id")
    if not isinstance(client_id, str) or not client_id:
        raise ValueError("a client needs a client_id (a non-empty string)")
    unknown = set(data) - {
        "client_id",
        "client_secret",
        "redirect_uris",
        "token_endpoint_auth_method",
        "jwks",
    }
    if unknown:
        raise ValueError(f"client {client_id}: unknown keys {', '.join(sorted(unknown))}")
    uris = data.get("redirect_uris")
    if not isinstance(uris, list) or not uris or not all(isinstance(u, str) for u in uris):
        raise ValueError(f"client {client_id}: redirect_uris must be a non-empty list of URLs")
    method = data.get("token_endpoint_auth_method", "client_secret_basic")
    if method not in AUTH_METHODS:
        raise ValueError(
            f"client {client_id}: token_endpoint_auth_method must be one of"
            f" {', '.join(AUTH_METHODS)}"
        )
    secret = data.get("client_secret")
    jwks = data.get("jwks")
    if method == "private_key_jwt":
        try:
            keys = KeySet.import_key_set(jwks)  # type: ignore[arg-type]
        except Exception as exc:  # anything joserfc cannot read is the same mistake
            raise ValueError(f"client {client_id}: jwks must be a public JWKS ({exc})") from None
        if any(key.is_private for key in keys):
            raise ValueError(f"client {client_id}: jwks must hold the public keys only")
    elif not isinstance(secret, str) or not secret:
        raise ValueError(f"client {client_id}: {method} needs a client_secret")
    return Client(client_id, tuple(uris), method, secret, jwks)


def parse_users(data: Any) -> list[User]:
    """Users from {username: {"password", "sub", "claims"}}; ValueError says what is wrong."""
    if not isinstance(data, Mapping) or not data:
        raise ValueError("users must be a JSON object of username: {password, sub, claims}")
    users = []
    for name, entry in data.items():
        if not isinstance(entry, Mapping):
            raise ValueError(f"user {name}: expected an object")
        password, sub, claims = entry.get("password"), entry.get("sub"), entry.get("claims", {})
        if not isinstance(password, str) or not isinstance(sub, str) or not sub:
            raise ValueError(f"user {name}: password and sub must be strings")
        if not isinstance(claims, Mapping):
            raise ValueError(f"user {name}: claims must be an object")
        if reserved := sorted(RESERVED_CLAIMS & set(claims)):
            raise ValueError(f"user {name}: claims may not set {', '.join(reserved)}")
        users.append(User(name, password, sub, dict(claims)))
    return users


# --- pages ---------------------------------------------------------------------------


def plain(text: str, status: int) -> Response:
    return Response(text + "\n", status=status, mimetype="text/plain")


def page(title: str, body: str, status: int) -> Response:
    document = (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title></head>\n<body>\n{body}\n</body></html>\n"
    )
    response = Response(document, status=status, mimetype="text/html")
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Frame-Options"] = "DENY"
    return response


def error_page(error: OAuth2Error) -> Response:
    """A refused authorization request: a page, never a redirect (the redirect_uri may
    be the very thing that is wrong)."""
    if isinstance(error, UnsupportedResponseTypeError):  # authlib 1.9 garbles its text
        description = "response_type must be code."
    else:
        description = error.description or "The sign-in request is not valid."
    body = (
        "<h1>Sign-in request refused</h1>\n"
        f"<p><code>{html.escape(str(error.error))}</code>: {html.escape(description)}</p>"
    )
    return page("Sign-in request refused", body, 400)


def login_page(
    action: str,
    params: Iterable[tuple[str, str]],
    client_id: str,
    scope: str,
    username: str = "",
    error: str | None = None,
    status: int = 200,
) -> Response:
    hidden = "\n".join(
        f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(v)}">' for k, v in params
    )
    alert = f'<p role="alert">{html.escape(error)}</p>\n' if error else ""
    body = (
        "<h1>Sign in</h1>\n"
        f"<p>to <strong>{html.escape(client_id)}</strong> (scope: {html.escape(scope)})</p>\n"
        f'{alert}<form method="post" action="{html.escape(action)}">\n{hidden}\n'
        '<p><label for="username">Username</label>\n'
        f'<input id="username" name="username" value="{html.escape(username)}"'
        ' autocomplete="username" required autofocus></p>\n'
        '<p><label for="password">Password</label>\n'
        '<input id="password" name="password" type="password"'
        ' autocomplete="current-password" required></p>\n'
        '<p><button type="submit" name="sign_in" value="1">Sign in</button>\n'
        '<button type="submit" name="cancel" value="1" formnovalidate>Cancel</button></p>\n'
        "</form>"
    )
    return page("Sign in", body, status)


# --- the app -------------------------------------------------------------------------


def create_app(
    state_dir: Path, issuer: str, clients: list[dict[str, Any]], users: dict[str, dict[str, Any]]
) -> Flask:
    """The provider as a Flask app. `issuer` is its exact URL (the ID tokens' `iss`), with
    no trailing slash; its path, if any, prefixes every route. `clients` and `users` are
    in the JSON forms the module docstring describes. ValueError: a bad argument."""
    parts = urlsplit(issuer)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"issuer must be an http(s) URL, got {issuer!r}")
    if issuer.endswith("/") or parts.query or parts.fragment:
        raise ValueError(f"issuer must have no trailing slash, query or fragment: {issuer!r}")
    prefix = parts.path
    key = load_signing_key(Path(state_dir))
    store = Store([parse_client(c) for c in clients], parse_users(users))
    token_endpoint = f"{issuer}/token"

    app = Flask(__name__)
    server = Provider(app, store, issuer, key)
    server.register_grant(CodeGrant, [IdTokens(store, issuer, key), S256Only(required=True)])
    server.register_client_auth_method("private_key_jwt", PrivateKeyJwt(store, token_endpoint))
    app.extensions["oidc_provider"] = server

    metadata = {
        "issuer": issuer,
        "authorization_endpoint": f"{issuer}/authorize",
        "token_endpoint": token_endpoint,
        "jwks_uri": f"{issuer}/jwks",
        "response_types_supported": ["code"],
        "grant_types_supported": ["authorization_code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": list(AUTH_METHODS),
        "token_endpoint_auth_signing_alg_values_supported": ["RS256", "ES256", "EdDSA"],
        "scopes_supported": SCOPES,
        "claims_supported": [
            "sub", "iss", "aud", "exp", "iat", "auth_time", "nonce", "email",
            "email_verified", "name", "given_name", "family_name", "groups",
        ],
    }  # fmt: skip
    jwks = public_jwks(key)

    @app.get(f"{prefix}/.well-known/openid-configuration")
    def discovery() -> Response:
        return jsonify(metadata)

    @app.get(f"{prefix}/jwks")
    def keys() -> Response:
        return jsonify(jwks)

    @app.route(f"{prefix}/authorize", methods=["GET", "POST"])
    def authorize() -> Response:
        try:
            grant = server.get_consent_grant(end_user=None)
        except OAuth2Error as error:
            return error_page(error)
        params = [
            (k, v) for k, values in request.values.lists() for v in values if k not in FORM_FIELDS
        ]
        client_id = grant.client.client_id
        scope = grant.request.scope or ""
        if request.method == "GET":
            return login_page(request.path, params, client_id, scope)
        if "cancel" in request.form:
            response: Response = server.create_authorization_response(grant=grant, grant_user=None)
            return response
        username = request.form.get("username", "")
        user = store.sign_in(username, request.form.get("password", ""))
        if user is None:
            message = "Wrong username or password"
            return login_page(request.path, params, client_id, scope, username, message, 401)
        response = server.create_authorization_response(grant=grant, grant_user=user)
        return response

    @app.post(f"{prefix}/token")
    def token() -> Response:
        response: Response = server.create_token_response()
        return response

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException) -> Response:
        return plain(f"{error.code} {error.name}", error.code or 500)

    @app.errorhandler(Exception)
    def internal_error(error: Exception) -> Response:
        app.logger.error("request failed: %s: %s", type(error).__name__, error)
        return plain("500 Internal Server Error", 500)

    return app


# --- serving -------------------------------------------------------------------------


def _starting(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    start_response("503 Service Unavailable", [("Content-Type", "text/plain; charset=utf-8")])
    return [b"503 starting\n"]


@dataclass
class Served:
    """A WSGI app served from a daemon thread; `stop()` (or leaving a `with`) ends it."""

    server: BaseWSGIServer
    thread: threading.Thread

    @property
    def port(self) -> int:
        return int(self.server.server_port)

    @property
    def url(self) -> str:
        return f"http://{self.server.host}:{self.port}"

    def set_app(self, app: WSGIApplication) -> None:
        """Serve `app` from now on (each request reads the server's current app)."""
        self.server.app = app

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()

    def __enter__(self) -> Served:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.stop()


def serve_in_thread(
    app: WSGIApplication | None = None, port: int = 0, host: str = "127.0.0.1"
) -> Served:
    """Serve `app` on host:port with werkzeug's threaded server, in a daemon thread.

    The socket listens before this returns, so requests can be made at once. Port 0 takes
    a free port. An app that must know its own URL (the provider's issuer contains the
    port) is set afterwards: `served = serve_in_thread()` answers 503 until
    `served.set_app(create_app(..., served.url, ...))` (which is `server.app = app`);
    `serve_provider` does exactly that."""
    server = make_server(host, port, app or _starting, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name=f"wsgi-{host}:{server.server_port}")
    thread.daemon = True
    thread.start()
    return Served(server, thread)


def serve_provider(
    state_dir: Path,
    clients: list[dict[str, Any]],
    users: dict[str, dict[str, Any]] | None = None,
    port: int = 0,
) -> Served:
    """A provider on 127.0.0.1 (port 0: a free one) with issuer http://127.0.0.1:PORT,
    in a daemon thread; its `url` is the issuer."""
    served = serve_in_thread(port=port)
    try:
        served.set_app(create_app(state_dir, served.url, clients, users or DEFAULT_USERS))
    except BaseException:
        served.stop()
        raise
    return served


def _read_json(path: str) -> Any:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise ValueError(f"{path}: cannot read: {exc.strerror}") from None
    except ValueError as exc:
        raise ValueError(f"{path}: not JSON: {exc}") from None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m examples.idp.oidc_provider",
        description="A local OpenID Connect provider for tests and demos (not for production).",
    )
    parser.add_argument("--port", type=int, default=8091, help="port on 127.0.0.1 (0: any)")
    parser.add_argument("--state", required=True, type=Path, help="folder for the signing key")
    parser.add_argument(
        "--client",
        required=True,
        action="extend",
        nargs="+",
        metavar="JSON_FILE",
        help="a client (or a list of clients) as JSON; repeatable",
    )
    parser.add_argument("--users", metavar="JSON_FILE", help="users (default: alice and bob)")
    parser.add_argument("--issuer", help="the issuer URL (default: http://127.0.0.1:PORT)")
    args = parser.parse_args(argv)
    try:
        clients: list[dict[str, Any]] = []
        for name in args.client:
            data = _read_json(name)
            clients.extend(data if isinstance(data, list) else [data])
        users = _read_json(args.users) if args.users else DEFAULT_USERS
        server = make_server("127.0.0.1", args.port, _starting, threaded=True)
    except (OSError, ValueError) as exc:
        print(f"oidc_provider: {exc}", file=sys.stderr)
        return 1
    issuer = args.issuer or f"http://127.0.0.1:{server.server_port}"
    try:
        server.app = create_app(args.state, issuer, clients, users)
    except (OSError, ValueError) as exc:
        server.server_close()
        print(f"oidc_provider: {exc}", file=sys.stderr)
        return 1
    print(f"OIDC provider {issuer} ({issuer}/.well-known/openid-configuration); Ctrl-C stops it")
    sys.stdout.flush()
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
