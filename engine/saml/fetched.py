"""SAML metadata from a URL (`metadata_url`): fetched and kept current by engine.remote,
and trusted only when it passes every check here (docs/tokens.md, "Metadata from a URL").

A fetched document is kept only when:
- it parses with the token parser's safety (no DTD, no entities, bounded markup);
- its root element (EntityDescriptor or EntitiesDescriptor) carries exactly one
  enveloped signature covering the whole document, verified by xmlsec with the pinned
  `metadata_certificate` and nothing from the document's own KeyInfo (the token's
  signature checks: algorithms, one Reference naming the root, transforms, unique IDs) —
  unless `metadata_signed = false` was written;
- it describes the connection's `issuer` as an IdP with at least one signing
  certificate;
- its `validUntil` has not passed.
Otherwise the last good copy stays (in memory and in `.jitprov/cache/`), and the failure
is remembered for `jitprov connection refresh` and the messages. Every signing
certificate the IdP lists is trusted, for that entity only (key rollover). A copy serves
for its `cacheDuration` or until its `validUntil`, whichever is sooner, kept between
`refresh_min` and `refresh_max`.
"""

from __future__ import annotations

import re
import threading
from datetime import UTC, datetime

from lxml import etree

from engine.config import Connection
from engine.moments import stamp
from engine.remote import FetchError, Remote, remote
from engine.saml.metadata import MetadataError, parse_metadata
from engine.saml.xml import DS, parse_xml
from engine.token import TokenRejected

_DURATION = re.compile(
    r"\AP(?:(\d+)Y)?(?:(\d+)M)?(?:(\d+)W)?(?:(\d+)D)?"
    r"(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+(?:\.\d+)?)S)?)?\Z"
)
_UNITS = (365 * 86_400, 30 * 86_400, 7 * 86_400, 86_400, 3600, 60, 1)

_PARSED: dict[int, tuple[bytes, tuple[object, ...], datetime | None]] = {}
_PARSED_LOCK = threading.Lock()


def metadata_source(connection: Connection) -> Remote:
    """The connection's metadata Remote (one per URL and trust settings per process)."""
    assert connection.metadata_url is not None
    return remote(
        connection.metadata_url,
        connection.cache_dir,
        validate=lambda body: check_document(body, connection),
        freshness=lambda body, _header: freshness(body, connection),
        key=(
            "saml",
            connection.issuer,
            str(connection.metadata_certificate),
            connection.metadata_signed,
        ),
    )


def fetched_certs(connection: Connection) -> tuple[tuple[object, ...], datetime | None]:
    """The signing certificates (engine.saml.keys.TrustedCert) of the connection's
    fetched metadata and its validUntil; FetchError when there is no good copy."""
    from engine.saml.keys import cert_from_der

    source = metadata_source(connection)
    body = source.document(min_interval=connection.refresh_min)
    with _PARSED_LOCK:
        cached = _PARSED.get(id(source))
        if cached is not None and cached[0] is body:
            return cached[1], cached[2]
    try:
        idp = parse_metadata(body, connection.issuer)
    except MetadataError as exc:  # a kept copy passed this check already
        raise FetchError(f"{source.url}: {exc}") from None
    label = f"metadata {source.url}"
    certs = tuple(cert_from_der(der, label) for der in idp.signing_certs)
    with _PARSED_LOCK:
        _PARSED[id(source)] = (body, certs, idp.valid_until)
    return certs, idp.valid_until


def check_document(body: bytes, connection: Connection, now: datetime | None = None) -> None:
    """FetchError unless `body` may be trusted as the connection's metadata."""
    url = connection.metadata_url
    try:
        root = parse_xml(body, "the metadata")
        if connection.metadata_signed:
            _verify(root, connection, now or datetime.now(UTC))
        idp = parse_metadata(body, connection.issuer)
    except TokenRejected as exc:
        raise FetchError(f"{url}: {exc.message}") from None
    except MetadataError as exc:
        raise FetchError(f"{url}: {exc}") from None
    moment = now or datetime.now(UTC)
    if idp.valid_until is not None and idp.valid_until <= moment:
        raise FetchError(
            f"{url}: the metadata it serves expired at {stamp(idp.valid_until)} (its validUntil)"
        )


def _verify(root: etree._Element, connection: Connection, now: datetime) -> None:
    from engine.saml.keys import KeyFileError, trusted_file_certs
    from engine.saml.signature import verify_signature

    signatures = root.findall(f"{DS}Signature")
    if len(signatures) != 1:
        raise TokenRejected(
            "unsigned" if not signatures else "signature-wrapping",
            f"the metadata: expected one Signature on its root element, found {len(signatures)}"
            " (metadata_signed = false accepts unsigned metadata)",
        )
    assert connection.metadata_certificate is not None
    try:
        trusted = trusted_file_certs(connection.metadata_certificate)
    except KeyFileError as exc:
        raise TokenRejected("untrusted-signer", f"metadata_certificate: {exc}") from None
    verify_signature(
        signatures[0],
        "the metadata signature",
        trusted,
        allow_sha1=False,
        check_cert_dates=False,
        now=now,
    )


def freshness(body: bytes, connection: Connection) -> float:
    """Seconds a copy serves: its cacheDuration or the time to its validUntil, whichever
    is sooner (refresh_max without either), kept within refresh_min..refresh_max."""
    seconds = connection.refresh_max
    try:
        root = parse_xml(body, "the metadata")
        idp = parse_metadata(body, connection.issuer)
    except (TokenRejected, MetadataError):
        return connection.refresh_min
    for element in root.iter():
        duration = element.get("cacheDuration") if isinstance(element.tag, str) else None
        if duration is not None:
            found = _duration_seconds(duration)
            if found is not None:
                seconds = min(seconds, found)
    if idp.valid_until is not None:
        seconds = min(seconds, (idp.valid_until - datetime.now(UTC)).total_seconds())
    return min(max(seconds, connection.refresh_min), connection.refresh_max)


def _duration_seconds(text: str) -> float | None:
    """An xs:duration (`PT6H`, `P1D`, `P7DT12H`) in seconds (a month as 30 days, a year
    as 365); None when it is not one."""
    match = _DURATION.match(text.strip())
    if not match or not any(match.groups()):
        return None
    return sum(float(v) * unit for v, unit in zip(match.groups(), _UNITS, strict=True) if v)
