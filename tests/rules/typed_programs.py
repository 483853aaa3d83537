"""Well-typed random rules programs (source text) for the differential test.

Built by type from the start (text, number, bool, list), so every program passes the
checker with at most warnings: `??`/`if`/`match` branches share a type, `+` joins equal
types, functions get the argument types they need, let and comprehension names are
unique. Covers every §6 function, context names, `user.FIELD` of every field kind,
custom number/bool/set fields, all assignment operators, deny, and rules with phases.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from hypothesis import strategies as st

from rules.vocabulary import FieldType

Draw = Callable[[st.SearchStrategy[object]], object]

FIELDS: dict[str, FieldType] = {
    "department": "text",
    "employee_id": "text",
    "entitlements": "set",
    "level": "number",
    "vip": "bool",
}
TEXT_FIELDS = ("username", "email", "display_name", "department")
SET_FIELDS = ("groups", "roles", "entitlements")
ATTRIBUTES = ("a", "b", "mail", "memberOf", "x.y", "urn:oid:1.2")
CONTEXT = ("subject", "issuer", "connection", "subject_format", "authn_context")
TEXTS = (
    "",
    "a",
    "A",
    "b",
    "a",
    "b",
    "x@y.org",
    "CN=A\\, B,OU=Apps",
    "1",
    "2.50",
    "true",
    "Straße",
    " ",
)
REPLACEMENTS = ("-", "[\\0]", "", "<\\1>")
PATTERNS = (r"^a", r"(?i)ou=apps,", r"(\w+)@(\w+)", r"^CN=([^,]+)", r"[0-9]+")
# Patterns that are plain text (decided without RE2 on ASCII text) and extractions of a
# literal prefix's remainder (likewise): the specialised compiler's shortcuts.
LITERAL_PATTERNS = (r"^(eng|sales)-", r"(?i)^cn=a", r"(?i)apps$", r"^a$", r"x\.y", "")
PREFIX_PATTERNS = (r"^CN=(.+)$", r"^urn:x\:(.*)$")


def literal(value: str) -> str:
    """A string literal spelling `value` (escapes per §2)."""
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


def attribute(name: str) -> str:
    return f"@{name}" if name.replace(".", "").isalnum() else f'@"{name}"'


@dataclass
class _Scope:
    variables: dict[str, list[str]] = field(default_factory=dict)
    counter: int = 0

    def fresh(self, prefix: str) -> str:
        self.counter += 1
        return f"{prefix}{self.counter}"


class _Builder:
    def __init__(self, draw: Draw) -> None:
        self.draw = draw
        self.scope = _Scope()

    def pick(self, options: tuple[str, ...] | list[str]) -> str:
        return str(self.draw(st.sampled_from(options)))

    def chance(self, n: int) -> bool:
        return int(self.draw(st.integers(0, n - 1))) == 0

    def text_lit(self) -> str:
        return literal(self.pick(TEXTS))

    def expr(self, kind: str, depth: int) -> str:
        """An expression of `kind`: text, number, bool or list."""
        variables = self.scope.variables.get(kind, [])
        if depth <= 0 or self.chance(4):
            return self.leaf(kind, variables)
        choice = int(self.draw(st.integers(0, 9)))
        sub = depth - 1
        if choice == 0:
            return f"({self.expr(kind, sub)} ?? {self.expr(kind, sub)})"
        if choice == 1:
            cond = self.expr("bool", sub)
            return f"(if {cond} then {self.expr(kind, sub)} else {self.expr(kind, sub)})"
        if choice == 2 and kind != "list":
            return self.match(kind, sub)
        return {"text": self.text, "number": self.number, "bool": self.bool, "list": self.list}[
            kind
        ](sub)

    def leaf(self, kind: str, variables: list[str]) -> str:
        if variables and self.chance(2):
            return self.pick(variables)
        if kind == "text":
            attr = f"first({attribute(self.pick(ATTRIBUTES))})"
            options = [self.text_lit(), self.text_lit(), self.text_lit(), attr, attr]
            options += [self.pick(CONTEXT), self.pick(("user.email", "user.department", "null"))]
        elif kind == "number":
            options = [
                "0",
                "7",
                "-3",
                "2.5",
                "2.0",
                "7.0",
                "user.level",
                f"count({attribute('a')})",
            ]
        elif kind == "bool":
            options = ["true", "false", "true", "false", "user.vip", "null"]
        else:
            options = [
                attribute(self.pick(ATTRIBUTES)),
                "user.groups",
                "[]",
                f"[{self.text_lit()}]",
            ]
        return self.pick(options)

    def match(self, kind: str, depth: int) -> str:
        subject = self.expr("text", depth)
        arms = []
        for _ in range(int(self.draw(st.integers(1, 3)))):
            patterns = ", ".join(
                literal(self.pick(TEXTS)) for _ in range(self.draw(st.integers(1, 2)))
            )
            arms.append(f"{patterns} => {self.expr(kind, depth)}")
        arms.append(f"else => {self.expr(kind, depth)}")
        return f"match {subject} {{ {' '.join(arms)} }}"

    def text(self, d: int) -> str:
        t = lambda: self.expr("text", d)  # noqa: E731
        n = int(self.draw(st.integers(0, 17)))
        options = [
            lambda: f"({t()} + {t()})",
            lambda: (
                f"{self.pick(('lower', 'upper', 'trim', 'ascii', 'email_local', 'email_domain'))}({t()})"
            ),
            lambda: f"replace({t()}, {self.text_lit()}, {self.text_lit()})",
            lambda: (
                f"{self.pick(('substring_before', 'substring_after'))}({t()}, {self.text_lit()})"
            ),
            lambda: f'regex_extract({t()}, r"{self.pick(PATTERNS[2:4])}")',
            lambda: f'regex_extract({t()}, r"(\\w+)@(\\w+)", {self.pick(("0", "1", "2"))})',
            lambda: f'regex_extract({t()}, r"{self.pick(PREFIX_PATTERNS)}")',
            lambda: (
                f'regex_replace({t()}, r"{self.pick(PATTERNS[2:4])}", {literal(self.pick(REPLACEMENTS))})'
            ),
            lambda: f"dn_value({t()}, {literal(self.pick(('CN', 'ou', 'DC')))})",
            lambda: f"truncate({t()}, {self.expr('number', d)})",
            lambda: f"{self.pick(('first', 'last'))}({self.expr('list', d)})",
            lambda: f"join({self.expr('list', d)}, {self.text_lit()})",
            lambda: f"text({self.expr(self.pick(('number', 'bool', 'text')), d)})",
            lambda: f"coalesce({t()}, {t()}, {t()})",
            lambda: f"({t()})",
        ]
        return options[n % len(options)]()

    def number(self, d: int) -> str:
        n = int(self.draw(st.integers(0, 3)))
        if n == 0:
            return f"({self.expr('number', d)} + {self.expr('number', d)})"
        if n == 1:
            return f"number({self.expr('text', d)})"
        if n == 2:
            return f"count({self.expr('list', d)})"
        return f"({self.expr('number', d)})"

    def bool(self, d: int) -> str:
        n = int(self.draw(st.integers(0, 11)))
        kind = self.pick(("text", "number"))
        options = [
            lambda: (
                f"({self.expr(kind, d)} {self.pick(('==', '!=', '<', '<=', '>', '>='))} {self.expr(kind, d)})"
            ),
            lambda: (
                f"({self.expr('text', d)} {self.pick(('in', 'not in'))} {self.expr(self.pick(('list', 'text')), d)})"
            ),
            lambda: (
                f"({self.expr(self.pick(('list', 'text')), d)} matches "
                f'r"{self.pick(PATTERNS + LITERAL_PATTERNS)}")'
            ),
            lambda: f"(not {self.expr('bool', d)})",
            lambda: (
                f"({self.expr('bool', d)} {self.pick(('and', 'or'))} {self.expr(self.pick(('bool', 'text', 'list')), d)})"
            ),
            lambda: (
                f"{self.pick(('starts_with', 'ends_with'))}({self.expr('text', d)}, {self.text_lit()})"
            ),
            lambda: f"bool({self.expr('text', d)})",
            lambda: f"({self.expr('list', d)} == {self.expr('list', d)})",
            lambda: f"({self.expr('bool', d)} == {self.expr('bool', d)})",
            lambda: f"({self.expr('text', d)} == null)",
        ]
        return options[n % len(options)]()

    def list(self, d: int) -> str:
        n = int(self.draw(st.integers(0, 8)))
        if n == 0:
            return f"({self.expr('list', d)} + {self.expr('list', d)})"
        if n == 1:
            return (
                f"[{', '.join(self.expr('text', d) for _ in range(self.draw(st.integers(0, 3))))}]"
            )
        if n == 2:
            return f"split({self.expr('text', d)}, {literal(self.pick((',', '', ';', 'a')))})"
        if n == 3:
            return f"{self.pick(('unique', 'sort', 'lower', 'trim', 'email_domain'))}({self.expr('list', d)})"
        if n == 4:
            return f'regex_extract({self.expr("list", d)}, r"^CN=([^,]+)")'
        if n == 5:
            return f"coalesce({self.expr('list', d)}, {self.expr('list', d)})"
        source = self.expr("list", d)
        var = self.scope.fresh("v")
        self.scope.variables.setdefault("text", []).append(var)
        element = self.expr("text", d)
        condition = f" if {self.expr('bool', d)}" if self.chance(2) else ""
        self.scope.variables["text"].remove(var)
        return f"[{element} for {var} in {source}{condition}]"

    def statement(self, in_rule: bool) -> str:
        n = int(self.draw(st.integers(0, 9)))
        depth = int(self.draw(st.integers(0, 3)))
        if n <= 2:
            name = self.pick(TEXT_FIELDS)
            op = self.pick(("=", ":=", "?=")) if name != "username" else "="
            return f"{name} {op} {self.expr('text', depth)}"
        if n == 3:
            name = self.pick(("level", "vip", "active"))
            kind = "number" if name == "level" else "bool"
            return f"{name} {self.pick(('=', ':=', '?='))} {self.expr(kind, depth)}"
        if n <= 5:
            value_kind = self.pick(("list", "text"))
            op = self.pick(("=", ":=", "?=", "+=", "-="))
            return f"{self.pick(SET_FIELDS)} {op} {self.expr(value_kind, depth)}"
        if n == 6:
            return f"clear {self.pick(('email', 'level', 'groups', 'roles', 'vip'))}"
        if n == 7:
            return f"deny {literal('no: ' + self.pick(TEXTS))} when {self.expr('bool', depth)}"
        kind = self.pick(("text", "number", "bool", "list"))
        value = self.expr(kind, depth)
        name = self.scope.fresh("x")
        self.scope.variables.setdefault(kind, []).append(name)
        return f"let {name} = {value}"


@st.composite
def typed_programs(draw: Draw, max_statements: int = 12) -> str:
    """Source text of a well-typed program (only warnings from the checker)."""
    builder = _Builder(draw)
    lines = [f"username = {builder.expr('text', 2)}"] if not builder.chance(5) else []
    for _ in range(int(draw(st.integers(0, max_statements)))):
        if not builder.chance(4):
            lines.append(builder.statement(False))
            continue
        phase = builder.pick(("", " on create", " on update"))
        when = f" when {builder.expr('bool', 2)}" if builder.chance(2) else ""
        saved = {k: list(v) for k, v in builder.scope.variables.items()}
        body = [builder.statement(True) for _ in range(int(draw(st.integers(0, 4))))]
        builder.scope.variables = saved
        inner = "".join(f"    {b}\n" for b in body)
        lines.append(f'rule "{builder.scope.fresh("r")}"{phase}{when} {{\n{inner}}}')
    return "\n".join(lines) + "\n"


_VALUES = st.one_of(
    st.sampled_from(TEXTS),
    st.text(max_size=12),
    st.sampled_from(["CN=Wiki,OU=Apps,DC=x", "a@b@c", "  42 ", "-0.50", "TRUE"]),
    st.sampled_from(["eng-x", "Sales-1", "cn=A,OU=APPS", "\u212a", "\u017fales-", "urn:x:", "a\n"]),
)

small_bags = st.dictionaries(
    st.sampled_from(ATTRIBUTES), st.lists(_VALUES, max_size=4), max_size=len(ATTRIBUTES)
)

users = st.one_of(
    st.none(),
    st.fixed_dictionaries(
        {},
        optional={
            "username": st.sampled_from(["u", ""]),
            "email": st.sampled_from(TEXTS),
            "department": st.sampled_from(TEXTS),
            "level": st.sampled_from([0, 3, None]),
            "vip": st.sampled_from([True, False, None]),
            "groups": st.lists(st.sampled_from(TEXTS), max_size=3),
            "roles": st.lists(st.sampled_from(TEXTS), max_size=3),
        },
    ),
)
