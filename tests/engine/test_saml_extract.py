"""What validate_saml reads: attribute merging, full-text values, bare Assertions,
EncryptedID, and the decode front door."""

from __future__ import annotations

import base64
import sys
import zlib
from pathlib import Path
from urllib.parse import quote

import pytest
from lxml import etree

from engine.saml import decode_saml, looks_like_saml, validate_saml
from engine.saml import mint as m
from engine.saml.xml import SAML
from engine.token import TokenRejected

if str(Path(__file__).parent) not in sys.path:  # tests/engine is not an importable package
    sys.path.insert(0, str(Path(__file__).parent))
from saml_fixtures import (
    AT,
    IDP_CERT,
    IDP_KEY,
    LATER,
    SAMPLE,
    SP_CERT,
    connection,
    find,
    make_token,
)

XSI_NIL = "{http://www.w3.org/2001/XMLSchema-instance}nil"


def _attributes(*specs: tuple[str | None, str | None, list[str | None]]):
    def build(assertion: etree._Element) -> None:
        statement = find(assertion, "saml:AttributeStatement")
        for child in list(statement):
            statement.remove(child)
        for name, friendly, values in specs:
            attribute = etree.SubElement(statement, f"{SAML}Attribute")
            if name:
                attribute.set("Name", name)
            if friendly:
                attribute.set("FriendlyName", friendly)
            for value in values:
                node = etree.SubElement(attribute, f"{SAML}AttributeValue")
                if value is None:
                    node.set(XSI_NIL, "true")
                else:
                    node.text = value

    return build


def _read(mutator) -> dict[str, list[str]]:
    return validate_saml(make_token(assertion=mutator), connection(), now=LATER).attributes


def test_name_wins_and_friendly_name_is_reachable() -> None:
    attrs = _read(
        _attributes(
            ("urn:oid:0.9.2342.19200300.100.1.3", "mail", ["from-oid@example.com"]),
            ("mail", None, ["by-name@example.com"]),
            ("urn:oid:2.5.4.42", "givenName", ["Jane"]),
        )
    )
    assert attrs["mail"] == ["by-name@example.com"]
    assert attrs["urn:oid:0.9.2342.19200300.100.1.3"] == ["from-oid@example.com"]
    assert attrs["givenName"] == ["Jane"]
    assert attrs["urn:oid:2.5.4.42"] == ["Jane"]


def test_same_name_and_same_friendly_name_are_merged() -> None:
    attrs = _read(
        _attributes(
            ("groups", None, ["a"]),
            ("groups", None, ["b", "c"]),
            ("urn:x:1", "role", ["r1"]),
            ("urn:x:2", "role", ["r2"]),
        )
    )
    assert attrs["groups"] == ["a", "b", "c"]
    assert attrs["role"] == ["r1", "r2"]


def test_empty_and_nil_values_are_dropped() -> None:
    attrs = _read(_attributes(("groups", None, ["", "a", None, "  ", "b"]), ("empty", None, [""])))
    assert attrs["groups"] == ["a", "b"]
    assert attrs["empty"] == []


def test_comments_never_truncate_and_nested_markup_gives_text() -> None:
    def build(assertion: etree._Element) -> None:
        name_id = find(assertion, "saml:Subject/saml:NameID")
        name_id.text = "jdoe"
        comment = etree.Comment(" injected ")
        comment.tail = "@example.com.evil.example"
        name_id.append(comment)
        value = find(assertion, ".//saml:AttributeValue")
        value.text = "admin"
        del value.attrib["{http://www.w3.org/2001/XMLSchema-instance}type"]  # mixed content
        value.append(etree.Comment("x"))
        value[-1].tail = "-not"
        nested = etree.SubElement(value, "{urn:x}b")
        nested.text = "-really"

    token = validate_saml(make_token(assertion=build), connection(), now=LATER)
    assert token.name_id == "jdoe@example.com.evil.example"
    assert token.attributes["email"] == ["admin-not-really"]


def test_cdata_is_text() -> None:
    raw = make_token()
    raw = raw.replace(
        b">jdoe@example.com</saml:NameID>", b"><![CDATA[jdoe@]]>example.com</saml:NameID>"
    )
    # The CDATA section changes no canonical byte: the signature still verifies.
    assert validate_saml(raw, connection(), now=LATER).name_id == "jdoe@example.com"


def _bare(signed: bool) -> bytes:
    assertion = m.build_assertion(SAMPLE, connection(), AT)
    if signed:
        m.sign(assertion, IDP_KEY.read_bytes(), IDP_CERT.read_bytes())
    return etree.tostring(assertion)


@pytest.mark.parametrize("required", ["assertion", "response", "either", "both"])
def test_bare_assertion_is_accepted_signed(required: str) -> None:
    token = validate_saml(_bare(True), connection(require_signed=required), now=LATER)
    assert token.name_id == SAMPLE.subject


def test_bare_assertion_must_be_signed() -> None:
    with pytest.raises(TokenRejected) as caught:
        validate_saml(_bare(False), connection(require_signed="response"), now=LATER)
    assert caught.value.reason == "unsigned"


def test_encrypted_name_id_is_decrypted() -> None:
    def encrypt_name_id(assertion: etree._Element) -> None:
        name_id = find(assertion, "saml:Subject/saml:NameID")
        subject = name_id.getparent()
        index = subject.index(name_id)
        subject.remove(name_id)
        subject.insert(index, m.encrypt(name_id, SP_CERT.read_bytes(), wrapper="EncryptedID"))

    token = validate_saml(make_token(assertion=encrypt_name_id), connection(), now=LATER)
    assert token.name_id == SAMPLE.subject


def test_decode_forms() -> None:
    xml = make_token()
    deflated = zlib.compressobj(9, zlib.DEFLATED, -15)
    redirect = base64.b64encode(deflated.compress(xml) + deflated.flush())
    for raw in (
        xml,
        base64.b64encode(xml),
        redirect,
        base64.encodebytes(xml),
        b"\xef\xbb\xbf" + xml,
    ):
        assert looks_like_saml(raw)
        assert decode_saml(raw, 1 << 20) == xml.strip()
    posted = b"SAMLResponse=" + quote(base64.b64encode(xml).decode(), safe="").encode()
    assert decode_saml(posted, 1 << 20) == xml.strip()
    assert not looks_like_saml(b"eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln")
    assert not looks_like_saml(b'subject = "x"\n')


def test_inflating_stops_at_the_limit() -> None:
    deflated = zlib.compressobj(9, zlib.DEFLATED, -15)
    body = b"<a>" + b"x" * 100_000 + b"</a>"
    raw = base64.b64encode(deflated.compress(body) + deflated.flush())
    with pytest.raises(TokenRejected) as caught:
        decode_saml(raw, 50_000)
    assert caught.value.reason == "too-large"
    assert decode_saml(raw, len(body)) == body
