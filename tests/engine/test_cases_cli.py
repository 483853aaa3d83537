"""`jitprov test` as a user runs it (in-process through `tui.cli.run`): output lines and
summary, exit codes, `--json`, `--junit`, `--update`, `-k`, and the demo's cases."""

from __future__ import annotations

import json
import shutil
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

if str(Path(__file__).parent) not in sys.path:  # tests/engine is not an importable package
    sys.path.insert(0, str(Path(__file__).parent))
import provision_fixtures  # noqa: F401  (puts the project's `rules` package first)

import tui.cli
from tui.cli import run

DATA = Path(__file__).parent / "data" / "cases"
SAML_DATA = Path(__file__).parent / "data" / "saml"
DEMO = Path(__file__).resolve().parents[2] / "examples" / "demo"


@pytest.fixture(autouse=True)
def only_test_command(monkeypatch: pytest.MonkeyPatch) -> None:
    """Another command's module being mid-change must not break these tests."""
    monkeypatch.setattr(tui.cli, "COMMANDS", ("test",))


@pytest.fixture
def ws(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "cases"
    shutil.copytree(DATA, root)
    shutil.copytree(SAML_DATA, tmp_path / "saml")
    monkeypatch.chdir(root)
    return root


def jitprov(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = run(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def break_case(ws: Path) -> Path:
    """ada-created with a wrong department and a wrong group list (comments kept)."""
    path = ws / "tests" / "ada-created.case.toml"
    text = path.read_text(encoding="utf-8")
    text = text.replace('department = "engineering"', 'department = "sales"  # moved?')
    path.write_text(text.replace('["eng", "everyone"]', '["ops"]'), encoding="utf-8")
    return path


def test_all_pass_exits_0_with_one_line_per_case(
    ws: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = jitprov(capsys, "test")
    assert code == 0, out + err
    assert out.splitlines() == [
        "PASS ada-created",
        "PASS ada-updated",
        "PASS contractor-denied",
        "PASS legacy-update-only",
        "PASS portal-create-only",
        "5 passed, 0 failed",
    ]
    assert not (ws / "jitprov.db").exists()


def test_a_failure_prints_the_diff_and_exits_1(
    ws: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    break_case(ws)
    code, out, _ = jitprov(capsys, "test")
    assert code == 1
    lines = out.splitlines()
    assert lines[0:2] == ["FAIL ada-created", "  in tests/ada-created.case.toml"]
    assert lines[2:6] == [
        "  user.department:",
        '    - expected: "sales"',
        '    + actual:   "engineering"',
        "      ← set by okta.rules:5 (department =)",
    ]
    assert '      missing "ops"; unexpected "eng", "everyone"' in lines
    assert lines[-1] == "4 passed, 1 failed"


def test_a_broken_file_is_an_error_in_the_summary(
    ws: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (ws / "tests" / "zz.case.toml").write_text('connection = "okta"\n[given.user]\nhat = 1\n')
    code, out, _ = jitprov(capsys, "test")
    assert code == 1
    assert "ERROR zz\n" in out
    assert "  tests/zz.case.toml: given.user.hat: unknown field" in out
    assert out.splitlines()[-1] == "5 passed, 0 failed, 1 error"


def test_json_shape(ws: Path, capsys: pytest.CaptureFixture[str]) -> None:
    break_case(ws)
    (ws / "tests" / "zz.case.toml").write_text("connection = 1\n")
    code, out, _ = jitprov(capsys, "test", "--json")
    assert code == 1
    data = json.loads(out)
    assert list(data) == ["passed", "failed", "errors", "cases"]
    assert (data["passed"], data["failed"], data["errors"]) == (4, 1, 1)
    for case in data["cases"]:
        assert list(case) == ["name", "path", "status", "problems"]
        assert case["status"] in ("passed", "failed", "error")
        assert (case["status"] == "passed") == (case["problems"] == [])
    failed = data["cases"][0]
    assert failed["path"] == "tests/ada-created.case.toml"
    assert failed["problems"][0] == {
        "key": "user.department",
        "message": 'user.department: expected "sales", got "engineering"',
        "expected": "sales",
        "actual": "engineering",
        "trace": "set by okta.rules:5 (department =)",
    }
    assert data["cases"][-1]["problems"][0]["key"] == "connection"


def test_junit_is_xml_with_the_right_counts(ws: Path, capsys: pytest.CaptureFixture[str]) -> None:
    break_case(ws)
    (ws / "tests" / "zz.case.toml").write_text("connection = \x01\n")  # bad TOML
    code, _, _ = jitprov(capsys, "test", "--junit", "report.xml")
    assert code == 1
    root = ET.parse(ws / "report.xml").getroot()
    [suite] = root.findall("testsuite")
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors")) == ("6", "1", "1")
    cases = suite.findall("testcase")
    assert [c.get("name") for c in cases][:2] == ["ada-created", "ada-updated"]
    failure = cases[0].find("failure")
    assert failure is not None and '- expected: "sales"' in (failure.text or "")
    error = cases[-1].find("error")
    assert error is not None and "invalid TOML" in (error.get("message") or "")
    assert all(c.find("failure") is None and c.find("error") is None for c in cases[1:5])


def test_update_round_trip_keeps_comments(ws: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = break_case(ws)
    code, out, _ = jitprov(capsys, "test", "--update")
    assert code == 0  # the only failure was rewritten
    assert "  updated tests/ada-created.case.toml" in out
    text = path.read_text(encoding="utf-8")
    assert "# A first sign-in creates the account." in text
    assert 'outcome = "created"   # the outcome' in text
    assert "# the account afterwards" in text
    assert 'department = "engineering"  # moved?' in text
    assert 'groups = ["eng", "everyone"]' in text
    code, out, _ = jitprov(capsys, "test")
    assert code == 0 and out.splitlines()[-1] == "5 passed, 0 failed"


def test_update_records_outcome_reason_message_and_assigned_fields(
    ws: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rejected = ws / "tests" / "r.case.toml"
    rejected.write_text(
        'connection = "okta"\ntoken = "../ada.toml"\n\n[expect]\noutcome = "created"\n'
        'message_has = "zzz"  # keep me\n[expect.user]\nusername = "ada"\n'
    )
    fresh = ws / "tests" / "fresh.case.toml"
    fresh.write_text('# new\nconnection = "okta"\ntoken = "../ada.toml"\nunsigned = true\n')
    code, _, _ = jitprov(capsys, "test", "--update", "-k", "r")
    assert code == 0
    text = rejected.read_text()
    assert 'outcome = "rejected"' in text and 'reason = "unsigned"' in text
    assert 'message_has = "samples are accepted only with' in text
    assert "[expect.user]" not in text  # no account after a rejection
    created = fresh.read_text()
    assert created.startswith("# new\n")
    for line in ('outcome = "created"', 'username = "ada"', 'groups = ["eng", "everyone"]'):
        assert line in created
    code, out, _ = jitprov(capsys, "test")
    assert code == 0, out


def test_k_selects_by_name_or_path(ws: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = jitprov(capsys, "test", "-k", "ADA")
    assert out.splitlines() == ["PASS ada-created", "PASS ada-updated", "2 passed, 0 failed"]
    code, out, _ = jitprov(capsys, "test", "-k", "tests/legacy")
    assert out.splitlines()[0] == "PASS legacy-update-only"
    code, out, _ = jitprov(capsys, "test", "-k", "nothing-matches")
    assert code == 0 and out.splitlines() == ["0 passed, 0 failed"]


def test_paths_and_a_missing_path(ws: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = jitprov(capsys, "test", "tests/ada-updated.case.toml")
    assert out.splitlines() == ["PASS ada-updated", "1 passed, 0 failed"]
    code, _, err = jitprov(capsys, "test", "nowhere")
    assert code == 1 and "no such case file or folder: nowhere" in err


def test_the_demo_cases_all_pass(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(DEMO)
    store = DEMO / "jitprov.db"
    before = store.stat().st_mtime_ns if store.exists() else None
    code, out, _ = jitprov(capsys, "test", "--json")
    data: dict[str, Any] = json.loads(out)
    assert code == 0, [c for c in data["cases"] if c["status"] != "passed"]
    assert data["failed"] == data["errors"] == 0 and data["passed"] >= 15
    folders = {c["path"].split("/")[1] for c in data["cases"]}
    assert folders == {"okta", "entra", "shib", "portal"}
    assert (store.stat().st_mtime_ns if store.exists() else None) == before  # never opened
