"""The Users screen: a searchable, paged table of accounts; enter opens one.

The search takes `stale:AGE` (`stale:90d`) for the accounts not seen since then.
`d` disables the highlighted account (its sign-ins are denied), `e` enables it again and
`delete` deletes it with its links, set members and recorded sign-ins, after asking.
Each goes through `engine.lifecycle` (one transaction and an audit row) in a worker;
then every screen is told the store changed, this one reloads its page (the cursor
stays on the account) and a disabled account shows `⊘` before its username.
"""

from __future__ import annotations

from rich.text import Text
from textual import work
from textual.binding import Binding
from textual.widgets import DataTable

from tui.facade import UsersPage
from tui.screens.confirm import ConfirmScreen
from tui.screens.listing import ListingScreen
from tui.widgets.nav import PaletteEntry, announce
from tui.widgets.search_table import SearchTable

DISABLED = "⊘"  # before a disabled account's username


class ConfirmDelete(ConfirmScreen):
    """Delete an account? "No" has the focus, so `enter` alone deletes nothing."""

    AUTO_FOCUS = "#no"


class UsersScreen(ListingScreen):
    """Provisioned accounts."""

    BINDINGS = [
        Binding("d", "disable_user", "Disable"),
        Binding("e", "enable_user", "Enable"),
        Binding("delete", "delete_user", "Delete"),
    ]

    list_id = "users"
    table_title = "users"
    columns = ("id", "username", "email", "display name", "active")
    placeholder = "search username, email, name…, or stale:90d (/)"

    def fetch(self, query: str, offset: int) -> UsersPage:
        return self.facade.users(query, offset=offset)

    def show(self, page: UsersPage) -> None:
        rows = []
        for r in page.rows:
            cells: tuple[str | Text, ...] = (str(r.id), r.username, r.email, r.display_name)
            if r.disabled_at is not None:  # marked, and dimmed
                name = Text.assemble((f"{DISABLED} ", "bold red"), (r.username, "dim"))
                dimmed = (Text(r.email, style="dim"), Text(r.display_name, style="dim"))
                cells = (str(r.id), name, *dimmed)
            rows.append((str(r.id), (*cells, r.active)))
        table = self.query_one(SearchTable).query_one(DataTable)
        current, index = self._selected_key(), table.cursor_row
        self.query_one(SearchTable).show_page(rows, page.total, page.offset)
        if current is not None and current in {key for key, _ in rows}:
            table.move_cursor(row=table.get_row_index(current), animate=False)
        elif current is not None and rows:  # it went (deleted): the row now in its place
            table.move_cursor(row=min(index, len(rows) - 1), animate=False)

    def on_search_table_row_chosen(self, event: SearchTable.RowChosen) -> None:
        self.open_user(int(event.key))

    @classmethod
    def palette_entries(cls) -> list[PaletteEntry]:
        return [
            *super().palette_entries(),
            ("Disable user", "deny the highlighted account's sign-ins (d)", "action_disable_user"),
            (
                "Enable user",
                "allow the highlighted account's sign-ins again (e)",
                "action_enable_user",
            ),
            (
                "Delete user",
                "delete the highlighted account, after asking (delete)",
                "action_delete_user",
            ),
        ]

    # -- the account lifecycle ---------------------------------------------------------
    def _selected_key(self) -> str | None:
        table = self.query_one(SearchTable).query_one(DataTable)
        if not table.row_count:
            return None
        key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        return None if key is None else str(key)

    def _selected(self) -> tuple[int, str] | None:
        """The highlighted account: (id, username as listed); None (and a notification)
        when the table is empty."""
        key = self._selected_key()
        if key is None:
            self.notify("no account is highlighted", severity="warning")
            return None
        table = self.query_one(SearchTable).query_one(DataTable)
        username = table.get_row(key)[1]
        name = username.plain if isinstance(username, Text) else str(username)
        return int(key), name.removeprefix(f"{DISABLED} ")

    def action_disable_user(self) -> None:
        if (selected := self._selected()) is not None:
            self.change_user("disable", selected[0])

    def action_enable_user(self) -> None:
        if (selected := self._selected()) is not None:
            self.change_user("enable", selected[0])

    def action_delete_user(self) -> None:
        selected = self._selected()
        if selected is None:
            return
        user_id, username = selected
        question = (
            f"Delete {username or 'this account'} (account {user_id})?\n\nIts identity links,"
            " set members and recorded sign-ins go with it; the audit log keeps its rows"
            " and one saying it was deleted."
        )

        def decided(yes: bool | None) -> None:
            if yes:
                self.change_user("delete", user_id)

        self.app.push_screen(ConfirmDelete(question, yes="Delete (y)"), decided)

    @work(thread=True, exclusive=True, group="user-change", exit_on_error=False)
    def change_user(self, action: str, user_id: int) -> None:
        """Disable, enable or delete account `user_id` through the facade."""
        run = {
            "disable": self.facade.disable_user,
            "enable": self.facade.enable_user,
            "delete": self.facade.delete_user,
        }[action]
        try:
            done = run(user_id)
        except Exception as exc:
            self.app.call_from_thread(
                self.notify, str(exc), title=f"not {action}d", severity="error"
            )
            return
        self.app.call_from_thread(self._changed, done)

    def _changed(self, done: str) -> None:
        self.notify(done)
        announce(self, "store")  # every screen that reads the store: this one reloads
