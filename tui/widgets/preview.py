"""The live preview under the editor: pick a token, see the account it would give.

Receives a `Preview` (a dry run: nothing is written) and shows the outcome, each field's
planned value, its stored value when it changes, and the lines that set it. Choosing a
token posts `PreviewPanel.TokenChosen`. The values of the connection's `redact` fields
show as "***", as in every other view (the old values and the message come redacted
from the engine's Result already).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from pathlib import Path

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.widgets import DataTable, Label, Select

from engine.result import REDACTED
from tui.widgets.tables import empty
from tui.widgets.views import Preview

OUTCOME_STYLES = {
    "created": "green",
    "updated": "green",
    "linked": "green",
    "unchanged": "cyan",
    "denied": "yellow",
    "rejected": "red",
    "error": "red",
}


class PreviewPanel(Vertical):
    """A token picker and the planned account."""

    class TokenChosen(Message):
        def __init__(self, path: Path | None) -> None:
            super().__init__()
            self.path = path

    def compose(self) -> ComposeResult:
        with Horizontal(id="preview-head"):
            yield Select[Path]([], prompt="choose a sample token", id="preview-token", compact=True)
            yield Label("", id="preview-outcome")
        yield Label("", id="preview-message")
        yield DataTable(id="preview-table", cursor_type="row", show_cursor=False)

    def on_mount(self) -> None:
        table = self.query_one("#preview-table", DataTable)
        table.add_columns("field", "value", "vs stored", "set by")

    def set_tokens(self, tokens: Sequence[tuple[str, Path]], current: Path | None) -> None:
        select: Select[Path] = self.query_one("#preview-token", Select)
        with self.prevent(Select.Changed):
            select.set_options(tokens)
            if current is not None and current in {p for _, p in tokens}:
                select.value = current

    def on_select_changed(self, event: Select.Changed) -> None:
        event.stop()
        value = event.value
        self.post_message(self.TokenChosen(value if isinstance(value, Path) else None))

    def show(self, preview: Preview | None, redact: Collection[str] = ()) -> None:
        """Show a preview; `redact`: the connection's redacted names."""
        outcome = self.query_one("#preview-outcome", Label)
        message = self.query_one("#preview-message", Label)
        table = self.query_one("#preview-table", DataTable)
        empty(table)
        if preview is None:
            outcome.update("")
            message.update("choose a token to preview what the rules give (a dry run)")
            return
        style = OUTCOME_STYLES.get(preview.outcome, "")
        outcome.update(Text(preview.outcome, style=f"bold {style}"))
        message.update(preview.message or "")
        for row in preview.rows:
            shown = REDACTED if row.field in redact and row.value else row.value
            value = Text(shown, style="bold" if row.changed else "")
            diff = Text(row.diff or "", style="yellow" if row.changed else "dim")
            lines = ", ".join(map(str, row.lines))
            where = f"← line{'s' * (len(row.lines) > 1)} {lines}" if row.lines else ""
            table.add_row(row.field, value, diff, where)
