"""examples/idp/saml_idp.py, the local SAML test IdP built on pysaml2, against jitprov
itself: it imports jitprov's SP metadata, takes jitprov's signed AuthnRequests (and
refuses unsigned or tampered ones from an SP that signs), and its signed responses are
provisioned by jitprov (`require_signed = "both"`, the IdP's metadata as the trust
anchor). No browser: Flask's test client plays it."""

from __future__ import annotations

import base64
import dataclasses
import shutil
import zlib
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit

import pytest

if shutil.which("xmlsec1") is None:
    pytest.skip("the test IdP signs with pysaml2, which needs xmlsec1", allow_module_level=True)
pytest.importorskip("saml2", reason="the test IdP needs pysaml2")

import httpx
import lxml.html
from flask.testing import FlaskClient
from lxml import etree

from engine.config import Config, Connection, load_config
from engine.provision import Provisioner
from engine.result import Result
from engine.saml.authn_request import authn_request, redirect_url, sso_url, start_login
from engine.saml.metadata import parse_metadata
from engine.saml.xml import DS, SAML
from engine.store import open_store
from examples.idp import saml_idp
from tui.cli import run

IDP = "http://idp.test"  # the test client needs no real address
IDP_ENTITY = f"{IDP}/metadata"
SIGNED_SP, SIGNED_ACS = "https://signed-sp.example/saml", "http://127.0.0.1:9/acs/idp"
PLAIN_SP, PLAIN_ACS = "https://plain-sp.example/saml", "http://127.0.0.1:9/acs/plain"
APP = "https://app.example/"

RULES = """\
let mail = lower(first(@email))
deny "no e-mail address in the assertion" when mail == null
username     = email_local(mail)
email        = mail
given_name   = first(@firstName)
family_name  = first(@lastName)
groups       = [lower(g) for g in @groups]
"""

CONNECTIONS = f"""
[connections.idp]
protocol       = "saml2"
issuer         = "{IDP_ENTITY}"
metadata       = "idp-state/idp-metadata.xml"
audience       = "{SIGNED_SP}"
recipient      = "{SIGNED_ACS}"
require_signed = "both"
rules          = "rules/idp.rules"
attributes     = ["email", "firstName", "lastName", "groups"]
sp_certificate = "certs/sp.crt"
sp_key         = "certs/sp.key"
return_urls    = ["{APP}"]

[connections.plain]
protocol       = "saml2"
issuer         = "{IDP_ENTITY}"
metadata       = "idp-state/idp-metadata.xml"
audience       = "{PLAIN_SP}"
recipient      = "{PLAIN_ACS}"
require_signed = "both"
rules          = "rules/idp.rules"
attributes     = ["email", "firstName", "lastName", "groups"]
"""


@dataclasses.dataclass
class Setup:
    root: Path
    config: Config
    client: FlaskClient

    def connection(self, name: str = "idp") -> Connection:
        return self.config.connection(name)

    def provision(self, name: str, saml_response: str) -> Result:
        provisioner = Provisioner(self.config)
        try:
            return provisioner.apply(name, saml_response.encode())
        finally:
            provisioner.close()


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    assert run(list(argv)) == 0, capsys.readouterr().err
    return capsys.readouterr().out


@pytest.fixture
def setup(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Setup:
    root = tmp_path / "ws"
    cli(capsys, "init", str(root), "--sp-keys")  # certs/sp.key + certs/sp.crt
    # The IdP's key pair and metadata come first: the connections trust that metadata.
    state = root / "idp-state"
    saml_idp.prepare_state(state, IDP)
    (root / "rules" / "idp.rules").write_text(RULES)
    with (root / "jitprov.toml").open("a") as toml:
        toml.write(CONNECTIONS)
    assert cli(capsys, "--config", str(root), "check", "--json").strip() == "[]"
    # The SPs' metadata, as an administrator would hand it to the IdP.
    sp_files = []
    for name in ("idp", "plain"):
        path = tmp_path / f"{name}-sp-metadata.xml"
        path.write_text(cli(capsys, "--config", str(root), "connection", "sp-metadata", name))
        sp_files.append(path)
    assert 'AuthnRequestsSigned="true"' in sp_files[0].read_text()
    assert 'AuthnRequestsSigned="false"' in sp_files[1].read_text()
    app = saml_idp.create_app(state, IDP, sp_files, saml_idp.DEFAULT_USERS)
    return Setup(root, load_config(root / "jitprov.toml"), app.test_client())


def login_url(setup: Setup, name: str = "idp", return_to: str | None = None) -> str:
    """jitprov's own SP-initiated request (signed when the connection has sp_key)."""
    store = open_store(setup.config)
    try:
        return start_login(
            setup.connection(name), store, now=datetime.now(UTC), return_to=return_to
        )
    finally:
        store.close()


def form_fields(page: str) -> tuple[str, dict[str, str]]:
    form = lxml.html.fromstring(page).forms[0]
    return form.action or "", {name: value or "" for name, value in form.fields.items()}


def sign_in(
    client: FlaskClient, start: str, username: str = "alice", password: str = "alice"
) -> tuple[int, str]:
    """GET the IdP's start URL, then submit its login form."""
    answer = client.get(start)
    assert answer.status_code == 200, answer.text
    action, fields = form_fields(answer.text)
    assert action == f"{IDP}/login" and set(fields) == {"key", "username", "password"}
    fields.update(username=username, password=password)
    answer = client.post(action, data=fields)
    return answer.status_code, answer.text


def posted(page: str) -> tuple[str, dict[str, str]]:
    """The auto-submitting form the IdP answers with: where it posts, and what."""
    action, fields = form_fields(page)
    assert 'onload="document.forms[0].submit()"' in page
    assert '<input type="submit" value="Continue"/>' in page  # without JavaScript
    return action, fields


def decoded(saml_response: str) -> etree._Element:
    return etree.fromstring(base64.b64decode(saml_response))


def query(url: str) -> list[tuple[str, str]]:
    return parse_qsl(urlsplit(url).query)


def with_query(url: str, params: list[tuple[str, str]]) -> str:
    return url.split("?", 1)[0] + "?" + urlencode(params)


def test_sp_initiated_sign_in_is_provisioned_then_unchanged(setup: Setup) -> None:
    url = login_url(setup, return_to=f"{APP}home")
    assert url.startswith(f"{IDP}/sso/redirect?SAMLRequest=")  # from the IdP's metadata
    assert [k for k, _ in query(url)] == ["SAMLRequest", "SigAlg", "Signature"]
    request_xml = zlib.decompress(base64.b64decode(dict(query(url))["SAMLRequest"]), -15)
    request_id = etree.fromstring(request_xml).get("ID")

    status, page = sign_in(setup.client, url)
    assert status == 200, page
    action, fields = posted(page)
    assert action == SIGNED_ACS and set(fields) == {"SAMLResponse"}  # jitprov sent no RelayState

    response = decoded(fields["SAMLResponse"])
    assert response.get("Destination") == SIGNED_ACS
    assert response.get("InResponseTo") == request_id
    assert response.findtext(f"{SAML}Issuer") == IDP_ENTITY
    assert response.find(f"{DS}Signature") is not None
    [assertion] = response.findall(f"{SAML}Assertion")
    assert assertion.find(f"{DS}Signature") is not None
    assert assertion.findtext(f"{SAML}Issuer") == IDP_ENTITY
    name_id = assertion.find(f"{SAML}Subject/{SAML}NameID")
    assert name_id is not None and name_id.text == "alice-0001"
    assert name_id.get("Format") == "urn:oasis:names:tc:SAML:2.0:nameid-format:persistent"
    data = assertion.find(f"{SAML}Subject/{SAML}SubjectConfirmation/{SAML}SubjectConfirmationData")
    assert data is not None
    assert data.get("Recipient") == SIGNED_ACS and data.get("InResponseTo") == request_id
    expires = datetime.fromisoformat(data.get("NotOnOrAfter", "").replace("Z", "+00:00"))
    assert timedelta(0) < expires - datetime.now(UTC) <= timedelta(minutes=10)
    assert assertion.findtext(f"{SAML}Conditions/{SAML}AudienceRestriction/{SAML}Audience") == (
        SIGNED_SP
    )
    for method in response.iter(f"{DS}SignatureMethod", f"{DS}DigestMethod"):
        assert method.get("Algorithm", "").endswith(("#rsa-sha256", "#sha256"))
    # The attributes keep the names the user table gives them (no urn:oid renaming).
    names = {a.get("Name"): a.get("NameFormat") for a in assertion.iter(f"{SAML}Attribute")}
    basic = "urn:oasis:names:tc:SAML:2.0:attrname-format:basic"
    assert names == dict.fromkeys(["email", "firstName", "lastName", "groups"], basic)

    result = setup.provision("idp", fields["SAMLResponse"])
    assert result.outcome == "created", result.message
    assert result.user is not None
    assert (result.user["username"], result.user["email"]) == ("alice", "alice@example.com")
    assert (result.user["given_name"], result.user["family_name"]) == ("Alice", "Liddell")
    assert result.user["groups"] == ["engineering", "staff"]
    # The response answered jitprov's pending request, which is now taken.
    again = setup.provision("idp", fields["SAMLResponse"])
    assert (again.outcome, again.reason) == ("rejected", "wrong-request"), again.message

    # A new sign-in (a new request, a new response) finds alice as she is.
    status, page = sign_in(setup.client, login_url(setup))
    assert status == 200, page
    result = setup.provision("idp", posted(page)[1]["SAMLResponse"])
    assert (result.outcome, result.subject) == ("unchanged", "alice-0001"), result.message


def test_an_sp_that_signs_its_requests_must_sign_them(setup: Setup) -> None:
    conn = setup.connection("idp")
    target = sso_url(conn)
    now = datetime.now(UTC)
    xml = authn_request(conn, "_unsigned-1", target, now, force_authn=False)
    unsigned = redirect_url(dataclasses.replace(conn, sp_key=None), target, xml)
    answer = setup.client.get(unsigned)
    assert answer.status_code == 400 and "is not signed" in answer.text
    assert "Traceback" not in answer.text

    signed = login_url(setup)
    params = query(signed)
    signature = bytearray(base64.b64decode(dict(params)["Signature"]))
    signature[10] ^= 0x01
    tampered = [
        (k, base64.b64encode(signature).decode() if k == "Signature" else v) for k, v in params
    ]
    answer = setup.client.get(with_query(signed, tampered))
    assert answer.status_code == 400 and "does not verify" in answer.text
    # A valid signature over another request does not carry over.
    other = dict(query(login_url(setup)))
    swapped = [(k, other[k] if k != "SAMLRequest" else v) for k, v in params]
    assert setup.client.get(with_query(signed, swapped)).status_code == 400
    # The untouched request is fine.
    assert setup.client.get(signed).status_code == 200

    # An SP whose metadata does not sign its requests may send them unsigned.
    plain = login_url(setup, "plain")
    assert [k for k, _ in query(plain)] == ["SAMLRequest"]
    assert setup.client.get(plain).status_code == 200


def test_unknown_sps_and_broken_requests_are_plain_400s(setup: Setup) -> None:
    conn = dataclasses.replace(setup.connection("plain"), audience="https://stranger.example/saml")
    target = sso_url(conn)
    xml = authn_request(conn, "_stranger-1", target, datetime.now(UTC), force_authn=False)
    answer = setup.client.get(redirect_url(conn, target, xml))
    assert answer.status_code == 400 and "Unknown SP" in answer.text
    # An ACS URL the SP's metadata does not list is not where a response goes.
    conn = dataclasses.replace(setup.connection("plain"), recipient="https://evil.example/acs")
    xml = authn_request(conn, "_elsewhere-1", target, datetime.now(UTC), force_authn=False)
    answer = setup.client.get(redirect_url(conn, target, xml))
    assert answer.status_code == 400 and "No HTTP-POST AssertionConsumerService" in answer.text
    answer = setup.client.get("/sso/redirect?SAMLRequest=bm90IGRlZmxhdGVk")
    assert answer.status_code == 400 and "cannot be read" in answer.text
    assert setup.client.get("/sso/redirect").status_code == 400
    assert setup.client.get("/sso/unsolicited?sp=https://stranger.example/saml").status_code == 400
    answer = setup.client.post("/login", data={"key": "forged", "username": "alice"})
    assert answer.status_code == 400 and "unknown or has expired" in answer.text
    assert setup.client.get("/nowhere").status_code == 404


def test_idp_initiated_sign_in_passes_the_relay_state(setup: Setup) -> None:
    start = "/sso/unsolicited?" + urlencode({"sp": SIGNED_SP, "RelayState": f"{APP}x"})
    status, page = sign_in(setup.client, start)
    assert status == 200, page
    action, fields = posted(page)
    assert action == SIGNED_ACS and fields["RelayState"] == f"{APP}x"
    response = decoded(fields["SAMLResponse"])
    assert response.get("InResponseTo") is None
    data = response.find(f".//{SAML}SubjectConfirmationData")
    assert data is not None and data.get("InResponseTo") is None
    assert data.get("Recipient") == SIGNED_ACS

    assert not setup.connection().require_in_response_to
    result = setup.provision("idp", fields["SAMLResponse"])
    assert result.outcome == "created", result.message
    assert result.user is not None and result.user["username"] == "alice"


def test_a_wrong_password_shows_the_form_again(setup: Setup) -> None:
    start = "/sso/unsolicited?" + urlencode({"sp": PLAIN_SP})
    status, page = sign_in(setup.client, start, password="not-alice")
    assert status == 401 and "Wrong username or password" in page
    status, page = sign_in(setup.client, start, username="mallory", password="x")
    assert status == 401 and "Wrong username or password" in page
    # The form shown again still works, for bob this time.
    action, fields = form_fields(page)
    fields.update(username="bob", password="bob")
    answer = setup.client.post(action, data=fields)
    assert answer.status_code == 200
    result = setup.provision("plain", posted(answer.text)[1]["SAMLResponse"])
    assert result.outcome == "created", result.message
    assert result.user is not None and result.user["groups"] == ["sales"]


def test_the_state_and_metadata_of_a_served_idp(setup: Setup, tmp_path: Path) -> None:
    state = setup.root / "idp-state"
    assert (state / "idp.key").stat().st_mode & 0o777 == 0o600
    key, cert = (state / "idp.key").read_bytes(), (state / "idp.crt").read_bytes()

    # Served from a thread on a free port: the base URL (so the entity ID) is known
    # only once bound, so bind, build the app for that URL, then serve.
    server, base = saml_idp.bind(0)
    sp_files = [tmp_path / "idp-sp-metadata.xml"]
    app = saml_idp.create_app(state, base, sp_files, saml_idp.DEFAULT_USERS)
    saml_idp.serve_in_thread(app, server=server)
    try:
        answer = httpx.get(f"{base}/metadata", timeout=10)
    finally:
        server.shutdown()
        server.server_close()
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("application/samlmetadata+xml")
    found = parse_metadata(answer.content)
    assert found.entity_id == f"{base}/metadata"
    assert found.sso_redirect == f"{base}/sso/redirect"
    assert len(found.signing_certs) == 1
    # The key pair is reused; only the metadata follows the base URL.
    assert (state / "idp.key").read_bytes() == key and (state / "idp.crt").read_bytes() == cert
    assert answer.content == (state / "idp-metadata.xml").read_bytes()
