"""The Rules screen: edit a connection's rules with problems, a live preview and the
impact of the edit on the accounts already signed in.

State lives here: which connection, the text as saved, the latest check, preview and
impact. Every edit bumps `generation` and (re)starts a short debounce timer; when it
fires, an exclusive thread worker compiles the text once and dry-runs the chosen token
against the result (the preview never writes), then hands both back to the UI thread.
When the text has no errors, a second exclusive worker then plans it over the
connection's recorded sign-ins (`jitprov plan`, nothing written) for the impact panel;
a newer edit cancels it between chunks of identities. A result for an older generation
is dropped, so what is shown always matches the text.

Saving asks first when the plan of the text being saved would deny, or remove set
members from, more accounts than the smaller of 10 and 10% of those recorded
(`Impact.asks_before_saving`); below that it saves at once.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from textual import events, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.reactive import reactive
from textual.screen import Screen
from textual.timer import Timer
from textual.widgets import Header, TextArea
from textual.worker import get_current_worker

from tui.facade import (
    Check,
    ConnectionRow,
    Facade,
    FacadeError,
    Impact,
    PlanCancelled,
    Preview,
    Problem,
)
from tui.screens.confirm import ConfirmScreen, UnsavedChangesScreen
from tui.widgets.connection_list import ConnectionList
from tui.widgets.impact import ImpactPanel
from tui.widgets.nav import KeyFooter, NavBar, PaletteEntry, WorkspaceChanged, announce
from tui.widgets.preview import PreviewPanel
from tui.widgets.problems import ProblemList
from tui.widgets.rules_editor import Mark, RulesEditor
from tui.widgets.views import CONFIRM_ACCOUNTS, CONFIRM_SHARE

DEBOUNCE_SECONDS = 0.05
SIDE_BY_SIDE = 180  # columns from which the preview and the impact show side by side


class AskFirst(ConfirmScreen):
    """The confirmation before saving rules that would deny many accounts: "No" has
    the focus, so an `enter` pressed out of habit saves nothing."""

    AUTO_FOCUS = "#no"


class RulesScreen(Screen[None]):
    """Edit, check, format, save and preview one connection's rules at a time."""

    BINDINGS = [
        Binding("ctrl+s", "save", "Save"),
        Binding("ctrl+f", "format", "Format"),
        Binding("ctrl+t", "app.run_cases", "Cases", tooltip="Run every case"),
        Binding("f8", "next_problem", "Problem", tooltip="Next problem"),
        Binding("f9", "toggle_impact", "Impact"),
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
        self.impact: Impact | None = None  # of the last text without errors
        self.impact_generation = -1  # the generation the impact panel shows
        self.edited_at = 0.0  # perf_counter of the last edit (for the benchmark)
        self.updated_at = 0.0  # perf_counter of the last problems+preview update
        self._timer: Timer | None = None
        self._good_preview: Preview | None = None  # of the last text without errors
        self._rows: tuple[ConnectionRow, ...] = ()
        self._impact_key: tuple[str, str] | None = None  # (connection, text) of `impact`
        self._planning = ""  # the plan's progress, while a large one runs
        self._save_request = 0  # bumped by every save asked for: an older one is dropped

    def compose(self) -> ComposeResult:
        yield Header()
        yield NavBar("rules")
        with Horizontal():
            yield ConnectionList(id="rules-connections")
            with Vertical(id="rules-main"):
                yield RulesEditor(id="editor")
                with Horizontal(id="rules-lower"):
                    yield PreviewPanel(id="preview")
                    yield ImpactPanel(id="impact")
        yield ProblemList(id="problems")
        yield KeyFooter()

    @property
    def editor(self) -> RulesEditor:
        return self.query_one(RulesEditor)

    @property
    def file_label(self) -> str:
        return self._label_of(self.connection_id)

    def _label_of(self, connection_id: str | None) -> str:
        if connection_id is None:
            return "the rules file"
        try:
            return self.facade.shown(self.facade.connection(connection_id).rules)
        except FacadeError:
            return "the rules file"

    def on_mount(self) -> None:
        self.query_one("#rules-connections").border_title = "connections"
        self.editor.border_title = "no rules file open"
        self.editor.read_only = True  # until a file opens
        self.query_one(PreviewPanel).border_title = "preview (dry run)"
        self.query_one(PreviewPanel).show(None)
        self.query_one(ImpactPanel).border_title = "impact"
        self.query_one(ImpactPanel).show(None)
        self._show_hints()
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
            (
                "Show the impact or the preview",
                "switch the panel under the editor (f9)",
                "action_toggle_impact",
            ),
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
            if choice == "discard":
                self.open(connection_id)
            elif choice == "save":
                self.request_save(then=lambda: self.open(connection_id))

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
        self.impact = None
        self._impact_key = None
        self.query_one(ImpactPanel).show(None)
        self.query_one(ImpactPanel).border_title = f"impact on {connection_id}'s recorded sign-ins"
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
        self._plan_if_needed(generation, check)

    # -- the impact: the text planned over the recorded sign-ins ----------------------
    def _plan_if_needed(self, generation: int, check: Check) -> None:
        """Plan a text without errors (unless its impact is shown already); for one with
        errors, keep showing the impact of the last text without, saying so."""
        panel = self.query_one(ImpactPanel)
        if self.connection_id is None:
            return
        if check.compiled is None:
            note = (
                "the rules have errors: this is the impact of the last text without"
                if self.impact is not None
                else "the rules have errors: fix them to see their impact"
            )
            panel.show(self.impact, note)
            self.impact_generation = generation
            return
        if self._impact_key == (self.connection_id, check.source):
            panel.show(self.impact)
            self.impact_generation = generation
            return
        self.run_impact(self.connection_id, check.source, generation)

    @work(thread=True, exclusive=True, group="impact", exit_on_error=False)
    def run_impact(self, connection_id: str, text: str, generation: int) -> None:
        worker = get_current_worker()

        def progress(done: int, total: int) -> None:
            if worker.is_cancelled or generation != self.generation:
                raise PlanCancelled  # a newer text is on its way: stop between chunks
            if done < total:
                self.app.call_from_thread(self._show_progress, generation, done, total)

        failure = None
        impact: Impact | None = None
        try:
            impact = self.facade.plan(connection_id, text, progress=progress)
        except PlanCancelled:
            return
        except FacadeError as exc:
            failure = str(exc)
        except Exception as exc:  # a bug in the planner must not take the editor down
            failure = f"the plan failed: {exc}"
        if not worker.is_cancelled:
            self.app.call_from_thread(
                self.show_impact, generation, (connection_id, text), impact, failure
            )

    def _show_progress(self, generation: int, done: int, total: int) -> None:
        if generation == self.generation:
            self._planning = f"planning: {done:,} of {total:,} identities…"
            self._show_hints()

    def show_impact(
        self,
        generation: int,
        key: tuple[str, str],
        impact: Impact | None,
        failure: str | None = None,
    ) -> None:
        if generation != self.generation:
            return  # the text changed since: a newer plan is on its way
        self.impact, self._impact_key = impact, (key if impact is not None else None)
        self.query_one(ImpactPanel).show(impact, failure and f"cannot plan the rules: {failure}")
        self._planning = ""
        self._show_hints()
        self.impact_generation = generation

    def _show_hints(self) -> None:
        """Under the preview, the impact in brief and how to see it (f9); under the
        impact, the plan's progress, whether saving would ask first, and how to go
        back. Side by side (wide terminals) the panels need no f9 hint."""
        preview, panel = self.query_one(PreviewPanel), self.query_one(ImpactPanel)
        impact = self.impact
        asks = "⚠ saving asks first" if impact is not None and impact.asks_before_saving else ""
        status = self._planning or asks
        if self.has_class("-side-by-side"):
            preview.border_subtitle, panel.border_subtitle = "", status
            return
        if self._planning:
            brief = f": {self._planning}"
        elif impact is None:
            brief = ""
        elif not impact.recorded:
            brief = ": no recorded sign-ins"
        else:
            counts = (impact.deny, impact.change, impact.same)
            brief = ": {:,} denied · {:,} change · {:,} unchanged".format(*counts)
        preview.border_subtitle = f"f9 impact{brief}"
        panel.border_subtitle = " · ".join(p for p in (status, "f9 preview") if p)

    def on_resize(self, event: events.Resize) -> None:
        side_by_side = event.size.width >= SIDE_BY_SIDE
        if side_by_side != self.has_class("-side-by-side"):
            self.set_class(side_by_side, "-side-by-side")
            self.refresh_bindings()  # f9 is of no use side by side
        self._show_hints()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "toggle_impact":  # side by side, both show: f9 is not offered
            return not self.has_class("-side-by-side")
        return True

    def action_toggle_impact(self) -> None:
        """Show the impact instead of the preview, or back (side by side: both show)."""
        self.toggle_class("-impact")
        self._show_hints()

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
    def save(self, connection_id: str | None = None, text: str | None = None) -> bool:
        """Write `text` (default: the editor's) to the rules file of `connection_id`
        (default: the open one), asking nothing; False (and a notification) on failure."""
        connection_id = connection_id or self.connection_id
        if connection_id is None:
            return False
        text = self.editor.text if text is None else text
        try:
            self.facade.save_rules(connection_id, text)
        except FacadeError as exc:
            self.notify(str(exc), title="not saved", severity="error")
            return False
        if connection_id == self.connection_id:
            self.saved_text = text
            self.modified = self.editor.text != text
        self.notify(f"saved {self._label_of(connection_id)}")
        announce(self, "rules")  # this screen's list among them
        return True

    def on_workspace_changed(self, event: WorkspaceChanged) -> None:
        if event.what in ("connections", "rules"):  # the list and its rules status
            self.load_connections()
        if event.what == "connections":  # a connection's redact or attributes: plan again
            self._impact_key = None
        elif event.what == "store":  # the preview and the plan read the store: again
            self._impact_key = None
            self.generation += 1
            self._check_now()

    def action_save(self) -> None:
        self.request_save()

    def request_save(self, then: Callable[[], object] | None = None) -> None:
        """Save the text, then call `then`; first ask when its plan would deny, or
        remove set members from, more accounts than the threshold. The plan shown is
        used when it is of this very text; otherwise the text is planned first (in a
        worker). A text with errors cannot be planned and is saved as before."""
        if self.connection_id is None:
            return
        self._save_request += 1
        request, connection_id, text = self._save_request, self.connection_id, self.editor.text
        check = self.check
        if check is not None and check.source == text and check.compiled is None:
            self._save_checked(request, connection_id, text, None, then)
        elif self._impact_key == (connection_id, text):
            self._save_checked(request, connection_id, text, self.impact, then)
        else:
            self.plan_then_save(request, connection_id, text, then)

    @work(thread=True, exclusive=True, group="save", exit_on_error=False)
    def plan_then_save(
        self, request: int, connection_id: str, text: str, then: Callable[[], object] | None
    ) -> None:
        told = False

        def progress(done: int, total: int) -> None:
            nonlocal told
            if done < total and not told:  # a large population: say why saving waits
                told = True
                message = f"planning the rules over {total:,} recorded sign-ins before saving…"
                self.app.call_from_thread(self.notify, message)

        impact: Impact | None = None
        try:
            if self.facade.check(connection_id, text).compiled is not None:
                impact = self.facade.plan(connection_id, text, progress=progress)
            # else: a text with errors cannot be planned; it is saved as before
        except Exception as exc:  # the store cannot be read, say
            message = f"{exc}: saved without checking the impact on the recorded sign-ins"
            self.app.call_from_thread(self.notify, message, severity="warning")
        self.app.call_from_thread(self._save_checked, request, connection_id, text, impact, then)

    def _save_checked(
        self,
        request: int,
        connection_id: str,
        text: str,
        impact: Impact | None,
        then: Callable[[], object] | None,
    ) -> None:
        """Save `text` (asking first when `impact` says so), then call `then`."""
        if request != self._save_request:
            return  # a newer save was asked for meanwhile

        def decided(yes: bool | None) -> None:
            if yes and self.save(connection_id, text) and then is not None:
                then()

        if impact is None or not impact.asks_before_saving:
            decided(True)
            return
        question = self._confirm_question(connection_id, impact)
        self.app.push_screen(AskFirst(question, yes="Save (y)"), decided)

    def _confirm_question(self, connection_id: str, impact: Impact) -> str:
        def accounts(n: int) -> str:
            return f"{n:,} account{'s' * (n != 1)}"

        label = self._label_of(connection_id)
        return (
            f"Save {label}?\n\nReplayed over the {impact.recorded:,} recorded sign-ins of"
            f" {connection_id}, these rules would deny {accounts(impact.deny)} and remove"
            f" set members from {accounts(impact.removing)}. Saving asks when that is more"
            f" than {CONFIRM_ACCOUNTS} accounts or {CONFIRM_SHARE:.0%} of those recorded,"
            " whichever is fewer; the impact panel (f9) lists them."
        )

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
