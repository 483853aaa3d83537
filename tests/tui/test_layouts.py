"""Layouts from 80x24 to 200x60: what a person needs stays usable on a small terminal
(the rules editor keeps at least ten lines of text, the bench's selectors stay wide
enough to read, the form's Save button stays in view) and side lists narrow under 120
columns. The SVG snapshots at the three sizes are in test_snapshots.py."""

from __future__ import annotations

import pytest
from textual.widgets import Button, Footer, Select
from textual.widgets._footer import FooterKey

from tests.tui.conftest import settle
from tui.app import JitprovApp
from tui.screens.rules import RulesScreen

SIZES = [(80, 24), (100, 30), (120, 40), (200, 60)]


def visible(app: JitprovApp, widget_id: str) -> bool:
    """The widget lies wholly inside the terminal."""
    region = app.screen.query_one(widget_id).region
    width, height = app.size
    return region.height > 0 and region.right <= width and region.bottom <= height


@pytest.mark.parametrize("size", SIZES, ids=[f"{w}x{h}" for w, h in SIZES])
async def test_every_screen_stays_usable(app: JitprovApp, size: tuple[int, int]) -> None:
    async with app.run_test(size=size) as pilot:
        await settle(pilot)
        assert visible(app, "#form-save")
        assert isinstance(app.screen.query_one("#form-save"), Button)
        list_width = app.screen.query_one("#connections-pane").region.width
        assert list_width <= (28 if size[0] < 120 else 56)
        assert app.screen.query_one("#connection-form").region.width >= 50

        app.screen.set_focus(None)
        await pilot.press("2")
        await settle(pilot)
        rules = app.screen
        assert isinstance(rules, RulesScreen)
        editor = rules.editor
        assert editor.content_region.height >= 10, editor.content_region
        assert editor.content_region.width >= 40
        assert visible(app, "#preview") and visible(app, "#problems")

        rules.set_focus(None)
        await pilot.press("3")
        await settle(pilot)
        for selector in ("#bench-connection", "#bench-token", "#bench-at"):
            assert app.screen.query_one(selector).region.width >= 14, selector
            assert visible(app, selector)
        token = app.screen.query_one("#bench-token", Select)
        assert token.region.height == 1  # one line, not a column of letters
        for button in ("#bench-dry-run", "#bench-apply", "#bench-cases"):
            assert visible(app, button)


async def test_a_long_message_wraps_at_80_columns_instead_of_being_cut(app: JitprovApp) -> None:
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        app.screen.set_focus(None)
        await pilot.press("3")
        await settle(pilot)
        app.screen.query_one("#bench-token", Select).value = (
            app.facade.root / "samples" / "okta-engineer.toml"
        )
        await pilot.press("d")
        await settle(pilot)
        label = app.screen.query_one("#bench-validation")
        assert "never by apply" in str(label.render())
        assert label.region.height >= 2  # wrapped onto a second line, at a word
        assert "never" in app.export_screenshot()  # and on the screen, not cut off


@pytest.mark.parametrize("size", SIZES, ids=[f"{w}x{h}" for w, h in SIZES])
async def test_every_screens_keys_fit_the_footer_whole(
    app: JitprovApp, size: tuple[int, int]
) -> None:
    """At 80 columns the last keys were cut: `^q Qu`, `^r` without its name."""
    async with app.run_test(size=size) as pilot:
        await settle(pilot)
        for key in "12345":
            app.screen.set_focus(None)
            await pilot.press(key)
            await settle(pilot)
            footer = app.screen.query_one(Footer)
            shown = [k for k in footer.query(FooterKey) if k.display]
            palette = [k for k in shown if k.action == "app.command_palette"]
            keys = [k for k in shown if k not in palette]
            assert keys, app.screen
            limit = min([k.region.x for k in palette] or [footer.region.right])
            for k in keys:
                assert k.region.width >= len(k.key_display) + len(k.description), k.description
                assert k.region.right <= limit, (type(app.screen).__name__, k.description)


async def test_a_long_deny_message_wraps_in_the_rules_preview(app: JitprovApp) -> None:
    rules = app.facade.root / "rules" / "okta.rules"
    long = (
        "Contractors are not provisioned here: ask the service desk for an exception,"
        " quoting your manager"
    )
    deny = f'deny "{long}" when first(@email) == "alan.turing@contractors.example.net"\n'
    rules.write_text(deny + rules.read_text(encoding="utf-8"), encoding="utf-8")
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        app.screen.set_focus(None)
        await pilot.press("2")
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, RulesScreen)
        screen.query_one("#preview-token", Select).value = (
            app.facade.root / "samples" / "okta-contractor.toml"
        )
        await settle(pilot)
        assert screen.preview is not None and screen.preview.message == long
        message = screen.query_one("#preview-message")
        assert message.region.right <= screen.query_one("#preview").region.right
        assert message.region.height >= 2  # wrapped at a word, not cut at the edge
        assert "manager" in app.export_screenshot()  # the last word, on the screen


async def test_the_help_fits_80_columns_and_wraps_its_lines(app: JitprovApp) -> None:
    """It was 100 columns wide whatever the terminal: its lines cut at the edge."""
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await pilot.press("f1")
        await settle(pilot)
        assert visible(app, "#help")
        assert "searchable" in app.export_screenshot()  # the end of a wrapped line
