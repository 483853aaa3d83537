"""Token bytes → SAML XML bytes: raw XML, base64 (POST binding), deflate+base64 (redirect).

Sizes are bounded twice: the decoded bytes and the inflated bytes may not exceed
`max_bytes`; inflating is incremental (`zlib.decompressobj` with `max_length`) and
stops at the limit, so a deflate bomb costs at most `max_bytes` of memory.
"""

from __future__ import annotations

import base64
import binascii
import re
import zlib

from engine.base64text import strict_b64decode
from engine.postbody import form_field
from engine.token import TokenRejected

_WHITESPACE = b" \t\n\r\x0b\x0c"  # what `\s` matches in bytes
_B64_ALPHABET = re.compile(rb"\A[A-Za-z0-9+/\-_]*={0,2}\Z")
_BOM = b"\xef\xbb\xbf"


def _is_xml(data: bytes) -> bool:
    head = data.lstrip()[:1]
    return head == b"<" or data.startswith((b"\xff\xfe", b"\xfe\xff"))


def looks_like_saml(raw: bytes) -> bool:
    """A cheap guess for the intake dispatcher: XML, or base64 of XML / of deflated data.

    True for anything starting with `<` (after whitespace/BOM) and for base64 text that
    decodes to `<` or to a raw-deflate stream; False for compact JWTs (two dots) and TOML.
    """
    data = raw.removeprefix(_BOM).strip()
    if not data:
        return False
    if _is_xml(data):
        return True
    if data.count(b".") == 2 and data.startswith(b"ey"):
        return False
    compact = data[:4096].translate(None, _WHITESPACE)
    if not _B64_ALPHABET.match(compact[: len(compact) - len(compact) % 4] or b"x"):
        return False
    try:
        head = base64.b64decode(compact[:2048] + b"=" * (-len(compact[:2048]) % 4))
    except (binascii.Error, ValueError):
        return False
    if head.lstrip()[:1] == b"<":
        return True
    try:
        return zlib.decompressobj(-15).decompress(head, 16).lstrip()[:1] == b"<"
    except zlib.error:
        return False


def _too_large(size: int | str, max_bytes: int, what: str) -> TokenRejected:
    return TokenRejected("too-large", f"{what} is {size} bytes, over max_token_bytes {max_bytes}")


def inflate(data: bytes, max_bytes: int) -> bytes:
    """Raw-deflate `data` (redirect binding) into at most `max_bytes` bytes."""
    inflater = zlib.decompressobj(-15)
    out = bytearray()
    pending = data
    try:
        while True:
            chunk = inflater.decompress(pending, max_bytes + 1 - len(out))
            out += chunk
            if len(out) > max_bytes:
                raise _too_large(f"more than {max_bytes}", max_bytes, "the inflated token")
            pending = inflater.unconsumed_tail
            if not pending or not chunk:
                break
        if not inflater.eof:
            raise TokenRejected("malformed", "truncated deflate stream")
    except zlib.error as exc:
        raise TokenRejected("malformed", f"invalid deflate data: {exc}") from None
    return bytes(out)


def decode_saml(raw: bytes, max_bytes: int) -> bytes:
    """The SAML XML bytes of a token given as XML, base64, or deflate+base64.

    Raises TokenRejected("too-large") past `max_bytes` (as received, decoded or
    inflated) and TokenRejected("malformed") for anything that is none of the three.
    """
    if len(raw) > max_bytes:
        raise _too_large(len(raw), max_bytes, "the token as received")
    data = form_field(raw).removeprefix(_BOM).strip()
    if not data:
        raise TokenRejected("malformed", "empty token")
    if _is_xml(data):
        return data
    return xml_of_decoded(_b64decode(data), max_bytes)


def _b64decode(data: bytes) -> bytes:
    """Base64 or base64url text (whitespace anywhere) → bytes, in one pass when it is
    sound; TokenRejected("malformed") saying what is wrong when it is not."""
    decoded = strict_b64decode(data)
    if decoded is not None:
        return decoded
    # Say precisely what is wrong, as the checks below always have.
    compact = data.translate(None, _WHITESPACE)
    if not _B64_ALPHABET.match(compact):
        raise TokenRejected("malformed", "not XML, base64 or deflate+base64")
    if len(compact) % 4:
        raise TokenRejected("malformed", "truncated base64 (length is not a multiple of 4)")
    try:
        return base64.b64decode(compact.replace(b"-", b"+").replace(b"_", b"/"), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise TokenRejected("malformed", f"invalid base64: {exc}") from None


def xml_of_decoded(decoded: bytes, max_bytes: int) -> bytes:
    """The SAML XML of a token's base64-decoded bytes: XML as it is, else inflated
    (redirect binding). For intake, which decodes a base64 token once to tell its form
    and hands the decoded bytes on."""
    if len(decoded) > max_bytes:
        raise _too_large(len(decoded), max_bytes, "the decoded token")
    body = decoded.removeprefix(_BOM)
    if _is_xml(body):
        return body.strip()
    inflated = inflate(decoded, max_bytes).removeprefix(_BOM)
    if not _is_xml(inflated):
        raise TokenRejected("malformed", "the decoded token is not XML")
    return inflated.strip()
