"""Decoding an OIDC ID token's compact serialization (RFC 7515 §7.1) without trusting it.

Only structure is checked here: three base64url segments, a JSON-object header with a
string `alg`, a JSON-object payload. A five-segment JWE is recognised (to be refused as
`unsupported`, not `malformed`). JSON is read strictly: duplicate member names (a
parser-differential trick), `NaN`/`Infinity`, non-UTF-8 text and nesting deeper than
MAX_DEPTH levels are `malformed`.
Decimal numbers are read as `Decimal` so their text survives exactly (rules-language §3).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from engine.token import TokenRejected

_SEGMENT = re.compile(r"[A-Za-z0-9_-]*\Z")
_WHITESPACE = b" \t\r\n\f\v"
MAX_DEPTH = 64  # nesting of JSON objects/arrays; deeper is `malformed` (no recursion limits hit)
BOM = b"\xef\xbb\xbf"


@dataclass(frozen=True, slots=True)
class Compact:
    """A structurally sound JWS: its text, decoded header and claims, and signature."""

    text: str
    header: dict[str, Any]
    claims: dict[str, Any]
    signature: bytes


def strip_token(raw: bytes) -> bytes:
    """The token without a UTF-8 BOM and surrounding whitespace (as pasted or POSTed)."""
    data = raw.strip(_WHITESPACE)
    while data.startswith(BOM):
        data = data[len(BOM) :].strip(_WHITESPACE)
    return data


def b64url_decode(segment: str) -> bytes:
    """Strict unpadded base64url (RFC 7515 §2); ValueError when it is not."""
    if not _SEGMENT.match(segment) or len(segment) % 4 == 1:
        raise ValueError("not base64url")
    try:
        return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    except (binascii.Error, ValueError) as exc:  # pragma: no cover - the regex guards
        raise ValueError("not base64url") from exc


def json_object(data: bytes) -> dict[str, Any] | None:
    """`data` as a strict JSON object, or None when it is not one."""
    try:
        text = data.decode("utf-8")
        value = json.loads(
            text,
            object_pairs_hook=_no_duplicates,
            parse_float=Decimal,
            parse_constant=_no_constant,
        )
    except (ValueError, RecursionError):
        return None
    if not isinstance(value, dict) or _depth(value) > MAX_DEPTH:
        return None
    return value


def _depth(value: Any) -> int:
    """How deeply `value` nests arrays and objects (iteratively: no recursion limit)."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            deepest = max(deepest, depth)
            if depth > MAX_DEPTH:
                break
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)
    return deepest


def decode_compact(raw: bytes) -> Compact:
    """Split and decode a compact JWS; raises TokenRejected `malformed` / `unsupported`."""
    data = strip_token(raw)
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError:
        raise TokenRejected(
            "malformed", "expected a compact JWT (base64url segments), found non-ASCII bytes"
        ) from None
    parts = text.split(".")
    if len(parts) == 5 and _segment_json(parts[0]) is not None:
        raise TokenRejected(
            "unsupported",
            "expected a signed ID token (JWS, 3 segments), found an encrypted one (JWE, 5 "
            "segments); encrypted ID tokens are not supported",
        )
    if len(parts) != 3:
        raise TokenRejected(
            "malformed",
            f"expected a compact JWT of 3 dot-separated segments, found {len(parts)}",
        )
    header = _segment_json(parts[0])
    if header is None:
        raise TokenRejected("malformed", "JWT header: expected base64url of a JSON object")
    alg = header.get("alg")
    if not isinstance(alg, str) or not alg:
        raise TokenRejected("malformed", f"JWT header: expected an alg string, found {_show(alg)}")
    claims = _segment_json(parts[1])
    if claims is None:
        raise TokenRejected("malformed", "JWT payload: expected base64url of a JSON object")
    try:
        signature = b64url_decode(parts[2])
    except ValueError:
        raise TokenRejected("malformed", "JWT signature: expected base64url") from None
    return Compact(text, header, claims, signature)


def _segment_json(segment: str) -> dict[str, Any] | None:
    try:
        return json_object(b64url_decode(segment))
    except ValueError:
        return None


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"duplicate member {key!r}")
        result[key] = value
    return result


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _show(value: object) -> str:
    return "none" if value is None else json.dumps(value, default=str)[:80]
