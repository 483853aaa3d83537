"""SAML end to end through the real commands: import-metadata → mint → apply, replay."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from engine.saml.keys import generate_test_idp

if str(Path(__file__).parent) not in sys.path:  # tests/engine is not an importable package
    sys.path.insert(0, str(Path(__file__).parent))
from saml_fixtures import entity

SAMPLE = """subject = "jdoe@example.com"
token_id = "_once"
[attributes]
email = "jdoe@example.com"
"""


def _cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    from tui.cli import run

    code = run(argv)
    return code, capsys.readouterr().out


def test_import_mint_apply_then_replay(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _, cert = generate_test_idp(tmp_path / "certs", "jitprov test IdP")
    (tmp_path / "jitprov.toml").write_text('[store]\npath = "jitprov.db"\n')
    metadata = tmp_path / "idp.xml"
    metadata.write_text(entity("urn:idp:test", certs=(cert,)))
    config = ["--config", str(tmp_path / "jitprov.toml")]
    code, out = _cli(
        [
            "connection",
            "import-metadata",
            str(metadata),
            "--id",
            "idp",
            "--audience",
            "urn:sp",
            *config,
        ],
        capsys,
    )
    assert code == 0 and "added [connections.idp]" in out
    (tmp_path / "s.toml").write_text(SAMPLE)
    code, token = _cli(
        [
            "mint",
            str(tmp_path / "s.toml"),
            "--encoding",
            "base64",
            "--at",
            "2024-05-01T12:00:00Z",
            *config,
        ],
        capsys,
    )
    assert code == 0
    (tmp_path / "token.b64").write_text(token)
    apply = [
        "apply",
        "-c",
        "idp",
        "--at",
        "2024-05-01T12:01:00Z",
        "--json",
        str(tmp_path / "token.b64"),
        *config,
    ]
    code, out = _cli(apply, capsys)
    result = json.loads(out)
    assert (code, result["outcome"], result["subject"]) == (0, "created", "jdoe@example.com")
    code, out = _cli(apply, capsys)
    result = json.loads(out)
    assert (code, result["outcome"], result["reason"]) == (3, "rejected", "replay")


def test_apply_reports_the_saml_reason(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    generate_test_idp(tmp_path / "certs", "jitprov test IdP")
    (tmp_path / "r.rules").write_text("username = subject\n")
    (tmp_path / "jitprov.toml").write_text(
        '[store]\npath = "jitprov.db"\n\n[connections.idp]\nprotocol = "saml2"\n'
        'issuer = "urn:idp"\ncertificate = "certs/idp-test.crt"\naudience = "urn:sp"\n'
        'rules = "r.rules"\nclock_skew = 0\n'
    )
    (tmp_path / "s.toml").write_text(SAMPLE)
    config = ["--config", str(tmp_path / "jitprov.toml")]
    code, token = _cli(
        ["mint", str(tmp_path / "s.toml"), "--at", "2024-05-01T12:00:00Z", *config], capsys
    )
    (tmp_path / "token.xml").write_text(token)
    code, out = _cli(
        [
            "apply",
            "-c",
            "idp",
            "--at",
            "2024-05-01T12:05:00Z",
            "--json",
            str(tmp_path / "token.xml"),
            *config,
        ],
        capsys,
    )
    result = json.loads(out)
    assert (code, result["reason"]) == (3, "expired")
    assert "NotOnOrAfter" in result["message"]
