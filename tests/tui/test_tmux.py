"""The real thing: `jitprov` in a real terminal (tmux) on a copy of examples/demo shows
the connections and quits cleanly with ctrl+q; at 80x24 the rules editor shows what is
typed into it.

Skipped (with the reason) when tmux is not installed; CI installs it.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
import time
import tomllib
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.tui.conftest import copy_demo

TMUX = shutil.which("tmux")
pytestmark = pytest.mark.skipif(TMUX is None, reason="tmux is not installed")
SCRIPT = Path(sys.executable).with_name("jitprov")
# The installed `jitprov` script; the same entry point through -m when it is missing.
JITPROV = (
    shlex.quote(str(SCRIPT)) if SCRIPT.exists() else f"{shlex.quote(sys.executable)} -m tui.cli"
)


def tmux(*args: str) -> str:
    assert TMUX is not None
    done = subprocess.run([TMUX, *args], capture_output=True, text=True, timeout=20)
    return done.stdout


def wait_for(check: Callable[[], bool], timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.2)
    return False


def test_jitprov_opens_on_the_connections_and_quits_with_ctrl_q(tmp_path: Path) -> None:
    config = copy_demo(tmp_path / "demo")
    status = tmp_path / "exit-status"
    session = f"jitprov-test-{uuid.uuid4().hex[:8]}"
    # COLUMNS/LINES (set by some runners) would override the terminal size in Textual.
    command = (
        f"unset COLUMNS LINES; cd {shlex.quote(str(config.parent))} && {JITPROV}; "
        f"echo $? > {shlex.quote(str(status))}; sleep 30"
    )
    size = ("-x", "120", "-y", "40")
    tmux("-L", session, "-f", "/dev/null", "new-session", "-d", "-s", session, *size, command)
    try:

        def screen() -> str:
            return tmux("-L", session, "capture-pane", "-p", "-t", session)

        ids = list(tomllib.loads(config.read_text())["connections"])
        assert wait_for(lambda: all(i in screen() for i in ids)), screen()
        shown = screen()
        assert "connections" in shown and "Connection id" in shown
        assert "Traceback" not in shown
        tmux("-L", session, "send-keys", "-t", session, "C-q")
        assert wait_for(status.exists), screen()
        assert wait_for(lambda: status.read_text().strip() != "")
        assert status.read_text().strip() == "0"
        assert "Traceback" not in screen()
    finally:
        tmux("-L", session, "kill-server")


def test_at_80x24_the_rules_editor_shows_what_is_typed(tmp_path: Path) -> None:
    # The smallest common terminal: the Rules screen's editor must keep lines to type in
    # (it once had none at 80x24), and what is typed must be on the screen.
    config = copy_demo(tmp_path / "demo")
    rules = sorted((config.parent / "rules").glob("*.rules"))
    before = {path: path.read_bytes() for path in rules}
    status = tmp_path / "exit-status"
    session = f"jitprov-test-{uuid.uuid4().hex[:8]}"
    command = (
        f"unset COLUMNS LINES; cd {shlex.quote(str(config.parent))} && {JITPROV}; "
        f"echo $? > {shlex.quote(str(status))}; sleep 30"
    )
    size = ("-x", "80", "-y", "24")
    tmux("-L", session, "-f", "/dev/null", "new-session", "-d", "-s", session, *size, command)
    try:

        def screen() -> str:
            return tmux("-L", session, "capture-pane", "-p", "-t", session)

        assert wait_for(lambda: "Connection id" in screen()), screen()
        tmux("-L", session, "send-keys", "-t", session, "2")
        assert wait_for(lambda: "rules/" in screen() and "username" in screen()), screen()
        typed = "# typed at 80x24"
        tmux("-L", session, "send-keys", "-t", session, "-l", typed)
        assert wait_for(lambda: typed in screen()), screen()
        assert "Traceback" not in screen()
        tmux("-L", session, "send-keys", "-t", session, "C-q")
        assert wait_for(lambda: "unsaved changes" in screen()), screen()
        tmux("-L", session, "send-keys", "-t", session, "d")  # discard, then quit
        assert wait_for(lambda: status.exists() and status.read_text().strip() != "")
        assert status.read_text().strip() == "0"
    finally:
        tmux("-L", session, "kill-server")
    assert {path: path.read_bytes() for path in rules} == before  # nothing was saved


ROOT = Path(__file__).resolve().parents[2]
MAKE = shutil.which("make")


@pytest.mark.skipif(
    MAKE is None or not (ROOT / ".git").exists(), reason="needs make and a git checkout"
)
def test_make_run_opens_a_scratch_copy_and_leaves_the_repository_as_it_was(
    tmp_path: Path,
) -> None:
    def changes() -> str:
        done = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=all"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=20,
        )
        return done.stdout

    before = changes()
    status = tmp_path / "exit-status"
    session = f"jitprov-run-{uuid.uuid4().hex[:8]}"
    # -o: take the installed virtualenv as it is (never reinstall inside the test).
    command = (
        f"unset COLUMNS LINES; cd {shlex.quote(str(ROOT))} && TMPDIR={shlex.quote(str(tmp_path))}"
        f" {shlex.quote(str(MAKE))} --no-print-directory -o .venv/.installed run;"
        f" echo $? > {shlex.quote(str(status))}; sleep 30"
    )
    tmux(
        "-L",
        session,
        "-f",
        "/dev/null",
        "new-session",
        "-d",
        "-s",
        session,
        "-x",
        "120",
        "-y",
        "40",
        command,
    )
    try:

        def screen() -> str:
            return tmux("-L", session, "capture-pane", "-p", "-t", session)

        assert wait_for(lambda: "okta" in screen() and "Connection id" in screen()), screen()
        # The demo's connections, with a store made by the tour, in the scratch copy.
        scratch = [p for p in tmp_path.iterdir() if p.name.startswith("jitprov-demo.")]
        assert len(scratch) == 1 and (scratch[0] / "jitprov.toml").is_file()
        tmux("-L", session, "send-keys", "-t", session, "C-q")
        assert wait_for(lambda: status.exists() and status.read_text().strip() != ""), screen()
        assert status.read_text().strip() == "0"
    finally:
        tmux("-L", session, "kill-server")
    assert changes() == before
