"""Compile a checked program to one Python function, built once with `compile()`.

Why: evaluation runs for every sign-in, so the tree is turned into straight-line Python
with plain locals for each field's slot, and precomputed trace entries and skip records.

Two generators: `specialise.py` (the default) uses the checker's static types to write
most operations out in Python; this module's `_Emitter` (`specialise=False`) calls the
value layer (`values.py`) for every operator and function. Both give the same plans
(the differential tests check it); the general one is the specialised one's fallback.

Safety: the generated source contains only identifiers made from this module's own
counters (`_k3`, `_v0`, ...), Python keywords, punctuation and the names of a few
methods of `str`, `dict` and `list`. Every literal — strings, numbers, compiled regexes,
messages, field and attribute names — is passed to a factory function (`_make`) as a
parameter and reaches the evaluator as a closure constant. The code runs in a namespace
whose `__builtins__` is empty, so nothing in Python is reachable from it. Comments name
the rules line each statement comes from, with names and parameter names, never a
literal's text.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

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
from rules.fastpaths import members, set_op
from rules.functions import FUNCTIONS, compile_regex
from rules.plan import Context, Plan, Scalar, SetOp, Skipped, TraceEntry
from rules.types import Type
from rules.values import context_value, stored_scalar, stored_set
from rules.vocabulary import REQUIRED_FIELDS, FieldType

Evaluator = Callable[
    [Mapping[str, Sequence[str]], Context, Mapping[str, Scalar | Sequence[str]] | None], Plan
]

UNSET: Any = type("Unset", (), {"__repr__": lambda self: "<unset>"})()

_COMPARE = {"<": "_lt", "<=": "_le", ">": "_gt", ">=": "_ge"}


def deny_plan(message: str, line: int | None, skipped: list[Skipped]) -> Plan:
    """A refusal: only the message, its line and the rules skipped so far count."""
    return Plan(denied=message, deny_line=line, skipped=skipped)


HELPERS: dict[str, object] = {
    "_UNSET": UNSET,
    "_E": rt.EMPTY,
    "_eq": rt.equal,
    "_lt": rt.less,
    "_le": rt.less_equal,
    "_gt": rt.greater,
    "_ge": rt.greater_equal,
    "_in": rt.contains,
    "_notin": rt.not_contains,
    "_matches": rt.matches,
    "_in_list": rt.text_in_list,
    "_in_text": rt.text_in_text,
    "_any_match": rt.any_matches,
    "_text_match": rt.text_matches,
    "_plus": rt.plus,
    "_coalesce": rt.coalesce,
    "_compact": rt.compact,
    "_distinct": rt.distinct,
    "_SetOp": SetOp,
    "_Plan": Plan,
    "_deny": deny_plan,
    "_stored": stored_scalar,
    "_stored_set": stored_set,
    "_ctx": context_value,
    "_sorted": sorted,
    "_setop": set_op,
    "_members": members,
    "_tuple": tuple,
    "_fromkeys": dict.fromkeys,
    "_len": len,
}


@dataclass(slots=True)
class _Slot:
    """Locals for one field: its value (or trace flag) and its deciding trace pair."""

    name: str
    kind: FieldType
    value: str
    trace: str
    stored: str | None = None  # local holding "something is stored" for `?=`


@dataclass(slots=True)
class _Emitter:
    types: Mapping[int, Type]
    fields: Mapping[str, FieldType]
    source: SourceMap
    lines: list[str] = field(default_factory=list)
    constants: list[object] = field(default_factory=list)
    shared: dict[tuple[type, str], str] = field(default_factory=dict)
    prelude: list[str] = field(default_factory=list)
    names: dict[str, str] = field(default_factory=dict)
    attributes: dict[str, str] = field(default_factory=dict)
    users: dict[str, str] = field(default_factory=dict)
    slots: dict[str, _Slot] = field(default_factory=dict)
    counter: int = 0
    order: int = 0

    def fresh(self, prefix: str) -> str:
        self.counter += 1
        return f"{prefix}{self.counter}"

    def const(self, value: object) -> str:
        """A name for a constant; text and numbers are shared (by type and spelling)."""
        key = (type(value), repr(value)) if isinstance(value, str | int | Decimal) else None
        if key is not None and key in self.shared:
            return self.shared[key]
        self.constants.append(value)
        name = f"_k{len(self.constants) - 1}"
        if key is not None:
            self.shared[key] = name
        return name

    def emit(self, depth: int, line: str) -> None:
        self.lines.append("    " * depth + line)

    def line_of(self, node: Stmt) -> int:
        return self.source.position(node.span.start).line

    # ----------------------------------------------------------- expressions

    def expr(self, node: Expr) -> str:
        match node:
            case StrLit(value=value):
                return self.const(value)
            case NumLit(value=value, text=spelling):
                return self.const(rt.number_literal(value, spelling))
            case BoolLit(value=value):
                return "True" if value else "False"
            case NullLit():
                return "None"
            case AttrRef(name=name):
                if name not in self.attributes:
                    local = self.fresh("_a")
                    self.attributes[name] = local
                    self.prelude.append(f"{local} = _ag({self.const(name)}) or _E")
                return self.attributes[name]
            case Name(name=name):
                if name not in self.names:  # a context name (variables are bound first)
                    local = self.fresh("_x")
                    self.names[name] = local
                    self.prelude.append(f"{local} = _ctx(C, {self.const(name)})")
                return self.names[name]
            case UserField(field=name):
                if name not in self.users:
                    local = self.fresh("_u")
                    self.users[name] = local
                    reader = "_stored_set" if self.fields.get(name) == "set" else "_stored"
                    self.prelude.append(f"{local} = {reader}(U, {self.const(name)})")
                return self.users[name]
            case Call():
                return self._call(node)
            case ListLit(items=items):
                if all(isinstance(i, StrLit) and i.value for i in items):
                    return self.const(tuple(i.value for i in items if isinstance(i, StrLit)))
                return f"_compact(({''.join(self.expr(i) + ', ' for i in items)}))"
            case Comprehension(element=element, var=var, iterable=iterable, condition=cond):
                source = self.expr(iterable)
                local = self.fresh("_c")
                self.names[var] = local
                test = "" if cond is None else f" if {self.expr(cond)}"
                item = self.fresh("_i")  # one-item loop: drop null and "" without a call
                return (
                    f"[{item} for {local} in ({source} or _E){test} "
                    f"for {item} in ({self.expr(element)},) if {item}]"
                )
            case Match():
                return self._match(node)
            case IfExpr(condition=condition, then=then, otherwise=otherwise):
                return f"({self.expr(then)} if {self.expr(condition)} else {self.expr(otherwise)})"
            case Not(operand=operand):
                return f"(not {self.expr(operand)})"
            case Binary():
                return self._binary(node)

    def _call(self, call: Call) -> str:
        signature = FUNCTIONS[call.function]
        args: list[str] = []
        for index, arg in enumerate(call.args):
            param = signature.params[min(index, len(signature.params) - 1)]
            if param == "regex" and isinstance(arg, StrLit):
                args.append(self.const(compile_regex(arg.value)))
            else:
                args.append(self.expr(arg))
        first_type = self.types.get(id(call.args[0])) if call.args else None
        if signature.scalar is not None and first_type == "text" and isinstance(call.args[0], Name):
            # Statically text and a plain local: skip the lifting wrapper's type test.
            body = self.const(signature.scalar)
            return f"({body}({', '.join(args)}) if {args[0]} is not None else None)"
        return f"{self.const(signature.implementation)}({', '.join(args)})"

    def _match(self, node: Match) -> str:
        subject = self.expr(node.subject)
        results = [arm.result for arm in node.arms]
        otherwise: Expr = node.otherwise if node.otherwise is not None else NullLit()
        if all(isinstance(r, StrLit | NumLit | BoolLit | NullLit) for r in [*results, otherwise]):
            table: dict[str, object] = {}
            for arm in node.arms:
                value = self._literal(arm.result)
                for pattern in arm.patterns:
                    table.setdefault(pattern.value, value)
            default = self._literal(otherwise)
            return f"{self.const(table)}.get({subject}, {self.const(default)})"
        local = self.fresh("_m")
        branches: list[str] = []
        for arm in node.arms:
            patterns = self.const(frozenset(p.value for p in arm.patterns))
            branches.append(f"{self.expr(arm.result)} if {local} in {patterns} else ")
        # Bind the subject through a one-item comprehension: legal in every position.
        body = "".join(branches) + self.expr(otherwise)
        return f"[({body}) for {local} in ({subject},)][0]"

    @staticmethod
    def _literal(node: Expr) -> object:
        match node:
            case StrLit(value=value):
                return value
            case NumLit(value=value, text=spelling):
                return rt.number_literal(value, spelling)
            case BoolLit(value=value):
                return value
            case _:
                return None

    def _binary(self, node: Binary) -> str:
        left, right = self.expr(node.left), self.expr(node.right)
        left_type = self.types.get(id(node.left), "unknown")
        right_type = self.types.get(id(node.right), "unknown")
        match node.op:
            case "??":
                if left_type in ("text", "list", "null"):  # empty exactly when falsy
                    return f"({left} or {right})"
                return f"_coalesce({left}, {right})"
            case "or":
                return f"(True if ({left} or {right}) else False)"
            case "and":
                return f"(True if ({left} and {right}) else False)"
            case "==" | "!=":
                negate = "not " if node.op == "!=" else ""
                if isinstance(node.right, NullLit):
                    return f"({left} is {negate}None)"
                if left_type == right_type and left_type in ("text", "number"):
                    return f"({left} {node.op} {right})"
                return f"({negate}_eq({left}, {right}))"
            case "<" | "<=" | ">" | ">=":
                return f"{_COMPARE[node.op]}({left}, {right})"
            case "in":
                if left_type == "text" and right_type in ("list", "text"):
                    return f"_in_{right_type}({left}, {right})"
                return f"_in({left}, {right})"
            case "not in":
                return f"_notin({left}, {right})"
            case "matches":
                assert isinstance(node.right, StrLit)
                search = self.const(compile_regex(node.right.value).search)
                if left_type == "list":
                    return f"_any_match({left}, {search})"
                if left_type == "text" and isinstance(node.left, Name):  # a plain local
                    return f"({left} is not None and {search}({left}))"
                if left_type == "text":
                    return f"_text_match({left}, {search})"
                return f"_matches({left}, {self.const(compile_regex(node.right.value))})"
            case "+":
                return f"_plus({left}, {right})"

    # ------------------------------------------------------------ statements

    def slot(self, name: str) -> _Slot:
        slot = self.slots.get(name)
        if slot is None:
            slot = _Slot(name, self.fields[name], self.fresh("_s"), self.fresh("_t"))
            self.slots[name] = slot
        return slot

    def stored_flag(self, slot: _Slot) -> str:
        if slot.stored is None:
            slot.stored = self.fresh("_h")
            reader = "_stored_set" if slot.kind == "set" else "_stored"
            self.prelude.append(
                f"{slot.stored} = {reader}(U, {self.const(slot.name)}) not in (None, [])"
            )
        return slot.stored

    def statements(self, body: Sequence[Stmt], depth: int, rule: str | None) -> None:
        if not body:
            self.emit(depth, "pass")
        for statement in body:
            self.statement(statement, depth, rule)

    def statement(self, node: Stmt, depth: int, rule: str | None) -> None:
        self.order += 1
        line = self.line_of(node)
        match node:
            case Let(name=name, value=value):
                code = self.expr(value)
                local = self.fresh("_v")
                self.names[name] = local
                self.emit(depth, f"{local} = {code}")
            case Deny(message=message, condition=condition):
                result = f"return _deny({self.const(message)}, {self.const(line)}, _skip)"
                if condition is None:
                    self.emit(depth, result)
                else:
                    self.emit(depth, f"if {self.expr(condition)}:")
                    self.emit(depth + 1, result)
            case Rule():
                self._rule(node, depth, line)
            case Clear(field=name):
                self._write(self.slot(name), "clear", None, depth, line, rule)
            case AssignStmt(field=name, op=op, value=value):
                self._write(self.slot(name), op, value, depth, line, rule)

    def _rule(self, node: Rule, depth: int, line: int) -> None:
        inner = depth
        if node.phase is not None:
            test = "U is None" if node.phase == "create" else "U is not None"
            reason = (
                "on create: the account already exists"
                if node.phase == "create"
                else "on update: the account does not exist yet"
            )
            self.emit(depth, f"if not ({test}):")
            skipped = self.const(Skipped(node.name, line, reason))
            self.emit(depth + 1, f"_skip.append({skipped})")
            self.emit(depth, "else:")
            inner += 1
        if node.condition is not None:
            skipped = self.const(Skipped(node.name, line, "when condition was false"))
            self.emit(inner, f"if not ({self.expr(node.condition)}):")
            self.emit(inner + 1, f"_skip.append({skipped})")
            self.emit(inner, "else:")
            inner += 1
        self.statements(node.body, inner, node.name)

    def _write(
        self, slot: _Slot, op: str, value: Expr | None, depth: int, line: int, rule: str | None
    ) -> None:
        pair = self.const((self.order, TraceEntry(slot.name, line, rule, op)))
        if slot.kind == "set":
            self._set_write(slot, op, value, depth, line, rule, pair)
            return
        code = "None" if value is None else self.expr(value)
        # Text fields take "" as no value; numbers and bools only null.
        present = "{0}" if slot.kind == "text" else "{0} is not None"
        if op == "?=":
            self.emit(depth, f"if {slot.value} is _UNSET and not {self.stored_flag(slot)}:")
            depth += 1
        if op in ("=", "?="):
            local = self.fresh("_w")
            self.emit(depth, f"{local} = {code}")
            self.emit(depth, f"if {present.format(local)}:")
            self.emit(depth + 1, f"{slot.value} = {local}")
            self.emit(depth + 1, f"{slot.trace} = {pair}")
            return
        value_code = f"({code} or None)" if slot.kind == "text" else code
        self.emit(depth, f"{slot.value} = {value_code}")
        self.emit(depth, f"{slot.trace} = {pair}")
        if slot.name in REQUIRED_FIELDS:
            message = self.const(f"{slot.name} cannot be emptied")
            self.emit(depth, f"if {slot.value} is None:")
            self.emit(depth + 1, f"return _deny({message}, {self.const(line)}, _skip)")

    def _set_write(
        self,
        slot: _Slot,
        op: str,
        value: Expr | None,
        depth: int,
        line: int,
        rule: str | None,
        pair: str,
    ) -> None:
        kinds = {"=": "replace", ":=": "replace", "?=": "replace", "+=": "add", "-=": "remove"}
        name, line_c, rule_c = self.const(slot.name), self.const(line), self.const(rule)

        def record(depth: int, kind: str, values: str) -> None:
            op_code = f"_SetOp({name}, {self.const(kind)}, {values}, {line_c}, {rule_c})"
            self.emit(depth, f"_oa({op_code})")
            self.emit(depth, f"_ta({pair})")
            self.emit(depth, f"{slot.value} = True")

        if value is None:
            record(depth, "clear", "_E")
            return
        if op == "?=":
            self.emit(depth, f"if not {slot.value} and not {self.stored_flag(slot)}:")
            depth += 1
        local = self.fresh("_w")
        self.emit(depth, f"{local} = {self.expr(value)}")
        if self.types.get(id(value)) == "list":
            self.emit(depth, f"{local} = None if {local} is None else _distinct({local})")
        else:
            self.emit(depth, f"{local} = ({local},) if {local} else None")
        test = f"{local}" if op in ("+=", "-=") else f"{local} is not None"
        self.emit(depth, f"if {test}:")
        record(depth + 1, kinds[op], local)
        if op == ":=":
            self.emit(depth, "else:")
            record(depth + 1, "clear", "_E")

    # ------------------------------------------------------------------ whole

    def program(self, program: Program) -> str:
        self.statements(program.statements, 2, None)  # depth 2; the final layout strips one
        body, self.lines = self.lines, []
        for required in REQUIRED_FIELDS:
            if required in self.fields:
                self.slot(required)  # read by the final check even when never assigned
        for slot in self.slots.values():
            initial = "False" if slot.kind == "set" else "_UNSET"
            self.emit(2, f"{slot.value} = {initial}")
            self.emit(2, f"{slot.trace} = None")
        init = self.lines
        self.lines = []
        for required in REQUIRED_FIELDS:
            if required in self.fields:
                value = self.slot(required).value
                message = self.const(f"no rule produced a value for {required}")
                self.emit(2, f"if U is None and ({value} is _UNSET or {value} is None):")
                self.emit(3, f"return _deny({message}, None, _skip)")
        scalars = [s for s in self.slots.values() if s.kind != "set"]
        self.emit(2, "_fields = {}")
        for slot in scalars:
            self.emit(2, f"if {slot.value} is not _UNSET:")
            self.emit(3, f"_fields[{self.const(slot.name)}] = {slot.value}")
            self.emit(3, f"_tr.append({slot.trace})")
        self.emit(2, "_tr.sort()")
        self.emit(2, "return _Plan(None, None, _fields, _ops, [p[1] for p in _tr], _skip)")
        tail = self.lines
        head = [
            "def _evaluate(A, C, U):",
            "    _ag = A.get",
            "    _ops = []",
            "    _oa = _ops.append",
            "    _tr = []",
            "    _ta = _tr.append",
            "    _skip = []",
        ]
        lines = [
            line[4:] for line in [*init, *("        " + p for p in self.prelude), *body, *tail]
        ]
        return "\n".join([*head, *lines, ""])


def generate(
    program: Program,
    types: Mapping[int, Type],
    fields: Mapping[str, FieldType],
    source: SourceMap,
    *,
    specialise: bool = True,
) -> tuple[str, list[object]]:
    """The generated Python source and its constants (for inspection and tests): a
    factory `_make(_k0, _k1, ...)` that returns the evaluator `_evaluate(A, C, U)`."""
    if specialise:
        from rules.specialise import SpecialisingEmitter

        emitter: _Emitter = SpecialisingEmitter(types, fields, source)
        return emitter.program(program), emitter.constants
    from rules.specialise import factory

    emitter = _Emitter(types, fields, source)
    code = emitter.program(program)
    return factory(code.splitlines(), emitter.constants, {}), emitter.constants


def compile_source(
    program: Program,
    types: Mapping[int, Type],
    fields: Mapping[str, FieldType],
    source: SourceMap,
    *,
    specialise: bool = True,
) -> tuple[Evaluator, str]:
    """Compile a checked program: the evaluator, and the Python source it was built from."""
    code, constants = generate(program, types, fields, source, specialise=specialise)
    # The namespace holds only our helpers; the constants are the factory's arguments.
    namespace: dict[str, Any] = {"__builtins__": {}, **HELPERS}
    exec(compile(code, "<rules>", "exec"), namespace)  # generated from the AST only
    evaluator: Evaluator = namespace["_make"](*constants)
    return evaluator, code


def compile_program(
    program: Program,
    types: Mapping[int, Type],
    fields: Mapping[str, FieldType],
    source: SourceMap,
    *,
    specialise: bool = True,
) -> Evaluator:
    """Compile a checked program into an evaluator function."""
    return compile_source(program, types, fields, source, specialise=specialise)[0]
