"""Run-time values and the operators of rules-language.md §3 and §5.

Shared by the compiled evaluator (`compile.py`) and the reference evaluator
(`evaluate.py`), so both give every operator the same meaning; the differential test
then checks the part that differs between them: control flow and plan building.

Values: text is `str`, numbers are `int` or `Decimal` (never `float`), bools are `bool`,
lists are `list` or `tuple` of `str` (attribute values arrive as either), null is None.
Every function here is total: no value makes it raise.
"""

from __future__ import annotations

import decimal
import math
from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any, TypeAlias

import re2

ListValue: TypeAlias = list[str] | tuple[str, ...]
Number: TypeAlias = int | Decimal
Value: TypeAlias = str | int | Decimal | bool | ListValue | None

# Exact decimal arithmetic that never raises (no traps; huge precision and exponents).
ARITHMETIC = decimal.Context(
    prec=10_000, Emax=decimal.MAX_EMAX, Emin=decimal.MIN_EMIN, traps=[], flags=[]
)
_MAX_INT_DIGITS = 4000  # below Python's int/str conversion limit (4300 digits)

EMPTY: tuple[str, ...] = ()


def number_literal(value: Decimal, spelling: str = "") -> Number:
    """A number literal's run-time value: `int` for integers, `Decimal` otherwise."""
    text = spelling or format(value, "f")
    if "." not in text and "e" not in text.lower() and value == value.to_integral_value():
        return int(value)
    return value


def truthy(value: Value) -> bool:
    """§3 truthiness: null, false, "", 0 and the empty list are false."""
    if value is None or value is False:
        return False
    if value is True:
        return True
    if isinstance(value, str | list | tuple):
        return len(value) > 0
    return value != 0


def is_empty(value: Value) -> bool:
    """The `??` / `coalesce` test: null, "" and [] count as no value."""
    if value is None:
        return True
    if isinstance(value, str | list | tuple):
        return len(value) == 0
    return False


def equal(left: Value, right: Value) -> bool:
    """`==`: null is a value; bools never equal numbers; lists compare item by item."""
    if left is None or right is None:
        return left is right
    if isinstance(left, bool) or isinstance(right, bool):
        return type(left) is type(right) and left == right
    if isinstance(left, list | tuple) and isinstance(right, list | tuple):
        return list(left) == list(right)
    if isinstance(left, str) != isinstance(right, str):
        return False
    return bool(left == right)


def _ordered(left: Value, right: Value) -> bool:
    if isinstance(left, str) and isinstance(right, str):
        return True
    return (
        isinstance(left, int | Decimal)
        and isinstance(right, int | Decimal)
        and not isinstance(left, bool)
        and not isinstance(right, bool)
    )


def less(left: Value, right: Value) -> bool:
    return _ordered(left, right) and left < right  # type: ignore[operator]


def less_equal(left: Value, right: Value) -> bool:
    return _ordered(left, right) and left <= right  # type: ignore[operator]


def greater(left: Value, right: Value) -> bool:
    return _ordered(left, right) and left > right  # type: ignore[operator]


def greater_equal(left: Value, right: Value) -> bool:
    return _ordered(left, right) and left >= right  # type: ignore[operator]


def contains(item: Value, container: Value) -> bool:
    """`x in L`: membership in a list, substring test in text; null gives false."""
    if item is None or container is None:
        return False
    if isinstance(container, str):
        return isinstance(item, str) and item in container
    if isinstance(container, list | tuple):
        return any(equal(item, member) for member in container)
    return False


def text_in_list(item: str | None, container: ListValue | None) -> bool:
    """`x in L` when the checker knows x is text and L a list (the common case)."""
    return item is not None and container is not None and item in container


def text_in_text(item: str | None, container: str | None) -> bool:
    """`x in T` when both are text: a substring test."""
    return item is not None and container is not None and item in container


def any_matches(values: ListValue | None, search: Any) -> bool:
    """`L matches "re"` when L is a list: any value matches."""
    if values:
        for value in values:
            if search(value):
                return True
    return False


def text_matches(value: str | None, search: Any) -> bool:
    """`T matches "re"` when T is text."""
    return value is not None and bool(search(value))


def not_contains(item: Value, container: Value) -> bool:
    """`x not in L`: false (not true) when either operand is null."""
    if item is None or container is None:
        return False
    return not contains(item, container)


def matches(subject: Value, pattern: Any) -> bool:
    """`T matches "re"`: RE2 search; a list matches when any value does; null is false."""
    if isinstance(subject, str):
        return bool(pattern.search(subject))
    if isinstance(subject, list | tuple):
        search = pattern.search
        return any(isinstance(v, str) and search(v) for v in subject)
    return False


def plus(left: Value, right: Value) -> Value:
    """`+`: text + text, list + list, number + number; null with anything is null."""
    if left is None or right is None:
        return None
    if isinstance(left, str) and isinstance(right, str):
        return left + right
    if isinstance(left, list | tuple) and isinstance(right, list | tuple):
        return [*left, *right]
    if (
        isinstance(left, int | Decimal)
        and isinstance(right, int | Decimal)
        and not isinstance(left, bool)
        and not isinstance(right, bool)
    ):
        if isinstance(left, int) and isinstance(right, int):
            return left + right
        return ARITHMETIC.add(Decimal(left), Decimal(right))
    return None


def coalesce(left: Value, right: Value) -> Value:
    """`A ?? B`."""
    return right if is_empty(left) else left


def compact(values: Iterable[Value]) -> list[str]:
    """A list built by the language: null and "" dropped (lists never hold them)."""
    return [v for v in values if isinstance(v, str) and v != ""]


def distinct(values: Iterable[str]) -> tuple[str, ...]:
    """Distinct non-empty text values in first-seen order (set members)."""
    return tuple(dict.fromkeys(v for v in values if isinstance(v, str) and v != ""))


def format_number(value: Number) -> str | None:
    """§3: integers without a point, decimals without trailing zeros; None if unprintable."""
    try:
        if isinstance(value, int):
            return str(value)
        text = format(value, "f")
    except (ValueError, OverflowError, decimal.InvalidOperation):
        return None
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    if text in ("-0", ""):
        text = "0"
    return text


def to_text(value: Value) -> str | None:
    """`text(x)`: numbers per §3, bools as "true"/"false", text unchanged; lists: null."""
    if value is None or isinstance(value, list | tuple):
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    return format_number(value)


# ------------------------------------------------------------ regular expressions

Template: TypeAlias = tuple[str | int, ...]


class RegexError(ValueError):
    """A pattern RE2 rejects; the message is RE2's own."""


_OPTIONS = re2.Options()
_OPTIONS.log_errors = False
_UNANCHORED = re2._re2.RE2.Anchor.UNANCHORED


def _encode(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")  # lone surrogates stay data, not errors


def _decode(data: bytes) -> str:
    try:
        return data.decode("utf-8", "surrogatepass")
    except UnicodeDecodeError:  # a span cut through an invalid sequence
        return data.decode("utf-8", "replace")


class Regex:
    """An RE2 pattern with the three operations the language needs.

    Works on UTF-8 bytes and RE2's byte spans directly: the google-re2 wrapper's
    `search` converts every span to code-point offsets in Python, which costs about
    six times more than the match itself.
    """

    __slots__ = ("_match", "groups", "pattern")

    def __init__(self, pattern: str) -> None:
        try:
            compiled = re2.compile(pattern, _OPTIONS)
        except re2.error as error:
            detail = error.args[0] if error.args else "invalid pattern"
            if isinstance(detail, bytes):
                detail = detail.decode("utf-8", "replace")
            raise RegexError(str(detail)) from None
        self.pattern = pattern
        self.groups: int = compiled.groups
        self._match = compiled._regexp.Match

    def __repr__(self) -> str:
        return f"Regex({self.pattern!r})"

    def search(self, text: str) -> bool:
        """Whether the pattern matches anywhere in text."""
        data = text.encode("utf-8", "surrogatepass")
        start: int = self._match(_UNANCHORED, data, 0, len(data))[0][0]
        return start >= 0

    def group(self, text: str, index: int) -> str | None:
        """Group `index` (0: the whole match) of the first match, or None."""
        data = _encode(text)
        spans = self._match(_UNANCHORED, data, 0, len(data))
        start, end = spans[0] if index >= len(spans) else spans[index]
        if spans[0][0] < 0 or index >= len(spans) or start < 0:
            return None
        return _decode(data[start:end])

    def sub(self, text: str, template: Template) -> str:
        """Every non-overlapping match replaced by the expanded template."""
        data = _encode(text)
        size = len(data)
        out: list[bytes] = []
        pieces = [p.encode("utf-8", "surrogatepass") if isinstance(p, str) else p for p in template]
        position = last = 0
        while position <= size:
            spans = self._match(_UNANCHORED, data, position, size)
            start, end = spans[0]
            if start < 0:
                break
            out.append(data[last:start])
            for piece in pieces:
                if isinstance(piece, bytes):
                    out.append(piece)
                elif piece < len(spans) and spans[piece][0] >= 0:
                    out.append(data[spans[piece][0] : spans[piece][1]])
            last = end
            if end > start:
                position = end
            else:  # an empty match: step over one whole character
                position = end + 1
                while position < size and (data[position] & 0xC0) == 0x80:
                    position += 1
        out.append(data[last:])
        return _decode(b"".join(out))


def compile_regex(pattern: str) -> Regex:
    """Compile with RE2 (linear time on hostile input); raise RegexError when invalid."""
    return Regex(pattern)


def parse_template(repl: str) -> Template:
    """`\\N` (one digit) is group N, `\\\\` a backslash; any other backslash is literal."""
    parts: list[str | int] = []
    text: list[str] = []
    i = 0
    while i < len(repl):
        char = repl[i]
        if char == "\\" and i + 1 < len(repl):
            following = repl[i + 1]
            if following.isdigit() and following.isascii():
                if text:
                    parts.append("".join(text))
                    text = []
                parts.append(int(following))
                i += 2
                continue
            if following == "\\":
                text.append("\\")
                i += 2
                continue
        text.append(char)
        i += 1
    if text:
        parts.append("".join(text))
    return tuple(parts)


def template_max_group(repl: str) -> int:
    """The highest group a replacement template refers to (0 when none)."""
    return max((p for p in parse_template(repl) if isinstance(p, int)), default=0)


# -------------------------------------------------------- the stored user, context


def stored_scalar(
    user: Mapping[str, object] | None, name: str
) -> str | int | Decimal | bool | None:
    """`user.FIELD` for a single-valued field: null on creation, "" read as null.

    A store may hand back a float for a number column: it becomes the Decimal of its
    shortest spelling (the language has no floats)."""
    if user is None:
        return None
    value = user.get(name)
    if value is None or value == "" or isinstance(value, list | tuple):
        return None
    if isinstance(value, str | int | bool | Decimal):
        return value
    if isinstance(value, float) and math.isfinite(value):
        return number_literal(Decimal(repr(value)))
    return None


def stored_set(user: Mapping[str, object] | None, name: str) -> list[str] | None:
    """`user.SET`: null on creation, else the stored distinct values as a list (a Python
    set, which has no order, is read sorted)."""
    if user is None:
        return None
    value = user.get(name)
    if isinstance(value, set | frozenset):
        value = sorted(v for v in value if isinstance(v, str))
    if not isinstance(value, list | tuple):
        return []
    return list(distinct(value))


def context_value(context: object, name: str) -> str | None:
    value = getattr(context, name, None)
    return value if isinstance(value, str) and value else None
