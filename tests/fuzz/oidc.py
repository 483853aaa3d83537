"""Fuzz target `oidc`: any bytes through `read_token` on two oidc connections.

The connections are the engine tests' (tests/engine/oidc_fixtures.py) with a JWKS of
fixed keys (RSA, EC P-256, Ed25519, an HS256 client secret; one RSA key without a kid,
one for encryption only), so that every run and every replay sees the same keys. One
connection is lenient (skew 120 s, no nonce asked); the other strict (no skew,
`subject_from`, a nonce asked, a 4 KiB `max_token_bytes`).

The custom mutator decodes a compact token, mutates its header or its payload JSON, and
signs it again with the key its header names (when it names one of ours), so mutated
claims reach the checks after the signature: types, dates, audiences, flattening.

Invariants as for `saml` (tests/fuzz/harness.py `check_rejected`, `check_token`).
"""

from __future__ import annotations

import atexit
import base64
import functools
import hashlib
import hmac
import json
import random
import shutil
import tempfile
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from joserfc.jwk import ECKey, OctKey, OKPKey, RSAKey

from engine.config import Connection
from engine.intake import detect_form, read_token
from engine.token import Token, TokenRejected
from tests.engine import oidc_fixtures as ox
from tests.engine import saml_fixtures as fx
from tests.fuzz.harness import (
    FUZZ_LIMITS,
    Finding,
    Limits,
    check_rejected,
    check_token,
    corpus_tokens,
    run,
)

NAME = "oidc"
NOW = ox.NOW
NOW_TS = ox.NOW_TS
NONCE = "n-0S6_WzA2Mj"


@functools.cache
def _private_keys() -> dict[str, Any]:
    """Fixed private keys by kid (the test IdP's RSA key, a constant EC scalar, a
    constant Ed25519 seed, the fixtures' HMAC secret)."""
    loaded = serialization.load_pem_private_key(fx.IDP_KEY.read_bytes(), None)
    other = serialization.load_pem_private_key(fx.OTHER_KEY.read_bytes(), None)
    assert isinstance(loaded, rsa.RSAPrivateKey) and isinstance(other, rsa.RSAPrivateKey)
    return {
        "rsa": loaded,
        "ec": ec.derive_private_key(0x5EED_F0CC_1D5, ec.SECP256R1()),
        "ed": Ed25519PrivateKey.from_private_bytes(bytes(range(32))),
        "hs": ox.HMAC_SECRET,
        "": other,  # no kid
    }


ALG_KEY = {"RS256": "rsa", "RS384": "rsa", "PS256": "rsa", "ES256": "ec", "EdDSA": "ed"}
ALG_KEY |= {"HS256": "hs", "HS384": "hs"}


def _pem(key: Any) -> bytes:
    return bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


def jwks() -> dict[str, Any]:
    """The connection's JWKS: every key's public half (the secret for HS256)."""
    keys = _private_keys()
    entries = [
        ox.public_jwk(RSAKey.import_key(_pem(keys["rsa"])), kid="rsa", use="sig"),
        ox.public_jwk(ECKey.import_key(_pem(keys["ec"])), kid="ec"),
        ox.public_jwk(OKPKey.import_key(_pem(keys["ed"])), kid="ed"),
        ox.public_jwk(OctKey.import_key(keys["hs"]), kid="hs", alg="HS256"),
        ox.public_jwk(RSAKey.import_key(_pem(keys[""])), kid=None),
        ox.public_jwk(RSAKey.import_key(_pem(keys[""])), kid="enc", use="enc"),
    ]
    return {"keys": entries}


@functools.cache
def connections() -> tuple[tuple[Connection, str | None], ...]:
    """(connection, nonce) pairs every input is read with; the JWKS file lives in a
    temporary folder removed at exit."""
    folder = Path(tempfile.mkdtemp(prefix="jitprov-fuzz-oidc-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    path = folder / "jwks.json"
    path.write_text(json.dumps(jwks()), encoding="utf-8")
    lenient = ox.connection(path, id="lenient")
    strict = ox.connection(
        path, id="strict", clock_skew=0, subject_from="email", max_token_bytes=4096
    )
    return ((lenient, None), (strict, NONCE))


def check(data: bytes, limits: Limits = FUZZ_LIMITS) -> None:
    """Read `data` on each connection; raise Finding when an invariant breaks."""
    for connection, nonce in connections():

        def call(conn: Connection = connection, n: str | None = nonce) -> Token:
            return read_token(data, conn, now=NOW, nonce=n)

        result = run(
            NAME,
            f"read_token({connection.id})",
            call,
            limits=limits,
            allowed=(TokenRejected,),
            key=lambda c: (
                f"read_token:{detect_form(data)}:{getattr(c.error, 'reason', 'accepted')}"
            ),
        )
        if isinstance(result.error, TokenRejected):
            check_rejected(NAME, result.error)
        else:
            check_token(NAME, result.value, connection, "oidc")
            check_dates(result.value, connection)


# Seconds since the epoch of 0001-01-01T00:00:00Z, and of the instant after
# 9999-12-31T23:59:59.999999Z.
FIRST, AFTER_LAST = -62135596800, 253402300800


def check_dates(token: Token, connection: Connection) -> None:
    """product.md §2: a date outside the years 1-9999, once the skew is applied, is
    `expired` or `not-yet-valid`, so an accepted token has no exp, nbf or iat that the
    skew takes outside them."""
    skew = connection.clock_skew
    for claim in ("exp", "nbf", "iat"):
        value = token.claims.get(claim)
        if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
            continue
        if not (value - skew >= FIRST and value + skew < AFTER_LAST):
            raise Finding(
                NAME,
                "accepted",
                f"{claim} {value} is outside the years 1-9999 once the skew is applied "
                "(accepted token)",
                f"date-range-{claim}",
            )


# ----------------------------------------------------------------- signing


def b64(data: bytes) -> bytes:
    return base64.urlsafe_b64encode(data).rstrip(b"=")


def unb64(segment: bytes) -> bytes:
    return base64.urlsafe_b64decode(segment + b"=" * (-len(segment) % 4))


def signature(alg: str, kid: str, signing_input: bytes) -> bytes | None:
    """The JWS signature of `signing_input` by our key `kid` with `alg`; None when we
    cannot make one."""
    key = _private_keys().get(kid)
    if key is None:
        return None
    digest = {"256": hashes.SHA256(), "384": hashes.SHA384()}.get(alg[-3:], hashes.SHA256())
    if alg.startswith("HS") and isinstance(key, bytes):
        return hmac.new(key, signing_input, getattr(hashlib, digest.name)).digest()
    if alg.startswith("RS") and isinstance(key, rsa.RSAPrivateKey):
        return key.sign(signing_input, padding.PKCS1v15(), digest)
    if alg.startswith("PS") and isinstance(key, rsa.RSAPrivateKey):
        pss = padding.PSS(padding.MGF1(digest), digest.digest_size)
        return key.sign(signing_input, pss, digest)
    if alg == "ES256" and isinstance(key, ec.EllipticCurvePrivateKey):
        r, s = decode_dss_signature(key.sign(signing_input, ec.ECDSA(hashes.SHA256())))
        return r.to_bytes(32, "big") + s.to_bytes(32, "big")
    if alg == "EdDSA" and isinstance(key, Ed25519PrivateKey):
        return key.sign(signing_input)
    return None


def token(claims: dict[str, Any] | bytes, alg: str = "RS256", **header: Any) -> bytes:
    """A compact JWS of `claims` signed by our key for `alg` (the header's `kid` unless
    given; kid=None leaves it out and signs with the kid-less RSA key)."""
    kid = header.pop("kid", ALG_KEY.get(alg, ""))
    protected = {"alg": alg, **({"kid": kid} if kid is not None else {}), **header}
    body = claims if isinstance(claims, bytes) else json.dumps(claims).encode()
    signing_input = b64(json.dumps(protected).encode()) + b"." + b64(body)
    made = signature(alg, kid if kid is not None else "", signing_input)
    return signing_input + b"." + b64(made or b"\x00" * 32)


def claims_with(**changes: Any) -> dict[str, Any]:
    """Valid claims at NOW for both connections (with the nonce), changed."""
    return ox.claims(nonce=NONCE, **changes)


def seeds() -> Iterator[bytes]:
    """Tokens signed by every key, claims in many shapes, the corpus's JWTs, HOSTILE."""
    claims = ox.claims(nonce=NONCE)
    for alg in ("RS256", "PS256", "ES256", "EdDSA", "HS256"):
        yield token(claims, alg)
    yield token(claims, "RS256", kid=None)
    yield token(claims, "RS256", kid="enc")
    yield token(claims, "RS256", typ="JWT", x5c=["MIIB"], jku="https://evil.example/jwks")
    yield token(claims, "none", kid=None)
    yield token(claims, "RS256", crit=["exp"])
    yield token(claims, "RS256", typ="at+jwt")
    yield token(claims_with(aud=[ox.AUDIENCE, "other"], azp=ox.AUDIENCE, jti="j-1"), "ES256")
    yield token(claims_with(nbf=NOW_TS - 5, email_verified=True, auth_time=NOW_TS), "HS256")
    yield token(
        claims_with(
            address={"country": "NL", "locality": "Delft", "geo": [51.99, 4.37]},
            groups=["eng", "ops", ""],
            level=3.50,
            big=12345678901234567890,
            active=True,
            nothing=None,
            **{"dotted.name": "x", "https://example.com/roles": ["admin"]},
        ),
        "EdDSA",
    )
    yield token(claims_with(sub="Zoë", name="Ωmega \u200b"), "RS256")
    yield token(ox.claims(exp=NOW_TS - 3600), "RS256")
    yield token(ox.claims(iat=NOW_TS + 3600), "RS256")
    yield b"eyJhbGciOiJSU0EtT0FFUCIsImVuYyI6IkEyNTZHQ00ifQ.a.b.c.d"
    for path in corpus_tokens("oidc-id-token"):
        yield path.read_bytes()
    for make in HOSTILE.values():
        yield make()


HOSTILE: dict[str, Callable[[], bytes]] = {
    "exp-huge-signed": lambda: token(ox.claims(exp=10**20), "HS256"),
    "exp-1e400-signed": lambda: token(
        json.dumps(ox.claims()).replace(str(ox.claims()["exp"]), "1E+400").encode(), "HS256"
    ),
    "number-1e999999999": lambda: token(
        json.dumps(ox.claims()).replace(str(ox.claims()["exp"]), "1E+999999999").encode(),
        "HS256",
    ),
    "exponent-beyond-decimal": lambda: token(
        json.dumps(ox.claims(level="LEVEL")).replace('"LEVEL"', "1E+9999999999999999999").encode(),
        "HS256",
    ),
    "iat-negative-signed": lambda: token(ox.claims(iat=-(10**12)), "HS256"),
    "nbf-float-huge-signed": lambda: token(ox.claims(nbf=1.7976931348623157e308), "HS256"),
    "nul-claim-signed": lambda: token(ox.claims(name="a\u0000b"), "HS256"),
    "nul-claim-name-signed": lambda: token(ox.claims(**{"na\u0000me": "x"}), "HS256"),
    "lone-surrogate-signed": lambda: token(
        json.dumps(ox.claims(name="SURROGATE")).replace("SURROGATE", "\\ud800").encode(),
        "HS256",
    ),
    "deep-nesting": lambda: token(b'{"a":' * 5000 + b"1" + b"}" * 5000, "HS256"),
    "many-claims": lambda: token(
        json.dumps(ox.claims(**{f"c{i}": [i] * 3 for i in range(3000)})).encode(), "HS256"
    ),
    "duplicate-sub": lambda: token(
        json.dumps(ox.claims()).replace('"sub": "user-1"', '"sub": "a", "sub": "b"').encode(),
        "HS256",
    ),
}


# ------------------------------------------------------------------- custom mutator


def mutate(data: bytes, max_size: int, seed: int) -> bytes:
    """Mutate the header's or the payload's JSON and sign again (see the docstring);
    a quarter of the time, and for anything not a compact JWS, mutate the bytes."""
    import atheris

    rnd = random.Random(seed)
    parts = data.split(b".")
    if rnd.random() < 0.25 or len(parts) != 3:
        return bytes(atheris.Mutate(data, max_size))
    try:
        header, payload = unb64(parts[0]), unb64(parts[1])
    except ValueError:
        return bytes(atheris.Mutate(data, max_size))
    if rnd.random() < 0.25:
        header = bytes(atheris.Mutate(header, max(len(header) * 2, 64)))
    else:
        payload = bytes(atheris.Mutate(payload, max(max_size * 3 // 4 - len(header), 64)))
    signing_input = b64(header) + b"." + b64(payload)
    made = None
    try:
        fields = json.loads(header)
        if isinstance(fields, dict) and isinstance(fields.get("alg"), str):
            kid = fields.get("kid")
            made = signature(fields["alg"], kid if isinstance(kid, str) else "", signing_input)
    except (ValueError, TypeError):
        pass
    out = signing_input + b"." + (b64(made) if made is not None else parts[2])
    return out if len(out) <= max_size else bytes(atheris.Mutate(data, max_size))
