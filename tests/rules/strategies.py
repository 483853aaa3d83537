"""Hypothesis strategies: random rules programs as source text, and attribute bags.

- `expressions()` / `programs()`: syntactically valid source text using every construct
  (all operators, if/match/comprehensions, every statement kind, rules with phases,
  comments in odd places, unicode and escape-heavy strings, raw strings with
  backslashes, redundant parentheses, random whitespace and newlines). Not type-checked.
- `checked_programs()`: programs built by type (text, list, bool, number) from the §6
  functions, meant to pass `rules.check` with only warnings, for differential tests.
- `attribute_bags()`: `dict[str, list[str]]` token attributes, keyed by `ATTRIBUTES`
  (which `checked_programs` reads) plus arbitrary names; unicode, huge values, many values.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from hypothesis import strategies as st

from rules.vocabulary import KEYWORDS

Draw = Callable[[st.SearchStrategy[object]], object]

ATTRIBUTES = ("email", "department", "memberOf", "givenName", "sn", "employeeType")
QUOTED_ATTRIBUTES = ("urn:oid:0.9.2342.19200300.100.1.3", "http://schemas/claims/name", "a b")
NAMES = ("mail", "dept", "x", "username", "notes", "iffy", "android", "order", "inbox", "_t1")
FIELDS = ("username", "email", "display_name", "given_name", "family_name", "groups", "roles")
TEXT_FIELDS = ("username", "email", "display_name", "given_name", "family_name")
SET_FIELDS = ("groups", "roles")
CONTEXT = ("subject", "issuer", "connection", "subject_format", "authn_context")
PATTERNS = ("^a", "(?i)ou=apps,", "x|y", "[0-9]+$", "^CN=([^,]+)")
BINARY = ("??", "or", "and", "==", "!=", "<", "<=", ">", ">=", "in", "not in", "matches", "+")
PRECEDENCE = {"??": 2, "or": 3, "and": 4, "+": 7} | dict.fromkeys(BINARY[3:12], 6)

# Text without surrogates; a few troublesome characters made likely.
_ODD = st.sampled_from(['"', "\\", "\t", "é", "ß", "→", "\u00a0", "#", "{", "😀", "\u0301"])
_TEXT = st.text(st.one_of(st.characters(exclude_categories=("Cs",)), _ODD), max_size=12)
_RAW_TEXT = st.text(
    st.one_of(st.characters(exclude_categories=("Cs",), exclude_characters='"\n\r'), _ODD),
    max_size=12,
).map(lambda s: s.replace('"', ""))
_COMMENT_TEXT = st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\n\r"))


def escape(value: str, draw: Draw | None = None) -> str:
    """A string literal for `value`; with `draw`, some characters spelled as \\uXXXX."""
    out = []
    for char in value:
        if char == '"':
            out.append('\\"')
        elif char == "\\":
            out.append("\\\\")
        elif char == "\n":
            out.append("\\n")
        elif char == "\t":
            out.append("\\t")
        elif ord(char) < 32 or char == "\x7f":
            out.append(f"\\u{ord(char):04x}")
        elif draw is not None and ord(char) < 0x10000 and draw(st.integers(0, 9)) == 0:
            out.append(f"\\u{ord(char):04X}")
        else:
            out.append(char)
    return '"' + "".join(out) + '"'


def _ws(draw: Draw) -> str:
    return str(draw(st.sampled_from([" ", " ", " ", "  ", "\n", "\n    ", "\t", " # note\n"])))


def _string(draw: Draw) -> str:
    if draw(st.integers(0, 3)) == 0:
        return 'r"' + str(draw(_RAW_TEXT)) + '"'
    return escape(str(draw(_TEXT)), draw)


def _leaf(draw: Draw) -> str:
    kind = draw(st.integers(0, 8))
    if kind == 0:
        return _string(draw)
    if kind == 1:
        spelled = str(draw(st.integers(-(10**6), 10**6)))
        return spelled + ("." + str(draw(st.integers(0, 999))) if draw(st.booleans()) else "")
    if kind == 2:
        return str(draw(st.sampled_from(["true", "false", "null"])))
    if kind == 3:
        return "@" + str(draw(st.sampled_from((*ATTRIBUTES, "a.b:c-d"))))
    if kind == 4:
        return "@" + escape(str(draw(st.sampled_from(QUOTED_ATTRIBUTES))))
    if kind == 5:
        return "user." + str(draw(st.sampled_from(FIELDS)))
    return str(draw(st.sampled_from(NAMES + CONTEXT)))


def _wrap(text: str, prec: int, least: int) -> str:
    return text if prec >= least else f"({text})"


def _expr(draw: Draw, depth: int) -> tuple[str, int]:
    """(source, precedence): 1 if, 2 ??, 3 or, 4 and, 5 not, 6 comparison, 7 +, 8 primary."""
    if depth <= 0:
        return _leaf(draw), 8
    kind = draw(st.integers(0, 11))
    sub = depth - 1
    if kind == 0:
        name = draw(st.sampled_from(["lower", "first", "join", "coalesce", "f", "regex_extract"]))
        args = [_expr(draw, sub)[0] for _ in range(draw(st.integers(0, 3)))]
        return f"{name}(" + ("," + _ws(draw)).join(args) + ")", 8
    if kind == 1:
        items = [_expr(draw, sub)[0] for _ in range(draw(st.integers(0, 3)))]
        return "[" + ", ".join(items) + "]", 8
    if kind == 2:
        var = str(draw(st.sampled_from(NAMES)))
        condition = f" if {_expr(draw, sub)[0]}" if draw(st.booleans()) else ""
        return f"[{_expr(draw, sub)[0]} for {var} in {_expr(draw, sub)[0]}{condition}]", 8
    if kind == 3:
        arms = []
        for _ in range(draw(st.integers(0, 3))):
            patterns = ", ".join(_string(draw) for _ in range(draw(st.integers(1, 3))))
            comment = " # arm" if draw(st.integers(0, 4)) == 0 else ""
            arms.append(f"{patterns} => {_expr(draw, sub)[0]}{comment}\n")
        if draw(st.integers(0, 5)):
            arms.append(f"else => {_expr(draw, sub)[0]}\n")
        return f"match {_expr(draw, sub)[0]} {{\n" + "".join(arms) + "}", 8
    if kind == 4:
        parts = [_expr(draw, sub)[0] for _ in range(3)]
        return f"if {parts[0]} then {parts[1]}{_ws(draw)}else {parts[2]}", 1
    if kind == 5:
        operand, prec = _expr(draw, sub)
        return "not " + _wrap(operand, prec, 5), 5
    if kind == 6:
        inner = _expr(draw, sub)[0]
        return f"({inner})", 8
    if kind <= 8:
        return _leaf(draw), 8
    op = str(draw(st.sampled_from(BINARY)))
    prec = PRECEDENCE[op]
    left, left_prec = _expr(draw, sub)
    right, right_prec = _expr(draw, sub)
    left_least = prec + 1 if prec == 6 else prec
    text = (
        f"{_wrap(left, left_prec, left_least)}{_ws(draw)}{op} {_wrap(right, right_prec, prec + 1)}"
    )
    return text, prec


@st.composite
def expressions(draw: Draw, depth: int = 4) -> str:
    """Source text of one expression (syntactically valid, not type-checked)."""
    return _expr(draw, int(draw(st.integers(0, depth))))[0]


def _statement(draw: Draw, in_rule: bool) -> str:
    kind = draw(st.integers(0, 9 if in_rule else 11))
    value = _expr(draw, int(draw(st.integers(0, 3))))[0]
    if kind <= 4:
        op = draw(st.sampled_from(["=", "=", ":=", "?=", "+=", "-="]))
        return f"{draw(st.sampled_from(FIELDS))}{_ws(draw)}{op} {value}"
    if kind <= 6:
        return f"let {draw(st.sampled_from(NAMES))} = {value}"
    if kind == 7:
        return f"clear {draw(st.sampled_from(FIELDS))}"
    if kind <= 9:
        when = f" when {value}" if draw(st.booleans()) else ""
        return f"deny {_string(draw)}{when}"
    phase = draw(st.sampled_from(["", " on create", " on update"]))
    when = f" when {value}" if draw(st.booleans()) else ""
    body = "".join(
        "    " + _statement(draw, True) + _trailing(draw) + "\n"
        for _ in range(draw(st.integers(0, 4)))
    )
    return f"rule {_string(draw)}{phase}{when} {{{_trailing(draw)}\n{body}}}"


def _trailing(draw: Draw) -> str:
    return "  # " + str(draw(_COMMENT_TEXT)) if draw(st.integers(0, 4)) == 0 else ""


@st.composite
def programs(draw: Draw, max_statements: int = 8) -> str:
    """Source text of a whole program (syntactically valid, not type-checked)."""
    lines = []
    for _ in range(int(draw(st.integers(0, max_statements)))):
        if draw(st.integers(0, 4)) == 0:
            lines.append("# " + str(draw(_COMMENT_TEXT)))
        if draw(st.integers(0, 5)) == 0:
            lines.append("")
        lines.append(_statement(draw, False) + _trailing(draw))
    return "\n".join(lines) + str(draw(st.sampled_from(["", "\n", "\n\n", "  "])))


# ------------------------------------------------------------------ typed programs


@dataclass
class _Scope:
    """Names visible so far, by type, and a counter that keeps every name unique."""

    variables: dict[str, list[str]] = field(default_factory=dict)
    counter: int = 0

    def fresh(self, prefix: str) -> str:
        self.counter += 1
        return f"{prefix}{self.counter}"


def _typed(draw: Draw, kind: str, depth: int, scope: _Scope) -> str:
    """Source of an expression of type `kind` (text, list, bool or number)."""
    choices = _TYPED[kind]
    known = scope.variables.get(kind, [])
    if known and draw(st.integers(0, 4)) == 0:
        return str(draw(st.sampled_from(known)))
    leaves = [c for c in choices if c[0] == 0]
    builder = draw(st.sampled_from(choices if depth > 0 else leaves))[1]
    return str(builder(draw, lambda k: _typed(draw, k, depth - 1, scope), scope))


def _text_literal(draw: Draw) -> str:
    return escape(str(draw(st.text(max_size=8))))


def _comprehension(draw: Draw, sub: Callable[[str], str], scope: _Scope) -> str:
    var = scope.fresh("v")
    iterable = sub("list")
    scope.variables.setdefault("text", []).append(var)
    try:
        element, condition = sub("text"), sub("bool")
    finally:
        scope.variables["text"].remove(var)
    return f"[{element} for {var} in {iterable} if {condition}]"


def _match(draw: Draw, sub: Callable[[str], str], scope: _Scope) -> str:
    patterns = draw(st.lists(st.text(max_size=5), min_size=1, max_size=3, unique=True))
    arms = "".join(f"    {escape(str(p))} => {sub('text')}\n" for p in patterns)
    return f"match {sub('text')} {{\n{arms}    else => {sub('text')}\n}}"


_Builder = Callable[[Draw, Callable[[str], str], _Scope], str]
_TYPED: dict[str, list[tuple[int, _Builder]]] = {
    "text": [
        (0, lambda d, s, c: _text_literal(d)),
        (0, lambda d, s, c: f"first(@{d(st.sampled_from(ATTRIBUTES))})"),
        (0, lambda d, s, c: str(d(st.sampled_from(("subject", "issuer", "user.email"))))),
        (1, lambda d, s, c: f"lower({s('text')})"),
        (1, lambda d, s, c: f"trim({s('text')}) + ({s('text')})"),
        (1, lambda d, s, c: f"({s('text')}) ?? ({s('text')})"),
        (1, lambda d, s, c: f"substring_before({s('text')}, {_text_literal(d)})"),
        (1, lambda d, s, c: f"email_local({s('text')})"),
        (1, lambda d, s, c: f'dn_value({s("text")}, "CN")'),
        (1, lambda d, s, c: f'regex_extract({s("text")}, "^CN=([^,]+)")'),
        (1, lambda d, s, c: f"join({s('list')}, {_text_literal(d)})"),
        (1, lambda d, s, c: f"text({s('number')})"),
        (1, lambda d, s, c: f"ascii(truncate({s('text')}, {d(st.integers(0, 9))}))"),
        (1, lambda d, s, c: f"(if {s('bool')} then {s('text')} else {s('text')})"),
        (1, lambda d, s, c: f"coalesce({s('text')}, {s('text')}, {_text_literal(d)})"),
        (1, _match),
    ],
    "list": [
        (0, lambda d, s, c: f"@{d(st.sampled_from(ATTRIBUTES))}"),
        (0, lambda d, s, c: "user.groups"),
        (1, lambda d, s, c: f"[{s('text')}, {s('text')}]"),
        (1, lambda d, s, c: f"split({s('text')}, {_text_literal(d)})"),
        (1, lambda d, s, c: f"unique({s('list')}) + sort({s('list')})"),
        (1, lambda d, s, c: f"lower({s('list')})"),
        (1, _comprehension),
    ],
    "bool": [
        (0, lambda d, s, c: str(d(st.sampled_from(("true", "false"))))),
        (1, lambda d, s, c: f"({s('text')}) == ({s('text')})"),
        (1, lambda d, s, c: f"({s('text')}) != null"),
        (1, lambda d, s, c: f"({s('text')}) in ({s('list')})"),
        (1, lambda d, s, c: f"({s('text')}) not in ({s('text')})"),
        (1, lambda d, s, c: f"({s('list')}) matches {escape(str(d(st.sampled_from(PATTERNS))))}"),
        (1, lambda d, s, c: f"({s('number')}) < ({s('number')})"),
        (1, lambda d, s, c: f"not ({s('bool')})"),
        (1, lambda d, s, c: f"(({s('bool')}) or ({s('bool')})) and ({s('bool')})"),
        (1, lambda d, s, c: f"starts_with({s('text')}, {_text_literal(d)})"),
    ],
    "number": [
        (0, lambda d, s, c: str(d(st.integers(-99, 99)))),
        (0, lambda d, s, c: "2.5"),
        (1, lambda d, s, c: f"count({s('list')})"),
        (1, lambda d, s, c: f"({s('number')}) + ({s('number')})"),
    ],
}


def _typed_statement(draw: Draw, scope: _Scope, in_rule: bool) -> str:
    kind = draw(st.integers(0, 7))
    depth = int(draw(st.integers(0, 3)))
    if kind <= 2:
        field_name = str(draw(st.sampled_from(TEXT_FIELDS)))
        return f"{field_name} {draw(st.sampled_from(['=', ':=', '?=']))} " + _typed(
            draw, "text", depth, scope
        )
    if kind == 3:
        op = draw(st.sampled_from(["=", ":=", "?=", "+=", "-="]))
        value_type = "text" if op in ("+=", "-=") and draw(st.booleans()) else "list"
        return f"{draw(st.sampled_from(SET_FIELDS))} {op} {_typed(draw, value_type, depth, scope)}"
    if kind == 4:
        return f"active = {_typed(draw, 'bool', depth, scope)}"
    if kind == 5:
        value_type = str(draw(st.sampled_from(["text", "list", "bool", "number"])))
        value = _typed(draw, value_type, depth, scope)
        name = scope.fresh("n")
        scope.variables.setdefault(value_type, []).append(name)
        return f"let {name} = {value}"
    if kind == 6:
        return f"deny {_text_literal(draw)} when {_typed(draw, 'bool', depth, scope)}"
    return f"clear {draw(st.sampled_from(FIELDS[1:]))}"


@st.composite
def checked_programs(draw: Draw, max_statements: int = 10) -> str:
    """Source text of a program meant to type-check: unique names, matching types."""
    scope = _Scope()
    lines = ["username = first(@email) ?? subject"]
    for _ in range(int(draw(st.integers(0, max_statements)))):
        if draw(st.integers(0, 4)):
            lines.append(_typed_statement(draw, scope, False))
            continue
        phase = draw(st.sampled_from(["", " on create", " on update"]))
        when = f" when {_typed(draw, 'bool', 1, scope)}" if draw(st.booleans()) else ""
        saved = {k: list(v) for k, v in scope.variables.items()}
        body = [_typed_statement(draw, scope, True) for _ in range(draw(st.integers(0, 3)))]
        scope.variables = saved  # a rule's lets end with its body
        inner = "".join(f"    {b}\n" for b in body)
        lines.append(f'rule "{scope.fresh("rule ")}"{phase}{when} {{\n{inner}}}')
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------ attribute bags

_VALUE = st.one_of(
    st.text(max_size=20),
    st.sampled_from(["", " ", "a@b.c", "CN=x,OU=Apps,DC=e", "true", "FALSE", "-3.50", "Straße"]),
    st.text(min_size=1000, max_size=5000),
)


def attribute_bags(max_values: int = 3000) -> st.SearchStrategy[dict[str, list[str]]]:
    """Token attributes: the names `checked_programs` reads plus arbitrary unicode names."""
    names = st.one_of(st.sampled_from(ATTRIBUTES + QUOTED_ATTRIBUTES), st.text(min_size=1))
    small = st.lists(_VALUE, max_size=4)
    many = st.lists(st.text(max_size=6), min_size=max_values // 2, max_size=max_values)
    return st.dictionaries(names, st.one_of(small, small, small, many), max_size=8)


def is_keyword(word: str) -> bool:
    """Whether `word` is reserved (helper for tests building names)."""
    return word in KEYWORDS
