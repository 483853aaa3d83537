"""One account in detail: every field, its sets with each member's source, its links
and its audit history. A dialog (ModalScreen); escape closes it."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import DataTable, Label

from tui.facade import UserDetail


class UserDetailScreen(ModalScreen[None]):
    """The account's fields, sets, links and audit rows."""

    BINDINGS = [Binding("escape,q", "close", "Close")]

    def __init__(self, detail: UserDetail) -> None:
        super().__init__()
        self.detail = detail

    def compose(self) -> ComposeResult:
        detail = self.detail
        with Vertical(id="user-detail"):
            times = f"created {detail.created_at or '—'} · updated {detail.updated_at or '—'}"
            if detail.disabled_at is not None:
                times += f" · disabled since {detail.disabled_at} (e enables it)"
            yield Label(times, id="user-times")
            with VerticalScroll():
                yield DataTable(id="user-fields", cursor_type="row", show_cursor=False)
                yield DataTable(id="user-links", cursor_type="row", show_cursor=False)
                yield DataTable(id="user-audit", cursor_type="row", show_cursor=False)

    def on_mount(self) -> None:
        detail = self.detail
        username = dict(detail.fields).get("username") or f"#{detail.id}"
        self.query_one("#user-detail").border_title = f"user {username} (id {detail.id})"
        fields = self.query_one("#user-fields", DataTable)
        fields.border_title = "fields and sets"
        fields.add_columns("field", "value", "source")
        for name, value in detail.fields:
            fields.add_row(name, value, "")
        for name, members in detail.sets:
            for value, source in members:
                fields.add_row(name, value, source)
            if not members:
                fields.add_row(name, "", "")
        links = self.query_one("#user-links", DataTable)
        links.border_title = "identity links"
        links.add_columns("connection", "subject")
        for connection, subject in detail.links:
            links.add_row(connection, subject)
        audit = self.query_one("#user-audit", DataTable)
        audit.border_title = "audit history"
        audit.add_columns("id", "at", "connection", "outcome", "reason / message")
        for ident, at, connection, _subject, outcome, message, _user in detail.audit:
            audit.add_row(str(ident), at, connection, outcome, message)

    def action_close(self) -> None:
        self.dismiss(None)
