"""Keys and certificates: the configured IdP signing certificates, the SP decryption
key, and the test IdP key pair `jitprov init` creates.

Trust comes only from here: a signature is verified with keys built from the
connection's `certificate` files (or the signing certificates of its `metadata`),
never from a key or certificate carried in the token.
"""

from __future__ import annotations

import base64
import datetime as dt
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import xmlsec
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from xmlsec import constants as xc

from engine.config import Connection
from engine.filecache import FileCache
from engine.moments import stamp as moment

_PEM_CERT = re.compile(rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", re.DOTALL)


class KeyFileError(Exception):
    """A configured certificate or key file cannot be read or parsed."""


@dataclass(frozen=True, slots=True)
class TrustedCert:
    """One configured signing certificate: its DER (to recognise it in a KeyInfo),
    its validity dates, and an xmlsec key holding only its public key."""

    source: str
    der: bytes
    not_before: dt.datetime
    not_after: dt.datetime
    key: xmlsec.Key


def cert_from_der(der: bytes, source: str) -> TrustedCert:
    """A TrustedCert from DER bytes (a metadata X509Certificate, a PEM file's block)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # old IdP certs: negative serials and the like
            cert = x509.load_der_x509_certificate(der)
    except ValueError as exc:
        raise KeyFileError(f"{source}: not an X.509 certificate: {exc}") from None
    # Only the public key: verification needs nothing else, and an xmlsec key that also
    # carries the certificate costs ~90 µs to copy into every SignatureContext.
    public = cert.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    key = xmlsec.Key.from_memory(public, xc.KeyDataFormatPem, None)
    return TrustedCert(source, der, cert.not_valid_before_utc, cert.not_valid_after_utc, key)


def ders_from_pem(data: bytes, source: str) -> list[bytes]:
    """Every certificate in a PEM (or bare base64 / DER) file, as DER."""
    blocks = _PEM_CERT.findall(data)
    if blocks:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return [
                x509.load_pem_x509_certificate(b).public_bytes(serialization.Encoding.DER)
                for b in blocks
            ]
    stripped = data.strip()
    if stripped.startswith(b"\x30"):
        return [stripped]
    try:
        return [base64.b64decode(b"".join(stripped.split()), validate=True)]
    except ValueError:
        raise KeyFileError(f"{source}: no certificate found") from None


# One entry per certificate or metadata file (and entity), kept until the file changes:
# connections taking turns never evict each other's keys (engine.filecache).
_CERTS: FileCache[tuple[tuple[TrustedCert, ...], dt.datetime | None]] = FileCache()
_KEYS: FileCache[bytes] = FileCache()


def _certs_of_file(
    path: Path, entity: str | None
) -> tuple[tuple[TrustedCert, ...], dt.datetime | None]:
    """A file's certificates, and for metadata its validUntil (read again only when the
    file changes); OSError when it cannot be read."""
    return _CERTS.get((str(path), entity), path, lambda: read_certs(path, entity))


def read_certs(
    path: Path, entity: str | None
) -> tuple[tuple[TrustedCert, ...], dt.datetime | None]:
    """Read and parse a file's certificates, and for metadata its validUntil."""
    data = path.read_bytes()
    if entity is not None:  # IdP metadata XML: the signing certificates of that entity
        from engine.saml.metadata import MetadataError, parse_metadata

        try:
            metadata = parse_metadata(data, entity)
        except MetadataError as exc:
            raise KeyFileError(f"{path.name}: {exc}") from None
        certs = tuple(cert_from_der(der, path.name) for der in metadata.signing_certs)
        return certs, metadata.valid_until
    try:
        certs = tuple(cert_from_der(der, path.name) for der in ders_from_pem(data, path.name))
    except ValueError as exc:
        raise KeyFileError(f"{path.name}: cannot read certificate: {exc}") from None
    return certs, None


def trusted_certs(
    connection: Connection, now: dt.datetime | None = None
) -> tuple[TrustedCert, ...]:
    """The connection's signing certificates (files are re-read only when they change).
    With `now`, a metadata file past its validUntil gives none; when that leaves no
    certificate at all, KeyFileError says the metadata expired."""
    found: list[TrustedCert] = []
    expired: list[str] = []
    paths: list[tuple[Path, str | None]] = [(p, None) for p in connection.certificates]
    if connection.metadata is not None:
        paths.append((connection.metadata, connection.issuer))
    for path, entity in paths:
        try:
            certs, valid_until = _certs_of_file(path, entity)
        except OSError as exc:
            raise KeyFileError(f"{path}: cannot read: {exc}") from None
        if now is not None and valid_until is not None and now >= valid_until:
            expired.append(
                f"the metadata {path.name} expired at {moment(valid_until)} (its validUntil);"
                " get a current copy from the IdP"
            )
            continue
        found.extend(certs)
    if connection.metadata_url is not None:
        from engine.remote import FetchError
        from engine.saml.fetched import fetched_certs, metadata_source

        try:
            fetched, valid_until = fetched_certs(connection)
        except FetchError as exc:
            raise KeyFileError(f"cannot fetch the connection's metadata: {exc}") from None
        if now is not None and valid_until is not None and now >= valid_until:
            error = metadata_source(connection).last_error
            expired.append(
                f"the metadata from {connection.metadata_url} expired at {moment(valid_until)}"
                " (its validUntil), and no newer copy could be had"
                + (f": {error}" if error else "")
            )
        else:
            found.extend(c for c in fetched if isinstance(c, TrustedCert))
    if not found and expired:
        raise KeyFileError("; ".join(expired))
    return tuple(found)


def trusted_file_certs(path: Path) -> tuple[TrustedCert, ...]:
    """The certificates of one PEM or DER file (a metadata_certificate); KeyFileError."""
    try:
        return _certs_of_file(path, None)[0]
    except OSError as exc:
        raise KeyFileError(f"{path}: cannot read: {exc}") from None


def decryption_key_pem(connection: Connection) -> bytes | None:
    """The SP private key PEM for EncryptedAssertion, or None when none is configured."""
    if connection.decryption_key is None:
        return None
    try:
        path = connection.decryption_key
        return _KEYS.get(str(path), path, path.read_bytes)
    except OSError as exc:
        raise KeyFileError(f"{connection.decryption_key}: cannot read: {exc}") from None


def generate_test_idp(dir: Path, common_name: str) -> tuple[Path, Path]:
    """Create `idp-test.key` and `idp-test.crt` (self-signed RSA-2048, 10 years) in `dir`.

    For `jitprov init` and `jitprov mint`: a test IdP whose tokens the workspace's
    example connection trusts. Returns (key path, cert path).
    """
    return generate_key_pair(dir, "idp-test", common_name)


def generate_key_pair(dir: Path, stem: str, common_name: str) -> tuple[Path, Path]:
    """Create `<stem>.key` (PKCS#8, mode 600) and `<stem>.crt` (self-signed RSA-2048, 10
    years) in `dir`; returns (key path, cert path)."""
    dir.mkdir(parents=True, exist_ok=True)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_path, cert_path = dir / f"{stem}.key", dir / f"{stem}.crt"
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key_path.chmod(0o600)
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return key_path, cert_path
