"""The Connections form never loses an edit: every way out of a modified form asks first
(save / discard / cancel), every problem of a save is listed at once with the first wrong
field focused on its tab, and a rules file that does not exist can be created."""

from __future__ import annotations

from pathlib import Path

import pytest
from textual.widgets import DataTable, Input, Label, Static, TabbedContent

from tests.tui.conftest import SIZE, settle
from tui.app import JitprovApp
from tui.screens.confirm import ConfirmScreen, PromptScreen, UnsavedChangesScreen
from tui.screens.connections import ConnectionsScreen
from tui.screens.rules import RulesScreen
from tui.widgets.connection_form import ConnectionForm

EDITED = "http://www.okta.com/edited"


def form_of(app: JitprovApp) -> ConnectionForm:
    screen = app.mode_screens["connections"]
    assert isinstance(screen, ConnectionsScreen)
    return screen.query_one(ConnectionForm)


def marker(form: ConnectionForm) -> str:
    return str(form.query_one("#form-modified", Label).render())


async def edit_issuer(app: JitprovApp, pilot: object) -> ConnectionForm:
    await settle(pilot)  # type: ignore[arg-type]
    form = form_of(app)
    assert form.connection_id == "okta" and not form.modified and marker(form) == ""
    form.query_one("#f-issuer", Input).value = EDITED
    await settle(pilot)  # type: ignore[arg-type]
    assert form.modified and "unsaved" in marker(form)
    return form


async def test_the_form_marks_edits_and_unmarks_them_when_undone(app: JitprovApp) -> None:
    async with app.run_test(size=SIZE) as pilot:
        form = await edit_issuer(app, pilot)
        form.query_one("#f-issuer", Input).value = "http://www.okta.com/exk1test"
        await settle(pilot)
        assert not form.modified and marker(form) == ""


async def test_another_connection_asks_and_cancel_keeps_the_edit(
    app: JitprovApp, config_path: Path
) -> None:
    before = config_path.read_text()
    async with app.run_test(size=SIZE) as pilot:
        form = await edit_issuer(app, pilot)
        app.screen.query_one("#connections").focus()
        await pilot.press("down")  # entra
        await settle(pilot)
        assert isinstance(app.screen, UnsavedChangesScreen)
        assert "okta" in str(app.screen.query_one("#question", Label).render())
        await pilot.press("escape")
        await settle(pilot)
        assert form.connection_id == "okta"
        assert form.query_one("#f-issuer", Input).value == EDITED  # nothing lost
        table = app.screen.query_one("#connections", DataTable)
        assert table.cursor_row == 0  # the cursor back on the connection shown
    assert config_path.read_text() == before


async def test_another_connection_with_save_writes_the_edit_first(
    app: JitprovApp, config_path: Path
) -> None:
    async with app.run_test(size=SIZE) as pilot:
        form = await edit_issuer(app, pilot)
        app.screen.query_one("#connections").focus()
        await pilot.press("down")
        await settle(pilot)
        await pilot.press("s")
        await settle(pilot)
        assert form.connection_id == "entra" and not form.modified
    assert f'"{EDITED}"' in config_path.read_text()


async def test_another_connection_with_discard_drops_the_edit(
    app: JitprovApp, config_path: Path
) -> None:
    before = config_path.read_text()
    async with app.run_test(size=SIZE) as pilot:
        form = await edit_issuer(app, pilot)
        app.screen.query_one("#connections").focus()
        await pilot.press("down")
        await settle(pilot)
        await pilot.press("d")
        await settle(pilot)
        assert form.connection_id == "entra" and not form.modified
        app.screen.query_one("#connections").focus()
        await pilot.press("up")
        await settle(pilot)
        assert form.query_one("#f-issuer", Input).value == "http://www.okta.com/exk1test"
    assert config_path.read_text() == before


async def test_another_screen_asks_first(app: JitprovApp, config_path: Path) -> None:
    async with app.run_test(size=SIZE) as pilot:
        form = await edit_issuer(app, pilot)
        app.screen.query_one("#connections").focus()
        await pilot.press("2")
        await settle(pilot)
        assert isinstance(app.screen, UnsavedChangesScreen)
        await pilot.press("escape")
        await settle(pilot)
        assert isinstance(app.screen, ConnectionsScreen) and form.modified
        await pilot.press("2")
        await settle(pilot)
        await pilot.press("s")
        await settle(pilot)
        assert isinstance(app.screen, RulesScreen)
    assert f'"{EDITED}"' in config_path.read_text()


@pytest.mark.parametrize("key", ["n", "i", "e"])
async def test_new_import_and_edit_rules_ask_first(app: JitprovApp, key: str) -> None:
    async with app.run_test(size=SIZE) as pilot:
        form = await edit_issuer(app, pilot)
        app.screen.query_one("#connections").focus()
        await pilot.press(key)
        await settle(pilot)
        assert isinstance(app.screen, UnsavedChangesScreen)
        await pilot.press("escape")
        await settle(pilot)
        assert isinstance(app.screen, ConnectionsScreen)
        assert form.connection_id == "okta" and form.query_one("#f-issuer", Input).value == EDITED
        await pilot.press(key)
        await settle(pilot)
        await pilot.press("d")  # discard: on to what was asked for
        await settle(pilot)
        if key == "n":
            assert form.is_new and form.query_one("#f-issuer", Input).value == ""
        elif key == "i":
            assert isinstance(app.screen, PromptScreen)
        else:
            assert isinstance(app.screen, RulesScreen)


async def test_quit_asks_about_the_form_and_cancel_stays(
    app: JitprovApp, config_path: Path
) -> None:
    async with app.run_test(size=SIZE) as pilot:
        await edit_issuer(app, pilot)
        await pilot.press("ctrl+q")
        await settle(pilot)
        assert isinstance(app.screen, UnsavedChangesScreen)
        await pilot.press("escape")
        await settle(pilot)
        assert app.is_running and isinstance(app.screen, ConnectionsScreen)
        await pilot.press("ctrl+q")
        await settle(pilot)
        await pilot.press("s")
        await settle(pilot)
        assert not app.is_running
    assert f'"{EDITED}"' in config_path.read_text()


async def test_a_save_lists_every_problem_and_focuses_the_first(
    app: JitprovApp, config_path: Path
) -> None:
    before = config_path.read_text()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        app.screen.query_one("#connections").focus()
        await pilot.press("n")
        await settle(pilot)
        form = form_of(app)
        form.query_one("#form-id", Input).value = "acme"
        form.query_one("#f-clock_skew", Input).value = "soon"
        form.query_one("#f-certificate", Input).value = "certs/missing.crt"
        await pilot.press("ctrl+s")
        await settle(pilot)
        message = str(form.query_one("#form-message", Static).render())
        for key in ("issuer", "audience", "rules", "clock_skew", "certificate"):
            assert f"{key}:" in message, message
            assert form.query_one(f"#e-{key}", Label).has_class("shown")
        assert "problems, none saved" in message
        # The first wrong field in the form's order, on its tab, has the focus.
        assert form.query_one("#form-tabs", TabbedContent).active == "tab-general"
        assert app.focused is form.query_one("#f-issuer", Input)
    assert config_path.read_text() == before


async def test_a_missing_rules_file_can_be_created_then_saved(
    app: JitprovApp, config_path: Path
) -> None:
    rules = config_path.parent / "rules" / "acme.rules"
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        app.screen.query_one("#connections").focus()
        await pilot.press("n")
        await settle(pilot)
        form = form_of(app)
        form.query_one("#form-id", Input).value = "acme"
        form.query_one("#f-issuer", Input).value = "https://idp.acme.example/"
        form.query_one("#f-audience", Input).value = "https://sp.example.com/saml"
        form.query_one("#f-certificate", Input).value = "certs/idp.crt"
        form.query_one("#f-rules", Input).value = "rules/acme.rules"
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert isinstance(app.screen, ConfirmScreen)
        assert "rules/acme.rules does not exist" in str(
            app.screen.query_one("#question", Label).render()
        )
        await pilot.press("y")
        await settle(pilot)
        assert rules.is_file() and "username" in rules.read_text()
        assert form.connection_id == "acme" and not form.is_new and not form.modified
    assert "[connections.acme]" in config_path.read_text()


async def test_declining_the_starter_rules_writes_nothing(
    app: JitprovApp, config_path: Path
) -> None:
    before = config_path.read_text()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        form = form_of(app)
        form.query_one("#f-rules", Input).value = "rules/nowhere.rules"
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("n")
        await settle(pilot)
        assert "file not found" in str(form.query_one("#e-rules", Label).render())
        assert form.modified
    assert config_path.read_text() == before
    assert not (config_path.parent / "rules" / "nowhere.rules").exists()
