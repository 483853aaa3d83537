"""docs/plan.md's example is real: the demo's Okta samples applied, the edit the page
describes, and `jitprov plan` printing exactly the block the page shows (exit 2)."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from tui.cli import run as cli

ROOT = Path(__file__).resolve().parent.parent
PAGE = ROOT / "docs" / "plan.md"


def edited(rules: str) -> str:
    """The edit the page describes."""
    rules = rules.replace(
        'deny "contractors are not provisioned" when "contractor" in lower(@employeeType)\n',
        'deny "contractors are not provisioned" when "contractor" in lower(@employeeType)\n'
        'deny "no employee number" when first(@employeeNumber) == null\n',
    )
    rules = rules.replace('"Sales"              => "sales"', '"Sales"              => "revenue"')
    return rules.replace('groups += "everyone"\n', 'groups += "everyone"\ngroups += "staff"\n')


def test_the_plan_page_shows_what_plan_prints(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    demo = tmp_path / "demo"
    shutil.copytree(ROOT / "examples" / "demo", demo, ignore=shutil.ignore_patterns("*.db*"))
    monkeypatch.chdir(demo)
    for sample in sorted((demo / "samples").glob("okta-*.xml")):
        cli(["apply", "-c", "okta", str(sample), "--at", "2024-05-01T12:00:00Z"])
    rules = (demo / "rules" / "okta.rules").read_text()
    changed = edited(rules)
    assert changed.count("\n") == rules.count("\n") + 2  # each edit took
    assert '"revenue"' in changed
    (demo / "rules" / "okta-next.rules").write_text(changed)
    capsys.readouterr()
    assert cli(["plan", "-c", "okta", "--rules", "rules/okta-next.rules"]) == 2
    printed = capsys.readouterr().out
    page = PAGE.read_text()
    block = re.search(r"okta-next\.rules\n   ```\n\n   ```\n(.*?)   ```", page, re.S)
    assert block is not None
    shown = "".join(line[3:] + "\n" for line in block.group(1).splitlines())
    assert printed == shown
    lines = changed.splitlines()
    assert lines[6].startswith('deny "no employee number"')  # "line 7" on the page
    assert lines[22] == 'groups += "staff"'  # "line 23"


def test_the_demo_plan_is_what_signing_in_again_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The page's plan, account by account, against the same Okta tokens signed in again
    for real with the edited rules (their replay entries forgotten so they may)."""
    import json
    import sqlite3

    demo = tmp_path / "demo"
    shutil.copytree(ROOT / "examples" / "demo", demo, ignore=shutil.ignore_patterns("*.db*"))
    monkeypatch.chdir(demo)
    samples = [s for s in sorted((demo / "samples").glob("okta-*.xml")) if "tampered" not in s.name]
    first = {}
    for sample in samples:
        cli(["apply", "-c", "okta", str(sample), "--at", "2024-05-01T12:00:00Z", "--json"])
        result = json.loads(capsys.readouterr().out)
        first[result["subject"]] = result["outcome"]
    rules = demo / "rules" / "okta.rules"
    rules.write_text(edited(rules.read_text()))
    capsys.readouterr()
    assert cli(["plan", "-c", "okta", "--json"]) == 2
    planned = {a["subject"]: a for a in json.loads(capsys.readouterr().out)["accounts"]}
    with sqlite3.connect(demo / "jitprov.db") as db:
        db.execute("DELETE FROM seen_tokens")
    real = {}
    for sample in samples:
        cli(["apply", "-c", "okta", str(sample), "--at", "2024-05-01T12:05:00Z", "--json"])
        result = json.loads(capsys.readouterr().out)
        real[result["subject"]] = result
    # Planned: every identity whose sign-in now changes its account or is newly denied.
    assert set(planned) == {
        s
        for s, r in real.items()
        if r["outcome"] != "unchanged" and not (r["outcome"] == first[s] == "denied")
    }
    assert {a["verdict"] for a in planned.values()} == {"change", "deny"}
    for subject, account in planned.items():
        assert account["outcome"] == real[subject]["outcome"], subject
        assert account["changes"] == real[subject]["changes"], subject
        if account["verdict"] == "deny":
            assert account["message"] == real[subject]["message"]
