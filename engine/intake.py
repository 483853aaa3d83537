"""Token intake's front door: recognise a token's form and hand it to its validator.

`read_token` is what `apply`, `explain`, `serve` and the TUI call. Forms (product.md §2
step 1): a SAML Response or Assertion as XML, as base64 (POST binding) or as
deflate+base64 (redirect binding); an OIDC ID token (compact JWT; a JWE is recognised
so that it is refused as `unsupported`); a TOML *sample*. Detection tolerates a UTF-8
BOM and surrounding whitespace, as tokens are pasted or piped, and the browser's POST
body itself: an `application/x-www-form-urlencoded` body is read for its
`SAMLResponse` (or, for OIDC, `id_token`) field, URL-decoded.

Order: the size limit first, for every form (`too-large`); then the form decides:
a sample needs `allow_samples` (`unsigned`), a SAML form needs a `saml2` connection and
a JWT an `oidc` one (`malformed`, naming the expected form); anything unrecognised is
`malformed` (on an `oidc` connection the OIDC decoder says precisely why).
"""

from __future__ import annotations

import base64
import binascii
import importlib
import re
import zlib
from datetime import datetime
from typing import Any, Literal, TypeAlias

from engine.config import Connection, load_toml
from engine.moments import utc
from engine.oidc import validate_id_token
from engine.oidc.compact import b64url_decode, json_object, strip_token
from engine.postbody import form_field
from engine.sample import load_sample
from engine.token import Token, TokenRejected

Form: TypeAlias = Literal["saml-xml", "saml-base64", "saml-deflate", "jwt", "sample", "unknown"]

_UTF16_XML = (b"\xff\xfe", b"\xfe\xff", b"<\x00", b"\x00<")
_BASE64 = re.compile(rb"[A-Za-z0-9+/_-]+={0,2}\Z")
_BASE64_HEAD = re.compile(rb"[A-Za-z0-9+/_-]+\Z")  # the head of a longer base64 text
_HEAD = 4096  # bytes of a base64 token enough to tell its form
_WHITESPACE = b" \t\n\r\x0b\x0c"  # what `\s` matches in bytes
_SAMPLE_HINT = re.compile(  # `subject =` or an attributes table, keys bare or quoted
    r"""^[ \t]*(?:["']?subject["']?[ \t]*=|\[[ \t]*["']?attributes|["']?attributes["']?[ \t]*[=.])""",
    re.MULTILINE,
)
_PEEK = 64  # bytes of inflated output enough to see the markup start

SAML_FORMS = "a SAML Response or Assertion (XML, base64 or deflate+base64)"
OIDC_FORM = "an OIDC ID token (compact JWT)"


def read_token(
    raw: bytes,
    connection: Connection,
    *,
    now: datetime,
    request_id: str | None = None,
    nonce: str | None = None,
    allow_samples: bool = False,
) -> Token:
    """Decode and validate one token for `connection`; raises TokenRejected(reason, msg).

    `request_id` is for SAML InResponseTo, `nonce` for OIDC; each is ignored by the other
    protocol. `allow_samples` is `--unsigned-samples`.
    """
    now = utc(now)
    if len(raw) > connection.max_token_bytes:
        raise TokenRejected(
            "too-large",
            f"expected at most {connection.max_token_bytes} bytes (max_token_bytes), "
            f"found {len(raw)}",
        )
    raw = form_field(raw)
    form, table = _detect(raw, parse_samples=allow_samples)
    if form == "sample":
        if not allow_samples:
            raise TokenRejected(
                "unsigned",
                "samples are accepted only with --unsigned-samples (a sample is an unsigned "
                "stand-in for a token, for rule testing only)",
            )
        return load_sample(raw, connection, parsed=table)
    if form == "jwt" or (form == "unknown" and connection.protocol == "oidc"):
        if connection.protocol != "oidc":
            raise TokenRejected(
                "malformed",
                f"connection {connection.id!r} is saml2: expected {SAML_FORMS}, found a JWT",
            )
        return validate_id_token(raw, connection, now=now, nonce=nonce)
    if form == "unknown":
        raise TokenRejected(
            "malformed",
            f"expected {SAML_FORMS}, found none of these (nor a JWT or a TOML sample)",
        )
    if connection.protocol != "saml2":
        found = {"saml-xml": "XML", "saml-base64": "base64 SAML", "saml-deflate": "deflated SAML"}
        raise TokenRejected(
            "malformed",
            f"connection {connection.id!r} is oidc: expected {OIDC_FORM}, found {found[form]}",
        )
    # Imported on use: the SAML stack (xmlsec) is heavy and OIDC/sample intake never needs
    # it; by name, so that this module type-checks on its own.
    saml = importlib.import_module("engine.saml")
    data = raw if raw.startswith(_UTF16_XML) else strip_token(raw)
    token: Token = saml.validate_saml(data, connection, now=now, request_id=request_id)
    return token


def detect_form(raw: bytes) -> Form:
    """Which form `raw` is in, from its shape alone (nothing is validated here)."""
    return _detect(form_field(raw))[0]


def _detect(raw: bytes, *, parse_samples: bool = True) -> tuple[Form, dict[str, Any] | None]:
    """The form, and for a sample its parsed TOML when it parsed (so that intake reads a
    sample's TOML once)."""
    if raw.startswith(_UTF16_XML):
        return "saml-xml", None
    data = strip_token(raw)
    if data.startswith(b"<"):
        return "saml-xml", None
    if _is_jwt(data):
        return "jwt", None
    # Base64 SAML before samples: it is the common case, told from its head, and no
    # sample (TOML, with `subject =` or `[attributes]`) is base64 of XML.
    form = _base64_form(data)
    if form != "unknown":
        return form, None
    sample, table = _sample_table(data, parse=parse_samples)
    if sample:
        return "sample", table
    return "unknown", None


def _is_jwt(data: bytes) -> bool:
    parts = data.split(b".")
    if len(parts) not in (3, 5):
        return False
    try:
        header = b64url_decode(parts[0].decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        return False
    return json_object(header) is not None


def _sample_table(data: bytes, *, parse: bool) -> tuple[bool, dict[str, Any] | None]:
    """Whether `data` is a sample, and (with `parse`) its TOML table when it parses.

    Without `parse` (no --unsigned-samples: a sample is refused as `unsigned` whatever it
    holds) the shape decides and nothing is parsed: a megabyte of TOML costs tomllib the
    best part of a second."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return False, None
    if not _SAMPLE_HINT.search(text):  # a sample needs `subject =` (or `[attributes]`):
        return False, None  # nothing else is parsed as TOML, at any cost
    if not parse:
        return True, None
    try:
        table = load_toml(text)
    except (ValueError, RecursionError):  # TOMLDecodeError, an over-long integer, nesting
        # Broken TOML that reads like a sample: let the sample parser say what is wrong.
        return True, None
    if "subject" in table or isinstance(table.get("attributes"), dict):
        return True, table
    return False, None


def _base64_form(data: bytes) -> Form:
    """SAML in base64 or deflate+base64, told from the head of `data` alone (its first
    _HEAD bytes): the token is decoded once, later, by the SAML decoder, which checks
    all of it."""
    long = len(data) > _HEAD
    compact = data[:_HEAD].translate(None, _WHITESPACE)
    if long:
        compact = compact[: len(compact) - len(compact) % 4]
        if not compact or not _BASE64_HEAD.match(compact):
            return "unknown"
    elif not compact or not _BASE64.match(compact):
        return "unknown"
    standard = compact.replace(b"-", b"+").replace(b"_", b"/")
    try:
        decoded = base64.b64decode(standard + b"=" * (-len(standard) % 4), validate=True)
    except (binascii.Error, ValueError):
        return "unknown"
    if decoded.startswith(_UTF16_XML) or strip_token(decoded).startswith(b"<"):
        return "saml-base64"
    try:
        inflated = zlib.decompressobj(-zlib.MAX_WBITS).decompress(decoded, _PEEK)
    except zlib.error:
        return "unknown"
    if inflated.startswith(_UTF16_XML) or strip_token(inflated).startswith(b"<"):
        return "saml-deflate"
    return "unknown"
