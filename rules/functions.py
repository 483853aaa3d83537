"""The built-in functions of rules-language.md §6, and the signature table the checker uses.

Every function is total: null in gives null out (`count` gives 0), and no input makes
one raise. Text → text functions lift over lists (null and "" results are dropped).
Regular expressions go through RE2 only, compiled once at compile time: a function's
regex parameter receives the compiled pattern, never the pattern text.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Literal, TypeAlias

import re2

from rules.values import (
    _MAX_INT_DIGITS,
    ListValue,
    Number,
    Value,
    compact,
    is_empty,
    to_text,
)

ParamKind: TypeAlias = Literal["text", "list", "number", "scalar", "any", "regex"]
ResultType: TypeAlias = Literal["text", "list", "number", "bool", "same"]


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


# ------------------------------------------------------------------- text → text


def lower(t: str) -> str:
    return t.lower()


def upper(t: str) -> str:
    return t.upper()


def trim(t: str) -> str:
    return t.strip()


def replace(t: str, old: Value, new: Value) -> str | None:
    if not isinstance(old, str) or not isinstance(new, str):
        return None
    return t if old == "" else t.replace(old, new)


def substring_before(t: str, sep: Value) -> str | None:
    if not isinstance(sep, str):
        return None
    if sep == "":
        return t
    index = t.find(sep)
    return t if index < 0 else t[:index]


def substring_after(t: str, sep: Value) -> str | None:
    if not isinstance(sep, str):
        return None
    if sep == "":
        return t
    index = t.find(sep)
    return t if index < 0 else t[index + len(sep) :]


def _group_index(n: Value, groups: int) -> int | None:
    if isinstance(n, bool) or not isinstance(n, int | Decimal):
        return None
    if n != int(n) or n < 0 or n > groups:
        return None
    return int(n)


def regex_extract(t: str, pattern: Regex, n: Value = 1) -> str | None:
    """Group n (default 1; 0 is the whole match) of the first match, or null."""
    index = _group_index(n, pattern.groups)
    return None if index is None else pattern.group(t, index)


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


def regex_replace(t: str, pattern: Regex, repl: Value) -> str | None:
    """Every match replaced; `\\1` in the replacement is group 1 (missing groups: "")."""
    if not isinstance(repl, str):
        return None
    return pattern.sub(t, parse_template(repl))


def email_local(t: str) -> str | None:
    index = t.rfind("@")
    return None if index < 0 else t[:index]


def email_domain(t: str) -> str | None:
    index = t.rfind("@")
    return None if index < 0 else t[index + 1 :]


_HEX = "0123456789abcdefABCDEF"


def _dn_unescape(value: str) -> str:
    """RFC 4514 value escapes: `\\,` and friends, and `\\XX` UTF-8 hex pairs."""
    if "\\" not in value:
        return value
    out = bytearray()
    i = 0
    while i < len(value):
        char = value[i]
        if char == "\\" and i + 1 < len(value):
            pair = value[i + 1 : i + 3]
            if len(pair) == 2 and pair[0] in _HEX and pair[1] in _HEX:
                out.append(int(pair, 16))
                i += 3
                continue
            out.extend(value[i + 1].encode("utf-8", "surrogatepass"))
            i += 2
            continue
        out.extend(char.encode("utf-8", "surrogatepass"))
        i += 1
    return out.decode("utf-8", "replace")


def _split_dn(dn: str) -> list[str]:
    """Split at unescaped `,` (and `;`, the old separator) and at `+` (multi-valued RDNs)."""
    if "\\" not in dn and '"' not in dn:
        return dn.replace(";", ",").replace("+", ",").split(",")
    parts: list[str] = []
    current: list[str] = []
    quoted = False
    i = 0
    while i < len(dn):
        char = dn[i]
        if char == "\\" and i + 1 < len(dn):
            current.append(dn[i : i + 2])
            i += 2
            continue
        if char == '"':
            quoted = not quoted
        elif char in ",;+" and not quoted:
            parts.append("".join(current))
            current = []
            i += 1
            continue
        current.append(char)
        i += 1
    parts.append("".join(current))
    return parts


def dn_value(dn: str, attribute_type: Value) -> str | None:
    """The value of the first RDN of that type (case-insensitive) in an LDAP DN."""
    if not isinstance(attribute_type, str):
        return None
    wanted = attribute_type.strip().casefold()
    for part in _split_dn(dn):
        key, sep, raw = part.partition("=")
        if not sep or key.strip().casefold() != wanted:
            continue
        raw = raw.lstrip(" ")
        while raw.endswith(" ") and not raw.endswith("\\ "):
            raw = raw[:-1]
        if raw.startswith('"') and raw.endswith('"') and len(raw) >= 2:
            raw = raw[1:-1]
        value = _dn_unescape(raw)
        return value or None
    return None


_TRANSLITERATE = str.maketrans(
    {
        "ß": "ss",
        "æ": "ae",
        "ø": "o",
        "ł": "l",
        "đ": "d",
        "þ": "th",
        "Æ": "Ae",
        "Ø": "O",
        "Ł": "L",
        "Đ": "D",
        "Þ": "Th",
    }
)


def ascii_(t: str) -> str:
    """Transliterate the listed letters, strip diacritics (NFKD), drop other non-ASCII."""
    decomposed = unicodedata.normalize("NFKD", t.translate(_TRANSLITERATE))
    return decomposed.encode("ascii", "ignore").decode("ascii")


def truncate(t: str, n: Value) -> str | None:
    if isinstance(n, bool) or not isinstance(n, int | Decimal):
        return None
    if n <= 0:
        return ""
    return t if n >= len(t) else t[: int(n)]


# ------------------------------------------------------------------ other shapes


def split(t: Value, sep: Value) -> list[str] | None:
    """Pieces of t; empty pieces dropped (lists never hold ""); empty sep gives [t]."""
    if not isinstance(t, str) or not isinstance(sep, str):
        return None
    if sep == "":
        return compact([t])
    return compact(t.split(sep))


def first(values: Value) -> str | None:
    if isinstance(values, list | tuple) and values:
        return values[0]
    return None


def last(values: Value) -> str | None:
    if isinstance(values, list | tuple) and values:
        return values[-1]
    return None


def join(values: Value, sep: Value) -> str | None:
    """The non-empty values joined with sep; null when there are none."""
    if not isinstance(values, list | tuple) or not isinstance(sep, str):
        return None
    kept = compact(values)
    return sep.join(kept) if kept else None


def unique(values: Value) -> list[str] | None:
    if not isinstance(values, list | tuple):
        return None
    return list(dict.fromkeys(compact(values)))


def sort(values: Value) -> list[str] | None:
    if not isinstance(values, list | tuple):
        return None
    return sorted(compact(values))


def count(values: Value) -> int:
    return len(values) if isinstance(values, list | tuple) else 0


def starts_with(t: Value, prefix: Value) -> bool | None:
    if not isinstance(t, str) or not isinstance(prefix, str):
        return None
    return t.startswith(prefix)


def ends_with(t: Value, suffix: Value) -> bool | None:
    if not isinstance(t, str) or not isinstance(suffix, str):
        return None
    return t.endswith(suffix)


_NUMBER = Regex(r"^-?[0-9]+(\.[0-9]+)?$")


def number(t: Value) -> Number | None:
    """A number when t, trimmed, is `-?[0-9]+(\\.[0-9]+)?`; int when it has no point."""
    if not isinstance(t, str):
        return None
    text = t.strip()
    if not text.isascii() or not _NUMBER.search(text):
        return None
    if "." in text or len(text) > _MAX_INT_DIGITS:
        return Decimal(text)
    return int(text)


def bool_(t: Value) -> bool | None:
    if not isinstance(t, str):
        return None
    folded = t.strip().lower()
    return True if folded == "true" else False if folded == "false" else None


def text(x: Value) -> str | None:
    return to_text(x)


def coalesce(*values: Value) -> Value:
    for value in values:
        if not is_empty(value):
            return value
    return None


# ---------------------------------------------------------------- lifting, table


def lift(function: Callable[..., str | None]) -> Callable[..., Value]:
    """Make a text → text function total and lifting: null → null, list → list."""

    def lifted(t: Value, *args: Value) -> Value:
        if isinstance(t, str):
            return function(t, *args)
        if isinstance(t, list | tuple):
            return compact(function(v, *args) for v in t if isinstance(v, str))
        return None

    lifted.__name__ = function.__name__
    lifted.__doc__ = function.__doc__
    return lifted


def lift_list(values: ListValue, function: Callable[..., str | None], *args: Value) -> list[str]:
    """Apply a text function to every value of a list (the compiler's static lifting)."""
    return compact(function(v, *args) for v in values if isinstance(v, str))


@dataclass(frozen=True, slots=True)
class Signature:
    """What the checker needs: parameter kinds, how many trailing ones are optional,
    whether any count of arguments is allowed, whether the first argument lifts, and
    the result type ("same": the arguments' common type)."""

    name: str
    params: tuple[ParamKind, ...]
    result: ResultType
    implementation: Callable[..., Value]
    scalar: Callable[..., Value] | None = None  # the unlifted body, for lifting functions
    optional: int = 0
    variadic: bool = False

    @property
    def lifts(self) -> bool:
        return self.scalar is not None

    @property
    def min_args(self) -> int:
        return len(self.params) - self.optional

    @property
    def max_args(self) -> int | None:
        return None if self.variadic else len(self.params)


def _lifting(
    name: str,
    body: Callable[..., str | None],
    params: tuple[ParamKind, ...],
    optional: int = 0,
) -> Signature:
    return Signature(name, params, "text", lift(body), body, optional)


_SIGNATURES: Sequence[Signature] = (
    _lifting("lower", lower, ("text",)),
    _lifting("upper", upper, ("text",)),
    _lifting("trim", trim, ("text",)),
    _lifting("replace", replace, ("text", "text", "text")),
    _lifting("substring_before", substring_before, ("text", "text")),
    _lifting("substring_after", substring_after, ("text", "text")),
    _lifting("regex_extract", regex_extract, ("text", "regex", "number"), optional=1),
    _lifting("regex_replace", regex_replace, ("text", "regex", "text")),
    _lifting("email_local", email_local, ("text",)),
    _lifting("email_domain", email_domain, ("text",)),
    _lifting("dn_value", dn_value, ("text", "text")),
    _lifting("ascii", ascii_, ("text",)),
    _lifting("truncate", truncate, ("text", "number")),
    Signature("split", ("text", "text"), "list", split),
    Signature("first", ("list",), "text", first),
    Signature("last", ("list",), "text", last),
    Signature("join", ("list", "text"), "text", join),
    Signature("unique", ("list",), "list", unique),
    Signature("sort", ("list",), "list", sort),
    Signature("count", ("list",), "number", count),
    Signature("starts_with", ("text", "text"), "bool", starts_with),
    Signature("ends_with", ("text", "text"), "bool", ends_with),
    Signature("number", ("text",), "number", number),
    Signature("bool", ("text",), "bool", bool_),
    Signature("text", ("scalar",), "text", text),
    Signature("coalesce", ("any",), "same", coalesce, variadic=True),
)

FUNCTIONS: dict[str, Signature] = {s.name: s for s in _SIGNATURES}
