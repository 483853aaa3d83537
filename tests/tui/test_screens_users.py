"""The Users and Audit screens: searchable tables over the store, and the detail view."""

from __future__ import annotations

from textual.widgets import DataTable, Input

from tests.tui.conftest import SIZE, settle
from tui.app import JitprovApp, make_app
from tui.facade import Facade
from tui.screens.audit import AuditScreen
from tui.screens.user_detail import UserDetailScreen
from tui.screens.users import UsersScreen
from tui.widgets.search_table import SearchTable


def provision(facade: Facade) -> None:
    """A few accounts and audit rows, written by the pipeline itself."""
    for name in ("okta-engineer", "okta-sales", "okta-contractor", "entra-jose"):
        connection = name.split("-")[0]
        facade.run_token(connection, facade.root / "samples" / f"{name}.toml", dry_run=False)


def rows(table: DataTable) -> list[list[str]]:
    return [[str(c) for c in table.get_row_at(i)] for i in range(table.row_count)]


async def test_users_table_search_and_detail(facade: Facade) -> None:
    provision(facade)
    app = make_app(facade)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("4")
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, UsersScreen)
        table = screen.query_one(SearchTable).query_one(DataTable)
        usernames = [row[1] for row in rows(table)]
        assert usernames == ["ada.lovelace", "grace.hopper"]

        screen.query_one(Input).focus()
        await pilot.press(*"lovelace")
        await pilot.pause(0.4)
        await settle(pilot)
        assert [row[1] for row in rows(table)] == ["ada.lovelace"]

        table.focus()
        await pilot.press("enter")
        await settle(pilot)
        detail = app.screen
        assert isinstance(detail, UserDetailScreen)
        fields = rows(detail.query_one("#user-fields", DataTable))
        assert ["username", "ada.lovelace", ""] in fields
        assert any(r[0] == "groups" and r[2] == "okta" for r in fields)
        links = rows(detail.query_one("#user-links", DataTable))
        assert links and links[0][0] == "okta"
        history = rows(detail.query_one("#user-audit", DataTable))
        assert [r[3] for r in history] == ["created"]
        await pilot.press("escape")
        assert app.screen is screen


async def test_audit_table_lists_every_outcome_and_searches(facade: Facade) -> None:
    provision(facade)
    app: JitprovApp = make_app(facade)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("5")
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, AuditScreen)
        table = screen.query_one(SearchTable).query_one(DataTable)
        outcomes = [row[4] for row in rows(table)]
        assert sorted(outcomes) == ["created", "created", "denied", "denied"]
        screen.query_one(Input).focus()
        await pilot.press(*"denied")
        await pilot.pause(0.4)
        await settle(pilot)
        assert [row[4] for row in rows(table)] == ["denied", "denied"]


async def test_empty_store_shows_no_rows(app: JitprovApp) -> None:
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("4")
        await settle(pilot)
        table = app.screen.query_one(SearchTable).query_one(DataTable)
        assert table.row_count == 0
        assert not (app.facade.root / "jitprov.db").exists()  # browsing creates nothing


async def test_twenty_thousand_users_page_and_search(facade: Facade) -> None:
    from datetime import UTC, datetime

    from engine.store import open_store

    store = open_store(facade.config)
    now = datetime(2024, 5, 1, tzinfo=UTC)

    def fill(txn: object) -> None:
        for i in range(20_000):
            fields = {"username": f"user{i:05}", "email": f"user{i:05}@example.com"}
            txn.insert_user(fields, now)  # type: ignore[attr-defined]

    store.atomic(fill)
    store.close()
    app = make_app(facade)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("4")
        await settle(pilot)
        search = app.screen.query_one(SearchTable)
        table = search.query_one(DataTable)
        assert table.row_count == 200 and search.total_rows == 20_000
        table.focus()
        await pilot.press("right_square_bracket")
        await settle(pilot)
        assert rows(table)[0][1] == "user00200"
        search.query_one(Input).focus()
        await pilot.press(*"user1999")
        await pilot.pause(0.4)
        await settle(pilot)
        assert [r[1] for r in rows(table)] == [f"user1999{i}" for i in range(10)]


async def test_escape_leaves_the_search_box_for_the_table(facade: Facade) -> None:
    provision(facade)
    app = make_app(facade)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("4")
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, UsersScreen)
        search = screen.query_one(SearchTable)
        await pilot.press("slash", *"ada")
        assert isinstance(app.focused, Input)
        await pilot.press("escape")
        assert app.focused is search.query_one(DataTable)
        await pilot.press("5")  # the screen keys work again
        await settle(pilot)
        assert isinstance(app.screen, AuditScreen)


async def test_escape_leaves_any_input(facade: Facade) -> None:
    app = make_app(facade)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        # The Connections form's first field that takes focus (its id is fixed once saved).
        field = next(w for w in app.screen.query(Input) if w.focusable)
        field.focus()
        await settle(pilot)
        assert app.focused is field
        await pilot.press("escape")
        assert not isinstance(app.focused, Input)
