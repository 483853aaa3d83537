"""The formatter: golden before/after cases, and hypothesis for round trip and idempotence."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rules.ast import Assign, Binary, IfExpr, Name, Not, Program
from rules.format import FormatError, format_program, format_source, string_literal
from rules.parse import parse
from tests.rules.strategies import checked_programs, programs
from tests.rules.test_parse import SPEC_EXAMPLE

SPEC_FORMATTED = """\
# Okta → our user store
let mail = lower(first(@email ?? @"urn:oid:0.9.2342.19200300.100.1.3"))
let dept = first(@department) ?? "unknown"

deny "no e-mail address in the assertion" when mail == null
deny "contractors are not provisioned" when "contractor" in @employeeType

username     = email_local(mail)
email        = mail
display_name = first(@displayName) ?? join([first(@givenName), first(@sn)], " ")
department   = match dept {
    "Engineering", "R&D" => "engineering"
    "Sales"              => "sales"
    else                 => "other"
}
groups      += "everyone"
groups      += [dn_value(g, "CN") for g in @memberOf if g matches "(?i)OU=Apps,"]

rule "first login defaults" on create {
    active = true
    roles  = ["viewer"]
}

rule "engineers" when dept == "Engineering" {
    roles += "developer"
}

display_name ?= subject  # fallback: nothing stored and nothing assigned above
"""

CASES: list[tuple[str, str, str]] = [
    ("spec example", SPEC_EXAMPLE, SPEC_FORMATTED),
    ("empty", "", ""),
    ("blank lines only", "\n\n  \n", ""),
    (
        "one statement a line",
        "username=a email  :=b clear groups",
        "username = a\nemail   := b\nclear groups\n",
    ),
    (
        "aligned run ends at blank line, comment and other statements",
        'a = 1\nlong_name += 2\n\nb = 3\n# c\ncc ?= 4\ndeny "x"\nd = 5\n',
        'a          = 1\nlong_name += 2\n\nb = 3\n# c\ncc ?= 4\ndeny "x"\nd = 5\n',
    ),
    (
        "lets align among themselves",
        "let a = 1\nlet bcd = 2\nx = 3",
        "let a   = 1\nlet bcd = 2\nx = 3\n",
    ),
    ("at most one blank line", "a = 1\n\n\n\nb = 2\n\n\n", "a = 1\n\nb = 2\n"),
    (
        "canonical spacing",
        'x=f( a,b )??[ 1,2 ]+[]\ny=not(a==b)\nz=[v for v in @a if v!=""]',
        'x = f(a, b) ?? [1, 2] + []\ny = not a == b\nz = [v for v in @a if v != ""]\n',
    ),
    (
        "minimal parentheses keep meaning",
        "x = ((a ?? b)) ?? (c ?? d)\ny = (a + b) + (c + d)\nz = (not a) == b\nw = (a == b) == c",
        "x = a ?? b ?? (c ?? d)\ny = a + b + (c + d)\nz = (not a) == b\nw = (a == b) == c\n",
    ),
    (
        "if needs parentheses inside operators only",
        "x = a ?? (if c then a else b)\ny = (if c then a else b)\nz = f((if a then b else c))",
        "x = a ?? (if c then a else b)\ny = if c then a else b\nz = f(if a then b else c)\n",
    ),
    (
        "strings re-escaped canonically, raw strings kept raw",
        'x = "\\u0041\\t\\"q\\"\\\\"\ny = r"^CN=(\\w+)"\nz = @"mail"\nw = @"a b"',
        'x = "A\\t\\"q\\"\\\\"\ny = r"^CN=(\\w+)"\nz = @"mail"\nw = @"a b"\n',
    ),
    ("numbers keep their spelling", "x = -3 + 2.50 + 007", "x = -3 + 2.50 + 007\n"),
    (
        "rules indent four and keep phases and conditions",
        'rule   "r"   on   update   when a{x=1 let y=2}\nrule "e" {\n}',
        'rule "r" on update when a {\n    x = 1\n    let y = 2\n}\nrule "e" {}\n',
    ),
    (
        "comments stay in place",
        '# head\n\nx = 1 # end of line\n# before y\ny = 2\nrule "r" { # on brace\n  # inside\n  z = 3 # z\n  # last\n} # after\n# tail\n',
        '# head\n\nx = 1  # end of line\n# before y\ny = 2\nrule "r" {  # on brace\n    # inside\n    z = 3  # z\n    # last\n}  # after\n# tail\n',
    ),
    (
        "a comment inside an expression moves above its statement",
        "x = f(a, # why\n  b)\n",
        "# why\nx = f(a, b)\n",
    ),
    (
        "comments in a rule header move above it; one after its brace stays",
        'rule "x" # c\n when a # d\n { # e\n y = 1 } # f',
        '# c\n# d\nrule "x" when a {  # e\n    y = 1\n}  # f\n',
    ),
    (
        "nested matches keep their own comments",
        'x = f(match a { # m\n "a" => g(match b { else => 1 # inner\n }) # outer\n'
        " else => 3 # last\n } # done\n) # end",
        '# done\nx = f(match a {  # m\n    "a"  => g(match b {\n        else => 1  # inner\n'
        "    })  # outer\n    else => 3  # last\n})  # end\n",
    ),
    (
        "match arms one a line with => aligned and their comments kept",
        'x = match a { # m\n "long one", "b" => 1 # one\n # before\n "c" => match b { else => 2 } else => 3 }',
        'x = match a {  # m\n    "long one", "b" => 1  # one\n    # before\n    "c"             => match b {\n        else => 2\n    }\n    else            => 3\n}\n',
    ),
]


@pytest.mark.parametrize(("name", "source", "expected"), CASES, ids=[c[0] for c in CASES])
def test_golden(name: str, source: str, expected: str) -> None:
    formatted = format_source(source)
    assert formatted == expected
    assert format_source(formatted) == formatted


def test_format_error_carries_the_syntax_diagnostics() -> None:
    with pytest.raises(FormatError) as raised:
        format_source("x = (a\ny = 2 +")
    assert [d.code for d in raised.value.diagnostics] == ["E001", "E001"]


def test_format_program_without_source() -> None:
    condition = IfExpr(Name("c"), Name("a"), Name("b"))
    program = Program(
        (
            Assign("username", "=", Binary("??", Name("x"), condition)),
            Assign("email", "=", Not(Binary("??", Name("a"), Name("b")))),
        )
    )
    expected = "username = x ?? (if c then a else b)\nemail    = not (a ?? b)\n"
    assert format_program(program) == expected
    reparsed, _ = parse(expected)
    assert reparsed == program


@pytest.mark.parametrize(
    ("value", "raw", "spelled"),
    [
        ("a\\b", True, 'r"a\\b"'),
        ('say "hi"', True, '"say \\"hi\\""'),
        ("line\nbreak\x00", False, '"line\\nbreak\\u0000"'),
        ("é😀", False, '"é😀"'),
    ],
)
def test_string_literal(value: str, raw: bool, spelled: str) -> None:
    assert string_literal(value, raw) == spelled


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(programs(), checked_programs()))
def test_round_trip_keeps_meaning_and_comments_and_is_idempotent(source: str) -> None:
    formatted = format_source(source)
    before, _ = parse(source)
    after, diagnostics = parse(formatted)
    assert diagnostics == []
    assert after == before
    assert before is not None and after is not None
    assert sorted(c.text.rstrip() for c in after.comments) == sorted(
        c.text.rstrip() for c in before.comments
    )
    assert format_source(formatted) == formatted


def test_a_comment_ending_in_a_brace_does_not_close_an_empty_rule() -> None:
    formatted = format_source('rule "r" {  # {\n}')
    assert formatted == 'rule "r" {  # {\n}\n'
    assert format_source(formatted) == formatted


_PIECES = st.sampled_from(['"', "#", "{", "}", "\n", "(", ")", "=", "r", "\\", "let ", "# {"])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(programs(), st.lists(st.tuples(st.integers(0, 10**4), _PIECES), min_size=1, max_size=4))
def test_round_trip_on_damaged_programs_that_still_parse(
    source: str, edits: list[tuple[int, str]]
) -> None:
    for position, piece in edits:
        position %= len(source) + 1
        source = source[:position] + piece + source[position:]
    program, _ = parse(source)
    if program is None:
        return
    formatted = format_source(source)
    assert parse(formatted)[0] == program
    assert format_source(formatted) == formatted


DOCS = Path(__file__).parents[2] / "docs" / "rules.md"


def test_the_reference_example_is_in_canonical_layout() -> None:
    text = DOCS.read_text(encoding="utf-8")
    example = text.split("```\n", 2)[1]
    assert format_source(example) == example


def test_every_function_example_in_the_reference_parses() -> None:
    rows = re.findall(r"^\| `([a-z_]+\(.*?)` \|", DOCS.read_text(encoding="utf-8"), re.M)
    assert len(rows) > 30
    for row in rows:
        for call in re.split(r"`, `", row):
            _, diagnostics = parse(f"x = {call}")
            assert diagnostics == [], call
