"""The Connections screen: the form per connection, validated save, new connection."""

from __future__ import annotations

from pathlib import Path

import pytest
from textual.widgets import Input, Label, Select, Static, TabbedContent

from tests.tui.conftest import SIZE, settle
from tui.app import JitprovApp
from tui.screens.confirm import PromptScreen
from tui.screens.connections import ConnectionsScreen
from tui.screens.rules import RulesScreen
from tui.widgets.connection_form import ConnectionForm


async def test_form_shows_the_highlighted_connection(app: JitprovApp) -> None:
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        form = app.screen.query_one(ConnectionForm)
        assert form.connection_id == "okta"
        assert form.query_one("#f-issuer", Input).value == "http://www.okta.com/exk1test"
        app.screen.query_one("#connections").focus()
        await pilot.press("down")
        await settle(pilot)
        assert form.connection_id == "entra"
        assert form.query_one("#f-require_signed", Select).value == "response"


async def test_saving_changes_the_file_and_keeps_comments(
    app: JitprovApp, config_path: Path
) -> None:
    before = config_path.read_text()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        form = app.screen.query_one(ConnectionForm)
        form.query_one("#f-mode", Select).value = "create-only"
        form.query_one("#f-on_error", Select).value = "continue"
        await pilot.press("ctrl+s")
        await settle(pilot)
        after = config_path.read_text()
        assert 'mode           = "create-only"' in after
        assert 'on_error       = "continue"' in after
        for line in before.splitlines():
            if line.startswith("#"):
                assert line in after  # every comment kept
        assert "saved" in str(form.query_one("#form-message", Static).render())
        assert app.screen.query_one(ConnectionForm).connection_id == "okta"


async def test_an_invalid_value_is_shown_next_to_its_field(
    app: JitprovApp, config_path: Path
) -> None:
    before = config_path.read_text()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        form = app.screen.query_one(ConnectionForm)
        form.query_one("#f-certificate", Input).value = "certs/missing.crt"
        await pilot.press("ctrl+s")
        await settle(pilot)
        error = form.query_one("#e-certificate", Label)
        assert "file not found" in str(error.render())
        assert error.has_class("shown")
        assert form.query_one("#form-tabs", TabbedContent).active == "tab-signature"
        assert config_path.read_text() == before


async def test_new_connection_is_appended(app: JitprovApp, config_path: Path) -> None:
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("n")
        form = app.screen.query_one(ConnectionForm)
        form.query_one("#form-id", Input).value = "okta2"
        form.query_one("#f-issuer", Input).value = "http://www.okta.com/second"
        form.query_one("#f-audience", Input).value = "https://sp.example.com/saml"
        form.query_one("#f-certificate", Input).value = "certs/idp.crt"
        form.query_one("#f-rules", Input).value = "rules/okta.rules"
        await pilot.press("ctrl+s")
        await settle(pilot)
        text = config_path.read_text()
        assert "[connections.okta2]" in text
        assert 'issuer = "http://www.okta.com/second"' in text
        assert isinstance(app.screen, ConnectionsScreen)
        assert "okta2" in {row.id for row in app.screen.rows}


async def test_edit_rules_opens_the_rules_screen_on_that_connection(app: JitprovApp) -> None:
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        app.screen.query_one("#connections").focus()
        await pilot.press("down", "down")
        await settle(pilot)
        await pilot.press("e")
        await settle(pilot)
        assert isinstance(app.screen, RulesScreen)
        assert app.screen.connection_id == "shib"


def metadata_xml(cert: Path) -> str:
    """Minimal IdP metadata around the demo's signing certificate."""
    body = "".join(line for line in cert.read_text().splitlines() if "CERTIFICATE" not in line)
    return f"""<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata"
    xmlns:ds="http://www.w3.org/2000/09/xmldsig#" entityID="https://idp.partner.example/saml">
  <md:IDPSSODescriptor protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol">
    <md:KeyDescriptor use="signing"><ds:KeyInfo><ds:X509Data>
      <ds:X509Certificate>{body}</ds:X509Certificate>
    </ds:X509Data></ds:KeyInfo></md:KeyDescriptor>
    <md:SingleSignOnService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST"
        Location="https://idp.partner.example/sso"/>
  </md:IDPSSODescriptor>
</md:EntityDescriptor>
"""


async def test_import_metadata_adds_a_connection(app: JitprovApp, config_path: Path) -> None:
    cert = config_path.parent / "certs" / "idp.crt"
    if "BEGIN CERTIFICATE" not in cert.read_text():
        pytest.skip("the demo's certificate is a placeholder here")
    (config_path.parent / "partner.xml").write_text(metadata_xml(cert))
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("i")
        await settle(pilot)
        assert isinstance(app.screen, PromptScreen)
        await pilot.press(*"partner.xml", "enter")
        await settle(pilot)
        # The workspace names no [sp] entity_id: the audience is asked, never guessed.
        assert isinstance(app.screen, PromptScreen)
        await pilot.press(*"https://sp.partner.test/saml", "enter")
        await settle(pilot)
        assert isinstance(app.screen, ConnectionsScreen)
        ids = {row.id for row in app.screen.rows}
        assert "partner" in ids
        text = config_path.read_text()
        assert "[connections.partner]" in text
        assert 'audience = "https://sp.partner.test/saml"' in text


async def test_import_of_a_bad_file_is_a_notification(app: JitprovApp, config_path: Path) -> None:
    before = config_path.read_text()
    (config_path.parent / "bad.xml").write_text("<nothing/>")
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("i")
        await settle(pilot)
        await pilot.press(*"bad.xml", "enter")
        await settle(pilot)
        assert app.is_running and config_path.read_text() == before
        assert app._notifications


async def test_the_signature_tab_shows_where_the_keys_come_from(
    app: JitprovApp, config_path: Path
) -> None:
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        assert isinstance(app.screen, ConnectionsScreen)
        text = str(app.screen.query_one("#keys-status", Static).render())
        assert text.startswith("Keys:")
        assert "certificate certs/idp.crt" in text
