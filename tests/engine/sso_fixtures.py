"""A workspace whose SAML connection starts sign-ins (`sso_url`, `return_urls`), and
responses to them signed by the test IdP, valid now (tests of `serve`'s browser flows)."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from pathlib import Path

from saml_fixtures import AUDIENCE, IDP_CERT, ISSUER, RECIPIENT, SAMPLE, SP_CERT, SP_KEY, make_token

SSO = "https://idp.example.org/sso"
APP = "https://app.example.com/"


def workspace(root: Path, extra: str = "", store: str = 'path = "jitprov.db"') -> Path:
    """A workspace in `root` with connection `idp` (the test IdP); `extra` adds keys;
    `store` is the [store] table's body (a PostgreSQL `url = ...`)."""
    (root / "certs").mkdir(parents=True)
    for path in (IDP_CERT, SP_CERT, SP_KEY):
        (root / "certs" / path.name).write_bytes(path.read_bytes())
    (root / "idp.rules").write_text("username = subject\n")
    config = root / "jitprov.toml"
    config.write_text(
        f"""
[store]
{store}

[connections.idp]
protocol = "saml2"
issuer = "{ISSUER}"
certificate = "certs/{IDP_CERT.name}"
audience = "{AUDIENCE}"
recipient = "{RECIPIENT}"
sso_url = "{SSO}"
return_urls = ["{APP}"]
rules = "idp.rules"
{extra}"""
    )
    return config


def response(token_id: str, in_response_to: str | None = None) -> bytes:
    """A response signed by the test IdP, valid now, with an assertion ID of its own."""
    sample = dataclasses.replace(SAMPLE, token_id=token_id)
    return make_token(sample=sample, in_response_to=in_response_to, at=datetime.now(UTC))
