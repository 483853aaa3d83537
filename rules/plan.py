"""What evaluating a rules file produces for one token: a plan, and its trace.

Evaluation is a pure function (token attributes, context, stored user or nothing) → Plan.
The engine applies the plan to the store; the rules package knows nothing of stores.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Literal, NamedTuple, TypeAlias

from rules.vocabulary import BUILTIN_FIELDS, CONTEXT_NAMES, REQUIRED_FIELDS, FieldType

__all__ = [
    "BUILTIN_FIELDS",
    "CONTEXT_NAMES",
    "REQUIRED_FIELDS",
    "Context",
    "FieldType",
    "Plan",
    "Scalar",
    "SetOp",
    "Skipped",
    "TraceEntry",
]

# A field value: text, number (int or Decimal, never float), bool; None is "empty".
Scalar: TypeAlias = str | int | Decimal | bool | None


@dataclass(frozen=True, slots=True)
class Context:
    """The token's context names (rules-language.md §4)."""

    subject: str | None = None
    subject_format: str | None = None
    issuer: str | None = None
    connection: str | None = None
    authn_context: str | None = None


class TraceEntry(NamedTuple):
    """One assignment or set operation that took effect: which line, which rule. (A
    named tuple: it is hashed for every audit row, and a tuple hashes in C.)"""

    field: str
    line: int
    rule: str | None
    op: str  # "=", ":=", "?=", "+=", "-=", "clear"


@dataclass(frozen=True, slots=True)
class SetOp:
    """One operation on a set field, in file order.

    kind "replace": the connection's members become `values` (`=`, `:=`, `?=`);
    "clear": the connection's members are emptied (`clear`, `:=` with null);
    "add" / "remove": `+=` / `-=` (remove ignores the member's source).
    """

    field: str
    kind: Literal["replace", "clear", "add", "remove"]
    values: tuple[str, ...]
    line: int
    rule: str | None


@dataclass(frozen=True, slots=True)
class Skipped:
    """A rule whose body did not run, and why (e.g. "on create: the account exists",
    "when condition is false")."""

    rule: str
    line: int
    reason: str


@dataclass(slots=True)
class Plan:
    """The result of one evaluation.

    `denied` holds the deny message when evaluation refused; then nothing else counts.
    `fields` holds the final value of every single-valued field the rules assigned
    (None: empty it); fields not present were not assigned (or only with null).
    `set_ops` are applied in order by the store, which knows each member's source.
    """

    denied: str | None = None
    deny_line: int | None = None
    fields: dict[str, Scalar] = field(default_factory=dict)
    set_ops: list[SetOp] = field(default_factory=list)
    trace: list[TraceEntry] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
