"""Syntax errors: golden rendered diagnostics, recovery, and "never raises" on any text.

Each `golden/syntax/NAME.rules` is parsed and every diagnostic, rendered by
`rules.diagnostics.render`, must equal `NAME.txt`; a NAME starting with a code must
report that code. Run with `UPDATE_GOLDEN=1` to rewrite the snapshots, then review them.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rules.diagnostics import SourceMap, render
from rules.parse import parse
from tests.rules.strategies import programs

GOLDEN = Path(__file__).parent / "golden" / "syntax"
CASES = sorted(p.stem for p in GOLDEN.glob("*.rules"))


def rendered(source: str, path: str) -> str:
    program, diagnostics = parse(source)
    assert (program is None) == bool(diagnostics)
    source_map = SourceMap(source)
    return "\n\n".join(render(d, source_map, path) for d in diagnostics) + "\n"


@pytest.mark.parametrize("name", CASES)
def test_golden(name: str) -> None:
    source = (GOLDEN / f"{name}.rules").read_text(encoding="utf-8")
    actual = rendered(source, f"{name}.rules")
    expected_path = GOLDEN / f"{name}.txt"
    if os.environ.get("UPDATE_GOLDEN"):
        expected_path.write_text(actual, encoding="utf-8")
    assert actual == expected_path.read_text(encoding="utf-8")
    if name[0] == "E":
        assert f"error[{name[:4]}]" in actual


def test_every_syntax_code_has_a_golden_case() -> None:
    assert {name[:4] for name in CASES if name[0] == "E"} == {f"E00{i}" for i in range(1, 8)}


def test_every_broken_statement_is_reported() -> None:
    source = (GOLDEN / "multiple_errors.rules").read_text(encoding="utf-8")
    program, diagnostics = parse(source)
    assert program is None
    assert [d.code for d in diagnostics] == ["E001", "E002", "E004", "E001", "E005", "E003"]
    lines = [SourceMap(source).position(d.span.start).line for d in diagnostics]
    assert lines == sorted(lines)


def test_error_message_names_what_was_expected_and_found() -> None:
    _, diagnostics = parse("x = f(a b)")
    assert [d.message for d in diagnostics] == ['expected "," or ")", found "b"']
    _, diagnostics = parse('rule "r" {\n  x = 1\n')
    assert diagnostics[0].message == 'expected a statement or "}", found the end of the file'


def test_columns_count_code_points() -> None:
    source = 'x = "😀é" +'
    _, diagnostics = parse(source)
    assert "1:11:" in render(diagnostics[0], SourceMap(source), "f")


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text())
def test_parse_never_raises_on_arbitrary_text(source: str) -> None:
    program, diagnostics = parse(source)
    assert (program is None) == bool(diagnostics)
    for diagnostic in diagnostics:
        assert diagnostic.severity == "error" and diagnostic.code in {
            f"E00{i}" for i in range(1, 7)
        }
        assert 0 <= diagnostic.span.start <= diagnostic.span.end <= len(source)
        render(diagnostic, SourceMap(source), "f")


_PIECES = st.sampled_from(
    ['"', "r", "(", ")", "{", "}", "[", "]", "\\", "#", "\n", "=", "if", "match", "rule ", ",", "@"]
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(programs(), st.lists(st.tuples(st.integers(0, 10**4), _PIECES), min_size=1, max_size=4))
def test_parse_never_raises_on_damaged_programs(source: str, edits: list[tuple[int, str]]) -> None:
    for position, piece in edits:
        position %= len(source) + 1
        source = source[:position] + piece + source[position:]
    program, diagnostics = parse(source)
    assert (program is None) == bool(diagnostics)


def test_a_repeated_broken_statement_is_reported_where_each_copy_is() -> None:
    # The second copy is parsed from the statement cache: its error must move with it.
    source = "x = f(a b)\nx = f(a b)\ny = 1 < 2 < 3\ny = 1 < 2 < 3\n"
    _, diagnostics = parse(source)
    lines = [SourceMap(source).position(d.span.start) for d in diagnostics]
    assert [(p.line, p.column) for p in lines] == [(1, 9), (2, 9), (3, 11), (4, 11)]
    assert [d.code for d in diagnostics] == ["E001", "E001", "E004", "E004"]


def test_deep_nesting_is_an_error_not_a_crash() -> None:
    program, diagnostics = parse("x = " + "(" * 5000 + "a" + ")" * 5000)
    assert program is None and diagnostics[0].code == "E001"


def test_invisible_characters_are_named() -> None:
    _, diagnostics = parse("x = \u200b")
    assert diagnostics[0].message == "expected an expression, found the character U+200B"


def test_a_leading_byte_order_mark_is_ignored() -> None:
    program, diagnostics = parse("\ufeffusername = subject")
    assert diagnostics == [] and program is not None
    assert program.statements[0].span.start == 1


def test_every_broken_statement_in_a_rule_body_is_reported() -> None:
    source = (GOLDEN / "rule_body_errors.rules").read_text(encoding="utf-8")
    _, diagnostics = parse(source)
    assert [d.code for d in diagnostics] == ["E001", "E001", "E002", "E005"]


def test_a_statement_that_read_into_the_next_one_is_not_cached_with_that_context() -> None:
    """Found by `make fuzz`: `et )let` followed by `let if = 1` reported an E005 on the
    next statement's `let`; cached by its text, the same chunk at the end of another
    file then gave an E005 whose span lay past that file's end."""
    from rules.parse import parse

    parse("tltlet )\net )let\nlet if = 1\n")
    source = "tltlet )\net )let\n"
    _, diagnostics = parse(source)
    assert diagnostics
    assert all(0 <= d.span.start <= d.span.end <= len(source) for d in diagnostics)
