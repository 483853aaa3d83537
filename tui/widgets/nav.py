"""The screens bar under the header: `1 Connections  2 Rules  …`, the current one lit.

Clicking a name posts `NavBar.Go`; the keys themselves are app bindings.
"""

from __future__ import annotations

from collections.abc import Callable

from rich.text import Text
from textual import events
from textual.message import Message
from textual.widget import Widget
from textual.widgets import Footer, Static

# A command palette entry: (name, help, callback); screens list theirs in
# `palette_commands()`, the app's provider adds them to its own.
PaletteCommand = tuple[str, str, Callable[[], object]]
# A screen's action in the command palette: its title, a help line that ends with its
# key, and the name of the screen's method that runs it.
PaletteEntry = tuple[str, str, str]


class WorkspaceChanged(Message):
    """Something every screen that shows it must show anew: "connections" (added,
    edited, imported), "rules" (a rules file saved) or "store" (a token applied). The
    app sends one to each screen (JitprovApp.announce); nothing polls."""

    def __init__(self, what: str) -> None:
        super().__init__()
        self.what = what


def announce(screen: Widget, what: str) -> None:
    """Tell every screen that `what` changed (JitprovApp.announce); a screen shown by
    another app (a test's) is told itself."""
    tell_all = getattr(screen.app, "announce", None)
    if tell_all is not None:
        tell_all(what)
    else:
        screen.post_message(WorkspaceChanged(what))


NARROW_COLUMNS = 120  # the app's "-narrow" breakpoint


class KeyFooter(Footer):
    """The keys bar, compact (no gap between keys) below NARROW_COLUMNS, so that every
    screen's keys fit 80 columns whole instead of the last one being cut mid-word."""

    def on_resize(self, event: events.Resize) -> None:
        self.compact = event.size.width < NARROW_COLUMNS


SCREENS: dict[str, tuple[str, str]] = {
    "connections": ("1", "Connections"),
    "rules": ("2", "Rules"),
    "bench": ("3", "Test bench"),
    "users": ("4", "Users"),
    "audit": ("5", "Audit"),
}


class NavBar(Static):
    """Which screen this is, and how to reach the others."""

    class Go(Message):
        def __init__(self, mode: str) -> None:
            super().__init__()
            self.mode = mode

    def __init__(self, current: str) -> None:
        super().__init__(self._text(current), id="nav")
        self.current = current

    @staticmethod
    def _text(current: str) -> Text:
        text = Text()
        for mode, (key, title) in SCREENS.items():
            style = "bold reverse" if mode == current else ""
            text.append(f" {key} ", style="dim " + style)
            text.append(f"{title} ", style=style)
            text.append(" ")
        return text

    def on_click(self, event: object) -> None:
        offset = getattr(event, "x", 0)
        position = 0
        for mode, (key, title) in SCREENS.items():
            position += len(f" {key} {title}  ")
            if offset < position:
                self.post_message(self.Go(mode))
                return
