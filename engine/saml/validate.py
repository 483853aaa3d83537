"""`validate_saml`: every check of product.md §2 step 2 for SAML, in the spec's order.

decode (too-large / malformed / dtd) → Status (idp-error) → exactly one Assertion
outside Advice, schema, required elements (malformed) → decryption (decryption-failed)
→ signatures (unsigned, unsupported, signature-wrapping, bad-signature,
untrusted-signer) → issuers (wrong-issuer) → InResponseTo (wrong-request) → audience
(wrong-audience) → recipient (wrong-recipient) → time (not-yet-valid / expired).
Data is read only from the Response and Assertion whose signatures were checked.
"""

from __future__ import annotations

from datetime import UTC, datetime

from lxml import etree

from engine.config import Connection
from engine.saml import conditions, keys, schema
from engine.saml.attributes import read_attributes, read_authn_context
from engine.saml.decode import decode_saml, xml_of_decoded
from engine.saml.decrypt import decrypt_element
from engine.saml.signature import verify_signature
from engine.saml.xml import DS, SAML, SAMLP, child, parse_xml, text_of
from engine.token import Token, TokenRejected

SUCCESS = "urn:oasis:names:tc:SAML:2.0:status:Success"
_RESPONSE = f"{SAMLP}Response"
_ASSERTION = f"{SAML}Assertion"
_ENCRYPTED = f"{SAML}EncryptedAssertion"
_ADVICE = f"{SAML}Advice"
_STATUS = f"{SAMLP}Status"
_STATUS_CODE = f"{SAMLP}StatusCode"
_ISSUER = f"{SAML}Issuer"
_SUBJECT = f"{SAML}Subject"
_NAME_ID = f"{SAML}NameID"
_ENCRYPTED_ID = f"{SAML}EncryptedID"
_SUBJECT_CONFIRMATION = f"{SAML}SubjectConfirmation"
_SUBJECT_CONFIRMATION_DATA = f"{SAML}SubjectConfirmationData"
_SIGNATURE = f"{DS}Signature"


def _in_advice(element: etree._Element) -> bool:
    parent = element.getparent()
    while parent is not None:
        if parent.tag == _ADVICE:
            return True
        parent = parent.getparent()
    return False


def _check_status(response: etree._Element) -> None:
    status = child(response, _STATUS)
    code = None if status is None else child(status, _STATUS_CODE)
    if code is None:
        return  # the schema check reports the missing Status as malformed
    value = code.get("Value", "")
    if value == SUCCESS:
        return
    sub = child(code, _STATUS_CODE)
    detail = f" / {sub.get('Value')}" if sub is not None else ""
    message = text_of(response.find(f"{SAMLP}Status/{SAMLP}StatusMessage"))
    said = f': "{message}"' if message else ""
    raise TokenRejected("idp-error", f"expected status Success, the IdP sent {value}{detail}{said}")


def _the_assertion(root: etree._Element) -> etree._Element:
    found = [node for node in root.iter(_ASSERTION, _ENCRYPTED) if not _in_advice(node)]
    if len(found) != 1:
        raise TokenRejected(
            "malformed",
            f"expected exactly one Assertion or EncryptedAssertion (outside Advice), "
            f"found {len(found)}",
        )
    node = found[0]
    if node is not root and node.getparent() is not root:
        raise TokenRejected("malformed", "the Assertion is not a child of the Response")
    return node


def _check_version(element: etree._Element, what: str) -> None:
    if element.get("Version") != "2.0":
        raise TokenRejected(
            "malformed", f'{what} Version: expected "2.0", found {element.get("Version")!r}'
        )


def _decryption_key(connection: Connection) -> bytes | None:
    try:
        return keys.decryption_key_pem(connection)
    except keys.KeyFileError as exc:
        raise TokenRejected("decryption-failed", str(exc)) from None


def _name_id(assertion: etree._Element, connection: Connection) -> etree._Element | None:
    """The Subject's NameID; an EncryptedID is decrypted with the SP key (not in place:
    the signed tree keeps its ciphertext)."""
    subject = child(assertion, _SUBJECT)
    if subject is None:
        return None
    encrypted = child(subject, _ENCRYPTED_ID)
    if encrypted is None:
        return child(subject, _NAME_ID)
    name_id = decrypt_element(encrypted, _decryption_key(connection), "ID")
    if name_id.tag != f"{SAML}NameID":
        raise TokenRejected("malformed", "the EncryptedID does not hold a NameID")
    return name_id


def _check_required(assertion: etree._Element, connection: Connection) -> None:
    """Issuer, Subject, a NameID (or EncryptedID) unless subject_from, a bearer
    SubjectConfirmation with NotOnOrAfter: all checked before any EncryptedID is
    decrypted (product.md orders `malformed` before `decryption-failed`)."""
    _check_version(assertion, "Assertion")
    if not text_of(child(assertion, _ISSUER)):
        raise TokenRejected("malformed", "the Assertion has no Issuer")
    subject = child(assertion, _SUBJECT)
    if subject is None:
        raise TokenRejected("malformed", "the Assertion has no Subject")
    if (
        connection.subject_from is None
        and not text_of(child(subject, _NAME_ID))
        and child(subject, _ENCRYPTED_ID) is None
    ):
        raise TokenRejected(
            "malformed", "the Subject has no NameID (or an empty one) and subject_from is not set"
        )
    bearers = [
        c
        for c in subject.iterchildren(_SUBJECT_CONFIRMATION)
        if c.get("Method") == conditions.BEARER
    ]
    if not bearers:
        raise TokenRejected("malformed", "the Subject has no bearer SubjectConfirmation")
    for bearer in bearers:
        data = child(bearer, _SUBJECT_CONFIRMATION_DATA)
        if data is None or data.get("NotOnOrAfter") is None:
            raise TokenRejected(
                "malformed",
                "the bearer SubjectConfirmation has no SubjectConfirmationData NotOnOrAfter",
            )


# Compiled once: every attribute that can name a signed element's ID.
_ID_ATTRIBUTES = etree.XPath("//@ID | //@Id | //@AssertionID | //@ResponseID | //@xml:id")


def _check_unique_ids(*roots: etree._Element) -> None:
    seen: set[str] = set()
    for root in roots:
        values = _ID_ATTRIBUTES(root)
        assert isinstance(values, list)
        for value in values:
            text = str(value)
            if text in seen:
                raise TokenRejected("signature-wrapping", f'the ID "{text}" is used more than once')
            seen.add(text)


def _signatures(root: etree._Element) -> list[etree._Element]:
    return [sig for sig in root.iter(f"{DS}Signature") if not _in_advice(sig)]


def _check_signatures(
    response: etree._Element | None,
    assertion: etree._Element,
    connection: Connection,
    now: datetime,
) -> bool:
    """Check every signature; returns whether the Response itself is signed (so that its
    own attributes, such as InResponseTo, are signed data)."""
    roots = [assertion] if response is None else [response]
    if response is not None and assertion.getparent() is None:
        roots.append(assertion)  # decrypted: its own document
    signatures = [sig for root in roots for sig in _signatures(root)]
    on_response = [s for s in signatures if response is not None and s.getparent() is response]
    on_assertion = [s for s in signatures if s.getparent() is assertion]
    wanted = "assertion" if response is None else connection.require_signed
    missing = {
        "assertion": [] if on_assertion else ["the Assertion"],
        "response": [] if on_response else ["the Response"],
        "either": [] if on_assertion or on_response else ["the Response or the Assertion"],
        "both": ([] if on_response else ["the Response"])
        + ([] if on_assertion else ["the Assertion"]),
    }[wanted]
    if missing:
        raise TokenRejected(
            "unsigned",
            f"require_signed = {wanted!r}: no signature on {' and '.join(missing)}",
        )
    for where, group in (("Response", on_response), ("Assertion", on_assertion)):
        if len(group) > 1:
            raise TokenRejected(
                "signature-wrapping",
                f"the {where} carries {len(group)} Signatures; exactly one is expected",
            )
    stray = [s for s in signatures if s not in on_response and s not in on_assertion]
    if stray:
        parent = stray[0].getparent()
        where = etree.QName(parent).localname if parent is not None else "?"
        raise TokenRejected(
            "signature-wrapping",
            f"a Signature inside <{where}> signs neither the Response nor the Assertion",
        )
    _check_unique_ids(*roots)
    try:
        trusted = keys.trusted_certs(connection, now)
    except keys.KeyFileError as exc:
        raise TokenRejected(
            "untrusted-signer", f"no usable configured certificate: {exc}"
        ) from None
    for label, group in (
        ("Response signature", on_response),
        ("Assertion signature", on_assertion),
    ):
        for sig in group:
            verify_signature(
                sig,
                label,
                trusted,
                allow_sha1=connection.allow_sha1,
                check_cert_dates=connection.check_cert_dates,
                now=now,
            )
    return bool(on_response)


def _claimed_subject(
    assertion: etree._Element, name_id: etree._Element | None, connection: Connection
) -> str | None:
    """The subject an invalid token claims (shown in the result and the audit row)."""
    if connection.subject_from is not None:
        values = read_attributes(assertion).get(connection.subject_from)
        return values[0] if values else None
    return text_of(name_id) or None


def validate_saml(
    raw: bytes, connection: Connection, *, now: datetime, request_id: str | None = None
) -> Token:
    """Decode and validate a SAML Response (or bare Assertion) for `connection` at `now`.

    Returns the Token; raises TokenRejected(reason, message) at the first failed check.
    """
    xml = decode_saml(raw, connection.max_token_bytes)
    return validate_xml(xml, connection, now=now, request_id=request_id)


def validate_decoded(
    decoded: bytes, connection: Connection, *, now: datetime, request_id: str | None = None
) -> Token:
    """`validate_saml` for a base64 token intake has decoded already (to tell its form):
    `decoded` is the XML, or the deflated XML, that the base64 held."""
    xml = xml_of_decoded(decoded, connection.max_token_bytes)
    return validate_xml(xml, connection, now=now, request_id=request_id)


def validate_xml(
    xml: bytes, connection: Connection, *, now: datetime, request_id: str | None = None
) -> Token:
    """Validate the decoded XML of a SAML Response (or bare Assertion); as `validate_saml`."""
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    root = parse_xml(xml)
    if root.tag not in (_RESPONSE, _ASSERTION):
        raise TokenRejected(
            "malformed",
            f"expected a SAML 2.0 Response or Assertion, found <{etree.QName(root).localname}>"
            if isinstance(root.tag, str)
            else "expected a SAML 2.0 Response or Assertion",
        )
    response = root if root.tag == _RESPONSE else None
    if response is not None:
        _check_status(response)
    node = _the_assertion(root)
    schema.check_schema(root, schema.protocol_schema(), "the token")
    if response is not None:
        _check_version(response, "Response")
    if node.tag == _ENCRYPTED:
        assertion = decrypt_element(node, _decryption_key(connection))
        if assertion.tag != _ASSERTION:
            raise TokenRejected("malformed", "the EncryptedAssertion does not hold an Assertion")
        schema.check_schema(assertion, schema.protocol_schema(), "the decrypted Assertion")
        if _the_assertion(assertion) is not assertion:
            raise TokenRejected("malformed", "the decrypted Assertion holds another Assertion")
    else:
        assertion = node
    _check_required(assertion, connection)
    name_id = _name_id(assertion, connection)
    if connection.subject_from is None and not text_of(name_id):
        raise TokenRejected("malformed", "the decrypted NameID is empty")
    try:
        response_signed = _check_signatures(response, assertion, connection, now)
        conditions.check_issuers(response, assertion, connection)
        bearers = conditions.bearer_data(assertion)
        answers = conditions.check_in_response_to(
            response if response_signed else None, assertion, connection, request_id, bearers
        )
        conditions.check_audience(assertion, connection)
        conditions.check_recipient(response, assertion, connection, bearers)
        expires_at = conditions.check_times(assertion, connection.clock_skew, now, bearers)
    except TokenRejected as exc:
        exc.subject = _claimed_subject(assertion, name_id, connection)
        raise
    return Token(
        kind="saml",
        name_id=text_of(name_id) or None,
        name_id_format=name_id.get("Format") if name_id is not None else None,
        issuer=text_of(child(assertion, _ISSUER)),
        authn_context=read_authn_context(assertion),
        attributes=read_attributes(assertion),
        token_id=assertion.get("ID"),
        expires_at=expires_at,
        in_response_to=answers,
    )
