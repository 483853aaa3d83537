"""The README's console blocks are real: each `$ jitprov ...` runs in a fresh copy of
examples/demo (in order, sharing its store) and must print exactly what the README shows."""

from __future__ import annotations

import re
import shlex
import shutil
from pathlib import Path

import pytest

from tui.cli import run

ROOT = Path(__file__).resolve().parents[1]
BLOCK = re.compile(r"```console\n(.*?)```", re.DOTALL)


def _commands() -> list[tuple[str, str]]:
    steps = []
    for block in BLOCK.findall((ROOT / "README.md").read_text(encoding="utf-8")):
        command, *output = block.splitlines()
        assert command.startswith("$ jitprov "), command
        steps.append((command[2:], "\n".join(output).rstrip("\n")))
    return steps


def test_readme_console_blocks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    workspace = tmp_path / "demo"
    shutil.copytree(ROOT / "examples" / "demo", workspace, ignore=shutil.ignore_patterns("*.db*"))
    monkeypatch.chdir(workspace)
    steps = _commands()
    assert len(steps) >= 5
    for command, expected in steps:
        run(shlex.split(command)[1:])
        assert capsys.readouterr().out.rstrip("\n") == expected, command
