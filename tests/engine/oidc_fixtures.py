"""Keys, JWKS files and signed ID tokens for the OIDC tests (generated, never copied).

`sign` builds a compact JWS with joserfc for any header (including ones the validator
must refuse or ignore: `crit`, `jku`, `x5c` ...), so each test token is valid except for
the one defect the test is about.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from joserfc import jws
from joserfc.jwk import ECKey, Key, OctKey, OKPKey, RSAKey

from engine.config import Connection
from engine.oidc import validate_id_token
from engine.token import Token, TokenRejected

ISSUER = "https://idp.example.com/"
AUDIENCE = "client-123"
NOW = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
NOW_TS = int(NOW.timestamp())
SKEW = 120
HMAC_SECRET = b"a-client-secret-of-reasonable-length!"


@functools.cache
def rsa_key(name: str = "rsa", bits: int = 2048) -> RSAKey:
    """A cached RSA private key (generation is slow), one per name."""
    return RSAKey.generate_key(bits, parameters={"kid": name}, auto_kid=False)


@functools.cache
def ec_key(name: str = "ec", curve: str = "P-256") -> ECKey:
    return ECKey.generate_key(curve, parameters={"kid": name}, auto_kid=False)  # type: ignore[arg-type]


@functools.cache
def okp_key(name: str = "ed") -> OKPKey:
    return OKPKey.generate_key("Ed25519", parameters={"kid": name}, auto_kid=False)


def oct_key(secret: bytes = HMAC_SECRET) -> OctKey:
    return OctKey.import_key(secret)


def public_jwk(key: Key, **members: Any) -> dict[str, Any]:
    """The public JWK of `key` (oct keys: the secret), with extra members; a member set
    to None is removed (e.g. kid=None for a key without a kid)."""
    jwk = dict(key.as_dict(private=isinstance(key, OctKey)))
    for name in ("d", "p", "q", "dp", "dq", "qi"):
        jwk.pop(name, None)
    jwk.update(members)
    return {k: v for k, v in jwk.items() if v is not None}


def write_jwks(folder: Path, *jwks: dict[str, Any], name: str = "jwks.json") -> Path:
    path = folder / name
    path.write_text(json.dumps({"keys": list(jwks)}), encoding="utf-8")
    return path


def connection(jwks: Path, **options: Any) -> Connection:
    values: dict[str, Any] = {
        "id": "oidc-test",
        "protocol": "oidc",
        "issuer": ISSUER,
        "audience": AUDIENCE,
        "rules": jwks,
        "jwks": jwks,
        "clock_skew": SKEW,
    }
    values.update(options)
    return Connection(**values)


def claims(**changes: Any) -> dict[str, Any]:
    """Valid claims at NOW; a change set to `...` (Ellipsis) removes that claim."""
    base: dict[str, Any] = {
        "iss": ISSUER,
        "sub": "user-1",
        "aud": AUDIENCE,
        "exp": NOW_TS + 300,
        "iat": NOW_TS - 10,
        "email": "jdoe@example.com",
    }
    base.update(changes)
    return {k: v for k, v in base.items() if v is not ...}


class _AnyHeader(jws.JWSRegistry):
    """Sign with any header: the tests need tokens the validator must refuse."""

    def check_header(self, header: Any) -> None:
        return None


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def sign(
    payload: dict[str, Any] | bytes, key: Key | None, alg: str = "RS256", **header: Any
) -> bytes:
    """A compact JWS of `payload` signed by `key` with header {alg, kid of key, **header};
    pass kid=None to leave the kid out."""
    protected: dict[str, Any] = {"alg": alg}
    if key is not None and key.kid:
        protected["kid"] = key.kid
    protected.update(header)
    protected = {k: v for k, v in protected.items() if v is not None}
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    registry = _AnyHeader(algorithms=[alg], strict_check_header=False)
    return jws.serialize_compact(protected, body, key, registry=registry).encode("ascii")


def unsigned(payload: dict[str, Any], **header: Any) -> bytes:
    """An `alg: none` token (empty signature)."""
    head = {"alg": "none", **header}
    return f"{b64(json.dumps(head).encode())}.{b64(json.dumps(payload).encode())}.".encode()


def hmac_with_secret(payload: dict[str, Any], secret: bytes, **header: Any) -> bytes:
    """An HS256 token MACed with an arbitrary secret (the key-confusion attack uses the
    RSA public key's PEM); computed by hand because joserfc rightly refuses PEM secrets."""
    head = {"alg": "HS256", **header}
    signing_input = f"{b64(json.dumps(head).encode())}.{b64(json.dumps(payload).encode())}"
    mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(mac)}".encode()


def check(token: bytes, conn: Connection) -> Token:
    """The token validated at NOW on `conn`."""
    return validate_id_token(token, conn, now=NOW)


def refused(token: bytes, conn: Connection) -> TokenRejected:
    """Why the token is refused at NOW on `conn` (fails the test when it is not)."""
    with pytest.raises(TokenRejected) as info:
        check(token, conn)
    return info.value
