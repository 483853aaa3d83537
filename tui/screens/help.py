"""The help screen (f1): every key, where it works and what it does."""

from __future__ import annotations

from rich import box
from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

KEYS: tuple[tuple[str, str, str], ...] = (
    ("ctrl+p", "everywhere", "command palette: every action, searchable"),
    ("f1", "everywhere", "this help"),
    ("ctrl+q", "everywhere", "quit (asks first about unsaved rules or connection edits)"),
    ("ctrl+s", "Connections", "save the form (checked by the config loader; comments kept)"),
    ("n  i  e", "Connections", "new connection · import IdP metadata · edit its rules"),
    ("ctrl+s  ctrl+f", "Rules", "save · format"),
    ("f8", "Rules", "jump to the next problem (or choose one in the panel)"),
    ("f9", "Rules", "preview · impact (whom the text would change or deny)"),
    ("ctrl+t", "Rules, Test bench", "run every case"),
    ("escape", "Rules", "leave the editor (then 1–5 work again)"),
    ("d  a", "Test bench", "dry-run · apply the token"),
    ("enter", "Test bench cases", "run that case again"),
    ("/  [  ]", "Users, Audit", "search · previous page · next page"),
    ("enter", "Users, Audit", "open the account"),
    ("d  e  delete", "Users", "disable · enable · delete the account (delete asks first)"),
)

NOTE = (
    "Nothing in the Rules preview, the impact panel or a dry run is ever written: only "
    "apply, save and the Users screen's disable, enable and delete change anything, "
    "through the same functions as the command line."
)


class HelpScreen(ModalScreen[None]):
    """Keys and screens; any of escape, f1 or q closes it."""

    BINDINGS = [Binding("escape,f1,q", "close", "Close")]

    def __init__(self, screens: dict[str, tuple[str, str]]) -> None:
        super().__init__()
        self.screens = screens

    def compose(self) -> ComposeResult:
        table = Table(box=box.SIMPLE_HEAD, expand=True, title="jitprov: keys")
        table.add_column("key", style="bold cyan", no_wrap=True)
        table.add_column("where", style="dim")
        table.add_column("what")
        for key, title in self.screens.values():
            table.add_row(key, "everywhere", f"the {title} screen")
        for row in KEYS:
            table.add_row(*row)
        with VerticalScroll(id="help"):
            yield Static(Group(table, Text(NOTE, style="italic")))

    def action_close(self) -> None:
        self.dismiss(None)
