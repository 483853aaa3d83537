"""Refilling a DataTable so that its columns fit what it shows now."""

from __future__ import annotations

from textual.widgets import DataTable


def empty(table: DataTable) -> None:
    """Remove every row, and reset the columns' widths: Textual's `clear()` keeps the
    columns, and an auto-width column keeps the width of the widest value it has ever
    held, so what a table showed before (an earlier preview, a page of long names)
    would widen what it shows now, and the same screen would draw two ways."""
    columns = [
        (column.label, column.key.value, None if column.auto_width else column.width)
        for column in table.ordered_columns
    ]
    table.clear(columns=True)
    for label, key, width in columns:
        table.add_column(label, key=key, width=width)
