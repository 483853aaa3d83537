"""Differential test: the compiled evaluator and the reference evaluator agree.

Random well-typed programs (`typed_programs`, and the parser's `checked_programs`) on
random tokens, contexts and stored users must give equal plans, with equal value types
(2 and Decimal("2") are equal in Python but print differently). Evaluation must never
raise, whatever the attribute bag.
"""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rules import Context, Plan, compile_rules, render
from tests.rules import strategies
from tests.rules.test_sandbox import assert_only_own_tokens
from tests.rules.typed_programs import FIELDS, small_bags, typed_programs, users

contexts = st.builds(
    Context,
    subject=st.sampled_from([None, "", "s-1", "CN=A,OU=Apps"]),
    issuer=st.sampled_from([None, "https://idp"]),
    connection=st.sampled_from([None, "okta"]),
    subject_format=st.sampled_from([None, "urn:x"]),
    authn_context=st.sampled_from([None, "a@b"]),
)

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def typed_plan(plan: Plan) -> Any:
    """A plan with each field value's type beside it."""
    return plan, [(k, type(v).__name__) for k, v in plan.fields.items()]


def compiled(source: str) -> Any:
    result = compile_rules(source, FIELDS)
    errors = [render(d, result.source, "p") for d in result.errors]
    assert result.rules is not None, source + "\n" + "\n".join(errors)
    return result.rules


@SETTINGS
@given(
    source=typed_programs(),
    inputs=st.lists(st.tuples(small_bags, contexts, users), min_size=1, max_size=4),
)
def test_compiled_equals_reference(source: str, inputs: list[Any]) -> None:
    rules = compiled(source)
    for attributes, context, user in inputs:
        fast = rules.evaluate(attributes, context, user)
        slow = rules.evaluate_reference(attributes, context, user)
        assert typed_plan(fast) == typed_plan(slow), source


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(source=strategies.checked_programs(), attributes=strategies.attribute_bags(200))
def test_parser_strategy_programs_agree(source: str, attributes: dict[str, list[str]]) -> None:
    result = compile_rules(source)
    if result.rules is None:  # the parser's generator only aims at well-typed programs
        return
    context = Context(subject="s")
    for user in (None, {"username": "u", "groups": ["g"]}):
        fast = result.rules.evaluate(attributes, context, user)
        assert typed_plan(fast) == typed_plan(
            result.rules.evaluate_reference(attributes, context, user)
        )


@settings(max_examples=100, deadline=None)
@given(source=typed_programs(max_statements=6))
def test_generated_code_holds_only_own_tokens(source: str) -> None:
    assert_only_own_tokens(generated_with_fields(source))


def generated_with_fields(source: str) -> str:
    from rules import parse
    from rules.check import check_program, merged_fields
    from rules.compile import generate
    from rules.diagnostics import SourceMap

    program, _ = parse(source)
    assert program is not None
    checked = check_program(program, SourceMap(source), merged_fields(FIELDS))
    code, _ = generate(program, checked.types, merged_fields(FIELDS), SourceMap(source))
    return code


SPEC_EXAMPLE = """
let mail  = lower(first(@email ?? @"urn:oid:0.9.2342.19200300.100.1.3"))
let dept  = first(@department) ?? "unknown"
deny "no e-mail address in the assertion" when mail == null
deny "contractors are not provisioned"     when "contractor" in @employeeType
username     = email_local(mail)
email        = mail
display_name = first(@displayName) ?? join([first(@givenName), first(@sn)], " ")
department   = match dept { "Engineering", "R&D" => "engineering" else => "other" }
groups += "everyone"
groups += [dn_value(g, "CN") for g in @memberOf if g matches "(?i)OU=Apps,"]
groups += regex_extract(ascii(@memberOf), r"^CN=([^,]+)")
rule "first login defaults" on create { active = true  roles = ["viewer"] }
display_name ?= subject
"""


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(attributes=strategies.attribute_bags(3000), user=users)
def test_evaluation_never_raises(attributes: dict[str, list[str]], user: Any) -> None:
    rules = compiled(SPEC_EXAMPLE)
    plan = rules.evaluate(attributes, Context(subject="s"), user)
    assert plan == rules.evaluate_reference(attributes, Context(subject="s"), user)


def test_huge_inputs() -> None:
    rules = compiled(SPEC_EXAMPLE)
    big = "x" * 1_000_000
    attributes = {
        "email": [big + "@" + big],
        "memberOf": [f"CN=g{i},OU=Apps,DC=x" for i in range(5000)],
        "department": ["\ud800", "\x00"],
    }
    plan = rules.evaluate(attributes, Context(subject="s"), None)
    assert plan.denied is None
    assert len(plan.set_ops[1].values) == 5000


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(source=strategies.programs(), attributes=small_bags, user=users)
def test_checker_is_total_on_any_parsable_program(
    source: str, attributes: dict[str, list[str]], user: Any
) -> None:
    """Untyped random programs: checking never raises; whatever checks, runs the same."""
    result = compile_rules(source, FIELDS)
    assert all(d.code.startswith(("E", "W")) for d in result.diagnostics)
    if result.rules is not None:
        fast = result.rules.evaluate(attributes, Context(subject="s"), user)
        slow = result.rules.evaluate_reference(attributes, Context(subject="s"), user)
        assert typed_plan(fast) == typed_plan(slow)
