"""SAML metadata from a URL (`metadata_url`), against a real HTTP server on loopback: a
signature checked with the pinned metadata certificate, key rollover, tampered, unsigned
and expired documents never replacing the last good copy, and expiry of that copy."""

from __future__ import annotations

import json
import sys
import tomllib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from lxml import etree

if str(Path(__file__).parent) not in sys.path:  # tests/engine is not an importable package
    sys.path.insert(0, str(Path(__file__).parent))
from http_fixtures import FakeIdp, fake_idp
from saml_fixtures import (
    IDP_CERT,
    IDP_KEY,
    LATER,
    OTHER_CERT,
    OTHER_KEY,
    connection,
    entity,
    make_token,
)

from engine import remote
from engine.config import ConfigError, Connection, load_config
from engine.saml import mint, validate_saml
from engine.saml.fetched import _duration_seconds, freshness
from engine.saml.xml import DS
from engine.token import TokenRejected

ROLLOVER_KEY = IDP_CERT.parent / "idp-rollover.key"
ROLLOVER_CERT = IDP_CERT.parent / "idp-rollover.crt"
PATH = "/metadata.xml"


def signed(xml: str, key: Path = OTHER_KEY, cert: Path = OTHER_CERT) -> bytes:
    """The metadata signed on its root by the federation's key (OTHER_KEY by default)."""
    root = etree.fromstring(
        xml.replace("<md:EntityDescriptor ", '<md:EntityDescriptor ID="md1" ', 1)
    )
    mint.sign(root, key.read_bytes(), cert.read_bytes())
    return etree.tostring(root)


def valid_until(xml: str, moment: str) -> str:
    return xml.replace("entityID=", f'validUntil="{moment}" entityID=', 1)


@pytest.fixture
def idp() -> Any:
    remote.forget()
    with fake_idp() as server:
        yield server
    remote.forget()


def fetching(idp: FakeIdp, tmp_path: Path, **more: Any) -> Connection:
    values: dict[str, Any] = {
        "certificates": (),
        "metadata_url": idp.url(PATH),
        "metadata_certificate": OTHER_CERT,
        "cache_dir": tmp_path / "cache",
        "refresh_min": 600.0,
    }
    values.update(more)
    return connection(**values)


def refused(conn: Connection, **token: Any) -> TokenRejected:
    with pytest.raises(TokenRejected) as info:
        validate_saml(make_token(**token), conn, now=LATER)
    return info.value


def stale(conn: Connection) -> remote.Remote:
    from engine.saml.fetched import metadata_source

    source = metadata_source(conn)
    assert source.copy is not None
    source.copy.fresh_until = 0.0
    source.last_attempt -= 86_400
    return source


def test_signed_metadata_is_fetched_once_and_trusted(idp: FakeIdp, tmp_path: Path) -> None:
    idp.documents[PATH] = signed(entity())
    conn = fetching(idp, tmp_path)
    for _ in range(3):
        assert validate_saml(make_token(), conn, now=LATER).name_id == "jdoe@example.com"
    assert idp.hits[PATH] == 1


def test_key_rollover_trusts_every_listed_certificate_then_drops_the_old(
    idp: FakeIdp, tmp_path: Path
) -> None:
    idp.documents[PATH] = signed(entity(certs=(IDP_CERT, ROLLOVER_CERT)))
    conn = fetching(idp, tmp_path)
    assert validate_saml(make_token(), conn, now=LATER)
    assert validate_saml(make_token(key=ROLLOVER_KEY, cert=ROLLOVER_CERT), conn, now=LATER)
    idp.documents[PATH] = signed(entity(certs=(ROLLOVER_CERT,)))  # the old key retires
    stale(conn)
    assert validate_saml(make_token(key=ROLLOVER_KEY, cert=ROLLOVER_CERT), conn, now=LATER)
    assert refused(conn).reason in ("untrusted-signer", "bad-signature")


def _tampered() -> bytes:
    """Signed metadata whose IdP certificate was swapped for another after signing (an
    attacker's key); the signature's own KeyInfo certificate comes first, then the IdP's."""
    root = etree.fromstring(signed(entity(certs=(IDP_CERT,))))
    idp_cert = list(root.iter(f"{DS}X509Certificate"))[-1]
    idp_cert.text = "".join(OTHER_CERT.read_text().splitlines()[1:-1])
    return etree.tostring(root)


@pytest.mark.parametrize(
    ("document", "why"),
    [
        (lambda: _tampered(), "does not verify"),
        (lambda: entity().encode(), "expected one Signature on its root element"),
        (lambda: signed(entity(), IDP_KEY, IDP_CERT), "not configured"),
        (
            lambda: signed(valid_until(entity(), "2001-01-01T00:00:00Z")),
            "expired at 2001-01-01T00:00:00Z",
        ),
    ],
    ids=["tampered", "unsigned", "signed-by-another-key", "expired"],
)
def test_a_document_that_fails_its_checks_is_never_trusted(
    idp: FakeIdp, tmp_path: Path, document: Any, why: str
) -> None:
    idp.documents[PATH] = document()
    problem = refused(fetching(idp, tmp_path))
    assert problem.reason == "untrusted-signer"
    assert "cannot fetch the connection's metadata" in problem.message and why in problem.message


def test_a_bad_document_leaves_the_last_good_copy_serving(idp: FakeIdp, tmp_path: Path) -> None:
    idp.documents[PATH] = signed(entity())
    conn = fetching(idp, tmp_path)
    assert validate_saml(make_token(), conn, now=LATER)
    idp.documents[PATH] = _tampered()
    source = stale(conn)
    assert validate_saml(make_token(), conn, now=LATER)  # the good copy still serves
    assert idp.hits[PATH] == 2 and "does not verify" in (source.last_error or "")
    # ...and it is the one kept in the workspace for the next process.
    remote.forget()
    idp.down = True
    assert validate_saml(make_token(), conn, now=LATER)


def test_unsigned_metadata_when_metadata_signed_is_false(idp: FakeIdp, tmp_path: Path) -> None:
    idp.documents[PATH] = entity().encode()
    conn = fetching(idp, tmp_path, metadata_certificate=None, metadata_signed=False)
    assert validate_saml(make_token(), conn, now=LATER).name_id == "jdoe@example.com"


def test_the_last_good_copy_ends_at_its_own_valid_until(idp: FakeIdp, tmp_path: Path) -> None:
    idp.documents[PATH] = signed(valid_until(entity(), "2099-01-01T00:00:00Z"))
    conn = fetching(idp, tmp_path)
    assert validate_saml(make_token(), conn, now=LATER)
    idp.down = True
    stale(conn)
    with pytest.raises(TokenRejected) as info:
        validate_saml(make_token(), conn, now=datetime(2099, 1, 1, tzinfo=UTC))
    message = info.value.message
    assert info.value.reason == "untrusted-signer"
    assert f"the metadata from {idp.url(PATH)} expired at 2099-01-01T00:00:00Z" in message
    assert "HTTP 503" in message


def test_a_copy_serves_for_its_cache_duration_within_the_bounds(tmp_path: Path) -> None:
    conn = connection(
        certificates=(),
        metadata_url="https://idp.example/md",
        metadata_certificate=OTHER_CERT,
        refresh_min=600.0,
        refresh_max=86_400.0,
    )
    six_hours = entity().replace("entityID=", 'cacheDuration="PT6H" entityID=', 1).encode()
    assert freshness(six_hours, conn) == 6 * 3600
    a_minute = entity().replace("entityID=", 'cacheDuration="PT1M" entityID=', 1).encode()
    assert freshness(a_minute, conn) == 600  # refresh_min
    assert freshness(entity().encode(), conn) == 86_400  # refresh_max without either
    assert _duration_seconds("P1DT12H") == 36 * 3600 and _duration_seconds("soon") is None


BASE = """
[store]
path = "jitprov.db"

[connections.idp]
protocol = "saml2"
issuer = "https://idp.example.org/saml"
audience = "https://sp.example.com/saml"
rules = "idp.rules"
metadata_url = "https://idp.example.org/metadata"
"""


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ("", "metadata_certificate: missing: metadata from a URL is trusted only when"),
        ('metadata_certificate = "md.crt"\nmetadata_signed = false\n', "false, but"),
        ('metadata_certificate = "md.crt"\nrefresh_min = 10\n', "expected seconds from 60"),
        (
            'metadata_certificate = "md.crt"\nrefresh_min = 7200\nrefresh_max = 3600\n',
            "is more than refresh_max",
        ),
    ],
)
def test_metadata_url_settings_are_checked(tmp_path: Path, extra: str, message: str) -> None:
    (tmp_path / "idp.rules").write_text("username = subject\n")
    (tmp_path / "md.crt").write_text(OTHER_CERT.read_text())
    (tmp_path / "jitprov.toml").write_text(BASE + extra)
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "jitprov.toml")
    assert message in str(info.value)


def test_unsigned_metadata_must_be_written_out(tmp_path: Path) -> None:
    (tmp_path / "idp.rules").write_text("username = subject\n")
    (tmp_path / "jitprov.toml").write_text(BASE + "metadata_signed = false\n")
    conn = load_config(tmp_path / "jitprov.toml").connection("idp")
    assert conn.metadata_signed is False and conn.metadata_url is not None


def test_connection_refresh_fetches_now_and_reports(
    idp: FakeIdp, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tui.cli import run

    (tmp_path / "idp.rules").write_text("username = subject\n")
    (tmp_path / "md.crt").write_text(OTHER_CERT.read_text())
    text = BASE.replace("https://idp.example.org/metadata", idp.url(PATH))
    config = tmp_path / "jitprov.toml"
    config.write_text(text + 'metadata_certificate = "md.crt"\n')
    idp.documents[PATH] = signed(entity(certs=(IDP_CERT, ROLLOVER_CERT)))
    argv = ["connection", "refresh", "--config", str(config)]
    assert run(argv) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"idp: ok: {idp.url(PATH)}: 2 signing certificate(s)")
    assert run(argv) == 0 and idp.hits[PATH] == 2  # fetched again, fresh or not
    capsys.readouterr()

    idp.documents[PATH] = _tampered()
    assert run([*argv, "--json"]) == 1
    [report] = json.loads(capsys.readouterr().out)
    assert report["ok"] is False and "does not verify" in report["detail"]
    assert "kept the last good copy" in report["detail"]

    assert run(["connection", "refresh", "nope", "--config", str(config)]) == 1
    assert "unknown connection 'nope'" in capsys.readouterr().err


def test_import_metadata_with_a_url_fetches_instead_of_copying(
    idp: FakeIdp, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tui.cli import run

    config = tmp_path / "jitprov.toml"
    config.write_text('[store]\npath = "jitprov.db"\n')
    (tmp_path / "md.crt").write_text(OTHER_CERT.read_text())
    (tmp_path / "downloaded.xml").write_text(entity())
    idp.documents[PATH] = signed(entity())
    argv = ["connection", "import-metadata", str(tmp_path / "downloaded.xml"), "--id", "md"]
    argv += ["--audience", "https://sp.example.com/saml", "--config", str(config)]
    assert run([*argv, "--metadata-url", idp.url(PATH)]) == 1
    assert "--metadata-certificate PATH" in capsys.readouterr().err
    argv += ["--metadata-url", idp.url(PATH), "--metadata-certificate", "md.crt"]
    assert run(argv) == 0
    imported = tomllib.loads(config.read_text())["connections"]["md"]
    assert imported["metadata_url"] == idp.url(PATH)
    assert imported["metadata_certificate"] == "md.crt" and "certificate" not in imported
    assert not (tmp_path / "certs").exists()
    conn = load_config(config).connection("md")
    token = make_token(conn=connection(audience=conn.audience, recipient=None))
    assert validate_saml(token, conn, now=LATER).name_id == "jdoe@example.com"


def test_connection_status_shows_sources_expiry_and_fetches(
    idp: FakeIdp, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tui.cli import run

    expired = IDP_CERT.parent / "idp-expired.crt"
    (tmp_path / "old.crt").write_text(expired.read_text())
    (tmp_path / "md.crt").write_text(OTHER_CERT.read_text())
    (tmp_path / "idp.rules").write_text("username = subject\n")
    config = tmp_path / "jitprov.toml"
    text = BASE.replace("https://idp.example.org/metadata", idp.url(PATH))
    config.write_text(text + 'metadata_certificate = "md.crt"\ncertificate = "old.crt"\n')
    assert run(["connection", "status", "--json", "--config", str(config)]) == 0
    [status] = json.loads(capsys.readouterr().out)
    assert status["connection"] == "idp"
    assert status["sources"][0].startswith("certificate old.crt (until ")
    assert status["sources"][1] == f"{idp.url(PATH)} (not fetched yet)"
    assert any(w.startswith("certificate old.crt expired at") for w in status["warnings"])

    idp.documents[PATH] = signed(valid_until(entity(), _soon()))
    assert run(["connection", "refresh", "--config", str(config)]) == 0
    capsys.readouterr()
    assert run(["connection", "status", "idp", "--config", str(config)]) == 0
    out = capsys.readouterr().out
    assert f"  {idp.url(PATH)} (last fetched " in out
    assert f"warning: metadata from {idp.url(PATH)} expires at" in out


def _soon() -> str:
    from datetime import timedelta

    return (datetime.now(UTC) + timedelta(days=10)).strftime("%Y-%m-%dT%H:%M:%SZ")


def test_check_of_the_workspace_warns_about_its_keys_too(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tui.cli import run

    (tmp_path / "old.crt").write_text((IDP_CERT.parent / "idp-expired.crt").read_text())
    (tmp_path / "idp.rules").write_text("username = subject\n")
    config = tmp_path / "jitprov.toml"
    config.write_text(
        BASE.replace('metadata_url = "https://idp.example.org/metadata"\n', "")
        + 'certificate = "old.crt"\n'
    )
    assert run(["check", "--config", str(config)]) == 0  # warnings never fail a check
    captured = capsys.readouterr()
    assert "jitprov: warning: connection idp: certificate old.crt expired at" in captured.err
    assert captured.out == "no problems found\n"  # the rules' report is unchanged
    # A rules file checked on its own (an editor on save), and --json, stay about rules.
    assert run(["check", "--config", str(config), str(tmp_path / "idp.rules")]) == 0
    assert "certificate" not in capsys.readouterr().err
    assert run(["check", "--json", "--config", str(config)]) == 0
    assert json.loads(capsys.readouterr().out) == []
