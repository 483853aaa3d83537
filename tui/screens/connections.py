"""The Connections screen: every connection with its rules status, and its form.

State lives here: the rows (loaded in a worker, since every rules file is compiled for
its status) and the connection shown in the form. Saving goes through the facade's
`save_connection` (engine.config_edit: validated with the config loader, comments and
layout kept); its ConfigError is shown next to the field it names.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from rich.cells import cell_len
from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.reactive import reactive
from textual.screen import Screen
from textual.widgets import DataTable, Header, Input

from engine.config import ConfigError
from tui.facade import ConnectionRow, Facade, FacadeError
from tui.screens.confirm import ConfirmScreen, PromptScreen, UnsavedChangesScreen
from tui.widgets.connection_form import ConnectionForm
from tui.widgets.nav import KeyFooter, NavBar, PaletteEntry, WorkspaceChanged, announce


class ConnectionsScreen(Screen[None]):
    """List and edit the workspace's connections."""

    BINDINGS = [
        Binding("ctrl+s", "save", "Save", tooltip="Save the form"),
        Binding("n", "new", "New", tooltip="New connection"),
        Binding("i", "import_metadata", "Import", tooltip="Import IdP metadata"),
        Binding("e", "edit_rules", "Rules", tooltip="Edit the rules"),
        Binding("ctrl+r", "refresh", "Reload"),
    ]

    rows: reactive[tuple[ConnectionRow, ...]] = reactive((), init=False)

    def __init__(self, facade: Facade) -> None:
        super().__init__()
        self.facade = facade

    def compose(self) -> ComposeResult:
        yield Header()
        yield NavBar("connections")
        with Horizontal():
            with Vertical(id="connections-pane"):
                yield DataTable(id="connections", cursor_type="row", zebra_stripes=True)
            yield ConnectionForm(self._link_fields(), id="connection-form")
        yield KeyFooter()

    def _link_fields(self) -> list[str]:
        try:
            fields = self.facade.config.fields
        except FacadeError:
            return []
        return [name for name, kind in fields.items() if kind != "set"]

    def on_mount(self) -> None:
        table = self.query_one("#connections", DataTable)
        table.border_title = "connections"
        self.action_refresh()

    @classmethod
    def palette_entries(cls) -> list[PaletteEntry]:
        return [
            ("Save connection", "save the form into jitprov.toml (ctrl+s)", "action_save"),
            ("New connection", "an empty form (n)", "action_new"),
            (
                "Import IdP metadata",
                "add a connection from metadata XML (i)",
                "action_import_metadata",
            ),
            ("Edit rules", "open the connection's rules (e)", "action_edit_rules"),
            ("Reload connections", "re-read jitprov.toml (ctrl+r)", "action_refresh"),
        ]

    # -- loading -------------------------------------------------------------------
    def action_refresh(self) -> None:
        self.load_rows()

    @work(thread=True, exclusive=True, group="connections", exit_on_error=False)
    def load_rows(self) -> None:
        try:
            rows = tuple(self.facade.connections())
        except FacadeError as exc:
            self.app.call_from_thread(self.notify, str(exc), severity="error", timeout=8)
            return
        except Exception as exc:  # a bug must not take the app down
            self.app.call_from_thread(
                self.notify, f"cannot list connections: {exc}", severity="error"
            )
            return
        self.app.call_from_thread(setattr, self, "rows", rows)

    def watch_rows(self, rows: tuple[ConnectionRow, ...]) -> None:
        table = self.query_one("#connections", DataTable)
        selected = self.selected_id()
        # Columns get their widths from the rows here, rather than from DataTable's own
        # measuring on idle, which once left them at the headers' widths (ids cut to two
        # letters) under load.
        ids = [row.id for row in rows]
        # Refilling moves the table's cursor: not a person choosing another connection
        # (which would ask about the form's unsaved edits).
        with table.prevent(DataTable.RowHighlighted):
            table.clear(columns=True)
            cells = [(row.id, row.protocol, row.mode, _status(row)) for row in rows]
            for index, label in enumerate(_COLUMNS):
                width = max([cell_len(label), *(_width(c[index]) for c in cells)])
                table.add_column(label, width=width)
            for row, values in zip(rows, cells, strict=True):
                table.add_row(*values, key=row.id)
            if selected in ids:
                table.move_cursor(row=ids.index(selected))
            elif ids and not self.query_one(ConnectionForm).is_new:
                table.move_cursor(row=0)
        form = self.query_one(ConnectionForm)
        if selected in ids:
            form.set_status(self._status(selected))  # keep what is being edited
        elif ids and not form.is_new:
            self.show(ids[0])

    def selected_id(self) -> str | None:
        form = self.query_one(ConnectionForm)
        return form.connection_id

    def show(self, connection_id: str) -> None:
        try:
            table = self.facade.connection_table(connection_id)
        except FacadeError as exc:
            self.notify(str(exc), severity="error")
            return
        form = self.query_one(ConnectionForm)
        form.load(connection_id, table, self._status(connection_id))
        form.set_keys(self.facade.key_status(connection_id))

    def _status(self, connection_id: str) -> str:
        row = next((r for r in self.rows if r.id == connection_id), None)
        return f"{row.rules}: {row.status}" if row else ""

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        target, current = event.row_key.value, self.selected_id()
        if target and target != current:
            self.leave_guard(lambda: self.show(target), restore=lambda: self._point_at(current))

    def _point_at(self, connection_id: str | None) -> None:
        """The table's cursor back on `connection_id` (the form still shows it)."""
        ids = [row.id for row in self.rows]
        if connection_id in ids:
            table = self.query_one("#connections", DataTable)
            with table.prevent(DataTable.RowHighlighted):
                table.move_cursor(row=ids.index(connection_id))

    # -- unsaved edits ---------------------------------------------------------------
    def leave_guard(
        self, then: Callable[[], object], restore: Callable[[], object] | None = None
    ) -> None:
        """Run `then`, which leaves the form (another connection, a new one, an import,
        the rules, another screen, quitting), once its edits are saved or discarded:
        with edits, ask first. Cancelling, or a save that fails (its problems are
        shown), runs `restore` and stays on the form."""
        form = self.query_one(ConnectionForm)
        if not form.modified:
            then()
            return

        def decided(choice: str | None) -> None:
            if choice == "discard":
                form.revert()
                then()
            elif choice == "save" and self.save_form():
                then()
            elif restore is not None:
                restore()

        what = f"Connection {form.connection_id}" if form.connection_id else "The new connection"
        self.app.push_screen(UnsavedChangesScreen(what), decided)

    def save_form(self) -> bool:
        """Save the form now; False (the problems shown) when it cannot be saved."""
        form = self.query_one(ConnectionForm)
        connection_id = form.connection_id or form.query_one("#form-id", Input).value.strip()
        if not connection_id:
            form.show_error(None, "give the new connection an id")
            form.query_one("#form-id").focus()
            return False
        return self._save(connection_id, form.values(), form.is_new)

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        self.query_one("#form-tabs").focus()

    # -- actions -------------------------------------------------------------------
    def action_save(self) -> None:
        self.query_one(ConnectionForm).request_save()

    def on_connection_form_save_requested(self, event: ConnectionForm.SaveRequested) -> None:
        self._save(event.connection_id, event.values, event.is_new)

    def _save(self, connection_id: str, values: Mapping[str, Any], is_new: bool) -> bool:
        form = self.query_one(ConnectionForm)
        if is_new and connection_id in {r.id for r in self.rows}:
            form.show_error(None, f"a connection {connection_id!r} already exists")
            form.query_one("#form-id").focus()
            return False
        try:
            self.facade.save_connection(connection_id, values)
        except ConfigError as exc:
            # Every problem at once, not one failed save per field.
            problems = self.facade.connection_problems(connection_id, values)
            if not problems:
                key, prefix = exc.key or "", f"connections.{connection_id}."
                problems = [
                    (key.removeprefix(prefix) if key.startswith(prefix) else None, exc.detail)
                ]
            form.show_problems(problems)
            self._offer_starter_rules(connection_id, values, problems)
            return False
        except FacadeError as exc:
            form.show_error(None, str(exc))
            return False
        form.connection_id = connection_id
        form.is_new = False
        form.original = self.facade.connection_table(connection_id)
        form.show_saved(f"saved to {self.facade.config_path.name}")
        self.notify(f"connection {connection_id} saved")
        announce(self, "connections")  # this screen's rows among them
        return True

    def on_workspace_changed(self, event: WorkspaceChanged) -> None:
        if event.what in ("connections", "rules"):  # the rows and their rules status
            self.load_rows()

    def _offer_starter_rules(
        self,
        connection_id: str,
        values: Mapping[str, Any],
        problems: list[tuple[str | None, str]],
    ) -> None:
        """A rules file the form names that does not exist: offer to create a starter
        one there, then save again."""
        rules = values.get("rules")
        missing = any(k == "rules" and m.startswith("file not found") for k, m in problems)
        if not isinstance(rules, str) or not missing:
            return

        def chosen(yes: bool | None) -> None:
            if not yes:
                return
            try:
                self.facade.create_starter_rules(rules)
            except FacadeError as exc:
                self.notify(str(exc), severity="error", timeout=8)
                return
            self.notify(f"created {rules} (a starter rules file)")
            form = self.query_one(ConnectionForm)
            self._save(connection_id, form.values(), form.is_new)

        self.app.push_screen(
            ConfirmScreen(
                f"{rules} does not exist. Create a starter rules file there?", "Create (y)"
            ),
            chosen,
        )

    def action_new(self) -> None:
        self.leave_guard(self._new_form)

    def _new_form(self) -> None:
        form = self.query_one(ConnectionForm)
        form.load(None, {"protocol": "saml2"}, "")
        form.set_keys("")
        self.query_one("#form-id").focus()

    def action_edit_rules(self) -> None:
        connection_id = self.selected_id()
        if connection_id:
            self.post_message(ConnectionForm.EditRules(connection_id))

    def on_connection_form_edit_rules(self, event: ConnectionForm.EditRules) -> None:
        edit = getattr(self.app, "edit_rules", None)
        if edit is not None:
            self.leave_guard(
                lambda: self.run_worker(edit(event.connection_id), exit_on_error=False)
            )

    def action_import_metadata(self) -> None:
        self.leave_guard(self._ask_import)

    def _ask_import(self) -> None:
        def chosen(answer: str | None) -> None:
            if not answer:
                return
            if self.facade.sp_entity_id() is not None:
                self.import_metadata(answer)
                return
            try:  # a file that is no metadata is said at once, before another question
                self.facade.read_metadata(self._path(answer))
            except FacadeError as exc:
                self.notify(str(exc), severity="error", timeout=8)
                return

            def audience(entity_id: str | None) -> None:
                if entity_id:
                    self.import_metadata(answer, entity_id.strip())

            # No [sp] entity_id in the config: the audience is asked, never guessed.
            self.app.push_screen(
                PromptScreen(
                    "This SP's entity ID (the audience the IdP sends tokens to)",
                    "https://sp.example.com/saml",
                ),
                audience,
            )

        self.app.push_screen(
            PromptScreen("IdP metadata file to import", "path/to/idp-metadata.xml"), chosen
        )

    def _path(self, answer: str) -> Path:
        path = Path(answer)
        return path if path.is_absolute() else self.facade.root / path

    def import_metadata(self, answer: str, audience: str | None = None) -> None:
        path = self._path(answer)
        try:
            connection_id = self.facade.import_metadata(path, audience=audience)
        except (FacadeError, ConfigError) as exc:
            self.notify(str(exc), severity="error", timeout=8)
            return
        self.notify(f"connection {connection_id} added from {path.name}")
        announce(self, "connections")


_COLUMNS = ("id", "protocol", "mode", "rules status")


def _width(cell: str | Text) -> int:
    return cell.cell_len if isinstance(cell, Text) else cell_len(cell)


def _status(row: ConnectionRow) -> Text:
    style = "red" if row.errors or row.unreadable else "yellow" if row.warnings else "green"
    return Text(row.status, style=style)
