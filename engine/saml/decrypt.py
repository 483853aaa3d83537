"""EncryptedAssertion → Assertion with the SP's private key (xmlsec).

The key comes only from the connection's `decryption_key`. The EncryptedKey may sit
inside EncryptedData's KeyInfo or beside it (a RetrievalMethod reference, as Okta and
ADFS send it); it is moved into the KeyInfo of a private copy before xmlsec decrypts.
RSA-OAEP key transport is always accepted (its MGF uses SHA-1; `allow_sha1` is about
signatures only); RSA-1.5 (PKCS#1 v1.5, open to padding-oracle attacks) is refused. The decrypted Assertion is re-parsed by the safe parser as a
standalone document so its own signature is checked exactly as the IdP made it.
"""

from __future__ import annotations

import copy

import xmlsec
from lxml import etree
from xmlsec import constants as xc

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
    data = copy.deepcopy(data)
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
        manager = xmlsec.KeysManager()
        manager.add_key(xmlsec.Key.from_memory(key_pem, xc.KeyDataFormatPem, None))
        ctx = xmlsec.EncryptionContext(manager)
        result = ctx.decrypt(etree.ElementTree(data).getroot())
    except xmlsec.Error as exc:
        raise TokenRejected("decryption-failed", f"cannot decrypt the {what}: {exc}") from None
    if isinstance(result, bytes):
        raw = result
    elif isinstance(result, etree._Element):
        raw = etree.tostring(result)
    else:
        raise TokenRejected("decryption-failed", "decryption gave no XML element")
    return parse_xml(raw, f"the decrypted {what}")
