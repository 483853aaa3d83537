"""The Audit screen: the audit log, newest first, searchable and paged; enter on a row
opens that row's account (when it has one)."""

from __future__ import annotations

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.screen import Screen
from textual.widgets import Footer, Header

from tui.facade import PAGE, AuditPage, Facade
from tui.screens.user_detail import UserDetailScreen
from tui.widgets.nav import NavBar, PaletteCommand
from tui.widgets.preview import OUTCOME_STYLES
from tui.widgets.search_table import SearchTable


class AuditScreen(Screen[None]):
    """Every token's outcome."""

    def __init__(self, facade: Facade) -> None:
        super().__init__()
        self.facade = facade
        self.page: AuditPage | None = None

    def compose(self) -> ComposeResult:
        yield Header()
        yield NavBar("audit")
        yield SearchTable(
            ("id", "at", "connection", "subject", "outcome", "reason / message", "user"),
            "search subject, outcome, reason… (/)",
            PAGE,
            id="audit",
        )
        yield Footer()

    def on_mount(self) -> None:
        self.query_one(SearchTable).border_title = "audit log"
        self.load("", 0)

    def on_screen_resume(self) -> None:
        table = self.query_one(SearchTable)
        self.load(table.query_text, table.row_offset)

    def palette_commands(self) -> list[PaletteCommand]:
        table = self.query_one(SearchTable)
        return [
            ("Search audit", "focus the search box (/)", table.action_search),
            ("Reload audit", "query the store again", lambda: self.load(table.query_text, 0)),
        ]

    def on_search_table_query_changed(self, event: SearchTable.QueryChanged) -> None:
        self.load(event.query, event.row_offset)

    @work(thread=True, exclusive=True, group="audit", exit_on_error=False)
    def load(self, query: str, offset: int) -> None:
        try:
            page = self.facade.audit(query, offset=offset)
        except Exception as exc:
            self.app.call_from_thread(self.notify, str(exc), severity="error", timeout=8)
            return
        self.app.call_from_thread(self.show, page)

    def show(self, page: AuditPage) -> None:
        self.page = page
        rows = []
        for row in page.rows:
            ident, at, connection, subject, outcome, detail, user = row
            style = OUTCOME_STYLES.get(outcome, "")
            cells = (str(ident), at, connection, subject, Text(outcome, style=style), detail, user)
            rows.append((str(ident), cells))
        self.query_one(SearchTable).show_page(rows, page.total, page.offset)

    def on_search_table_row_chosen(self, event: SearchTable.RowChosen) -> None:
        row = next(
            (r for r in (self.page.rows if self.page else ()) if str(r[0]) == event.key), None
        )
        if row is None or not row[6]:
            self.notify("this audit row has no account", severity="information")
            return
        self.open_user(int(row[6]))

    @work(thread=True, exclusive=True, group="user", exit_on_error=False)
    def open_user(self, user_id: int) -> None:
        try:
            detail = self.facade.user(user_id)
        except Exception as exc:
            self.app.call_from_thread(self.notify, str(exc), severity="error")
            return
        self.app.call_from_thread(self.app.push_screen, UserDetailScreen(detail))
