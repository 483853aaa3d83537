"""`jitprov init`: a workspace that checks clean, provisions its signed sample, never
overwrites an existing one."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from engine.config import load_config
from engine.workspace import WorkspaceExists, init_workspace
from tui.cli import run


def test_init_creates_a_workspace_that_checks_clean(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(["init", str(tmp_path / "ws")]) == 0
    out = capsys.readouterr().out
    assert "created" in out and "jitprov.toml" in out
    config = load_config(tmp_path / "ws" / "jitprov.toml")
    assert list(config.connections) == ["example"]
    assert run(["--config", str(tmp_path / "ws"), "check", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == []


def test_the_minted_sample_goes_through_full_validation(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    minted = datetime(2025, 3, 1, 9, 30, tzinfo=UTC)
    init_workspace(tmp_path, now=minted)
    config = ["--config", str(tmp_path)]
    token = str(tmp_path / "samples" / "alice.xml")
    code = run([*config, "apply", "-c", "example", token, "--at", "2025-03-01T09:31:00Z", "--json"])
    result = json.loads(capsys.readouterr().out)
    assert (code, result["outcome"]) == (0, "created")
    assert result["user"]["username"] == "alice"
    assert result["user"]["groups"] == ["everyone", "readers", "staff"]
    late = run([*config, "apply", "-c", "example", token, "--at", "2025-03-01T10:31:00Z", "--json"])
    assert (late, json.loads(capsys.readouterr().out)["reason"]) == (3, "expired")


def test_init_never_overwrites(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    init_workspace(tmp_path)
    before = (tmp_path / "jitprov.toml").read_text()
    with pytest.raises(WorkspaceExists):
        init_workspace(tmp_path)
    assert run(["init", str(tmp_path)]) == 1
    assert "already holds" in capsys.readouterr().err
    assert (tmp_path / "jitprov.toml").read_text() == before


def test_init_with_sp_keys_gives_the_example_connection_a_signing_key_pair(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "ws"
    assert run(["init", str(target), "--sp-keys", "--json"]) == 0
    created = json.loads(capsys.readouterr().out)["created"]
    assert any(p.endswith("certs/sp.key") for p in created)
    assert any(p.endswith("certs/sp.crt") for p in created)
    assert (target / "certs" / "sp.key").stat().st_mode & 0o777 == 0o600
    example = load_config(target / "jitprov.toml").connection("example")
    assert example.sp_key == (target / "certs" / "sp.key").resolve()
    assert example.sp_certificate == (target / "certs" / "sp.crt").resolve()
    assert run(["check", "--config", str(target / "jitprov.toml")]) == 0
    capsys.readouterr()
    argv = ["connection", "sp-metadata", "example", "--config", str(target / "jitprov.toml")]
    assert run(argv) == 0
    assert 'AuthnRequestsSigned="true"' in capsys.readouterr().out
    assert run(["test", "--config", str(target / "jitprov.toml")]) == 0  # its cases still pass
