"""Fuzz target `saml`: any bytes through `read_token` on two saml2 connections.

The connections are the engine tests' (tests/engine/saml_fixtures.py): the test IdP's
real certificate (and the demo workspace's), the SP decryption key, at the fixtures'
fixed clock. One is lenient (`require_signed = "either"`, recipient checked); the other
strict (`both`, `require_in_response_to` with a request id, `check_cert_dates`,
`subject_from`, SHA-1 allowed, no recipient), so that each input takes both sides of
those branches.

The custom mutator re-signs (and sometimes encrypts) half of its mutants with the test
IdP key, so mutated Assertions get past the signature checks into the deep code
(conditions, dates, attributes); the other half stay as mutated, for the decoders,
the parser and the pre-signature bounds.

Invariants: the only exception is TokenRejected, with a product.md §2 reason code and
a claimed subject free of NUL and lone surrogates; an accepted token holds no NUL or
lone surrogate, no empty value, a NameID (without subject_from), the connection's
issuer; every call stays within 50 ms of CPU and 64 MiB.
"""

from __future__ import annotations

import base64
import binascii
import functools
import random
import zlib
from collections.abc import Callable, Iterator
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
            key=lambda c: f"{detect_form(data)}:{_reason(c)}",
        )
        if isinstance(result.error, TokenRejected):
            check_rejected(NAME, result.error)
        else:
            check_token(NAME, result.value, connection, "saml")


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
    "utf16": lambda: fx.make_token(signing="assertion").decode().encode("utf-16"),
}


# ------------------------------------------------------------------- custom mutator

_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)


def mutate(data: bytes, max_size: int, seed: int) -> bytes:
    """libFuzzer's mutation; for half the mutants, then re-signed (see the docstring)."""
    import atheris

    rnd = random.Random(seed)
    mutated: bytes = atheris.Mutate(data, max_size)
    if rnd.random() < 0.5:
        return mutated
    try:
        resigned = resign(mutated, rnd)
    except Exception:
        return mutated
    return resigned if resigned is not None and len(resigned) <= max_size else mutated


@functools.cache
def _keys() -> tuple[bytes, bytes, bytes]:
    return fx.IDP_KEY.read_bytes(), fx.IDP_CERT.read_bytes(), fx.SP_CERT.read_bytes()


def resign(data: bytes, rnd: random.Random) -> bytes | None:
    """`data`'s Assertion and/or Response signed anew by the test IdP (old direct
    Signatures removed), the Assertion sometimes encrypted for the SP; None when `data`
    is not a Response or Assertion that parses."""
    xml = data if data.lstrip()[:1] == b"<" else decoded(data)
    if xml is None:
        return None
    root = etree.fromstring(xml, _PARSER)
    if root.getroottree().docinfo.doctype:
        return None
    if root.tag == f"{SAMLP}Response":
        response, assertion = root, root.find(f"{SAML}Assertion")
    elif root.tag == f"{SAML}Assertion":
        response, assertion = None, root
    else:
        return None
    key, cert, sp_cert = _keys()
    mode = rnd.choice(("assertion", "response", "both"))
    if assertion is not None:
        for signature in assertion.findall(f"{DS}Signature"):
            assertion.remove(signature)
        if mode != "response" or response is None:
            m.sign(assertion, key, cert)
        if response is not None and rnd.random() < 0.2:
            cipher = rnd.choice(("aes256-cbc", "aes256-gcm"))
            response.replace(assertion, m.encrypt(assertion, sp_cert, cipher=cipher))  # type: ignore[arg-type]
    if response is not None:
        for signature in response.findall(f"{DS}Signature"):
            response.remove(signature)
        if mode != "assertion":
            m.sign(response, key, cert)
    return bytes(etree.tostring(root.getroottree(), xml_declaration=True, encoding="UTF-8"))
