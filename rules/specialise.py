"""The specialising code generator: straight-line Python from the checker's static types.

`compile.py`'s general emitter gives every operator and function the meaning of the
value layer (`values.py`) by calling it. This one subclasses it. Where the static types
prove what a value is, it writes the operation out in Python instead: `@email` is a
local bound once from `A.get`, `first(@email)` is a subscript, `lower(x)` is
`x.lower()`, `x ?? y` is `x or y`, `x == "a"` is `==`, a pattern that is plain text is
`in` / `startswith` (`literal_regex.py`), `match` is a chain of tests or a dict lookup.
Everything it does not specialise takes the general emitter's code, so every checked
program compiles, with the same plans. The differential tests compare the two.

What it knows about each value (`Code`):
- `exact`: the value is of its static type or null. `user.FIELD` is not exact (a
  store may hand back any scalar), so operations on it keep the general helpers,
  which test types.
- `nonnull`: never null (literals, `@attr`, lists built by the language, `x ?? "a"`,
  a `let` after `deny ... when x == null`). No null test is written for it.
- `atom`: a local or constant that may be repeated. Anything else is bound once with
  `:=` where it is used twice (or computed into a local before the statement when it
  is the list of a comprehension, where Python forbids `:=`).

The plan is built as it goes: a field's value goes into the plan's dict when it is
written, its trace entry (a precomputed constant) onto the trace list, set operations
with constant members are constants too. Statements run in file order, so the trace
comes out in file order with no sort. Only a field written by several statements needs
more: the trace entry of the write it replaces is removed, and when its first write did
not happen, the dict is put back into the plan's field order at the end.

Safety is `compile.py`'s: the source holds only names made from counters, keywords,
punctuation and method names of `str`, `dict` and `list`; every literal is a parameter
of the factory `_make`. The comments before each statement (`# line 12: username =
email_local(mail)`) name the rules line. They show names made of letters, digits and
`_` (`let` names, fields, functions), operators and parameter names, never a literal.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Any, NoReturn

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
from rules.compile import _Emitter
from rules.fastpaths import dn_value_of, members
from rules.functions import FUNCTIONS, compile_regex
from rules.literal_regex import (
    LiteralPattern,
    list_matcher,
    literal_pattern,
    prefix_extractor,
    text_matcher,
)
from rules.plan import SetOp, Skipped, TraceEntry
from rules.types import Type
from rules.values import Regex
from rules.vocabulary import CONTEXT_NAMES, REQUIRED_FIELDS, FieldType

__all__ = ["SpecialisingEmitter"]

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_DESCRIBE_LIMIT = 110
_SET_KINDS = {"=": "replace", ":=": "replace", "?=": "replace", "+=": "add", "-=": "remove"}
_CASE = {"lower": "lower", "upper": "upper", "trim": "strip"}
_ORDER = ("<", "<=", ">", ">=")
_COMPARE_HELPERS = {"<": "_lt", "<=": "_le", ">": "_gt", ">=": "_ge"}
_FUNCTION_NAMES: dict[int, str] = {}
for _signature in FUNCTIONS.values():
    _FUNCTION_NAMES[id(_signature.implementation)] = _signature.name
    if _signature.scalar is not None:
        _FUNCTION_NAMES[id(_signature.scalar)] = _signature.name


@dataclass(frozen=True, slots=True)
class Code:
    """A Python expression (always a primary: a name, call, subscript, display or a
    parenthesised expression) and what is known of its value."""

    src: str
    type: Type
    nonnull: bool = False
    exact: bool = True
    atom: bool = False
    nonempty: bool = False  # text or list never "" or empty (implies nonnull)
    compact: bool = False  # a list of non-empty text only


@dataclass(frozen=True, slots=True)
class _Bound:
    """A value to use twice: `first` evaluates (and binds) it, `use` reads it after."""

    first: str
    use: str


class _General(Exception):
    """Internal: this node takes the general emitter's code."""


def _general() -> NoReturn:
    raise _General


def _subexpressions(node: Expr) -> Iterator[Expr]:
    """Every expression in `node`, itself included (iteratively: trees may be deep)."""
    stack: list[Expr] = [node]
    while stack:
        current = stack.pop()
        yield current
        match current:
            case Call(args=args):
                stack.extend(args)
            case ListLit(items=items):
                stack.extend(items)
            case Comprehension(element=element, iterable=iterable, condition=condition):
                stack.extend([element, iterable])
                if condition is not None:
                    stack.append(condition)
            case Match(subject=subject, arms=arms, otherwise=otherwise):
                stack.append(subject)
                stack.extend(arm.result for arm in arms)
                if otherwise is not None:
                    stack.append(otherwise)
            case IfExpr(condition=condition, then=then, otherwise=otherwise):
                stack.extend([condition, then, otherwise])
            case Binary(left=left, right=right):
                stack.extend([left, right])
            case Not(operand=operand):
                stack.append(operand)
            case _:
                pass


def _statement_expressions(node: Stmt) -> Iterator[Expr]:
    match node:
        case Let(value=value) | AssignStmt(value=value):
            yield value
        case Deny(condition=condition) if condition is not None:
            yield condition
        case Rule(condition=condition, body=body):
            if condition is not None:
                yield condition
            for inner in body:
                yield from _statement_expressions(inner)
        case _:
            pass


def _flat(statements: Sequence[Stmt]) -> Iterator[Stmt]:
    for statement in statements:
        yield statement
        if isinstance(statement, Rule):
            yield from _flat(statement.body)


def _has_write(node: Stmt) -> bool:
    return any(isinstance(s, AssignStmt | Clear) for s in _flat([node]))


def _nonnull_after_deny(condition: Expr) -> set[str]:
    """Names a `deny ... when condition` proves non-null for the code after it."""
    match condition:
        case Binary(op="==", left=Name(name=name), right=NullLit()):
            return {name}
        case Binary(op="==", left=NullLit(), right=Name(name=name)):
            return {name}
        case Binary(op="or", left=left, right=right):
            return _nonnull_after_deny(left) | _nonnull_after_deny(right)
        case _:
            return set()


@dataclass(slots=True)
class SpecialisingEmitter(_Emitter):
    """Generates the specialised evaluator; `program()` gives the factory's source."""

    labels: dict[str, str] = field(default_factory=dict)
    codes: dict[str, Code] = field(default_factory=dict)  # let and comprehension names
    pending: list[str] = field(default_factory=list)  # bindings for the current statement
    pre: list[str] | None = None  # locals to compute before the current statement
    walrus: bool = True  # `:=` allowed where the code goes
    uses: Counter[tuple[str, str]] = field(default_factory=Counter)
    writers: dict[str, list[int]] = field(default_factory=dict)  # field -> id(statement)
    trace_locals: dict[str, str] = field(default_factory=dict)
    set_flags: dict[str, str] = field(default_factory=dict)
    reordering: set[int] = field(default_factory=set)  # writes that may break the order
    regexes: dict[str, str] = field(default_factory=dict)
    searches: dict[str, str] = field(default_factory=dict)
    patterns: dict[str, Regex] = field(default_factory=dict)
    started: bool = False  # `_f`, `_ops`, `_tr` exist from here on

    # ------------------------------------------------------------- constants

    def const(self, value: object, label: str | None = None) -> str:
        name = _Emitter.const(self, value)
        if name not in self.labels:
            self.labels[name] = label if label is not None else _label(value)
        return name

    def regex(self, pattern: str) -> str:
        """The compiled pattern's constant (compiled once per pattern)."""
        if pattern not in self.regexes:
            self.patterns[pattern] = compile_regex(pattern)
            self.regexes[pattern] = self.const(self.patterns[pattern], "regex")
        return self.regexes[pattern]

    def search(self, pattern: str) -> str:
        """The constant holding the compiled pattern's `search` (a bound method)."""
        self.regex(pattern)
        if pattern not in self.searches:
            self.searches[pattern] = self.const(self.patterns[pattern].search, "regex search")
        return self.searches[pattern]

    def type_of(self, node: Expr) -> Type:
        return self.types.get(id(node), "unknown")

    # --------------------------------------------------------------- binding

    def bind(self, code: Code) -> _Bound:
        """Use `code` twice: as is when an atom, else through `:=` (or the general code
        when `:=` is not allowed here)."""
        if code.atom:
            return _Bound(code.src, code.src)
        if not self.walrus:
            _general()
        local = self.fresh("_t")
        return _Bound(f"({local} := {code.src})", local)

    def iterable(self, code: Code) -> str:
        """Code for the list of a comprehension (no `:=` may be in it)."""
        src = code.src if code.nonnull else f"({code.src} or _E)"
        if ":=" not in src:
            return src
        if self.pre is None:
            _general()
        local = self.fresh("_l")
        self.pre.append(f"{local} = {src}")
        return local

    def flush(self, depth: int) -> None:
        for line in self.pre or ():
            self.emit(depth, line)
        self.pre = None

    # ----------------------------------------------------------- expressions

    def expr(self, node: Expr) -> str:
        """The general emitter's interface: the code of an expression."""
        return self.sx(node).src

    def sx(self, node: Expr) -> Code:
        kind = self.type_of(node)
        match node:
            case StrLit(value=value):
                return Code(self.const(value), "text", True, atom=True, nonempty=value != "")
            case NumLit(value=value, text=spelling):
                number = rt.number_literal(value, spelling)
                return Code(self.const(number), "number", True, atom=True)
            case BoolLit(value=value):
                return Code("True" if value else "False", "bool", True, atom=True)
            case NullLit():
                return Code("None", "null", atom=True)
            case AttrRef(name=name):
                return self._attribute(name)
            case Name(name=name):
                return self._name(name)
            case UserField(field=name):
                return self._user(name)
            case Comprehension():
                return self._comprehension(node)
            case Match():
                return self._switch(node)
            case ListLit():
                return self._list(node)
            case IfExpr(condition=condition, then=then, otherwise=otherwise):
                test = self.cond(condition)
                yes, no = (
                    self._later(lambda: self.sx(then)),
                    self._later(lambda: self.sx(otherwise)),
                )
                return Code(
                    f"({yes.src} if {test} else {no.src})",
                    kind,
                    yes.nonnull and no.nonnull,
                    yes.exact and no.exact,
                    nonempty=yes.nonempty and no.nonempty,
                    compact=yes.compact and no.compact,
                )
            case Not(operand=operand):
                return Code(f"(not {self.cond(operand)})", "bool", True)
            case Call():
                return self._function(node, kind)
            case Binary():
                return self._operator(node, kind)

    def _attribute(self, name: str) -> Code:
        local = self.attributes.get(name)
        if local is None:
            local = self.fresh("_a")
            self.attributes[name] = local
            key = self.const(name, "attribute name")
            self.pending.append(f"{local} = _ag({key}) or _E")
        return Code(local, "list", True, atom=True)

    def _name(self, name: str) -> Code:
        code = self.codes.get(name)
        if code is not None:
            return code
        # A context name: text, non-empty when present.
        call = f"_ctx(C, {self.const(name, 'context name')})"
        if self.uses[("context", name)] < 2:
            return Code(call, "text")
        local = self.names.get(name)
        if local is None:
            local = self.fresh("_x")
            self.names[name] = local
            self.pending.append(f"{local} = {call}")
        return Code(local, "text", atom=True)

    def _user(self, name: str) -> Code:
        """`user.FIELD`: a set field reads as a list of distinct text (exact); any other
        as whatever scalar the store holds (not exact)."""
        is_set = self.fields.get(name) == "set"
        reader = "_stored_set" if is_set else "_stored"
        call = f"{reader}(U, {self.const(name, 'field name')})"
        kind: Type = (
            "list" if is_set else _FIELD_VALUE.get(self.fields.get(name, "text"), "unknown")
        )
        if self.uses[("user", name)] < 2:
            return Code(call, kind, exact=is_set, compact=is_set)
        local = self.users.get(name)
        if local is None:
            local = self.fresh("_u")
            self.users[name] = local
            self.pending.append(f"{local} = {call}")
        return Code(local, kind, exact=is_set, atom=True, compact=is_set)

    def _list(self, node: ListLit) -> Code:
        items = node.items
        if all(isinstance(i, StrLit) and i.value for i in items):
            texts = tuple(i.value for i in items if isinstance(i, StrLit))
            nonempty = bool(texts)
            return Code(self.const(texts), "list", True, atom=True, nonempty=nonempty, compact=True)
        codes = [self.sx(item) for item in items]
        inner = "".join(c.src + ", " for c in codes)
        if any(":=" in c.src or not c.exact or c.type not in ("text", "null") for c in codes):
            return Code(f"_compact(({inner}))", "list", True, compact=True)
        local = self.fresh("_x")
        return Code(f"[{local} for {local} in ({inner}) if {local}]", "list", True, compact=True)

    def _comprehension(self, node: Comprehension) -> Code:
        saved_walrus = self.walrus
        if self.pre is None:
            self.walrus = False  # the list cannot be computed before the statement
        try:
            source = self.iterable(self.sx(node.iterable))
        finally:
            self.walrus = saved_walrus
        local = self.fresh("_c")
        self.codes[node.var] = Code(local, "text", True, atom=True)
        condition = node.condition
        test = "" if condition is None else f" if {self._later(lambda: self.cond(condition))}"
        element = self._later(lambda: self.sx(node.element))
        head = f"for {local} in {source}{test}"
        if not element.exact or element.type not in ("text", "null"):
            return Code(f"_compact([{element.src} {head}])", "list", True, compact=True)
        if element.src == local:
            return Code(f"[{local} {head} if {local}]", "list", True, compact=True)
        if element.nonempty:
            return Code(f"[{element.src} {head}]", "list", True, compact=True)
        item = self.fresh("_i")
        if self.walrus:
            return Code(f"[{item} {head} if ({item} := {element.src})]", "list", True, compact=True)
        # No `:=` here: a one-item loop binds the element.
        tail = f"for {item} in ({element.src},) if {item}"
        return Code(f"[{item} {head} {tail}]", "list", True, compact=True)

    def _switch(self, node: Match) -> Code:
        kind = self.type_of(node)
        subject = self.sx(node.subject)
        otherwise: Expr = node.otherwise if node.otherwise is not None else NullLit()
        results = [arm.result for arm in node.arms]
        if all(isinstance(r, StrLit | NumLit | BoolLit | NullLit) for r in [*results, otherwise]):
            table: dict[str, object] = {}
            for arm in node.arms:
                value = self._literal(arm.result)
                for pattern in arm.patterns:
                    table.setdefault(pattern.value, value)
            default = self._literal(otherwise)
            values = [*table.values(), default]
            return Code(
                f"{self.const(table, 'match table')}.get({subject.src}, {self.const(default)})",
                kind,
                all(v is not None for v in values),
                nonempty=all(v is not None and v != "" for v in values),
            )
        branches: list[Code] = []
        for result in results:
            branches.append(self._later(lambda result=result: self.sx(result)))
        fallback = self._later(lambda: self.sx(otherwise))
        every = [*branches, fallback]
        nonnull = all(c.nonnull for c in every)
        exact = all(c.exact for c in every)
        nonempty = all(c.nonempty for c in every)
        compact = all(c.compact for c in every)
        if not node.arms:
            return Code(
                f"({subject.src}, {fallback.src})[1]",
                kind,
                nonnull,
                exact,
                False,
                nonempty,
                compact,
            )
        if subject.atom or self.walrus:
            chain = self._chain(node, branches, fallback, self.bind(subject))
            return Code(f"({chain})", kind, nonnull, exact, False, nonempty, compact)
        # No `:=` here: a one-item loop binds the subject.
        local = self.fresh("_m")
        chain = self._chain(node, branches, fallback, _Bound(local, local))
        src = f"[{chain} for {local} in ({subject.src},)][0]"
        return Code(src, kind, nonnull, exact, False, nonempty, compact)

    def _chain(self, node: Match, branches: list[Code], fallback: Code, bound: _Bound) -> str:
        parts: list[str] = []
        for index, (arm, result) in enumerate(zip(node.arms, branches, strict=True)):
            subject = bound.first if index == 0 else bound.use
            if len(arm.patterns) == 1:
                test = f"{subject} == {self.const(arm.patterns[0].value)}"
            else:
                patterns = frozenset(p.value for p in arm.patterns)
                test = f"{subject} in {self.const(patterns, 'match patterns')}"
            parts.append(f"{result.src} if {test} else ")
        return "".join(parts) + fallback.src

    def _later(self, compile_: Any) -> Any:
        """Code evaluated only sometimes (a branch, the right of `and`, a comprehension's
        element): nothing of it is computed before the statement."""
        saved, self.pre = self.pre, None
        try:
            return compile_()
        finally:
            self.pre = saved

    # ------------------------------------------------------------- functions

    def _function(self, node: Call, kind: Type) -> Code:
        """A call: its arguments compiled once, then a specialised form or the general
        implementation (`FUNCTIONS`, which tests every argument's type)."""
        signature = FUNCTIONS[node.function]
        codes: list[Code] = []
        for index, arg in enumerate(node.args):
            param = signature.params[min(index, len(signature.params) - 1)]
            if param == "regex" and isinstance(arg, StrLit):
                codes.append(Code(self.regex(arg.value), "text", True, atom=True))
            else:
                codes.append(self.sx(arg))
        try:
            return self._special_call(node, kind, codes)
        except _General:
            pass
        implementation = self.const(signature.implementation)
        src = f"{implementation}({', '.join(c.src for c in codes)})"
        exact = kind in ("text", "list", "number", "bool")
        if node.function == "coalesce":
            exact &= all(c.exact for c in codes)
        nonnull = node.function == "count"
        return Code(src, kind, nonnull, exact)

    def _special_call(self, node: Call, kind: Type, codes: list[Code]) -> Code:
        name, args = node.function, node.args
        signature = FUNCTIONS[name]
        if name in ("first", "last"):
            if codes[0].type != "list":
                _general()
            bound = self.bind(codes[0])
            index = "0" if name == "first" else "-1"
            return Code(f"({bound.use}[{index}] if {bound.first} else None)", "text")
        if name == "count":
            values = codes[0]
            if values.type != "list":
                _general()
            src = values.src if values.nonnull else f"({values.src} or _E)"
            return Code(f"_len({src})", "number", True)
        if name == "coalesce":
            if kind in ("text", "list") and all(
                c.exact and c.type in (kind, "null") for c in codes
            ):
                return Code(f"({' or '.join(c.src for c in codes)} or None)", kind)
            _general()
        if name == "join":
            return self._join(codes[0], codes[1])
        if name in ("starts_with", "ends_with"):
            text, affix = self._text(codes[0]), self._text(codes[1])
            method = "startswith" if name == "starts_with" else "endswith"
            return self._guarded([text, affix], lambda t, a: f"{t}.{method}({a})", "bool")
        if signature.scalar is None:
            _general()
        if codes[0].type == "list" and name in _CASE:
            return self._lifted_case(codes[0], _CASE[name])
        text = self._text(codes[0])
        if name in _CASE:
            method = _CASE[name]
            return self._guarded([text], lambda t: f"{t}.{method}()", "text")
        if name in ("email_local", "email_domain"):
            if not self.walrus:
                _general()
            at = self.const("@")
            index = self.fresh("_n")
            part = f"[:{index}]" if name == "email_local" else f"[{index} + 1:]"

            def split(first: str, use: str) -> str:
                return f"({use}{part} if ({index} := {first}.rfind({at})) >= 0 else None)"

            return self._guarded_twice(text, split)
        if name == "regex_extract" and isinstance(args[1], StrLit) and _group_one(args):
            regex = self.patterns[args[1].value]
            scalar = signature.scalar

            def on_re2(text: str) -> str | None:
                found = scalar(text, regex)
                return found if isinstance(found, str) else None

            fast = prefix_extractor(args[1].value, on_re2)
            if fast is not None:
                body = self.const(fast, "function regex_extract")
                return self._guarded([text], lambda t: f"{body}({t})", "text", total=False)
        if name == "dn_value" and isinstance(args[1], StrLit):
            body = self.const(dn_value_of(args[1].value), "function dn_value")
            return self._guarded([text], lambda t: f"{body}({t})", "text", total=False)
        body = self.const(signature.scalar)
        tail = "".join(", " + c.src for c in codes[1:])
        return self._guarded([text], lambda t: f"{body}({t}{tail})", "text", name == "ascii")

    @staticmethod
    def _text(code: Code) -> Code:
        """An operand that must be exact text (else the general code)."""
        if code.type != "text" or not code.exact:
            _general()
        return code

    def _guarded(self, operands: list[Code], body: Any, kind: Type, total: bool = True) -> Code:
        """`body(operands)`, or null when an operand is null (each tested once); `total`:
        the body itself never gives null."""
        if all(c.nonnull for c in operands):
            return Code(body(*(c.src for c in operands)), kind, total)
        bound = [_Bound(c.src, c.src) if c.nonnull else self.bind(c) for c in operands]
        tests = [
            f"{b.first} is not None" for b, c in zip(bound, operands, strict=True) if not c.nonnull
        ]
        return Code(f"({body(*(b.use for b in bound))} if {' and '.join(tests)} else None)", kind)

    def _guarded_twice(self, text: Code, body: Any) -> Code:
        """`body(first, use)` for a text used twice; null when it is null."""
        bound = self.bind(text)
        if text.nonnull:
            return Code(body(bound.first, bound.use), "text")
        return Code(
            f"({body(bound.use, bound.use)} if {bound.first} is not None else None)", "text"
        )

    def _lifted_case(self, values: Code, method: str) -> Code:
        """`lower(list)` and friends: each value, "" results dropped (§6)."""
        local = self.fresh("_c")

        def comprehension(source: str) -> str:
            if method == "strip":
                if not self.walrus:
                    _general()
                item = self.fresh("_i")
                return f"[{item} for {local} in {source} if ({item} := {local}.strip())]"
            # lower and upper keep "" as "" and anything else non-empty.
            return f"[{local}.{method}() for {local} in {source} if {local}]"

        if values.nonnull:
            return Code(comprehension(self.iterable(values)), "list", True, compact=True)
        bound = self.bind(values)
        src = f"(None if {bound.first} is None else {comprehension(bound.use)})"
        return Code(src, "list", compact=True)

    def _join(self, values: Code, separator: Code) -> Code:
        if not (separator.nonnull and separator.exact and separator.type == "text"):
            _general()
        if values.type != "list" or not self.walrus:
            _general()
        if values.compact:
            bound = self.bind(values)
            return Code(f"({separator.src}.join({bound.use}) if {bound.first} else None)", "text")
        kept, local = self.fresh("_j"), self.fresh("_x")
        listing = f"[{local} for {local} in {self.iterable(values)} if {local}]"
        return Code(f"({separator.src}.join({kept}) if ({kept} := {listing}) else None)", "text")

    # ------------------------------------------------------------- operators

    def _operator(self, node: Binary, kind: Type) -> Code:
        """An operator: operands compiled once, then a specialised form or the general
        helper (`values.py`, which tests every operand's type)."""
        op = node.op
        if op in ("and", "or"):
            first = self.cond(node.left)
            second = self._later(lambda: self.cond(node.right))
            return Code(f"(True if ({first} {op} {second}) else False)", "bool", True)
        if op == "matches":
            return self._matches(node)
        left = self.sx(node.left)
        if op == "??":
            right = self._later(lambda: self.sx(node.right))
        else:
            right = self.sx(node.right)
        try:
            return self._special_operator(op, left, right, kind)
        except _General:
            pass
        if op == "??":
            exact = left.exact and right.exact and kind in ("text", "list", "number", "bool")
            return Code(f"_coalesce({left.src}, {right.src})", kind, exact=exact)
        if op == "+":
            return Code(f"_plus({left.src}, {right.src})", kind)
        negate = "not " if op in ("!=", "not in") else ""
        helper = {"==": "_eq", "!=": "_eq", "in": "_in", "not in": "_notin"}.get(op)
        if helper is None:
            helper = _COMPARE_HELPERS[op]
        if op == "not in":
            negate = ""
        return Code(f"({negate}{helper}({left.src}, {right.src}))", "bool", True)

    def _special_operator(self, op: str, left: Code, right: Code, kind: Type) -> Code:
        if op == "??":
            return self._coalesce(left, right, kind)
        if op in ("==", "!="):
            negate = "not " if op == "!=" else ""
            if right.src == "None":
                return Code(f"({left.src} is {negate}None)", "bool", True)
            if left.src == "None":
                return Code(f"({right.src} is {negate}None)", "bool", True)
            same = left.type == right.type and left.type in ("text", "number", "bool")
            if same and left.exact and right.exact:
                return Code(f"({left.src} {op} {right.src})", "bool", True)
            _general()
        if op in _ORDER:
            same = left.type == right.type and left.type in ("text", "number")
            if not (same and left.exact and right.exact):
                _general()
            return self._both_present([left, right], lambda a, b: f"{a} {op} {b}")
        if op in ("in", "not in"):
            if not (left.exact and left.type == "text" and right.type in ("list", "text")):
                _general()
            if not right.exact:
                _general()
            return self._both_present([left, right], lambda a, b: f"{a} {op} {b}")
        if op == "+":
            return self._plus(left, right, kind)
        _general()

    def _both_present(self, operands: list[Code], body: Any) -> Code:
        """A test that is false when an operand is null (`<`, `in`, `not in`)."""
        bound = [_Bound(c.src, c.src) if c.nonnull else self.bind(c) for c in operands]
        tests = [
            f"{b.first} is not None" for b, c in zip(bound, operands, strict=True) if not c.nonnull
        ]
        return Code(f"({' and '.join([*tests, body(*(b.use for b in bound))])})", "bool", True)

    def _coalesce(self, left: Code, right: Code, kind: Type) -> Code:
        if not (left.exact and right.exact):
            _general()
        nonnull = left.nonempty or right.nonnull
        nonempty = left.nonempty or right.nonempty
        compact = left.compact and right.compact
        if left.nonempty:
            return left
        if left.type in ("text", "list", "null") and right.type in ("text", "list", "null"):
            return Code(
                f"({left.src} or {right.src})", kind, nonnull, True, False, nonempty, compact
            )
        if left.nonnull:
            return left
        bound = self.bind(left)
        src = f"({bound.use} if {bound.first} is not None else {right.src})"
        return Code(src, kind, nonnull, True, False, nonempty, compact)

    def _plus(self, left: Code, right: Code, kind: Type) -> Code:
        if not (left.exact and right.exact and left.type == right.type == kind):
            _general()
        if kind == "text":
            return self._guarded([left, right], lambda a, b: f"({a} + {b})", "text")
        if kind == "list":
            code = self._guarded([left, right], lambda a, b: f"[*{a}, *{b}]", "list")
            return replace(code, compact=left.compact and right.compact)
        _general()

    def _matches(self, node: Binary) -> Code:
        assert isinstance(node.right, StrLit)
        pattern = node.right.value
        subject = self.sx(node.left)
        regex = self.regex(pattern)
        if not subject.exact or subject.type not in ("text", "list"):
            return Code(f"_matches({subject.src}, {regex})", "bool", True)
        literal = literal_pattern(pattern)
        search = self.search(pattern)
        if subject.type == "list":
            if literal is None:
                return Code(f"_any_match({subject.src}, {search})", "bool", True)
            if not subject.nonnull:  # `_any_match` takes null
                one = text_matcher(literal, self.patterns[pattern].search)
                return Code(
                    f"_any_match({subject.src}, {self.const(one, 'regex matcher')})", "bool", True
                )
            any_of = list_matcher(literal, self.patterns[pattern].search)
            return Code(f"{self.const(any_of, 'regex matcher')}({subject.src})", "bool", True)
        if literal is None:
            if subject.nonnull:
                return Code(f"{search}({subject.src})", "bool", True)
            return Code(f"_text_match({subject.src}, {search})", "bool", True)
        try:
            bound = self.bind(subject)
        except _General:
            return Code(f"_matches({subject.src}, {regex})", "bool", True)
        test = self._literal_test(literal, pattern)
        if subject.nonnull:
            return Code(f"({test(bound.first, bound.use)})", "bool", True)
        return Code(f"({bound.first} is not None and {test(bound.use, bound.use)})", "bool", True)

    def _literal_test(self, literal: LiteralPattern, pattern: str) -> Any:
        """`test(first, use)`: the inline test of a literal pattern on a text, where
        `first` is evaluated first (once) and `use` reads it after."""
        needles = literal.needles

        def on(text: str) -> str:
            if literal.start and literal.end:
                if len(needles) == 1:
                    return f"{text} == {self.const(needles[0])}"
                return f"{text} in {self.const(frozenset(needles), 'match patterns')}"
            if literal.start or literal.end:
                method = "startswith" if literal.start else "endswith"
                affix = self.const(needles[0]) if len(needles) == 1 else self.const(needles)
                return f"{text}.{method}({affix})"
            if "" in needles:
                return "True"
            if len(needles) == 1:
                return f"{self.const(needles[0])} in {text}"
            plain = replace(literal, fold=False)
            one = text_matcher(plain, self.patterns[pattern].search)
            return f"{self.const(one, 'regex matcher')}({text})"

        if not literal.fold:
            return lambda first, use: on(first)
        search = self.search(pattern)
        return lambda first, use: (
            f"({on(use + '.lower()')} if {first}.isascii() else {search}({use}))"
        )

    # ------------------------------------------------------------- conditions

    def cond(self, node: Expr) -> str:
        """Code whose Python truth is the language's truth of `node` (§3) (not always a
        bool: for `if`, `when` and the operands of `and` / `or`)."""
        match node:
            case Binary(op="and" | "or", left=left, right=right):
                first = self.cond(left)
                second = self._later(lambda: self.cond(right))
                return f"({first} {node.op} {second})"
            case Not(operand=operand):
                return f"(not {self.cond(operand)})"
            case _:
                return self.sx(node).src

    # ------------------------------------------------------------ statements

    def statements(self, body: Sequence[Stmt], depth: int, rule: str | None) -> None:
        start = len(self.lines)
        for statement in body:
            self.statement(statement, depth, rule)
        if all(line.lstrip().startswith("#") for line in self.lines[start:]):
            self.emit(depth, "pass")  # no code (an empty body, a `let` of a constant)

    def statement(self, node: Stmt, depth: int, rule: str | None) -> None:
        line = self.line_of(node)
        self.emit(depth, f"# line {line}: {self.describe(node)}")
        match node:
            case Let(name=name, value=value):
                self.pre = []
                code = self.sx(value)
                self.flush(depth)
                if code.atom:
                    self.codes[name] = code
                else:
                    local = self.fresh("_v")
                    self.emit(depth, f"{local} = {code.src}")
                    self.codes[name] = replace(code, src=local, atom=True)
            case Deny(message=message, condition=condition):
                result = f"return _Plan({self.const(message, 'deny message')}, {self.const(line)}, {{}}, [], [], _skip)"
                if condition is None:
                    self.emit(depth, result)
                    return
                self.pre = []
                test = self.cond(condition)
                self.flush(depth)
                self.emit(depth, f"if {test}:")
                self.emit(depth + 1, result)
                if rule is None:
                    for name in _nonnull_after_deny(condition):
                        known = self.codes.get(name)
                        if known is not None:
                            self.codes[name] = replace(known, nonnull=True)
            case Rule():
                self._rule(node, depth, line)
            case Clear(field=name):
                self._write_field(node, name, "clear", None, depth, line, rule)
            case AssignStmt(field=name, op=op, value=value):
                self._write_field(node, name, op, value, depth, line, rule)

    def _rule(self, node: Rule, depth: int, line: int) -> None:
        depth_in = depth
        if node.phase is not None:
            test = "U is None" if node.phase == "create" else "U is not None"
            self.emit(depth, f"if {test}:")
            depth_in += 1
        if node.condition is not None:
            self.pre = []
            test = self.cond(node.condition)
            self.flush(depth_in)
            self.emit(depth_in, f"if {test}:")
            self.statements(node.body, depth_in + 1, node.name)
            skipped = Skipped(node.name, line, "when condition was false")
            self.emit(depth_in, "else:")
            self.emit(
                depth_in + 1, f"_skip.append({self.const(skipped, f'skipped rule, line {line}')})"
            )
        else:
            self.statements(node.body, depth_in, node.name)
        if node.phase is not None:
            reason = (
                "on create: the account already exists"
                if node.phase == "create"
                else "on update: the account does not exist yet"
            )
            skipped = Skipped(node.name, line, reason)
            self.emit(depth, "else:")
            self.emit(
                depth + 1, f"_skip.append({self.const(skipped, f'skipped rule, line {line}')})"
            )

    def _write_field(
        self,
        node: AssignStmt | Clear,
        name: str,
        op: str,
        value: Expr | None,
        depth: int,
        line: int,
        rule: str | None,
    ) -> None:
        entry = self.const(TraceEntry(name, line, rule, op), f"trace entry, line {line}")
        if self.fields[name] == "set":
            self._write_set(name, op, value, depth, line, rule, entry)
        else:
            self._scalar_write(node, name, op, value, depth, line, entry)

    def _scalar_write(
        self,
        node: AssignStmt | Clear,
        name: str,
        op: str,
        value: Expr | None,
        depth: int,
        line: int,
        entry: str,
    ) -> None:
        """§7 for a single-valued field: "" is null; `=` and `?=` skip null; `?=` also
        skips a field written before or stored; `:=` and `clear` always write."""
        kind = self.fields[name]
        key = self.const(name, "field name")
        if op == "?=":
            stored = f"_stored(U, {key}) is None"
            self.emit(depth, f"if {key} not in _f and (U is None or {stored}):")
            depth += 1
        self.pre = []
        code = Code("None", "null", atom=True) if value is None else self.sx(value)
        self.flush(depth)
        empty = self.const("")
        if op in ("=", "?="):
            if code.exact:
                known = code.nonempty if kind == "text" else code.nonnull
                test = "{0}" if kind == "text" else "{0} is not None"
            else:
                known = False
                test = "{0} is not None and {0} != " + empty
            if known:
                self._store(node, name, key, op, code.src, entry, depth)
                return
            local = self._local(code, depth)
            self.emit(depth, f"if {test.format(local)}:")
            self._store(node, name, key, op, local, entry, depth + 1)
            return
        if code.src == "None" or (code.exact and (kind != "text" or code.nonempty)):
            src = code.src
        elif code.exact:
            src = f"({code.src} or None)"
        else:
            local = self._local(code, depth)
            src = f"(None if {local} == {empty} else {local})"
        if name in REQUIRED_FIELDS and not (code.nonempty or (kind != "text" and code.nonnull)):
            local = self.fresh("_w")
            self.emit(depth, f"{local} = {src}")
            self.emit(depth, f"if {local} is None:")
            message = self.const(f"{name} cannot be emptied", "deny message")
            self.emit(
                depth + 1, f"return _Plan({message}, {self.const(line)}, {{}}, [], [], _skip)"
            )
            src = local
        self._store(node, name, key, op, src, entry, depth)

    def _local(self, code: Code, depth: int) -> str:
        """`code` as a name: itself when an atom, else a new local assigned here."""
        if code.atom:
            return code.src
        local = self.fresh("_w")
        self.emit(depth, f"{local} = {code.src}")
        return local

    def _store(
        self, node: Stmt, name: str, key: str, op: str, src: str, entry: str, depth: int
    ) -> None:
        """Write a single-valued field: the plan's dict, the trace, and for a field that
        several statements write, the trace entry it replaces and the field order."""
        writers = self.writers[name]
        later = writers.index(id(node)) < len(writers) - 1
        trace = self.trace_locals.get(name)
        if writers[0] != id(node):
            if op != "?=" and trace is not None:
                self.emit(depth, f"if {trace} is not None:")
                self.emit(depth + 1, f"_tr.remove({trace})")
            if id(node) in self.reordering:
                if op == "?=":  # the field was not written before
                    self.emit(depth, "_ro = True")
                else:
                    self.emit(depth, f"if {key} not in _f:")
                    self.emit(depth + 1, "_ro = True")
        self.emit(depth, f"_f[{key}] = {src}")
        if later and trace is not None:
            self.emit(depth, f"{trace} = {entry}")
        self.emit(depth, f"_ta({entry})")

    def _write_set(
        self,
        name: str,
        op: str,
        value: Expr | None,
        depth: int,
        line: int,
        rule: str | None,
        entry: str,
    ) -> None:
        """§7 for a set field: the members of the value ("" and null: none; text: one;
        a list: its distinct non-empty values). `+=`/`-=` skip no members, `=`/`?=`
        skip null, `:=` clears on null, `?=` skips a set written before or stored."""
        key = self.const(name, "field name")
        flag = self.set_flags.get(name)
        where = f"set op, line {line}"

        def record(depth: int, operation: str) -> None:
            self.emit(depth, f"_ops.append({operation})")
            self.emit(depth, f"_ta({entry})")
            if flag is not None:
                self.emit(depth, f"{flag} = True")

        def clear_op() -> str:
            return self.const(SetOp(name, "clear", (), line, rule), where)

        if value is None:
            record(depth, clear_op())
            return
        if op == "?=":
            assert flag is not None
            self.emit(depth, f"if not {flag} and (U is None or not _stored_set(U, {key})):")
            depth += 1
        kind = _SET_KINDS[op]
        constant = _constant_members(value)
        if constant is not None:
            found = constant[0]
            if found is None and op == ":=":
                record(depth, clear_op())
            elif found is None or (op in ("+=", "-=") and not found):
                self.emit(depth, "pass")
            else:
                record(depth, self.const(SetOp(name, kind, found, line, rule), where))  # type: ignore[arg-type]
            return
        self.pre = []
        code = self.sx(value)
        self.flush(depth)
        local = self._local(code, depth)
        rule_c = "None" if rule is None else self.const(rule, "rule name")
        build = f"_setop({key}, {self.const(kind)}, {{0}}, {self.const(line)}, {rule_c})"
        adds = op in ("+=", "-=")
        if code.type == "text" and code.exact:
            self.emit(depth, f"if {local}:")
            record(depth + 1, build.format(f"({local},)"))
        elif code.type == "list" and code.exact:
            if code.compact:
                distinct = f"_tuple(_fromkeys({local}))"
            else:
                item = self.fresh("_x")
                distinct = f"_tuple(_fromkeys([{item} for {item} in {local} if {item}]))"
            if adds and not code.compact:  # "" dropped: maybe no members left
                kept = self.fresh("_w")
                self.emit(depth, f"{kept} = {distinct} if {local} else None")
                self.emit(depth, f"if {kept}:")
                record(depth + 1, build.format(kept))
                return
            if adds:
                self.emit(depth, f"if {local}:")
            elif code.nonnull:
                record(depth, build.format(distinct))
                return
            else:
                self.emit(depth, f"if {local} is not None:")
            record(depth + 1, build.format(distinct))
        else:
            kept = self.fresh("_w")
            self.emit(depth, f"{kept} = _members({local})")
            self.emit(depth, f"if {kept}:" if adds else f"if {kept} is not None:")
            record(depth + 1, build.format(kept))
        if op == ":=":
            self.emit(depth, "else:")
            record(depth + 1, clear_op())

    # ------------------------------------------------------------------ whole

    def _survey(self, program: Program) -> None:
        """What code generation needs to know in advance: each field's writers, how
        often each context name and stored field is read, which set fields `?=` tests."""
        for statement in _flat(program.statements):
            if isinstance(statement, AssignStmt | Clear):
                self.writers.setdefault(statement.field, []).append(id(statement))
            for expr in _statement_expressions(statement):
                for sub in _subexpressions(expr):
                    if isinstance(sub, Name) and sub.name in CONTEXT_NAMES:
                        self.uses[("context", sub.name)] += 1
                    elif isinstance(sub, UserField):
                        self.uses[("user", sub.field)] += 1
        order = {id(s): index for index, s in enumerate(_flat(program.statements))}
        by_id = {id(s): s for s in _flat(program.statements)}
        firsts = [
            order[writers[0]] for n, writers in self.writers.items() if self.fields.get(n) != "set"
        ]
        for name, writers in self.writers.items():
            if self.fields.get(name) == "set":
                if any(getattr(by_id[w], "op", None) == "?=" for w in writers):
                    self.set_flags[name] = self.fresh("_g")
                continue
            replacing = [w for w in writers[1:] if getattr(by_id[w], "op", "clear") != "?="]
            if replacing:
                self.trace_locals[name] = self.fresh("_r")
            # A later write puts the field at the dict's end: out of the plan's field
            # order when a field first written after its first write came before.
            start = order[writers[0]]
            for writer in writers[1:]:
                if any(start < first < order[writer] for first in firsts):
                    self.reordering.add(writer)

    def _start(self, depth: int) -> None:
        """The plan being built: from the first statement that writes a field."""
        if self.started:
            return
        self.started = True
        self.emit(depth, "_f = {}")
        self.emit(depth, "_ops = []")
        self.emit(depth, "_tr = []")
        self.emit(depth, "_ta = _tr.append")
        if self.reordering:
            self.emit(depth, "_ro = False")
        for local in self.trace_locals.values():
            self.emit(depth, f"{local} = None")
        for local in self.set_flags.values():
            self.emit(depth, f"{local} = False")

    def program(self, program: Program) -> str:
        self._survey(program)
        depth = 2
        for statement in program.statements:
            if _has_write(statement):
                self._start(depth)
            start = len(self.lines)
            self.statement(statement, depth, None)
            if self.pending:
                # Bindings the statement needs, after its comment line.
                self.lines[start + 1 : start + 1] = ["    " * depth + p for p in self.pending]
                self.pending = []
        self._start(depth)
        self.emit(depth, "# the plan")
        scalars = [n for n in self.writers if self.fields.get(n) != "set"]
        for required in REQUIRED_FIELDS:
            if required in self.fields:
                key = self.const(required, "field name")
                message = self.const(f"no rule produced a value for {required}", "deny message")
                self.emit(depth, f"if U is None and {key} not in _f:")
                self.emit(depth + 1, f"return _Plan({message}, None, {{}}, [], [], _skip)")
        if self.reordering:
            rank = self.const(tuple(scalars), "field order")
            self.emit(depth, "if _ro:")
            self.emit(depth + 1, f"_f = {{_q: _f[_q] for _q in {rank} if _q in _f}}")
        self.emit(depth, "return _Plan(None, None, _f, _ops, _tr, _skip)")
        head = ["def _evaluate(A, C, U):"]
        if self.attributes:
            head.append("    _ag = A.get")
        head.append("    _skip = []")
        body = [line[4:] for line in self.lines]
        return factory([*head, *body], self.constants, self.labels)

    # -------------------------------------------------------------- comments

    def describe(self, node: Stmt) -> str:
        """A one-line account of a statement for its comment: names, operators and
        parameter names only (never a literal's text)."""
        match node:
            case Let(name=name, value=value):
                text = f"let {self._ident(name)} = {self._show(value)}"
            case AssignStmt(field=name, op=op, value=value):
                text = f"{self._ident(name)} {op} {self._show(value)}"
            case Clear(field=name):
                text = f"clear {self._ident(name)}"
            case Deny(message=message, condition=condition):
                text = f"deny {self.const(message, 'deny message')}"
                if condition is not None:
                    text += f" when {self._show(condition)}"
            case Rule(name=name, phase=phase, condition=condition):
                text = f"rule {self.const(name, 'rule name')}"
                if phase is not None:
                    text += f" on {phase}"
                if condition is not None:
                    text += f" when {self._show(condition)}"
                text += " {"
        if len(text) > _DESCRIBE_LIMIT:
            text = text[: _DESCRIBE_LIMIT - 3] + "..."
        return text

    def _ident(self, name: str) -> str:
        return name if _IDENTIFIER.match(name) else "?"

    def _show(self, node: Expr, depth: int = 0) -> str:
        if depth > 12:
            return "..."

        def show(inner: Expr) -> str:
            return self._show(inner, depth + 1)

        match node:
            case StrLit(value=value):
                return self.const(value)
            case NumLit(value=value, text=spelling):
                return self.const(rt.number_literal(value, spelling))
            case BoolLit(value=value):
                return "true" if value else "false"
            case NullLit():
                return "null"
            case AttrRef(name=name):
                return "@" + self.const(name, "attribute name")
            case Name(name=name):
                return self._ident(name)
            case UserField(field=name):
                return f"user.{self._ident(name)}"
            case Call(function=function, args=args):
                shown = []
                signature = FUNCTIONS.get(function)
                for index, arg in enumerate(args):
                    param = None
                    if signature is not None:
                        param = signature.params[min(index, len(signature.params) - 1)]
                    if param == "regex" and isinstance(arg, StrLit):
                        shown.append(self.regex(arg.value))
                    else:
                        shown.append(show(arg))
                return f"{self._ident(function)}({', '.join(shown)})"
            case ListLit(items=items):
                return f"[{', '.join(show(i) for i in items)}]"
            case Comprehension(element=element, var=var, iterable=iterable, condition=condition):
                tail = "" if condition is None else f" if {show(condition)}"
                return f"[{show(element)} for {self._ident(var)} in {show(iterable)}{tail}]"
            case Match(subject=subject, arms=arms):
                return f"match {show(subject)} {{ {len(arms)} arms, else }}"
            case IfExpr(condition=condition, then=then, otherwise=otherwise):
                return f"if {show(condition)} then {show(then)} else {show(otherwise)}"
            case Not(operand=operand):
                return f"not {show(operand)}"
            case Binary(op="matches", left=left, right=right):
                pattern = self.regex(right.value) if isinstance(right, StrLit) else show(right)
                return f"{_paren(left, show(left))} matches {pattern}"
            case Binary(op=op, left=left, right=right):
                return f"{_paren(left, show(left))} {op} {_paren(right, show(right))}"


_FIELD_VALUE: dict[FieldType, Type] = {"text": "text", "number": "number", "bool": "bool"}


def _group_one(args: Sequence[Expr]) -> bool:
    """`regex_extract` asks for group 1 (the default)."""
    if len(args) == 2:
        return True
    return isinstance(args[2], NumLit) and args[2].text == "1"


def _paren(node: Expr, text: str) -> str:
    return f"({text})" if isinstance(node, Binary | IfExpr) else text


def _constant_members(value: Expr) -> tuple[tuple[str, ...] | None] | None:
    """The members a literal value gives a set field, in a one-item tuple (its first
    item None: no members); None when the value is not a literal."""
    match value:
        case StrLit(value=text):
            return (members(text),)
        case NullLit():
            return (None,)
        case ListLit(items=items) if all(isinstance(i, StrLit) for i in items):
            return (members([i.value for i in items if isinstance(i, StrLit)]),)
        case _:
            return None


def _label(value: object) -> str:
    """What a constant is, in the generated source's words (never its text)."""
    name = _FUNCTION_NAMES.get(id(value))
    if name is not None:
        return f"function {name}"
    match value:
        case bool():
            return "bool"
        case str():
            return "text"
        case int() | Decimal():
            return "number"
        case None:
            return "null"
        case Regex():
            return "regex"
        case tuple():
            return "list"
        case dict():
            return "match table"
        case frozenset():
            return "match patterns"
        case _:
            return "function" if callable(value) else "value"


def factory(evaluate: list[str], constants: Sequence[object], labels: Mapping[str, str]) -> str:
    """The module source: `_make(<constants>)` returning `_evaluate`, whose lines are
    given at one level of indentation."""
    lines = [
        "# A rules file compiled to Python. _make receives the constants (the kind of each",
        "# in its comment) and returns _evaluate(A, C, U): A holds the token attributes,",
        "# C its context, U the stored user (None when the account is being created).",
        "# No builtins: _E, _Plan, _ctx and the like are helpers from rules.compile.",
        "def _make(",
    ]
    for index in range(len(constants)):
        name = f"_k{index}"
        label = labels.get(name, "")
        lines.append(f"    {name},  # {label}" if label else f"    {name},")
    lines.append("):")
    lines += ["    " + line if line else line for line in evaluate]
    lines.append("    return _evaluate")
    return "\n".join([*lines, ""])
