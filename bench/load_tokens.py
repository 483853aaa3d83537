"""The load stage's workspace and tokens: signed SAML responses and RS256 ID tokens.

`workspace` writes a jitprov workspace with two connections — `bench` (SAML, the demo
IdP's certificate, the rules of bench_end_to_end) and `bench-oidc` (an RS256 JWKS) — and
the peer's `peer.json` naming the same issuer, audience, recipient, certificate and keys.
`mint_all` mints form bodies (`SAMLResponse=...` or `id_token=...`) in a process pool,
every one for a person of its own with an ID of its own, valid from the clock now.
"""

from __future__ import annotations

import functools
import json
import shutil
import time
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from bench.bench_end_to_end import RULES as SAML_RULES
from bench.bench_saml import AUDIENCE, ISSUER, RECIPIENT

DEMO_CERTS = Path(__file__).resolve().parent.parent / "examples" / "demo" / "certs"
CHUNK = 64  # tokens per pool task
OIDC_ISSUER = "https://idp.bench.example/oidc"
OIDC_AUDIENCE = "bench-client"
OIDC_RULES = """\
let mail = lower(first(@email))
deny "no e-mail address" when mail == null
username     = email_local(mail)
email        = mail
display_name = join([first(@given_name), first(@family_name)], " ")
department   = first(@department) ?? "unknown"
groups       = [lower(g) for g in @groups if g matches r"^(eng|sales|ops)-"]
groups      += "everyone"
"""
CONFIG = f"""\
[store]
path = "jitprov.db"
[store.fields]
department = "text"
[connections.bench]
protocol = "saml2"
issuer = "{ISSUER}"
certificate = "idp-test.crt"
audience = "{AUDIENCE}"
recipient = "{RECIPIENT}"
require_signed = "assertion"
rules = "saml.rules"
[connections.bench-oidc]
protocol = "oidc"
issuer = "{OIDC_ISSUER}"
audience = "{OIDC_AUDIENCE}"
jwks = "jwks.json"
rules = "oidc.rules"
"""


def workspace(folder: Path, jwk: dict[str, Any]) -> None:
    """jitprov's workspace (SAML and OIDC connections) and the peer's peer.json."""
    from joserfc.jwk import RSAKey

    folder.mkdir(parents=True)
    shutil.copyfile(DEMO_CERTS / "idp-test.crt", folder / "idp-test.crt")
    public = RSAKey.import_key(jwk).as_dict(private=False)
    (folder / "jwks.json").write_text(json.dumps({"keys": [{**public, "alg": "RS256"}]}))
    (folder / "saml.rules").write_text(SAML_RULES)
    (folder / "oidc.rules").write_text(OIDC_RULES)
    (folder / "jitprov.toml").write_text(CONFIG)
    peer = {
        "idp_cert": str(folder / "idp-test.crt"),
        "issuer": ISSUER,
        "audience": AUDIENCE,
        "recipient": RECIPIENT,
        "jwks": str(folder / "jwks.json"),
        "oidc_issuer": OIDC_ISSUER,
        "oidc_audience": OIDC_AUDIENCE,
    }
    (folder / "peer.json").write_text(json.dumps(peer))


@functools.cache
def _saml_connection(config: str) -> Any:
    from engine.config import load_config

    return load_config(Path(config)).connection("bench")


def mint_bodies(
    protocol: str, prefix: str, start: int, stop: int, at: int, config: str, jwk: str
) -> list[bytes]:
    """Form bodies for people `prefix{start}` .. `prefix{stop - 1}` (in a pool process)."""
    bodies = []
    if protocol == "SAML":
        from engine.saml.mint import mint
        from engine.sample import Sample

        connection = _saml_connection(config)
        key_pem = (DEMO_CERTS / "idp-test.key").read_bytes()
        cert_pem = (DEMO_CERTS / "idp-test.crt").read_bytes()
        for n in range(start, stop):
            person = f"{prefix}{n}"
            sample = Sample(
                subject=f"{person}@example.com",
                token_id=None,  # a fresh random ID per response
                subject_format="urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress",
                attributes={
                    "email": [f"{person}@Example.com"],
                    "givenName": ["Test"],
                    "sn": [f"User {n}"],
                    "department": ["Engineering" if n % 3 else "Sales"],
                    "memberOf": [
                        f"CN=Team{(n + k) % 7},OU=Apps,DC=example,DC=com" for k in range(4)
                    ]
                    + ["CN=Printers,OU=Devices,DC=example,DC=com"],
                },
            )
            raw = mint(
                sample,
                connection,
                key_pem=key_pem,
                cert_pem=cert_pem,
                encoding="base64",
                at=datetime.fromtimestamp(at, UTC),
            )
            bodies.append(urlencode({"SAMLResponse": raw.decode()}).encode())
    else:
        from joserfc import jwt
        from joserfc.jwk import RSAKey

        key = RSAKey.import_key(json.loads(jwk))
        for n in range(start, stop):
            person = f"{prefix}{n}"
            claims = {
                "iss": OIDC_ISSUER,
                "sub": f"sub-{person}",
                "aud": OIDC_AUDIENCE,
                "iat": at,
                "exp": at + 600,
                "jti": f"jti-{person}",
                "email": f"{person}@Example.com",
                "given_name": "Test",
                "family_name": f"User {n}",
                "department": "Engineering" if n % 3 else "Sales",
                "groups": [f"eng-team{n % 7}", "sales-emea", "hr-all", "ops-oncall"],
            }
            token = jwt.encode({"alg": "RS256", "kid": key.kid}, claims, key)
            bodies.append(urlencode({"id_token": token}).encode())
    return bodies


def mint_all(
    pool: ProcessPoolExecutor, wanted: dict[tuple[str, str], int], config: Path, jwk: str
) -> dict[tuple[str, str], list[bytes]]:
    """For each (protocol, prefix): that many bodies, minted in the pool at the clock now."""
    at = int(time.time())
    futures = {
        key: [
            pool.submit(mint_bodies, key[0], key[1], s, min(s + CHUNK, count), at, str(config), jwk)
            for s in range(0, count, CHUNK)
        ]
        for key, count in wanted.items()
    }
    return {key: [b for f in parts for b in f.result()] for key, parts in futures.items()}
