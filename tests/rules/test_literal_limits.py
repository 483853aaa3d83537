"""What a rules file can make unbounded is a diagnostic, never a crash (issue 11).

A number literal longer than 100 characters is E007 (a 5,000-digit one used to be
"internal error: ValueError", Python's int/str conversion limit); an expression more
than 100 levels deep, however it got there (a chain of operators is one level per
operator), is E001 from the parser, so no later phase (the statement cache, check,
compile, format) can exhaust Python's recursion. Through `rules` and through the CLI.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rules import Context, check, compile_rules, format_source
from rules.diagnostics import SourceMap
from rules.format import FormatError
from rules.parse import parse
from rules.vocabulary import MAX_DEPTH, MAX_NUMBER_LENGTH
from tui.cli import run

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "examples" / "demo"
BIG = "9" * 5000


def codes(source: str) -> list[str]:
    return [d.code for d in check(source) if d.severity == "error"]


def positions(source: str) -> list[tuple[int, int, int, int]]:
    source_map = SourceMap(source)
    found = []
    for d in check(source):
        start, end = source_map.position(d.span.start), source_map.position(d.span.end)
        found.append((start.line, start.column, end.line, end.column))
    return found


# -- number literals ------------------------------------------------------------------


@pytest.mark.parametrize(
    "literal",
    [BIG, "-" + BIG, "1." + BIG, BIG + ".5", "0" * 5000, "1" * (MAX_NUMBER_LENGTH + 1)],
)
def test_integer_literal_of_5000_digits_is_a_diagnostic_with_its_span(literal: str) -> None:
    source = f"username = first(@uid)\ndepartment = text({literal})\n"
    (diagnostic,) = check(source, {"department": "text"})
    assert diagnostic.code == "E007" and diagnostic.severity == "error"
    assert diagnostic.message == (
        f"number literal too long: {len(literal)} characters (at most {MAX_NUMBER_LENGTH})"
    )
    start = source.index(literal)
    assert (diagnostic.span.start, diagnostic.span.end) == (start, start + len(literal))
    assert positions(source) == [(2, 19, 2, 19 + len(literal))]


def test_a_literal_of_100_characters_is_still_a_number() -> None:
    for literal in ("9" * MAX_NUMBER_LENGTH, "-" + "9" * 99, "1." + "5" * 98):
        result = compile_rules(f"username = text({literal})\n")
        assert result.ok, result.diagnostics
        plan = result.rules.evaluate({}, Context(subject="s"), None)  # type: ignore[union-attr]
        assert plan.fields["username"] == literal


@pytest.mark.parametrize(
    "place",
    [
        "username = truncate(first(@uid), {n})",
        'username = regex_extract(first(@uid), "(a)", {n})',
        'deny "x" when count(@g) > {n}',
        "let n = {n}\nusername = text(n + n)",
        'username = match first(@uid) {{ "a" => text({n}) else => "b" }}',
        'rule "r" when {n} == 1 {{ username = "x" }}',
    ],
)
def test_a_long_literal_anywhere_is_e007_in_every_phase(place: str) -> None:
    source = place.format(n=BIG) + "\n"
    assert codes(source) == ["E007"]
    result = compile_rules(source)
    assert not result.ok and [d.code for d in result.errors] == ["E007"]
    with pytest.raises(FormatError):
        format_source(source)


# -- depth ----------------------------------------------------------------------------


@pytest.mark.parametrize("op", ["+", "??", "or", "and"])
def test_a_long_operator_chain_is_too_deep_not_a_recursion_error(op: str) -> None:
    chain = f" {op} ".join(['"a"'] * 3000)
    source = f"username = {chain}\nusername = {chain}\n"  # the second copy is cached
    assert codes(source) == ["E001", "E001"]
    assert [p[:2] for p in positions(source)] == [(1, 12), (2, 12)]
    assert check(source)[0].message == "expression nested too deeply"
    with pytest.raises(FormatError):
        format_source(source)
    assert not compile_rules(source).ok


def test_depth_limit_is_exactly_max_depth() -> None:
    at_limit = " + ".join(['"a"'] * MAX_DEPTH)  # MAX_DEPTH - 1 operators: MAX_DEPTH levels
    assert check(f"username = {at_limit}\n") == []
    assert format_source(f"username = {at_limit}\n") == f"username = {at_limit}\n"
    assert codes(f'username = {at_limit} + "a"\n') == ["E001"]


@pytest.mark.parametrize(
    "source",
    [
        "username = " + "(" * 5000 + '"a"' + ")" * 5000,
        "username = " + "lower(" * 5000 + '"a"' + ")" * 5000,
        "groups = " + "[" * 5000 + '"a"' + "]" * 5000,
        "active = " + "not " * 5000 + "true",
        "username = " + 'if true then "a" else ' * 3000 + '"b"',
        "username = " + 'match "x" { else => ' * 3000 + '"b"' + "}" * 3000,
        'rule "r" when ' + " and ".join(["true"] * 3000) + ' { username = "a" }',
        # two chains of 60, one inside the other: 120 levels, neither long on its own
        "username = (" + " + ".join(['"a"'] * 60) + ") + " + " + ".join(['"a"'] * 60),
    ],
)
def test_deep_nesting_of_every_kind_is_e001(source: str) -> None:
    program, diagnostics = parse(source + "\n")
    assert program is None and {d.code for d in diagnostics} == {"E001"}
    assert not compile_rules(source + "\n").ok


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    digits=st.integers(1, 6000),
    point=st.booleans(),
    terms=st.integers(1, 400),
    op=st.sampled_from(["+", "??", "or", "and", "=="]),
    copies=st.integers(1, 3),
)
def test_parse_check_compile_format_never_raise_on_big_literals_and_chains(
    digits: int, point: bool, terms: int, op: str, copies: int
) -> None:
    literal = "7" * digits + (".25" if point else "")
    chain = f" {op} ".join([literal] * terms)
    source = f'username = first(@uid)\nlet v = {chain}\ndeny "x" when v == null\n' * copies
    diagnostics = check(source)
    result = compile_rules(source)
    syntax_ok = parse(source)[0] is not None
    if syntax_ok:
        assert parse(format_source(source))[0] is not None
    else:
        with pytest.raises(FormatError):
            format_source(source)
    if len(literal) > MAX_NUMBER_LENGTH:
        assert "E007" in {d.code for d in diagnostics}
    if terms > MAX_DEPTH and op != "==":
        assert not syntax_ok
    for d in diagnostics:
        assert 0 <= d.span.start <= d.span.end <= len(source)
    assert result.ok == (not any(d.severity == "error" for d in diagnostics))


# -- through the command line ---------------------------------------------------------


@pytest.fixture
def demo(tmp_path: Path) -> Path:
    root = tmp_path / "demo"
    shutil.copytree(DEMO, root, ignore=shutil.ignore_patterns("jitprov.db*"))
    rules = root / "rules" / "okta.rules"
    rules.write_text(rules.read_text() + f"\nlet huge = {BIG}\n")
    return root


def test_check_reports_a_5000_digit_literal_and_exits_1_without_a_traceback(
    demo: Path,
) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "tui.cli", "check", "--config", str(demo / "jitprov.toml")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr and "internal error" not in done.stderr
    assert "rules/okta.rules:" in done.stdout + done.stderr
    assert "error[E007]: number literal too long: 5000 characters (at most 100)" in (
        done.stdout + done.stderr
    )


def test_check_json_gives_the_literals_position(
    demo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rules = demo / "rules" / "okta.rules"
    line = len(rules.read_text().splitlines())
    code = run(["check", "--json", "--config", str(demo / "jitprov.toml")])
    out, err = capsys.readouterr()
    assert code == 1 and err == ""
    found = [d for d in json.loads(out) if d["code"] == "E007"]
    assert [Path(d.pop("path")).parts[-2:] for d in found] == [("rules", "okta.rules")]
    assert found == [
        {
            "line": line,
            "column": 12,
            "end_line": line,
            "end_column": 12 + 5000,
            "severity": "error",
            "code": "E007",
            "message": "number literal too long: 5000 characters (at most 100)",
            "hint": 'compare a longer run of digits as text ("...") instead',
        }
    ]


@pytest.mark.parametrize(
    "argv",
    [
        ["apply", "-c", "okta", "samples/okta-engineer.xml", "--at", "2024-05-01T12:01:00Z"],
        ["explain", "-c", "okta", "samples/okta-engineer.xml", "--at", "2024-05-01T12:01:00Z"],
        ["test", "-k", "okta"],
    ],
)
def test_commands_that_compile_rules_show_the_diagnostic(
    demo: Path, argv: list[str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(demo)
    code = run(argv)
    out, err = capsys.readouterr()
    assert code == 1
    assert "internal error" not in err and "Traceback" not in err
    assert "error[E007]" in out + err
