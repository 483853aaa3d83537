"""This SP's metadata for one saml2 connection (`jitprov connection sp-metadata CONN`,
`GET /metadata/{connection}` in `serve`): what the IdP's administrator imports.

- `entityID` is the connection's `audience` (the SP entity ID the IdP sends tokens to);
- one `AssertionConsumerService`, HTTP-POST, at its `recipient` (the ACS URL; required);
- `AuthnRequestsSigned` when `sp_certificate`/`sp_key` are set, with that certificate as
  the signing `KeyDescriptor`; `sp_encryption_certificate` as the encryption one (the
  IdP then encrypts assertions for `decryption_key`);
- `WantAssertionsSigned` when `require_signed` is `assertion` or `both`;
- the NameID formats jitprov links by (persistent, emailAddress; unspecified when the
  identity comes from an attribute, `subject_from`).
The document is checked against the SAML 2.0 metadata schema before it is given out.
"""

from __future__ import annotations

import base64
import re

from lxml import etree

from engine.config import Connection
from engine.saml.keys import KeyFileError, ders_from_pem
from engine.saml.xml import DS, MD

_PROTOCOL = "urn:oasis:names:tc:SAML:2.0:protocol"
_POST = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST"
_FORMATS = (
    "urn:oasis:names:tc:SAML:2.0:nameid-format:persistent",
    "urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress",
)
_UNSPECIFIED = "urn:oasis:names:tc:SAML:1.1:nameid-format:unspecified"


class SpMetadataError(Exception):
    """The connection cannot describe itself as an SP; the message says why."""


def sp_metadata(connection: Connection) -> bytes:
    """The SP metadata XML of a saml2 connection; SpMetadataError when it lacks what
    the document needs."""
    if connection.protocol != "saml2":
        raise SpMetadataError(f"connection {connection.id!r} is {connection.protocol}, not saml2")
    if not connection.recipient:
        raise SpMetadataError(
            f"connection {connection.id!r} has no recipient: set it to this SP's ACS URL"
            " (where the IdP posts its responses)"
        )
    md, ds = MD.strip("{}"), DS.strip("{}")
    root = etree.Element(f"{MD}EntityDescriptor", nsmap={"md": md, "ds": ds})
    root.set("entityID", connection.audience)
    sp = etree.SubElement(root, f"{MD}SPSSODescriptor")
    sp.set("AuthnRequestsSigned", "true" if connection.sp_key is not None else "false")
    wants = connection.require_signed in ("assertion", "both")
    sp.set("WantAssertionsSigned", "true" if wants else "false")
    sp.set("protocolSupportEnumeration", _PROTOCOL)
    for use, path in (
        ("signing", connection.sp_certificate),
        ("encryption", connection.sp_encryption_certificate),
    ):
        if path is None:
            continue
        descriptor = etree.SubElement(sp, f"{MD}KeyDescriptor", use=use)
        data = etree.SubElement(etree.SubElement(descriptor, f"{DS}KeyInfo"), f"{DS}X509Data")
        etree.SubElement(data, f"{DS}X509Certificate").text = _certificate(path, use)
    formats = (_UNSPECIFIED,) if connection.subject_from else _FORMATS
    for name in formats:
        etree.SubElement(sp, f"{MD}NameIDFormat").text = name
    acs = etree.SubElement(sp, f"{MD}AssertionConsumerService")
    acs.set("Binding", _POST)
    acs.set("Location", connection.recipient)
    acs.set("index", "0")
    acs.set("isDefault", "true")
    _check(root)
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True)


def _certificate(path: object, use: str) -> str:
    from pathlib import Path

    try:
        data = Path(str(path)).read_bytes()
        ders = ders_from_pem(data, Path(str(path)).name)
    except (OSError, KeyFileError) as exc:
        raise SpMetadataError(f"the SP {use} certificate {path}: {exc}") from None
    return base64.b64encode(ders[0]).decode("ascii")


def _check(root: etree._Element) -> None:
    from engine.saml.schema import metadata_schema

    schema = metadata_schema()
    if not schema.validate(root):
        error = schema.error_log.last_error
        message = re.sub(r"\{[^}]*\}", "", error.message if error else "invalid")
        raise SpMetadataError(f"the SP metadata would not be valid: {message}")
