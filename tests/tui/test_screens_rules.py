"""The Rules screen: problems as you type, the live preview, save, format, the guard."""

from __future__ import annotations

import pytest
from textual.widgets import DataTable

from tests.tui.conftest import SIZE, settle
from tui.app import JitprovApp, make_app
from tui.facade import Facade
from tui.screens.bench import BenchScreen
from tui.screens.confirm import UnsavedChangesScreen
from tui.screens.rules import RulesScreen
from tui.widgets.highlight import scan_line
from tui.widgets.problems import ProblemList


async def open_rules(app: JitprovApp, pilot: object) -> RulesScreen:
    await settle(pilot)  # type: ignore[arg-type]
    await pilot.press("2")  # type: ignore[attr-defined]
    await settle(pilot)  # type: ignore[arg-type]
    screen = app.screen
    assert isinstance(screen, RulesScreen)
    return screen


def preview_values(screen: RulesScreen) -> dict[str, str]:
    table = screen.query_one("#preview-table", DataTable)
    return {
        str(row[0]): str(row[1]) for row in (table.get_row_at(i) for i in range(table.row_count))
    }


async def test_typing_an_error_shows_it_then_fixing_updates_the_preview(app: JitprovApp) -> None:
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_rules(app, pilot)
        assert screen.connection_id == "okta"
        screen.query_one("#preview-token").value = screen.facade.root / "samples/okta-engineer.toml"
        await settle(pilot)
        assert screen.preview is not None and screen.preview.outcome == "created"
        assert preview_values(screen)["department"] == "engineering"

        end = screen.editor.document.end
        screen.editor.move_cursor(end)
        screen.editor.focus()
        await pilot.press(*"department = shout(dept)")
        await settle(pilot)
        assert screen.check is not None
        codes = [p.code for p in screen.check.problems]
        assert "E011" in codes  # unknown function
        panel = screen.query_one(ProblemList)
        assert "unknown function" in str(panel.get_option_at_index(0).prompt)
        assert screen.preview is not None and "errors" in (screen.preview.message or "")
        assert preview_values(screen)["department"] == "engineering"  # the last good result

        for _ in range(len("shout(dept)")):
            await pilot.press("backspace")
        await pilot.press(*"upper(dept)")
        await settle(pilot)
        assert screen.check is not None and not screen.check.problems
        assert screen.preview is not None and screen.preview.outcome == "created"
        assert preview_values(screen)["department"] == "ENGINEERING"
        row = next(r for r in screen.preview.rows if r.field == "department")
        assert row.lines[-1] == screen.editor.document.line_count  # the line just typed


async def test_choosing_a_problem_moves_the_cursor_there(app: JitprovApp) -> None:
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_rules(app, pilot)
        screen.editor.insert("email = nosuchname\n", (2, 0))
        await settle(pilot)
        assert screen.check is not None and screen.check.problems
        panel = screen.query_one(ProblemList)
        panel.focus()
        panel.highlighted = 0
        await pilot.press("enter")
        await settle(pilot)
        problem = screen.check.problems[0]
        assert screen.editor.cursor_location == (problem.line - 1, problem.column - 1)
        assert screen.editor.has_focus


async def test_save_writes_the_file_and_clears_modified(app: JitprovApp) -> None:
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_rules(app, pilot)
        path = screen.facade.config.connections["okta"].rules
        screen.editor.insert("# reviewed\n", (0, 0))
        await settle(pilot)
        assert screen.modified and screen.editor.border_subtitle == "modified"
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert path.read_text(encoding="utf-8").startswith("# reviewed\n")
        assert not screen.modified


async def test_format_rewrites_the_text_without_saving(app: JitprovApp) -> None:
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_rules(app, pilot)
        path = screen.facade.config.connections["okta"].rules
        before = path.read_text(encoding="utf-8")
        screen.editor.insert('groups   +=    "extra"\n', (0, 0))
        await settle(pilot)
        await pilot.press("ctrl+f")
        await settle(pilot)
        assert 'groups += "extra"' in screen.editor.text
        assert path.read_text(encoding="utf-8") == before


async def test_switching_file_with_unsaved_changes_asks(app: JitprovApp) -> None:
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_rules(app, pilot)
        screen.editor.insert("# draft\n", (0, 0))
        await settle(pilot)
        screen.request_open("entra")
        await settle(pilot)
        assert isinstance(app.screen, UnsavedChangesScreen)
        await pilot.click("#cancel")
        await settle(pilot)
        assert screen.connection_id == "okta" and screen.modified
        screen.request_open("entra")
        await settle(pilot)
        await pilot.click("#discard")
        await settle(pilot)
        assert screen.connection_id == "entra" and not screen.modified
        assert "Entra" in screen.editor.text


async def test_highlighting_marks_keywords_strings_attributes_and_comments(
    app: JitprovApp,
) -> None:
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_rules(app, pilot)
        screen.editor.load_text('# note\nlet m = first(@email) ?? "x"\n')
        await settle(pilot)
        kinds = {kind for line in screen.editor._highlights.values() for *_, kind in line}
        assert {"comment", "keyword", "attribute", "string", "function"} <= kinds


async def test_ctrl_t_runs_the_cases_on_the_bench(app: JitprovApp) -> None:
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_rules(app, pilot)
        screen.editor.focus()
        await pilot.press("ctrl+t")
        await settle(pilot)
        await settle(pilot)
        bench = app.screen
        assert isinstance(bench, BenchScreen)
        assert bench.cases  # the demo's cases, listed with their status


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("# a comment", [("# a comment", "comment")]),
        (
            'let m = "a#b" # c',
            [("let", "keyword"), ("=", "operator"), ('"a#b"', "string"), ("# c", "comment")],
        ),
        (
            r'x = r"^CN=([^,]+)"',
            [("x", "field"), ("=", "operator"), (r'r"^CN=([^,]+)"', "string.regex")],
        ),
        ('@"urn:oid:1.2" @mail.x-y', [('@"urn:oid:1.2"', "attribute"), ("@mail.x-y", "attribute")]),
        (
            "groups += f(subject)",
            [("groups", "field"), ("+=", "operator"), ("f", "function"), ("subject", "context")],
        ),
        ('deny "x\\"y', [("deny", "keyword"), ('"x\\"y', "string")]),  # unterminated
        ("usernames == null 2.5", [("==", "operator"), ("null", "constant"), ("2.5", "number")]),
    ],
)
def test_scanner_tokens(line: str, expected: list[tuple[str, str]]) -> None:
    assert [(line[s:e], kind) for s, e, kind in scan_line(line)] == expected


async def test_escape_leaves_the_editor_and_s_in_the_guard_saves(app: JitprovApp) -> None:
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_rules(app, pilot)
        assert screen.editor.has_focus
        await pilot.press("1")  # typed into the rules
        await settle(pilot)
        assert screen.modified
        screen.request_open("shib")
        await settle(pilot)
        await pilot.press("s")
        await settle(pilot)
        assert screen.connection_id == "shib"
        okta = screen.facade.config.connections["okta"].rules.read_text(encoding="utf-8")
        assert okta.startswith("1# Okta")
        await pilot.press("escape")
        await pilot.press("3")
        await settle(pilot)
        assert isinstance(app.screen, BenchScreen)


async def test_preview_diffs_against_the_stored_account_and_underlines_problems(
    facade: Facade,
) -> None:
    engineer = facade.root / "samples/okta-engineer.toml"
    assert facade.run_token("okta", engineer, dry_run=False).outcome == "created"
    app = make_app(facade)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_rules(app, pilot)
        screen.query_one("#preview-token").value = engineer
        await settle(pilot)
        assert screen.preview is not None and screen.preview.outcome == "unchanged"
        text = screen.editor.text.replace('=> "engineering"', '=> "research"')
        screen.editor.load_text(text)
        await settle(pilot)
        assert screen.preview is not None and screen.preview.outcome == "updated"
        row = next(r for r in screen.preview.rows if r.field == "department")
        assert (row.value, row.diff, row.changed) == ("research", "was engineering", True)
        assert facade.users().rows[0].username == "ada.lovelace"
        assert facade.user(1).fields[6] == (
            "department",
            "engineering",
        )  # the preview wrote nothing

        screen.editor.insert("email = nosuchname\n", (2, 0))
        await settle(pilot)
        marks = [kind for line in screen.editor._highlights.values() for *_, kind in line]
        assert "problem.error" in marks


async def test_the_problem_under_the_cursor_is_named_below_the_panel(app: JitprovApp) -> None:
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_rules(app, pilot)
        screen.editor.insert("email = nosuchname\n", (2, 0))
        await settle(pilot)
        panel = screen.query_one(ProblemList)
        screen.editor.move_cursor((2, 3))
        await settle(pilot)
        assert "E010" in str(panel.border_subtitle)
        screen.editor.move_cursor((0, 0))
        await settle(pilot)
        assert not panel.border_subtitle
