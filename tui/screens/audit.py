"""The Audit screen: the audit log, newest first, searchable and paged; enter on a row
opens that row's account (when it has one)."""

from __future__ import annotations

from rich.text import Text

from tui.facade import AuditPage, Facade
from tui.screens.listing import ListingScreen
from tui.widgets.preview import OUTCOME_STYLES
from tui.widgets.search_table import SearchTable


class AuditScreen(ListingScreen):
    """Every token's outcome."""

    list_id = "audit"
    table_title = "audit log"
    columns = ("id", "at", "connection", "subject", "outcome", "reason / message", "user")
    placeholder = "search subject, outcome, reason… (/)"

    def __init__(self, facade: Facade) -> None:
        super().__init__(facade)
        self.page: AuditPage | None = None

    def fetch(self, query: str, offset: int) -> AuditPage:
        return self.facade.audit(query, offset=offset)

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
