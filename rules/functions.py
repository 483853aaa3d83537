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

from rules.values import (
    _MAX_INT_DIGITS,
    Number,
    Regex,
    RegexError,
    Value,
    compact,
    compile_regex,
    is_empty,
    parse_template,
    template_max_group,
    to_text,
)

__all__ = ["FUNCTIONS", "Regex", "RegexError", "Signature", "compile_regex", "template_max_group"]

ParamKind: TypeAlias = Literal["text", "list", "number", "scalar", "any", "regex"]
ResultType: TypeAlias = Literal["text", "list", "number", "bool", "same"]


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
