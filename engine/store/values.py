"""How field values and moments are written to the store's columns, and read back.

Text as text, numbers as their canonical text (exact for decimals, rules-language.md §3),
booleans as 0/1, moments as ISO 8601 UTC with Z (sorts as text); case-insensitive keys
are the text form in Unicode NFC, lower-cased with `str.lower` (product.md §1) — never
`str.casefold`, which merges distinct addresses (`straße`/`strasse`, `ſ`/`s`, `ﬁ`/`fi`).
"""

from __future__ import annotations

import functools
import unicodedata
from datetime import datetime
from decimal import Decimal
from typing import overload

from engine.moments import stamp
from rules.plan import Scalar

# How `fold` computes keys; the store records it beside each key column it has computed
# this way, and re-keys a column that lacks the record (engine.store.rekey).
FOLD = "nfc-lower"


@functools.lru_cache(maxsize=64)  # one token stamps several rows with the same moment
def iso(moment: datetime) -> str:
    """ISO 8601 UTC to the second, with Z: sorts as text, reads as time."""
    return stamp(moment)


@overload
def fold(value: str) -> str: ...
@overload
def fold(value: Scalar) -> str | None: ...
def fold(value: Scalar) -> str | None:
    """The case-insensitive key of a value: its text form in Unicode NFC, then
    `str.lower` (product.md §1). The one definition of "case-insensitively": the store's
    key columns, emailAddress NameID links, username lookups and search all use it."""
    text = to_column(value)
    return None if text is None else unicodedata.normalize("NFC", str(text)).lower()


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
