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
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeAlias

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


_ANY_SIGNATURE_METHOD = SIGNATURE_METHODS | SHA1_SIGNATURE_METHODS
_ANY_DIGEST = DIGESTS | SHA1_DIGESTS
_SIGNED_INFO = f"{DS}SignedInfo"
_SIGNATURE_METHOD = f"{DS}SignatureMethod"
_CANONICALIZATION = f"{DS}CanonicalizationMethod"
_REFERENCE = f"{DS}Reference"
_DIGEST_METHOD = f"{DS}DigestMethod"
_TRANSFORMS = f"{DS}Transforms"
_TRANSFORM = f"{DS}Transform"


def _algorithm(element: etree._Element | None) -> str:
    return element.get("Algorithm", "") if element is not None else ""


def _first(nodes: list[etree._Element]) -> etree._Element | None:
    return nodes[0] if nodes else None


@dataclass(frozen=True, slots=True)
class _Reference:
    node: etree._Element
    digests: list[etree._Element]  # its DigestMethod children
    transforms: list[etree._Element]  # its Transforms/Transform


@dataclass(frozen=True, slots=True)
class SignedInfo:
    """What a Signature's SignedInfo names, read in one walk for all the checks below
    and for its xmlsec context: `first` is the SignedInfo the algorithm checks and
    xmlsec read; the wrapping and transform checks count the References of every
    SignedInfo the Signature has."""

    first: etree._Element | None
    c14n: list[etree._Element]  # CanonicalizationMethod children of `first`
    methods: list[etree._Element]  # SignatureMethod children of `first`
    first_references: list[_Reference]  # the References of `first`
    references: list[_Reference]  # the References of every SignedInfo


def read_signed_info(sig: etree._Element) -> SignedInfo:
    """The SignedInfo of `sig`, its children read once (a comment is skipped by tag)."""
    first: etree._Element | None = None
    c14n: list[etree._Element] = []
    methods: list[etree._Element] = []
    first_references: list[_Reference] = []
    references: list[_Reference] = []
    for signed_info in sig.iterchildren(_SIGNED_INFO):
        is_first = first is None
        if is_first:
            first = signed_info
        for node in signed_info:
            tag = node.tag
            if tag == _REFERENCE:
                digests: list[etree._Element] = []
                transforms: list[etree._Element] = []
                for part in node:
                    if part.tag == _DIGEST_METHOD:
                        digests.append(part)
                    elif part.tag == _TRANSFORMS:
                        transforms.extend(part.iterchildren(_TRANSFORM))
                reference = _Reference(node, digests, transforms)
                references.append(reference)
                if is_first:
                    first_references.append(reference)
            elif not is_first:
                continue
            elif tag == _CANONICALIZATION:
                c14n.append(node)
            elif tag == _SIGNATURE_METHOD:
                methods.append(node)
    return SignedInfo(first, c14n, methods, first_references, references)


def check_algorithms(
    sig: etree._Element, where: str, allow_sha1: bool, info: SignedInfo | None = None
) -> None:
    """`unsupported` for HMAC, SHA-1 (unless allowed) and unknown methods or digests."""
    if info is None:
        info = read_signed_info(sig)
    if info.first is None:
        raise TokenRejected("malformed", f"{where}: Signature without SignedInfo")
    method = _algorithm(_first(info.methods))
    if "hmac" in method.lower():
        raise TokenRejected("unsupported", f"{where}: HMAC signature method {method} is refused")
    if method in SHA1_SIGNATURE_METHODS and not allow_sha1:
        raise TokenRejected(
            "unsupported", f"{where}: SHA-1 signature method {method} (allow_sha1 is false)"
        )
    if method not in _ANY_SIGNATURE_METHOD:
        raise TokenRejected("unsupported", f"{where}: unsupported signature method {method!r}")
    c14n = _algorithm(_first(info.c14n))
    if c14n not in C14N:
        raise TokenRejected("unsupported", f"{where}: unsupported canonicalization {c14n!r}")
    for reference in info.first_references:
        digest = _algorithm(_first(reference.digests))
        if digest in SHA1_DIGESTS and not allow_sha1:
            raise TokenRejected(
                "unsupported", f"{where}: SHA-1 digest {digest} (allow_sha1 is false)"
            )
        if digest not in _ANY_DIGEST:
            raise TokenRejected("unsupported", f"{where}: unsupported digest method {digest!r}")


def check_transforms(sig: etree._Element, where: str, info: SignedInfo | None = None) -> None:
    """`unsupported` for more than two Transforms in a Reference, and for any transform
    but enveloped-signature and the c14n family."""
    if info is None:
        info = read_signed_info(sig)
    for reference in info.references:
        transforms = reference.transforms
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


def check_reference(sig: etree._Element, where: str, info: SignedInfo | None = None) -> str | None:
    """`signature-wrapping` unless the one Reference covers exactly the parent element.

    Returns the ID the Reference names (None for `URI=""`).
    """
    if info is None:
        info = read_signed_info(sig)
    references = info.references
    if len(references) != 1:
        raise TokenRejected(
            "signature-wrapping",
            f"{where}: expected exactly one Reference, found {len(references)}",
        )
    parent = sig.getparent()
    assert parent is not None
    uri = references[0].node.get("URI")
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


Transform: TypeAlias = Any  # an xmlsec transform constant (xmlsec.constants.__Transform)
Enabled: TypeAlias = tuple[list[Transform], list[Transform]]  # (signature, reference)


def _enabled(info: SignedInfo) -> Enabled:
    """The transforms this signature names, (signature ones, reference ones): only these
    are enabled in its context. Every node that names an algorithm is looked at, so
    that one the first checks missed (a second SignatureMethod) is refused here."""
    assert info.first is not None
    signature: list[Transform] = []
    reference: list[Transform] = []
    for nodes, into in (
        (info.c14n, signature),
        (info.methods, signature),
        ([d for r in info.first_references for d in r.digests], reference),
        ([t for r in info.first_references for t in r.transforms], reference),
    ):
        for node in nodes:
            transform = _BY_HREF.get(_algorithm(node))
            if transform is None:  # e.g. a second SignatureMethod the first checks missed
                raise TokenRejected("unsupported", f"algorithm {_algorithm(node)!r} is refused")
            into.append(transform)
    return signature, reference


def _context(
    key: xmlsec.Key,
    info: SignedInfo,
    parent: etree._Element,
    ref_id: str | None,
    enabled: Enabled | None,
) -> tuple[xmlsec.SignatureContext, Enabled]:
    """A verification context with the pinned key and only this signature's (already
    checked) algorithms enabled; and those algorithms (`enabled`, once read, serves the
    next certificate's context).

    The configured key is shared between threads: the setter copies it into the context
    (xmlSecKeyDuplicate, holding the GIL, which takes a reference on the OpenSSL key),
    and verification uses only that copy."""
    ctx = xmlsec.SignatureContext()
    if ref_id is not None:
        ctx.register_id(parent, "ID")
    if enabled is None:
        enabled = _enabled(info)
    for transform in enabled[0]:
        ctx.enable_signature_transform(transform)
    for transform in enabled[1]:
        ctx.enable_reference_transform(transform)
    ctx.key = key
    return ctx, enabled


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
    info = read_signed_info(sig)
    check_algorithms(sig, where, allow_sha1, info)
    ref_id = check_reference(sig, where, info)
    check_transforms(sig, where, info)
    parent = sig.getparent()
    assert parent is not None
    enabled: Enabled | None = None
    for cert in trusted:
        try:
            ctx, enabled = _context(cert.key, info, parent, ref_id, enabled)
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
