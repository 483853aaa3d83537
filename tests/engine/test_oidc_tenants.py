"""Multi-tenant issuers: `issuer = ".../{tenantid}/v2.0"` with `tenants` (an allowlist, or
"any" written explicitly). The tenant in `iss` must be allowed and equal the token's
`tid`; the tenant reaches the rules as `@tid`."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import Any

import pytest

if str(Path(__file__).parent) not in sys.path:  # tests/engine is not an importable package
    sys.path.insert(0, str(Path(__file__).parent))
from oidc_fixtures import NOW, claims, connection, public_jwk, rsa_key, sign, write_jwks

from engine.config import ConfigError, Connection, load_config
from engine.oidc import validate_id_token
from engine.token import Token, TokenRejected

TEMPLATE = "https://login.microsoftonline.com/{tenantid}/v2.0"
CONTOSO = "9188040d-6c67-4c5b-b112-36a304b66dad"
FABRIKAM = "72f988bf-86f1-41af-91ab-2d7cd011db47"


def entra(tmp_path: Path, tenants: Any) -> Connection:
    jwks = write_jwks(tmp_path, public_jwk(rsa_key(), use="sig"))
    return dataclasses.replace(connection(jwks), issuer=TEMPLATE, tenants=tenants)


def token_of(tenant: str, **more: Any) -> bytes:
    iss = TEMPLATE.replace("{tenantid}", tenant)
    return sign(claims(iss=iss, tid=more.pop("tid", tenant), **more), rsa_key())


def check(token: bytes, conn: Connection) -> Token:
    return validate_id_token(token, conn, now=NOW)


def refused(token: bytes, conn: Connection) -> str:
    with pytest.raises(TokenRejected) as info:
        check(token, conn)
    assert info.value.reason == "wrong-issuer"
    return info.value.message


def test_an_allowed_tenant_signs_in_and_its_tid_reaches_the_rules(tmp_path: Path) -> None:
    conn = entra(tmp_path, (CONTOSO,))
    token = check(token_of(CONTOSO), conn)
    assert token.issuer == TEMPLATE.replace("{tenantid}", CONTOSO)
    assert token.attributes["tid"] == [CONTOSO]


def test_a_tenant_not_listed_is_refused(tmp_path: Path) -> None:
    message = refused(token_of(FABRIKAM), entra(tmp_path, (CONTOSO,)))
    assert FABRIKAM in message and "not one of the connection's tenants" in message


def test_tenant_ids_compare_case_insensitively(tmp_path: Path) -> None:
    conn = entra(tmp_path, (CONTOSO,))  # the config lower-cases the list
    assert check(token_of(CONTOSO.upper(), tid=CONTOSO), conn)


def test_any_tenant_when_any_is_written(tmp_path: Path) -> None:
    conn = entra(tmp_path, "any")
    assert check(token_of(FABRIKAM), conn).attributes["tid"] == [FABRIKAM]


@pytest.mark.parametrize("tid", [FABRIKAM, None, ""])
def test_tid_must_name_the_tenant_of_iss(tmp_path: Path, tid: str | None) -> None:
    conn = entra(tmp_path, "any")
    message = refused(token_of(CONTOSO, tid=tid if tid is not None else ...), conn)
    assert "expected claim tid to equal the tenant in iss" in message


@pytest.mark.parametrize(
    "iss",
    [
        "https://login.microsoftonline.com/v2.0",
        f"https://login.microsoftonline.com/{CONTOSO}/extra/v2.0",
        f"https://evil.example/{CONTOSO}/v2.0",
        f"https://login.microsoftonline.com/{CONTOSO}/v2.0/",
    ],
)
def test_an_iss_not_of_the_issuer_s_form_is_refused(tmp_path: Path, iss: str) -> None:
    conn = entra(tmp_path, "any")
    token = sign(claims(iss=iss, tid=CONTOSO), rsa_key())
    assert "expected iss of the form" in refused(token, conn)


BASE = """
[store]
path = "jitprov.db"

[connections.entra]
protocol = "oidc"
issuer = "{issuer}"
audience = "client-123"
jwks = "jwks.json"
rules = "entra.rules"
"""


def _config(tmp_path: Path, issuer: str, extra: str = "") -> Path:
    (tmp_path / "jwks.json").write_text('{"keys": []}')
    (tmp_path / "entra.rules").write_text("username = subject\n")
    path = tmp_path / "jitprov.toml"
    path.write_text(BASE.replace("{issuer}", issuer) + extra)
    return path


def test_the_config_reads_tenants(tmp_path: Path) -> None:
    config = load_config(_config(tmp_path, TEMPLATE, f'tenants = ["{CONTOSO.upper()}"]\n'))
    assert config.connection("entra").tenants == (CONTOSO,)
    config = load_config(_config(tmp_path, TEMPLATE, 'tenants = "any"\n'))
    assert config.connection("entra").tenants == "any"


@pytest.mark.parametrize(
    ("issuer", "extra", "message"),
    [
        (TEMPLATE, "", "missing: an issuer with {tenantid} accepts only the tenants listed"),
        (TEMPLATE, "tenants = []\n", "expected a non-empty list of tenant IDs"),
        (TEMPLATE, 'tenants = "all"\n', "expected a non-empty list of tenant IDs"),
        ("https://idp.example/", 'tenants = "any"\n', "applies only to an issuer with"),
        ("https://x/{tenantid}/{tenantid}", 'tenants = "any"\n', "{tenantid} once"),
    ],
)
def test_tenant_settings_are_checked(tmp_path: Path, issuer: str, extra: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(_config(tmp_path, issuer, extra))
    assert message in str(info.value)
