"""The rules language: compile a rules file once, evaluate it for every sign-in.

The front door, like `re.compile`::

    result = compile_rules(source, fields={"department": "text"})
    if result.ok:
        plan = result.rules.evaluate(attributes, Context(subject="x"), user=None)

`check` gives the diagnostics alone; `render` prints one; `format_source` lays a file out.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from rules.ast import Program
from rules.check import check_program, merged_fields
from rules.compile import Evaluator, compile_source
from rules.diagnostics import Diagnostic, SourceMap, Span, render, sort_key
from rules.evaluate import ReferenceEvaluator
from rules.format import FormatError, format_source
from rules.parse import parse
from rules.plan import Context, Plan, Scalar, SetOp, Skipped, TraceEntry
from rules.vocabulary import BUILTIN_FIELDS, FieldType

__all__ = [
    "BUILTIN_FIELDS",
    "CompileResult",
    "CompiledRules",
    "Context",
    "Diagnostic",
    "FieldType",
    "FormatError",
    "Plan",
    "SetOp",
    "Skipped",
    "SourceMap",
    "Span",
    "TraceEntry",
    "check",
    "compile_rules",
    "format_source",
    "parse",
    "render",
]


class CompiledRules:
    """A checked, compiled rules file: evaluate it for each token."""

    def __init__(
        self,
        program: Program,
        evaluator: Evaluator,
        source: SourceMap,
        fields: Mapping[str, FieldType],
        python_source: str | None = None,
    ) -> None:
        self.program = program
        self.python_source = python_source  # what `evaluate` was compiled from (None:
        # the reference evaluator runs, as for a file too deeply nested for Python)
        self.source = source
        self.fields = dict(fields)
        self.sha256 = hashlib.sha256(source.text.encode("utf-8")).hexdigest()
        self._evaluator = evaluator
        self._reference: ReferenceEvaluator | None = None

    def evaluate(
        self,
        attributes: Mapping[str, Sequence[str]],
        context: Context,
        user: Mapping[str, Scalar | Sequence[str]] | None,
    ) -> Plan:
        """The plan for one token; `user` is None when the account is being created."""
        return self._evaluator(attributes, context, user)

    def evaluate_reference(
        self,
        attributes: Mapping[str, Sequence[str]],
        context: Context,
        user: Mapping[str, Scalar | Sequence[str]] | None,
    ) -> Plan:
        """The same plan from the tree-walking reference evaluator (slow, obvious)."""
        if self._reference is None:
            self._reference = ReferenceEvaluator(self.program, self.fields, self.source)
        return self._reference.evaluate(attributes, context, user)


@dataclass(slots=True)
class CompileResult:
    """What `compile_rules` gives: the rules (None when any error) and all diagnostics."""

    rules: CompiledRules | None
    diagnostics: list[Diagnostic]
    source: SourceMap
    program: Program | None = field(default=None, repr=False)

    @property
    def ok(self) -> bool:
        return self.rules is not None

    @property
    def errors(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.severity == "error"]

    @property
    def warnings(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.severity == "warning"]


def compile_rules(
    source: str,
    fields: Mapping[str, FieldType] | None = None,
    *,
    attributes: Sequence[str] | None = None,
    generate: bool = True,
    specialise: bool = True,
) -> CompileResult:
    """Parse, check and compile a rules file; `fields` adds the config's declared fields,
    `attributes` (when the connection lists them) enables warning W004.

    `generate=False` skips generating the Python evaluator (tens of milliseconds on a
    long file) and evaluates with the reference evaluator, which gives the same plans:
    for an editor that re-checks on every keystroke and evaluates once.
    `specialise=False` generates the general evaluator (every operation through the
    value layer) instead of the type-specialised one: the same plans, slower; for tests.
    The specialised source falls back to the general one, and that to the reference
    evaluator, when Python cannot compile it (expressions nested hundreds deep)."""
    source_map = SourceMap(source)
    program, syntax = parse(source)
    if program is None or any(d.severity == "error" for d in syntax):
        return CompileResult(None, sorted(syntax, key=sort_key), source_map, program)
    all_fields = merged_fields(fields)
    checked = check_program(program, source_map, all_fields, attributes)
    diagnostics = sorted([*syntax, *checked.diagnostics], key=sort_key)
    if not checked.ok:
        return CompileResult(None, diagnostics, source_map, program)
    evaluator: Evaluator | None = None
    python: str | None = None
    for special in (True, False) if generate and specialise else (False,) if generate else ():
        try:
            evaluator, python = compile_source(
                program, checked.types, all_fields, source_map, specialise=special
            )
            break
        except (RecursionError, MemoryError, SyntaxError):  # absurdly deep expressions
            continue
    if evaluator is None:
        evaluator = ReferenceEvaluator(program, all_fields, source_map).evaluate
    rules = CompiledRules(program, evaluator, source_map, all_fields, python)
    return CompileResult(rules, diagnostics, source_map, program)


def check(
    source: str,
    fields: Mapping[str, FieldType] | None = None,
    *,
    attributes: Sequence[str] | None = None,
) -> list[Diagnostic]:
    """Every diagnostic for a rules file (syntax errors stop the check early)."""
    source_map = SourceMap(source)
    program, syntax = parse(source)
    if program is None or any(d.severity == "error" for d in syntax):
        return sorted(syntax, key=sort_key)
    checked = check_program(program, source_map, merged_fields(fields), attributes)
    return sorted([*syntax, *checked.diagnostics], key=sort_key)
