"""The syntax tree of a rules file: frozen dataclasses, every node with its span.

Spans (and source-form details such as `raw` or a number's spelling) are excluded from
equality, so `parse(fmt(src)) == parse(src)` compares meaning, not layout.
Phases (check, compile, evaluate, format) are functions that `match` on these types.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Literal, TypeAlias

from rules.diagnostics import Span

_NO_SPAN = Span(0, 0)


def _span() -> Span:
    return field(default=_NO_SPAN, compare=False, repr=False)


# ---------------------------------------------------------------- expressions


@dataclass(frozen=True, slots=True)
class StrLit:
    """A string literal; `raw` records the r"..." spelling (layout only)."""

    value: str
    raw: bool = field(default=False, compare=False)
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class NumLit:
    """A number literal: integers and decimals, never floats; `text` is its spelling."""

    value: Decimal
    text: str = field(default="", compare=False)
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class BoolLit:
    value: bool
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class NullLit:
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class AttrRef:
    """`@name` or `@"any string"`: the list of values of a token attribute."""

    name: str
    quoted: bool = field(default=False, compare=False)
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class Name:
    """A bare name: a `let` variable, a comprehension variable or a context name."""

    name: str
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class UserField:
    """`user.FIELD`: the value stored before this login (null on creation)."""

    field: str
    field_span: Span = _span()
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class Call:
    function: str
    args: tuple[Expr, ...]
    name_span: Span = _span()
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class ListLit:
    items: tuple[Expr, ...]
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class Comprehension:
    """`[element for var in iterable if condition]`."""

    element: Expr
    var: str
    iterable: Expr
    condition: Expr | None
    var_span: Span = _span()
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class MatchArm:
    patterns: tuple[StrLit, ...]
    result: Expr
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class Match:
    """`match subject { "a", "b" => x  else => y }`; `otherwise` is None only when the
    source forgot `else` (a checker error)."""

    subject: Expr
    arms: tuple[MatchArm, ...]
    otherwise: Expr | None
    else_span: Span = _span()
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class IfExpr:
    condition: Expr
    then: Expr
    otherwise: Expr
    span: Span = _span()


BinaryOp: TypeAlias = Literal[
    "??", "or", "and", "==", "!=", "<", "<=", ">", ">=", "in", "not in", "matches", "+"
]


@dataclass(frozen=True, slots=True)
class Binary:
    op: BinaryOp
    left: Expr
    right: Expr
    op_span: Span = _span()
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class Not:
    operand: Expr
    span: Span = _span()


Expr: TypeAlias = (
    StrLit
    | NumLit
    | BoolLit
    | NullLit
    | AttrRef
    | Name
    | UserField
    | Call
    | ListLit
    | Comprehension
    | Match
    | IfExpr
    | Binary
    | Not
)


# ----------------------------------------------------------------- statements

AssignOp: TypeAlias = Literal["=", ":=", "?=", "+=", "-="]


@dataclass(frozen=True, slots=True)
class Let:
    name: str
    value: Expr
    name_span: Span = _span()
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class Assign:
    field: str
    op: AssignOp
    value: Expr
    field_span: Span = _span()
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class Clear:
    field: str
    field_span: Span = _span()
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class Deny:
    message: str
    condition: Expr | None
    message_span: Span = _span()
    span: Span = _span()


Phase: TypeAlias = Literal["create", "update"]


@dataclass(frozen=True, slots=True)
class Rule:
    name: str
    phase: Phase | None
    condition: Expr | None
    body: tuple[Stmt, ...]
    name_span: Span = _span()
    span: Span = _span()


Stmt: TypeAlias = Let | Assign | Clear | Deny | Rule


@dataclass(frozen=True, slots=True)
class Comment:
    """A `#` comment; kept for the formatter, ignored by every other phase."""

    text: str
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class Program:
    statements: tuple[Stmt, ...]
    comments: tuple[Comment, ...] = field(default=(), compare=False)
    span: Span = _span()
