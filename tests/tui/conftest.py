"""Fixtures of the TUI tests: a small workspace of their own (written from the strings
below, so a change to examples/demo never moves a snapshot), a facade with a fixed
clock, and a helper that waits for the app's workers to settle.

The workspace has three connections (okta ✔, entra ✔, shib ⚠ 1 warning), four samples
and three cases, one of which fails on purpose so the bench has a diff to show.
`copy_demo` copies examples/demo itself, for the real-terminal test.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from textual.app import App
from textual.pilot import Pilot

from tui.app import JitprovApp, make_app
from tui.facade import Facade

DEMO = Path(__file__).resolve().parents[2] / "examples" / "demo"
FIXED_NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
SIZE = (120, 40)

FILES = {
    "jitprov.toml": """\
# The TUI tests' workspace: three small SAML connections.

[store]
path = "jitprov.db"

[store.fields]
department  = "text"
employee_id = "text"

# Okta: plain attribute names.
[connections.okta]
protocol       = "saml2"
issuer         = "http://www.okta.com/exk1test"
certificate    = "certs/idp.crt"
audience       = "https://sp.example.com/saml"
require_signed = "assertion"
rules          = "rules/okta.rules"
mode           = "create-and-update"
link_by        = "email"
redact         = ["employee_id"]

# Entra: claim URIs; it only updates accounts.
[connections.entra]
protocol       = "saml2"
issuer         = "https://sts.windows.net/test-tenant/"
certificate    = "certs/idp.crt"
audience       = "spn:test-app"
require_signed = "response"
rules          = "rules/entra.rules"
mode           = "update-only"

# Shibboleth: urn:oid names.
[connections.shib]
protocol       = "saml2"
issuer         = "https://idp.university.example/idp/shibboleth"
certificate    = "certs/idp.crt"
audience       = "https://sp.example.com/saml"
rules          = "rules/shib.rules"
""",
    "rules/okta.rules": """\
# Okta → our user store.
let mail = lower(first(@email))
let dept = first(@department)

deny "no e-mail address in the assertion" when mail == null
deny "contractors are not provisioned" when "contractor" in lower(@employeeType)

username     = email_local(mail)
email        = mail
given_name   = first(@firstName)
family_name  = first(@lastName)
display_name = join([first(@firstName), first(@lastName)], " ")
employee_id  = first(@employeeNumber)
department   = match dept {
    "Engineering", "R&D" => "engineering"
    "Sales"              => "sales"
    else                 => "other"
}
groups += "everyone"
groups += [lower(g) for g in @groups]

rule "first login" on create {
    active = true
    roles  = ["viewer"]
}

rule "engineers" when dept == "Engineering" {
    roles += "developer"
}
""",
    "rules/entra.rules": """\
# Microsoft Entra ID: claims arrive as URIs.
let upn = lower(first(@"http://schemas.xmlsoap.org/ws/2005/05/identity/claims/name"))

deny "no user principal name in the token" when upn == null

username = substring_before(upn, "@")
email    = upn
""",
    "rules/shib.rules": """\
# Shibboleth: urn:oid attribute names.
username = first(@"urn:oid:0.9.2342.19200300.100.1.1")
email    = first(@"urn:oid:0.9.2342.19200300.100.1.3")
display_name = "Student"
display_name = "Student of the university"
""",
    "samples/okta-engineer.toml": """\
subject = "ada.lovelace@example.com"
token_id = "okta-engineer-1"
[attributes]
email = "Ada.Lovelace@example.com"
firstName = "Ada"
lastName = "Lovelace"
department = "Engineering"
employeeNumber = "E-1815"
groups = ["Eng-Platform", "Eng-Compilers"]
""",
    "samples/okta-sales.toml": """\
subject = "grace.hopper@example.com"
[attributes]
email = "grace.hopper@example.com"
firstName = "Grace"
lastName = "Hopper"
department = "Sales"
""",
    "samples/okta-contractor.toml": """\
subject = "alan.turing@contractors.example.net"
[attributes]
email = "alan.turing@contractors.example.net"
firstName = "Alan"
lastName = "Turing"
employeeType = "Contractor"
""",
    "samples/entra-jose.toml": """\
subject = "jose.nunez@contoso.example"
[attributes]
"http://schemas.xmlsoap.org/ws/2005/05/identity/claims/name" = "José.Núñez@contoso.example"
""",
    "tests/okta/engineer-created.case.toml": """\
connection = "okta"
token = "../../samples/okta-engineer.toml"
unsigned = true

[expect]
outcome = "created"
[expect.user]
department = "engineering"
groups = ["eng-compilers", "eng-platform", "everyone"]
""",
    "tests/okta/contractor-denied.case.toml": """\
connection = "okta"
token = "../../samples/okta-contractor.toml"
unsigned = true

[expect]
outcome = "denied"
message_has = "contractors"
""",
    "tests/okta/sales-is-engineering.case.toml": """\
# Fails on purpose: the bench shows its diff.
connection = "okta"
token = "../../samples/okta-sales.toml"
unsigned = true

[expect]
outcome = "created"
[expect.user]
department = "engineering"
""",
}


def make_workspace(target: Path) -> Path:
    """Write the test workspace into `target`; its jitprov.toml's path."""
    for name, text in FILES.items():
        path = target / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    cert = target / "certs" / "idp.crt"
    cert.parent.mkdir(exist_ok=True)
    shutil.copyfile(DEMO / "certs" / "idp-test.crt", cert)  # a real certificate (import)
    return target / "jitprov.toml"


def copy_demo(target: Path) -> Path:
    """A copy of examples/demo (without any store file); its jitprov.toml's path."""
    shutil.copytree(DEMO, target, ignore=shutil.ignore_patterns("*.db", "*.db-*"))
    return target / "jitprov.toml"


@pytest.fixture
def config_path(tmp_path: Path) -> Path:
    return make_workspace(tmp_path / "acme")


@pytest.fixture
def facade(config_path: Path) -> Facade:
    return Facade(config_path, clock=lambda: FIXED_NOW)


@pytest.fixture
def app(facade: Facade) -> Iterator[JitprovApp]:
    yield make_app(facade)


async def settle(pilot: Pilot[None], app: App[None] | None = None, rounds: int = 3) -> None:
    """Wait until no worker runs and the messages they posted are handled."""
    target = app or pilot.app
    for _ in range(rounds):
        await pilot.pause()
        await target.workers.wait_for_complete()
        await pilot.pause(0.05)


async def until(pilot: Pilot[None], done: Callable[[], bool], timeout: float = 20.0) -> None:
    """Wait until `done()`: the app's messages handled and its workers finished, again
    and again (no fixed sleep); fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, "the condition never held"
        await pilot.pause()
        await pilot.app.workers.wait_for_complete()
