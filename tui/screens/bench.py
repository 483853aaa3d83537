"""The Test bench: one token's decoded attributes, validation, plan and trace; apply it;
run every case with a pass/fail list and the diff of a failing one.

Unsigned samples are accepted here (and labelled so): the bench is for testing rules.
Dry runs and case runs write nothing; `apply` writes through the same pipeline function
as `jitprov apply` (with `--unsigned-samples`). All of it runs in workers.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import Button, DataTable, Header, Input, Label, Select, Static

from tui.facade import CaseOutcome, Decoded, Facade, FacadeError
from tui.widgets.nav import KeyFooter, NavBar, PaletteEntry, WorkspaceChanged, announce
from tui.widgets.preview import OUTCOME_STYLES
from tui.widgets.tables import empty

CASE_STYLES = {"passed": ("✔", "green"), "failed": ("✘", "red"), "error": ("!", "magenta")}


class BenchScreen(Screen[None]):
    """Try tokens and run cases."""

    BINDINGS = [
        Binding("d", "dry_run", "Dry run"),
        Binding("a", "apply", "Apply"),
        Binding("ctrl+t", "run_cases", "Run cases"),
    ]

    def __init__(self, facade: Facade) -> None:
        super().__init__()
        self.facade = facade
        self.cases: tuple[CaseOutcome, ...] = ()

    def compose(self) -> ComposeResult:
        yield Header()
        yield NavBar("bench")
        with Horizontal(id="bench-controls"):
            yield Select[str]([], prompt="connection", id="bench-connection", compact=True)
            yield Select[Path]([], prompt="token", id="bench-token", compact=True)
            yield Input(placeholder="at: now", id="bench-at", compact=True)
            yield Button("Dry run", id="bench-dry-run", variant="primary")
            yield Button("Apply", id="bench-apply", variant="warning")
            yield Button("All cases", id="bench-cases")
        with Horizontal(id="bench-body"):
            with Vertical(id="bench-token-pane"):
                yield Label("", id="bench-validation")
                yield DataTable(id="bench-attributes", cursor_type="row")
                yield Label("", id="bench-outcome")
                yield DataTable(id="bench-plan", cursor_type="row")
            with Vertical(id="bench-cases-pane"):
                yield DataTable(id="bench-case-list", cursor_type="row")
                yield Static("", id="bench-diff")
        yield KeyFooter()

    def on_mount(self) -> None:
        self.query_one("#bench-attributes", DataTable).add_columns("attribute", "values")
        self.query_one("#bench-plan", DataTable).add_columns("field", "change", "set by")
        self.query_one("#bench-case-list", DataTable).add_columns("status", "case")
        self.query_one("#bench-attributes").border_title = "decoded attributes"
        self.query_one("#bench-plan").border_title = "plan and trace"
        self.query_one("#bench-case-list").border_title = "cases"
        self.query_one("#bench-diff").border_title = "diff"
        self._fill_selectors()

    def _fill_selectors(self) -> None:
        """The connections and tokens to choose from, keeping the ones chosen."""
        try:
            connections = list(self.facade.config.connections)
        except FacadeError as exc:
            self.notify(str(exc), severity="error")
            connections = []
        select: Select[str] = self.query_one("#bench-connection", Select)
        tokens: Select[Path] = self.query_one("#bench-token", Select)
        chosen, token = select.value, tokens.value
        with select.prevent(Select.Changed):  # the token chosen stays as it is
            select.set_options([(c, c) for c in connections])
            if chosen in connections:
                select.value = chosen
        samples = self.facade.samples()
        tokens.set_options([(p.name, p) for p in samples])
        if token in samples:
            tokens.value = token
        if connections and chosen not in connections:
            select.value = connections[0]

    def on_workspace_changed(self, event: WorkspaceChanged) -> None:
        if event.what == "connections":
            self._fill_selectors()

    @classmethod
    def palette_entries(cls) -> list[PaletteEntry]:
        return [
            ("Dry run token", "decode, validate and plan, writing nothing (d)", "action_dry_run"),
            ("Apply token", "provision it into the store (a)", "action_apply"),
            ("Run all cases", "every *.case.toml, on the Test bench (ctrl+t)", "action_run_cases"),
        ]

    def _chosen(self) -> tuple[str, Path, datetime | None] | None:
        """The connection, the token and the validation time (None: now)."""
        connection = self.query_one("#bench-connection", Select).value
        token = self.query_one("#bench-token", Select).value
        if not isinstance(connection, str) or not isinstance(token, Path):
            self.notify("choose a connection and a token first", severity="warning")
            return None
        text = self.query_one("#bench-at", Input).value.strip()
        try:
            at = datetime.fromisoformat(text) if text else None
        except ValueError:
            self.notify(f"at: expected a time like 2024-05-01T12:01:00Z, got {text!r}")
            return None
        if at is not None and at.tzinfo is None:
            at = at.replace(tzinfo=UTC)
        return connection, token, at

    def on_select_changed(self, event: Select.Changed) -> None:
        if event.select.id == "bench-connection" and isinstance(event.value, str):
            prefix = f"{event.value}-"
            for path in self.facade.samples():
                if path.name.startswith(prefix):
                    self.query_one("#bench-token", Select).value = path
                    break

    def on_button_pressed(self, event: Button.Pressed) -> None:
        actions = {
            "bench-dry-run": self.action_dry_run,
            "bench-apply": self.action_apply,
            "bench-cases": self.action_run_cases,
        }
        if event.button.id in actions:
            actions[event.button.id]()

    # -- one token -------------------------------------------------------------------
    def action_dry_run(self) -> None:
        chosen = self._chosen()
        if chosen:
            self.run_token(*chosen, dry_run=True)

    def action_apply(self) -> None:
        chosen = self._chosen()
        if chosen:
            self.run_token(*chosen, dry_run=False)

    @work(thread=True, exclusive=True, group="bench-token", exit_on_error=False)
    def run_token(
        self, connection: str, token: Path, at: datetime | None, *, dry_run: bool
    ) -> None:
        try:
            decoded = self.facade.decode(connection, token, at=at)
            result = self.facade.run_token(connection, token, dry_run=dry_run, at=at)
        except Exception as exc:
            self.app.call_from_thread(self.notify, str(exc), severity="error")
            return
        self.app.call_from_thread(self.show_token, decoded, result, dry_run)
        if not dry_run:
            self.app.call_from_thread(announce, self, "store")

    def show_token(self, decoded: Decoded, result: Any, dry_run: bool) -> None:
        style = "red" if decoded.reason else "yellow" if decoded.kind == "sample" else "green"
        self.query_one("#bench-validation", Label).update(Text(decoded.label, style=style))
        attributes = self.query_one("#bench-attributes", DataTable)
        empty(attributes)
        if decoded.subject:
            attributes.add_row(Text("(subject)", style="italic"), decoded.subject)
        for name, values in decoded.attributes:
            attributes.add_row(name, ", ".join(values))
        data = result.to_json()
        outcome = data["outcome"]
        label = Text(f"{'dry run' if dry_run else 'applied'}: ", style="dim")
        label.append(outcome, style=f"bold {OUTCOME_STYLES.get(outcome, '')}")
        if data.get("message"):
            label.append(f"  {data['message']}")
        self.query_one("#bench-outcome", Label).update(label)
        plan = self.query_one("#bench-plan", DataTable)
        empty(plan)
        where: dict[str, list[str]] = {}
        for entry in data.get("trace") or []:
            rule = f" ({entry['rule']})" if entry.get("rule") else ""
            where.setdefault(entry["field"], []).append(f"line {entry['line']}{rule}")
        for name, change in (data.get("changes") or {}).items():
            plan.add_row(name, _change(change), ", ".join(where.pop(name, [])))
        for name, lines in where.items():
            plan.add_row(name, Text("(no change)", style="dim"), ", ".join(lines))
        if not dry_run:
            self.notify(f"applied: {outcome}")

    # -- cases -----------------------------------------------------------------------
    def action_run_cases(self) -> None:
        self.query_one("#bench-case-list", DataTable).border_title = "cases: running…"
        self.run_cases()

    @work(thread=True, exclusive=True, group="bench-cases", exit_on_error=False)
    def run_cases(self) -> None:
        try:
            cases = tuple(self.facade.run_cases())
        except Exception as exc:
            self.app.call_from_thread(self.notify, str(exc), severity="error")
            return
        self.app.call_from_thread(self.show_cases, cases)

    def show_cases(self, cases: tuple[CaseOutcome, ...], selected: int | None = None) -> None:
        """List the cases; select `selected`, else the first failing one."""
        self.cases = cases
        table = self.query_one("#bench-case-list", DataTable)
        empty(table)
        for index, case in enumerate(cases):
            icon, style = CASE_STYLES.get(case.status, ("?", "yellow"))
            table.add_row(Text(f"{icon} {case.status}", style=style), case.name, key=str(index))
        passed = sum(c.status == "passed" for c in cases)
        table.border_title = f"cases: {passed} passed, {len(cases) - passed} failed"
        if selected is None:
            selected = next((i for i, c in enumerate(cases) if c.status != "passed"), None)
        if selected is not None:
            table.move_cursor(row=selected)  # its diff shows (row highlighted)
        self.query_one("#bench-diff", Static).update(
            cases[selected].detail if selected is not None else "every case passed"
        )

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        """Enter on a case runs that case alone again (after editing its rules)."""
        if event.data_table.id != "bench-case-list" or event.row_key.value is None:
            return
        index = int(event.row_key.value)
        if 0 <= index < len(self.cases):
            self.run_one_case(index, self.cases[index].name)

    @work(thread=True, exclusive=True, group="bench-cases", exit_on_error=False)
    def run_one_case(self, index: int, name: str) -> None:
        try:
            found = self.facade.run_cases(only=name)
        except Exception as exc:
            self.app.call_from_thread(self.notify, str(exc), severity="error")
            return
        if found:
            cases = (*self.cases[:index], found[0], *self.cases[index + 1 :])
            self.app.call_from_thread(self.show_cases, cases, index)

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if event.data_table.id != "bench-case-list" or event.row_key.value is None:
            return
        index = int(event.row_key.value)
        if 0 <= index < len(self.cases):
            self.query_one("#bench-diff", Static).update(self.cases[index].detail)


def _change(change: Any) -> Text:
    """A `changes` entry: `old → new`, or `+added -removed` for a set."""
    if isinstance(change, dict):
        text = Text()
        for value in change.get("added", []):
            text.append(f"+{value} ", style="green")
        for value in change.get("removed", []):
            text.append(f"-{value} ", style="red")
        return text
    old, new = change
    return Text(f"{_value(old)} → {_value(new)}")


def _value(value: Any) -> str:
    if value is None:
        return "∅"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
