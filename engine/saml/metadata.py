"""IdP metadata (SAML 2.0 metadata XML): entity ID, signing certificates, SSO URL.

Parsed with the same safe parser as tokens (no DTD, no entities, no network). A
KeyDescriptor with `use="signing"` or without `use` gives signing certificates (several
for a key rollover); `use="encryption"` ones are not signing keys. An
EntitiesDescriptor holding several IdPs needs the caller to pick one (`entity`).
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass, field
from datetime import datetime

from lxml import etree

from engine.saml.xml import DS, MD, parse_xml
from engine.token import TokenRejected

_POST = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST"
_REDIRECT = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect"


class MetadataError(Exception):
    """The metadata cannot give one IdP with a signing certificate; the message says why."""


@dataclass(frozen=True, slots=True)
class IdpMetadata:
    """What a saml2 connection needs from one IdP's metadata."""

    entity_id: str
    signing_certs: tuple[bytes, ...]  # DER
    sso_url: str | None = None
    name_id_formats: tuple[str, ...] = field(default_factory=tuple)
    # The earliest validUntil of the EntityDescriptor and the EntitiesDescriptors around
    # it: after it, the metadata (and the certificates it lists) must not be trusted.
    valid_until: datetime | None = None
    sso_redirect: str | None = None  # the SingleSignOnService for HTTP-Redirect


def _idp_entities(root: etree._Element) -> list[etree._Element]:
    if root.tag == f"{MD}EntityDescriptor":
        candidates = [root]
    elif root.tag == f"{MD}EntitiesDescriptor":
        candidates = list(root.iter(f"{MD}EntityDescriptor"))
    else:
        name = etree.QName(root).localname if isinstance(root.tag, str) else "?"
        raise MetadataError(f"expected an EntityDescriptor or EntitiesDescriptor, found <{name}>")
    return [e for e in candidates if e.find(f"{MD}IDPSSODescriptor") is not None]


def _certificates(descriptor: etree._Element) -> tuple[bytes, ...]:
    ders = []
    for key in descriptor.iterfind(f"{MD}KeyDescriptor"):
        if key.get("use", "signing") != "signing":
            continue
        for node in key.iterfind(f"{DS}KeyInfo/{DS}X509Data/{DS}X509Certificate"):
            text = re.sub(r"\s+", "", node.text or "")
            try:
                der = base64.b64decode(text, validate=True)
            except (binascii.Error, ValueError):
                raise MetadataError("an X509Certificate is not valid base64") from None
            if der and der not in ders:
                ders.append(der)
    return tuple(ders)


def parse_metadata(data: bytes, entity: str | None = None) -> IdpMetadata:
    """The IdP of this metadata (or the one named `entity`); raises MetadataError."""
    try:
        root = parse_xml(data, "the metadata")
    except TokenRejected as exc:
        raise MetadataError(exc.message) from None
    entities = _idp_entities(root)
    if entity is not None:
        entities = [e for e in entities if e.get("entityID") == entity]
        if not entities:
            raise MetadataError(f"no IdP entity {entity!r} in the metadata")
    if not entities:
        raise MetadataError("the metadata describes no IdP (no IDPSSODescriptor)")
    if len(entities) > 1:
        names = ", ".join(e.get("entityID", "?") for e in entities)
        raise MetadataError(
            f"the metadata describes several IdPs ({names}); pick one with --entity"
        )
    node = entities[0]
    entity_id = node.get("entityID", "").strip()
    if not entity_id:
        raise MetadataError("the EntityDescriptor has no entityID")
    descriptor = node.find(f"{MD}IDPSSODescriptor")
    assert descriptor is not None
    certs = _certificates(descriptor)
    if not certs:
        raise MetadataError(f"IdP {entity_id!r} has no signing certificate in its metadata")
    sso = {
        s.get("Binding"): s.get("Location") for s in descriptor.iterfind(f"{MD}SingleSignOnService")
    }
    formats = tuple((f.text or "").strip() for f in descriptor.iterfind(f"{MD}NameIDFormat"))
    sso_url = sso.get(_POST) or sso.get(_REDIRECT)
    return IdpMetadata(entity_id, certs, sso_url, formats, _valid_until(node), sso.get(_REDIRECT))


def _valid_until(node: etree._Element) -> datetime | None:
    """The earliest validUntil on `node` and its ancestors (SAML metadata §2.3.1: an
    enclosing EntitiesDescriptor's validity bounds the entities inside it)."""
    from engine.saml.conditions import parse_time

    found: datetime | None = None
    element: etree._Element | None = node
    while element is not None:
        text = element.get("validUntil")
        if text is not None:
            try:
                moment = parse_time(text, "validUntil")
            except TokenRejected as exc:
                raise MetadataError(exc.message) from None
            if moment is not None and (found is None or moment < found):
                found = moment
        element = element.getparent()
    return found
