"""OIDC sign-ins this SP starts: the authorization code flow with PKCE (docs/sso.md).

`start_login` records a request (`pending_requests`: the `state` as its ID, the `nonce`,
the PKCE `code_verifier`, the return URL; ten minutes, single use) and gives the URL of
the IdP's authorization endpoint. `callback` takes the request the IdP's answer names by
its `state`, exchanges the code at the token endpoint (authenticated by
`client_secret_basic`, `client_secret_post` or `private_key_jwt`, with the verifier) and
gives the ID token, which then goes through the same validation as any other, with the
request's nonce required.

The OAuth 2.0 pieces — the authorization URL, the S256 challenge, the token request and
the client authentication (including the signed `private_key_jwt` assertion) — are
authlib's; the POST itself is engine.remote's, with its timeout and size limit.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from engine.config import Connection
from engine.moments import stamp
from engine.remote import FetchError, post_form
from engine.saml.authn_request import (
    REQUEST_LIFETIME,
    LoginError,
    allowed_return,
    check_browser,
)
from engine.store import PendingRequest, Store
from engine.token import TokenRejected

_MAX_SHOWN = 200  # characters of an IdP's error text kept in a message


@dataclass(frozen=True, slots=True)
class Answer:
    """A callback's outcome: the ID token the code was exchanged for, and the request
    it answers (its nonce and return URL)."""

    id_token: bytes
    pending: PendingRequest


def endpoint(connection: Connection, name: str) -> str:
    """`authorization_endpoint` or `token_endpoint`: from the config, else discovery."""
    given = getattr(connection, name)
    if given is not None:
        return str(given)
    from engine.oidc.fetched import discovered

    try:
        return discovered(connection, name)
    except (FetchError, TokenRejected) as exc:
        raise LoginError(f"connection {connection.id!r}: no {name}: {exc}") from None


def start_login(
    connection: Connection,
    store: Store,
    *,
    now: datetime,
    return_to: str | None = None,
    force_authn: bool = False,
    browser: str | None = None,
) -> str:
    """Record a new request and give the URL that takes the browser to the IdP;
    `browser`: the hash of the asking browser's sign-in cookie (its answer must carry it)."""
    from authlib.common.security import generate_token
    from authlib.oauth2.rfc6749.parameters import prepare_grant_uri
    from authlib.oauth2.rfc7636 import create_s256_code_challenge

    if connection.redirect_uri is None:
        raise LoginError(
            f"connection {connection.id!r} has no redirect_uri (this SP's callback URL,"
            " registered at the IdP)"
        )
    return_to = allowed_return(connection, return_to)
    target = endpoint(connection, "authorization_endpoint")
    state, nonce = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    verifier = generate_token(64)  # RFC 7636: 43 to 128 unreserved characters
    extra: dict[str, str] = {"prompt": "login"} if force_authn else {}
    url: str = prepare_grant_uri(
        target,
        client_id=connection.audience,
        response_type="code",
        redirect_uri=connection.redirect_uri,
        scope=" ".join(connection.scopes),
        state=state,
        nonce=nonce,
        code_challenge=create_s256_code_challenge(verifier),
        code_challenge_method="S256",
        **extra,
    )
    store.add_pending(
        PendingRequest(
            connection.id,
            state,
            now + REQUEST_LIFETIME,
            return_to,
            nonce=nonce,
            verifier=verifier,
            browser=browser,
        ),
        now,
    )
    return url


def callback(
    connection: Connection,
    store: Store,
    params: Mapping[str, str],
    now: datetime,
    browser: str | None = None,
) -> Answer:
    """The IdP's answer at the callback: the request it names (taken: single use), then
    the code exchanged for the ID token. TokenRejected: `wrong-request` (no state, an
    unknown, used or expired one, one another browser asked for: `browser` is the hash
    of this browser's sign-in cookie), `idp-error` (the IdP answered `error`),
    `malformed` (no code), `exchange-failed` (the token endpoint refused the code or did
    not answer)."""
    state = params.get("state")
    if not state:
        raise TokenRejected("wrong-request", "the callback has no state")
    pending = store.take_pending(connection.id, state)
    if pending is None or pending.verifier is None:
        raise TokenRejected(
            "wrong-request",
            f"the state answers no open sign-in of connection {connection.id!r}:"
            " unknown, already answered, or started in another browser",
        )
    if now >= pending.expires_at:
        raise TokenRejected(
            "wrong-request",
            f"the sign-in expired at {stamp(pending.expires_at)} (a sign-in must come"
            " back within 10 minutes)",
        )
    check_browser(pending, browser)
    if "error" in params:
        text = _shown(params["error"])
        detail = params.get("error_description")
        more = f": {_shown(detail)}" if detail else ""
        raise TokenRejected("idp-error", f"the IdP answered error={text}{more}")
    code = params.get("code")
    if not code:
        raise TokenRejected("malformed", "the callback has neither a code nor an error")
    return Answer(exchange(connection, code, pending.verifier), pending)


def exchange(connection: Connection, code: str, verifier: str) -> bytes:
    """The ID token the token endpoint gives for `code` (TokenRejected
    `exchange-failed` otherwise)."""
    from authlib.oauth2.auth import ClientAuth
    from authlib.oauth2.rfc6749.parameters import prepare_token_request

    try:
        url = endpoint(connection, "token_endpoint")
    except LoginError as exc:
        raise TokenRejected("exchange-failed", str(exc)) from None
    body = prepare_token_request(
        "authorization_code",
        code=code,
        redirect_uri=connection.redirect_uri,
        code_verifier=verifier,
    )
    headers = {
        "Content-Type": "application/x-www-form-urlencoded",
        "Accept": "application/json",
    }
    secret, method = _client_credentials(connection, url)
    _uri, headers, body = ClientAuth(connection.audience, secret, method).prepare(
        "POST", url, headers, body
    )
    try:
        status, answer = post_form(url, headers, body)
    except FetchError as exc:
        raise TokenRejected(
            "exchange-failed", f"the token endpoint did not answer: {exc}"
        ) from None
    data = _json(answer)
    if status != 200:
        error = data.get("error") if data else None
        said = f" ({_shown(str(error))})" if isinstance(error, str) else ""
        raise TokenRejected(
            "exchange-failed", f"the token endpoint refused the code: HTTP {status}{said}"
        )
    id_token = data.get("id_token") if data else None
    if not isinstance(id_token, str) or not id_token:
        raise TokenRejected("exchange-failed", "the token endpoint's answer has no id_token")
    return id_token.encode("utf-8")


def _client_credentials(connection: Connection, token_url: str) -> tuple[Any, Any]:
    """How this client proves itself at the token endpoint: (secret or key, method).
    Without a secret or key it is a public client ("none": PKCE alone binds the code)."""
    method = connection.token_endpoint_auth_method
    if method is None:
        method = "client_secret_basic" if connection.client_secret_env else "none"
    if method == "none":
        return None, method
    if method == "private_key_jwt":
        from authlib.oauth2.rfc7523 import PrivateKeyJWT

        assert connection.client_key is not None  # the config requires it
        key = client_signing_key(connection)
        curve = key.as_dict().get("crv")
        alg = {"P-256": "ES256", "P-384": "ES384", "P-521": "ES512"}.get(curve, "RS256")
        return key, PrivateKeyJWT(token_url, headers={"kid": key.thumbprint()}, alg=alg)
    name = connection.client_secret_env
    secret = os.environ.get(name or "")
    if not secret:
        raise TokenRejected(
            "exchange-failed", f"the environment variable {name} (client_secret_env) is not set"
        )
    return secret, method


def client_signing_key(connection: Connection) -> Any:
    """`client_key` as a JOSE key (RSA or EC, PEM); its RFC 7638 thumbprint is the `kid`
    of the assertions it signs (register its public JWK at the IdP with that kid)."""
    from joserfc.jwk import ECKey, RSAKey

    assert connection.client_key is not None
    try:
        pem = connection.client_key.read_bytes()
    except OSError as exc:
        raise TokenRejected("exchange-failed", f"cannot read client_key: {exc}") from None
    for kind in (RSAKey, ECKey):
        try:
            return kind.import_key(pem)
        except Exception:  # joserfc raises several types for a key of another kind
            continue
    raise TokenRejected(
        "exchange-failed", f"client_key {connection.client_key.name} is not an RSA or EC key"
    )


def _json(body: bytes) -> dict[str, Any] | None:
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        return None
    return data if isinstance(data, dict) else None


def _shown(text: str) -> str:
    """An IdP's text in a message: printable, and not too long."""
    clean = "".join(c if c.isprintable() else "?" for c in text)
    return clean if len(clean) <= _MAX_SHOWN else clean[:_MAX_SHOWN] + "…"
