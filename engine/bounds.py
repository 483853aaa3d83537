"""What a token may hold before anything expensive reads it (product.md §2, cost before trust).

No token up to `max_token_bytes` may cost more than 50 ms of CPU or 64 MiB of memory
before its signature is verified. Size alone does not give that: a megabyte of markup
can be 250,000 elements, three thousand canonicalisation transforms, a claim whose
number is written out in a billion digits. So the counts are bounded first, each by a
cheap test that runs before the step it protects:

- XML, on the bytes before parsing: markup (`<`) and namespace declarations (`xmlns`);
- XML, on the tree, unless declarations² × markup is already under the bound: the
  namespaces in scope of each element (inclusive canonicalisation costs the square of
  their number at every element: two thousand declarations over two thousand elements
  cost a minute);
- XML nesting: libxml2 refuses documents nested deeper than 256 elements while parsing;
- XML signatures, before xmlsec: Transforms per Reference (`engine.saml.signature`);
- XML encryption, before any RSA operation: EncryptedKeys (`engine.saml.decrypt`);
- JSON (OIDC), while and right after decoding: values, nesting, the length of a
  flattened claim name, the plain decimal text of a number, and the characters a value
  may hold.

Legitimate tokens stay far below every bound: a SAML Response with three thousand
group values has about 6,000 `<`; Okta's two declarations per AttributeValue give
4,000 `xmlns` for two thousand values.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from typing import Any

from engine.token import TokenRejected

MAX_MARKUP = 20_000  # `<` in an XML token: elements, comments, processing instructions
MAX_NAMESPACE_DECLARATIONS = 5_000  # `xmlns` in an XML token
MAX_NAMESPACE_WORK = 1_000_000  # sum over elements of (namespaces in scope)²
MAX_TRANSFORMS = 2  # per signature Reference (product.md §2)
MAX_ENCRYPTED_KEYS = 4  # per EncryptedAssertion / EncryptedID
MAX_JSON_VALUES = 10_000  # objects, arrays, strings, numbers, booleans, nulls
MAX_JSON_DEPTH = 64  # nesting of objects and arrays
MAX_CLAIM_PATH = 1_024  # characters of a flattened claim name (`address.country`)
MAX_NUMBER_TEXT = 100  # characters of a number's plain decimal text (product.md §2)

# A NUL or a lone surrogate: text no store can hold (SQLite keeps the NUL, PostgreSQL
# refuses it; neither can encode a lone surrogate).
_UNHOLDABLE = re.compile("[\x00\ud800-\udfff]")


def unholdable(value: str, what: str) -> str | None:
    """Why `value` cannot be stored (it holds a NUL or a lone surrogate), or None."""
    if value.isascii() and "\x00" not in value:  # the common case, without the regex
        return None
    found = _UNHOLDABLE.search(value)
    if found is None:
        return None
    char = found.group()
    kind = "a NUL" if char == "\x00" else f"a lone surrogate (U+{ord(char):04X})"
    return f"{what} holds {kind}, which no store can hold"


def check_text(value: str, what: str) -> None:
    """`malformed` when a value or a name holds a NUL or a lone surrogate."""
    problem = unholdable(value, what)
    if problem is not None:
        raise TokenRejected("malformed", problem)


def check_xml_counts(data: bytes, text: str | None = None) -> tuple[int, int]:
    """`malformed` when the markup or namespace declarations pass their bounds; else
    the two counts (markup, declarations), for the checks that follow the parse.

    `data` is the document as received; `text` its decoded form when it is not
    ASCII-compatible (UTF-16), where byte counts would mislead.
    """
    markup = text.count("<") if text is not None else data.count(b"<")
    if markup > MAX_MARKUP:
        raise TokenRejected(
            "malformed",
            f"the XML holds {markup} tags, comments or instructions; at most {MAX_MARKUP} are read",
        )
    spaces = text.count("xmlns") if text is not None else data.count(b"xmlns")
    if spaces > MAX_NAMESPACE_DECLARATIONS:
        raise TokenRejected(
            "malformed",
            f"the XML declares {spaces} namespaces; at most {MAX_NAMESPACE_DECLARATIONS} are read",
        )
    return markup, spaces


_NUMBER = re.compile(r"-?(\d+)(?:\.(\d+))?(?:[eE]([+-]?\d+))?\Z")


def plain_number_length(text: str) -> int:
    """How many characters `text` (a JSON number) has written out in plain decimal,
    computed from its spelling (no Decimal: its exponent may be past Decimal's range)."""
    match = _NUMBER.match(text)
    if match is None:  # pragma: no cover - json only hands over valid numbers
        return len(text)
    whole, fraction, exponent = match.group(1), match.group(2) or "", match.group(3) or "0"
    digits = (whole + fraction).lstrip("0")
    scale = int(exponent) - len(fraction)  # value = digits × 10^scale
    if not digits:  # zero: "0", or "0.000…" to its scale
        digits = "0"
        scale = min(scale, 0)
    if scale >= 0:
        length = len(digits) + scale
    else:
        length = max(len(digits), -scale + 1) + 1  # digits, the point, a leading 0
    return length + text.startswith("-")


def json_number(text: str) -> int | Decimal:
    """A JSON number (`parse_int` / `parse_float` hook), refused past MAX_NUMBER_TEXT."""
    integer = "." not in text and "e" not in text and "E" not in text
    if len(text) > MAX_NUMBER_TEXT or (not integer and plain_number_length(text) > MAX_NUMBER_TEXT):
        raise ValueError(
            f"the number {text[:24]}{'…' if len(text) > 24 else ''} is more than "
            f"{MAX_NUMBER_TEXT} digits long written out"
        )
    if integer:
        return int(text)
    try:
        return Decimal(text)
    except InvalidOperation:  # a zero whose exponent is past Decimal's range (0E+9999…)
        raise ValueError(f"the number {text[:24]}… has an exponent out of range") from None


def check_json(value: Any) -> None:
    """Values, nesting, claim-name length and characters of decoded JSON (iteratively).

    Raises ValueError with what is wrong; the caller turns it into `malformed`.
    Numbers, booleans and nulls are never pushed: nothing about them can be wrong here
    (the values they add are counted with their container), so leaving them out keeps
    the walk, and the order in which problems are found, the same.
    """
    count = 1
    stack: list[tuple[Any, int, int]] = [(value, 1, 0)]
    pop, push = stack.pop, stack.append
    while stack:
        item, depth, path = pop()
        if isinstance(item, str):
            if not item.isascii() or "\x00" in item:
                _check_json_text(item, "a string")
        elif isinstance(item, dict):
            count += len(item)  # before walking into them: a flood is refused unread
            if count > MAX_JSON_VALUES:
                raise ValueError(f"more than {MAX_JSON_VALUES} values")
            if depth > MAX_JSON_DEPTH:
                raise ValueError(f"nested deeper than {MAX_JSON_DEPTH} levels")
            for key, inner in item.items():
                if not key.isascii() or "\x00" in key:
                    _check_json_text(key, "a claim name")
                inner_path = path + len(key) + (1 if path else 0)
                if inner_path > MAX_CLAIM_PATH:
                    raise ValueError(
                        f"a claim name (with the names it is nested in) is longer than "
                        f"{MAX_CLAIM_PATH} characters"
                    )
                if isinstance(inner, _WALKED):
                    push((inner, depth + 1, inner_path))
        elif isinstance(item, list):
            count += len(item)
            if count > MAX_JSON_VALUES:
                raise ValueError(f"more than {MAX_JSON_VALUES} values")
            if depth > MAX_JSON_DEPTH:
                raise ValueError(f"nested deeper than {MAX_JSON_DEPTH} levels")
            for inner in item:
                if isinstance(inner, _WALKED):
                    push((inner, depth + 1, path))


_WALKED = (str, dict, list)  # what check_json looks into


def json_within_bounds(data: bytes) -> bool:
    """True when JSON text this short and plain cannot break a bound check_json checks,
    so that decoding it need not be walked: no `\\u` escape (the only way a NUL or a
    lone surrogate gets into strict JSON text), no more than MAX_CLAIM_PATH bytes (a
    value or a name takes at least a byte, so neither the values nor a claim path can
    pass their bounds), and no more brackets than the nesting bound allows."""
    return (
        len(data) <= MAX_CLAIM_PATH
        and b"\\u" not in data
        and data.count(b"{") + data.count(b"[") <= MAX_JSON_DEPTH
    )


def _check_json_text(text: str, what: str) -> None:
    problem = unholdable(text, what)
    if problem is not None:
        raise ValueError(problem)
