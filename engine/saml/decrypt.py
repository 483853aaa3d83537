"""EncryptedAssertion → Assertion with the SP's private key (xmlsec).

The key comes only from the connection's `decryption_key`. The EncryptedKey may sit
inside EncryptedData's KeyInfo or beside it (a RetrievalMethod reference, as Okta and
ADFS send it); it is moved into the KeyInfo of a private copy before xmlsec decrypts.
RSA-OAEP key transport is always accepted (its MGF uses SHA-1; `allow_sha1` is about
signatures only); RSA-1.5 (PKCS#1 v1.5, open to padding-oracle attacks) is refused.

xmlsec only decrypts: it hands back the plaintext bytes (the private copy's `Type` is
removed, so xmlsec never parses them itself, and libxml2 never prints parse errors to
stderr). The plaintext is then read by the safe parser *in the context* it was
encrypted in: an IdP that encrypts an Assertion in place leaves prefixes such as
`saml:` declared only on the enclosing Response, so the namespaces in scope of the
encrypted element wrap the plaintext while it is parsed. The decrypted element becomes
a standalone document, carrying every namespace that was in scope, so its own
signature is checked exactly as the IdP made it.
"""

from __future__ import annotations

import copy
from xml.sax.saxutils import quoteattr

import xmlsec
from lxml import etree
from xmlsec import constants as xc

from engine.bounds import MAX_ENCRYPTED_KEYS
from engine.saml.xml import DS, XENC, parse_xml
from engine.token import TokenRejected

_KEY_TRANSPORT = {
    "http://www.w3.org/2001/04/xmlenc#rsa-oaep-mgf1p",
    "http://www.w3.org/2009/xmlenc11#rsa-oaep",
}


def decrypt_element(
    encrypted: etree._Element, key_pem: bytes | None, what: str = "Assertion"
) -> etree._Element:
    """The element inside an EncryptedAssertion / EncryptedID (`decryption-failed`)."""
    if key_pem is None:
        raise TokenRejected(
            "decryption-failed",
            f"the {what} is encrypted but the connection has no decryption_key",
        )
    data = encrypted.find(f"{XENC}EncryptedData")
    if data is None:
        raise TokenRejected("malformed", f"Encrypted{what} without EncryptedData")
    keys = sum(1 for _ in encrypted.iter(f"{XENC}EncryptedKey"))
    if keys > MAX_ENCRYPTED_KEYS:  # each one an RSA private-key operation to try
        raise TokenRejected(
            "decryption-failed",
            f"the Encrypted{what} holds {keys} EncryptedKeys; at most {MAX_ENCRYPTED_KEYS} "
            "are tried",
        )
    data = copy.deepcopy(data)
    data.attrib.pop("Type", None)  # bytes back, not a node xmlsec parsed
    key_info = data.find(f"{DS}KeyInfo")
    if key_info is None:
        key_info = etree.SubElement(data, f"{DS}KeyInfo")
        cipher = data.find(f"{XENC}CipherData")
        if cipher is not None:
            cipher.addprevious(key_info)
    if key_info.find(f"{XENC}EncryptedKey") is None:
        for retrieval in key_info.findall(f"{DS}RetrievalMethod"):
            key_info.remove(retrieval)
        for sibling in encrypted.iterfind(f"{XENC}EncryptedKey"):
            key_info.append(copy.deepcopy(sibling))
    for method in key_info.iterfind(f"{XENC}EncryptedKey/{XENC}EncryptionMethod"):
        if method.get("Algorithm") not in _KEY_TRANSPORT:
            raise TokenRejected(
                "decryption-failed",
                f"unsupported key transport {method.get('Algorithm')!r}",
            )
    try:
        # A keys manager of its own for each decryption (~10 ms: it loads the system CA
        # store). Reusing one per thread and key was tried and is not known to be unsafe
        # (a failure blamed on it came from xmlsec 1.3.18, see pyproject.toml); bringing
        # it back needs its own run of every decryption test.
        manager = xmlsec.KeysManager()
        manager.add_key(xmlsec.Key.from_memory(key_pem, xc.KeyDataFormatPem, None))
        ctx = xmlsec.EncryptionContext(manager)
        result = ctx.decrypt(etree.ElementTree(data).getroot())
    except xmlsec.Error as exc:
        raise TokenRejected("decryption-failed", f"cannot decrypt the {what}: {exc}") from None
    if not isinstance(result, bytes):
        raise TokenRejected("decryption-failed", "decryption gave no plaintext")
    return _parse_in_context(result, encrypted, f"the decrypted {what}")


def _parse_in_context(plaintext: bytes, encrypted: etree._Element, what: str) -> etree._Element:
    """The one element `plaintext` holds, parsed with the namespaces in scope of
    `encrypted` declared around it, as the root of its own document."""
    declarations = " ".join(
        f"xmlns{'' if prefix is None else ':' + prefix}={quoteattr(uri)}"
        for prefix, uri in encrypted.nsmap.items()
    )
    body = plaintext.removeprefix(b"\xef\xbb\xbf")
    if body.lstrip().startswith(b"<?xml"):  # an XML declaration cannot sit inside <w>
        end = body.find(b"?>")
        body = body[end + 2 :] if end >= 0 else body
    wrapper = parse_xml(f"<w {declarations}>".encode() + body + b"</w>", what)
    children = [node for node in wrapper if isinstance(node.tag, str)]
    if len(children) != 1 or (wrapper.text or "").strip() or (children[0].tail or "").strip():
        raise TokenRejected("malformed", f"{what}: expected one element, found other content")
    return parse_xml(etree.tostring(children[0]), what)
