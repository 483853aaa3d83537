"""Every SAML reason code, each on a token that is valid except for that one defect."""

from __future__ import annotations

import base64
import copy
import sys
import zlib
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import xmlsec
from lxml import etree
from xmlsec import constants as xc

from engine.saml import mint as m
from engine.saml import validate_saml
from engine.saml.xml import DS, SAML, SAMLP
from engine.token import TokenRejected

if str(Path(__file__).parent) not in sys.path:  # tests/engine is not an importable package
    sys.path.insert(0, str(Path(__file__).parent))
from saml_fixtures import (
    AT,
    ATTRIBUTES,
    AUDIENCE,
    IDP_CERT,
    LATER,
    OTHER_CERT,
    OTHER_KEY,
    RECIPIENT,
    SP_CERT,
    connection,
    find,
    make_response_tree,
    make_token,
)


def reject(raw: bytes, reason: str, *, request_id: str | None = None, now=LATER, **conn):
    with pytest.raises(TokenRejected) as caught:
        validate_saml(raw, connection(**conn), now=now, request_id=request_id)
    assert caught.value.reason == reason, caught.value.message
    return caught.value.message


def test_the_good_token_validates() -> None:
    token = validate_saml(make_token(), connection(), now=LATER)
    assert token.kind == "saml"
    assert token.name_id == "jdoe@example.com"
    assert token.issuer == "https://idp.example.org/saml"
    assert token.attributes == ATTRIBUTES
    assert token.token_id == "_token-1"
    assert token.expires_at == AT + timedelta(minutes=5, seconds=120)


# --- too-large, malformed, dtd ---------------------------------------------------------


def test_too_large_as_received() -> None:
    message = reject(make_token(), "too-large", max_token_bytes=1000)
    assert "over max_token_bytes 1000" in message


def test_too_large_five_mib_response_with_default_limit() -> None:
    """python3-saml gap: it accepts a 5 MiB response; the default limit is 1 MiB."""
    big = {"blob": ["x" * (5 * 1024 * 1024)]}
    raw = make_token(assertion=lambda a: _add_attribute(a, "blob", big["blob"][0]))
    reject(raw, "too-large")


def test_too_large_deflate_bomb_stops_at_the_limit() -> None:
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    body = b"<a>" + b" " * (20 * 1024 * 1024) + b"</a>"
    bomb = base64.b64encode(compressor.compress(body) + compressor.flush())
    assert len(bomb) < 1024 * 1024
    reject(bomb, "too-large")


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"not a token at all",
        b"<unclosed",
        b"QUJD!!",
        b"PHNhbWxwOlJlc3Bvbn",
        base64.b64encode(b"\x78\x9c\x01\x02"),
        b"<html><body/></html>",
    ],
    ids=[
        "empty",
        "text",
        "broken-xml",
        "bad-base64",
        "truncated-base64",
        "bad-deflate",
        "not-saml",
    ],
)
def test_malformed(raw: bytes) -> None:
    reject(raw, "malformed")


def test_two_assertions_are_malformed() -> None:
    def twice(response: etree._Element) -> None:
        extra = copy.deepcopy(find(response, "saml:Assertion"))
        extra.set("ID", "_second")
        response.append(extra)

    assert "found 2" in reject(make_token(response=twice), "malformed")


@pytest.mark.parametrize(
    ("path", "what"),
    [
        ("saml:Issuer", "Issuer"),
        ("saml:Subject", "Subject"),
        ("saml:Subject/saml:NameID", "NameID"),
        ("saml:Subject/saml:SubjectConfirmation", "bearer"),
    ],
)
def test_missing_required_element_is_malformed(path: str, what: str) -> None:
    def drop(assertion: etree._Element) -> None:
        node = find(assertion, path)
        node.getparent().remove(node)

    assert what in reject(make_token(assertion=drop), "malformed")


def test_missing_bearer_not_on_or_after_is_malformed() -> None:
    """python3-saml gap: it accepts a bearer SubjectConfirmationData without NotOnOrAfter."""

    def drop(assertion: etree._Element) -> None:
        del find(assertion, ".//saml:SubjectConfirmationData").attrib["NotOnOrAfter"]

    assert "NotOnOrAfter" in reject(make_token(assertion=drop), "malformed")


def test_missing_nameid_is_fine_with_subject_from() -> None:
    def drop(assertion: etree._Element) -> None:
        node = find(assertion, "saml:Subject/saml:NameID")
        node.getparent().remove(node)

    token = validate_saml(make_token(assertion=drop), connection(subject_from="email"), now=LATER)
    assert token.name_id is None
    assert token.attributes["email"] == ["jdoe@example.com"]


XXE = b"""<?xml version="1.0"?>
<!DOCTYPE r [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<samlp:Response xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol">&xxe;</samlp:Response>"""

LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol">
<!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
<!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
<!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
<!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
<!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
<!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
<!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">]>
<samlp:Response xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol">&lol9;</samlp:Response>"""


@pytest.mark.parametrize(
    "raw",
    [XXE, LAUGHS, base64.b64encode(XXE), base64.b64encode(LAUGHS), XXE.decode().encode("utf-16")],
    ids=["xxe", "laughs", "xxe-b64", "laughs-b64", "xxe-utf16"],
)
def test_dtd_and_entities_are_refused_before_expansion(raw: bytes) -> None:
    import resource
    import time

    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    reject(raw, "dtd")
    assert time.perf_counter() - started < 0.5
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 50_000  # KiB


def test_doctype_inside_a_valid_token_is_refused() -> None:
    raw = make_token()
    raw = raw.replace(b"?>", b'?>\n<!DOCTYPE samlp:Response [<!ENTITY e "x">]>', 1)
    reject(raw, "dtd")


# --- idp-error, decryption-failed --------------------------------------------------------


def test_idp_error_status_before_looking_for_the_assertion() -> None:
    def fail(response: etree._Element) -> None:
        code = find(response, "samlp:Status/samlp:StatusCode")
        code.set("Value", "urn:oasis:names:tc:SAML:2.0:status:Responder")
        etree.SubElement(
            code, f"{SAMLP}StatusCode", Value="urn:oasis:names:tc:SAML:2.0:status:AuthnFailed"
        )
        response.remove(find(response, "saml:Assertion"))

    message = reject(make_token(signing="none", response=fail), "idp-error")
    assert "Responder" in message and "AuthnFailed" in message


def test_decryption_failed_wrong_sp_key() -> None:
    from saml_fixtures import DATA

    raw = make_token(encrypt_for=DATA / "other-sp.crt")
    reject(raw, "decryption-failed")


def test_rsa_1_5_key_transport_is_refused() -> None:
    def pkcs1(assertion: etree._Element) -> etree._Element:
        return m.encrypt(assertion, SP_CERT.read_bytes(), key_transport=xc.TransformRsaPkcs1)

    root = make_response_tree(signing="assertion")
    plain = find(root, "saml:Assertion")
    root.replace(plain, pkcs1(plain))
    assert "rsa-1_5" in reject(etree.tostring(root), "decryption-failed")


def test_decryption_failed_without_a_decryption_key() -> None:
    assert "decryption_key" in reject(
        make_token(encrypt_for=SP_CERT), "decryption-failed", decryption_key=None
    )


def test_encrypted_assertion_goes_through_every_check_after_decryption() -> None:
    raw = make_token(encrypt_for=SP_CERT, assertion=_set_audience("https://elsewhere"))
    reject(raw, "wrong-audience")


# --- signatures -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("signing", "required"),
    [
        ("none", "assertion"),
        ("response", "assertion"),
        ("assertion", "response"),
        ("none", "either"),
        ("assertion", "both"),
        ("response", "both"),
    ],
)
def test_unsigned(signing: str, required: str) -> None:
    reject(make_token(signing=signing), "unsigned", require_signed=required)


@pytest.mark.parametrize(
    ("signing", "required"), [("response", "either"), ("assertion", "either"), ("both", "both")]
)
def test_signed_as_required(signing: str, required: str) -> None:
    validate_saml(make_token(signing=signing), connection(require_signed=required), now=LATER)


def _tamper_email(response: etree._Element) -> None:
    find(response, ".//saml:AttributeValue").text = "admin@example.com"


@pytest.mark.parametrize("signing", ["assertion", "response", "both"])
def test_bad_signature_after_tampering(signing: str) -> None:
    reject(
        make_token(signing=signing, after_sign=_tamper_email),
        "bad-signature",
        require_signed="either",
    )


def test_every_signature_present_must_verify() -> None:
    """require_signed = response, yet a broken Assertion signature still rejects."""

    def break_assertion_signature(response: etree._Element) -> None:
        value = find(response, "saml:Assertion/ds:Signature/ds:SignatureValue")
        value.text = base64.b64encode(b"\x00" * 256).decode()

    raw = make_token(signing="both", response=break_assertion_signature)
    message = reject(raw, "bad-signature", require_signed="response")
    assert message.startswith("Assertion signature")


def test_untrusted_signer_key_info_carries_another_certificate() -> None:
    raw = make_token(key=OTHER_KEY, cert=OTHER_CERT)
    assert "not configured" in reject(raw, "untrusted-signer")


def test_bad_signature_when_key_info_names_the_configured_certificate() -> None:
    """Signed by another key, but the KeyInfo claims our certificate: bad-signature."""
    ours = b"".join(IDP_CERT.read_bytes().splitlines()[1:-1]).decode()

    def claim_ours(response: etree._Element) -> None:
        find(response, ".//ds:X509Certificate").text = ours

    raw = make_token(key=OTHER_KEY, cert=OTHER_CERT, after_sign=claim_ours)
    reject(raw, "bad-signature")


def test_bad_signature_without_key_info() -> None:
    def drop_key_info(response: etree._Element) -> None:
        node = find(response, ".//ds:KeyInfo")
        node.getparent().remove(node)

    reject(make_token(key=OTHER_KEY, cert=OTHER_CERT, after_sign=drop_key_info), "bad-signature")


def test_key_info_is_never_used_to_verify() -> None:
    """A token signed by an unknown key that carries its own cert is not accepted."""
    reject(
        make_token(key=OTHER_KEY, cert=OTHER_CERT),
        "untrusted-signer",
        certificates=(OTHER_CERT.parent / "sp.crt",),
    )


def test_certificate_rollover_any_configured_certificate_verifies() -> None:
    rollover = IDP_CERT.parent / "idp-rollover.crt"
    validate_saml(make_token(), connection(certificates=(rollover, IDP_CERT)), now=LATER)


def test_check_cert_dates() -> None:
    expired = IDP_CERT.parent / "idp-expired.crt"  # the same key, a certificate from 2000
    validate_saml(make_token(), connection(certificates=(expired,)), now=LATER)
    message = reject(
        make_token(), "untrusted-signer", certificates=(expired,), check_cert_dates=True
    )
    assert "check_cert_dates" in message


def _sign_with(method: Any, digest: Any):
    def signer(response: etree._Element) -> None:
        from saml_fixtures import IDP_KEY

        m.sign(response, IDP_KEY.read_bytes(), IDP_CERT.read_bytes(), method=method, digest=digest)

    return signer


def test_rsa_sha1_unsupported_unless_allowed() -> None:
    raw = make_token(signing="none", response=_sign_with(xc.TransformRsaSha1, xc.TransformSha256))
    assert "SHA-1" in reject(raw, "unsupported", require_signed="response")
    validate_saml(raw, connection(require_signed="response", allow_sha1=True), now=LATER)


def test_sha1_digest_unsupported_unless_allowed() -> None:
    raw = make_token(signing="none", response=_sign_with(xc.TransformRsaSha256, xc.TransformSha1))
    reject(raw, "unsupported", require_signed="response")
    validate_saml(raw, connection(require_signed="response", allow_sha1=True), now=LATER)


def test_hmac_signature_unsupported() -> None:
    def hmac_sign(response: etree._Element) -> None:
        sig = xmlsec.template.create(
            response, xc.TransformExclC14N, xc.TransformHmacSha256, ns="ds"
        )
        find(response, "saml:Issuer").addnext(sig)
        ref = xmlsec.template.add_reference(sig, xc.TransformSha256, uri="#" + response.get("ID"))
        xmlsec.template.add_transform(ref, xc.TransformEnveloped)
        ctx = xmlsec.SignatureContext()
        ctx.register_id(response, "ID")
        ctx.key = xmlsec.Key.from_binary_data(xc.KeyDataHmac, b"shared-secret")
        ctx.sign(sig)

    raw = make_token(signing="none", response=hmac_sign)
    assert "HMAC" in reject(raw, "unsupported", require_signed="response", allow_sha1=True)


@pytest.mark.parametrize(
    "algorithm",
    ["http://www.w3.org/TR/1999/REC-xslt-19991116", "http://www.w3.org/TR/1999/REC-xpath-19991116"],
)
def test_other_transforms_unsupported(algorithm: str) -> None:
    def add_transform(response: etree._Element) -> None:
        transforms = find(response, ".//ds:Reference/ds:Transforms")
        etree.SubElement(transforms, f"{DS}Transform", Algorithm=algorithm)

    reject(make_token(after_sign=add_transform), "unsupported")


# --- wrapping ---------------------------------------------------------------------------


def _second_reference(response: etree._Element) -> None:
    reference = find(response, ".//ds:Reference")
    reference.addnext(copy.deepcopy(reference))


def _reference_elsewhere(response: etree._Element) -> None:
    """The Response carries a Signature whose Reference names the Assertion."""
    signature = find(response, "saml:Assertion/ds:Signature")
    find(response, "saml:Issuer").addnext(copy.deepcopy(signature))


def _xpointer(response: etree._Element) -> None:
    find(response, ".//ds:Reference").set("URI", "#xpointer(/)")


def _duplicate_id(response: etree._Element) -> None:
    extensions = etree.Element(f"{SAMLP}Extensions")
    etree.SubElement(extensions, "{urn:x-evil}Copy", ID="_token-1")
    find(response, "saml:Issuer").addnext(extensions)


def _stray_signature(response: etree._Element) -> None:
    """A copy of the valid Assertion signature hidden in the Response's Extensions."""
    extensions = etree.Element(f"{SAMLP}Extensions")
    holder = etree.SubElement(extensions, "{urn:x-evil}Holder")
    holder.append(copy.deepcopy(find(response, "saml:Assertion/ds:Signature")))
    find(response, "saml:Issuer").addnext(extensions)


def _xml_id_twin(response: etree._Element) -> None:
    """An xml:id twin of the Assertion ID hidden in the (unsigned) ds:Object."""
    signature = find(response, "saml:Assertion/ds:Signature")
    holder = etree.SubElement(signature, f"{DS}Object")
    twin = etree.SubElement(holder, "{urn:x-evil}Twin")
    twin.set("{http://www.w3.org/XML/1998/namespace}id", "_token-1")


def _empty_uri_on_assertion(response: etree._Element) -> None:
    find(response, "saml:Assertion/ds:Signature//ds:Reference").set("URI", "")


@pytest.mark.parametrize(
    "wrap",
    [
        _second_reference,
        _reference_elsewhere,
        _xpointer,
        _duplicate_id,
        _stray_signature,
        _empty_uri_on_assertion,
        _xml_id_twin,
    ],
)
def test_signature_wrapping(wrap) -> None:
    reject(make_token(after_sign=wrap), "signature-wrapping", require_signed="either")


def test_classic_xsw_evil_assertion_beside_the_signed_one_is_malformed() -> None:
    """XSW: a forged Assertion plus the signed original hidden elsewhere: two Assertions."""

    def forge(response: etree._Element) -> None:
        original = find(response, "saml:Assertion")
        evil = copy.deepcopy(original)
        evil.set("ID", "_evil")
        evil.remove(evil.find(f"{DS}Signature"))
        find(evil, "saml:Subject/saml:NameID").text = "admin@example.com"
        extensions = etree.Element(f"{SAMLP}Extensions")
        extensions.append(original)
        find(response, "saml:Issuer").addnext(extensions)
        response.append(evil)

    reject(make_token(after_sign=forge), "malformed")


def test_signed_assertion_hidden_in_advice_is_ignored() -> None:
    """XSW: the signed Assertion moved into the Advice of a forged one signs nothing."""

    def forge(response: etree._Element) -> None:
        original = find(response, "saml:Assertion")
        evil = copy.deepcopy(original)
        evil.set("ID", "_evil")
        evil.remove(evil.find(f"{DS}Signature"))
        advice = etree.Element(f"{SAML}Advice")
        advice.append(original)
        find(evil, "saml:Conditions").addnext(advice)
        response.append(evil)

    reject(make_token(after_sign=forge), "unsigned")


# --- issuer, request, audience, recipient, time -----------------------------------------


def _set_issuer(value: str):
    return lambda node: setattr(find(node, "saml:Issuer"), "text", value)


def test_wrong_issuer_assertion() -> None:
    message = reject(make_token(assertion=_set_issuer("https://evil")), "wrong-issuer")
    assert '"https://evil"' in message and "https://idp.example.org/saml" in message


def test_wrong_issuer_response() -> None:
    reject(make_token(signing="both", response=_set_issuer("https://evil")), "wrong-issuer")


def test_wrong_request() -> None:
    raw = make_token(in_response_to="req-1")
    validate_saml(raw, connection(), now=LATER, request_id="req-1")
    reject(raw, "wrong-request", request_id="req-2")


def test_unsolicited_refused_when_in_response_to_required() -> None:
    reject(make_token(), "wrong-request", require_in_response_to=True)
    reject(make_token(), "wrong-request", request_id="req-1")
    validate_saml(
        make_token(in_response_to="r"), connection(require_in_response_to=True), now=LATER
    )


def _set_audience(value: str):
    return lambda node: setattr(find(node, ".//saml:Audience"), "text", value)


def test_wrong_audience() -> None:
    message = reject(make_token(assertion=_set_audience("https://b")), "wrong-audience")
    assert message == f'audience "{AUDIENCE}" not in AudienceRestriction ["https://b"]'


def test_no_audience_restriction_is_wrong_audience() -> None:
    """python3-saml gap: it accepts an Assertion without AudienceRestriction."""

    def drop(assertion: etree._Element) -> None:
        node = find(assertion, ".//saml:AudienceRestriction")
        node.getparent().remove(node)

    reject(make_token(assertion=drop), "wrong-audience")


def test_every_audience_restriction_must_name_the_audience() -> None:
    def add(assertion: etree._Element) -> None:
        restriction = etree.SubElement(
            find(assertion, "saml:Conditions"), f"{SAML}AudienceRestriction"
        )
        etree.SubElement(restriction, f"{SAML}Audience").text = "https://other"

    reject(make_token(assertion=add), "wrong-audience")


def _set_recipient(value: str | None):
    def change(assertion: etree._Element) -> None:
        data = find(assertion, ".//saml:SubjectConfirmationData")
        if value is None:
            del data.attrib["Recipient"]
        else:
            data.set("Recipient", value)

    return change


@pytest.mark.parametrize(
    "value",
    [f"https://evil.example/?next={RECIPIENT}", RECIPIENT + "/x", None],
    ids=["contains-acs", "prefix", "missing"],
)
def test_wrong_recipient(value: str | None) -> None:
    """python3-saml gaps: a Recipient that merely contains the ACS URL, or none."""
    reject(make_token(assertion=_set_recipient(value)), "wrong-recipient")


def test_destination_must_equal_not_start_with() -> None:
    """python3-saml gap: a Destination that merely starts with the ACS URL."""
    raw = make_token(
        signing="both", response=lambda r: r.set("Destination", RECIPIENT + ".evil.example")
    )
    assert "Destination" in reject(raw, "wrong-recipient")


def test_recipient_unchecked_when_not_configured() -> None:
    raw = make_token(assertion=_set_recipient("https://anything"))
    validate_saml(raw, connection(recipient=None), now=LATER)


END = AT + timedelta(minutes=5)


@pytest.mark.parametrize("skew", [0, 120, 3600])
def test_expired_boundary_uses_the_configured_skew(skew: int) -> None:
    """python3-saml gap: it applies a fixed 300 s drift; clock_skew decides here."""
    raw = make_token()
    limit = END + timedelta(seconds=skew)
    validate_saml(raw, connection(clock_skew=skew), now=limit - timedelta(seconds=1))
    reject(raw, "expired", now=limit, clock_skew=skew)


@pytest.mark.parametrize("skew", [0, 120])
def test_not_yet_valid_boundary(skew: int) -> None:
    raw = make_token()
    start = AT - timedelta(seconds=skew)
    validate_saml(raw, connection(clock_skew=skew), now=start)
    reject(raw, "not-yet-valid", now=start - timedelta(seconds=1), clock_skew=skew)


def test_bearer_window_checked_too() -> None:
    def shorten(assertion: etree._Element) -> None:
        find(assertion, ".//saml:SubjectConfirmationData").set(
            "NotOnOrAfter", "2024-05-01T12:01:00Z"
        )

    raw = make_token(assertion=shorten)
    message = reject(raw, "expired", now=AT + timedelta(minutes=2), clock_skew=0)
    assert "SubjectConfirmationData" in message
    token = validate_saml(raw, connection(clock_skew=0), now=AT)
    assert token.expires_at == AT + timedelta(minutes=1)


def test_session_not_on_or_after_is_not_checked() -> None:
    def old_session(assertion: etree._Element) -> None:
        find(assertion, "saml:AuthnStatement").set("SessionNotOnOrAfter", "2000-01-01T00:00:00Z")

    validate_saml(make_token(assertion=old_session), connection(), now=LATER)


def _add_attribute(assertion: etree._Element, name: str, value: str) -> None:
    statement = find(assertion, "saml:AttributeStatement")
    attribute = etree.SubElement(statement, f"{SAML}Attribute", Name=name)
    etree.SubElement(attribute, f"{SAML}AttributeValue").text = value
