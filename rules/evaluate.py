"""The reference evaluator: a plain tree walk with the same semantics as `compile.py`.

Slow and obvious on purpose. The differential test runs both on random programs and
inputs and requires equal plans; explanations may use it too. It expects a program the
checker accepted.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from rules import values as rt
from rules.ast import Assign as AssignStmt
from rules.ast import (
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
from rules.diagnostics import SourceMap
from rules.functions import FUNCTIONS, compile_regex
from rules.plan import Context, Plan, Scalar, SetOp, Skipped, TraceEntry
from rules.values import Value, context_value, stored_scalar, stored_set
from rules.vocabulary import REQUIRED_FIELDS, FieldType

_SET_KINDS: dict[str, Any] = {
    "=": "replace",
    ":=": "replace",
    "?=": "replace",
    "+=": "add",
    "-=": "remove",
}


class _Denied(Exception):
    """Internal: a deny ended evaluation."""

    def __init__(self, message: str, line: int | None) -> None:
        super().__init__(message)
        self.message = message
        self.line = line


@dataclass(slots=True)
class _State:
    attributes: Mapping[str, Sequence[str]]
    context: Context
    user: Mapping[str, Any] | None
    env: dict[str, Value] = field(default_factory=dict)
    scalars: dict[str, Scalar] = field(default_factory=dict)
    deciders: dict[str, tuple[int, TraceEntry]] = field(default_factory=dict)
    set_ops: list[SetOp] = field(default_factory=list)
    set_trace: list[tuple[int, TraceEntry]] = field(default_factory=list)
    sets_written: set[str] = field(default_factory=set)
    skipped: list[Skipped] = field(default_factory=list)


class ReferenceEvaluator:
    """Evaluates a checked program by walking its tree."""

    def __init__(
        self, program: Program, fields: Mapping[str, FieldType], source: SourceMap
    ) -> None:
        self.program = program
        self.fields = fields
        self.source = source
        self.order: dict[int, int] = {}
        self.rank: dict[str, int] = {}
        self._number(program.statements)
        self.patterns: dict[str, Any] = {}

    def _number(self, statements: Sequence[Stmt]) -> None:
        """Number statements in file order; rank fields by their first write (plan order)."""
        for statement in statements:
            self.order[id(statement)] = len(self.order) + 1
            if isinstance(statement, AssignStmt | Clear):
                self.rank.setdefault(statement.field, len(self.rank))
            if isinstance(statement, Rule):
                self._number(statement.body)

    def line(self, node: Stmt) -> int:
        return self.source.position(node.span.start).line

    def pattern(self, text: str) -> Any:
        if text not in self.patterns:
            self.patterns[text] = compile_regex(text)
        return self.patterns[text]

    # ------------------------------------------------------------ evaluation

    def evaluate(
        self,
        attributes: Mapping[str, Sequence[str]],
        context: Context,
        user: Mapping[str, Scalar | Sequence[str]] | None,
    ) -> Plan:
        state = _State(attributes, context, user)
        try:
            self.run(self.program.statements, state, None)
            if user is None:
                for name in REQUIRED_FIELDS:
                    if name in self.fields and state.scalars.get(name) is None:
                        raise _Denied(f"no rule produced a value for {name}", None)
        except _Denied as denied:
            return Plan(denied=denied.message, deny_line=denied.line, skipped=state.skipped)
        trace = sorted([*state.deciders.values(), *state.set_trace], key=lambda p: p[0])
        return Plan(
            fields=dict(sorted(state.scalars.items(), key=lambda item: self.rank[item[0]])),
            set_ops=state.set_ops,
            trace=[entry for _, entry in trace],
            skipped=state.skipped,
        )

    def run(self, statements: Sequence[Stmt], state: _State, rule: str | None) -> None:
        for statement in statements:
            match statement:
                case Let(name=name, value=value):
                    state.env[name] = self.value(value, state)
                case Deny(message=message, condition=condition):
                    if condition is None or rt.truthy(self.value(condition, state)):
                        raise _Denied(message, self.line(statement))
                case Rule():
                    reason = self._skip_reason(statement, state)
                    if reason is None:
                        self.run(statement.body, state, statement.name)
                    else:
                        state.skipped.append(Skipped(statement.name, self.line(statement), reason))
                case Clear(field=name):
                    self.write(statement, name, "clear", None, state, rule)
                case AssignStmt(field=name, op=op, value=expr):
                    self.write(statement, name, op, self.value(expr, state), state, rule)

    def _skip_reason(self, rule: Rule, state: _State) -> str | None:
        if rule.phase == "create" and state.user is not None:
            return "on create: the account already exists"
        if rule.phase == "update" and state.user is None:
            return "on update: the account does not exist yet"
        if rule.condition is not None and not rt.truthy(self.value(rule.condition, state)):
            return "when condition was false"
        return None

    def write(
        self, node: Stmt, name: str, op: str, value: Value, state: _State, rule: str | None
    ) -> None:
        """Apply one assignment or clear to the plan being built."""
        entry = (self.order[id(node)], TraceEntry(name, self.line(node), rule, op))
        if self.fields[name] == "set":
            self._write_set(node, name, op, value, state, rule, entry)
            return
        if value == "":
            value = None
        assert not isinstance(value, list | tuple)
        if op == "?=" and (name in state.scalars or stored_scalar(state.user, name) is not None):
            return
        if op in ("=", "?=") and value is None:
            return
        state.scalars[name] = value
        state.deciders[name] = entry
        if value is None and name in REQUIRED_FIELDS:
            raise _Denied(f"{name} cannot be emptied", self.line(node))

    def _write_set(
        self,
        node: Stmt,
        name: str,
        op: str,
        value: Value,
        state: _State,
        rule: str | None,
        entry: tuple[int, TraceEntry],
    ) -> None:
        line = self.line(node)
        if op == "?=" and (name in state.sets_written or stored_set(state.user, name)):
            return
        kind: Literal["replace", "clear", "add", "remove"]
        members: tuple[str, ...] | None
        if op == "clear":
            kind, members = "clear", ()
        else:
            if value == "":
                value = None
            if isinstance(value, str):
                value = [value]
            if not isinstance(value, list | tuple):
                value = None
            members = rt.distinct(value) if value is not None else None
            if op in ("+=", "-=") and not members:
                return
            if members is None:
                if op != ":=":
                    return
                kind, members = "clear", ()
            else:
                kind = _SET_KINDS[op]
        state.set_ops.append(SetOp(name, kind, members, line, rule))
        state.set_trace.append(entry)
        state.sets_written.add(name)

    # ----------------------------------------------------------- expressions

    def value(self, expr: Expr, state: _State) -> Value:
        match expr:
            case StrLit(value=value):
                return value
            case NumLit(value=value, text=spelling):
                return rt.number_literal(value, spelling)
            case BoolLit(value=value):
                return value
            case NullLit():
                return None
            case AttrRef(name=name):
                return list(state.attributes.get(name) or ())
            case Name(name=name):
                if name in state.env:
                    return state.env[name]
                return context_value(state.context, name)
            case UserField(field=name):
                if self.fields.get(name) == "set":
                    return stored_set(state.user, name)
                return stored_scalar(state.user, name)
            case Call():
                return self._call(expr, state)
            case ListLit(items=items):
                return rt.compact(self.value(item, state) for item in items)
            case Comprehension():
                return self._comprehension(expr, state)
            case Match():
                return self._match(expr, state)
            case IfExpr(condition=condition, then=then, otherwise=otherwise):
                chosen = then if rt.truthy(self.value(condition, state)) else otherwise
                return self.value(chosen, state)
            case Not(operand=operand):
                return not rt.truthy(self.value(operand, state))
            case Binary():
                return self._binary(expr, state)

    def _call(self, call: Call, state: _State) -> Value:
        signature = FUNCTIONS[call.function]
        args: list[Any] = []
        for index, arg in enumerate(call.args):
            param = signature.params[min(index, len(signature.params) - 1)]
            if param == "regex" and isinstance(arg, StrLit):
                args.append(self.pattern(arg.value))
            else:
                args.append(self.value(arg, state))
        return signature.implementation(*args)

    def _comprehension(self, expr: Comprehension, state: _State) -> Value:
        source = self.value(expr.iterable, state)
        results: list[Value] = []
        for item in source if isinstance(source, list | tuple) else ():
            state.env[expr.var] = item
            if expr.condition is None or rt.truthy(self.value(expr.condition, state)):
                results.append(self.value(expr.element, state))
        state.env.pop(expr.var, None)
        return rt.compact(results)

    def _match(self, expr: Match, state: _State) -> Value:
        subject = self.value(expr.subject, state)
        if isinstance(subject, str):
            for arm in expr.arms:
                if any(pattern.value == subject for pattern in arm.patterns):
                    return self.value(arm.result, state)
        return None if expr.otherwise is None else self.value(expr.otherwise, state)

    def _binary(self, expr: Binary, state: _State) -> Value:
        left = self.value(expr.left, state)
        if expr.op == "and":
            return rt.truthy(left) and rt.truthy(self.value(expr.right, state))
        if expr.op == "or":
            return rt.truthy(left) or rt.truthy(self.value(expr.right, state))
        if expr.op == "??":
            return self.value(expr.right, state) if rt.is_empty(left) else left
        if expr.op == "matches":
            assert isinstance(expr.right, StrLit)
            return rt.matches(left, self.pattern(expr.right.value))
        right = self.value(expr.right, state)
        match expr.op:
            case "==":
                return rt.equal(left, right)
            case "!=":
                return not rt.equal(left, right)
            case "<":
                return rt.less(left, right)
            case "<=":
                return rt.less_equal(left, right)
            case ">":
                return rt.greater(left, right)
            case ">=":
                return rt.greater_equal(left, right)
            case "in":
                return rt.contains(left, right)
            case "not in":
                return rt.not_contains(left, right)
            case _:
                return rt.plus(left, right)
