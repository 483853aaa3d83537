"""The jitprov Textual app: five screens (modes), the command palette, help and quit.

Kept small on purpose: each screen owns its own state and workers; the app only holds
the engine facade (handed to it by `make_app`, so tests can give it a temporary
workspace), switches screens, and guards quitting with unsaved rules or connection edits.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from functools import partial
from typing import Protocol

from textual.app import App
from textual.binding import Binding
from textual.command import DiscoveryHit, Hit, Hits, Provider
from textual.screen import Screen
from textual.widgets import Input, TextArea

from tui.facade import Facade
from tui.screens.audit import AuditScreen
from tui.screens.bench import BenchScreen
from tui.screens.confirm import UnsavedChangesScreen
from tui.screens.connections import ConnectionsScreen
from tui.screens.help import HelpScreen
from tui.screens.rules import RulesScreen
from tui.screens.users import UsersScreen
from tui.widgets.nav import (
    NARROW_COLUMNS,
    SCREENS,
    NavBar,
    PaletteCommand,
    PaletteEntry,
    WorkspaceChanged,
)


class PaletteScreen(Protocol):
    """What the app needs of a screen class: made on a facade, its palette entries."""

    def __call__(self, facade: Facade) -> Screen[None]: ...

    def palette_entries(self) -> list[PaletteEntry]: ...


class JitprovCommands(Provider):
    """Every action of every screen, each with its key, for the command palette: an
    action of another screen shows that screen first (asking about unsaved edits as
    leaving the current one would)."""

    def _commands(self) -> list[PaletteCommand]:
        app = self.app
        assert isinstance(app, JitprovApp)
        commands: list[PaletteCommand] = [
            (f"Go to {title}", f"show the {title} screen ({key})", partial(app.go, mode))
            for mode, (key, title) in SCREENS.items()
        ]
        for mode, (_, title) in SCREENS.items():
            for name, help_text, action in app.screen_types[mode].palette_entries():
                run = partial(app.go, mode, action)
                commands.append((f"{title}: {name}", help_text, run))
        commands.append(("Help", "keys and screens (f1)", app.action_help))
        commands.append(("Quit", "asks first about unsaved edits (ctrl+q)", app.action_quit))
        return commands

    async def discover(self) -> Hits:
        for name, help_text, callback in self._commands():
            yield DiscoveryHit(name, callback, help=help_text)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for name, help_text, callback in self._commands():
            score = matcher.match(name)
            if score > 0:
                yield Hit(score, matcher.highlight(name), callback, help=help_text)


class JitprovApp(App[None]):
    """Connections, rules, the test bench, users and audit of one workspace."""

    CSS_PATH = "app.tcss"
    # Classes on every screen by the terminal's size, for the layouts in app.tcss.
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (NARROW_COLUMNS, "-wide")]
    VERTICAL_BREAKPOINTS = [(0, "-short"), (36, "-tall")]
    TITLE = "jitprov"
    COMMANDS = App.COMMANDS | {JitprovCommands}
    BINDINGS = [
        *(
            Binding(key, f"go('{mode}')", title, tooltip=f"Show the {title} screen", show=False)
            for mode, (key, title) in SCREENS.items()
        ),
        Binding("f1", "help", "Help", tooltip="Keys and screens"),
        Binding("ctrl+q", "quit", "Quit", priority=True),
        Binding("escape", "leave_input", "Leave the input", show=False),
    ]

    def __init__(self, facade: Facade) -> None:
        super().__init__()
        self.facade = facade
        screens: dict[str, PaletteScreen] = {
            "connections": ConnectionsScreen,
            "rules": RulesScreen,
            "bench": BenchScreen,
            "users": UsersScreen,
            "audit": AuditScreen,
        }
        self.screen_types = screens
        self.mode_screens: dict[str, Screen[None]] = {}  # each mode's screen, once made
        for mode, screen in screens.items():
            self.add_mode(mode, partial(self._make_screen, mode, screen))

    def _make_screen(self, mode: str, screen: Callable[[Facade], Screen[None]]) -> Screen[None]:
        made = screen(self.facade)
        self.mode_screens[mode] = made
        return made

    def on_mount(self) -> None:
        self.sub_title = self.facade.label()
        self.switch_mode("connections")

    def announce(self, what: str) -> None:
        """Tell every screen made so far that `what` changed (see WorkspaceChanged); a
        screen not made yet reads everything when it is."""
        for screen in self.mode_screens.values():
            screen.post_message(WorkspaceChanged(what))

    def go(self, mode: str, action: str | None = None) -> None:
        """Show one of the five screens (the screen left may ask about unsaved edits),
        then run its method `action` when one is given (from the palette)."""

        def switch() -> None:
            if action is None:
                self.switch_mode(mode)
            else:
                self.run_worker(self._show_then(mode, action), exit_on_error=False)

        guard = getattr(self.screen, "leave_guard", None)
        if guard is None or self.current_mode == mode:
            switch()
            return
        guard(switch)

    async def _show_then(self, mode: str, action: str) -> None:
        if self.current_mode != mode:
            await self.switch_mode(mode)
        done = getattr(self.mode_screens[mode], action)()
        if inspect.isawaitable(done):
            await done

    def action_go(self, mode: str) -> None:
        self.go(mode)

    def on_nav_bar_go(self, event: NavBar.Go) -> None:
        self.go(event.mode)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Escape leaves a text input (screens and dialogs with an escape of their own
        take it first); anywhere else it does nothing here."""
        if action == "leave_input":
            return isinstance(self.focused, Input)
        return True

    def action_leave_input(self) -> None:
        """Escape in any input: focus the screen's first widget that is not one, so the
        screen keys (1–5, the palette) work again; no widget if there is none."""
        for widget in self.screen.focus_chain:
            if not isinstance(widget, Input | TextArea):
                widget.focus()
                return
        self.screen.set_focus(None)

    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen(SCREENS))

    def rules_screen(self) -> RulesScreen | None:
        """The Rules screen when it has been opened (it keeps unsaved edits)."""
        screen = self.mode_screens.get("rules")
        return screen if isinstance(screen, RulesScreen) else None

    async def edit_rules(self, connection_id: str) -> None:
        """Open the Rules screen on a connection's rules (from the Connections screen)."""
        await self.switch_mode("rules")
        screen = self.rules_screen()
        if screen is not None:
            screen.request_open(connection_id)

    async def action_run_cases(self) -> None:
        """Show the Test bench and run every case there."""
        await self.switch_mode("bench")
        bench = self.mode_screens.get("bench")
        if isinstance(bench, BenchScreen):
            bench.action_run_cases()

    async def action_quit(self) -> None:
        """Quit, asking first about unsaved edits: the connection form's, then the rules'."""
        connections = self.mode_screens.get("connections")
        if isinstance(connections, ConnectionsScreen):
            connections.leave_guard(self._quit_unless_rules)
            return
        self._quit_unless_rules()

    def _quit_unless_rules(self) -> None:
        rules = self.rules_screen()
        if rules is None or not rules.modified:
            self.exit()
            return

        def decided(choice: str | None) -> None:
            if choice == "discard":
                self.exit()
            elif choice == "save":  # asks first when the rules would deny many accounts
                rules.request_save(then=self.exit)

        self.push_screen(UnsavedChangesScreen(rules.file_label), decided)


def make_app(facade: Facade) -> JitprovApp:
    """The app on a workspace; the `jitprov tui` command and the tests both use this."""
    return JitprovApp(facade)
