"""Views that stay current: a connection added, a rules file saved or a token applied on
one screen shows on every other screen that shows it, without a reload key (the app
announces the change to each screen); and the palette runs any screen's action."""

from __future__ import annotations

from textual.command import CommandPalette
from textual.widgets import DataTable, Input, Label, Select

from tests.tui.conftest import SIZE, settle
from tui.app import JitprovApp
from tui.screens.bench import BenchScreen
from tui.screens.connections import ConnectionsScreen
from tui.screens.rules import RulesScreen
from tui.screens.users import UsersScreen
from tui.widgets.connection_form import ConnectionForm
from tui.widgets.connection_list import ConnectionList


async def visit_every_screen(app: JitprovApp, pilot: object) -> None:
    """Make every screen (a screen is made when first shown), then back to Connections."""
    for key in "23451":
        app.screen.set_focus(None)
        await pilot.press(key)  # type: ignore[attr-defined]
        await settle(pilot)  # type: ignore[arg-type]
    assert isinstance(app.screen, ConnectionsScreen)


async def test_a_connection_added_shows_on_the_rules_screen_and_the_bench(
    app: JitprovApp,
) -> None:
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await visit_every_screen(app, pilot)
        app.screen.query_one("#connections").focus()
        await pilot.press("n")
        await settle(pilot)
        form = app.screen.query_one(ConnectionForm)
        form.query_one("#form-id", Input).value = "acme"
        form.query_one("#f-issuer", Input).value = "https://idp.acme.example/"
        form.query_one("#f-audience", Input).value = "https://sp.example.com/saml"
        form.query_one("#f-certificate", Input).value = "certs/idp.crt"
        form.query_one("#f-rules", Input).value = "rules/okta.rules"
        await pilot.press("ctrl+s")
        await settle(pilot)
        rules = app.mode_screens["rules"]
        assert isinstance(rules, RulesScreen)
        listed = rules.query_one(ConnectionList)
        assert "acme" in [row.id for row in listed.rows]
        bench = app.mode_screens["bench"]
        assert isinstance(bench, BenchScreen)
        options = bench.query_one("#bench-connection", Select)._options
        assert "acme" in [str(label) for label, _ in options]


async def test_rules_saved_with_an_error_shows_in_the_connections_list(
    app: JitprovApp,
) -> None:
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        table = app.screen.query_one("#connections", DataTable)
        assert "✔" in str(table.get_row("okta")[3])
        await pilot.press("2")
        await settle(pilot)
        rules = app.screen
        assert isinstance(rules, RulesScreen) and rules.connection_id == "okta"
        rules.editor.insert("groups += nosuchattribute(\n", (0, 0))
        await settle(pilot)
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert "✘" in str(table.get_row("okta")[3])  # no ctrl+r on Connections


async def test_a_token_applied_on_the_bench_refreshes_the_rules_preview(
    app: JitprovApp,
) -> None:
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("2")
        await settle(pilot)
        rules = app.screen
        assert isinstance(rules, RulesScreen)
        sample = rules.facade.root / "samples" / "okta-engineer.toml"
        rules.query_one("#preview-token", Select).value = sample
        await settle(pilot)
        outcome = rules.query_one("#preview-outcome", Label)
        assert str(outcome.render()) == "created"
        rules.set_focus(None)  # the editor takes digits as text
        await pilot.press("3")
        await settle(pilot)
        bench = app.screen
        assert isinstance(bench, BenchScreen)
        bench.query_one("#bench-connection", Select).value = "okta"
        await settle(pilot)
        bench.query_one("#bench-token", Select).value = sample
        await pilot.press("a")
        await settle(pilot)
        assert "applied: created" in str(bench.query_one("#bench-outcome", Label).render())
        # The preview compares with the store: the account is there now.
        assert str(outcome.render()) != "created"


async def test_the_palette_runs_another_screens_action(app: JitprovApp) -> None:
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("ctrl+p")
        await settle(pilot)
        assert isinstance(app.screen, CommandPalette)
        await pilot.press(*"users: search users")
        await pilot.pause(0.3)
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, UsersScreen)
        assert isinstance(app.focused, Input)  # the search box, ready to type
