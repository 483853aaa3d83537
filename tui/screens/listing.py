"""A searchable, paged listing screen (Users, Audit): the shared behaviour.

Queries run in an exclusive worker (a new search cancels the previous one), a page at a
time, so tens of thousands of rows never block typing; `enter` on a row opens an account.
Subclasses name their columns and texts, fetch a page, and turn it into table rows.
"""

from __future__ import annotations

from typing import Any, ClassVar

from textual import work
from textual.app import ComposeResult
from textual.screen import Screen
from textual.widgets import Header

from tui.facade import PAGE, Facade
from tui.screens.user_detail import UserDetailScreen
from tui.widgets.nav import KeyFooter, NavBar, PaletteEntry, WorkspaceChanged
from tui.widgets.search_table import SearchTable


class ListingScreen(Screen[None]):
    """One searchable table of the store; see the subclasses for what it lists."""

    AUTO_FOCUS = "SearchTable DataTable"  # the rows, every time: `/` searches

    list_id: ClassVar[str]  # the NavBar entry and the table's id
    table_title: ClassVar[str]  # (not `title`: that is the screen's own reactive)
    columns: ClassVar[tuple[str, ...]]
    placeholder: ClassVar[str]

    def __init__(self, facade: Facade) -> None:
        super().__init__()
        self.facade = facade

    def fetch(self, query: str, offset: int) -> Any:
        """A page from the facade (runs in a worker thread)."""
        raise NotImplementedError

    def show(self, page: Any) -> None:
        """Put a fetched page into the table."""
        raise NotImplementedError

    def compose(self) -> ComposeResult:
        yield Header()
        yield NavBar(self.list_id)
        yield SearchTable(self.columns, self.placeholder, PAGE, id=self.list_id)
        yield KeyFooter()

    def on_mount(self) -> None:
        self.query_one(SearchTable).border_title = self.table_title
        self.load("", 0)

    def on_screen_resume(self) -> None:
        table = self.query_one(SearchTable)
        self.load(table.query_text, table.row_offset)

    def on_workspace_changed(self, event: WorkspaceChanged) -> None:
        if event.what == "store" and self.is_current:  # else: on resume, as above
            self.on_screen_resume()

    @classmethod
    def palette_entries(cls) -> list[PaletteEntry]:
        noun = cls.list_id
        return [
            (f"Search {noun}", "focus the search box (/)", "action_search"),
            (f"Reload {noun}", "query the store again", "action_reload"),
        ]

    def action_search(self) -> None:
        self.query_one(SearchTable).action_search()

    def action_reload(self) -> None:
        self.load(self.query_one(SearchTable).query_text, 0)

    def on_search_table_query_changed(self, event: SearchTable.QueryChanged) -> None:
        self.load(event.query, event.row_offset)

    @work(thread=True, exclusive=True, group="listing", exit_on_error=False)
    def load(self, query: str, offset: int) -> None:
        try:
            page = self.fetch(query, offset)
        except Exception as exc:
            self.app.call_from_thread(self.notify, str(exc), severity="error", timeout=8)
            return
        self.app.call_from_thread(self.show, page)

    @work(thread=True, exclusive=True, group="user", exit_on_error=False)
    def open_user(self, user_id: int) -> None:
        try:
            detail = self.facade.user(user_id)
        except Exception as exc:
            self.app.call_from_thread(self.notify, str(exc), severity="error")
            return
        self.app.call_from_thread(self.app.push_screen, UserDetailScreen(detail))
