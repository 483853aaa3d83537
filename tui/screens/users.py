"""The Users screen: a searchable, paged table of accounts; enter opens one."""

from __future__ import annotations

from tui.facade import UsersPage
from tui.screens.listing import ListingScreen
from tui.widgets.search_table import SearchTable


class UsersScreen(ListingScreen):
    """Provisioned accounts."""

    list_id = "users"
    table_title = "users"
    columns = ("id", "username", "email", "display name", "active")
    placeholder = "search username, email, name… (/)"

    def fetch(self, query: str, offset: int) -> UsersPage:
        return self.facade.users(query, offset=offset)

    def show(self, page: UsersPage) -> None:
        rows = [
            (str(r.id), (str(r.id), r.username, r.email, r.display_name, r.active))
            for r in page.rows
        ]
        self.query_one(SearchTable).show_page(rows, page.total, page.offset)

    def on_search_table_row_chosen(self, event: SearchTable.RowChosen) -> None:
        self.open_user(int(event.key))
