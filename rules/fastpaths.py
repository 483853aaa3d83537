"""Run-time helpers for the specialised evaluator (`specialise.py`).

Each one gives exactly what the general helper gives (`values.py`, `functions.py`)
for the values the compiler proves it will get, with less work per call.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

from rules.functions import dn_value
from rules.plan import SetOp
from rules.values import Value, distinct

__all__ = ["dn_value_of", "members", "set_op"]

_new = object.__new__
_SLOTS: dict[str, Any] = dict(vars(SetOp))  # the slots' member descriptors
_FIELD = _SLOTS["field"].__set__
_KIND = _SLOTS["kind"].__set__
_VALUES = _SLOTS["values"].__set__
_LINE = _SLOTS["line"].__set__
_RULE = _SLOTS["rule"].__set__


def set_op(
    field: str,
    kind: Literal["replace", "clear", "add", "remove"],
    values: tuple[str, ...],
    line: int,
    rule: str | None,
) -> SetOp:
    """`SetOp(field, kind, values, line, rule)` without the frozen dataclass's
    `__init__`, which sets each slot through `object.__setattr__` (twice the time).
    The object is the same: equal, hashed and printed alike."""
    op: Any = _new(SetOp)
    _FIELD(op, field)
    _KIND(op, kind)
    _VALUES(op, values)
    _LINE(op, line)
    _RULE(op, rule)
    result: SetOp = op
    return result


def members(value: Value) -> tuple[str, ...] | None:
    """A value assigned to a set field as its members (§7): "" and null are none (None),
    text is one member, a list its distinct non-empty values; anything else is none."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list | tuple):
        return distinct(value)
    return None


def dn_value_of(attribute_type: str) -> Callable[[str], str | None]:
    """`dn_value(dn, attribute_type)` for a fixed attribute type, for text `dn`.

    A DN without backslashes or quotes (almost all) is split and searched here; any
    other goes to `dn_value` itself. Without escapes and quotes, `dn_value`'s value
    trimming is a strip of spaces and its unescaping changes nothing."""
    wanted = attribute_type.strip().casefold()

    def value_of(dn: str) -> str | None:
        if "\\" in dn or '"' in dn:
            return dn_value(dn, attribute_type)
        for part in dn.replace(";", ",").replace("+", ",").split(","):
            key, sep, raw = part.partition("=")
            if sep and key.strip().casefold() == wanted:
                return raw.strip(" ") or None
        return None

    return value_of
