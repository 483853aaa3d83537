"""The Users screen: a searchable, paged table of accounts; enter opens one.

Queries run in an exclusive worker (a new search cancels the previous one), a page at a
time, so tens of thousands of accounts never block typing.
"""

from __future__ import annotations

from textual import work
from textual.app import ComposeResult
from textual.screen import Screen
from textual.widgets import Footer, Header

from tui.facade import PAGE, Facade, UsersPage
from tui.screens.user_detail import UserDetailScreen
from tui.widgets.nav import NavBar, PaletteCommand
from tui.widgets.search_table import SearchTable


class UsersScreen(Screen[None]):
    """Provisioned accounts."""

    def __init__(self, facade: Facade) -> None:
        super().__init__()
        self.facade = facade

    def compose(self) -> ComposeResult:
        yield Header()
        yield NavBar("users")
        yield SearchTable(
            ("id", "username", "email", "display name", "active"),
            "search username, email, name… (/)",
            PAGE,
            id="users",
        )
        yield Footer()

    def on_mount(self) -> None:
        self.query_one(SearchTable).border_title = "users"
        self.load("", 0)

    def on_screen_resume(self) -> None:
        table = self.query_one(SearchTable)
        self.load(table.query_text, table.row_offset)

    def palette_commands(self) -> list[PaletteCommand]:
        table = self.query_one(SearchTable)
        return [
            ("Search users", "focus the search box (/)", table.action_search),
            ("Reload users", "query the store again", lambda: self.load(table.query_text, 0)),
        ]

    def on_search_table_query_changed(self, event: SearchTable.QueryChanged) -> None:
        self.load(event.query, event.row_offset)

    @work(thread=True, exclusive=True, group="users", exit_on_error=False)
    def load(self, query: str, offset: int) -> None:
        try:
            page = self.facade.users(query, offset=offset)
        except Exception as exc:
            self.app.call_from_thread(self.notify, str(exc), severity="error", timeout=8)
            return
        self.app.call_from_thread(self.show, page)

    def show(self, page: UsersPage) -> None:
        rows = [
            (str(r.id), (str(r.id), r.username, r.email, r.display_name, r.active))
            for r in page.rows
        ]
        self.query_one(SearchTable).show_page(rows, page.total, page.offset)

    def on_search_table_row_chosen(self, event: SearchTable.RowChosen) -> None:
        self.open_user(int(event.key))

    @work(thread=True, exclusive=True, group="user", exit_on_error=False)
    def open_user(self, user_id: int) -> None:
        try:
            detail = self.facade.user(user_id)
        except Exception as exc:
            self.app.call_from_thread(self.notify, str(exc), severity="error")
            return
        self.app.call_from_thread(self.app.push_screen, UserDetailScreen(detail))
