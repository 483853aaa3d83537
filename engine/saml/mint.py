"""`jitprov mint`: a real, signed SAML 2.0 Response built from a TOML sample.

Issuer, audience and recipient come from the connection; the token is valid for five
minutes from `at`; signatures are RSA-SHA256 / SHA-256 with exclusive c14n, made by
xmlsec; `encrypt_for` wraps the Assertion in an EncryptedAssertion (AES-256-CBC or
AES-256-GCM content key, RSA-OAEP key transport). The building blocks are public so
tests can mint a token, change one thing, and sign it again.
"""

from __future__ import annotations

import base64
import uuid
import zlib
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Literal

import xmlsec
from lxml import etree
from xmlsec import constants as xc

from engine.config import Connection
from engine.saml.conditions import BEARER, show
from engine.saml.xml import NS, SAML, SAMLP, XENC
from engine.sample import Sample

if TYPE_CHECKING:
    from xmlsec.constants import __Transform as Transform

Signing = Literal["assertion", "response", "both", "none"]
Encoding = Literal["xml", "base64", "deflate"]
Cipher = Literal["aes256-cbc", "aes256-gcm"]
VALIDITY = timedelta(minutes=5)
_XS = "http://www.w3.org/2001/XMLSchema"
_XSI = "http://www.w3.org/2001/XMLSchema-instance"
_ATTRNAME_BASIC = "urn:oasis:names:tc:SAML:2.0:attrname-format:basic"
_SUCCESS = "urn:oasis:names:tc:SAML:2.0:status:Success"


class MintError(Exception):
    """The key, certificate or encryption certificate cannot be used to mint."""


def new_id() -> str:
    """A fresh xs:ID value."""
    return "_" + uuid.uuid4().hex


def _ncname(value: str) -> str:
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in value)
    return safe if safe[:1].isalpha() or safe[:1] == "_" else "_" + safe


def build_assertion(
    sample: Sample,
    connection: Connection,
    at: datetime,
    *,
    assertion_id: str | None = None,
    in_response_to: str | None = None,
) -> etree._Element:
    """An unsigned Assertion: the sample's subject and attributes, the connection's
    issuer, audience and recipient, valid from `at` for five minutes."""
    start, end = show(at), show(at + VALIDITY)
    nsmap = {"saml": NS["saml"], "xs": _XS, "xsi": _XSI}
    token_id = assertion_id or (_ncname(sample.token_id) if sample.token_id else new_id())
    assertion = etree.Element(
        f"{SAML}Assertion", nsmap=nsmap, ID=token_id, Version="2.0", IssueInstant=start
    )
    etree.SubElement(assertion, f"{SAML}Issuer").text = connection.issuer
    subject = etree.SubElement(assertion, f"{SAML}Subject")
    name_id = etree.SubElement(subject, f"{SAML}NameID")
    name_id.text = sample.subject
    if sample.subject_format:
        name_id.set("Format", sample.subject_format)
    confirmation = etree.SubElement(subject, f"{SAML}SubjectConfirmation", Method=BEARER)
    data = etree.SubElement(confirmation, f"{SAML}SubjectConfirmationData", NotOnOrAfter=end)
    if connection.recipient:
        data.set("Recipient", connection.recipient)
    if in_response_to:
        data.set("InResponseTo", in_response_to)
    conditions = etree.SubElement(assertion, f"{SAML}Conditions", NotBefore=start, NotOnOrAfter=end)
    restriction = etree.SubElement(conditions, f"{SAML}AudienceRestriction")
    etree.SubElement(restriction, f"{SAML}Audience").text = connection.audience
    authn = etree.SubElement(
        assertion, f"{SAML}AuthnStatement", AuthnInstant=start, SessionIndex=new_id()
    )
    if sample.authn_context:
        context = etree.SubElement(authn, f"{SAML}AuthnContext")
        etree.SubElement(context, f"{SAML}AuthnContextClassRef").text = sample.authn_context
    else:
        context = etree.SubElement(authn, f"{SAML}AuthnContext")
        etree.SubElement(
            context, f"{SAML}AuthnContextClassRef"
        ).text = "urn:oasis:names:tc:SAML:2.0:ac:classes:unspecified"
    if sample.attributes:
        statement = etree.SubElement(assertion, f"{SAML}AttributeStatement")
        for name, values in sample.attributes.items():
            attribute = etree.SubElement(
                statement, f"{SAML}Attribute", Name=name, NameFormat=_ATTRNAME_BASIC
            )
            for value in values:
                node = etree.SubElement(attribute, f"{SAML}AttributeValue")
                node.set(f"{{{_XSI}}}type", "xs:string")
                node.text = value
    return assertion


def build_response(
    assertion: etree._Element,
    connection: Connection,
    at: datetime,
    *,
    in_response_to: str | None = None,
) -> etree._Element:
    """A Success Response around `assertion` (or an EncryptedAssertion)."""
    response = etree.Element(
        f"{SAMLP}Response",
        nsmap={"samlp": NS["samlp"], "saml": NS["saml"]},
        ID=new_id(),
        Version="2.0",
        IssueInstant=show(at),
    )
    if connection.recipient:
        response.set("Destination", connection.recipient)
    if in_response_to:
        response.set("InResponseTo", in_response_to)
    etree.SubElement(response, f"{SAML}Issuer").text = connection.issuer
    status = etree.SubElement(response, f"{SAMLP}Status")
    etree.SubElement(status, f"{SAMLP}StatusCode", Value=_SUCCESS)
    response.append(assertion)
    return response


def sign(
    element: etree._Element,
    key_pem: bytes,
    cert_pem: bytes,
    *,
    method: Transform = xc.TransformRsaSha256,
    digest: Transform = xc.TransformSha256,
) -> etree._Element:
    """Sign `element` (enveloped, `#ID` reference, exclusive c14n), the Signature placed
    right after its Issuer as the schema wants; returns the Signature element."""
    signature = xmlsec.template.create(element, xc.TransformExclC14N, method, ns="ds")
    issuer = element.find(f"{SAML}Issuer")
    if issuer is not None:
        issuer.addnext(signature)
    else:
        element.insert(0, signature)
    reference = xmlsec.template.add_reference(signature, digest, uri="#" + element.get("ID", ""))
    xmlsec.template.add_transform(reference, xc.TransformEnveloped)
    xmlsec.template.add_transform(reference, xc.TransformExclC14N)
    key_info = xmlsec.template.ensure_key_info(signature)
    xmlsec.template.x509_data_add_certificate(xmlsec.template.add_x509_data(key_info))
    ctx = xmlsec.SignatureContext()
    ctx.register_id(element, "ID")
    key = xmlsec.Key.from_memory(key_pem, xc.KeyDataFormatPem, None)
    key.load_cert_from_memory(cert_pem, xc.KeyDataFormatCertPem)
    ctx.key = key
    ctx.sign(signature)
    return signature


def encrypt(
    assertion: etree._Element,
    cert_pem: bytes,
    *,
    cipher: Cipher = "aes256-cbc",
    wrapper: str = "EncryptedAssertion",
    key_transport: Transform = xc.TransformRsaOaep,
) -> etree._Element:
    """Wrap `assertion` (or a NameID, with wrapper="EncryptedID") into an encrypted
    element for the holder of `cert_pem`."""
    # Encrypt the Assertion as the root of its own document, so the plaintext carries
    # its namespace declarations (inside a wrapper lxml would strip them as redundant).
    standalone = etree.fromstring(etree.tostring(assertion))
    method = xc.TransformAes256Gcm if cipher == "aes256-gcm" else xc.TransformAes256Cbc
    data = xmlsec.template.encrypted_data_create(
        standalone, method, type=xc.TypeEncElement, ns="xenc"
    )
    xmlsec.template.encrypted_data_ensure_cipher_value(data)
    key_info = xmlsec.template.encrypted_data_ensure_key_info(data, ns="ds")
    encrypted_key = xmlsec.template.add_encrypted_key(key_info, key_transport)
    xmlsec.template.encrypted_data_ensure_cipher_value(encrypted_key)
    manager = xmlsec.KeysManager()
    manager.add_key(xmlsec.Key.from_memory(cert_pem, xc.KeyDataFormatCertPem, None))
    ctx = xmlsec.EncryptionContext(manager)
    ctx.key = xmlsec.Key.generate(xc.KeyDataAes, 256, xc.KeyDataTypeSession)
    encrypted = ctx.encrypt_xml(data, standalone)
    holder = etree.Element(f"{SAML}{wrapper}", nsmap={"saml": NS["saml"]})
    holder.append(encrypted)
    assert holder.find(f"{XENC}EncryptedData") is not None
    return holder


def encode(xml: bytes, encoding: Encoding) -> bytes:
    """XML as is, base64 (POST binding) or raw-deflate + base64 (redirect binding)."""
    if encoding == "base64":
        return base64.b64encode(xml)
    if encoding == "deflate":
        compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
        return base64.b64encode(compressor.compress(xml) + compressor.flush())
    return xml


def mint(
    sample: Sample,
    connection: Connection,
    *,
    key_pem: bytes,
    cert_pem: bytes,
    signing: Signing = "assertion",
    encrypt_for: bytes | None = None,
    cipher: Cipher = "aes256-cbc",
    encoding: Encoding = "xml",
    at: datetime | None = None,
    in_response_to: str | None = None,
) -> bytes:
    """A signed SAML Response for `sample` under `connection`, encoded as asked.

    Raises MintError when the key, certificate or `encrypt_for` cannot be used.
    """
    try:
        return _mint(
            sample,
            connection,
            key_pem,
            cert_pem,
            signing,
            encrypt_for,
            cipher,
            encoding,
            at,
            in_response_to,
        )
    except (xmlsec.Error, ValueError) as exc:
        raise MintError(str(exc) or type(exc).__name__) from None


def _mint(
    sample: Sample,
    connection: Connection,
    key_pem: bytes,
    cert_pem: bytes,
    signing: Signing,
    encrypt_for: bytes | None,
    cipher: Cipher,
    encoding: Encoding,
    at: datetime | None,
    in_response_to: str | None,
) -> bytes:
    at = (at or datetime.now(UTC)).replace(microsecond=0)
    assertion = build_assertion(sample, connection, at, in_response_to=in_response_to)
    if signing in ("assertion", "both"):
        sign(assertion, key_pem, cert_pem)
    carried = encrypt(assertion, encrypt_for, cipher=cipher) if encrypt_for else assertion
    response = build_response(carried, connection, at, in_response_to=in_response_to)
    if signing in ("response", "both"):
        sign(response, key_pem, cert_pem)
    xml = etree.tostring(response, xml_declaration=True, encoding="UTF-8")
    return encode(xml, encoding)
