"""The Rules screen's impact panel (the edited rules planned over the recorded sign-ins)
and the confirmation before saving rules that would deny many accounts."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console
from textual.pilot import Pilot
from textual.widgets import Label, Select, Static

from tests.tui.conftest import SIZE, settle, until
from tests.tui.test_screens_users import provision
from tests.tui.test_snapshots import SIZES, demo_app, go, snap
from tui.app import JitprovApp, make_app
from tui.facade import Facade, FacadeError, Impact, PlanCancelled
from tui.screens.confirm import ConfirmScreen, UnsavedChangesScreen
from tui.screens.rules import RulesScreen
from tui.widgets.impact import ImpactPanel
from tui.widgets.preview import PreviewPanel
from tui.widgets.views import CONFIRM_ACCOUNTS

# A deny rule that catches grace.hopper (Sales) among the three recorded okta sign-ins.
DENY_SALES = 'deny "sales people are not provisioned" when dept == "Sales"\n'


async def planned(pilot: Pilot[None], screen: RulesScreen, since: int = -1) -> None:
    """Until the impact panel shows the plan of the text as it is now, and of a
    generation after `since` (the one before an edit)."""
    await until(
        pilot,
        lambda: (
            screen.generation > since
            and screen.impact_generation == screen.shown_generation == screen.generation
        ),
    )


async def edit(pilot: Pilot[None], screen: RulesScreen, text: str, at: tuple[int, int]) -> None:
    """Insert `text` at `at` and wait until the impact shows the result."""
    since = screen.generation
    screen.editor.insert(text, at)
    await planned(pilot, screen, since)


async def open_rules(pilot: Pilot[None]) -> RulesScreen:
    await settle(pilot)
    await pilot.press("2")
    screen = pilot.app.screen
    assert isinstance(screen, RulesScreen)
    await until(pilot, lambda: screen.connection_id == "okta")
    await planned(pilot, screen)
    return screen


def summary(screen: RulesScreen) -> str:
    return str(screen.query_one("#impact-summary", Label).content)


def detail(screen: RulesScreen) -> str:
    """The panel's details as plain text."""
    console = Console(width=120, file=io.StringIO(), record=True)
    console.print(screen.query_one("#impact-detail", Static).content)
    return console.export_text()


@pytest.fixture
def recorded(facade: Facade) -> Facade:
    """The workspace with ada (engineer), grace (sales) and alan (contractor, denied)
    signed in through okta, and josé through entra: three recorded okta sign-ins."""
    provision(facade)
    return facade


def rules_file(facade: Facade) -> Path:
    return facade.config.connections["okta"].rules


# -- the panel ---------------------------------------------------------------------------


async def test_the_panel_shows_an_account_the_edit_would_deny(recorded: Facade) -> None:
    app = make_app(recorded)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_rules(pilot)
        assert screen.impact is not None
        assert (screen.impact.recorded, screen.impact.deny) == (3, 0)
        assert summary(screen) == "would change 0 · denied 0 · unchanged 3 of 3 recorded"
        preview = screen.query_one(PreviewPanel)
        assert preview.border_subtitle == "f9 impact: 0 denied · 0 change · 3 unchanged"

        await edit(pilot, screen, DENY_SALES, (5, 0))
        assert screen.impact.deny == 1
        assert summary(screen) == "would change 0 · denied 1 · unchanged 2 of 3 recorded"
        shown = detail(screen)
        assert "would be denied" in shown
        assert "grace.hopper" in shown and "sales people are not provisioned" in shown
        assert "← line 6" in shown  # the deny line just typed
        assert "saving asks first" in shown
        assert screen.query_one(ImpactPanel).border_subtitle == "⚠ saving asks first · f9 preview"
        assert preview.border_subtitle == "f9 impact: 1 denied · 0 change · 2 unchanged"

        # The preview is shown at 120 columns; f9 shows the impact in its place, and back.
        panel = screen.query_one(ImpactPanel)
        assert preview.display and not panel.display
        await pilot.press("f9")
        await settle(pilot)
        assert panel.display and not preview.display
        assert panel.region.height > 5 and "grace.hopper" in app.export_screenshot()
        await pilot.press("f9")
        await settle(pilot)
        assert preview.display and not panel.display


async def test_changes_are_grouped_and_redacted_values_stay_redacted(recorded: Facade) -> None:
    app = make_app(recorded)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_rules(pilot)
        text = screen.editor.text
        text = text.replace("employee_id  = first(@employeeNumber)", 'employee_id = "X-1"')
        text = text.replace('groups += "everyone"', 'groups += "staff"')
        since = screen.generation
        screen.editor.load_text(text)
        await planned(pilot, screen, since)
        impact = screen.impact
        assert impact is not None and impact.change == 2 and impact.deny == 0
        groups = {(g.field, g.op, g.count) for g in impact.groups}
        assert groups == {("groups", "+", 2), ("employee_id", "=", 2)}
        label = next(g.label for g in impact.groups if g.field == "groups")
        assert "staff" in label and "ada.lovelace" in detail(screen)
        shown = detail(screen)
        assert "changes" in shown and label in shown
        assert "employee_id = ***" in shown
        assert "X-1" not in shown and "E-1815" not in shown  # employee_id is redacted
        assert summary(screen) == "would change 2 · denied 0 · unchanged 1 of 3 recorded"


async def test_nothing_recorded_is_said_in_one_line(app: JitprovApp) -> None:
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_rules(pilot)
        assert screen.impact is not None and screen.impact.recorded == 0
        assert summary(screen).startswith("no sign-ins recorded for this connection yet")
        assert detail(screen).strip() == ""
        preview = screen.query_one(PreviewPanel)
        assert preview.border_subtitle == "f9 impact: no recorded sign-ins"
        assert not (app.facade.root / "jitprov.db").exists()  # planning creates no store


async def test_a_text_with_errors_is_not_planned_and_the_last_impact_stays(
    recorded: Facade,
) -> None:
    app = make_app(recorded)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_rules(pilot)
        await edit(pilot, screen, DENY_SALES, (5, 0))
        good = screen.impact
        await edit(pilot, screen, "email = nosuchname\n", (2, 0))
        assert screen.check is not None and screen.check.errors
        assert screen.impact is good  # not planned again
        assert "last text without" in detail(screen)
        assert "grace.hopper" in detail(screen)


async def test_an_older_plan_is_dropped(recorded: Facade) -> None:
    app = make_app(recorded)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_rules(pilot)
        shown = screen.impact
        stale = Impact(recorded=3, deny=3)
        screen.show_impact(screen.generation - 1, ("okta", "old text"), stale)
        assert screen.impact is shown and "denied 0" in summary(screen)

        # A newer edit right after another: only the newest text's plan is shown.
        screen.editor.insert(DENY_SALES, (5, 0))
        await pilot.pause()
        await edit(pilot, screen, "# and a comment\n", (0, 0))
        assert screen.impact is not None and screen.impact.deny == 1
        assert screen._impact_key == ("okta", screen.editor.text)


def test_a_plan_stops_when_its_progress_callback_says_so(recorded: Facade) -> None:
    def cancelled(done: int, total: int) -> None:
        raise PlanCancelled

    with pytest.raises(PlanCancelled):
        recorded.plan("okta", recorded.read_rules("okta"), progress=cancelled)
    with pytest.raises(FacadeError, match="unknown connection"):
        recorded.plan("nope", "")


@pytest.mark.parametrize(
    ("recorded", "affected", "asks"),
    [
        (0, 0, False),
        (3, 1, True),  # 10% of 3 is 0.3
        (50, 5, False),  # 10% of 50 is 5: five is not more
        (50, 6, True),
        (1000, CONFIRM_ACCOUNTS, False),  # 10 accounts is smaller than 10% of 1000
        (1000, CONFIRM_ACCOUNTS + 1, True),
    ],
)
def test_the_threshold_is_ten_accounts_or_ten_percent_whichever_is_smaller(
    recorded: int, affected: int, asks: bool
) -> None:
    denied = Impact(recorded=recorded, deny=affected)
    removing = Impact(recorded=recorded, removing=affected)
    assert denied.asks_before_saving is asks and removing.asks_before_saving is asks


# -- the confirmation on save ------------------------------------------------------------


async def test_saving_rules_that_would_deny_asks_first(recorded: Facade) -> None:
    app = make_app(recorded)
    path = rules_file(recorded)
    before = path.read_text(encoding="utf-8")
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_rules(pilot)
        await edit(pilot, screen, DENY_SALES, (5, 0))
        await pilot.press("ctrl+s")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        dialog = app.screen
        assert isinstance(dialog, ConfirmScreen)
        assert "deny 1 account" in dialog.question and "3 recorded sign-ins" in dialog.question
        assert "remove set members from 0 accounts" in dialog.question
        assert dialog.focused is not None and dialog.focused.id == "no"  # enter: not saved

        await pilot.press("n")  # cancel: the file stays as it was
        await until(pilot, lambda: app.screen is screen)
        assert path.read_text(encoding="utf-8") == before
        assert screen.modified

        await pilot.press("ctrl+s")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.press("y")  # confirm: written
        await until(pilot, lambda: app.screen is screen)
        assert path.read_text(encoding="utf-8") == screen.editor.text
        assert DENY_SALES in path.read_text(encoding="utf-8")
        assert not screen.modified


async def test_saving_before_the_plan_is_shown_plans_first(recorded: Facade) -> None:
    app = make_app(recorded)
    path = rules_file(recorded)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_rules(pilot)
        screen.editor.insert(DENY_SALES, (5, 0))
        await pilot.press("ctrl+s")  # before the debounce fired: nothing planned yet
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.press("escape")
        await until(pilot, lambda: app.screen is screen)
        assert DENY_SALES not in path.read_text(encoding="utf-8")


async def test_saving_below_the_threshold_does_not_ask(recorded: Facade) -> None:
    app = make_app(recorded)
    path = rules_file(recorded)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_rules(pilot)
        await edit(pilot, screen, "# reviewed\n", (0, 0))
        await pilot.press("ctrl+s")
        await until(pilot, lambda: not screen.modified)
        assert not isinstance(app.screen, ConfirmScreen)
        assert path.read_text(encoding="utf-8").startswith("# reviewed\n")


async def test_saving_a_text_with_errors_does_not_ask(recorded: Facade) -> None:
    app = make_app(recorded)
    path = rules_file(recorded)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_rules(pilot)
        await edit(pilot, screen, "email = nosuchname\n", (2, 0))
        await pilot.press("ctrl+s")
        await until(pilot, lambda: not screen.modified)
        assert "nosuchname" in path.read_text(encoding="utf-8")


async def test_save_in_the_quit_guard_asks_too(recorded: Facade) -> None:
    app = make_app(recorded)
    path = rules_file(recorded)
    before = path.read_text(encoding="utf-8")
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_rules(pilot)
        await edit(pilot, screen, DENY_SALES, (5, 0))
        await pilot.press("ctrl+q")
        await until(pilot, lambda: isinstance(app.screen, UnsavedChangesScreen))
        await pilot.press("s")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.press("n")  # not saved, and the app stays
        await until(pilot, lambda: app.screen is screen)
        assert path.read_text(encoding="utf-8") == before
        assert app.is_running


# -- snapshots ---------------------------------------------------------------------------


@SIZES
def test_rules_screen_with_the_impact_panel(
    snap_compare: Any, config_path: Path, size: tuple[int, int]
) -> None:
    """The impact of an edit that denies grace (sales) and takes a group from ada: the
    impact panel in the preview's place (f9), or beside it from 180 columns."""

    async def run_before(pilot: Pilot[None]) -> None:
        await go(pilot, "2")
        screen = pilot.app.screen
        assert isinstance(screen, RulesScreen)
        screen.query_one("#preview-token", Select).value = (
            screen.facade.root / "samples/okta-engineer.toml"
        )
        await edit(pilot, screen, DENY_SALES, (5, 0))
        end = screen.editor.document.end
        await edit(pilot, screen, '\ngroups -= "eng-platform"', end)
        assert screen.impact is not None and screen.impact.affected == 2
        await pilot.press("f9")
        await settle(pilot)

    assert snap(snap_compare, demo_app(config_path, provisioned=True), size, run_before)
