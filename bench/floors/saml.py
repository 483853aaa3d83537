"""The SAML floor: a signed SAML Response validated with lxml, one XSD and xmlsec, by hand.

What a careful engineer writes without jitprov, doing the checks jitprov makes on a
valid response and nothing more:

- parse with lxml, a parser that loads no DTD, resolves no entity, reads no network and
  keeps libxml2's tree limits (`huge_tree` off); a DOCTYPE is refused;
- validate against the SAML 2.0 protocol schema (python3-saml's copy of the OASIS XSDs,
  read as files), compiled once;
- Status Success, Version 2.0, exactly one Assertion in the document, the Issuer, a
  NameID and a bearer SubjectConfirmation with NotOnOrAfter present;
- signatures: every `ds:Signature` in the document is a child of the Response or of the
  Assertion (at most one on each), the required one is there, each has exactly one
  Reference whose URI is `#` + its parent's ID, only enveloped-signature and c14n
  transforms, RSA-SHA256/384/512 and SHA-256/384/512 (no SHA-1, no HMAC), every ID in
  the document unique; xmlsec verifies it with the pinned public key of the configured
  certificate (never a key from the token). The data is then read from those very
  elements, so a wrapped copy elsewhere in the document is never what is read;
- Issuer (Response and Assertion), InResponseTo when a request ID is given, audience
  (every AudienceRestriction names it), recipient (Destination and every bearer
  Recipient), and the time windows (Conditions and bearer SubjectConfirmationData,
  NotBefore / NotOnOrAfter with the clock skew);
- the NameID and the attributes read into a dict (an attribute's Name, or its
  FriendlyName when no attribute has that Name; empty values dropped).

No jitprov code: the standard library, lxml, xmlsec and cryptography (to take the public
key out of the certificate once).
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal

import xmlsec
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from lxml import etree

SAMLP = "{urn:oasis:names:tc:SAML:2.0:protocol}"
SAML = "{urn:oasis:names:tc:SAML:2.0:assertion}"
DS = "{http://www.w3.org/2000/09/xmldsig#}"
XSI_NIL = "{http://www.w3.org/2001/XMLSchema-instance}nil"
SUCCESS = "urn:oasis:names:tc:SAML:2.0:status:Success"
BEARER = "urn:oasis:names:tc:SAML:2.0:cm:bearer"

SIGNATURE_METHODS = frozenset(
    {
        "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256",
        "http://www.w3.org/2001/04/xmldsig-more#rsa-sha384",
        "http://www.w3.org/2001/04/xmldsig-more#rsa-sha512",
    }
)
DIGESTS = frozenset(
    {
        "http://www.w3.org/2001/04/xmlenc#sha256",
        "http://www.w3.org/2001/04/xmldsig-more#sha384",
        "http://www.w3.org/2001/04/xmlenc#sha512",
    }
)
C14N = frozenset(
    {
        "http://www.w3.org/2001/10/xml-exc-c14n#",
        "http://www.w3.org/2001/10/xml-exc-c14n#WithComments",
        "http://www.w3.org/TR/2001/REC-xml-c14n-20010315",
        "http://www.w3.org/TR/2001/REC-xml-c14n-20010315#WithComments",
        "http://www.w3.org/2006/12/xml-c14n11",
        "http://www.w3.org/2006/12/xml-c14n11#WithComments",
    }
)
TRANSFORMS = C14N | {"http://www.w3.org/2000/09/xmldsig#enveloped-signature"}

_RESPONSE = f"{SAMLP}Response"
_ASSERTION = f"{SAML}Assertion"
_ENCRYPTED = f"{SAML}EncryptedAssertion"
_SIGNATURE = f"{DS}Signature"


class Rejected(Exception):
    """The response fails a check; `reason` is a short code, the message says why."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Validated:
    """What a valid response gives: who, which token, until when, and the attributes."""

    subject: str
    subject_format: str | None
    issuer: str
    token_id: str
    expires_at: datetime
    attributes: dict[str, list[str]] = field(default_factory=dict)
    authn_context: str | None = None  # the first AuthnStatement's AuthnContextClassRef


def schema_folder() -> Path:
    """python3-saml's copies of the SAML XSDs (found, not imported)."""
    spec = importlib.util.find_spec("onelogin.saml2")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("python3-saml is not installed: its XSD files are needed")
    return Path(next(iter(spec.submodule_search_locations))) / "schemas"


def protocol_schema() -> etree.XMLSchema:
    """The SAML 2.0 protocol schema (with the assertion, xmldsig and xenc ones it imports)."""
    parser = etree.XMLParser(resolve_entities=False, no_network=True)
    path = schema_folder() / "saml-schema-protocol-2.0.xsd"
    return etree.XMLSchema(etree.parse(str(path), parser))


def _moment(text: str | None, what: str) -> datetime:
    if text is None:
        raise Rejected("malformed", f"{what} is missing")
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise Rejected("malformed", f"{what}: not a date-time: {text!r}") from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


def _text(element: etree._Element | None) -> str:
    if element is None:
        return ""
    if not len(element):
        return (element.text or "").strip()
    return "".join(element.itertext()).strip()


class SamlFloor:
    """Validates signed SAML Responses for one IdP and one SP: the schema compiled, the
    parser made and the key pinned once, in the constructor."""

    def __init__(
        self,
        cert_pem: bytes,
        *,
        issuer: str,
        audience: str,
        recipient: str | None = None,
        skew: int = 120,
        require_signed: Literal["assertion", "response", "either", "both"] = "assertion",
    ) -> None:
        certificate = x509.load_pem_x509_certificate(cert_pem)
        public = certificate.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        self.key = xmlsec.Key.from_memory(public, xmlsec.constants.KeyDataFormatPem, None)
        self.parser = etree.XMLParser(
            resolve_entities=False,
            load_dtd=False,
            no_network=True,
            huge_tree=False,
            collect_ids=False,
        )
        self.schema = protocol_schema()
        self.issuer = issuer
        self.audience = audience
        self.recipient = recipient
        self.skew = timedelta(seconds=skew)
        self.require_signed = require_signed
        self._ids = etree.XPath("//@ID")

    # ------------------------------------------------------------------ the checks

    def validate(self, xml: bytes, now: datetime, request_id: str | None = None) -> Validated:
        """Every check on the Response's XML bytes at `now`; raises Rejected."""
        try:
            root = etree.fromstring(xml, self.parser)
        except etree.XMLSyntaxError as exc:
            raise Rejected("malformed", f"not well-formed XML: {exc}") from None
        if root.getroottree().docinfo.doctype:
            raise Rejected("dtd", "a DOCTYPE is not allowed")
        if root.tag != _RESPONSE:
            raise Rejected("malformed", "expected a samlp:Response")
        code = root.find(f"{SAMLP}Status/{SAMLP}StatusCode")
        if code is None or code.get("Value") != SUCCESS:
            raise Rejected("idp-error", "the status is not Success")
        if not self.schema.validate(root):
            raise Rejected("malformed", f"schema: {self.schema.error_log.last_error}")
        if root.get("Version") != "2.0":
            raise Rejected("malformed", "Response Version is not 2.0")
        found = list(root.iter(_ASSERTION, _ENCRYPTED))
        if len(found) != 1 or found[0].tag != _ASSERTION or found[0].getparent() is not root:
            raise Rejected("malformed", "expected exactly one Assertion, a child of the Response")
        assertion = found[0]
        if assertion.get("Version") != "2.0":
            raise Rejected("malformed", "Assertion Version is not 2.0")
        issuer = _text(assertion.find(f"{SAML}Issuer"))
        name_id = assertion.find(f"{SAML}Subject/{SAML}NameID")
        subject = _text(name_id)
        if not issuer or name_id is None or not subject:
            raise Rejected("malformed", "the Assertion lacks an Issuer or a NameID")
        bearers = [
            c.find(f"{SAML}SubjectConfirmationData")
            for c in assertion.iterfind(f"{SAML}Subject/{SAML}SubjectConfirmation")
            if c.get("Method") == BEARER
        ]
        if not bearers or any(d is None or d.get("NotOnOrAfter") is None for d in bearers):
            raise Rejected("malformed", "no bearer SubjectConfirmationData with NotOnOrAfter")
        data = [d for d in bearers if d is not None]

        response_signed = self._signatures(root, assertion)
        self._conditions(root, assertion, data, issuer, response_signed, request_id)
        expires_at = self._times(assertion, data, now)
        return Validated(
            subject=subject,
            subject_format=name_id.get("Format"),
            issuer=issuer,
            token_id=assertion.get("ID", ""),
            expires_at=expires_at,
            attributes=self._attributes(assertion),
            authn_context=_text(
                assertion.find(
                    f"{SAML}AuthnStatement/{SAML}AuthnContext/{SAML}AuthnContextClassRef"
                )
            )
            or None,
        )

    def _signatures(self, root: etree._Element, assertion: etree._Element) -> bool:
        """Verify the Response's and the Assertion's signatures (no wrapping); whether
        the Response itself is signed."""
        on_response: list[etree._Element] = []
        on_assertion: list[etree._Element] = []
        for signature in root.iter(_SIGNATURE):
            parent = signature.getparent()
            if parent is root:
                on_response.append(signature)
            elif parent is assertion:
                on_assertion.append(signature)
            else:
                raise Rejected("signature-wrapping", "a Signature signs another element")
        if len(on_response) > 1 or len(on_assertion) > 1:
            raise Rejected("signature-wrapping", "more than one Signature on one element")
        wanted = self.require_signed
        if (
            (wanted in ("assertion", "both") and not on_assertion)
            or (wanted in ("response", "both") and not on_response)
            or (wanted == "either" and not (on_assertion or on_response))
        ):
            raise Rejected("unsigned", f"require_signed = {wanted}: the signature is missing")
        ids = [str(value) for value in self._ids(root)]
        if len(ids) != len(set(ids)):
            raise Rejected("signature-wrapping", "an ID is used more than once")
        for signature in (*on_response, *on_assertion):
            self._verify(signature)
        return bool(on_response)

    def _verify(self, signature: etree._Element) -> None:
        parent = signature.getparent()
        assert parent is not None
        signed_info = signature.find(f"{DS}SignedInfo")
        if signed_info is None:
            raise Rejected("malformed", "a Signature without SignedInfo")
        method = signed_info.find(f"{DS}SignatureMethod")
        c14n = signed_info.find(f"{DS}CanonicalizationMethod")
        if method is None or method.get("Algorithm") not in SIGNATURE_METHODS:
            raise Rejected("unsupported", "signature method")
        if c14n is None or c14n.get("Algorithm") not in C14N:
            raise Rejected("unsupported", "canonicalization method")
        references = signed_info.findall(f"{DS}Reference")
        element_id = parent.get("ID")
        if len(references) != 1 or not element_id:
            raise Rejected("signature-wrapping", "expected one Reference to an element with ID")
        reference = references[0]
        if reference.get("URI") != "#" + element_id:
            raise Rejected("signature-wrapping", "the Reference does not name the signed element")
        digest = reference.find(f"{DS}DigestMethod")
        if digest is None or digest.get("Algorithm") not in DIGESTS:
            raise Rejected("unsupported", "digest method")
        transforms = reference.findall(f"{DS}Transforms/{DS}Transform")
        if len(transforms) > 2 or any(t.get("Algorithm") not in TRANSFORMS for t in transforms):
            raise Rejected("unsupported", "transforms")
        context = xmlsec.SignatureContext()
        context.register_id(parent, "ID")
        context.key = self.key  # pinned: a key in the token's KeyInfo is never used
        try:
            context.verify(signature)
        except xmlsec.Error:
            raise Rejected("bad-signature", "the signature does not verify") from None

    def _conditions(
        self,
        root: etree._Element,
        assertion: etree._Element,
        data: list[etree._Element],
        issuer: str,
        response_signed: bool,
        request_id: str | None,
    ) -> None:
        response_issuer = root.find(f"{SAML}Issuer")
        if issuer != self.issuer or (
            response_issuer is not None and _text(response_issuer) != self.issuer
        ):
            raise Rejected("wrong-issuer", "the Issuer is not the IdP's")
        if request_id is not None:
            answers = [d.get("InResponseTo") for d in data if d.get("InResponseTo") is not None]
            if response_signed and root.get("InResponseTo") is not None:
                answers.append(root.get("InResponseTo"))
            if not answers or any(a != request_id for a in answers):
                raise Rejected("wrong-request", "InResponseTo is not the request's ID")
        restrictions = assertion.findall(f"{SAML}Conditions/{SAML}AudienceRestriction")
        if not restrictions or any(
            self.audience not in [_text(a) for a in r.iterfind(f"{SAML}Audience")]
            for r in restrictions
        ):
            raise Rejected("wrong-audience", "the audience is not ours")
        if self.recipient is not None:
            destination = root.get("Destination")
            if destination is not None and destination != self.recipient:
                raise Rejected("wrong-recipient", "Destination is not our ACS")
            if any(d.get("Recipient") != self.recipient for d in data):
                raise Rejected("wrong-recipient", "Recipient is not our ACS")

    def _times(
        self, assertion: etree._Element, data: list[etree._Element], now: datetime
    ) -> datetime:
        windows = list(data)
        conditions = assertion.find(f"{SAML}Conditions")
        if conditions is not None:
            windows.append(conditions)
        ends = []
        for window in windows:
            start = window.get("NotBefore")
            if start is not None and now < _moment(start, "NotBefore") - self.skew:
                raise Rejected("not-yet-valid", f"NotBefore is {start}")
            end = window.get("NotOnOrAfter")
            if end is not None:
                latest = _moment(end, "NotOnOrAfter") + self.skew
                if now >= latest:
                    raise Rejected("expired", f"NotOnOrAfter is {end}")
                ends.append(latest)
        return min(ends)

    @staticmethod
    def _attributes(assertion: etree._Element) -> dict[str, list[str]]:
        by_name: dict[str, list[str]] = {}
        by_friendly: dict[str, list[str]] = {}
        for statement in assertion.iterfind(f"{SAML}AttributeStatement"):
            for attribute in statement.iterfind(f"{SAML}Attribute"):
                values = [
                    text
                    for value in attribute.iterfind(f"{SAML}AttributeValue")
                    if value.get(XSI_NIL) not in ("true", "1")
                    if (text := _text(value))
                ]
                name = attribute.get("Name")
                if name:
                    by_name.setdefault(name, []).extend(values)
                friendly = attribute.get("FriendlyName")
                if friendly:
                    by_friendly.setdefault(friendly, []).extend(values)
        for friendly, values in by_friendly.items():
            by_name.setdefault(friendly, values)
        return by_name
