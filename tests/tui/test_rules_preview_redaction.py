"""The Rules screen's preview shows a redacted field's value as *** (product.md §1:
`redact` holds in every TUI view, the Rules preview included; issue 11)."""

from __future__ import annotations

from pathlib import Path

from textual.widgets import DataTable, Label

from tests.tui.conftest import FIXED_NOW, SIZE, settle
from tui.app import JitprovApp, make_app
from tui.facade import Facade
from tui.screens.rules import RulesScreen


def preview_cells(screen: RulesScreen) -> dict[str, tuple[str, str]]:
    """field → (value, vs stored) as the preview table shows them."""
    table = screen.query_one("#preview-table", DataTable)
    rows = (table.get_row_at(i) for i in range(table.row_count))
    return {str(row[0]): (str(row[1]), str(row[2])) for row in rows}


async def open_preview(app: JitprovApp, pilot: object, sample: str) -> RulesScreen:
    await settle(pilot)  # type: ignore[arg-type]
    await pilot.press("2")  # type: ignore[attr-defined]
    await settle(pilot)  # type: ignore[arg-type]
    screen = app.screen
    assert isinstance(screen, RulesScreen) and screen.connection_id == "okta"
    screen.query_one("#preview-token").value = screen.facade.root / sample
    await settle(pilot)  # type: ignore[arg-type]
    return screen


async def test_the_rules_preview_shows_a_redacted_field_as_stars(app: JitprovApp) -> None:
    # okta has redact = ["employee_id"]; the sample's employeeNumber is E-1815.
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_preview(app, pilot, "samples/okta-engineer.toml")
        assert screen.preview is not None and screen.preview.outcome == "created"
        cells = preview_cells(screen)
        assert cells["employee_id"] == ("***", "new")
        assert cells["department"] == ("engineering", "new")  # not redacted
        assert all("E-1815" not in value + diff for value, diff in cells.values())


async def test_the_rules_preview_message_hides_a_redacted_value(config_path: Path) -> None:
    text = config_path.read_text(encoding="utf-8")
    config_path.write_text(
        text.replace('redact         = ["employee_id"]', 'redact = ["employee_id", "email"]'),
        encoding="utf-8",
    )
    rules = config_path.parent / "rules" / "okta.rules"
    deny = (
        'deny "alan.turing@contractors.example.net is not provisioned"'
        ' when mail == "alan.turing@contractors.example.net"\n'
    )
    source = rules.read_text(encoding="utf-8")
    after = "let dept = first(@department)\n"
    rules.write_text(source.replace(after, after + deny), encoding="utf-8")
    app = make_app(Facade(config_path, clock=lambda: FIXED_NOW))
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_preview(app, pilot, "samples/okta-contractor.toml")
        assert screen.preview is not None and screen.preview.outcome == "denied"
        assert screen.preview.message == "*** is not provisioned"
        assert str(screen.query_one("#preview-message", Label).content) == "*** is not provisioned"
