"""The command-line framework: --config anywhere, --version, errors without tracebacks."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tui.cli import run

CONFIG = """
[connections.okta]
protocol = "saml2"
issuer = "http://idp.example.com/"
certificate = "idp.pem"
audience = "https://sp.example.com/saml"
rules = "okta.rules"
"""

DEMO = Path(__file__).resolve().parents[2] / "examples" / "demo"


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    shutil.copyfile(DEMO / "certs" / "idp-test.crt", tmp_path / "idp.pem")  # a real one
    (tmp_path / "okta.rules").write_text('username = lower(subject)\ngroups += "everyone"\n')
    (tmp_path / "jitprov.toml").write_text(CONFIG)
    return tmp_path


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        run(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.startswith("jitprov ")


@pytest.mark.parametrize("before", [True, False])
def test_config_option_before_or_after_the_command(
    workspace: Path, before: bool, capsys: pytest.CaptureFixture[str]
) -> None:
    config = ["--config", str(workspace / "jitprov.toml")]
    argv = [*config, "check", "--json"] if before else ["check", "--json", *config]
    assert run(argv) == 0
    assert json.loads(capsys.readouterr().out) == []


def test_config_found_in_a_parent_folder(
    workspace: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    nested = workspace / "sub"
    nested.mkdir()
    monkeypatch.chdir(nested)
    assert run(["check"]) == 0
    assert "no problems found" in capsys.readouterr().out


def test_invalid_config_is_one_clear_line(
    workspace: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (workspace / "jitprov.toml").write_text(CONFIG + 'mode = "create"\n')
    assert run(["--config", str(workspace), "check"]) == 1
    err = capsys.readouterr().err
    assert err == (
        "jitprov: error: jitprov.toml: connections.okta.mode: expected one of "
        'create-and-update, create-only, update-only, got "create"\n'
    )


def test_missing_config_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    assert run(["check"]) == 1
    assert "no jitprov.toml found" in capsys.readouterr().err


def test_check_reports_diagnostics_and_exits_1_on_errors(
    workspace: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (workspace / "okta.rules").write_text(
        'username = lower(subject)\ndeny "x" when @department == "Sales"\n'
    )
    assert run(["--config", str(workspace), "check", "--json"]) == 1
    (diagnostic,) = json.loads(capsys.readouterr().out)
    assert diagnostic["code"] == "E012"
    assert (diagnostic["line"], diagnostic["column"]) == (2, 15)
    assert diagnostic["severity"] == "error"
    assert diagnostic["path"].endswith("okta.rules")


def test_check_warnings_alone_exit_0(workspace: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (workspace / "okta.rules").write_text("let unused = 1\nusername = subject\n")
    assert run(["--config", str(workspace), "check"]) == 0
    out = capsys.readouterr().out
    assert "warning[W002]" in out
    assert "0 errors, 1 warning" in out


def test_check_of_a_missing_file(workspace: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["--config", str(workspace), "check", "nope.rules"]) == 1
    assert capsys.readouterr().err == "jitprov: error: nope.rules: no such file\n"


def test_fmt_check_and_rewrite(
    workspace: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(workspace)
    (workspace / "messy.rules").write_text("username=lower( subject )\n")
    assert run(["fmt", "--check", "messy.rules"]) == 1
    assert (workspace / "messy.rules").read_text() == "username=lower( subject )\n"
    assert run(["fmt", "messy.rules"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "messy.rules"
    assert (workspace / "messy.rules").read_text() == "username = lower(subject)\n"
    assert run(["fmt", "--check", "messy.rules"]) == 0


def test_fmt_leaves_a_file_with_syntax_errors_alone(
    workspace: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(workspace)
    (workspace / "broken.rules").write_text("username = lower(subject\n")
    assert run(["fmt", "broken.rules"]) == 1
    assert (workspace / "broken.rules").read_text() == "username = lower(subject\n"
    assert "broken.rules: not formatted (syntax errors)" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv",
    [["apply"], ["no-such-command"], ["fmt", "--bogus"], ["apply", "-c", "okta", "--at"]],
)
def test_usage_errors_exit_1_not_argparse_2(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """Exit code 2 means "denied" (product.md §3): a usage error must never look like one."""
    with pytest.raises(SystemExit) as info:
        run(argv)
    assert info.value.code == 1
    assert "error:" in capsys.readouterr().err
