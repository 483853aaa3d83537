"""A rejected token's result names the subject it claims when it could be read
(product.md §3: `subject` is null only when the token could not be read)."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest

from engine.oidc import validate_id_token
from engine.token import TokenRejected
from tests.engine import oidc_fixtures as of
from tui.cli import run

DEMO = Path(__file__).resolve().parents[2] / "examples" / "demo"


@pytest.fixture
def demo(tmp_path: Path) -> Path:
    shutil.copytree(DEMO, tmp_path / "demo", ignore=shutil.ignore_patterns("*.db*"))
    return tmp_path / "demo"


def _apply(demo: Path, capsys: pytest.CaptureFixture[str], *argv: str) -> dict[str, object]:
    run(["--config", str(demo), "apply", "-c", "okta", "--json", *argv])
    result: dict[str, object] = json.loads(capsys.readouterr().out)
    return result


def test_expired_saml_response_names_its_nameid(
    demo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    token = str(demo / "samples" / "okta-engineer.xml")
    result = _apply(demo, capsys, token, "--at", "2024-05-01T13:00:00Z")
    assert (result["reason"], result["subject"]) == ("expired", "Ada.Lovelace@example.com")
    run(["--config", str(demo), "audit", "--json"])
    (row,) = json.loads(capsys.readouterr().out)
    assert (row["outcome"], row["subject"]) == ("rejected", "Ada.Lovelace@example.com")


def test_unreadable_token_has_no_subject(
    demo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    garbage = tmp_path / "garbage.xml"
    garbage.write_text("<not-saml/>")
    result = _apply(demo, capsys, str(garbage))
    assert (result["reason"], result["subject"]) == ("malformed", None)


def test_oidc_wrong_audience_names_its_sub(tmp_path: Path) -> None:
    key = of.rsa_key()
    connection = of.connection(of.write_jwks(tmp_path, of.public_jwk(key)))
    token = of.sign(of.claims(aud="someone-else"), key)
    now = datetime.fromtimestamp(of.NOW_TS, UTC)
    with pytest.raises(TokenRejected) as info:
        validate_id_token(token, connection, now=now)
    assert (info.value.reason, info.value.subject) == ("wrong-audience", "user-1")
