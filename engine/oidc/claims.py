"""The claim checks of an ID token (product.md §2) and the Token they give.

Required claims: `iss`, `sub` (non-empty strings), `aud` (a non-empty string or a
non-empty list of non-empty strings), `exp`, `iat` (numbers). A claim of the wrong JSON
type counts as missing, and so does `null` or `""` (§2: such claims are absent). An
`nbf` that is present must be a number too (an unreadable validity window is never
ignored).

Times compare exactly (fractions of a second included): expired when
now ≥ exp + clock_skew; not yet valid when now < nbf − clock_skew or now < iat −
clock_skew.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from fractions import Fraction
from typing import Any

from engine.config import Connection
from engine.flatten import flatten_claims
from engine.moments import EARLIEST, LATEST
from engine.sample import scalar_text
from engine.token import Token, TokenRejected

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# json.dumps(parts, ensure_ascii=False, separators=(",", ":")), its encoder built once
_ID_PARTS = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))
_PLAIN = frozenset({str, int, bool, type(None)})  # JSON values plain_claims keeps as they are


def _is_number(value: Any) -> bool:
    return isinstance(value, int | Decimal) and not isinstance(value, bool)


def _text(value: Any) -> bool:
    return isinstance(value, str) and value != ""


def check_required(claims: Mapping[str, Any]) -> None:
    """Every required claim present with its JSON type; else `malformed`."""
    for name in ("iss", "sub"):
        if not _text(claims.get(name)):
            raise TokenRejected("malformed", _missing(name, "a non-empty string", claims))
    aud = claims.get("aud")
    if not (_text(aud) or (isinstance(aud, list) and aud and all(_text(a) for a in aud))):
        raise TokenRejected(
            "malformed", _missing("aud", "a string or a non-empty list of strings", claims)
        )
    for name in ("exp", "iat"):
        if not _is_number(claims.get(name)):
            raise TokenRejected("malformed", _missing(name, "a number (seconds)", claims))
    if "nbf" in claims and claims["nbf"] is not None and not _is_number(claims["nbf"]):
        raise TokenRejected(
            "malformed", f"claim nbf: expected a number, found {_show(claims['nbf'])}"
        )


def check_claims(
    claims: Mapping[str, Any], connection: Connection, now: datetime, nonce: str | None
) -> None:
    """Issuer, audience, validity window and nonce, in product.md §2's order."""
    if connection.tenants is not None:
        check_tenant(claims, connection)
    elif claims["iss"] != connection.issuer:
        raise TokenRejected(
            "wrong-issuer",
            f"expected iss {connection.issuer!r}, found {claims['iss']!r}",
        )
    aud = claims["aud"]
    audiences = [aud] if isinstance(aud, str) else list(aud)
    if connection.audience not in audiences:
        raise TokenRejected(
            "wrong-audience",
            f"expected aud to contain {connection.audience!r}, found {_show(aud)}",
        )
    if len(set(audiences)) > 1 and claims.get("azp") != connection.audience:
        raise TokenRejected(
            "wrong-audience",
            f"aud has several values, so expected azp {connection.audience!r}, "
            f"found {_show(claims.get('azp'))}",
        )
    if not _whole_times_pass(claims, connection.clock_skew, now):  # the common case
        _check_times(claims, connection, now)
    if nonce is not None and claims.get("nonce") != nonce:
        raise TokenRejected(
            "wrong-nonce", f"expected nonce {nonce!r}, found {_show(claims.get('nonce'))}"
        )


def _whole_times_pass(claims: Mapping[str, Any], skew: Any, now: datetime) -> bool:
    """True when `exp`, `iat` and `nbf` are whole seconds (as they nearly always are) and
    pass `_check_times`; computed in integer microseconds, which is exact for them, so
    the answer is `_check_times`'s without its Fractions. False otherwise: then
    `_check_times` decides, and says what is wrong."""
    exp, iat, nbf = claims["exp"], claims["iat"], claims.get("nbf")
    if type(exp) is not int or type(iat) is not int or type(skew) is not int:
        return False
    if nbf is not None and type(nbf) is not int:
        return False
    at = _microseconds(now)
    margin = skew * 1_000_000
    end = exp * 1_000_000 + margin
    if not _FIRST_US <= end <= _LAST_US or at >= end:
        return False
    for value in (nbf, iat):
        if value is not None:
            start = value * 1_000_000 - margin
            if not _FIRST_US <= start <= _LAST_US or at < start:
                return False
    return True


def _check_times(claims: Mapping[str, Any], connection: Connection, now: datetime) -> None:
    """`exp`, `nbf`, `iat` against `now` with the clock skew, exactly (Fractions)."""
    skew = Fraction(connection.clock_skew)
    at = _seconds(now)
    exp = Fraction(claims["exp"])
    if not _FIRST <= exp + skew <= _LAST:
        raise TokenRejected(
            "expired",
            f"exp {_show(claims['exp'])} is outside the years 1-9999 once clock_skew "
            f"({connection.clock_skew}s) is applied",
        )
    if at >= exp + skew:
        raise TokenRejected(
            "expired",
            f"expected now before exp + clock_skew ({_when(exp + skew)}), "
            f"found now = {_when(at)} (exp {_when(exp)}, clock_skew {connection.clock_skew}s)",
        )
    for name in ("nbf", "iat"):
        value = claims.get(name)
        if value is None:
            continue
        start = Fraction(value)
        if not _FIRST <= start - skew <= _LAST:
            raise TokenRejected(
                "not-yet-valid",
                f"{name} {_show(value)} is outside the years 1-9999 once clock_skew "
                f"({connection.clock_skew}s) is applied",
            )
        if at < start - skew:
            raise TokenRejected(
                "not-yet-valid",
                f"expected now at or after {name} - clock_skew ({_when(start - skew)}), "
                f"found now = {_when(at)} ({name} {_when(start)}, "
                f"clock_skew {connection.clock_skew}s)",
            )


def check_tenant(claims: Mapping[str, Any], connection: Connection) -> None:
    """A multi-tenant issuer (`{tenantid}` in `issuer`): `iss` must be the issuer with
    one tenant in its place, that tenant must be allowed (`tenants`), and the token's
    `tid` must name the same tenant (an `iss` alone can be any tenant's); all
    `wrong-issuer`. Tenant IDs compare case-insensitively (they are GUIDs)."""
    iss = claims["iss"]
    tenant = connection.tenant_of(iss)
    if tenant is None:
        raise TokenRejected(
            "wrong-issuer", f"expected iss of the form {connection.issuer!r}, found {iss!r}"
        )
    if connection.tenants != "any" and tenant.lower() not in (connection.tenants or ()):
        raise TokenRejected(
            "wrong-issuer",
            f"tenant {tenant!r} (from iss) is not one of the connection's tenants",
        )
    tid = claims.get("tid")
    if not isinstance(tid, str) or tid.lower() != tenant.lower():
        raise TokenRejected(
            "wrong-issuer",
            f"expected claim tid to equal the tenant in iss ({tenant!r}), found {_show(tid)}",
        )


def build_token(claims: Mapping[str, Any], connection: Connection) -> Token:
    """The validated Token: `sub` as name_id, claims flattened, replay id and expiry."""
    return Token(
        kind="oidc",
        name_id=claims["sub"],
        name_id_format=None,
        issuer=claims["iss"],
        authn_context=claims["acr"] if _text(claims.get("acr")) else None,
        attributes=flatten_claims(claims),
        token_id=token_id(claims),
        expires_at=_expiry(claims["exp"], connection.clock_skew),
        email_verified=claims.get("email_verified") is True,
        claims=plain_claims(claims),
    )


def token_id(claims: Mapping[str, Any]) -> str:
    """The replay id: `jti`, else `sub`+`iat`+`nonce`, else `sub`+`iat`.

    The fallback is a JSON array of the parts, so no choice of values can make two
    different (sub, iat, nonce) triples give the same id.
    """
    if _text(claims.get("jti")):
        return str(claims["jti"])
    parts = [claims["sub"], scalar_text(claims["iat"])]
    if _text(claims.get("nonce")):
        parts.append(claims["nonce"])
    return _ID_PARTS.encode(parts)


def plain_claims(value: Any) -> Any:
    """The claims with Decimal numbers as floats (or ints when whole), for display/JSON."""
    if type(value) in _PLAIN:  # the common case, without the Mapping check (an ABC's)
        return value
    if isinstance(value, Mapping):
        return {k: plain_claims(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain_claims(v) for v in value]
    if isinstance(value, Decimal):
        if value == value.to_integral_value() and abs(value) < 10**15:
            return int(value)
        return float(value)
    return value


def _microseconds(now: datetime) -> int:
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    return (now - _EPOCH) // timedelta(microseconds=1)


def _seconds(now: datetime) -> Fraction:
    return Fraction(_microseconds(now), 1_000_000)


def _expiry(exp: Any, skew: Any) -> datetime:
    """When the token may be forgotten: exp + clock skew."""
    if type(exp) is int and type(skew) is int:  # whole seconds: no Fraction needed
        try:
            return _EPOCH + timedelta(seconds=exp + skew)
        except OverflowError:
            return datetime.max.replace(tzinfo=UTC) if exp + skew > 0 else _EPOCH
    return _datetime(Fraction(exp) + skew)


def _datetime(seconds: Fraction) -> datetime:
    try:
        return _EPOCH + timedelta(microseconds=int(seconds * 1_000_000))
    except OverflowError:
        return datetime.max.replace(tzinfo=UTC) if seconds > 0 else _EPOCH


def _when(seconds: Fraction) -> str:
    try:
        return _datetime(seconds).isoformat().replace("+00:00", "Z")
    except (OverflowError, ValueError):  # pragma: no cover
        return str(seconds)


def _missing(name: str, expected: str, claims: Mapping[str, Any]) -> str:
    if name not in claims:
        return f"required claim {name}: expected {expected}, found none"
    return f"required claim {name}: expected {expected}, found {_show(claims[name])}"


def _show(value: Any) -> str:
    if value is None:
        return "none"
    return json.dumps(plain_claims(value), ensure_ascii=False)[:120]


# The first and last instants of the years 1-9999, in seconds since the epoch: a time
# claim outside them once the skew is applied is expired / not yet valid (product.md §2).
_FIRST = _seconds(EARLIEST)
_LAST = _seconds(LATEST)
_FIRST_US = _microseconds(EARLIEST)
_LAST_US = _microseconds(LATEST)
