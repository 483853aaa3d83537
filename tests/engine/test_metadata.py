"""IdP metadata: parsing (safely), trust from metadata, and `connection import-metadata`."""

from __future__ import annotations

import json
import sys
import tomllib
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from engine.saml import validate_saml
from engine.saml.metadata import MetadataError, parse_metadata
from engine.saml.workspace import import_metadata, pem, slug
from engine.token import TokenRejected

if str(Path(__file__).parent) not in sys.path:  # tests/engine is not an importable package
    sys.path.insert(0, str(Path(__file__).parent))
from saml_fixtures import (
    IDP_CERT,
    ISSUER,
    LATER,
    MD,
    SP_KEY,
    WORKSPACE_CONFIG,
    connection,
    entity,
    import_into_workspace,
    make_token,
)


def test_parse_entity_descriptor() -> None:
    idp = parse_metadata(entity().encode())
    assert idp.entity_id == ISSUER
    assert idp.sso_url == "https://idp.example.org/sso"
    assert pem(idp.signing_certs[0]).split() == IDP_CERT.read_text().split()


def test_encryption_keys_are_not_signing_keys() -> None:
    with pytest.raises(MetadataError, match="no signing certificate"):
        parse_metadata(entity(use="encryption").encode())


def test_several_idps_need_a_choice() -> None:
    both = f'<md:EntitiesDescriptor xmlns:md="{MD}">{entity("urn:a")}{entity("urn:b")}</md:EntitiesDescriptor>'
    with pytest.raises(MetadataError, match=r"several IdPs \(urn:a, urn:b\).*--entity"):
        parse_metadata(both.encode())
    assert parse_metadata(both.encode(), "urn:b").entity_id == "urn:b"


@pytest.mark.parametrize(
    "data",
    [b"", b"<nope", b"<x/>", b'<!DOCTYPE x [<!ENTITY e "e">]><x>&e;</x>'],
    ids=["empty", "broken", "not-metadata", "dtd"],
)
def test_invalid_metadata(data: bytes) -> None:
    with pytest.raises(MetadataError):
        parse_metadata(data)


def test_metadata_as_the_trust_source_with_rollover(tmp_path: Path) -> None:
    rollover = IDP_CERT.parent / "idp-rollover.crt"
    md = tmp_path / "idp.xml"
    md.write_text(entity(certs=(rollover, IDP_CERT)))
    token = validate_saml(make_token(), connection(certificates=(), metadata=md), now=LATER)
    assert token.name_id == "jdoe@example.com"


def _valid_until(xml: str, moment: str, *, outer: str | None = None) -> str:
    """`xml` with validUntil on its EntityDescriptor, optionally wrapped in an
    EntitiesDescriptor with a validUntil of its own."""
    xml = xml.replace(f'entityID="{ISSUER}"', f'entityID="{ISSUER}" validUntil="{moment}"', 1)
    if outer is not None:
        xml = xml.replace(f' xmlns:md="{MD}"', "", 1)
        xml = f'<md:EntitiesDescriptor xmlns:md="{MD}" validUntil="{outer}">{xml}</md:EntitiesDescriptor>'
    return xml


def _stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def test_valid_until_is_the_earliest_of_the_entity_and_its_enclosing_descriptors() -> None:
    xml = _valid_until(entity(), "2031-01-01T00:00:00Z", outer="2030-06-01T12:00:00.5+02:00")
    found = parse_metadata(xml.encode()).valid_until
    assert found is not None and _stamp(found) == "2030-06-01T10:00:00Z"
    assert parse_metadata(entity().encode()).valid_until is None
    with pytest.raises(MetadataError, match="validUntil"):
        parse_metadata(_valid_until(entity(), "next tuesday").encode())


def test_metadata_past_its_valid_until_is_no_longer_trusted(tmp_path: Path) -> None:
    md = tmp_path / "idp.xml"
    conn = connection(certificates=(), metadata=md)
    md.write_text(_valid_until(entity(), _stamp(LATER + timedelta(seconds=1))))
    assert validate_saml(make_token(), conn, now=LATER).name_id == "jdoe@example.com"
    md.write_text(_valid_until(entity(), _stamp(LATER)))  # over at that very second
    with pytest.raises(TokenRejected) as info:
        validate_saml(make_token(), conn, now=LATER)
    assert info.value.reason == "untrusted-signer"
    assert "the metadata idp.xml expired at" in info.value.message
    assert "validUntil" in info.value.message


def test_a_certificate_file_beside_expired_metadata_still_serves(tmp_path: Path) -> None:
    md = tmp_path / "idp.xml"
    md.write_text(_valid_until(entity(), "2001-01-01T00:00:00Z"))
    conn = connection(certificates=(IDP_CERT,), metadata=md)
    assert validate_saml(make_token(), conn, now=LATER).name_id == "jdoe@example.com"


@pytest.mark.parametrize(
    ("entity_id", "expected"),
    [
        ("http://www.okta.com/exk1demo", "okta"),
        ("https://sts.windows.net/9c0e0e5e-demo-tenant/", "entra"),
        ("https://login.microsoftonline.com/9c0e/v2.0", "entra"),
        ("https://app.onelogin.com/saml/metadata/383123", "onelogin"),
        ("https://accounts.google.com/o/saml2?idpid=C01", "google"),
        ("https://idp.university.example/idp/shibboleth", "university"),
        ("https://portal.example/idp", "portal"),
        ("urn:mace:example.com:idp", "example"),
        ("http://127.0.0.1:8090/metadata", "127-0-0-1-8090-metadata"),
        ("urn:foo:bar", "foo-bar"),
    ],
)
def test_an_imported_connection_gets_a_short_id(entity_id: str, expected: str) -> None:
    assert slug(entity_id) == expected


def test_a_second_import_of_the_same_idp_gets_a_numbered_id(tmp_path: Path) -> None:
    config = _workspace(tmp_path)
    md = tmp_path / "idp.xml"
    md.write_text(entity())
    first = import_metadata(config, md)
    second = import_metadata(config, md)
    assert (first.connection_id, second.connection_id) == ("example", "example-2")


def _workspace(tmp_path: Path, extra: str = "") -> Path:
    config = tmp_path / "jitprov.toml"
    config.write_text(WORKSPACE_CONFIG + extra, encoding="utf-8")
    return config


def test_import_keeps_comments_and_writes_files(tmp_path: Path) -> None:
    config = _workspace(tmp_path)
    md = tmp_path / "idp.xml"
    md.write_text(entity())
    done = import_metadata(config, md)
    text = config.read_text()
    assert "# keep this comment" in text
    data = tomllib.loads(text)["connections"][done.connection_id]
    assert done.connection_id == "example"
    assert data == {
        "protocol": "saml2",
        "issuer": ISSUER,
        "certificate": "certs/example.pem",
        "audience": "urn:jitprov:sp",
        "rules": "rules/example.rules",
    }
    assert (tmp_path / "rules/example.rules").read_text().endswith("username = subject\n")
    assert "BEGIN CERTIFICATE" in (tmp_path / "certs/example.pem").read_text()


def test_import_never_takes_the_audience_of_another_connection(tmp_path: Path) -> None:
    (tmp_path / "idp.pem").write_text(IDP_CERT.read_text())
    (tmp_path / "a.rules").write_text("username = subject\n")
    config = _workspace(
        tmp_path,
        '\n[connections.a]\nprotocol = "saml2"\nissuer = "urn:a"\n'
        'certificate = "idp.pem"\naudience = "https://sp/saml"\nrules = "a.rules"\n',
    )
    md = tmp_path / "idp.xml"
    md.write_text(entity(certs=(IDP_CERT, IDP_CERT.parent / "idp-rollover.crt")))
    done = import_metadata(config, md, connection_id="b")
    data = tomllib.loads(config.read_text())["connections"]["b"]
    assert data["audience"] == "urn:jitprov:sp" == done.audience  # not https://sp/saml
    assert data["certificate"] == ["certs/b-1.pem", "certs/b-2.pem"]


def test_import_without_an_audience_takes_the_default_and_says_so(tmp_path: Path) -> None:
    config = tmp_path / "jitprov.toml"
    config.write_text('[store]\npath = "jitprov.db"\n')
    md = tmp_path / "idp.xml"
    md.write_text(entity())
    done = import_metadata(config, md)
    assert done.audience == "urn:jitprov:sp"
    assert any("give --audience SP_ENTITY_ID" in w for w in done.warnings)
    given = import_metadata(config, md, connection_id="x", audience="https://sp.example/saml")
    assert given.audience == "https://sp.example/saml" and not given.warnings


def test_import_takes_the_workspace_s_sp_entity_id(tmp_path: Path) -> None:
    config = _workspace(tmp_path, '\n[sp]\nentity_id = "https://sp.example/saml"\n')
    md = tmp_path / "idp.xml"
    md.write_text(entity())
    done = import_metadata(config, md)
    assert done.audience == "https://sp.example/saml" and not done.warnings


def test_import_writes_the_options_it_is_given(tmp_path: Path) -> None:
    config = _workspace(tmp_path)
    (tmp_path / "sp.key").write_text(SP_KEY.read_text())  # a key, not read at import
    md = tmp_path / "idp.xml"
    md.write_text(entity())
    import_metadata(
        config,
        md,
        connection_id="x",
        audience="https://sp.example/saml",
        recipient="https://sp.example/saml/acs",
        require_signed="response",
        decryption_key="sp.key",
    )
    data = tomllib.loads(config.read_text())["connections"]["x"]
    assert data["audience"] == "https://sp.example/saml"
    assert data["recipient"] == "https://sp.example/saml/acs"
    assert data["require_signed"] == "response"
    assert data["decryption_key"] == "sp.key"


@pytest.mark.parametrize(
    ("valid_until", "warning"),
    [
        ("2001-01-01T00:00:00Z", "the metadata expired at 2001-01-01T00:00:00Z"),
        ("2026-01-20T00:00:00Z", "the metadata expires at 2026-01-20T00:00:00Z"),
        ("2027-01-01T00:00:00Z", None),
    ],
)
def test_import_warns_about_metadata_that_expired_or_soon_will(
    tmp_path: Path, valid_until: str, warning: str | None
) -> None:
    config = _workspace(tmp_path)
    md = tmp_path / "idp.xml"
    md.write_text(_valid_until(entity(), valid_until))
    done = import_metadata(config, md, audience="urn:sp", now=datetime(2026, 1, 1, tzinfo=UTC))
    assert [w[: len(warning)] for w in done.warnings] == ([warning] if warning else [])


def test_cli_import_prints_its_warnings(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from tui.cli import run

    config = _workspace(tmp_path)
    md = tmp_path / "idp.xml"
    md.write_text(_valid_until(entity(), "2001-01-01T00:00:00Z"))
    assert run(["connection", "import-metadata", str(md), "--config", str(config)]) == 0
    captured = capsys.readouterr()
    assert "jitprov: warning: the metadata expired at 2001-01-01T00:00:00Z" in captured.err
    assert "added [connections.example]" in captured.out


def test_import_refuses_an_existing_id(tmp_path: Path) -> None:
    config = _workspace(tmp_path)
    md = tmp_path / "idp.xml"
    md.write_text(entity())
    import_metadata(config, md, connection_id="x")
    before = config.read_text()
    with pytest.raises(MetadataError, match="already exists"):
        import_metadata(config, md, connection_id="x")
    assert config.read_text() == before


def test_cli_import(tmp_path: Path) -> None:
    md = tmp_path / "idp.xml"
    md.write_text(entity())
    data = import_into_workspace(md, tmp_path)
    assert data is not None
    assert data["connections"]["md"]["issuer"] == ISSUER


def test_cli_invalid_metadata_leaves_the_config_alone(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    md = tmp_path / "idp.xml"
    md.write_text("<md:EntityDescriptor xmlns:md='urn:oasis:names:tc:SAML:2.0:metadata'/>")
    assert import_into_workspace(md, tmp_path) is None
    err = capsys.readouterr().err
    assert err.startswith("jitprov: error: ") and "no IdP" in err
    assert not (tmp_path / "certs").exists()


def test_cli_import_json_and_entity_choice(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tui.cli import run

    config = _workspace(tmp_path)
    md = tmp_path / "fed.xml"
    md.write_text(
        f'<md:EntitiesDescriptor xmlns:md="{MD}">{entity("urn:a")}{entity("urn:b")}'
        "</md:EntitiesDescriptor>"
    )
    argv = ["connection", "import-metadata", str(md), "--config", str(config)]
    assert run(argv) == 1
    assert "urn:a, urn:b" in capsys.readouterr().err
    assert run([*argv, "--entity", "urn:b", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["connection"] == "b" and out["issuer"] == "urn:b"
    assert out["sso_url"] == "https://idp.example.org/sso"


def test_cli_connection_without_action(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from tui.cli import run

    assert run(["connection", "--config", str(_workspace(tmp_path))]) == 1
    assert "import-metadata" in capsys.readouterr().err


def test_the_demo_idp_s_metadata_imports_into_a_connection_that_signs_people_in(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The demo's test IdP described as metadata (as an IdP would publish it), imported
    with the SP's options only: `check` is clean and a response the IdP signs (`mint`)
    provisions its person."""
    from serve_fixtures import demo_workspace

    from tui.cli import run

    config = demo_workspace(tmp_path)
    root = config.parent
    issuer = "http://www.okta.com/exk1demo"
    md = root / "okta-metadata.xml"
    md.write_text(entity(issuer, certs=(root / "certs" / "idp-test.crt",)))
    argv = ["connection", "import-metadata", str(md), "--id", "okta-md", "--config", str(config)]
    argv += ["--recipient", "https://sp.example.com/saml/acs", "--require-signed", "assertion"]
    assert run(argv) == 0
    imported = tomllib.loads(config.read_text())["connections"]["okta-md"]
    assert imported["audience"] == "https://sp.example.com/saml"  # the demo's [sp] entity_id
    capsys.readouterr()
    assert run(["check", "--config", str(config)]) == 0, capsys.readouterr().out
    capsys.readouterr()
    sample = root / "samples" / "okta-engineer.toml"
    assert run(["mint", str(sample), "-c", "okta-md", "--config", str(config)]) == 0
    (root / "response.xml").write_text(capsys.readouterr().out)
    apply = [
        "apply",
        "-c",
        "okta-md",
        "--json",
        "--config",
        str(config),
        str(root / "response.xml"),
    ]
    assert run(apply) == 0
    assert json.loads(capsys.readouterr().out)["outcome"] == "created"
