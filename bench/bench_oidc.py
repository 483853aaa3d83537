"""OIDC validation speed: jitprov's `validate_id_token` against the joserfc floor.

RS256 ID tokens, minted here with joserfc (a 2048-bit key with its `kid`, published in a
JWKS beside another key; iss, sub, aud, iat, nbf, exp, jti, nonce, and the usual profile
claims with a list of groups; about 1 KB each), validated two ways in the same run, in
turns, on CPU time (bench/harness.py):
- jitprov: `validate_id_token` — strict JSON reading within its bounds, the header
  checks, the key picked from the connection's JWKS, the signature, then issuer,
  audience, times and nonce, and the claims flattened into the attributes the rules
  read;
- the floor (bench/floors/oidc.py, no jitprov code): the key picked by `kid`, joserfc's
  RS256 verification, then the same claim checks, giving the claims (target ≤ 1.5x).
Before timing, the stage asserts that both accept every token and give the same claims.

Run: `python -m bench.bench_oidc [--quick]`.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.floors.oidc import OidcFloor
from bench.harness import Comparison, in_turns
from engine.config import Connection
from engine.oidc import validate_id_token

ISSUER = "https://idp.bench.example/oidc"
AUDIENCE = "bench-client"
NONCE = "n-0S6_WzA2Mj"
TOKENS = 50  # distinct tokens, validated in turn


def mint_tokens(count: int, at: int) -> tuple[dict[str, Any], list[str]]:
    """A JWKS (two RS256 keys) and `count` ID tokens signed with its second key."""
    from joserfc import jwt
    from joserfc.jwk import RSAKey

    other = RSAKey.generate_key(2048, parameters={"kid": "old-key", "alg": "RS256", "use": "sig"})
    key = RSAKey.generate_key(2048, parameters={"kid": "bench-key", "alg": "RS256", "use": "sig"})
    jwks = {"keys": [other.as_dict(private=False), key.as_dict(private=False)]}
    tokens = []
    for n in range(count):
        claims = {
            "iss": ISSUER,
            "sub": f"00u{n:05d}bench",
            "aud": AUDIENCE,
            "iat": at,
            "nbf": at,
            "exp": at + 600,
            "jti": f"jti-{n}",
            "nonce": NONCE,
            "email": f"user{n}@Example.com",
            "email_verified": True,
            "given_name": "Test",
            "family_name": f"User {n}",
            "department": "Engineering" if n % 3 else "Sales",
            "groups": [f"eng-team{n % 7}", "sales-emea", "hr-all", "ops-oncall"],
        }
        tokens.append(jwt.encode({"alg": "RS256", "kid": "bench-key", "typ": "JWT"}, claims, key))
    return jwks, tokens


def run(quick: bool) -> list[Comparison]:
    with tempfile.TemporaryDirectory() as tmp:
        return _run(Path(tmp), quick)


def _run(folder: Path, quick: bool) -> list[Comparison]:
    at = int(time.time())
    jwks, tokens = mint_tokens(TOKENS, at)
    (folder / "jwks.json").write_text(json.dumps(jwks))
    (folder / "oidc.rules").write_text("username = subject\n")
    connection = Connection(
        id="bench-oidc",
        protocol="oidc",
        issuer=ISSUER,
        audience=AUDIENCE,
        rules=folder / "oidc.rules",
        jwks=folder / "jwks.json",
    )
    floor = OidcFloor(jwks, issuer=ISSUER, audience=AUDIENCE, skew=connection.clock_skew)
    now = datetime.fromtimestamp(at + 5, UTC)
    raws = [t.encode() for t in tokens]
    for raw, text in zip(raws, tokens, strict=True):
        token = validate_id_token(raw, connection, now=now, nonce=NONCE)
        claims = floor.validate(text, now, NONCE)
        assert claims == token.claims and claims["sub"] == token.name_id, "floor disagrees"

    def ours() -> None:
        for raw in raws:
            validate_id_token(raw, connection, now=now, nonce=NONCE)

    def theirs() -> None:
        for text in tokens:
            floor.validate(text, now, NONCE)

    found = in_turns(
        {"ours": ours, "floor": theirs},
        turns=9 if quick else 25,
        number=2 if quick else 8,
        warmup=2,
    )
    per_token = {k: [v / TOKENS for v in values] for k, values in found.items()}
    size = sum(len(r) for r in raws) // len(raws)
    return [
        Comparison.paired(
            "oidc",
            "validate_id_token (strict + claims flattened)",
            "floor: joserfc RS256, key by kid, the same claim checks (bench/floors/oidc.py)",
            per_token["ours"],
            per_token["floor"],
            target=1.5,
            notes=f"RS256 ID tokens of about {size} bytes; CPU time per validation; the same "
            "claims asserted first",
            extra={"bytes": size},
        )
    ]


def main() -> int:
    for c in run("--quick" in sys.argv):
        spread = f" [{c.spread[0]:.2f}-{c.spread[1]:.2f}]" if c.spread else ""
        print(
            f"{c.subject} vs {c.baseline}: {c.ours.median_ms:.4f} ms vs "
            f"{c.theirs.median_ms:.4f} ms = {c.ratio:.2f}x{spread} (target ≤ {c.target})"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
