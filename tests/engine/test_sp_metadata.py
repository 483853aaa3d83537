"""This SP's metadata per saml2 connection: `jitprov connection sp-metadata CONN` and
`GET /metadata/{connection}` in `serve` — valid against the SAML 2.0 metadata schema,
saying what the IdP's administrator must know and nothing more."""

from __future__ import annotations

import base64
import dataclasses
import shutil
import sys
from pathlib import Path

import pytest
from lxml import etree
from starlette.testclient import TestClient

if str(Path(__file__).parent) not in sys.path:  # tests/engine is not an importable package
    sys.path.insert(0, str(Path(__file__).parent))
from saml_fixtures import IDP_CERT, SP_CERT, SP_KEY, connection

from engine.config import ConfigError, load_config
from engine.saml.keys import ders_from_pem
from engine.saml.schema import metadata_schema
from engine.saml.sp_metadata import SpMetadataError, sp_metadata
from engine.saml.xml import DS, MD
from engine.service import create_app

DEMO = Path(__file__).resolve().parents[2] / "examples" / "demo"
OTHER_SP_CERT = SP_CERT.parent / "other-sp.crt"


def parsed(document: bytes) -> etree._Element:
    root = etree.fromstring(document)
    assert metadata_schema().validate(root), metadata_schema().error_log
    return root


def b64(path: Path) -> str:
    return base64.b64encode(ders_from_pem(path.read_bytes(), path.name)[0]).decode()


def test_the_metadata_names_the_sp_its_acs_and_what_it_wants() -> None:
    root = parsed(sp_metadata(connection(require_signed="assertion")))
    assert root.get("entityID") == "https://sp.example.com/saml"
    sp = root.find(f"{MD}SPSSODescriptor")
    assert sp is not None
    assert sp.get("WantAssertionsSigned") == "true" and sp.get("AuthnRequestsSigned") == "false"
    [acs] = sp.findall(f"{MD}AssertionConsumerService")
    assert acs.get("Location") == "https://sp.example.com/saml/acs"
    assert acs.get("Binding") == "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST"
    assert [f.text for f in sp.findall(f"{MD}NameIDFormat")] == [
        "urn:oasis:names:tc:SAML:2.0:nameid-format:persistent",
        "urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress",
    ]
    assert sp.find(f"{MD}KeyDescriptor") is None  # no SP keys configured


def test_sp_keys_become_its_key_descriptors() -> None:
    conn = connection(
        require_signed="either",
        sp_certificate=SP_CERT,
        sp_key=SP_KEY,
        sp_encryption_certificate=OTHER_SP_CERT,
    )
    sp = parsed(sp_metadata(conn)).find(f"{MD}SPSSODescriptor")
    assert sp is not None
    assert sp.get("AuthnRequestsSigned") == "true" and sp.get("WantAssertionsSigned") == "false"
    found = {
        k.get("use"): k.findtext(f"{DS}KeyInfo/{DS}X509Data/{DS}X509Certificate")
        for k in sp.findall(f"{MD}KeyDescriptor")
    }
    assert found == {"signing": b64(SP_CERT), "encryption": b64(OTHER_SP_CERT)}


def test_an_identity_from_an_attribute_asks_for_no_particular_name_id() -> None:
    sp = parsed(sp_metadata(connection(subject_from="employeeNumber"))).find(f"{MD}SPSSODescriptor")
    assert sp is not None
    assert [f.text for f in sp.findall(f"{MD}NameIDFormat")] == [
        "urn:oasis:names:tc:SAML:1.1:nameid-format:unspecified"
    ]


def test_what_the_metadata_cannot_do_without() -> None:
    with pytest.raises(SpMetadataError, match="has no recipient"):
        sp_metadata(connection(recipient=None))
    with pytest.raises(SpMetadataError, match="is oidc, not saml2"):
        sp_metadata(dataclasses.replace(connection(), protocol="oidc"))


def test_the_cli_prints_it_and_serve_publishes_it_without_the_token(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from tui.cli import run

    shutil.copytree(DEMO, tmp_path / "demo", ignore=shutil.ignore_patterns("*.db*"))
    config = tmp_path / "demo" / "jitprov.toml"
    config.write_text(config.read_text() + '\n[serve]\ntoken_env = "JITPROV_TEST_TOKEN"\n')
    monkeypatch.setenv("JITPROV_TEST_TOKEN", "s3cret")
    assert run(["connection", "sp-metadata", "okta", "--config", str(config)]) == 0
    printed = capsys.readouterr().out.encode()
    assert parsed(printed).get("entityID") == "https://sp.example.com/saml"
    assert run(["connection", "sp-metadata", "nope", "--config", str(config)]) == 1
    assert "unknown connection 'nope'" in capsys.readouterr().err
    with TestClient(create_app(load_config(config), token="s3cret")) as client:
        answer = client.get("/metadata/okta")
        assert answer.status_code == 200
        assert answer.headers["content-type"] == "application/samlmetadata+xml"
        assert answer.content == printed
        missing = client.get("/metadata/nope")
        assert missing.status_code == 404 and missing.json() == {"error": "no connection 'nope'"}
        assert client.get("/readyz").status_code == 401  # the others still need the token


def test_sp_keys_are_checked_in_the_config(tmp_path: Path) -> None:
    (tmp_path / "idp.pem").write_text(IDP_CERT.read_text())  # a certificate, unused
    (tmp_path / "sp.crt").write_text(SP_CERT.read_text())
    (tmp_path / "x.rules").write_text("username = subject\n")
    base = (
        '[connections.x]\nprotocol = "saml2"\nissuer = "urn:idp"\ncertificate = "idp.pem"\n'
        'audience = "urn:sp"\nrules = "x.rules"\n'
    )
    for extra, message in (
        ('sp_certificate = "sp.crt"\n', "sp_key: missing: sp_certificate and sp_key go together"),
        (
            'sp_encryption_certificate = "sp.crt"\n',
            "decryption_key: missing: sp_encryption_certificate is the certificate of",
        ),
    ):
        (tmp_path / "jitprov.toml").write_text(base + extra)
        with pytest.raises(ConfigError, match=message):
            load_config(tmp_path / "jitprov.toml")
