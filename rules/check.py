"""The checker: names, scoping, fields, statements and warnings (rules-language.md §5–§9).

Reports every problem it finds in one run. Expression typing lives in `types.py`; this
module adds scoping (`let`, comprehension variables, uniqueness, shadowing), statement
checks (fields, assignment operators, `clear`) and the whole-file warnings W001/W002.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from rules.ast import Assign as AssignStmt
from rules.ast import (
    AttrRef,
    Binary,
    BoolLit,
    Clear,
    Comprehension,
    Deny,
    Expr,
    IfExpr,
    Let,
    ListLit,
    Match,
    Name,
    NumLit,
    Program,
    Rule,
    Stmt,
    StrLit,
)
from rules.diagnostics import Diagnostic, SourceMap, Span, sort_key
from rules.functions import FUNCTIONS
from rules.types import ExprTyper, Type, describe, did_you_mean, known
from rules.vocabulary import BUILTIN_FIELDS, CONTEXT_NAMES, MAX_DEPTH, REQUIRED_FIELDS, FieldType

_CONVERTERS: dict[str, str] = {"text": "text", "number": "number", "bool": "bool"}


@dataclass(slots=True)
class _Variable:
    kind: Type
    span: Span
    is_let: bool
    used: bool = False


@dataclass(frozen=True, slots=True)
class _Write:
    """One assignment or clear, for W001."""

    statement: AssignStmt | Clear
    rule: Rule | None
    unconditional: bool


@dataclass(slots=True)
class CheckResult:
    """The diagnostics (sorted) and each expression node's static type (by `id`)."""

    diagnostics: list[Diagnostic]
    types: dict[int, Type] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not any(d.severity == "error" for d in self.diagnostics)


def merged_fields(extra: Mapping[str, FieldType] | None) -> dict[str, FieldType]:
    """Built-in fields plus the config's declared ones (built-ins keep their types)."""
    return {**(extra or {}), **BUILTIN_FIELDS}


def never_null(expr: Expr, depth: int = 0) -> bool:
    """§9: a value that can never be null: a literal other than "" and null, `@attr`,
    a list, `x ?? <such a value>` (and `if`/`match` whose results all are)."""
    if depth > MAX_DEPTH:
        return False
    match expr:
        case StrLit(value=value):
            return value != ""
        case NumLit() | BoolLit() | AttrRef() | ListLit() | Comprehension():
            return True
        case Binary(op="??", right=right):
            return never_null(right, depth + 1)
        case IfExpr(then=then, otherwise=otherwise):
            return never_null(then, depth + 1) and never_null(otherwise, depth + 1)
        case Match(arms=arms, otherwise=otherwise):
            results = [arm.result for arm in arms]
            return otherwise is not None and all(
                never_null(r, depth + 1) for r in [*results, otherwise]
            )
        case _:
            return False


class Checker(ExprTyper):
    """Walks a program once, in file order, keeping the scope as it goes."""

    def __init__(
        self,
        source: SourceMap,
        fields: Mapping[str, FieldType],
        attributes: Sequence[str] | None,
    ) -> None:
        super().__init__(source.text, fields, attributes)
        self.map = source
        self.visible: dict[str, _Variable] = {}
        self.declared: dict[str, Span] = {}
        self.lets: list[tuple[str, _Variable]] = []
        self.rules: dict[str, Span] = {}
        self.all_lets: dict[str, Span] = {}
        self.writes: list[_Write] = []

    def line(self, span: Span) -> int:
        return self.map.position(span.start).line

    # ----------------------------------------------------------------- scope

    def lookup(self, node: Name) -> Type:
        variable = self.visible.get(node.name)
        if variable is not None:
            variable.used = True
            return variable.kind
        if node.name in CONTEXT_NAMES:
            return "text"
        hint: str | None
        if node.name in self.fields:
            hint = f"fields are write-only; read the stored value with `user.{node.name}`"
        elif node.name in self.all_lets:
            line = self.line(self.all_lets[node.name])
            if self.all_lets[node.name].start > node.span.start:
                hint = f"`{node.name}` is defined later, on line {line}: move its `let` up"
            else:
                hint = f"`{node.name}` (line {line}) belongs to a rule body, seen only there"
        else:
            hint = did_you_mean(node.name, sorted({*self.visible, *CONTEXT_NAMES}))
        self.report("E010", f"unknown name `{node.name}`", node.span, hint)
        return "unknown"

    def _declare(self, name: str, span: Span) -> bool:
        """E020/E021 for a new let or comprehension variable; True when it is fine."""
        if name in self.declared:
            self.report(
                "E020",
                f"`{name}` is already defined on line {self.line(self.declared[name])}",
                span,
                "every `let` and comprehension variable needs its own name in the file",
            )
            return False
        self.declared[name] = span
        what = (
            "a context name"
            if name in CONTEXT_NAMES
            else "a field"
            if name in self.fields
            else "a function"
            if name in FUNCTIONS
            else None
        )
        if what is not None:
            self.report("E021", f"`{name}` shadows {what}", span, "choose another name")
            return False
        return True

    def comprehension(self, expr: Comprehension) -> Type:
        iterable = self.infer(expr.iterable)
        if known(iterable) and iterable != "list":
            self.report(
                "E028",
                f"cannot iterate over {describe(iterable)}",
                expr.iterable.span,
                "use `split(..., sep)` to make a list" if iterable == "text" else None,
            )
        self._declare(expr.var, expr.var_span)
        self.visible[expr.var] = _Variable("text", expr.var_span, is_let=False, used=True)
        element = self.infer(expr.element)
        if known(element) and element != "text":
            self.report(
                "E028",
                f"a comprehension builds a list of text, not of {describe(element)}",
                expr.element.span,
                "use `text(...)`" if element in ("number", "bool") else None,
            )
        if expr.condition is not None:
            self.infer(expr.condition)
        self.visible.pop(expr.var, None)
        return "list"

    # ------------------------------------------------------------ statements

    def program(self, program: Program) -> None:
        for statement in program.statements:
            if isinstance(statement, Let):
                self.all_lets.setdefault(statement.name, statement.name_span)
            elif isinstance(statement, Rule):
                for inner in statement.body:
                    if isinstance(inner, Let):
                        self.all_lets.setdefault(inner.name, inner.name_span)
        for statement in program.statements:
            self.statement(statement, None)
        self._unused_lets()
        self._overridden()

    def statement(self, statement: Stmt, rule: Rule | None) -> None:
        match statement:
            case Let(name=name, value=value, name_span=span):
                kind = self.infer(value)
                if self._declare(name, span) or name not in self.visible:
                    variable = _Variable(kind, span, is_let=True)
                    self.visible[name] = variable
                    self.lets.append((name, variable))
            case AssignStmt():
                self._assign(statement, rule)
            case Clear(field=name, field_span=span):
                if self._field(name, span) is not None:
                    if name in REQUIRED_FIELDS:
                        self.report(
                            "E026",
                            f"`{name}` cannot be cleared",
                            span,
                            f"every account needs a {name}",
                        )
                    self.writes.append(_Write(statement, rule, _unconditional(rule)))
            case Deny(condition=condition):
                if condition is not None:
                    self.infer(condition)
            case Rule():
                self._rule(statement)

    def _rule(self, rule: Rule) -> None:
        if rule.name in self.rules:
            line = self.line(self.rules[rule.name])
            self.report(
                "E020",
                f'a rule named "{rule.name}" already exists on line {line}',
                rule.name_span,
                "rule names are unique in the file",
            )
        else:
            self.rules[rule.name] = rule.name_span
        if rule.condition is not None:
            self.infer(rule.condition)
        for inner in rule.body:
            self.statement(inner, rule)
        for inner in rule.body:  # the body's lets end with it
            if isinstance(inner, Let):
                variable = self.visible.get(inner.name)
                if variable is not None and variable.span == inner.name_span:
                    del self.visible[inner.name]

    def _field(self, name: str, span: Span) -> FieldType | None:
        kind = self.fields.get(name)
        if kind is None:
            hint = did_you_mean(name, sorted(self.fields))
            self.report(
                "E017",
                f"unknown field `{name}`",
                span,
                hint or "declare it in the config's [store.fields]",
            )
        return kind

    def _assign(self, statement: AssignStmt, rule: Rule | None) -> None:
        value = self.infer(statement.value)
        kind = self._field(statement.field, statement.field_span)
        if kind is None:
            return
        name = statement.field
        if kind == "set":
            if value in ("number", "bool"):
                self.report(
                    "E028",
                    f"cannot assign {describe(value)} to `{name}`, a set field",
                    statement.value.span,
                    "use `text(...)`",
                )
        elif statement.op in ("+=", "-="):
            self.report(
                "E018",
                f"`{statement.op}` needs a set field; `{name}` holds one value",
                statement.field_span,
                "use `=` to set it",
            )
        elif value == "list":
            self.report(
                "E019",
                f"cannot assign a list to `{name}`, a single-valued field",
                statement.value.span,
                "use `first(...)` or `join(..., sep)`",
            )
        elif value not in ("null", "unknown") and value != kind:
            self.report(
                "E028",
                f"cannot assign {describe(value)} to `{name}`, a {kind} field",
                statement.value.span,
                f"use `{_CONVERTERS[kind]}(...)`",
            )
        self.writes.append(_Write(statement, rule, _unconditional(rule)))

    # -------------------------------------------------------------- warnings

    def _unused_lets(self) -> None:
        for name, variable in self.lets:
            if not variable.used:
                self.report(
                    "W002",
                    f"`{name}` is never used",
                    variable.span,
                    "remove the `let`, or use it",
                    "warning",
                )

    def _overridden(self) -> None:
        """W001: a write that a later unconditional overriding write always replaces.

        One backward pass: for each field, the nearest later overriding write that is
        unconditional, and (per rule) the nearest later one in the same rule body.
        """
        after: dict[str, _Write] = {}
        after_in_rule: dict[tuple[int, str], _Write] = {}
        for write in reversed(self.writes):
            target = write.statement.field
            candidates = [after.get(target)]
            if write.rule is not None:
                candidates.append(after_in_rule.get((id(write.rule), target)))
            found = [c for c in candidates if c is not None]
            if found and _overridable(write.statement, self.fields.get(target)):
                later = min(found, key=lambda c: c.statement.span.start)
                line = self.line(later.statement.span)
                self.report(
                    "W001",
                    f"this assignment to {target} is always overridden by line {line}",
                    write.statement.field_span,
                    f"remove it, or use `?=` on line {line} if that one is a fallback",
                    "warning",
                )
            if _overrides(write.statement):
                if write.unconditional:
                    after[target] = write
                if write.rule is not None:
                    after_in_rule[(id(write.rule), target)] = write


def _unconditional(rule: Rule | None) -> bool:
    return rule is None or (rule.phase is None and rule.condition is None)


def _overridable(statement: AssignStmt | Clear, kind: FieldType | None) -> bool:
    if isinstance(statement, Clear):
        return True
    return not (kind == "set" and statement.op == "-=")  # `-=` reaches other sources


def _overrides(statement: AssignStmt | Clear) -> bool:
    if isinstance(statement, Clear):
        return True
    return statement.op == ":=" or (statement.op == "=" and never_null(statement.value))


def check_program(
    program: Program,
    source: SourceMap,
    fields: Mapping[str, FieldType] | None = None,
    attributes: Sequence[str] | None = None,
) -> CheckResult:
    """Check a parsed program; every diagnostic, sorted by position."""
    checker = Checker(source, merged_fields(fields), attributes)
    checker.program(program)
    return CheckResult(sorted(checker.diagnostics, key=sort_key), checker.types)
