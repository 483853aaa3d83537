"""A compact list of connections with their rules status, for the Rules screen's side:
`okta  saml2  ✔`. Choosing one posts `ConnectionList.Chosen`."""

from __future__ import annotations

from collections.abc import Sequence

from rich.text import Text
from textual.message import Message
from textual.widgets import OptionList
from textual.widgets.option_list import Option

from tui.widgets.views import ConnectionRow


class ConnectionList(OptionList):
    """Connections by id; the current one is highlighted."""

    class Chosen(Message):
        def __init__(self, connection_id: str) -> None:
            super().__init__()
            self.connection_id = connection_id

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.rows: tuple[ConnectionRow, ...] = ()

    def show(self, rows: Sequence[ConnectionRow], current: str | None) -> None:
        self.rows = tuple(rows)
        self.clear_options()
        width = max((len(r.id) for r in rows), default=0)
        for row in rows:
            style = "red" if row.errors or row.unreadable else "yellow" if row.warnings else "green"
            status = row.status.replace(" errors", "").replace(" error", "")
            status = status.replace(" warnings", "").replace(" warning", "")
            text = Text(f"{row.id:<{width}}  {row.protocol:<5}  ")
            text.append(status.replace(" unreadable", " file"), style=style)
            self.add_option(Option(text, id=row.id))
        ids = [r.id for r in rows]
        if current in ids:
            self.highlighted = ids.index(current)

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        if event.option.id:
            self.post_message(self.Chosen(event.option.id))
