"""The browser's POST body as a token: `SAMLResponse=…&RelayState=…` or `id_token=…`.

An application that saves what the browser posted to its ACS or redirect URI hands
jitprov an `application/x-www-form-urlencoded` body; intake reads the token field out of
it. At most 16 fields are looked at.
"""

from __future__ import annotations

import re
from urllib.parse import unquote_to_bytes

from engine.oidc.compact import strip_token

_FORM = re.compile(rb"\A[A-Za-z_][A-Za-z0-9_.-]*=[^\s]*\Z")
_FORM_FIELDS = ("SAMLResponse", "id_token")
_MAX_FORM_FIELDS = 16


def form_field(raw: bytes) -> bytes:
    """The token inside a URL-encoded POST body (`SAMLResponse=…&RelayState=…`, or
    `id_token=…`), or `raw` itself when it is not such a body.

    A value with no `%` escape is taken as it is (a pasted `SAMLResponse=` + base64
    keeps its `+`); one with escapes is URL-decoded as a browser encoded it.
    """
    data = strip_token(raw)
    if b"=" not in data or not _FORM.match(data):  # (no `=`: no field, and no regex run)
        return raw
    fields = dict(
        part.split(b"=", 1) for part in data.split(b"&", _MAX_FORM_FIELDS) if b"=" in part
    )
    for name in _FORM_FIELDS:
        value = fields.get(name.encode())
        if value is not None:
            return unquote_to_bytes(value.replace(b"+", b" ")) if b"%" in value else value
    return raw
