"""The specialised compiler (`rules/specialise.py`) against the general one.

The general compiler (`compile_rules(..., specialise=False)`) sends every operation
through the value layer; the specialised one writes most of them out in Python from the
static types. Random well-typed programs on random attribute bags, contexts and stored
users must give the same plan from both (and from the reference evaluator): the same
fields with the same value types in the same order, the same set operations, trace,
skipped rules and denials. The shortcuts the specialised code takes (plain-text
patterns, prefix extraction, `dn_value` with a fixed type, the set-operation
constructor) are compared with what they replace directly, on hostile text.
"""

from __future__ import annotations

import tomllib
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rules import Context, Plan, compile_rules, parse, render
from rules.ast import Assign, Deny, Rule
from rules.fastpaths import dn_value_of, members, set_op
from rules.functions import FUNCTIONS, compile_regex, dn_value
from rules.literal_regex import list_matcher, literal_pattern, prefix_extractor, text_matcher
from rules.plan import SetOp
from rules.vocabulary import MAX_DEPTH
from tests.rules import strategies
from tests.rules.test_differential import contexts, typed_plan
from tests.rules.test_sandbox import assert_only_own_tokens
from tests.rules.typed_programs import FIELDS, small_bags, typed_programs, users

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "examples" / "demo"
DEMO_FIELDS = {"department": "text", "employee_id": "text", "cost_center": "text"}
DEMO_FIELDS |= {"entitlements": "set"}
SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def both(source: str, fields: Any = FIELDS) -> tuple[Any, Any]:
    """The specialised and the general compilation of a program that must check."""
    special = compile_rules(source, fields)
    errors = [render(d, special.source, "p") for d in special.errors]
    assert special.rules is not None, source + "\n" + "\n".join(errors)
    general = compile_rules(source, fields, specialise=False)
    assert general.rules is not None
    return special.rules, general.rules


def agree(special: Any, general: Any, attributes: Any, context: Context, user: Any) -> Plan:
    fast = special.evaluate(attributes, context, user)
    slow = general.evaluate(attributes, context, user)
    assert typed_plan(fast) == typed_plan(slow)
    assert typed_plan(fast) == typed_plan(special.evaluate_reference(attributes, context, user))
    plan: Plan = fast
    return plan


# --------------------------------------------------------------- differential


@SETTINGS
@given(
    source=typed_programs(),
    inputs=st.lists(st.tuples(small_bags, contexts, users), min_size=1, max_size=4),
)
def test_specialised_equals_general_on_typed_programs(source: str, inputs: list[Any]) -> None:
    special, general = both(source)
    assert special.python_source != general.python_source
    for attributes, context, user in inputs:
        agree(special, general, attributes, context, user)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(source=strategies.checked_programs(), attributes=strategies.attribute_bags(200))
def test_specialised_equals_general_on_parser_programs(
    source: str, attributes: dict[str, list[str]]
) -> None:
    special = compile_rules(source)
    if special.rules is None:  # the parser's generator only aims at well-typed programs
        return
    general = compile_rules(source, specialise=False).rules
    for user in (None, {"username": "u", "groups": ["g"]}):
        agree(special.rules, general, attributes, Context(subject="s"), user)


# A store may hand back any scalar for any field: text where a number is declared,
# numbers and bools for text, floats, lists. The specialised code keeps the general
# helpers (which test types) for `user.FIELD`; it must give the reference's plans and
# never raise.
ODD_STORED = st.sampled_from(
    [0, 3, -1, True, False, Decimal("2.50"), 2.5, float("nan"), "", "7", "x", ["a"], None]
)
odd_users = st.one_of(
    st.none(),
    st.fixed_dictionaries(
        {},
        optional={
            name: ODD_STORED
            for name in ("username", "email", "department", "display_name", "level", "vip")
        }
        | {"groups": st.lists(st.sampled_from(["a", "", "b"]), max_size=3)},
    ),
)


@SETTINGS
@given(source=typed_programs(), attributes=small_bags, context=contexts, user=odd_users)
def test_odd_stored_values_give_the_reference_plan(
    source: str, attributes: dict[str, list[str]], context: Context, user: Any
) -> None:
    result = compile_rules(source, FIELDS)
    assert result.rules is not None
    fast = result.rules.evaluate(attributes, context, user)
    assert typed_plan(fast) == typed_plan(
        result.rules.evaluate_reference(attributes, context, user)
    )


# ------------------------------------------------------------ the real files


def demo_samples(name: str) -> list[tuple[dict[str, list[str]], Context]]:
    found = []
    for path in sorted((DEMO / "samples").glob(f"{name}-*.toml")):
        data = tomllib.loads(path.read_text())
        attributes = {
            key: value if isinstance(value, list) else [value]
            for key, value in data.get("attributes", {}).items()
        }
        found.append((attributes, Context(subject=data["subject"], connection=name)))
    return found


@pytest.mark.parametrize("name", ["okta", "entra", "shib"])
def test_demo_rules_files(name: str) -> None:
    source = (DEMO / "rules" / f"{name}.rules").read_text()
    special, general = both(source, DEMO_FIELDS)
    assert_only_own_tokens(special.python_source)
    samples = demo_samples(name)
    assert samples
    for attributes, context in samples:
        for user in (None, {"username": "x", "display_name": "X", "cost_center": "C"}):
            agree(special, general, attributes, context, user)


REALISTIC = """\
let mail   = lower(first(@email ?? @"urn:oid:0.9.2342.19200300.100.1.3"))
let dept   = first(@department) ?? "unknown"
let given  = first(@givenName)
let family = first(@sn)
let apps   = [dn_value(g, "CN") for g in @memberOf if g matches "(?i)OU=Apps,"]
deny "no e-mail address in the assertion" when mail == null
deny "contractors are not provisioned"     when "contractor" in @employeeType
deny "only example.com accounts"           when not ends_with(mail, "@example.com")
username     = email_local(mail)
email        = mail
given_name   = given
family_name  = family
display_name = first(@displayName) ?? join([given, family], " ")
department   = match dept { "Engineering", "R&D" => "engineering" "Sales" => "sales" else => "other" }
employee_id := first(@employeeNumber)
groups += "everyone"
groups += apps
groups -= "legacy"
rule "first login defaults" on create { active = true  roles = ["viewer"] }
rule "engineers" when dept == "Engineering" { roles += "developer"  groups += "eng" }
rule "managers" when "manager" in @title { roles += "approver" }
rule "admins" when @memberOf matches "(?i)^CN=Admins," { roles += "admin" }
rule "returning" on update { active = true }
display_name ?= subject
"""
MEMBER_OF = [f"CN=App{i},OU=Apps,DC=example,DC=com" for i in range(8)]
MEMBER_OF += [f"CN=Team{i},OU=Groups,DC=example,DC=com" for i in range(12)]
MEMBER_OF += [
    "CN=Admins,OU=Groups,DC=example,DC=com",
    "CN=\u212aey,OU=APPS,DC=x",
    'CN="a,b",OU=Apps,',
]


@pytest.mark.parametrize(
    "token",
    [
        {"email": ["Ann.Lee@Example.com"], "department": ["Engineering"], "memberOf": MEMBER_OF},
        {"email": ["a@example.com"], "givenName": ["A"], "sn": ["L"], "title": ["manager"]},
        {"urn:oid:0.9.2342.19200300.100.1.3": ["b@example.com"], "displayName": [""]},
        {"email": ["c@other.org"]},
        {"email": ["d@example.com"], "employeeType": ["contractor"]},
        {},
    ],
)
def test_realistic_file(token: dict[str, list[str]]) -> None:
    special, general = both(REALISTIC, {"department": "text", "employee_id": "text"})
    for user in (None, {"username": "ann.lee", "display_name": "Ann"}):
        agree(special, general, token, Context(subject="00u1"), user)


# ------------------------------------------------ fields written by several statements


@pytest.mark.parametrize(
    ("attributes", "user", "order"),
    [
        ({"d": ["D"], "e": ["E"]}, None, ["display_name", "username", "email", "active"]),
        ({"e": ["E"]}, None, ["display_name", "username", "email", "active"]),
        ({}, None, ["display_name", "username", "active"]),
        ({}, {"display_name": "stored"}, ["username", "active"]),
        ({"e": ["E"]}, {"x": 1}, ["display_name", "username", "email", "active"]),
    ],
)
def test_field_order_and_trace_of_fields_written_twice(
    attributes: dict[str, list[str]], user: Any, order: list[str]
) -> None:
    """The plan lists fields in the order of their first write in the file, whichever
    write happened; the trace holds each field's deciding write, in file order."""
    source = """
display_name = first(@d)
username = "u"
rule "mail" when count(@e) > 0 { email = first(@e) }
active = false
rule "update" on update { active := true }
display_name ?= subject
email = first(@e)
"""
    special, general = both(source)
    plan = agree(special, general, attributes, Context(subject="sub"), user)
    assert list(plan.fields) == order
    lines = [entry.line for entry in plan.trace]
    assert lines == sorted(lines)
    assert len({entry.field for entry in plan.trace}) == len(plan.trace)


def test_deeply_nested_programs() -> None:
    """Nested as deep as the checker allows: whichever code runs them (the specialised
    one; the general one or the reference evaluator when Python's parser refuses the
    nesting, see test_evaluate.py), the plans agree."""
    depth = next(d for d in range(MAX_DEPTH, 0, -1) if compile_rules(nested(d)).ok)
    special, general = both(nested(depth))
    agree(special, general, {"a": ["ABC"]}, Context(), None)
    chain = "username = first(@a)" + " ?? first(@a)" * (MAX_DEPTH - 2) + "\n"
    special, general = both(chain)
    agree(special, general, {"a": ["x"]}, Context(), None)


def nested(depth: int) -> str:
    return f"username = {'lower(' * depth}first(@a){')' * depth}\n"


def test_deny_when_null_makes_the_name_non_null_after_it() -> None:
    source = (
        'let mail = lower(first(@m))\ndeny "none" when mail == null\nusername = email_local(mail)\n'
    )
    special, general = both(source)
    assert special.python_source is not None
    assert "is not None else None" not in special.python_source.split("deny")[-1]
    for attributes in ({}, {"m": ["A@B"]}, {"m": ["ab"]}, {"m": [""]}):
        agree(special, general, attributes, Context(), None)


# ---------------------------------------------------------- the shortcuts alone

_PIECE = st.sampled_from([*"aAkKsSeE-=,:/ @#", r"\.", r"\-", r"\,", r"\(", r"\$", r"\\"])
_ALTERNATIVE = st.text(alphabet="aAkKsS-", max_size=2)
_GROUP = st.tuples(st.booleans(), st.lists(_ALTERNATIVE, min_size=1, max_size=3)).map(
    lambda g: ("(?:" if g[0] else "(") + "|".join(g[1]) + ")"
)
LITERAL_FORMS = st.tuples(
    st.booleans(),
    st.booleans(),
    st.lists(st.one_of(_PIECE, _PIECE, _GROUP), max_size=4),
    st.booleans(),
).map(
    lambda p: (
        ("(?i)" if p[0] else "") + ("^" if p[1] else "") + "".join(p[2]) + ("$" if p[3] else "")
    )
)
HOSTILE_TEXT = st.text(
    alphabet=st.sampled_from(
        [*"aAkKsSeE-=,:./ @#$()\\\n\r", "\u212a", "\u017f", "é", "ß", "\ud800", "\x00"]
    ),
    max_size=10,
)


@settings(max_examples=1000, deadline=None)
@given(pattern=LITERAL_FORMS, texts=st.lists(HOSTILE_TEXT, max_size=5))
def test_plain_text_patterns_match_as_re2_does(pattern: str, texts: list[str]) -> None:
    regex = compile_regex(pattern)
    literal = literal_pattern(pattern)
    if literal is None:
        return
    one = text_matcher(literal, regex.search)
    for text in texts:
        assert one(text) == regex.search(text), (pattern, text)
    assert list_matcher(literal, regex.search)(texts) == any(regex.search(t) for t in texts)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pattern=LITERAL_FORMS, texts=st.lists(HOSTILE_TEXT, max_size=4))
def test_plain_text_patterns_compiled_inline(pattern: str, texts: list[str]) -> None:
    """The inline forms (`in`, `startswith`, `isascii()` and RE2) in generated code."""
    source = f"""
username = "u"
email = if first(@a) matches r"{pattern}" then "yes" else "no"
display_name = if first(@b) matches r"{pattern}" then "yes" else "no"
groups = [x for x in @a if x matches r"{pattern}"]
roles += if @a matches r"{pattern}" then "any" else "none"
active = user.email matches r"{pattern}"
"""
    special, general = both(source)
    for user in (None, {"email": texts[0] if texts else "x"}):
        attributes = {"a": texts, "b": texts[1:]}
        plan = agree(special, general, attributes, Context(), user)
        regex = compile_regex(pattern)
        assert plan.set_ops[0].values == tuple(
            dict.fromkeys(t for t in texts if t and regex.search(t))
        )


PREFIXES = st.lists(st.sampled_from([*"aA:=-/ ", r"\.", r"\:", r"\\"]), max_size=5).map("".join)


@settings(max_examples=500, deadline=None)
@given(
    prefix=PREFIXES,
    group=st.sampled_from(["(.+)$", "(.*)$"]),
    texts=st.lists(HOSTILE_TEXT, max_size=5),
)
def test_prefix_extraction_as_re2_does(prefix: str, group: str, texts: list[str]) -> None:
    pattern = "^" + prefix + group
    regex = compile_regex(pattern)
    scalar = FUNCTIONS["regex_extract"].scalar
    assert scalar is not None
    fast = prefix_extractor(pattern, lambda t: scalar(t, regex))  # type: ignore[arg-type,return-value]
    if fast is None:  # declined (RE2 extracts): only for a prefix ending in `\\`
        assert prefix.endswith("\\")
        return
    for text in texts:
        for candidate in (text, prefix.replace("\\", "") + text):
            assert fast(candidate) == scalar(candidate, regex), (pattern, candidate)


def test_prefix_extraction_only_for_its_form() -> None:
    extract = FUNCTIONS["regex_extract"].scalar
    for pattern in [
        "^(a)(.+)$",
        "^(?:a)(.+)$",
        "(.+)$",
        "^a(.+)",
        "^a.(.+)$",
        "(?i)^a(.+)$",
        "^a(.+)$x",
    ]:
        regex = compile_regex(pattern) if pattern != "^a(.+)$x" else None
        assert prefix_extractor(pattern, lambda t, r=regex: extract(t, r)) is None, pattern  # type: ignore[misc]


DN_TEXT = st.text(alphabet=st.sampled_from([*'CNcnOUou=,;+ \\"aé#', "\u212a"]), max_size=24)


@settings(max_examples=1000, deadline=None)
@given(dn=DN_TEXT, kind=st.sampled_from(["CN", "cn", " ou ", "DC", "", "é", "k"]))
def test_dn_value_for_a_fixed_type(dn: str, kind: str) -> None:
    assert dn_value_of(kind)(dn) == dn_value(dn, kind)


def test_set_op_is_a_set_op() -> None:
    made = set_op("groups", "add", ("a", "b"), 3, "r")
    real = SetOp("groups", "add", ("a", "b"), 3, "r")
    assert made == real and hash(made) == hash(real) and repr(made) == repr(real)
    assert type(made) is SetOp
    with pytest.raises(AttributeError):
        made.line = 4  # type: ignore[misc]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        ("", None),
        ("a", ("a",)),
        (["a", "", "b", "a"], ("a", "b")),
        ([], ()),
        (3, None),
        (True, None),
    ],
)
def test_members(value: Any, expected: Any) -> None:
    assert members(value) == expected


# ---------------------------------------------------------------- the source


def test_comments_name_each_statement_line() -> None:
    source = (DEMO / "rules" / "okta.rules").read_text()
    special, _ = both(source, DEMO_FIELDS)
    program, _ = parse(source)
    assert program is not None
    lines = set()
    for statement in program.statements:
        for inner in [statement, *(statement.body if isinstance(statement, Rule) else ())]:
            lines.add(source.count("\n", 0, inner.span.start) + 1)
    for line in lines:
        assert f"# line {line}: " in special.python_source, line
    assert "# line 8: username = email_local(mail)" in special.python_source
    deny = next(s for s in program.statements if isinstance(s, Deny))
    assert deny.message not in special.python_source
    first_assign = next(s for s in program.statements if isinstance(s, Assign))
    assert first_assign.field == "username"


# Where Python forbids `:=` (in the list a comprehension walks, when that list cannot be
# computed before the statement because it is only sometimes needed), the specialised
# code binds values with one-item loops or takes the general helpers.
NO_WALRUS = """
username = "u"
email = first(@a) ?? first([x1 for x1 in [lower(y1) for y1 in @b if first(@c) matches r"^(a|b)$"] if x1 matches r"(ab|ba)"])
display_name = first(@a) ?? first([email_local(x2) for x2 in (if count(@b) > 0 then [trim(z2) for z2 in @b] else [match first(@c) { "a" => lower(first(@b)) else => "z" }])])
department = first(@a) ?? first([match lower(x3) { "a", "b" => x3 + "!" else => upper(x3) } for x3 in [q3 for q3 in @b if lower(q3) matches r"(?i)^(a|b)$"]])
given_name = first(@a) ?? first([x4 for x4 in [match first(@c) { "a" => y4 "b" => y4 + y4 else => "" } for y4 in @b] if x4 matches r"(?i)(a|b)"])
family_name = first(@a) ?? join([x5 for x5 in [first(@b) ?? first(@c), lower(first(@c)), email_local(first(@b))] if x5 in @c], "-")
groups = if count(@a) > 0 then [] else [email_domain(x6) for x6 in [y6 for y6 in @b if lower(y6) == "a@b"]]
rule "denied" when first(@c) == "deny" { deny "stop" }
roles += [x7 for x7 in @b if x7 matches r"(a|b|c)" and x7 matches r"^(a|b)$"]
"""


@pytest.mark.parametrize(
    "attributes",
    [
        {},
        {"b": ["a", "B", "ab", "x@y", "a@b", " a ", "", "\u212a"]},
        {"b": ["ba", "A"], "c": ["a", "b"]},
        {"b": ["b"], "c": ["b", "a"]},
        {"a": ["set"], "b": ["a"]},
        {"c": ["deny"]},
    ],
)
def test_code_where_walrus_is_not_allowed(attributes: dict[str, list[str]]) -> None:
    special, general = both(NO_WALRUS)
    assert special.python_source is not None and "# line" in special.python_source
    for user in (None, {"username": "x"}):
        agree(special, general, attributes, Context(subject="s"), user)


EDGES = [
    'username = match first(@a) { else => "x" }\nemail = match first(@a) { else => lower(first(@a)) }',
    'username := first(@a)\nemail = "e"',
    'username = "u"\ngroups ?= @a\ngroups ?= ["x"]\nroles += ""\nroles -= []\nroles := null',
    'username = "u"\nentitlements = null\nentitlements := first(@a)\nclear groups\ngroups ?= "g"',
    'username = "u"\nlevel := number(first(@a))\nvip ?= bool(first(@a))\nactive = user.vip',
    'username = "u"\nemail = lower(user.department) ?? user.email\ndepartment := user.department',
    'username = "u"\nlevel = user.level + 1\nvip = user.level > 2 or user.email == first(@a)',
    'username = "u"\ndisplay_name = text(user.level) + user.email\nemail ?= user.email',
    'username = first(@a) ?? "u"\ndeny "always"\nemail = "never"',
    'username = "u"\nrule "r" on update when user.email in @a { email := null  clear level }',
    'let m = first(@a)\ndeny "none" when m == null or m == ""\nusername = m + "!"',
]


@pytest.mark.parametrize("source", EDGES)
@pytest.mark.parametrize(
    "attributes", [{}, {"a": ["A@B", "x"]}, {"a": [""]}, {"a": ["  42 ", "true"]}]
)
def test_edge_programs(source: str, attributes: dict[str, list[str]]) -> None:
    special, general = both(source + "\n")
    stored = [None, {"email": "A@B", "department": "D", "level": 3, "vip": True, "groups": []}]
    for user in stored:
        agree(special, general, attributes, Context(subject="s"), user)
    odd = {"email": 5, "department": Decimal("1.5"), "level": "x", "vip": 1, "groups": [""]}
    fast = special.evaluate(attributes, Context(), odd)
    assert typed_plan(fast) == typed_plan(special.evaluate_reference(attributes, Context(), odd))
