"""SVG snapshots of every screen at 80x24, 120x40 and 200x60, on the tests' workspace
with a fixed clock (so the audit times and dry runs are the same on every run).

Update them with `pytest tests/tui/test_snapshots.py --snapshot-update` after a
deliberate change, and look at the report before committing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from textual.pilot import Pilot
from textual.widgets import Input, Select, TextArea

from tests.tui.conftest import FIXED_NOW, settle
from tests.tui.test_screens_users import provision
from tui.app import JitprovApp, make_app
from tui.facade import Facade
from tui.screens.rules import RulesScreen

SIZES = pytest.mark.parametrize(
    "size", [(80, 24), (120, 40), (200, 60)], ids=["80x24", "120x40", "200x60"]
)


async def steady(pilot: Pilot[None]) -> None:
    """Settle, with no text cursor drawn. Whether a cursor is drawn at the moment of the
    screenshot depended on its blink and on which widget had just taken the focus,
    which made the snapshots of the editor and the search boxes flaky under load; the
    cursor itself is tested by the pilot tests and the tmux test."""
    await settle(pilot)
    screen = pilot.app.screen
    target = screen.AUTO_FOCUS  # a screen that names its focus: wait until it has it,
    if target and target != "*":  # so that no focus event comes after the cursor is hidden
        for _ in range(200):
            if screen.query_one(target).has_focus:
                break
            await pilot.pause(0.05)
    # The debounced check shows the text as it is: on the Rules screen, and on one
    # under a dialog, which a large terminal shows around it (a dialog opened at once
    # after an edit came up, under load, over the problems of the text before).
    for rules in (s for s in pilot.app.screen_stack if isinstance(s, RulesScreen)):
        for _ in range(200):
            if rules.shown_generation == rules.generation:
                break
            await pilot.pause(0.05)
        await settle(pilot)
    inputs = [w for w in screen.query("Input") if isinstance(w, Input)]
    for field in inputs:
        field.cursor_blink = False  # an Input draws its cursor only while visible
    await settle(pilot)
    for field in inputs:  # after any blink already queued has run
        field._cursor_visible = False
        field.refresh()
    # A TextArea without blink draws its cursor whenever it has the focus; with blink
    # on, it draws it only while visible: pause the blink with the cursor hidden.
    for editor in (w for w in screen.query("TextArea") if isinstance(w, TextArea)):
        editor._pause_blink(visible=False)
        editor.refresh()
    await settle(pilot)


def snap(snap_compare: Any, app: JitprovApp, size: tuple[int, int], run_before: Any = None) -> bool:
    """snap_compare after `run_before`, once the app is steady."""

    async def before(pilot: Pilot[None]) -> None:
        if run_before is not None:
            await run_before(pilot)
        await steady(pilot)

    return bool(snap_compare(app, terminal_size=size, run_before=before))


def demo_app(config_path: Path, *, provisioned: bool = False) -> JitprovApp:
    facade = Facade(config_path, clock=lambda: FIXED_NOW)
    if provisioned:
        provision(facade)
    return make_app(facade)


async def go(pilot: Pilot[None], key: str) -> None:
    await settle(pilot)
    pilot.app.screen.set_focus(None)
    await pilot.press(key)
    await settle(pilot)


@SIZES
def test_connections_screen(snap_compare: Any, config_path: Path, size: tuple[int, int]) -> None:
    assert snap(snap_compare, demo_app(config_path), size)


@SIZES
def test_rules_screen_with_a_problem_and_preview(
    snap_compare: Any, config_path: Path, size: tuple[int, int]
) -> None:
    async def run_before(pilot: Pilot[None]) -> None:
        await go(pilot, "2")
        screen = pilot.app.screen
        assert isinstance(screen, RulesScreen)
        screen.query_one("#preview-token", Select).value = (
            screen.facade.root / "samples/okta-engineer.toml"
        )
        screen.editor.insert("email = nosuchname\n", (6, 0))
        await settle(pilot)

    assert snap(snap_compare, demo_app(config_path), size, run_before)


@SIZES
def test_bench_screen_after_a_dry_run(
    snap_compare: Any, config_path: Path, size: tuple[int, int]
) -> None:
    async def run_before(pilot: Pilot[None]) -> None:
        await go(pilot, "3")
        pilot.app.screen.query_one("#bench-token", Select).value = (
            config_path.parent / "samples/okta-engineer.toml"
        )
        await pilot.press("d")
        await settle(pilot)
        await pilot.press("ctrl+t")
        await settle(pilot)

    assert snap(snap_compare, demo_app(config_path), size, run_before)


@SIZES
def test_users_screen(snap_compare: Any, config_path: Path, size: tuple[int, int]) -> None:
    async def run_before(pilot: Pilot[None]) -> None:
        await go(pilot, "4")

    app = demo_app(config_path, provisioned=True)
    assert snap(snap_compare, app, size, run_before)


@SIZES
def test_user_detail(snap_compare: Any, config_path: Path, size: tuple[int, int]) -> None:
    async def run_before(pilot: Pilot[None]) -> None:
        await go(pilot, "4")
        pilot.app.screen.query_one("DataTable").focus()
        await pilot.press("enter")
        await settle(pilot)

    app = demo_app(config_path, provisioned=True)
    assert snap(snap_compare, app, size, run_before)


@SIZES
def test_audit_screen(snap_compare: Any, config_path: Path, size: tuple[int, int]) -> None:
    async def run_before(pilot: Pilot[None]) -> None:
        await go(pilot, "5")

    app = demo_app(config_path, provisioned=True)
    assert snap(snap_compare, app, size, run_before)


@SIZES
def test_help_screen(snap_compare: Any, config_path: Path, size: tuple[int, int]) -> None:
    async def run_before(pilot: Pilot[None]) -> None:
        await go(pilot, "f1")

    assert snap(snap_compare, demo_app(config_path), size, run_before)


@SIZES
def test_unsaved_changes_dialog(
    snap_compare: Any, config_path: Path, size: tuple[int, int]
) -> None:
    async def run_before(pilot: Pilot[None]) -> None:
        await go(pilot, "2")
        screen = pilot.app.screen
        assert isinstance(screen, RulesScreen)
        screen.editor.insert("# draft\n", (0, 0))
        await settle(pilot)
        await pilot.press("ctrl+q")
        await settle(pilot)

    assert snap(snap_compare, demo_app(config_path), size, run_before)
