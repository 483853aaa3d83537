"""How field values and moments are written to the store's columns, and read back.

Text as text, numbers as their canonical text (exact for decimals, rules-language.md §3),
booleans as 0/1, moments as ISO 8601 UTC with Z (sorts as text); case-insensitive keys
are the Unicode casefold of the text form.
"""

from __future__ import annotations

import functools
from datetime import UTC, datetime
from decimal import Decimal

from rules.plan import Scalar


@functools.lru_cache(maxsize=64)  # one token stamps several rows with the same moment
def iso(moment: datetime) -> str:
    """ISO 8601 UTC to the second, with Z: sorts as text, reads as time."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def fold(value: Scalar) -> str | None:
    """The case-insensitive key of a value (Unicode casefold of its text form)."""
    text = to_column(value)
    return None if text is None else str(text).casefold()


def to_column(value: Scalar) -> str | int | None:
    """A field value as stored: text, numbers as canonical text, booleans as 0/1."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return str(value)
    text = format(value.normalize(), "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def from_column(kind: str, value: object) -> Scalar:
    """A stored column back as a field value of its type."""
    if value is None:
        return None
    if kind == "bool":
        return bool(value)
    if kind == "number":
        text = str(value)
        try:
            return int(text) if "." not in text else Decimal(text)
        except ValueError:
            return Decimal(text)
    return str(value)
