"""The evaluators on hand-built trees, and the `rules` front door.

Hand-built ASTs (no parser involved) pin down the back end's contract with `rules.ast`;
the front-door tests pin the API the engine, CLI and TUI use.
"""

from __future__ import annotations

import hashlib
from decimal import Decimal
from typing import Any

import pytest

import rules
from rules import Context, Plan, SetOp, Skipped, TraceEntry, check, compile_rules
from rules.ast import (
    Assign,
    AttrRef,
    BoolLit,
    Call,
    Clear,
    Comprehension,
    Deny,
    Let,
    ListLit,
    Name,
    NumLit,
    Program,
    Rule,
    StrLit,
    UserField,
)
from rules.check import check_program, merged_fields
from rules.compile import compile_program
from rules.diagnostics import SourceMap
from rules.evaluate import ReferenceEvaluator

FIELDS = merged_fields({"level": "number"})
SOURCE = SourceMap("")


def both(program: Program, attributes: dict[str, list[str]], user: object = None) -> Plan:
    """Check, then evaluate with both evaluators; they must agree."""
    checked = check_program(program, SOURCE, FIELDS)
    assert checked.ok, checked.diagnostics
    compiled = compile_program(program, checked.types, FIELDS, SOURCE)
    reference = ReferenceEvaluator(program, FIELDS, SOURCE)
    context = Context(subject="sub")
    fast = compiled(attributes, context, user)  # type: ignore[arg-type]
    slow = reference.evaluate(attributes, context, user)  # type: ignore[arg-type]
    assert fast == slow
    return fast


def first(attribute: str) -> Call:
    return Call("first", (AttrRef(attribute),))


def test_hand_built_program() -> None:
    program = Program(
        (
            Let("m", Call("lower", (first("mail"),))),
            Assign("username", "=", Call("email_local", (Name("m"),))),
            Assign("email", "=", Name("m")),
            Assign("level", ":=", Call("number", (first("level"),))),
            Assign(
                "groups",
                "+=",
                Comprehension(Call("upper", (Name("g"),)), "g", AttrRef("memberOf"), None),
            ),
            Rule("defaults", "create", None, (Assign("active", "=", BoolLit(True)),)),
            Rule("returning", "update", None, (Clear("roles"),)),
        )
    )
    plan = both(program, {"mail": ["Ann@X.org"], "level": ["2.50"], "memberOf": ["a", "b"]})
    assert plan.fields == {
        "username": "ann",
        "email": "ann@x.org",
        "level": Decimal("2.50"),
        "active": True,
    }
    assert plan.set_ops == [SetOp("groups", "add", ("A", "B"), 1, None)]
    assert plan.skipped == [Skipped("returning", 1, "on update: the account does not exist yet")]
    assert [t.op for t in plan.trace] == ["=", "=", ":=", "+=", "="]


def test_hand_built_update_reads_user() -> None:
    program = Program(
        (
            Assign("display_name", "?=", StrLit("fallback")),
            Assign("email", "=", UserField("display_name")),
            Assign("roles", "=", ListLit((StrLit("a"), StrLit(""), StrLit("b")))),
            Assign("level", "=", NumLit(Decimal("2.0"), "2.0")),
        )
    )
    plan = both(program, {}, {"username": "u", "display_name": "Stored"})
    assert plan.fields == {"email": "Stored", "level": Decimal("2.0")}
    assert plan.set_ops == [SetOp("roles", "replace", ("a", "b"), 1, None)]


def test_deny_keeps_the_skipped_rules_so_far() -> None:
    program = Program(
        (
            Rule("never", None, BoolLit(False), ()),
            Deny("stop", Call("starts_with", (first("x"), StrLit("a")))),
            Assign("username", "=", StrLit("u")),
        )
    )
    plan = both(program, {"x": ["abc"]})
    assert plan.denied == "stop"
    assert plan.skipped == [Skipped("never", 1, "when condition was false")]
    assert plan.fields == {} and plan.set_ops == [] and plan.trace == []
    assert both(program, {"x": ["zzz"]}).fields == {"username": "u"}


def test_front_door_api() -> None:
    source = 'username = first(@uid)\nlevel = number(first(@n))\ngroups += "x"\n'
    result = compile_rules(source, {"level": "number"})
    assert result.ok and result.rules is not None and result.diagnostics == []
    assert result.source.text == source
    assert result.rules.sha256 == hashlib.sha256(source.encode()).hexdigest()
    plan = result.rules.evaluate({"uid": ["u1"], "n": ["7"]}, Context(), None)
    assert plan == Plan(
        fields={"username": "u1", "level": 7},
        set_ops=[SetOp("groups", "add", ("x",), 3, None)],
        trace=[
            TraceEntry("username", 1, None, "="),
            TraceEntry("level", 2, None, "="),
            TraceEntry("groups", 3, None, "+="),
        ],
    )
    assert type(plan.fields["level"]) is int
    for name in rules.__all__:
        assert hasattr(rules, name), name


def test_front_door_errors() -> None:
    result = compile_rules("username = @uid\n")
    assert not result.ok and result.rules is None
    assert [d.code for d in result.errors] == ["E019"] and result.warnings == []
    assert check("username = @uid\n") == result.diagnostics
    syntax = compile_rules("username = = 1\n")
    assert syntax.rules is None and syntax.diagnostics[0].code.startswith("E00")


def test_user_sets_may_be_tuples_and_missing_attributes_are_empty() -> None:
    result = compile_rules('username = "u"\nactive = "a" in user.groups\nroles ?= @none')
    assert result.rules is not None
    plan = result.rules.evaluate({}, Context(), {"groups": ("a", "a")})
    assert plan.fields == {"username": "u", "active": True}
    assert result.rules.evaluate({}, Context(), {"groups": {"a"}}).fields["active"] is True
    assert plan.set_ops == [SetOp("roles", "replace", (), 3, None)]


def test_fallback_to_the_reference_evaluator(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise RecursionError

    monkeypatch.setattr(rules, "compile_source", refuse)
    result = compile_rules('username = first(@uid) ?? "x"')
    assert result.rules is not None
    assert result.rules.python_source is None
    assert result.rules.evaluate({}, Context(), None).fields == {"username": "x"}


def test_fallback_from_the_specialised_to_the_general_evaluator(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real = rules.compile_source

    def general_only(*args: Any, specialise: bool = True) -> Any:
        if specialise:
            raise SyntaxError("too many nested parentheses")
        return real(*args, specialise=False)

    monkeypatch.setattr(rules, "compile_source", general_only)
    result = compile_rules('username = first(@uid) ?? "x"')
    assert result.rules is not None and result.rules.python_source is not None
    assert (
        result.rules.python_source
        == compile_rules('username = first(@uid) ?? "x"', specialise=False).rules.python_source
    )  # type: ignore[union-attr]
    assert result.rules.evaluate({}, Context(), None).fields == {"username": "x"}


def test_stored_float_reads_as_decimal() -> None:
    result = compile_rules('username = "u"\nactive = user.level == 2.5', {"level": "number"})
    assert result.rules is not None
    plan = result.rules.evaluate({}, Context(), {"level": 2.5})
    assert plan.fields["active"] is True
    assert result.rules.evaluate({}, Context(), {"level": float("nan")}).fields["active"] is False
