"""Static types of expressions (rules-language.md §3, §5, §6): inference and type errors.

`ExprTyper` infers each expression's type, reports every type error it finds, and
records the inferred type of every node (by identity) for the compiler. Name lookup and
declaration of comprehension variables are left to the subclass (`check.Checker`),
which owns scoping.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from typing import Literal, TypeAlias

from rules.ast import (
    AttrRef,
    Binary,
    BoolLit,
    Call,
    Comprehension,
    Expr,
    IfExpr,
    ListLit,
    Match,
    Name,
    Not,
    NullLit,
    NumLit,
    StrLit,
    UserField,
)
from rules.diagnostics import Diagnostic, Severity, Span
from rules.functions import FUNCTIONS, RegexError, Signature, compile_regex, template_max_group
from rules.vocabulary import MAX_DEPTH, FieldType

Type: TypeAlias = Literal["text", "number", "bool", "list", "null", "unknown"]

_ARTICLE: dict[str, str] = {
    "text": "text",
    "number": "a number",
    "bool": "a bool",
    "list": "a list",
    "null": "null",
    "unknown": "a value",
}


def describe(kind: Type) -> str:
    """`a list`, `text`, `a number`: the phrase used in messages."""
    return _ARTICLE[kind]


def field_value_type(kind: FieldType) -> Type:
    """The type an expression reading a field of this kind has (`user.FIELD`)."""
    return "list" if kind == "set" else kind


def did_you_mean(word: str, candidates: Sequence[str], prefix: str = "") -> str | None:
    """A "did you mean" hint from the nearest candidate, or None."""
    near = difflib.get_close_matches(word, list(candidates), n=1, cutoff=0.6)
    return f"did you mean `{prefix}{near[0]}`?" if near else None


def known(kind: Type) -> bool:
    """Whether a type says something (not null, not unknown after an error)."""
    return kind not in ("null", "unknown")


class ExprTyper:
    """Infers expression types and collects diagnostics; see the module docstring."""

    def __init__(
        self,
        source: str,
        fields: Mapping[str, FieldType],
        attributes: Sequence[str] | None,
    ) -> None:
        self.source = source
        self.fields = fields
        self.attributes = None if attributes is None else frozenset(attributes)
        self.attribute_list = list(attributes or ())
        self.diagnostics: list[Diagnostic] = []
        self.types: dict[int, Type] = {}
        self.depth = 0
        self.too_deep = False

    # ---------------------------------------------------------------- hooks

    def lookup(self, node: Name) -> Type:  # pragma: no cover - overridden
        raise NotImplementedError

    def comprehension(self, expr: Comprehension) -> Type:  # pragma: no cover
        """Type a comprehension: it binds a variable, so scoping (the subclass) owns it."""
        raise NotImplementedError

    # --------------------------------------------------------------- helpers

    def report(
        self,
        code: str,
        message: str,
        span: Span,
        hint: str | None = None,
        severity: Severity = "error",
    ) -> None:
        self.diagnostics.append(Diagnostic(severity, code, message, span, hint))

    def text_of(self, span: Span) -> str:
        return self.source[span.start : span.end]

    def unify(self, kinds: Sequence[tuple[Type, Span]], what: str) -> Type:
        """One type for branches (null aside); E024 on each branch that differs."""
        result: Type = "null"
        for kind, span in kinds:
            if kind == "unknown":
                return "unknown"
            if kind == "null":
                continue
            if result == "null":
                result = kind
            elif kind != result:
                self.report(
                    "E024",
                    f"{what} have different types: {describe(result)} and {describe(kind)}",
                    span,
                    "every branch must give the same type (null aside)",
                )
                return "unknown"
        return result

    # ------------------------------------------------------------- inference

    def infer(self, expr: Expr) -> Type:
        if self.depth >= MAX_DEPTH:
            if not self.too_deep:
                self.too_deep = True
                self.report(
                    "E028",
                    f"this expression is nested more than {MAX_DEPTH} levels deep",
                    expr.span,
                    "split it into `let` steps",
                )
            self.types[id(expr)] = "unknown"
            return "unknown"
        self.depth += 1
        try:
            kind = self._infer(expr)
        finally:
            self.depth -= 1
        self.types[id(expr)] = kind
        return kind

    def _infer(self, expr: Expr) -> Type:
        match expr:
            case StrLit():
                return "text"
            case NumLit():
                return "number"
            case BoolLit():
                return "bool"
            case NullLit():
                return "null"
            case AttrRef(name=name, span=span):
                if self.attributes is not None and name not in self.attributes:
                    hint = did_you_mean(name, self.attribute_list, "@")
                    self.report(
                        "W004",
                        f"attribute @{name} is not in this connection's attributes",
                        span,
                        hint or "add it to the connection's `attributes` list",
                        "warning",
                    )
                return "list"
            case Name():
                return self.lookup(expr)
            case UserField(field=name, field_span=span):
                if name in self.fields:
                    return field_value_type(self.fields[name])
                self.report(
                    "E027",
                    f"unknown user field `{name}`",
                    span,
                    did_you_mean(name, sorted(self.fields), "user."),
                )
                return "unknown"
            case Call():
                return self._call(expr)
            case ListLit(items=items):
                for item in items:
                    kind = self.infer(item)
                    if known(kind) and kind != "text":
                        self.report(
                            "E028",
                            f"list literals hold text only, not {describe(kind)}",
                            item.span,
                            "use `+` to join lists" if kind == "list" else "use `text(...)`",
                        )
                return "list"
            case Comprehension():
                return self.comprehension(expr)
            case Match():
                return self._match(expr)
            case IfExpr(condition=condition, then=then, otherwise=otherwise):
                self.infer(condition)
                branches = [(self.infer(then), then.span), (self.infer(otherwise), otherwise.span)]
                return self.unify(branches, "the branches of `if`")
            case Binary():
                return self._binary(expr)
            case Not(operand=operand):
                self.infer(operand)
                return "bool"

    def _match(self, expr: Match) -> Type:
        subject = self.infer(expr.subject)
        if subject == "list":
            self.report(
                "E023",
                "cannot match on a list",
                expr.subject.span,
                f"use `match first({self.text_of(expr.subject.span)}) {{ ... }}`",
            )
        elif subject in ("number", "bool"):
            self.report(
                "E028", f"match needs text, not {describe(subject)}", expr.subject.span,
                "use `text(...)`",
            )  # fmt: skip
        seen: set[str] = set()
        branches: list[tuple[Type, Span]] = []
        for arm in expr.arms:
            for pattern in arm.patterns:
                if pattern.value in seen:
                    self.report(
                        "W003",
                        f'pattern "{pattern.value}" is repeated in this match',
                        pattern.span,
                        "the earlier arm always wins; remove this pattern",
                        "warning",
                    )
                seen.add(pattern.value)
            branches.append((self.infer(arm.result), arm.result.span))
        if expr.otherwise is None:
            self.report(
                "E022",
                "`match` without `else`",
                Span(expr.span.start, expr.span.start + len("match")),
                "add `else => ...` as the last arm",
            )
        else:
            branches.append((self.infer(expr.otherwise), expr.otherwise.span))
        return self.unify(branches, "the arms of `match`")

    def _binary(self, expr: Binary) -> Type:
        left = self.infer(expr.left)
        right = self.infer(expr.right)
        match expr.op:
            case "??":
                return self.unify([(left, expr.left.span), (right, expr.right.span)], "`??` sides")
            case "or" | "and":
                return "bool"
            case "==" | "!=":
                if known(left) and known(right) and left != right:
                    self._cannot_compare(expr, left, right)
                return "bool"
            case "<" | "<=" | ">" | ">=":
                if known(left) and known(right):
                    if left != right:
                        self._cannot_compare(expr, left, right)
                    elif left in ("list", "bool"):
                        self.report(
                            "E012",
                            f"cannot order {left}s: `{expr.op}` compares numbers or text",
                            expr.span,
                        )
                return "bool"
            case "in" | "not in":
                if right in ("number", "bool"):
                    self.report(
                        "E012",
                        f"`{expr.op}` needs a list or text on its right, not {describe(right)}",
                        expr.right.span,
                    )
                elif known(left) and left != "text":
                    self.report(
                        "E012",
                        f"cannot look for {describe(left)} in {describe(right)}",
                        expr.left.span,
                        "use `text(...)`" if left in ("number", "bool") else None,
                    )
                return "bool"
            case "matches":
                if known(left) and left not in ("text", "list"):
                    self.report(
                        "E028",
                        f"`matches` needs text or a list, not {describe(left)}",
                        expr.left.span,
                    )
                self._regex(expr.right, "`matches`")
                return "bool"
            case "+":
                return self._plus(expr, left, right)

    def _cannot_compare(self, expr: Binary, left: Type, right: Type) -> None:
        hint = None
        if {left, right} == {"list", "text"}:
            if left == "list":
                lst, txt = self.text_of(expr.left.span), self.text_of(expr.right.span)
                hint = f"use `{txt} in {lst}` or `first({lst}) {expr.op} {txt}`"
            else:
                txt, lst = self.text_of(expr.left.span), self.text_of(expr.right.span)
                hint = f"use `{txt} in {lst}` or `{txt} {expr.op} first({lst})`"
            if expr.op == "!=":
                hint = hint.replace(" in ", " not in ", 1)
        elif "number" in (left, right) and "text" in (left, right):
            hint = "convert with `number(...)` or `text(...)`"
        elif "bool" in (left, right) and "text" in (left, right):
            hint = "convert with `bool(...)`"
        self.report(
            "E012", f"cannot compare {describe(left)} with {describe(right)}", expr.span, hint
        )

    def _plus(self, expr: Binary, left: Type, right: Type) -> Type:
        if not (known(left) and known(right)):
            if "unknown" in (left, right):
                return "unknown"
            present = left if known(left) else right
            if present == "bool":
                self.report("E025", "cannot add a bool", expr.span)
                return "unknown"
            return present
        if left == right and left in ("text", "list", "number"):
            return left
        pair = {left, right}
        if pair == {"list", "text"}:
            operand = expr.right if right == "text" else expr.left
            self.report(
                "E025",
                f"cannot add {describe(left)} and {describe(right)}",
                operand.span,
                f"wrap the text in `[ ]`: `[{self.text_of(operand.span)}]`",
            )
        elif pair == {"number", "text"}:
            operand = expr.right if right == "number" else expr.left
            self.report(
                "E025",
                f"cannot add {describe(left)} and {describe(right)}",
                operand.span,
                f"use `text({self.text_of(operand.span)})`",
            )
        else:
            self.report("E025", f"cannot add {describe(left)} and {describe(right)}", expr.span)
        return "unknown"

    def _regex(self, node: Expr, where: str) -> object | None:
        """Validate a regex argument: a string literal RE2 accepts; its pattern, or None."""
        if not isinstance(node, StrLit):
            self.report(
                "E028" if where == "`matches`" else "E014",
                f"the pattern of {where} must be a string literal",
                node.span,
                'write it as r"..."',
            )
            return None
        try:
            pattern: object = compile_regex(node.value)
            return pattern
        except RegexError as error:
            self.report("E015", f"invalid regular expression: {error}", node.span)
            return None

    def _call(self, call: Call) -> Type:
        signature = FUNCTIONS.get(call.function)
        if signature is None:
            for arg in call.args:
                self.infer(arg)
            self.report(
                "E011",
                f"unknown function `{call.function}`",
                call.name_span,
                did_you_mean(call.function, sorted(FUNCTIONS)),
            )
            return "unknown"
        count = len(call.args)
        high = signature.max_args
        if count < signature.min_args or (high is not None and count > high):
            for arg in call.args:
                self.infer(arg)
            self.report(
                "E013",
                f"`{signature.name}` takes {_arity(signature)}, got {count}",
                call.span,
            )
            return "unknown"
        return self._typed_call(call, signature)

    def _typed_call(self, call: Call, signature: Signature) -> Type:
        kinds: list[tuple[Type, Span]] = []
        lifted = False
        pattern: object | None = None
        for index, arg in enumerate(call.args):
            param = signature.params[min(index, len(signature.params) - 1)]
            if param == "regex":
                self.types[id(arg)] = "text"
                pattern = self._regex(arg, f"`{signature.name}`")
                continue
            kind = self.infer(arg)
            kinds.append((kind, arg.span))
            if not known(kind) or param == "any":
                continue
            if param == "text" and kind == "list" and index == 0 and signature.lifts:
                lifted = True
            elif param in ("text", "number", "list") and kind != param:
                self._argument_type(signature, index, param, kind, arg)
            elif param == "scalar" and kind == "list":
                self._argument_type(signature, index, "scalar", kind, arg)
        if pattern is not None:
            self._check_groups(call, signature, pattern)
        if signature.result == "same":
            return self.unify(kinds, f"the arguments of `{signature.name}`")
        if lifted:
            return "list"
        return signature.result

    def _argument_type(
        self, signature: Signature, index: int, param: str, kind: Type, arg: Expr
    ) -> None:
        wanted = {
            "text": "text",
            "number": "a number",
            "list": "a list",
            "scalar": "text, a number or a bool",
        }[param]
        hint = None
        if param in ("text", "scalar") and kind == "list":
            hint = "use `first(...)` or `join(..., sep)`"
        elif param == "text":
            hint = f"use `text({self.text_of(arg.span)})`"
        elif param == "list" and kind == "text":
            hint = f"wrap the text in `[ ]`: `[{self.text_of(arg.span)}]`"
        elif param == "number" and kind == "text":
            hint = f"use `number({self.text_of(arg.span)})`"
        self.report(
            "E014",
            f"`{signature.name}` needs {wanted} as argument {index + 1}, not {describe(kind)}",
            arg.span,
            hint,
        )

    def _check_groups(self, call: Call, signature: Signature, pattern: object) -> None:
        groups: int = getattr(pattern, "groups", 0)
        if signature.name == "regex_extract" and len(call.args) == 3:
            n = call.args[2]
            if isinstance(n, NumLit) and (n.value != n.value.to_integral_value() or n.value < 0):
                self.report("E014", "the group number must be a whole number", n.span)
            elif isinstance(n, NumLit) and n.value > groups:
                self.report(
                    "E016",
                    f"group {n.text or n.value} is out of range: the pattern has "
                    f"{groups} group{'s' if groups != 1 else ''}",
                    n.span,
                )
        elif signature.name == "regex_extract" and groups < 1:
            self.report(
                "E016",
                "group 1 is out of range: the pattern has no groups",
                call.args[1].span,
                "add a group `( )` around the part to extract, or pass 0 for the whole match",
            )
        elif signature.name == "regex_replace" and isinstance(call.args[2], StrLit):
            highest = template_max_group(call.args[2].value)
            if highest > groups:
                self.report(
                    "E016",
                    f"group \\{highest} is out of range: the pattern has "
                    f"{groups} group{'s' if groups != 1 else ''}",
                    call.args[2].span,
                )


def _arity(signature: Signature) -> str:
    low, high = signature.min_args, signature.max_args
    noun = "argument" if (high or low) == 1 else "arguments"
    if high is None:
        return f"at least {low} {noun}"
    if low == high:
        return f"{low} {noun}"
    return f"{low} or {high} arguments"
