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
from typing import Any, Literal, NamedTuple, TypeAlias

from engine.base64text import strict_b64decode
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
_START = 64  # bytes enough to tell base64 from TOML or prose
# The first _START bytes (matched with that end) are base64, maybe padded at the end.
_BASE64_START = re.compile(rb"[A-Za-z0-9+/_\-\s]*={0,2}\s*\Z")

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
    form, table, decoded, header = _detect(raw, parse_samples=allow_samples)
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
        return validate_id_token(raw, connection, now=now, nonce=nonce, header=header)
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
    token: Token
    if decoded is not None:  # base64 decoded once, here: the validator takes it as it is
        token = saml.validate_decoded(decoded, connection, now=now, request_id=request_id)
        return token
    data = raw if raw.startswith(_UTF16_XML) else strip_token(raw)
    token = saml.validate_saml(data, connection, now=now, request_id=request_id)
    return token


def detect_form(raw: bytes) -> Form:
    """Which form `raw` is in, from its shape alone (nothing is validated here)."""
    return _detect(form_field(raw))[0]


class _Detected(NamedTuple):
    form: Form
    table: dict[str, Any] | None = None  # a sample's TOML, when it parsed
    decoded: bytes | None = None  # base64 SAML: the whole token, decoded (once)
    header: dict[str, Any] | None = None  # a JWT's header, read (once)


_UNKNOWN = _Detected("unknown")


def _detect(raw: bytes, *, parse_samples: bool = True) -> _Detected:
    """The form; for a sample its parsed TOML when it parsed (so that intake reads a
    sample's TOML once); for base64 SAML the decoded bytes (so that nothing decodes the
    token twice).

    Decided from the first bytes wherever they decide: `<` is XML; a JWT has two or four
    dots; base64 SAML is decoded whole, once, and told from what it decodes to. Only
    what none of these is gets looked at as a TOML sample.
    """
    if raw.startswith(_UTF16_XML):
        return _Detected("saml-xml")
    data = strip_token(raw)
    if not data:
        return _UNKNOWN
    if data[:1] == b"<":
        return _Detected("saml-xml")
    if b"." in data and data.count(b".") in (2, 4):
        header = _jwt_header(data)
        if header is not None:
            return _Detected("jwt", header=header)
    # Base64 SAML before samples: it is the common case, and no sample (TOML, with
    # `subject =` or `[attributes]`) is base64 of XML.
    found = _decoded_saml(data)
    if found is not None:
        return found
    form = _base64_form(data)
    if form != "unknown":
        return _Detected(form)
    sample, table = _sample_table(data, parse=parse_samples)
    if sample:
        return _Detected("sample", table)
    return _UNKNOWN


def _jwt_header(data: bytes) -> dict[str, Any] | None:
    """The JOSE header of a compact JWS or JWE (3 or 5 segments, the first a base64url
    JSON object), or None when `data` is not one."""
    parts = data.split(b".")
    if len(parts) not in (3, 5):
        return None
    try:
        header = b64url_decode(parts[0].decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        return None
    return json_object(header)


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


def _decoded_saml(data: bytes) -> _Detected | None:
    """Base64 (or base64url) SAML, decoded whole in one pass: its form and the decoded
    bytes, handed to the SAML validator as they are. None when `data` does not decode
    as a whole (wrapped oddly, a bad character, a truncation) or not to SAML: then
    `_base64_form` judges it from its head, as before, and the SAML decoder says what
    is wrong with it."""
    if not _BASE64_START.match(data, 0, _START):  # TOML, prose: not base64 at all
        return None
    decoded = strict_b64decode(data)
    if decoded is None:
        return None
    if decoded.startswith(_UTF16_XML) or strip_token(decoded).startswith(b"<"):
        return _Detected("saml-base64", decoded=decoded)
    try:
        inflated = zlib.decompressobj(-zlib.MAX_WBITS).decompress(decoded, _PEEK)
    except zlib.error:
        return None
    if inflated.startswith(_UTF16_XML) or strip_token(inflated).startswith(b"<"):
        return _Detected("saml-deflate", decoded=decoded)
    return None


def _base64_form(data: bytes) -> Form:
    """SAML in base64 or deflate+base64, told from the head of `data` alone (its first
    _HEAD bytes), for a token `_decoded_saml` could not decode whole: the SAML decoder
    then checks all of it, and says what is wrong."""
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
