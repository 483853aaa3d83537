"""Fuzz target `saml`: any bytes through `read_token` on two saml2 connections.

The connections are the engine tests' (tests/engine/saml_fixtures.py): the test IdP's
real certificate (and the demo workspace's), the SP decryption key, at the fixtures'
fixed clock. One is lenient (`require_signed = "either"`, recipient checked); the other
strict (`both`, `require_in_response_to` with a request id, `check_cert_dates`,
`subject_from`, SHA-1 allowed, no recipient), so that each input takes both sides of
those branches.

The custom mutator signs two thirds of its mutants again with the test IdP key (an
encrypted Assertion decrypted first; sometimes encrypted again for the SP, sometimes
base64- or deflate-encoded): half of those are byte mutations, half mutations of the
tree (a value — often an odd date —, an attribute, an element deleted, copied or
moved). So mutated Assertions get past the signature checks into the deep code
(conditions, dates, attributes); the other third stay as mutated, for the decoders,
the parser and the pre-signature bounds.

Invariants: the only exception is TokenRejected, with a product.md §2 reason code and
a claimed subject free of NUL and lone surrogates; an accepted token holds no NUL or
lone surrogate, no empty value, a NameID (without subject_from), the connection's
issuer, and its document is what §2 accepts (`check_accepted_document`); every call
stays within 50 ms of CPU and 64 MiB.
"""

from __future__ import annotations

import base64
import binascii
import functools
import random
import zlib
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from lxml import etree

from engine.config import Connection
from engine.intake import detect_form, read_token
from engine.saml import mint as m
from engine.saml.xml import NS
from engine.sample import Sample
from engine.token import Token, TokenRejected
from tests.engine import saml_fixtures as fx
from tests.fuzz.harness import (
    FUZZ_LIMITS,
    ROOT,
    Call,
    Finding,
    Limits,
    check_rejected,
    check_token,
    corpus_tokens,
    run,
)

NAME = "saml"
NOW = fx.LATER
REQUEST_ID = "_request-1"
DEMO_CERT = ROOT / "examples" / "demo" / "certs" / "idp-test.crt"
SAML = f"{{{NS['saml']}}}"
SAMLP = f"{{{NS['samlp']}}}"
DS = f"{{{NS['ds']}}}"


@functools.cache
def connections() -> tuple[tuple[Connection, str | None], ...]:
    """(connection, request id) pairs every input is read with."""
    lenient = fx.connection(
        id="lenient", require_signed="either", certificates=(fx.IDP_CERT, DEMO_CERT)
    )
    strict = fx.connection(
        id="strict",
        require_signed="both",
        require_in_response_to=True,
        check_cert_dates=True,
        allow_sha1=True,
        subject_from="email",
        recipient=None,
    )
    return ((lenient, None), (strict, REQUEST_ID))


def check(data: bytes, limits: Limits = FUZZ_LIMITS) -> None:
    """Read `data` on each connection; raise Finding when an invariant breaks."""
    for connection, request_id in connections():

        def call(conn: Connection = connection, rid: str | None = request_id) -> Token:
            return read_token(data, conn, now=NOW, request_id=rid)

        result = run(
            NAME,
            f"read_token({connection.id})",
            call,
            limits=limits,
            allowed=(TokenRejected,),
            key=lambda c: f"read_token:{detect_form(data)}:{_reason(c)}",
        )
        if isinstance(result.error, TokenRejected):
            check_rejected(NAME, result.error)
        else:
            check_token(NAME, result.value, connection, "saml")
            check_accepted_document(data, result.value, connection)


TRANSFORMS = frozenset(
    {
        "http://www.w3.org/2000/09/xmldsig#enveloped-signature",
        "http://www.w3.org/TR/2001/REC-xml-c14n-20010315",
        "http://www.w3.org/TR/2001/REC-xml-c14n-20010315#WithComments",
        "http://www.w3.org/2001/10/xml-exc-c14n#",
        "http://www.w3.org/2001/10/xml-exc-c14n#WithComments",
        "http://www.w3.org/2006/12/xml-c14n11",
        "http://www.w3.org/2006/12/xml-c14n11#WithComments",
    }
)


def check_accepted_document(data: bytes, token: Token, connection: Connection) -> None:
    """What product.md §2 says an accepted document must be, read here independently:
    one Assertion or EncryptedAssertion outside Advice; unique IDs; every Signature with
    one Reference to its parent's ID (or URI="" under the root), at most two Transforms,
    all standard; no HMAC, no SHA-1 unless allowed; at most one Signature directly in
    the Response and in the Assertion; the signatures `require_signed` asks for; the
    NameID's full text as the subject."""

    def fail(key: str, detail: str) -> Finding:
        return Finding(NAME, "accepted", f"{detail} (accepted token)", key)

    stripped = data.lstrip(b"\xef\xbb\xbf \t\r\n")
    xml = data if stripped[:1] == b"<" or data.startswith((b"\xff\xfe", b"\xfe\xff")) else None
    xml = xml if xml is not None else decoded(stripped.strip())
    try:
        root = etree.fromstring(xml, _PARSER) if xml is not None else None
    except (etree.XMLSyntaxError, ValueError):
        root = None
    if root is None:
        return  # not read the way intake reads it (e.g. a raw-deflate quirk): no oracle
    outside = [
        e for e in root.iter() if not any(a.tag == f"{SAML}Advice" for a in e.iterancestors())
    ]
    carried = [e for e in outside if e.tag in (f"{SAML}Assertion", f"{SAML}EncryptedAssertion")]
    if len(carried) != 1:
        raise fail("assertions", f"{len(carried)} Assertion/EncryptedAssertion outside Advice")
    ids = [v for e in root.iter() if isinstance(e.tag, str) and (v := e.get("ID")) is not None]
    if len(ids) != len(set(ids)):
        raise fail("ids", "an ID is used twice")
    for signature in (e for e in outside if e.tag == f"{DS}Signature"):
        parent = signature.getparent()
        references = signature.findall(f"{DS}SignedInfo/{DS}Reference")
        if len(references) != 1 or parent is None:
            raise fail("references", f"a Signature with {len(references)} References")
        uri = references[0].get("URI")
        if not (uri == "#" + (parent.get("ID") or "\x00") or (uri == "" and parent is root)):
            raise fail("reference-uri", f"Reference URI {uri!r} is not its parent's ID")
        transforms = references[0].findall(f"{DS}Transforms/{DS}Transform")
        if len(transforms) > 2 or any(t.get("Algorithm") not in TRANSFORMS for t in transforms):
            algorithms = [t.get("Algorithm") for t in transforms]
            raise fail("transforms", f"Transforms {algorithms}")
        methods = [
            m.get("Algorithm") or ""
            for m in signature.iter(f"{DS}SignatureMethod", f"{DS}DigestMethod")
        ]
        if any("hmac" in a for a in methods):
            raise fail("hmac", f"an HMAC signature: {methods}")
        if not connection.allow_sha1 and any(a.endswith("sha1") for a in methods):
            raise fail("sha1", f"SHA-1 without allow_sha1: {methods}")
    assertion = carried[0]
    signed = {
        "response": root.tag == f"{SAMLP}Response" and _direct_signatures(root) == 1,
        "assertion": assertion.tag == f"{SAML}Assertion" and _direct_signatures(assertion) == 1,
    }
    for element in (root, assertion):
        if _direct_signatures(element) > 1:
            raise fail("signatures", f"{_direct_signatures(element)} Signatures in one element")
    if assertion.tag != f"{SAML}Assertion":
        return  # encrypted: the rest is inside
    wanted = connection.require_signed
    if (wanted in ("response", "both") and not signed["response"]) or (
        wanted in ("assertion", "both") and not signed["assertion"]
    ):
        raise fail("require-signed", f"require_signed {wanted}, signed {signed}")
    if wanted == "either" and not any(signed.values()):
        raise fail("require-signed", "nothing signed")
    skew = timedelta(seconds=connection.clock_skew)
    windows = [assertion.find(f"{SAML}Conditions")]
    windows += [
        c.find(f"{SAML}SubjectConfirmationData")
        for c in assertion.iterfind(f"{SAML}Subject/{SAML}SubjectConfirmation")
        if c.get("Method") == "urn:oasis:names:tc:SAML:2.0:cm:bearer"
    ]
    for window in (w for w in windows if w is not None):
        for name, sign in (("NotBefore", -1), ("NotOnOrAfter", 1)):
            when = _instant(window.get(name))
            try:
                if when is not None:
                    _ = when + sign * skew  # overflows past the years 1-9999
            except OverflowError:
                raise fail(
                    "date-range",
                    f"{name} {window.get(name)} is outside the years 1-9999 once the skew "
                    "is applied",
                ) from None
    name_id = assertion.find(f"{SAML}Subject/{SAML}NameID")
    if name_id is not None and connection.subject_from is None:
        expected = _full_text(name_id).strip() or None
        if token.name_id != expected:
            raise fail("name-id-text", f"subject {token.name_id!r}, NameID text {expected!r}")


def _instant(text: str | None) -> datetime | None:
    """An xs:dateTime with a zone as an aware datetime; None when Python cannot read it
    (then this oracle says nothing about it)."""
    if not text:
        return None
    try:
        when = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    if when.tzinfo is None:
        return None
    try:
        return when.astimezone(UTC)
    except OverflowError:
        return when  # already past the edge in UTC; the skew check will say so


def _direct_signatures(element: Any) -> int:
    return sum(1 for child in element if child.tag == f"{DS}Signature")


def _full_text(element: Any) -> str:
    """Every text node below `element`, comments and processing instructions left out
    (but the text after them kept)."""
    parts = [element.text or ""] if isinstance(element.tag, str) else []
    for child in element:
        if isinstance(child.tag, str):
            parts.append(_full_text(child))
        parts.append(child.tail or "")
    return "".join(parts)


def _reason(call: Call) -> str:
    return getattr(call.error, "reason", "accepted")


# ----------------------------------------------------------------- seeds and hostile


UNICODE_SAMPLE = Sample(
    subject="Zoë.Ωmega@example.com",
    subject_format="urn:oasis:names:tc:SAML:2.0:nameid-format:persistent",
    token_id="_token-unicode",
    attributes={
        "email": ["zoe@example.com"],
        "memberOf": ["CN=ü,OU=Apps", "", "CN=a&b <c>"],
        "urn:oid:2.5.4.42": ["Zoë"],
        "empty": [""],
    },
)


def seeds() -> Iterator[bytes]:
    """Tokens minted by the test fixtures (valid on both connections at NOW), the demo
    samples, the shared corpus's SAML tokens (base64 ones also decoded), and HOSTILE."""
    for signing in ("assertion", "response", "both", "none"):
        for encoding in ("xml", "base64", "deflate"):
            yield fx.make_token(encoding, signing=signing, in_response_to=REQUEST_ID)
    for cipher in ("aes256-cbc", "aes256-gcm"):
        yield fx.make_token(
            signing="both", encrypt_for=fx.SP_CERT, cipher=cipher, in_response_to=REQUEST_ID
        )
    yield fx.make_token(signing="both", sample=UNICODE_SAMPLE, in_response_to=REQUEST_ID)
    yield fx.make_token(signing="assertion", key=fx.OTHER_KEY, cert=fx.OTHER_CERT)
    for path in sorted((ROOT / "examples" / "demo" / "samples").glob("*.xml")):
        yield path.read_bytes()
    for path in corpus_tokens("saml-response"):
        raw = path.read_bytes()
        yield raw
        xml = decoded(raw)
        if xml is not None:
            yield xml
    for make in HOSTILE.values():
        yield make()


def decoded(raw: bytes) -> bytes | None:
    """The XML inside a base64 or deflate+base64 token, else None."""
    compact = b"".join(raw.split())
    try:
        data = base64.b64decode(compact + b"=" * (-len(compact) % 4), validate=True)
    except (binascii.Error, ValueError):
        return None
    if data.lstrip()[:1] == b"<":
        return data
    try:
        data = zlib.decompressobj(-15).decompress(data, 1 << 22)
    except zlib.error:
        return None
    return data if data.lstrip()[:1] == b"<" else None


def _set_times(not_before: str | None, not_after: str) -> Callable[[Any], None]:
    def change(assertion: Any) -> None:
        for node in assertion.iter(f"{SAML}Conditions", f"{SAML}SubjectConfirmationData"):
            node.set("NotOnOrAfter", not_after)
            if not_before is not None and node.tag == f"{SAML}Conditions":
                node.set("NotBefore", not_before)

    return change


def _many_attributes(count: int) -> Callable[[Any], None]:
    def change(assertion: Any) -> None:
        statement = assertion.find(f"{SAML}AttributeStatement")
        for i in range(count):
            attribute = etree.SubElement(statement, f"{SAML}Attribute", Name=f"a{i}")
            etree.SubElement(attribute, f"{SAML}AttributeValue").text = "v"

    return change


def _many_transforms(count: int) -> Callable[[Any], None]:
    def change(root: Any) -> None:
        # (by comparing tags: lxml's iter(tag) misses the nodes xmlsec made)
        transforms = next(e for e in root.iter() if e.tag == f"{DS}Transforms")
        for _ in range(count):
            etree.SubElement(
                transforms, f"{DS}Transform", Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#"
            )

    return change


def _billion_laughs() -> bytes:
    entities = '<!ENTITY a0 "lol">' + "".join(
        f'<!ENTITY a{i} "{("&a" + str(i - 1) + ";") * 10}">' for i in range(1, 10)
    )
    return (
        f'<?xml version="1.0"?><!DOCTYPE r [{entities}]>'
        f'<samlp:Response xmlns:samlp="{NS["samlp"]}">&a9;</samlp:Response>'
    ).encode()


def _deep(depth: int) -> bytes:
    return (
        f'<samlp:Response xmlns:samlp="{NS["samlp"]}">'.encode()
        + b"<x>" * depth
        + b"</x>" * depth
        + b"</samlp:Response>"
    )


def _many_assertions(count: int) -> bytes:
    one = fx.make_token(signing="assertion")
    start = one.index(b"<saml:Assertion")
    end = one.index(b"</saml:Assertion>") + len(b"</saml:Assertion>")
    return one[:start] + one[start:end] * count + one[end:]


def _deflate_bomb() -> bytes:
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    body = compressor.compress(b"<" + b" " * (16 << 20)) + compressor.flush()
    return base64.b64encode(body)


# Hand-written hostile inputs (replayed by test_regressions.py, and seeds for the fuzzer).
HOSTILE: dict[str, Callable[[], bytes]] = {
    "billion-laughs": _billion_laughs,
    "deep-nesting": lambda: _deep(20000),
    "many-assertions": lambda: _many_assertions(100),
    "deflate-bomb": _deflate_bomb,
    "many-transforms": lambda: fx.make_token(signing="assertion", after_sign=_many_transforms(500)),
    "many-attributes-signed": lambda: fx.make_token(
        signing="assertion", assertion=_many_attributes(4000)
    ),
    "year-9999-signed": lambda: fx.make_token(
        signing="assertion",
        assertion=_set_times("0001-01-01T00:00:00Z", "9999-12-31T23:59:59Z"),
    ),
    "year-10000-signed": lambda: fx.make_token(
        signing="assertion", assertion=_set_times(None, "10000-01-01T00:00:00Z")
    ),
    # Not SAML: intake's form detection reads any text as TOML first (tomllib's cost for
    # dotted keys grows with the square of their depth).
    "toml-dotted-key": lambda: b"a" + b".a" * 6000 + b" = 1\n",
    # Text that reads like a sample, a megabyte of it: refused as `unsigned` (no
    # --unsigned-samples), but only after tomllib has read all of it.
    "toml-sample-flood": lambda: b'subject = "a"\n[attributes]\nx = [' + b"1," * 524_270 + b"]\n",
    "utf16": lambda: fx.make_token(signing="assertion").decode().encode("utf-16"),
}


# ------------------------------------------------------------------- custom mutator

_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)


def mutate(data: bytes, max_size: int, seed: int) -> bytes:
    """A third of the mutants are libFuzzer's byte mutations as they are; a third are
    then re-signed; a third are mutations of the document tree (a value, an attribute,
    an element deleted, copied or moved), re-signed. See the module docstring."""
    import atheris

    rnd = random.Random(seed)
    choice = rnd.random()
    out = None
    if choice >= 1 / 3:
        try:
            if choice < 2 / 3:
                out = resign(bytes(atheris.Mutate(data, max_size)), rnd, tree=False)
            else:
                out = resign(data, rnd, tree=True)
        except Exception:
            out = None
    if out is None or len(out) > max_size:
        return bytes(atheris.Mutate(data, max_size))
    return out


@functools.cache
def _keys() -> tuple[bytes, bytes, bytes]:
    return fx.IDP_KEY.read_bytes(), fx.IDP_CERT.read_bytes(), fx.SP_CERT.read_bytes()


def resign(data: bytes, rnd: random.Random, *, tree: bool) -> bytes | None:
    """`data` (an EncryptedAssertion in it decrypted first), with `tree` mutated as a
    tree, its Assertion and/or Response signed anew by the test IdP (old direct
    Signatures removed), the Assertion sometimes encrypted for the SP, sometimes
    base64- or deflate-encoded; None when `data` is not a Response or Assertion."""
    xml = data if data.lstrip()[:1] == b"<" else decoded(data)
    if xml is None:
        return None
    root = etree.fromstring(xml, _PARSER)
    if root.getroottree().docinfo.doctype:
        return None
    key, cert, sp_cert = _keys()
    for holder in list(root.iter(f"{SAML}EncryptedAssertion")):
        _decrypt(holder)
    if tree:
        for _ in range(rnd.choice((1, 1, 2, 3))):
            _tree_mutation(root, rnd)
    if root.tag == f"{SAMLP}Response":
        response, assertion = root, root.find(f"{SAML}Assertion")
    elif root.tag == f"{SAML}Assertion":
        response, assertion = None, root
    else:
        return None
    mode = rnd.choice(("assertion", "response", "both", "both", "none"))
    if assertion is not None:
        for signature in assertion.findall(f"{DS}Signature"):
            assertion.remove(signature)
        if mode in ("assertion", "both") or (response is None and mode != "none"):
            m.sign(assertion, key, cert)
        if response is not None and rnd.random() < 0.2:
            cipher = rnd.choice(("aes256-cbc", "aes256-gcm"))
            response.replace(assertion, m.encrypt(assertion, sp_cert, cipher=cipher))  # type: ignore[arg-type]
    if response is not None:
        for signature in response.findall(f"{DS}Signature"):
            response.remove(signature)
        if mode in ("response", "both"):
            m.sign(response, key, cert)
    out = bytes(etree.tostring(root.getroottree(), xml_declaration=True, encoding="UTF-8"))
    return m.encode(out, rnd.choice(("xml",) * 8 + ("base64", "deflate")))


def _decrypt(holder: Any) -> None:
    """Replace an EncryptedAssertion by its Assertion (decrypted with the SP key)."""
    import xmlsec

    data = holder.find(f"{{{NS['xenc']}}}EncryptedData")
    manager = xmlsec.KeysManager()
    manager.add_key(xmlsec.Key.from_memory(_sp_key(), xmlsec.constants.KeyDataFormatPem, None))
    decrypted = xmlsec.EncryptionContext(manager).decrypt(data)
    if isinstance(decrypted, etree._Element) and decrypted.tag == f"{SAML}Assertion":
        holder.getparent().replace(holder, decrypted)


@functools.cache
def _sp_key() -> bytes:
    return fx.SP_KEY.read_bytes()


TIMES = (
    "2024-05-01T12:00:30Z",
    "2024-05-01T12:02:30Z",
    "2024-05-01T12:02:31Z",
    "2024-05-01T11:58:30Z",
    "2024-05-01T11:58:29.999999Z",
    "2024-05-01T12:00:30.123456789+00:00",
    "2024-05-01T26:00:30+14:00",
    "2024-05-01T12:00:30-00:00",
    "2024-05-01T12:00:30",
    "2024-02-30T12:00:00Z",
    "2024-05-01T23:59:60Z",
    "9999-12-31T23:59:59Z",
    "0001-01-01T00:00:00Z",
    "0000-01-01T00:00:00Z",
    "-0001-01-01T00:00:00Z",
    "10000-01-01T00:00:00Z",
    "+2024-05-01T12:00:30Z",
    "2024-05-01T12:00:30Z ",
    "٢٠٢٤-05-01T12:00:30Z",
)
VALUES = (
    "",
    " ",
    fx.ISSUER,
    fx.AUDIENCE,
    fx.RECIPIENT,
    REQUEST_ID,
    "_token-1",
    "#_token-1",
    "urn:oasis:names:tc:SAML:2.0:status:Responder",
    "urn:oasis:names:tc:SAML:2.0:nameid-format:transient",
    "urn:oasis:names:tc:SAML:2.0:cm:holder-of-key",
    "xs:base64Binary",
    "eidas:CurrentFamilyNameType",
    "true",
    "Ωmega\u200b",
    "x" * 300,
)
ATTRIBUTES = (
    "ID",
    "NotBefore",
    "NotOnOrAfter",
    "InResponseTo",
    "Recipient",
    "Destination",
    "Format",
    "Method",
    "Name",
    "FriendlyName",
    "{http://www.w3.org/2001/XMLSchema-instance}type",
    "{http://www.w3.org/2001/XMLSchema-instance}nil",
)


_TIMED = {
    f"{SAML}Conditions": ("NotBefore", "NotOnOrAfter"),
    f"{SAML}SubjectConfirmationData": ("NotBefore", "NotOnOrAfter"),
    f"{SAML}AuthnStatement": ("AuthnInstant", "SessionNotOnOrAfter"),
    f"{SAML}Assertion": ("IssueInstant",),
    f"{SAMLP}Response": ("IssueInstant",),
}


def _new_value(old: str, rnd: random.Random) -> str:
    import atheris

    pick = rnd.random()
    if pick < 0.3:
        return rnd.choice(TIMES)
    if pick < 0.55:
        return rnd.choice(VALUES)
    raw = bytes(atheris.Mutate(old.encode("utf-8"), len(old) + 32))
    text = raw.decode("utf-8", "replace")
    return "".join(c for c in text if c >= " " or c in "\t\n\r")


def _tree_mutation(root: Any, rnd: random.Random) -> None:
    """One change to the tree: a value, an attribute, an element deleted, copied, moved."""
    import copy

    elements = [e for e in root.iter() if isinstance(e.tag, str)]
    element = rnd.choice(elements)
    op = rnd.randrange(8)
    timed = [e for e in elements if e.tag in _TIMED]
    if op >= 6 and timed:  # a quarter of the changes: a time (the checks are many)
        element = rnd.choice(timed)
        element.set(rnd.choice(_TIMED[element.tag]), rnd.choice(TIMES))
    elif op == 0 and element.attrib:
        name = rnd.choice(list(element.attrib))
        element.set(name, _new_value(element.get(name) or "", rnd))
    elif op == 1:
        element.set(rnd.choice(ATTRIBUTES), _new_value("", rnd))
    elif op == 2 and not len(element):
        element.text = _new_value(element.text or "", rnd)
    elif op == 3 and element is not root:
        element.getparent().remove(element)
    elif op == 4 and element is not root:
        element.addnext(copy.deepcopy(element))
    elif op == 5:
        other = rnd.choice(elements)
        if other is not element and not any(a is element for a in other.iterancestors()):
            other.insert(rnd.randint(0, len(other)), element)
