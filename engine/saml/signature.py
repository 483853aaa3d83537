"""XML signature checks: algorithms, references (wrapping), and verification by xmlsec.

Each `ds:Signature` is checked in this order: signature and digest methods (HMAC,
SHA-1 unless `allow_sha1`, unknown → `unsupported`); one Reference, pointing (`#id`) to
exactly the element that carries the Signature, or `URI=""` only when that element is
the document root (else `signature-wrapping`); only enveloped-signature and c14n
transforms (else `unsupported`) — all before xmlsec runs, so xmlsec never digests any other
element and never runs an XSLT or XPath transform; then xmlsec verifies it with each
configured certificate's key (`ctx.key` is set, so xmlsec never reads a key from the
token's KeyInfo): none verifies → `untrusted-signer` when the KeyInfo carries a
certificate that is not configured, else `bad-signature`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import warnings
from collections.abc import Sequence
from datetime import datetime

import xmlsec
from cryptography import x509
from lxml import etree
from xmlsec import constants as xc

from engine.bounds import MAX_TRANSFORMS
from engine.saml.keys import TrustedCert
from engine.saml.xml import DS
from engine.token import TokenRejected

_C14N = (
    xc.TransformInclC14N,
    xc.TransformInclC14NWithComments,
    xc.TransformExclC14N,
    xc.TransformExclC14NWithComments,
    xc.TransformInclC14N11,
    xc.TransformInclC14N11WithComments,
)
_SIGNATURE_METHODS = (
    xc.TransformRsaSha224,
    xc.TransformRsaSha256,
    xc.TransformRsaSha384,
    xc.TransformRsaSha512,
    xc.TransformEcdsaSha224,
    xc.TransformEcdsaSha256,
    xc.TransformEcdsaSha384,
    xc.TransformEcdsaSha512,
)
_SHA1_SIGNATURE_METHODS = (xc.TransformRsaSha1, xc.TransformDsaSha1, xc.TransformEcdsaSha1)
_DIGESTS = (xc.TransformSha224, xc.TransformSha256, xc.TransformSha384, xc.TransformSha512)
_SHA1_DIGESTS = (xc.TransformSha1,)

C14N = {t.href for t in _C14N}
ENVELOPED = xc.TransformEnveloped.href
SIGNATURE_METHODS = {t.href for t in _SIGNATURE_METHODS}
SHA1_SIGNATURE_METHODS = {t.href for t in _SHA1_SIGNATURE_METHODS}
DIGESTS = {t.href for t in _DIGESTS}
SHA1_DIGESTS = {t.href for t in _SHA1_DIGESTS}

# The xmlsec transform for each accepted algorithm URI: only the ones a signature
# names are enabled in its context (anything else makes xmlsec refuse, too).
_BY_HREF = {
    t.href: t
    for t in (
        *_C14N,
        xc.TransformEnveloped,
        *_SIGNATURE_METHODS,
        *_SHA1_SIGNATURE_METHODS,
        *_DIGESTS,
        *_SHA1_DIGESTS,
    )
}


def _algorithm(element: etree._Element | None) -> str:
    return element.get("Algorithm", "") if element is not None else ""


def check_algorithms(sig: etree._Element, where: str, allow_sha1: bool) -> None:
    """`unsupported` for HMAC, SHA-1 (unless allowed) and unknown methods or digests."""
    signed_info = sig.find(f"{DS}SignedInfo")
    if signed_info is None:
        raise TokenRejected("malformed", f"{where}: Signature without SignedInfo")
    method = _algorithm(signed_info.find(f"{DS}SignatureMethod"))
    if "hmac" in method.lower():
        raise TokenRejected("unsupported", f"{where}: HMAC signature method {method} is refused")
    if method in SHA1_SIGNATURE_METHODS and not allow_sha1:
        raise TokenRejected(
            "unsupported", f"{where}: SHA-1 signature method {method} (allow_sha1 is false)"
        )
    if method not in SIGNATURE_METHODS | SHA1_SIGNATURE_METHODS:
        raise TokenRejected("unsupported", f"{where}: unsupported signature method {method!r}")
    c14n = _algorithm(signed_info.find(f"{DS}CanonicalizationMethod"))
    if c14n not in C14N:
        raise TokenRejected("unsupported", f"{where}: unsupported canonicalization {c14n!r}")
    for reference in signed_info.iterfind(f"{DS}Reference"):
        digest = _algorithm(reference.find(f"{DS}DigestMethod"))
        if digest in SHA1_DIGESTS and not allow_sha1:
            raise TokenRejected(
                "unsupported", f"{where}: SHA-1 digest {digest} (allow_sha1 is false)"
            )
        if digest not in DIGESTS | SHA1_DIGESTS:
            raise TokenRejected("unsupported", f"{where}: unsupported digest method {digest!r}")


def check_transforms(sig: etree._Element, where: str) -> None:
    """`unsupported` for more than two Transforms in a Reference, and for any transform
    but enveloped-signature and the c14n family."""
    for reference in sig.iterfind(f"{DS}SignedInfo/{DS}Reference"):
        transforms = reference.findall(f"{DS}Transforms/{DS}Transform")
        if len(transforms) > MAX_TRANSFORMS:
            raise TokenRejected(
                "unsupported",
                f"{where}: the Reference has {len(transforms)} Transforms; at most "
                f"{MAX_TRANSFORMS} are accepted (enveloped-signature and a canonicalization)",
            )
        for transform in transforms:
            algorithm = _algorithm(transform)
            if algorithm != ENVELOPED and algorithm not in C14N:
                raise TokenRejected(
                    "unsupported",
                    f"{where}: transform {algorithm!r} is refused (only enveloped-signature "
                    "and the standard canonicalizations are accepted)",
                )


def check_reference(sig: etree._Element, where: str) -> str | None:
    """`signature-wrapping` unless the one Reference covers exactly the parent element.

    Returns the ID the Reference names (None for `URI=""`).
    """
    references = sig.findall(f"{DS}SignedInfo/{DS}Reference")
    if len(references) != 1:
        raise TokenRejected(
            "signature-wrapping",
            f"{where}: expected exactly one Reference, found {len(references)}",
        )
    parent = sig.getparent()
    assert parent is not None
    uri = references[0].get("URI")
    if uri == "":
        if parent.getparent() is not None:
            raise TokenRejected(
                "signature-wrapping",
                f'{where}: Reference URI="" is only accepted on a Signature that is a child '
                f"of the document root; this one is in <{etree.QName(parent).localname}>",
            )
        return None
    if uri is None or not uri.startswith("#") or "(" in uri:
        raise TokenRejected(
            "signature-wrapping",
            f"{where}: Reference URI {uri!r} is not a same-document #id reference",
        )
    wanted, found = uri[1:], parent.get("ID")
    if wanted != found:
        raise TokenRejected(
            "signature-wrapping",
            f'{where}: Reference URI "#{wanted}" does not name the signed element '
            f'<{etree.QName(parent).localname} ID="{found}">',
        )
    return wanted


def _keyinfo_certs(sig: etree._Element) -> dict[bytes, str]:
    """Each KeyInfo certificate that *is* a certificate (garbage names no key): DER →
    a short description (subject and SHA-256 fingerprint) for messages."""
    found = {}
    for node in sig.iterfind(f"{DS}KeyInfo/{DS}X509Data/{DS}X509Certificate"):
        try:
            der = base64.b64decode("".join((node.text or "").split()))
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                cert = x509.load_der_x509_certificate(der)
                subject = cert.subject.rfc4514_string()
        except (binascii.Error, ValueError):
            continue
        found[der] = f'"{subject}" (SHA-256 {hashlib.sha256(der).hexdigest()[:16]}…)'
    return found


def _context(
    key: xmlsec.Key, sig: etree._Element, parent: etree._Element, ref_id: str | None
) -> xmlsec.SignatureContext:
    """A verification context with the pinned key and only this signature's (already
    checked) algorithms enabled."""
    ctx = xmlsec.SignatureContext()
    if ref_id is not None:
        ctx.register_id(parent, "ID")
    signed_info = sig.find(f"{DS}SignedInfo")
    assert signed_info is not None
    for path, reference in (
        (f"{DS}CanonicalizationMethod", False),
        (f"{DS}SignatureMethod", False),
        (f"{DS}Reference/{DS}DigestMethod", True),
        (f"{DS}Reference/{DS}Transforms/{DS}Transform", True),
    ):
        for node in signed_info.iterfind(path):
            transform = _BY_HREF.get(_algorithm(node))
            if transform is None:  # e.g. a second SignatureMethod the first checks missed
                raise TokenRejected("unsupported", f"algorithm {_algorithm(node)!r} is refused")
            if reference:
                ctx.enable_reference_transform(transform)
            else:
                ctx.enable_signature_transform(transform)
    ctx.key = key
    return ctx


def verify_signature(
    sig: etree._Element,
    where: str,
    trusted: Sequence[TrustedCert],
    *,
    allow_sha1: bool,
    check_cert_dates: bool,
    now: datetime,
) -> TrustedCert:
    """Run every check of one Signature; returns the configured certificate that verified."""
    check_algorithms(sig, where, allow_sha1)
    ref_id = check_reference(sig, where)
    check_transforms(sig, where)
    parent = sig.getparent()
    assert parent is not None
    for cert in trusted:
        try:
            ctx = _context(cert.key, sig, parent, ref_id)
        except ValueError as exc:  # register_id: the ID is already taken by another node
            raise TokenRejected("signature-wrapping", f"{where}: {exc}") from None
        try:
            ctx.verify(sig)
        except xmlsec.Error:
            continue
        if check_cert_dates and not cert.not_before <= now <= cert.not_after:
            raise TokenRejected(
                "untrusted-signer",
                f"{where}: signing certificate {cert.source} is valid from "
                f"{cert.not_before:%Y-%m-%dT%H:%M:%SZ} to {cert.not_after:%Y-%m-%dT%H:%M:%SZ}, "
                f"not at {now:%Y-%m-%dT%H:%M:%SZ} (check_cert_dates is true)",
            )
        return cert
    carried = _keyinfo_certs(sig)
    known = {cert.der for cert in trusted}
    tried = ", ".join(sorted({cert.source for cert in trusted})) or "none"
    if not trusted or (carried and not known.intersection(carried)):
        shown = ", ".join(carried.values()) or "no KeyInfo certificate"
        raise TokenRejected(
            "untrusted-signer",
            f"{where}: signed by a certificate that is not configured: {shown}; "
            f"no configured certificate verifies it (tried: {tried})",
        )
    raise TokenRejected(
        "bad-signature",
        f"{where}: the signature does not verify with the configured certificate(s) "
        f"(tried: {tried}): altered after signing, or signed by a key that is not configured",
    )
