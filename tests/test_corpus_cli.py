"""Every corpus case through the command line exactly as users (and the blind checks)
run it: a workspace built from the case's `spec_options`, then `jitprov apply` /
`jitprov explain` / `jitprov connection import-metadata`, judged by `spec_verdict`.

The intake-level corpus tests live in tests/engine/test_corpus_{saml,oidc}.py; this one
proves the whole path (config → validation → rules → store → JSON and exit code).
"""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest

from tests.corpus_revisions import allowed_reasons
from tui.cli import run

CORPUS = Path(__file__).resolve().parents[1].parent / "shared" / "corpus"
MANIFEST = CORPUS / "MANIFEST.toml"


def _cases() -> list[Any]:
    if not MANIFEST.is_file():
        return [pytest.param(None, marks=pytest.mark.skip(reason=f"no corpus at {CORPUS}"))]
    cases = tomllib.loads(MANIFEST.read_text(encoding="utf-8"))["case"]
    params = []
    for case in cases:
        marks = []
        if case["spec_verdict"] == "skip":
            marks.append(pytest.mark.skip(reason=f"spec_verdict skip: {case.get('spec_note')}"))
        params.append(pytest.param(case, id=case["id"], marks=marks))
    return params


def _toml_value(value: object) -> str:
    return json.dumps(value, ensure_ascii=False)  # JSON strings, numbers, bools are TOML


def _workspace(tmp: Path, case: dict[str, Any]) -> tuple[Path, list[str]]:
    """jitprov.toml + rules for the case; returns the config path and apply flags."""
    options = dict(case.get("spec_options", {}))
    flags = ["--at", str(options.pop("at", case.get("valid_at")))]
    for name, flag in (("request_id", "--request-id"), ("nonce", "--nonce")):
        if name in options:
            flags += [flag, str(options.pop(name))]
    lines = ["[connections.corp]"]
    for key, value in options.items():
        if key in ("certificate", "decryption_key") or (key == "jwks" and isinstance(value, str)):
            value = str(CORPUS / value)
        elif key == "jwks":
            path = tmp / "jwks.json"
            path.write_text(json.dumps(value))
            value = str(path)
        lines.append(f"{key} = {_toml_value(value)}")
    rules = [*case.get("spec_rules", []), "username = subject"]
    if "link_by" in options:
        rules.append(f"{options['link_by']} = lower(first(@email ?? @mail))")
    (tmp / "corp.rules").write_text("\n".join(rules) + "\n")
    lines.append('rules = "corp.rules"')
    config = tmp / "jitprov.toml"
    config.write_text('[store]\npath = "store.db"\n\n' + "\n".join(lines) + "\n")
    return config, flags


def _run_json(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, Any]:
    code = run(argv)
    captured = capsys.readouterr()
    try:
        return code, json.loads(captured.out)
    except json.JSONDecodeError:
        pytest.fail(f"no JSON (exit {code}): out={captured.out!r} err={captured.err!r}")


def _first_deny_message(rules: list[str]) -> str:
    match = re.search(r'deny\s+"((?:[^"\\]|\\.)*)"', "\n".join(rules))
    assert match, rules
    return json.loads(f'"{match.group(1)}"')


@pytest.mark.parametrize("case", _cases())
def test_corpus_case_through_the_cli(
    case: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    verdict = case["spec_verdict"]
    if case["kind"] == "metadata":
        (tmp_path / "jitprov.toml").write_text("# workspace\n")
        code = run(
            [
                "--config",
                str(tmp_path),
                "connection",
                "import-metadata",
                str(CORPUS / case["path"]),
                "--id",
                "md",
            ]
        )
        capsys.readouterr()
        if verdict == "valid":
            assert code == 0
            config = tomllib.loads((tmp_path / "jitprov.toml").read_text())
            assert config["connections"]["md"]["issuer"] == case["extract"]["entity_id"]
        else:
            assert code == 1
            assert "md" not in tomllib.loads((tmp_path / "jitprov.toml").read_text()).get(
                "connections", {}
            )
        return
    config, flags = _workspace(tmp_path, case)
    token = str(CORPUS / case["path"])
    argv = ["--config", str(config), "apply", "-c", "corp", token, "--json", *flags]
    code, result = _run_json(argv, capsys)
    if verdict == "invalid":
        allowed = allowed_reasons(case)
        assert (code, result["outcome"]) == (3, "rejected"), result
        assert result["reason"] in allowed, result
        assert result["user"] is None
    elif verdict == "denied":
        assert (code, result["outcome"]) == (2, "denied"), result
        assert result["message"] == _first_deny_message(case["spec_rules"])
    else:
        assert (code, result["outcome"]) == (0, "created"), result
        options = case.get("spec_options", {})
        if case["kind"] == "oidc-id-token":
            expected_subject = case["claims"]["sub"] if case.get("claims") else result["subject"]
        elif "subject_from" in options:
            expected_subject = case["attributes"][options["subject_from"]][0]
        else:  # a transient NameID without extract data: the subject is whatever it sent
            expected_subject = case.get("extract", {}).get("nameid", result["subject"])
        assert result["subject"] == expected_subject
        assert result["user"]["username"] == expected_subject
        if case.get("attributes"):
            explain = ["--config", str(config), "explain", "-c", "corp", token, "--json", *flags]
            _, explained = _run_json(explain, capsys)
            for name, values in case["attributes"].items():
                kept = [value for value in values if value]  # empty values are dropped (§2)
                assert explained["attributes"].get(name, []) == kept, name
    if verdict != "valid":
        users = ["--config", str(config), "users", "list", "--json"]
        _, listed = _run_json(users, capsys)
        assert listed == []
