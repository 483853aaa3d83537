"""The Rules screen: edit a connection's rules with problems and a live preview.

State lives here: which connection, the text as saved, the latest check and preview.
Every edit bumps `generation` and (re)starts a short debounce timer; when it fires, an
exclusive thread worker compiles the text once and dry-runs the chosen token against
the result (the preview never writes), then hands both back to the UI thread. A result
for an older generation is dropped, so what is shown always matches the text.
"""

from __future__ import annotations

import time
from pathlib import Path

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.reactive import reactive
from textual.screen import Screen
from textual.timer import Timer
from textual.widgets import Footer, Header, TextArea

from tui.facade import Check, ConnectionRow, Facade, FacadeError, Preview, Problem
from tui.screens.confirm import UnsavedChangesScreen
from tui.widgets.connection_list import ConnectionList
from tui.widgets.nav import NavBar, PaletteEntry, WorkspaceChanged, announce
from tui.widgets.preview import PreviewPanel
from tui.widgets.problems import ProblemList
from tui.widgets.rules_editor import Mark, RulesEditor

DEBOUNCE_SECONDS = 0.05


class RulesScreen(Screen[None]):
    """Edit, check, format, save and preview one connection's rules at a time."""

    BINDINGS = [
        Binding("ctrl+s", "save", "Save"),
        Binding("ctrl+f", "format", "Format"),
        Binding("ctrl+t", "app.run_cases", "Run cases"),
        Binding("f8", "next_problem", "Next problem"),
        Binding("escape", "leave_editor", "Leave editor", show=False),
    ]

    # What gets the focus when the screen is shown: the editor, every time. (With the
    # default, the first focusable widget, the connection list or the editor won by
    # whichever focus request came last.)
    AUTO_FOCUS = "RulesEditor"

    modified: reactive[bool] = reactive(False)

    def __init__(self, facade: Facade) -> None:
        super().__init__()
        self.facade = facade
        self.connection_id: str | None = None
        self.saved_text = ""
        self.token: Path | None = None
        self.check: Check | None = None
        self.preview: Preview | None = None
        self.generation = 0  # bumped by every edit
        self.shown_generation = -1  # the generation the problems and preview show
        self.edited_at = 0.0  # perf_counter of the last edit (for the benchmark)
        self.updated_at = 0.0  # perf_counter of the last problems+preview update
        self._timer: Timer | None = None
        self._good_preview: Preview | None = None  # of the last text without errors
        self._rows: tuple[ConnectionRow, ...] = ()

    def compose(self) -> ComposeResult:
        yield Header()
        yield NavBar("rules")
        with Horizontal():
            yield ConnectionList(id="rules-connections")
            with Vertical(id="rules-main"):
                yield RulesEditor(id="editor")
                yield PreviewPanel(id="preview")
        yield ProblemList(id="problems")
        yield Footer()

    @property
    def editor(self) -> RulesEditor:
        return self.query_one(RulesEditor)

    @property
    def file_label(self) -> str:
        if self.connection_id is None:
            return "the rules file"
        try:
            return self.facade.shown(self.facade.connection(self.connection_id).rules)
        except FacadeError:
            return "the rules file"

    def on_mount(self) -> None:
        self.query_one("#rules-connections").border_title = "connections"
        self.editor.border_title = "no rules file open"
        self.editor.read_only = True  # until a file opens
        self.query_one(PreviewPanel).border_title = "preview (dry run)"
        self.query_one(PreviewPanel).show(None)
        self.load_connections()
        if self.connection_id is None:
            try:
                first = next(iter(self.facade.config.connections), None)
            except FacadeError as exc:
                self.notify(str(exc), severity="error")
                first = None
            if first is not None:
                self.open(first)

    @classmethod
    def palette_entries(cls) -> list[PaletteEntry]:
        return [
            ("Save rules", "write the rules file (ctrl+s)", "action_save"),
            ("Format rules", "canonical formatting (ctrl+f)", "action_format"),
            ("Next problem", "move to the next diagnostic (f8)", "action_next_problem"),
        ]

    # -- the connection list ---------------------------------------------------------
    @work(thread=True, exclusive=True, group="rules-connections", exit_on_error=False)
    def load_connections(self) -> None:
        try:
            rows = tuple(self.facade.connections())
        except Exception as exc:
            self.app.call_from_thread(self.notify, str(exc), severity="error")
            return
        self.app.call_from_thread(self._show_connections, rows)

    def _show_connections(self, rows: tuple[ConnectionRow, ...]) -> None:
        self._rows = rows
        self.query_one(ConnectionList).show(rows, self.connection_id)

    def on_connection_list_chosen(self, event: ConnectionList.Chosen) -> None:
        self.request_open(event.connection_id)

    def request_open(self, connection_id: str) -> None:
        """Open a connection's rules, asking first when the current text is unsaved."""
        if connection_id == self.connection_id:
            return
        if not self.modified:
            self.open(connection_id)
            return

        def decided(choice: str | None) -> None:
            if choice == "discard" or (choice == "save" and self.save()):
                self.open(connection_id)

        self.app.push_screen(UnsavedChangesScreen(self.file_label), decided)

    def open(self, connection_id: str) -> None:
        try:
            text = self.facade.read_rules(connection_id)
        except FacadeError as exc:
            self.notify(str(exc), title="cannot open the rules", severity="error", timeout=8)
            return
        self.connection_id = connection_id
        self.saved_text = text
        self.check = None
        self._good_preview = None
        self.editor.read_only = False
        self.editor.load_text(text)
        self.editor.border_title = self.file_label
        self.modified = False
        self._choose_default_token()
        self.query_one(ConnectionList).show(self._rows, connection_id)
        self.editor.focus()

    def _choose_default_token(self) -> None:
        """Offer this connection's samples, then its cases, then the other samples."""
        samples = self.facade.samples(toml_only=True)  # signed tokens expire: the bench
        prefix = f"{self.connection_id}-"
        preferred = [p for p in samples if p.name.startswith(prefix)]
        cases = self.facade.cases(self.connection_id)
        tokens = [(p.name, p) for p in preferred]
        tokens += [(f"case: {p.name.removesuffix('.case.toml')}", p) for p in cases]
        tokens += [(p.name, p) for p in samples if p not in preferred]
        if self.token not in {path for _, path in tokens}:
            self.token = tokens[0][1] if tokens else None
        self.query_one(PreviewPanel).set_tokens(tokens, self.token)

    # -- editing, checking, previewing ----------------------------------------------
    def on_text_area_changed(self, event: TextArea.Changed) -> None:
        self.modified = self.editor.text != self.saved_text
        self.generation += 1
        self.edited_at = time.perf_counter()
        if self._timer is not None:
            self._timer.stop()
        self._timer = self.set_timer(DEBOUNCE_SECONDS, self._check_now)

    def on_text_area_selection_changed(self, event: TextArea.SelectionChanged) -> None:
        self._show_problem_at_cursor()

    def _show_problem_at_cursor(self) -> None:
        """The problem on the cursor's line, under the problems panel (as in a status line)."""
        row = self.editor.cursor_location[0] + 1
        problems = self.check.problems if self.check else ()
        here = next((p for p in problems if p.line <= row <= p.end_line), None)
        self.query_one(ProblemList).border_subtitle = here.label if here else ""

    def on_preview_panel_token_chosen(self, event: PreviewPanel.TokenChosen) -> None:
        self.token = event.path
        self.generation += 1
        self._check_now()

    def _check_now(self) -> None:
        if self.connection_id is not None:
            self.run_check(self.connection_id, self.editor.text, self.token, self.generation)

    @work(thread=True, exclusive=True, group="check", exit_on_error=False)
    def run_check(self, connection_id: str, text: str, token: Path | None, generation: int) -> None:
        try:
            check = self.facade.check(connection_id, text)
            preview = None
            if token is not None:
                try:
                    preview = self.facade.preview(connection_id, check, token)
                except FacadeError as exc:
                    preview = Preview.failed(str(exc), self.facade.shown(token))
        except Exception as exc:  # a bug in a checker must not take the editor down
            self.app.call_from_thread(self.notify, f"check failed: {exc}", severity="error")
            return
        self.app.call_from_thread(self.show_check, generation, check, preview)

    def show_check(self, generation: int, check: Check, preview: Preview | None) -> None:
        if generation != self.generation:
            return  # the text changed since: a newer check is on its way
        self.check = check
        good = self._good_preview
        if check.compiled is not None:
            self._good_preview = preview
        elif preview is not None and good is not None and good.token == preview.token:
            # While the text has errors, keep showing the last result, saying so.
            message = "the rules have errors: this is the result of the last text without"
            preview = Preview(good.outcome, message, good.token, good.rows)
        self.preview = preview
        self.editor.set_marks([_mark(p) for p in check.problems])
        self.query_one(ProblemList).show(check.problems)
        self._show_problem_at_cursor()
        panel = self.query_one(PreviewPanel)
        panel.show(preview, self._redacted())
        token = preview.token if preview and preview.token else "no token"
        panel.border_title = f"preview: {token} (dry run)"
        self.shown_generation = generation
        self.updated_at = time.perf_counter()

    def _redacted(self) -> tuple[str, ...]:
        """The open connection's `redact` names (the preview shows their values as ***)."""
        if self.connection_id is None:
            return ()
        try:
            return self.facade.connection(self.connection_id).redact
        except FacadeError:
            return ()

    def watch_modified(self, modified: bool) -> None:
        self.editor.border_subtitle = "modified" if modified else ""

    def on_problem_list_chosen(self, event: ProblemList.Chosen) -> None:
        self.jump_to(event.problem)

    def jump_to(self, problem: Problem) -> None:
        self.editor.move_cursor((problem.line - 1, problem.column - 1), center=True)
        self.editor.focus()

    # -- actions ---------------------------------------------------------------------
    def save(self) -> bool:
        """Write the text to the rules file; False (and a notification) on failure."""
        if self.connection_id is None:
            return False
        text = self.editor.text
        try:
            self.facade.save_rules(self.connection_id, text)
        except FacadeError as exc:
            self.notify(str(exc), title="not saved", severity="error")
            return False
        self.saved_text = text
        self.modified = False
        self.notify(f"saved {self.file_label}")
        announce(self, "rules")  # this screen's list among them
        return True

    def on_workspace_changed(self, event: WorkspaceChanged) -> None:
        if event.what in ("connections", "rules"):  # the list and its rules status
            self.load_connections()
        elif event.what == "store":  # the preview compares with the store: again
            self.generation += 1
            self._check_now()

    def action_save(self) -> None:
        self.save()

    def action_format(self) -> None:
        try:
            formatted = self.facade.format(self.editor.text)
        except FacadeError as exc:
            self.notify(str(exc), severity="warning")
            return
        if formatted != self.editor.text:
            cursor = self.editor.cursor_location
            self.editor.replace(formatted, (0, 0), self.editor.document.end)
            self.editor.move_cursor(cursor)
            self.notify("formatted")

    def action_run_cases(self) -> None:
        self.run_worker(self.app.run_action("run_cases"), exit_on_error=False)

    def action_leave_editor(self) -> None:
        """Escape moves focus to the connection list, where 1–5 switch screens again."""
        self.query_one(ConnectionList).focus()

    def action_next_problem(self) -> None:
        if not self.check or not self.check.problems:
            return
        row, _ = self.editor.cursor_location
        after = [p for p in self.check.problems if p.line - 1 > row]
        self.jump_to((after or list(self.check.problems))[0])


def _mark(problem: Problem) -> Mark:
    return Mark(
        problem.line - 1,
        problem.column - 1,
        problem.end_line - 1,
        problem.end_column - 1,
        problem.severity,
    )
