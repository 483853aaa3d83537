"""OIDC ID-token validation (product.md §2): `validate_id_token` is the front door.

Checks run in product.md §2's order, and the first that refuses decides the reason:

1. size as received (`max_token_bytes`) → `too-large`;
2. structure: compact JWS, base64url, JSON objects → `malformed`;
   a JWE → `unsupported`;
3. header: `crit`, `typ` of `at+jwt` / `application/at+jwt`, `b64` → `unsupported`;
4. required claims `iss`, `sub`, `aud`, `exp`, `iat` → `malformed` (§2 lists the
   missing-required-element check before the signature checks);
5. signature with the connection's JWKS (engine.oidc.keys) → `unsupported` /
   `untrusted-signer` / `bad-signature`;
6. `iss` → `wrong-issuer`; `aud`/`azp` → `wrong-audience`; `exp`, `nbf`, `iat` →
   `expired` / `not-yet-valid`; `nonce` → `wrong-nonce` (engine.oidc.claims).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from engine.config import Connection
from engine.flatten import flatten_claims
from engine.oidc.claims import build_token, check_claims, check_required
from engine.oidc.compact import Compact, decode_compact
from engine.token import Token, TokenRejected

__all__ = ["validate_id_token"]

_ACCESS_TOKEN_TYPES = ("at+jwt", "application/at+jwt")


@functools.cache
def _verify_signature() -> Callable[[Compact, Connection], None]:
    """engine.oidc.keys.verify_signature, imported on first use: joserfc is a twentieth
    of a second of every command's start, and most commands (and every SAML or sample
    token) never verify a JWT."""
    from engine.oidc.keys import verify_signature

    return verify_signature


def _claimed_subject(claims: Mapping[str, Any], connection: Connection) -> str | None:
    """The subject an invalid token claims (shown in the result and the audit row)."""
    if connection.subject_from is not None:
        values = flatten_claims(claims).get(connection.subject_from)
        return values[0] if values else None
    sub = claims.get("sub")
    return sub if isinstance(sub, str) else None


def validate_id_token(
    raw: bytes,
    connection: Connection,
    *,
    now: datetime,
    nonce: str | None = None,
    header: dict[str, Any] | None = None,
) -> Token:
    """Validate an ID token for `connection` at `now`; raises TokenRejected(reason, msg).

    `header`: the token's JOSE header as intake read it to tell the token's form (so
    that it is not decoded twice)."""
    if len(raw) > connection.max_token_bytes:
        raise TokenRejected(
            "too-large",
            f"expected at most {connection.max_token_bytes} bytes (max_token_bytes), "
            f"found {len(raw)}",
        )
    token = decode_compact(raw, header=header)
    header = token.header
    if "crit" in header:
        raise TokenRejected(
            "unsupported",
            f"the JOSE header has crit {header['crit']!r}; no critical extension is supported",
        )
    typ = header.get("typ")
    if isinstance(typ, str) and typ.lower() in _ACCESS_TOKEN_TYPES:
        raise TokenRejected(
            "unsupported", f"expected an ID token, found an access token (typ {typ!r})"
        )
    if "b64" in header:
        raise TokenRejected("unsupported", "unencoded payloads (the b64 header) are not supported")
    check_required(token.claims)
    try:
        _verify_signature()(token, connection)
        check_claims(token.claims, connection, now, nonce)
    except TokenRejected as exc:
        exc.subject = _claimed_subject(token.claims, connection)
        raise
    return build_token(token.claims, connection)
