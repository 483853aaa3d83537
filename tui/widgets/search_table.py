"""A search box over a paged table: the Users and Audit screens' shared widget.

Typing posts `SearchTable.QueryChanged` after a short pause (the screen queries in a
worker and hands back a page with `show_page`); `[` and `]` page; enter on a row posts
`SearchTable.RowChosen` with the row's key. The widget never queries anything itself.
"""

from __future__ import annotations

from collections.abc import Sequence

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.timer import Timer
from textual.widgets import DataTable, Input, Label

from tui.widgets.tables import empty

SEARCH_PAUSE = 0.2  # seconds of no typing before the query runs


class SearchTable(Vertical):
    """Search input, table and page label."""

    BINDINGS = [
        Binding("slash", "search", "Search"),
        Binding("right_square_bracket", "page(1)", "Next", tooltip="Next page"),
        Binding("left_square_bracket", "page(-1)", "Prev", tooltip="Previous page"),
        Binding("escape", "leave_search", "Leave search", show=False),
    ]

    class QueryChanged(Message):
        def __init__(self, query: str, offset: int) -> None:
            super().__init__()
            self.query = query
            self.row_offset = offset

    class RowChosen(Message):
        def __init__(self, key: str) -> None:
            super().__init__()
            self.key = key

    def __init__(self, columns: Sequence[str], placeholder: str, page: int, id: str) -> None:
        super().__init__(id=id)
        self.column_names = tuple(columns)
        self.placeholder = placeholder
        self.page_size = page
        self.row_offset = 0
        self.total_rows = 0
        self._timer: Timer | None = None

    def compose(self) -> ComposeResult:
        with Horizontal(classes="search-row"):
            yield Input(placeholder=self.placeholder, classes="search", compact=True)
            yield Label("", classes="page-label")
        yield DataTable(cursor_type="row", zebra_stripes=True)

    def on_mount(self) -> None:
        self.query_one(DataTable).add_columns(*self.column_names)

    @property
    def query_text(self) -> str:
        return self.query_one(Input).value

    def on_input_changed(self, event: Input.Changed) -> None:
        event.stop()
        if self._timer is not None:
            self._timer.stop()
        self._timer = self.set_timer(SEARCH_PAUSE, self._changed)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self._changed()
        self.query_one(DataTable).focus()

    def _changed(self) -> None:
        self.row_offset = 0
        self.post_message(self.QueryChanged(self.query_text, 0))

    def action_search(self) -> None:
        self.query_one(Input).focus()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Escape is the search box's: elsewhere in the widget it goes on to the screen."""
        if action == "leave_search":
            return self.query_one(Input).has_focus
        return True

    def action_leave_search(self) -> None:
        """Escape in the search box: to the table, where paging and enter work."""
        self.query_one(DataTable).focus()

    def action_page(self, step: int) -> None:
        offset = self.row_offset + step * self.page_size
        if 0 <= offset < max(self.total_rows, 1):
            self.row_offset = offset
            self.post_message(self.QueryChanged(self.query_text, offset))

    def show_page(
        self, rows: Sequence[tuple[str, Sequence[str | Text]]], total: int, offset: int
    ) -> None:
        """Rows as (key, cells); `total` rows match the query, this page starts at `offset`."""
        self.total_rows, self.row_offset = total, offset
        table = self.query_one(DataTable)
        empty(table)
        for key, cells in rows:
            table.add_row(*cells, key=key)
        last = offset + len(rows)
        label = f"{offset + 1}–{last} of {total}" if rows else "no rows"
        self.query_one(".page-label", Label).update(label)

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        if event.row_key.value is not None:
            self.post_message(self.RowChosen(event.row_key.value))
