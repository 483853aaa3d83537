"""The Test bench: decode and dry-run a token, apply it, run all cases."""

from __future__ import annotations

from pathlib import Path

import pytest
from textual.widgets import DataTable, Input, Label, Select, Static

from tests.tui.conftest import FIXED_NOW, SIZE, copy_demo, settle
from tui.app import JitprovApp, make_app
from tui.facade import Facade
from tui.screens.bench import BenchScreen


async def open_bench(app: JitprovApp, pilot: object) -> BenchScreen:
    await settle(pilot)  # type: ignore[arg-type]
    await pilot.press("3")  # type: ignore[attr-defined]
    await settle(pilot)  # type: ignore[arg-type]
    assert isinstance(app.screen, BenchScreen)
    return app.screen


async def test_dry_run_shows_attributes_validation_and_plan(app: JitprovApp) -> None:
    async with app.run_test(size=SIZE) as pilot:
        bench = await open_bench(app, pilot)
        bench.query_one("#bench-token", Select).value = (
            bench.facade.root / "samples/okta-engineer.toml"
        )
        await pilot.press("d")
        await settle(pilot)
        validation = str(bench.query_one("#bench-validation", Label).render())
        assert "unsigned sample" in validation
        attributes = bench.query_one("#bench-attributes", DataTable)
        names = {str(attributes.get_row_at(i)[0]) for i in range(attributes.row_count)}
        assert {"email", "department", "groups"} <= names
        assert "dry run: created" in str(bench.query_one("#bench-outcome", Label).render())
        plan = bench.query_one("#bench-plan", DataTable)
        fields = {str(plan.get_row_at(i)[0]) for i in range(plan.row_count)}
        assert {"username", "department", "groups"} <= fields
        assert not (bench.facade.root / "jitprov.db").exists()  # a dry run writes nothing


async def test_apply_writes_through_the_pipeline(app: JitprovApp) -> None:
    async with app.run_test(size=SIZE) as pilot:
        bench = await open_bench(app, pilot)
        bench.query_one("#bench-token", Select).value = (
            bench.facade.root / "samples/okta-engineer.toml"
        )
        await pilot.press("a")
        await settle(pilot)
        assert "applied: created" in str(bench.query_one("#bench-outcome", Label).render())
        page = bench.facade.users()
        assert [row.username for row in page.rows] == ["ada.lovelace"]


async def test_run_all_cases_lists_pass_and_fail_with_details(app: JitprovApp) -> None:
    async with app.run_test(size=SIZE) as pilot:
        bench = await open_bench(app, pilot)
        await pilot.press("ctrl+t")
        await settle(pilot)
        table = bench.query_one("#bench-case-list", DataTable)
        assert table.row_count == len(bench.cases) > 0
        assert [(c.name, c.status) for c in bench.cases] == [
            ("okta/contractor-denied", "passed"),
            ("okta/engineer-created", "passed"),
            ("okta/sales-is-engineering", "failed"),
        ]
        assert table.border_title == "cases: 2 passed, 1 failed"
        diff = str(bench.query_one("#bench-diff", Static).render())
        assert "user.department" in diff and '"sales"' in diff  # the failing case's diff
        table.focus()
        table.move_cursor(row=0)
        await settle(pilot)
        assert "passed" in str(bench.query_one("#bench-diff", Static).render())


async def test_enter_on_a_case_runs_it_alone(app: JitprovApp) -> None:
    async with app.run_test(size=SIZE) as pilot:
        bench = await open_bench(app, pilot)
        await pilot.press("ctrl+t")
        await settle(pilot)
        rules = bench.facade.config.connections["okta"].rules
        text = rules.read_text(encoding="utf-8")
        rules.write_text(
            text.replace('"Sales"              => "sales"', '"Sales" => "engineering"')
        )
        table = bench.query_one("#bench-case-list", DataTable)
        table.focus()
        assert table.cursor_row == 2  # the failing case is selected
        await pilot.press("enter")
        await settle(pilot)
        assert [c.status for c in bench.cases] == ["passed", "passed", "passed"]
        assert table.cursor_row == 2


async def test_a_signed_token_is_validated_at_the_time_given(tmp_path: Path) -> None:
    config = copy_demo(tmp_path / "demo")
    signed = config.parent / "samples" / "okta-engineer.xml"
    if not signed.exists():
        pytest.skip("the demo has no signed okta-engineer.xml")
    app = make_app(Facade(config, clock=lambda: FIXED_NOW.replace(year=2030)))
    async with app.run_test(size=SIZE) as pilot:
        bench = await open_bench(app, pilot)
        bench.query_one("#bench-connection", Select).value = "okta"
        bench.query_one("#bench-token", Select).value = signed
        await settle(pilot)
        bench.set_focus(None)
        await pilot.press("d")
        await settle(pilot)
        assert "rejected (expired)" in str(bench.query_one("#bench-validation", Label).render())
        bench.query_one("#bench-at", Input).value = "2024-05-01T12:01:00Z"
        bench.set_focus(None)
        await pilot.press("d")
        await settle(pilot)
        assert "✔ valid" in str(bench.query_one("#bench-validation", Label).render())
        assert "dry run: created" in str(bench.query_one("#bench-outcome", Label).render())


async def test_redacted_attributes_show_as_stars(tmp_path: Path) -> None:
    """product.md §1: redact holds in every TUI view, the decoded attributes included."""
    config = copy_demo(tmp_path / "demo")
    text = config.read_text(encoding="utf-8")
    config.write_text(
        text.replace('redact         = ["employee_id"]', 'redact = ["employee_id", "email"]', 1),
        encoding="utf-8",
    )
    app = make_app(Facade(config, clock=lambda: FIXED_NOW))
    async with app.run_test(size=SIZE) as pilot:
        bench = await open_bench(app, pilot)
        bench.query_one("#bench-connection", Select).value = "okta"
        bench.query_one("#bench-token", Select).value = config.parent / "samples/okta-engineer.toml"
        await settle(pilot)
        bench.set_focus(None)
        await pilot.press("d")
        await settle(pilot)
        table = bench.query_one("#bench-attributes", DataTable)
        rows = {
            str(table.get_row_at(i)[0]): str(table.get_row_at(i)[1]) for i in range(table.row_count)
        }
        assert rows["email"] == "***"
        assert rows["department"] != "***"
