"""The form of one connection: tabs General / Signature / JIT provisioning / Rules.

It receives the connection's keys as written in jitprov.toml and posts `SaveRequested`
with the new values; it never writes anything itself. Validation is the config
loader's: the screen shows its error next to the field it names (`show_error`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.widgets import Button, Input, Label, Select, Static, Switch, TabbedContent, TabPane

from engine.config import MODES, ON_ERROR, PROTOCOLS, REQUIRE_SIGNED


@dataclass(frozen=True, slots=True)
class FormField:
    """One key of a connection table, as the form edits it."""

    key: str
    label: str
    kind: str  # text | list | int | bool | select
    options: tuple[str, ...] = ()
    hint: str = ""


TABS: dict[str, tuple[FormField, ...]] = {
    "General": (
        FormField("protocol", "Protocol", "select", PROTOCOLS),
        FormField("issuer", "Issuer", "text", hint="IdP entity ID / OIDC issuer"),
        FormField("audience", "Audience", "text", hint="SP entity ID / OIDC client_id"),
        FormField("recipient", "Recipient", "text", hint="ACS URL, checked when set (saml2)"),
        FormField("subject_from", "Subject from", "text", hint="attribute giving the identity"),
        FormField("attributes", "Attributes", "list", hint="expected attributes, comma-separated"),
        FormField("redact", "Redact", "list", hint="shown as *** in audit and traces"),
        FormField("clock_skew", "Clock skew (s)", "int"),
        FormField("max_token_bytes", "Max token bytes", "int"),
    ),
    "Signature": (
        FormField("certificate", "Certificate(s)", "list", hint="IdP signing cert paths (saml2)"),
        FormField("metadata", "Metadata", "text", hint="IdP metadata XML instead of certificate"),
        FormField("jwks", "JWKS", "text", hint="signing keys (oidc)"),
        FormField("require_signed", "Require signed", "select", REQUIRE_SIGNED),
        FormField("decryption_key", "Decryption key", "text", hint="SP key for EncryptedAssertion"),
        FormField("check_cert_dates", "Check cert dates", "bool"),
        FormField("allow_sha1", "Allow SHA-1", "bool"),
        FormField("require_in_response_to", "Require InResponseTo", "bool"),
    ),
    "JIT provisioning": (
        FormField("mode", "Mode", "select", MODES),
        FormField("link_by", "Link by", "select", hint="link a first login to an account"),
        FormField("on_error", "On store error", "select", ON_ERROR),
    ),
    "Rules": (FormField("rules", "Rules file", "text", hint="path relative to jitprov.toml"),),
}
FIELDS: dict[str, FormField] = {f.key: f for fields in TABS.values() for f in fields}


class ConnectionForm(Vertical):
    """Edits one connection; posts SaveRequested / EditRules."""

    class SaveRequested(Message):
        """Save `values` into connection `connection_id` (None values remove keys)."""

        def __init__(self, connection_id: str, values: dict[str, Any], is_new: bool) -> None:
            super().__init__()
            self.connection_id = connection_id
            self.values = values
            self.is_new = is_new

    class EditRules(Message):
        """Open this connection's rules in the Rules screen."""

        def __init__(self, connection_id: str) -> None:
            super().__init__()
            self.connection_id = connection_id

    def __init__(self, link_fields: Sequence[str] = (), *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.link_fields = tuple(link_fields)
        self.connection_id: str | None = None
        self.is_new = False
        self.original: dict[str, Any] = {}
        self._baseline: tuple[str, dict[str, Any]] | None = None  # as loaded or saved
        self._status = ""  # the rules file's status line

    def compose(self) -> ComposeResult:
        with Horizontal(id="form-head"):
            yield Label("Connection id", classes="field-label")
            yield Input(
                id="form-id", placeholder="a new connection's id, e.g. google", compact=True
            )
        with TabbedContent(id="form-tabs"):
            for title, fields in TABS.items():
                tab_id = f"tab-{title.split()[0].lower()}"
                with TabPane(title, id=tab_id), VerticalScroll():
                    for form_field in fields:
                        yield from self._row(form_field)
                    if title == "Rules":
                        yield Static("", id="rules-status")
                        yield Button("Edit rules (e)", id="edit-rules")
                    if title == "Signature":
                        yield Static("", id="keys-status")
        with Horizontal(id="form-buttons"):
            yield Button("Save (ctrl+s)", variant="primary", id="form-save")
            yield Label("", id="form-modified")
        yield Static("", id="form-message")

    def _row(self, form_field: FormField) -> ComposeResult:
        with Horizontal(classes="form-row"):
            yield Label(form_field.label, classes="field-label")
            key = form_field.key
            if form_field.kind == "bool":
                yield Switch(False, id=f"f-{key}")
            elif form_field.kind == "select":
                options = form_field.options or self.link_fields
                yield Select(
                    [(o, o) for o in options], id=f"f-{key}", prompt="(default)", compact=True
                )
            else:
                yield Input(id=f"f-{key}", placeholder=form_field.hint, compact=True)
        yield Label("", id=f"e-{key}", classes="field-error")

    def load(self, connection_id: str | None, table: Mapping[str, Any], status: str = "") -> None:
        """Show a connection's keys (None: an empty form for a new connection)."""
        self.connection_id = connection_id
        self.is_new = connection_id is None
        self.original = dict(table)
        ident = self.query_one("#form-id", Input)
        ident.value = connection_id or ""
        ident.disabled = not self.is_new
        for key, form_field in FIELDS.items():
            value = table.get(key)
            if form_field.kind == "bool":
                self.query_one(f"#f-{key}", Switch).value = bool(value)
            elif form_field.kind == "select":
                select: Select[str] = self.query_one(f"#f-{key}", Select)
                if value is None:
                    select.clear()
                else:
                    if form_field.key == "link_by" and value not in self.link_fields:
                        select.set_options([(o, o) for o in (*self.link_fields, str(value))])
                    select.value = str(value)
            else:
                self.query_one(f"#f-{key}", Input).value = _as_text(value)
        self.set_status(status)
        self.clear_errors()
        self.mark_unmodified()

    @property
    def modified(self) -> bool:
        """Whether the form holds edits not saved (the id of a new one included)."""
        return self._baseline is not None and self._snapshot() != self._baseline

    def mark_unmodified(self) -> None:
        """What the form shows now is what jitprov.toml holds (loaded, or saved)."""
        self._baseline = self._snapshot()
        self._show_modified()

    def revert(self) -> None:
        """Drop the edits: the connection as last loaded (an empty new form for a new one)."""
        table = self.original if not self.is_new else {"protocol": "saml2"}
        self.load(self.connection_id, table, self._status)

    def _snapshot(self) -> tuple[str, dict[str, Any]]:
        return self.query_one("#form-id", Input).value.strip(), self.values()

    def _show_modified(self) -> None:
        marker = self.query_one("#form-modified", Label)
        marker.update("● unsaved changes" if self.modified else "")

    def on_input_changed(self, _event: Input.Changed) -> None:
        self._show_modified()

    def on_select_changed(self, _event: Select.Changed) -> None:
        self._show_modified()

    def on_switch_changed(self, _event: Switch.Changed) -> None:
        self._show_modified()

    def set_status(self, status: str) -> None:
        """The rules file's status line on the Rules tab."""
        self._status = status
        self.query_one("#rules-status", Static).update(status)

    def set_keys(self, text: str) -> None:
        """Where the connection's keys come from, on the Signature tab."""
        self.query_one("#keys-status", Static).update(text)

    def values(self) -> dict[str, Any]:
        """The form's values for `engine.config_edit` (None: remove the key)."""
        values: dict[str, Any] = {}
        for key, form_field in FIELDS.items():
            if form_field.kind == "bool":
                on = self.query_one(f"#f-{key}", Switch).value
                values[key] = True if on else (False if key in self.original else None)
            elif form_field.kind == "select":
                chosen = self.query_one(f"#f-{key}", Select).value
                values[key] = chosen if isinstance(chosen, str) else None
            else:
                values[key] = _parse(self.query_one(f"#f-{key}", Input).value, form_field)
        return values

    def clear_errors(self) -> None:
        for label in self.query(".field-error").results(Label):
            label.update("")
            label.remove_class("shown")
        self.query_one("#form-message", Static).update("")

    def show_error(self, key: str | None, message: str) -> None:
        """Show one problem next to the field it names (or below the form)."""
        self.show_problems([(key, message)])

    def show_problems(self, problems: Sequence[tuple[str | None, str]]) -> None:
        """Every problem at once: each next to the field it names, all of them listed
        below the form, and the first wrong field of the form focused, its tab shown."""
        self.clear_errors()
        for key, message in problems:
            if key in FIELDS:
                label = self.query_one(f"#e-{key}", Label)
                label.update(f"✘ {message}")
                label.add_class("shown")
        lines = [f"✘ {key}: {message}" if key else f"✘ {message}" for key, message in problems]
        if len(problems) > 1:
            lines.insert(0, f"{len(problems)} problems, none saved:")
        self.query_one("#form-message", Static).update("\n".join(lines))
        wrong = {key for key, _ in problems}
        first = next((f for fields in TABS.values() for f in fields if f.key in wrong), None)
        if first is None:
            return
        title = next(t for t, fields in TABS.items() if first in fields)
        self.query_one("#form-tabs", TabbedContent).active = f"tab-{title.split()[0].lower()}"
        self.call_after_refresh(self.query_one(f"#f-{first.key}").focus)

    def show_saved(self, message: str) -> None:
        self.clear_errors()
        self.mark_unmodified()
        self.query_one("#form-message", Static).update(f"✔ {message}")

    def request_save(self) -> None:
        connection_id = self.connection_id or self.query_one("#form-id", Input).value.strip()
        if not connection_id:
            self.show_error(None, "give the new connection an id")
            return
        self.post_message(self.SaveRequested(connection_id, self.values(), self.is_new))

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        if event.button.id == "form-save":
            self.request_save()
        elif event.button.id == "edit-rules" and self.connection_id:
            self.post_message(self.EditRules(self.connection_id))


def _as_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list):
        return ", ".join(str(v) for v in value)
    return str(value)


def _parse(text: str, form_field: FormField) -> Any:
    text = text.strip()
    if not text:
        return None
    if form_field.kind == "list":
        items = [item.strip() for item in text.split(",") if item.strip()]
        if form_field.key == "certificate" and len(items) == 1:
            return items[0]
        return items
    if form_field.kind == "int":
        try:
            return int(text)
        except ValueError:
            return text  # the loader names the key: "expected a whole number, got ..."
    return text
