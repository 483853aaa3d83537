"""docs/getting-started.md is real: its console blocks run in order, in a fresh empty
folder, and every command prints exactly what the page shows.

As in tests/test_readme.py, a `$ jitprov ...` line runs in this process (`> FILE` writes
its output to FILE). `$ cd DIR` changes folder, `$ echo $?` prints the exit code of the
command before, and any other line (`cat > FILE <<'EOF'` with its text up to `EOF`,
`mkdir`) runs in a shell. A line ending in a backslash continues on the next one."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from tui.cli import run

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "getting-started.md"
BLOCK = re.compile(r"```console\n(.*?)```", re.DOTALL)
HEREDOC = re.compile(r"<<\s*'?(\w+)'?\s*$")


@dataclass
class Step:
    command: str  # as a shell would read it (continuations joined, heredoc included)
    expected: str


def _steps(block: str) -> list[Step]:
    lines = block.splitlines()
    steps: list[Step] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        assert line.startswith("$ "), f"output before any command: {line!r}"
        command = line[2:]
        while command.endswith("\\"):
            i += 1
            command = command[:-1].rstrip() + " " + lines[i].strip()
        i += 1
        heredoc = HEREDOC.search(command)
        if heredoc:
            end = lines.index(heredoc.group(1), i)
            command = "\n".join([command, *lines[i : end + 1]])
            i = end + 1
        output = []
        while i < len(lines) and not lines[i].startswith("$ "):
            output.append(lines[i])
            i += 1
        steps.append(Step(command, "\n".join(output).rstrip("\n")))
    return steps


def page_steps() -> list[Step]:
    blocks = BLOCK.findall(PAGE.read_text(encoding="utf-8"))
    return [step for block in blocks for step in _steps(block)]


def test_every_command_block_is_run() -> None:
    """The page's blocks of `$ jitprov` commands are console blocks (which this test runs),
    and `jitprov serve`, which does not return, is only shown."""
    text = PAGE.read_text(encoding="utf-8")
    for info, body in re.findall(r"```(\w*)\n(.*?)```", text, re.DOTALL):
        if info != "console" and body.startswith("$ jitprov "):
            assert body.startswith("$ jitprov serve") or "\n$ jitprov serve" in body, body
    commands = [step.command.split()[:2] for step in page_steps()]
    for name in ("init", "connection", "check", "test", "explain", "mint", "apply", "users"):
        assert ["jitprov", name] in commands, name


def test_getting_started_console_blocks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    if shutil.which("bash") is None:
        pytest.skip("bash is needed for the page's shell steps")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("JITPROV_SERVICE_TOKEN", raising=False)
    steps = page_steps()
    assert len(steps) >= 15
    code = 0
    for step in steps:
        capsys.readouterr()
        if step.command.startswith("jitprov "):
            words = shlex.split(step.command)
            target = None
            if ">" in words:
                at = words.index(">")
                words, target = words[:at], words[at + 1]
            code = run(words[1:])
            out = capsys.readouterr().out
            if target is not None:
                Path(target).write_text(out, encoding="utf-8")
                out = ""
        elif step.command.startswith("cd "):
            monkeypatch.chdir(step.command[3:].strip())
            code, out = 0, ""
        elif step.command == "echo $?":
            out = f"{code}\n"
        else:
            done = subprocess.run(
                ["bash", "-c", step.command],
                capture_output=True,
                text=True,
                cwd=os.getcwd(),
                check=False,
            )
            code, out = done.returncode, done.stdout
            assert code == 0, f"{step.command}\n{done.stderr}"
        assert out.rstrip("\n") == step.expected, step.command
