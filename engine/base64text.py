"""A token's base64 text decoded in one pass, for intake and the SAML decoder alike.

`strict_b64decode` takes base64 or base64url, with whitespace anywhere (a POSTed value,
a pasted token wrapped at 76 columns), and gives the bytes, or None when the text is not
sound base64 (then the caller says precisely what is wrong, on its slow path). Sound
means: the base64 alphabet only (or base64url's `-` `_`), padding only at the end, and
a length that is a multiple of 4 (binascii's strict mode alone accepts `==` after a
complete group).
"""

from __future__ import annotations

import binascii

_WHITESPACE = b" \t\n\r\x0b\x0c"  # what `\s` matches in bytes
_TO_STANDARD = bytes.maketrans(b"-_", b"+/")  # base64url → base64


def strict_b64decode(data: bytes) -> bytes | None:
    """The bytes of sound base64 (or base64url) text, whitespace ignored; else None."""
    if not len(data) % 4:
        try:  # as posted, most often: one line, the standard alphabet
            return binascii.a2b_base64(data, strict_mode=True)
        except binascii.Error:
            pass
    standard = data.translate(_TO_STANDARD, _WHITESPACE)  # one pass for both
    if len(standard) % 4:
        return None
    try:
        return binascii.a2b_base64(standard, strict_mode=True)
    except binascii.Error:
        return None
