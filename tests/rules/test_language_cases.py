"""Language behaviour as data: every case of cases.toml, on both evaluators.

Style of the jmespath compliance tests: the table says what a program does with an input;
this one test runs the compiled evaluator and the reference evaluator on each case.
"""

from __future__ import annotations

import tomllib
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from rules import Context, Plan, compile_rules, render
from rules.vocabulary import FieldType

CASES: list[dict[str, Any]] = tomllib.loads(
    (Path(__file__).parent / "cases.toml").read_text(encoding="utf-8")
)["case"]
FIELDS: dict[str, FieldType] = {
    "department": "text",
    "employee_id": "text",
    "entitlements": "set",
    "level": "number",
    "vip": "bool",
}


def _exact(value: Any) -> Any:
    """TOML floats in expectations mean decimals: compare exactly."""
    return Decimal(repr(value)) if isinstance(value, float) else value


def _check(plan: Plan, case: dict[str, Any]) -> None:
    if "denied" in case:
        assert plan.denied == case["denied"]
        assert plan.deny_line == case.get("deny_line")
        assert plan.fields == {} and plan.set_ops == []
        return
    assert plan.denied is None, plan.denied
    if "fields" in case or "emptied" in case:
        expected = {k: _exact(v) for k, v in case.get("fields", {}).items()}
        expected.update(dict.fromkeys(case.get("emptied", [])))
        assert plan.fields == expected
        for key, value in plan.fields.items():
            assert type(value) is type(expected[key]), key
    if "set_ops" in case:
        got = [[op.field, op.kind, list(op.values)] for op in plan.set_ops]
        assert got == case["set_ops"]
    if "trace" in case:
        assert [[t.field, t.line, t.op] for t in plan.trace] == case["trace"]
    if "skipped" in case:
        assert [[s.rule, s.reason] for s in plan.skipped] == case["skipped"]


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_case(case: dict[str, Any]) -> None:
    source = case["source"]
    result = compile_rules(source, FIELDS)
    rendered = [render(d, result.source, case["name"]) for d in result.diagnostics]
    assert result.rules is not None, "\n".join(rendered)
    assert not result.errors
    attributes = case.get("attributes", {})
    context = Context(**case.get("context", {}))
    user = case.get("user")
    compiled = result.rules.evaluate(attributes, context, user)
    _check(compiled, case)
    reference = result.rules.evaluate_reference(attributes, context, user)
    assert reference == compiled


def test_there_are_enough_cases() -> None:
    assert len(CASES) >= 60
    assert len({c["name"] for c in CASES}) == len(CASES)
