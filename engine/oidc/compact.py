"""Decoding an OIDC ID token's compact serialization (RFC 7515 §7.1) without trusting it.

Only structure is checked here: three base64url segments, a JSON-object header with a
string `alg`, a JSON-object payload. A five-segment JWE is recognised (to be refused as
`unsupported`, not `malformed`). JSON is read strictly: duplicate member names (a
parser-differential trick), `NaN`/`Infinity`, non-UTF-8 text and nesting deeper than
bounds (engine.bounds: values, nesting, claim-name length, numbers longer than 100
digits written out, NULs and lone surrogates) are `malformed`.
Decimal numbers are read as `Decimal` so their text survives exactly (rules-language §3).
"""

from __future__ import annotations

import binascii
import json
import re
import threading
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from engine.bounds import MAX_JSON_VALUES, check_json, json_number, json_within_bounds
from engine.token import TokenRejected

_SEGMENT = re.compile(r"[A-Za-z0-9_-]*\Z")
_WHITESPACE = b" \t\r\n\f\v"
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
    padded = segment.replace("-", "+").replace("_", "/") + "=" * (-len(segment) % 4)
    try:
        return binascii.a2b_base64(padded)  # (base64.urlsafe_b64decode, less its wrapping)
    except (binascii.Error, ValueError) as exc:  # pragma: no cover - the regex guards
        raise ValueError("not base64url") from exc


def json_object(data: bytes) -> dict[str, Any] | None:
    """`data` as a strict JSON object within the bounds, or None when it is not one."""
    try:
        return parse_json_object(data)
    except ValueError:
        return None


class _Reader(threading.local):
    """A strict JSON decoder, one per thread (building one costs more than a small
    token's decoding), counting the members and numbers decoded so far so that a flood
    stops while it is read."""

    def __init__(self) -> None:
        self.seen = 0
        self.decoder = json.JSONDecoder(
            object_pairs_hook=self.members,
            parse_float=self.number,
            parse_int=self.number,
            parse_constant=_no_constant,
        )

    def members(self, pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        self.seen += len(pairs)
        if self.seen > MAX_JSON_VALUES:
            raise ValueError(f"more than {MAX_JSON_VALUES} values")
        result = dict(pairs)
        if len(result) != len(pairs):
            return _no_duplicates(pairs)  # raises, naming the first duplicate
        return result

    def number(self, text: str) -> int | Decimal:
        self.seen += 1
        if self.seen > MAX_JSON_VALUES:
            raise ValueError(f"more than {MAX_JSON_VALUES} values")
        return json_number(text)

    def read(self, text: str) -> Any:
        """`json.loads(text)` with this decoder (and json.loads's own BOM check)."""
        if text.startswith("\ufeff"):
            raise json.JSONDecodeError("Unexpected UTF-8 BOM (decode using utf-8-sig)", text, 0)
        self.seen = 0
        return self.decoder.decode(text)


def parse_json_object(data: bytes) -> dict[str, Any]:
    """`data` as a strict JSON object within engine.bounds; ValueError says what is wrong."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError("not UTF-8") from None
    try:
        value = _reader.read(text)
    except RecursionError:
        raise ValueError("nested too deeply") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"not JSON ({exc.msg} at character {exc.pos})") from None
    if not isinstance(value, dict):
        raise ValueError(f"expected a JSON object, found {type(value).__name__}")
    if not json_within_bounds(data):  # else nothing check_json looks for can be there
        check_json(value)
    return value


def decode_compact(raw: bytes, *, header: dict[str, Any] | None = None) -> Compact:
    """Split and decode a compact JWS; raises TokenRejected `malformed` / `unsupported`.

    `header`: the first segment already decoded as a JSON object, by a caller that read
    it from the same bytes (intake, telling the token's form), so it is not read again."""
    data = strip_token(raw)
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError:
        raise TokenRejected(
            "malformed", "expected a compact JWT (base64url segments), found non-ASCII bytes"
        ) from None
    parts = text.split(".")
    if len(parts) == 5 and (header is not None or _is_json_segment(parts[0])):
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
    if header is None:
        header = _segment_json(parts[0], "JWT header")
    alg = header.get("alg")
    if not isinstance(alg, str) or not alg:
        raise TokenRejected("malformed", f"JWT header: expected an alg string, found {_show(alg)}")
    claims = _segment_json(parts[1], "JWT payload")
    try:
        signature = b64url_decode(parts[2])
    except ValueError:
        raise TokenRejected("malformed", "JWT signature: expected base64url") from None
    return Compact(text, header, claims, signature)


def _is_json_segment(segment: str) -> bool:
    try:
        return json_object(b64url_decode(segment)) is not None
    except ValueError:
        return False


def _segment_json(segment: str, what: str) -> dict[str, Any]:
    """A segment's JSON object; `malformed` naming the segment and what is wrong."""
    try:
        data = b64url_decode(segment)
    except ValueError:
        raise TokenRejected("malformed", f"{what}: expected base64url") from None
    try:
        return parse_json_object(data)
    except ValueError as exc:
        raise TokenRejected(
            "malformed", f"{what}: expected base64url of a JSON object: {exc}"
        ) from None


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


_reader = _Reader()  # after _no_constant, which its decoder takes
