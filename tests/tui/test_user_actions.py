"""The Users screen's account actions: disable (`d`), enable (`e`) and delete (`delete`,
after a confirmation), through engine.lifecycle; the view and the other screens follow."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.pilot import Pilot
from textual.widgets import DataTable

from engine.store import open_store
from tests.tui.conftest import SIZE, settle, until
from tests.tui.test_impact import open_rules, planned
from tests.tui.test_screens_users import provision
from tui.app import make_app
from tui.facade import Facade, FacadeError
from tui.screens.audit import AuditScreen
from tui.screens.confirm import ConfirmScreen
from tui.screens.rules import RulesScreen
from tui.screens.users import UsersScreen
from tui.widgets.search_table import SearchTable


def table_of(screen: UsersScreen) -> DataTable[Any]:
    return screen.query_one(SearchTable).query_one(DataTable)


def listed(screen: UsersScreen) -> list[str]:
    """The username column as shown (a disabled account's with its ⊘ marker)."""
    table = table_of(screen)
    cells = (table.get_row_at(i)[1] for i in range(table.row_count))
    return [c.plain if isinstance(c, Text) else str(c) for c in cells]


def stored(facade: Facade, username: str) -> tuple[bool, str | None] | None:
    """(exists, disabled_at) of the account in the store; None when it is gone."""
    store = open_store(facade.config)
    try:
        user = store.user_by_username(username)
    finally:
        store.close()
    return None if user is None else (True, user.disabled_at)


async def open_users(pilot: Pilot[None]) -> UsersScreen:
    await settle(pilot)
    pilot.app.screen.set_focus(None)
    await pilot.press("4")
    screen = pilot.app.screen
    assert isinstance(screen, UsersScreen)
    await until(pilot, lambda: table_of(screen).row_count == 2)
    table_of(screen).focus()
    return screen


async def test_disable_and_enable_change_the_store_and_the_list(facade: Facade) -> None:
    provision(facade)
    app = make_app(facade)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_users(pilot)
        table = table_of(screen)
        table.move_cursor(row=1)  # grace.hopper: the cursor stays on her after each change
        assert listed(screen) == ["ada.lovelace", "grace.hopper"]

        await pilot.press("d")
        await until(pilot, lambda: listed(screen)[1] == "⊘ grace.hopper")
        assert stored(facade, "grace.hopper") == (True, "2024-05-01T12:00:00Z")
        assert stored(facade, "ada.lovelace") == (True, None)
        assert table.cursor_row == 1

        await pilot.press("d")  # again: nothing changes
        await until(pilot, lambda: listed(screen)[1] == "⊘ grace.hopper")

        await pilot.press("e")
        await until(pilot, lambda: listed(screen)[1] == "grace.hopper")
        assert stored(facade, "grace.hopper") == (True, None)
        assert table.cursor_row == 1

        # Each change left an audit row, which the Audit screen shows.
        screen.set_focus(None)
        await pilot.press("5")
        audit = app.screen
        assert isinstance(audit, AuditScreen)
        await until(pilot, lambda: audit.page is not None and audit.page.total == 6)
        outcomes = [row[4] for row in audit.page.rows] if audit.page else []
        assert outcomes[:2] == ["enabled", "disabled"]


async def test_delete_asks_first_then_removes_the_account(facade: Facade) -> None:
    provision(facade)
    app = make_app(facade)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_users(pilot)
        await pilot.press("delete")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        dialog = app.screen
        assert isinstance(dialog, ConfirmScreen)
        assert "Delete ada.lovelace (account 1)?" in dialog.question
        assert dialog.focused is not None and dialog.focused.id == "no"  # enter: kept

        await pilot.press("n")  # no: nothing deleted
        await until(pilot, lambda: app.screen is screen)
        assert stored(facade, "ada.lovelace") is not None
        assert listed(screen) == ["ada.lovelace", "grace.hopper"]

        await pilot.press("delete")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.press("y")
        await until(pilot, lambda: listed(screen) == ["grace.hopper"])
        assert stored(facade, "ada.lovelace") is None
        assert table_of(screen).cursor_row == 0
        assert screen.query_one(SearchTable).total_rows == 1


async def test_the_rules_impact_follows_a_deleted_account(facade: Facade) -> None:
    """Deleting an account deletes its recorded sign-ins: the Rules screen, told the
    store changed, plans again over those left."""
    provision(facade)
    app = make_app(facade)
    async with app.run_test(size=SIZE) as pilot:
        rules = await open_rules(pilot)
        assert rules.impact is not None and rules.impact.recorded == 3
        rules.set_focus(None)
        await open_users(pilot)
        await pilot.press("delete")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.press("y")
        await until(pilot, lambda: stored(facade, "ada.lovelace") is None)
        await planned(pilot, rules)
        await until(pilot, lambda: rules.impact is not None and rules.impact.recorded == 2)
        assert isinstance(rules, RulesScreen)


async def test_the_actions_are_in_the_palette_and_need_a_row(facade: Facade) -> None:
    entries = {action for _, _, action in UsersScreen.palette_entries()}
    assert {"action_disable_user", "action_enable_user", "action_delete_user"} <= entries
    provision(facade)
    app = make_app(facade)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_users(pilot)
        app.go("users", "action_disable_user")  # as the palette runs it
        await until(pilot, lambda: listed(screen)[:1] == ["⊘ ada.lovelace"])
        assert stored(facade, "ada.lovelace") == (True, "2024-05-01T12:00:00Z")

        # With no row (a search that finds nothing), an action says so and does nothing.
        screen.query_one(SearchTable).query_one("Input").focus()
        await pilot.press(*"nobody")
        await until(pilot, lambda: table_of(screen).row_count == 0)
        screen.action_enable_user()
        await settle(pilot)
        assert stored(facade, "ada.lovelace") == (True, "2024-05-01T12:00:00Z")


def test_the_facade_reports_an_unknown_account(facade: Facade) -> None:
    provision(facade)
    for method in (facade.disable_user, facade.enable_user, facade.delete_user):
        try:
            method(99)
        except FacadeError as exc:
            assert "no user with id 99" in str(exc)
        else:
            raise AssertionError("no error for an unknown account")
    assert facade.disable_user(1) == "disabled ada.lovelace (account 1)"
    assert facade.disable_user(1) == "ada.lovelace (account 1) was already disabled"
    assert facade.enable_user(1) == "enabled ada.lovelace (account 1)"
    assert facade.delete_user(2).startswith("deleted grace.hopper (account 2) with 1 identity link")


async def test_stale_in_the_search_lists_the_accounts_not_seen_since(facade: Facade) -> None:
    import sqlite3

    from textual.widgets import Input

    provision(facade)
    assert facade.config.store.path is not None
    with sqlite3.connect(facade.config.store.path) as db:  # grace last signed in long ago
        db.execute(
            "UPDATE identity_links SET last_seen_at = '2023-01-01T00:00:00Z' WHERE user_id ="
            " (SELECT id FROM users WHERE username = 'grace.hopper')"
        )
    app = make_app(facade)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_users(pilot)
        screen.query_one(Input).focus()
        await pilot.press(*"stale:90d")
        await until(pilot, lambda: listed(screen) == ["grace.hopper"])
        screen.query_one(Input).value = "stale:2024-05-02"  # both, oldest first
        await until(pilot, lambda: listed(screen) == ["grace.hopper", "ada.lovelace"])
        screen.query_one(Input).value = ""
        await until(pilot, lambda: listed(screen) == ["ada.lovelace", "grace.hopper"])
