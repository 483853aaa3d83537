"""The parser: a table of (source, expected tree) cases, spans, the cache, and hypothesis.

Trees compare without spans (rules.ast excludes them from equality), so the table
states meaning only; the span tests below pin the offsets the checker's carets use.
"""

from __future__ import annotations

from dataclasses import fields, is_dataclass
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rules.ast import (
    Assign,
    AttrRef,
    Binary,
    BoolLit,
    Call,
    Clear,
    Comprehension,
    Deny,
    Expr,
    IfExpr,
    Let,
    ListLit,
    Match,
    MatchArm,
    Name,
    Not,
    NullLit,
    NumLit,
    Program,
    Rule,
    Stmt,
    StrLit,
    UserField,
)
from rules.diagnostics import Span
from rules.parse import _cache, parse
from tests.rules.strategies import checked_programs, programs

a, b, c, d, x = (Name(n) for n in "abcdx")


def s(value: str) -> StrLit:
    return StrLit(value)


def n(value: str) -> NumLit:
    return NumLit(Decimal(value))


def op(symbol: str, left: Expr, right: Expr) -> Binary:
    return Binary(symbol, left, right)  # type: ignore[arg-type]


def parse_ok(source: str) -> Program:
    program, diagnostics = parse(source)
    assert diagnostics == []
    assert program is not None
    return program


def expr(source: str) -> Expr:
    statement = parse_ok(f"x = {source}").statements[0]
    assert isinstance(statement, Assign)
    return statement.value


EXPRESSIONS: list[tuple[str, Expr]] = [
    ('"a b"', s("a b")),
    (r'"q\"b\\s\n\t\u00e9\u20AC"', s('q"b\\s\n\té€')),
    (r'r"^CN=([^,]+)\d"', s(r"^CN=([^,]+)\d")),
    ('"#not a comment"', s("#not a comment")),
    ('"😀 ß"', s("😀 ß")),
    ("42", n("42")),
    ("-3", n("-3")),
    ("2.50", n("2.5")),
    ("true", BoolLit(True)),
    ("false", BoolLit(False)),
    ("null", NullLit()),
    ("@mail", AttrRef("mail")),
    ("@address.country", AttrRef("address.country")),
    ("@urn:oid:2.5.4-x", AttrRef("urn:oid:2.5.4-x")),
    (
        '@"http://schemas.xmlsoap.org/claims/Group"',
        AttrRef("http://schemas.xmlsoap.org/claims/Group"),
    ),
    ("username", Name("username")),
    ("notes", Name("notes")),
    ("iffy", Name("iffy")),
    ("truely", Name("truely")),
    ("subject", Name("subject")),
    ("user.email", UserField("email")),
    ("f()", Call("f", ())),
    ("lower( @a )", Call("lower", (AttrRef("a"),))),
    ('join([a, b], " ")', Call("join", (ListLit((a, b)), s(" ")))),
    ("f(if a then b else c, d)", Call("f", (IfExpr(a, b, c), d))),
    ("[]", ListLit(())),
    ('["a", b]', ListLit((s("a"), b))),
    ("[a for x in b]", Comprehension(a, "x", b, None)),
    (
        '[f(x) for x in @m if x matches r"\\d"]',
        Comprehension(Call("f", (x,)), "x", AttrRef("m"), op("matches", x, s(r"\d"))),
    ),
    (
        'match a { "x", "y" => b\n "z" => c else => d }',
        Match(a, (MatchArm((s("x"), s("y")), b), MatchArm((s("z"),), c)), d),
    ),
    ('match a { "x" => b }', Match(a, (MatchArm((s("x"),), b),), None)),
    ("match a { else => b }", Match(a, (), b)),
    ("if a then b else c", IfExpr(a, b, c)),
    ("if a then if b then c else d else x", IfExpr(a, IfExpr(b, c, d), x)),
    # §5 precedence examples
    ("not a == b", Not(op("==", a, b))),
    ("a or b ?? c", op("??", op("or", a, b), c)),
    ("a ?? b == c", op("??", a, op("==", b, c))),
    ("x ?? (if c then a else b)", op("??", x, IfExpr(c, a, b))),
    ("if c then a else b ?? d", IfExpr(c, a, op("??", b, d))),
    ("a ?? b ?? c", op("??", op("??", a, b), c)),
    ("a + b + c", op("+", op("+", a, b), c)),
    ("a + b == c + d", op("==", op("+", a, b), op("+", c, d))),
    ("a and b or c and d", op("or", op("and", a, b), op("and", c, d))),
    ("a or b and not c", op("or", a, op("and", b, Not(c)))),
    ("not not a", Not(Not(a))),
    ("a not in b", op("not in", a, b)),
    ("a not\n in b", op("not in", a, b)),
    ('a in b and c matches r"x"', op("and", op("in", a, b), op("matches", c, s("x")))),
    (
        "a <= b or a >= b or a < b or a > b or a != b",
        op(
            "or",
            op(
                "or",
                op("or", op("or", op("<=", a, b), op(">=", a, b)), op("<", a, b)),
                op(">", a, b),
            ),
            op("!=", a, b),
        ),
    ),
    ("(a ?? b) + c", op("+", op("??", a, b), c)),
    ("(a == b) == c", op("==", op("==", a, b), c)),
    ("a + -3", op("+", a, n("-3"))),
    ("a\n+\nb # comment\n", op("+", a, b)),
]


@pytest.mark.parametrize(("source", "expected"), EXPRESSIONS, ids=[e[0] for e in EXPRESSIONS])
def test_expression(source: str, expected: Expr) -> None:
    assert expr(source) == expected


STATEMENTS: list[tuple[str, Stmt]] = [
    ("let mail = @mail", Let("mail", AttrRef("mail"))),
    ("username = a", Assign("username", "=", a)),
    ("email := a", Assign("email", ":=", a)),
    ("display_name ?= subject", Assign("display_name", "?=", Name("subject"))),
    ('groups += "x"', Assign("groups", "+=", s("x"))),
    ('groups -= ["x"]', Assign("groups", "-=", ListLit((s("x"),)))),
    ("notes=a", Assign("notes", "=", a)),
    ("clear groups", Clear("groups")),
    ('deny "no"', Deny("no", None)),
    ('deny "no" when a == null', Deny("no", op("==", a, NullLit()))),
    ('rule "r" {}', Rule("r", None, None, ())),
    (
        'rule "r" on create when a { let y = b  roles = [y] clear email deny "d" }',
        Rule(
            "r",
            "create",
            a,
            (
                Let("y", b),
                Assign("roles", "=", ListLit((Name("y"),))),
                Clear("email"),
                Deny("d", None),
            ),
        ),
    ),
    (
        'rule "u" on update { active = true }',
        Rule("u", "update", None, (Assign("active", "=", BoolLit(True)),)),
    ),
]


@pytest.mark.parametrize(("source", "expected"), STATEMENTS, ids=[e[0] for e in STATEMENTS])
def test_statement(source: str, expected: Stmt) -> None:
    assert parse_ok(source).statements == (expected,)


def test_newlines_are_not_significant() -> None:
    one_line = parse_ok('let a = f(b) username = a deny "x" when a == null')
    spread = parse_ok('let\na\n=\nf\n(\nb\n)\nusername\n=\na\ndeny\n"x"\nwhen\na\n==\nnull\n')
    assert one_line == spread
    assert len(one_line.statements) == 3


SPEC_EXAMPLE = """\
# Okta → our user store
let mail  = lower(first(@email ?? @"urn:oid:0.9.2342.19200300.100.1.3"))
let dept  = first(@department) ?? "unknown"

deny "no e-mail address in the assertion" when mail == null
deny "contractors are not provisioned"     when "contractor" in @employeeType

username     = email_local(mail)
email        = mail
display_name = first(@displayName) ?? join([first(@givenName), first(@sn)], " ")
department   = match dept {
    "Engineering", "R&D" => "engineering"
    "Sales"              => "sales"
    else                 => "other"
}
groups += "everyone"
groups += [dn_value(g, "CN") for g in @memberOf if g matches "(?i)OU=Apps,"]

rule "first login defaults" on create {
    active = true
    roles  = ["viewer"]
}

rule "engineers" when dept == "Engineering" {
    roles += "developer"
}

display_name ?= subject        # fallback: nothing stored and nothing assigned above
"""


def test_spec_example_parses() -> None:
    program = parse_ok(SPEC_EXAMPLE)
    kinds = [type(st).__name__ for st in program.statements]
    assert kinds == ["Let", "Let", "Deny", "Deny"] + ["Assign"] * 6 + ["Rule", "Rule", "Assign"]
    assert [c.text for c in program.comments] == [
        "# Okta → our user store",
        "# fallback: nothing stored and nothing assigned above",
    ]
    department = program.statements[7]
    assert isinstance(department, Assign) and isinstance(department.value, Match)
    assert department.value.arms[0].patterns == (s("Engineering"), s("R&D"))


def text_at(source: str, span: Span) -> str:
    return source[span.start : span.end]


def test_spans() -> None:
    source = 'let m = "é😀" ?? lower(@mail)  # c\nrule "r" when user.email != null {\n  groups += [v for v in @g]\n}'
    program = parse_ok(source)
    let, rule = program.statements
    assert isinstance(let, Let) and isinstance(rule, Rule)
    assert text_at(source, let.span) == 'let m = "é😀" ?? lower(@mail)'
    assert text_at(source, let.name_span) == "m"
    value = let.value
    assert isinstance(value, Binary) and isinstance(value.right, Call)
    assert value.op_span == Span(13, 15)  # code points: "é😀" is four of them
    assert text_at(source, value.right.name_span) == "lower"
    assert text_at(source, value.right.span) == "lower(@mail)"
    assert text_at(source, program.comments[0].span) == "# c"
    assert text_at(source, rule.name_span) == '"r"'
    assert text_at(source, rule.span).endswith("}")
    condition = rule.condition
    assert isinstance(condition, Binary) and isinstance(condition.left, UserField)
    assert text_at(source, condition.left.field_span) == "email"
    assert text_at(source, condition.left.span) == "user.email"
    assign = rule.body[0]
    assert isinstance(assign, Assign) and isinstance(assign.value, Comprehension)
    assert text_at(source, assign.field_span) == "groups"
    assert text_at(source, assign.value.var_span) == "v"
    assert text_at(source, assign.value.span) == "[v for v in @g]"


def test_more_spans() -> None:
    source = 'deny "m" when (a)\nx = match b { else => 1 }'
    deny, assign = parse_ok(source).statements
    assert isinstance(deny, Deny) and isinstance(assign, Assign)
    assert text_at(source, deny.message_span) == '"m"'
    assert deny.condition is not None and text_at(source, deny.condition.span) == "(a)"
    assert isinstance(assign.value, Match)
    assert text_at(source, assign.value.else_span) == "else"
    assert text_at(source, assign.value.span) == "match b { else => 1 }"


def test_keyword_prefixed_names_are_names() -> None:
    program = parse_ok("let iffy = notes\nusername = iffy")
    assert program.statements == (Let("iffy", Name("notes")), Assign("username", "=", Name("iffy")))


def test_cached_statements_get_their_new_offsets() -> None:
    first = parse_ok("username = lower(@a)")
    moved = parse_ok("\n\n# new\nusername = lower(@a)")
    assert first == moved
    assert first.statements[0].span == Span(0, 20)
    assert moved.statements[0].span == Span(8, 28)
    again = parse_ok("\n\n# new\nusername = lower(@a)")
    assert again.statements[0].span == Span(8, 28)


def test_empty_and_comment_only_sources() -> None:
    assert parse_ok("").statements == ()
    program = parse_ok("# only a comment\n\n   ")
    assert program.statements == () and len(program.comments) == 1


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(programs(), checked_programs()))
def test_generated_programs_parse_with_spans_inside_the_source(source: str) -> None:
    program = parse_ok(source)
    for statement in program.statements:
        assert 0 <= statement.span.start < statement.span.end <= len(source)
    for comment in program.comments:
        assert text_at(source, comment.span) == comment.text
        assert comment.text.startswith("#")


def all_spans(node: object) -> list[Span]:
    """Every span in a tree, in a fixed order (equality ignores them, this does not)."""
    if isinstance(node, Span):
        return [node]
    if isinstance(node, tuple):
        return [span for item in node for span in all_spans(item)]
    if is_dataclass(node):
        return [span for f in fields(node) for span in all_spans(getattr(node, f.name))]
    return []


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(programs())
def test_cached_parses_equal_fresh_parses_spans_included(source: str) -> None:
    _cache.clear()
    fresh = parse_ok(source)
    again = parse_ok(source)
    prefix = "# moved\n\n"
    moved = parse_ok(prefix + source)
    assert all_spans(again.statements) == all_spans(fresh.statements)
    delta = len(prefix)
    shifted = [Span(s.start + delta, s.end + delta) for s in all_spans(fresh.statements)]
    assert all_spans(moved.statements) == shifted
    _cache.clear()
    assert all_spans(parse_ok(prefix + source).statements) == shifted
