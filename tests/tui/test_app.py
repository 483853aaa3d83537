"""The app as a whole: screens by key and palette, help, quit guard, never a crash."""

from __future__ import annotations

from pathlib import Path

import pytest
from textual.command import CommandPalette
from textual.widgets import DataTable

from tests.tui.conftest import SIZE, settle
from tui import cli
from tui.app import JitprovApp, JitprovCommands, make_app
from tui.facade import Facade
from tui.screens.audit import AuditScreen
from tui.screens.bench import BenchScreen
from tui.screens.confirm import UnsavedChangesScreen
from tui.screens.connections import ConnectionsScreen
from tui.screens.help import HelpScreen
from tui.screens.rules import RulesScreen
from tui.screens.users import UsersScreen


async def test_opens_on_connections_with_rule_status(app: JitprovApp) -> None:
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        assert isinstance(app.screen, ConnectionsScreen)
        table = app.screen.query_one("#connections", DataTable)
        assert table.row_count == 3
        rows = [table.get_row_at(i) for i in range(3)]
        assert [r[0] for r in rows] == ["okta", "entra", "shib"]
        assert [str(r[3]) for r in rows] == ["✔", "✔", "⚠ 1 warning"]


async def test_number_keys_reach_every_screen(app: JitprovApp) -> None:
    expected = {
        "2": RulesScreen,
        "3": BenchScreen,
        "4": UsersScreen,
        "5": AuditScreen,
        "1": ConnectionsScreen,
    }
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        for key, screen in expected.items():
            app.screen.set_focus(None)  # keys go to the app, not into a text box
            await pilot.press(key)
            await settle(pilot)
            assert isinstance(app.screen, screen), key


async def test_help_opens_with_f1_and_closes(app: JitprovApp) -> None:
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("f1")
        assert isinstance(app.screen, HelpScreen)
        await pilot.press("escape")
        assert isinstance(app.screen, ConnectionsScreen)


async def test_palette_lists_screens_and_screen_actions(app: JitprovApp) -> None:
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("2")
        await settle(pilot)
        commands = JitprovCommands(app.screen)._commands()
        names = [name for name, _, _ in commands]
        for title in ("Go to Connections", "Go to Rules", "Go to Test bench", "Go to Users"):
            assert title in names
        # Every screen's actions, whichever screen is shown, each help with its key.
        assert {
            "Rules: Save rules",
            "Rules: Format rules",
            "Test bench: Run all cases",
            "Connections: Import IdP metadata",
            "Users: Search users",
            "Audit: Reload audit",
            "Help",
            "Quit",
        } <= set(names)
        for name, help_text, _ in commands:
            if name.startswith(("Rules:", "Test bench:", "Connections:")):
                assert help_text.endswith(")"), (name, help_text)  # "... (ctrl+s)"
        await pilot.press("ctrl+p")
        await settle(pilot)
        assert isinstance(app.screen, CommandPalette)
        await pilot.press(*"go to audit")
        await pilot.pause(0.3)
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, AuditScreen)


async def test_quit_with_unsaved_rules_asks_first(app: JitprovApp) -> None:
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("2")
        await settle(pilot)
        rules = app.screen
        assert isinstance(rules, RulesScreen)
        rules.editor.insert("# a note\n", (0, 0))
        await settle(pilot)
        assert rules.modified
        await pilot.press("ctrl+q")
        await settle(pilot)
        assert isinstance(app.screen, UnsavedChangesScreen)
        await pilot.click("#cancel")
        await settle(pilot)
        assert app.screen is rules and app.is_running
        await pilot.press("ctrl+q")
        await settle(pilot)
        await pilot.click("#discard")
        await settle(pilot)
        assert not app.is_running


async def test_rules_file_not_utf8_is_a_notification(facade: Facade) -> None:
    rules = facade.config.connections["okta"].rules
    rules.write_bytes(b"username = \xff\xfe\n")
    app = make_app(facade)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        table = app.screen.query_one("#connections", DataTable)
        assert str(table.get_row_at(0)[3]) == "✘ unreadable"
        await pilot.press("2")
        await settle(pilot)
        assert app.is_running
        messages = [n.message for n in app._notifications]
        assert any("not UTF-8" in m for m in messages)


async def test_config_that_becomes_invalid_is_a_notification(
    app: JitprovApp, config_path: Path
) -> None:
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        config_path.write_text(config_path.read_text() + "\n[bogus]\n")
        await pilot.press("ctrl+r")
        await settle(pilot)
        assert app.is_running
        assert any("bogus" in n.message for n in app._notifications)
        await pilot.press("4")
        await settle(pilot)
        assert app.is_running


async def test_unreadable_store_is_a_notification(app: JitprovApp, config_path: Path) -> None:
    (config_path.parent / "jitprov.db").write_bytes(b"this is not a database" * 100)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("4")
        await settle(pilot)
        await pilot.press("5")
        await settle(pilot)
        assert app.is_running
        assert any("store" in n.message for n in app._notifications)


def test_no_workspace_is_one_error_line_and_exit_1(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    for argv in ([], ["tui"]):
        assert cli.run(argv) == 1
        err = capsys.readouterr().err
        assert err.startswith("jitprov: error: jitprov.toml: not found")
        assert "Traceback" not in err and err.count("\n") == 1


def test_tui_honours_config_and_opens_the_app(
    config_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    opened: list[Path] = []
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(JitprovApp, "run", lambda self: opened.append(self.facade.config_path))
    assert cli.run(["tui", "--config", str(config_path)]) == 0
    assert cli.run(["--config", str(config_path.parent)]) == 0
    assert opened == [config_path.resolve(), config_path.resolve()]


async def test_first_rules_file_unreadable_leaves_the_editor_read_only(facade: Facade) -> None:
    facade.config.connections["okta"].rules.write_bytes(b"\xff\xfe")
    app = make_app(facade)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("2")
        await settle(pilot)
        rules = app.screen
        assert isinstance(rules, RulesScreen)
        assert rules.connection_id is None and rules.editor.read_only
        rules.request_open("entra")
        await settle(pilot)
        assert rules.connection_id == "entra" and not rules.editor.read_only
