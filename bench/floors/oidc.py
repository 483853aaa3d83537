"""The OIDC floor: an ID token validated with joserfc directly, by hand.

The key is picked by the token's `kid` from the IdP's JWKS (imported once, signing RSA
keys only), the RS256 signature verified by joserfc (`jws.deserialize_compact` with that
one key and only RS256 allowed), then the claims checked: `iss` is the IdP's, `aud`
holds our client ID (and `azp` names it when `aud` has several), `sub` is a non-empty
string, `exp` / `nbf` / `iat` are numbers and now is within them with the clock skew,
and `nonce` equals the one sent when one was. Returns the claims.

No jitprov code: the standard library and joserfc.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from joserfc import jws
from joserfc.errors import JoseError
from joserfc.jwk import RSAKey


class Rejected(Exception):
    """The token fails a check; `reason` is a short code, the message says why."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = reason


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


class OidcFloor:
    """Validates RS256 ID tokens of one IdP for one client; keys imported once."""

    def __init__(
        self, jwks: Mapping[str, Any], *, issuer: str, audience: str, skew: int = 120
    ) -> None:
        self.keys = {
            jwk["kid"]: RSAKey.import_key(dict(jwk))
            for jwk in jwks["keys"]
            if jwk.get("kty") == "RSA" and jwk.get("use", "sig") == "sig" and "kid" in jwk
        }
        self.issuer = issuer
        self.audience = audience
        self.skew = skew

    def validate(
        self, token: bytes | str, now: datetime | float, nonce: str | None = None
    ) -> dict[str, Any]:
        """The claims of a valid token at `now`; raises Rejected."""
        text = token.decode("ascii") if isinstance(token, bytes) else token
        head = text.partition(".")[0]
        try:
            header = json.loads(base64.urlsafe_b64decode(head + "=" * (-len(head) % 4)))
        except (binascii.Error, ValueError):
            raise Rejected("malformed", "the header is not base64url JSON") from None
        if not isinstance(header, dict) or header.get("alg") != "RS256":
            raise Rejected("unsupported", "expected alg RS256")
        key = self.keys.get(str(header.get("kid")))
        if key is None:
            raise Rejected("untrusted-signer", "no JWKS key has the token's kid")
        try:
            verified = jws.deserialize_compact(text, key, algorithms=["RS256"])
        except (JoseError, ValueError):
            raise Rejected("bad-signature", "the signature does not verify") from None
        claims = json.loads(verified.payload)
        if not isinstance(claims, dict):
            raise Rejected("malformed", "the payload is not a JSON object")
        self.check(claims, now.timestamp() if isinstance(now, datetime) else now, nonce)
        return claims

    def check(self, claims: dict[str, Any], at: float, nonce: str | None) -> None:
        """The claim checks alone (after the signature)."""
        sub = claims.get("sub")
        if not isinstance(sub, str) or not sub:
            raise Rejected("malformed", "sub is missing")
        if claims.get("iss") != self.issuer:
            raise Rejected("wrong-issuer", "iss is not the IdP's")
        aud = claims.get("aud")
        audiences = [aud] if isinstance(aud, str) else aud if isinstance(aud, list) else []
        if self.audience not in audiences:
            raise Rejected("wrong-audience", "aud does not hold our client ID")
        if len(set(audiences)) > 1 and claims.get("azp") != self.audience:
            raise Rejected("wrong-audience", "aud has several values and azp is not ours")
        times: tuple[Any, ...] = (claims.get("exp"), claims.get("iat"), claims.get("nbf", 0))
        if not all(_number(t) for t in times):
            raise Rejected("malformed", "exp, iat or nbf is not a number")
        exp, iat, nbf = (float(t) for t in times)
        if at >= exp + self.skew:
            raise Rejected("expired", "exp has passed")
        if at < nbf - self.skew or at < iat - self.skew:
            raise Rejected("not-yet-valid", "nbf or iat is in the future")
        if nonce is not None and claims.get("nonce") != nonce:
            raise Rejected("wrong-nonce", "nonce is not the one sent")
