"""Visible focus on every widget: on each screen, focusing any widget that can take the
focus changes what is on the screen (compact selects and inputs, which have no border
to light up, are tinted)."""

from __future__ import annotations

import pytest

from tests.tui.conftest import SIZE, settle
from tui.app import JitprovApp


@pytest.mark.parametrize("key", ["1", "2", "3", "4", "5"])
async def test_the_focused_widget_can_be_seen(app: JitprovApp, key: str) -> None:
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        app.screen.set_focus(None)
        await pilot.press(key)
        await settle(pilot)
        chain = [w for w in app.screen.focus_chain if w.region.height > 0]
        assert chain
        for widget in chain:
            if hasattr(widget, "cursor_blink"):
                widget.cursor_blink = False  # a cursor shown steadily while focused
        unseen = []
        for widget in chain:
            app.screen.set_focus(None)
            await pilot.pause()
            blurred = app.export_screenshot()
            widget.focus()
            await pilot.pause()
            if app.export_screenshot() == blurred:
                unseen.append(f"{type(widget).__name__}#{widget.id}")
        assert not unseen, f"focus not visible on {unseen}"


async def test_a_focused_compact_select_or_input_stands_out(app: JitprovApp) -> None:
    # Textual's own tint for them is 5%: there, but easy to miss on a busy screen.
    from textual.widgets import Input, Select
    from textual.widgets._select import SelectCurrent

    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        app.screen.set_focus(None)
        await pilot.press("3")
        await settle(pilot)
        select = app.screen.query_one("#bench-connection", Select)
        when = app.screen.query_one("#bench-at", Input)
        for widget, painted in ((select, select.query_one(SelectCurrent)), (when, when)):
            widget.focus()
            await pilot.pause()
            assert painted.styles.background_tint.a >= 0.2, widget
            app.screen.set_focus(None)
            await pilot.pause()
            assert painted.styles.background_tint.a == 0, widget
