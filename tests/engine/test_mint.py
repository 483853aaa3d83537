"""`mint`: round trips through `validate_saml`, test IdP keys, and the `jitprov mint` command."""

from __future__ import annotations

import sys
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from engine.config import load_config
from engine.saml import validate_saml
from engine.saml.keys import generate_test_idp
from engine.saml.mint import MintError, mint
from engine.sample import parse_sample_text
from engine.token import TokenRejected

if str(Path(__file__).parent) not in sys.path:  # tests/engine is not an importable package
    sys.path.insert(0, str(Path(__file__).parent))
from saml_fixtures import (
    AT,
    ATTRIBUTES,
    IDP_CERT,
    IDP_KEY,
    LATER,
    SAMPLE,
    SP_CERT,
    SP_KEY,
    connection,
)


@pytest.mark.parametrize("encoding", ["xml", "base64", "deflate"])
@pytest.mark.parametrize("signing", ["assertion", "response", "both"])
@pytest.mark.parametrize("encrypted", [None, "aes256-cbc", "aes256-gcm"])
def test_round_trip(encoding: str, signing: str, encrypted: str | None) -> None:
    raw = mint(
        SAMPLE,
        connection(),
        key_pem=IDP_KEY.read_bytes(),
        cert_pem=IDP_CERT.read_bytes(),
        signing=signing,
        encoding=encoding,
        at=AT,  # type: ignore[arg-type]
        encrypt_for=SP_CERT.read_bytes() if encrypted else None,
        cipher=encrypted or "aes256-cbc",  # type: ignore[arg-type]
    )
    token = validate_saml(raw, connection(require_signed=signing), now=LATER)
    assert token.attributes == ATTRIBUTES
    assert token.name_id == SAMPLE.subject
    assert token.name_id_format == SAMPLE.subject_format
    assert token.authn_context == SAMPLE.authn_context
    assert token.token_id == "_token-1"


def test_valid_for_five_minutes_from_at() -> None:
    raw = mint(
        SAMPLE, connection(), key_pem=IDP_KEY.read_bytes(), cert_pem=IDP_CERT.read_bytes(), at=AT
    )
    conn = connection(clock_skew=0)
    validate_saml(raw, conn, now=AT + timedelta(minutes=5) - timedelta(seconds=1))
    with pytest.raises(Exception, match="NotOnOrAfter"):
        validate_saml(raw, conn, now=AT + timedelta(minutes=5))


def test_generate_test_idp_signs_tokens(tmp_path: Path) -> None:
    key, cert = generate_test_idp(tmp_path / "certs", "jitprov test IdP")
    assert (key.name, cert.name) == ("idp-test.key", "idp-test.crt")
    assert key.stat().st_mode & 0o077 == 0
    raw = mint(SAMPLE, connection(), key_pem=key.read_bytes(), cert_pem=cert.read_bytes())
    token = validate_saml(
        raw, connection(certificates=(cert,), check_cert_dates=True), now=datetime.now(UTC)
    )
    assert token.name_id == SAMPLE.subject


def test_unusable_key_is_a_mint_error() -> None:
    with pytest.raises(MintError):
        mint(SAMPLE, connection(), key_pem=b"not a key", cert_pem=IDP_CERT.read_bytes())


SAMPLE_TOML = """subject = "jdoe@example.com"
token_id = "sample-1"
[attributes]
email = "jdoe@example.com"
groups = ["a", "b"]
"""


def _workspace(tmp_path: Path, connections: int = 1) -> Path:
    generate_test_idp(tmp_path / "certs", "jitprov test IdP")
    (tmp_path / "r.rules").write_text("username = subject\n")
    text = '[store]\npath = "jitprov.db"\n'
    for n in range(connections):
        text += (
            f'\n[connections.c{n}]\nprotocol = "saml2"\nissuer = "urn:idp:{n}"\n'
            'certificate = "certs/idp-test.crt"\naudience = "urn:sp"\n'
            'recipient = "https://sp/acs"\nrules = "r.rules"\n'
        )
    (tmp_path / "jitprov.toml").write_text(text)
    (tmp_path / "s.toml").write_text(SAMPLE_TOML)
    return tmp_path


@pytest.mark.parametrize("encoding", ["xml", "base64", "deflate"])
def test_cli_mint_round_trip(
    tmp_path: Path, encoding: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from tui.cli import run

    ws = _workspace(tmp_path)
    config = str(ws / "jitprov.toml")
    code = run(
        [
            "mint",
            str(ws / "s.toml"),
            "--config",
            config,
            "--encoding",
            encoding,
            "--at",
            "2024-05-01T12:00:00Z",
            "--sign",
            "both",
        ]
    )
    assert code == 0
    raw = capsys.readouterr().out.strip().encode()
    conn = load_config(config).connection("c0")
    token = validate_saml(raw, conn, now=AT)
    assert token.issuer == "urn:idp:0"
    assert token.attributes == {"email": ["jdoe@example.com"], "groups": ["a", "b"]}
    assert token.token_id == "sample-1"


def test_cli_mint_needs_c_with_several_connections(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tui.cli import run

    ws = _workspace(tmp_path, connections=2)
    assert run(["mint", str(ws / "s.toml"), "--config", str(ws / "jitprov.toml")]) == 1
    assert "-c CONN" in capsys.readouterr().err
    assert run(["mint", str(ws / "s.toml"), "-c", "c1", "--config", str(ws / "jitprov.toml")]) == 0


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--at", "yesterday"], "ISO 8601"),
        (["--key", "x.key"], "go together"),
        (["--encrypt-for", "missing.crt"], "cannot read"),
    ],
)
def test_cli_mint_usage_errors(
    tmp_path: Path, argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from tui.cli import run

    ws = _workspace(tmp_path)
    code = run(["mint", str(ws / "s.toml"), "--config", str(ws / "jitprov.toml"), *argv])
    assert code == 1
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_sample_parse_is_shared() -> None:
    assert parse_sample_text(SAMPLE_TOML).token_id == "sample-1"


@pytest.mark.parametrize("cipher", ["aes256-cbc", "aes256-gcm"])
def test_cli_mint_encrypted(
    tmp_path: Path, cipher: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from tui.cli import run

    ws = _workspace(tmp_path)
    config = str(ws / "jitprov.toml")
    argv = [
        "mint",
        str(ws / "s.toml"),
        "--config",
        config,
        "--encrypt-for",
        str(SP_CERT),
        "--cipher",
        cipher,
        "--at",
        "2024-05-01T12:00:00Z",
    ]
    assert run(argv) == 0
    raw = capsys.readouterr().out.strip().encode()
    assert b"EncryptedAssertion" in raw
    conn = load_config(config).connection("c0")
    with pytest.raises(TokenRejected) as caught:
        validate_saml(raw, conn, now=AT)
    assert caught.value.reason == "decryption-failed"  # the connection has no SP key
    token = validate_saml(raw, replace(conn, decryption_key=SP_KEY), now=AT)
    assert token.attributes["groups"] == ["a", "b"]
