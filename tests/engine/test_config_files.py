"""The files a connection names are checked at load for what they should hold: a wrong
file is a ConfigError naming the key, what was expected and what was found, not a
sign-in refused later. The checks accept what the engine's own readers accept."""

from __future__ import annotations

import base64
import json
import sys
import tempfile
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.config import ConfigError, load_config
from engine.filekinds import METADATA_HEAD_BYTES
from tests.engine.test_config import error_of, write

if str(Path(__file__).parent) not in sys.path:  # as the other tests import their fixtures
    sys.path.insert(0, str(Path(__file__).parent))
from saml_fixtures import IDP_CERT, IDP_KEY, ISSUER, MD, OTHER_CERT, SP_CERT, SP_KEY, entity

SAML = """
[connections.okta]
protocol = "saml2"
issuer = "https://idp.example.org/saml"
audience = "https://sp.example.com/saml"
rules = "okta.rules"
"""

OIDC = """
[connections.google]
protocol = "oidc"
issuer = "https://accounts.example.com"
audience = "client-123"
rules = "okta.rules"
"""

JWKS = {"keys": [{"kty": "oct", "k": "c2VjcmV0LXNlY3JldC1zZWNyZXQ", "kid": "k1"}]}

EXPECT_METADATA = "expected SAML metadata XML (an EntityDescriptor or EntitiesDescriptor)"
EXPECT_CERT = "expected an X.509 certificate (PEM -----BEGIN CERTIFICATE-----, DER or base64)"
EXPECT_KEY = "expected a PEM private key (-----BEGIN PRIVATE KEY-----)"
EXPECT_CLIENT_KEY = "expected an RSA or EC private key (PEM -----BEGIN PRIVATE KEY-----, or DER)"
EXPECT_JWKS = 'expected a JWKS (a JSON object with a "keys" list)'


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    return _workspace(tmp_path)


def _workspace(folder: Path) -> Path:
    """A folder with right files of every kind (tests overwrite the one they are about)."""
    (folder / "okta.rules").write_text("username = subject\n")
    (folder / "idp.crt").write_bytes(IDP_CERT.read_bytes())
    (folder / "idp.xml").write_text(entity())
    (folder / "sp.crt").write_bytes(SP_CERT.read_bytes())
    (folder / "sp.key").write_bytes(SP_KEY.read_bytes())
    (folder / "jwks.json").write_text(json.dumps(JWKS))
    (folder / "client.key").write_bytes(_ec_key_pem())
    return folder


def _ec_key_pem() -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


# (the key, the config naming the file `f` under that key, what the key expects)
KEYS: dict[str, tuple[str, str]] = {
    "metadata": (SAML + 'metadata = "f"\n', EXPECT_METADATA),
    "certificate": (SAML + 'certificate = "f"\n', EXPECT_CERT),
    "certificate-list": (SAML + 'certificate = ["idp.crt", "f"]\n', EXPECT_CERT),
    "sp_certificate": (
        SAML + 'certificate = "idp.crt"\nsp_certificate = "f"\nsp_key = "sp.key"\n',
        EXPECT_CERT,
    ),
    "sp_encryption_certificate": (
        SAML
        + 'certificate = "idp.crt"\nsp_encryption_certificate = "f"\ndecryption_key = "sp.key"\n',
        EXPECT_CERT,
    ),
    "metadata_certificate": (
        SAML + 'metadata_url = "https://idp.example.org/md"\nmetadata_certificate = "f"\n',
        EXPECT_CERT,
    ),
    "decryption_key": (SAML + 'certificate = "idp.crt"\ndecryption_key = "f"\n', EXPECT_KEY),
    "sp_key": (
        SAML + 'certificate = "idp.crt"\nsp_certificate = "sp.crt"\nsp_key = "f"\n',
        EXPECT_KEY,
    ),
    "client_key": (
        OIDC + 'jwks = "jwks.json"\ntoken_endpoint_auth_method = "private_key_jwt"\n'
        'client_key = "f"\n',
        EXPECT_CLIENT_KEY,
    ),
    "jwks": (OIDC + 'jwks = "f"\n', EXPECT_JWKS),
}
CERT_KEYS = [
    "certificate",
    "certificate-list",
    "sp_certificate",
    "sp_encryption_certificate",
    "metadata_certificate",
]
PRIVATE_KEYS = ["decryption_key", "sp_key", "client_key"]


def _name(which: str) -> str:
    return "certificate" if which == "certificate-list" else which


def _connection_key(which: str) -> str:
    connection = "google" if which in ("client_key", "jwks") else "okta"
    return f"connections.{connection}.{_name(which)}"


def loads(ws: Path, which: str, content: bytes) -> None:
    """The config naming a file holding `content` under `which` loads."""
    (ws / "f").write_bytes(content)
    load_config(write(ws, KEYS[which][0]))


def refused(ws: Path, which: str, content: bytes, found: str) -> str:
    """The config naming a file holding `content` under `which` is a ConfigError naming
    the key, what it expects and what was `found`; the message."""
    (ws / "f").write_bytes(content)
    message = error_of(ws, KEYS[which][0])
    expected = KEYS[which][1]
    assert message.startswith(f"jitprov.toml: {_connection_key(which)}: {expected} in f, found ")
    assert found in message, message
    return message


# --- right files load ---------------------------------------------------------------


def test_right_files_of_every_kind_load(ws: Path) -> None:
    for which in KEYS:
        source = {
            "metadata": ws / "idp.xml",
            "jwks": ws / "jwks.json",
            "client_key": ws / "client.key",
            "decryption_key": ws / "sp.key",
            "sp_key": ws / "sp.key",
        }.get(which, ws / "idp.crt")
        loads(ws, which, source.read_bytes())


def test_the_demo_workspace_still_loads() -> None:
    demo = Path(__file__).resolve().parents[2] / "examples" / "demo" / "jitprov.toml"
    assert load_config(demo).connections


@pytest.mark.parametrize(
    "content",
    [
        entity().encode(),
        b'<?xml version="1.0" encoding="UTF-8"?>\n' + entity().encode(),
        b"\xef\xbb\xbf<!-- from the IdP -->\n<?pi here?>\n  " + entity().encode(),
        f'<EntitiesDescriptor xmlns="{MD}" Name="fed">'.encode() + entity().encode() + b"</x>",
        f"<md:EntitiesDescriptor\n  xmlns:md='{MD}'\n>".encode(),
        ('<?xml version="1.0" encoding="UTF-16"?>' + entity()).encode("utf-16"),
        b'<?xml version="1.0" encoding="ISO-8859-1"?>\n'
        + f'<md:EntityDescriptor xmlns:md="{MD}" entityID="M\xfcnchen">'.encode("latin-1"),
    ],
    ids=["plain", "declared", "bom-comment-pi", "entities", "single-quotes", "utf-16", "latin-1"],
)
def test_metadata_in_every_form_the_engine_reads_loads(ws: Path, content: bytes) -> None:
    loads(ws, "metadata", content)


@pytest.mark.parametrize("which", CERT_KEYS)
def test_a_certificate_as_pem_der_or_bare_base64_loads(ws: Path, which: str) -> None:
    """As engine.saml.keys reads certificates: PEM blocks, else DER, else base64 of DER."""
    pem = IDP_CERT.read_bytes()
    der = base64.b64decode(b"".join(pem.strip().splitlines()[1:-1]))
    loads(ws, which, pem)
    loads(ws, which, b"subject=CN=idp\nissuer=CN=idp\n" + pem)  # openssl's text before it
    loads(ws, which, pem + OTHER_CERT.read_bytes())  # a rollover bundle
    loads(ws, which, der)
    loads(ws, which, base64.encodebytes(der))


@pytest.mark.parametrize("which", ["decryption_key", "sp_key", "client_key"])
def test_a_pem_private_key_in_any_pem_form_loads(ws: Path, which: str) -> None:
    loads(ws, which, SP_KEY.read_bytes())  # PKCS#8
    key = serialization.load_pem_private_key(IDP_KEY.read_bytes(), password=None)
    traditional = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    loads(ws, which, traditional)  # -----BEGIN RSA PRIVATE KEY-----
    loads(ws, which, IDP_CERT.read_bytes() + SP_KEY.read_bytes())  # certificate, then key


def test_client_key_may_be_der_or_openssh_as_joserfc_reads_it(ws: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    none = serialization.NoEncryption()
    der = key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, none)
    openssh = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, none
    )
    loads(ws, "client_key", der)
    loads(ws, "client_key", openssh)


@pytest.mark.parametrize(
    "content",
    [
        json.dumps(JWKS).encode(),
        b'{"keys": []}',
        json.dumps(JWKS["keys"][0]).encode(),  # a single JWK: a set of one
        b"\xef\xbb\xbf" + json.dumps(JWKS).encode(),
        json.dumps(JWKS).encode("utf-16"),
    ],
    ids=["jwks", "empty-set", "single-jwk", "bom", "utf-16"],
)
def test_jwks_in_every_form_the_engine_reads_loads(ws: Path, content: bytes) -> None:
    loads(ws, "jwks", content)


# --- wrong files are errors ---------------------------------------------------------


def test_a_pem_certificate_as_metadata(ws: Path) -> None:
    message = refused(ws, "metadata", IDP_CERT.read_bytes(), "a PEM certificate")
    assert message == (
        f"jitprov.toml: connections.okta.metadata: {EXPECT_METADATA} in f, found a PEM certificate"
    )


@pytest.mark.parametrize(
    ("content", "found"),
    [
        (json.dumps(JWKS).encode(), "a JWKS (JSON)"),
        (b"", "an empty file"),
        (b" \n\t\n", "a file holding only whitespace"),
        (
            b'<?xml version="1.0"?>\n<!DOCTYPE md [<!ENTITY x "y">]>\n' + entity().encode(),
            "XML with a DOCTYPE, which jitprov refuses",
        ),
        (b"<! doctype html><html/>", "XML with a DOCTYPE"),
        (
            b'<samlp:Response xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" ID="r"/>',
            "XML whose root element is <samlp:Response> in namespace "
            "urn:oasis:names:tc:SAML:2.0:protocol",
        ),
        (b"<EntityDescriptor/>", "XML whose root element is <EntityDescriptor> in no namespace"),
        (
            f'<md:IDPSSODescriptor xmlns:md="{MD}"/>'.encode(),
            f"XML whose root element is <md:IDPSSODescriptor> in namespace {MD}",
        ),
        (b"<md:EntityDescriptor entityID='x'/>", "has an undeclared prefix"),
        (b"<md:EntityDescriptor xmlns:md='" + MD.encode() + b"'", "start tag does not end"),
        (b'<a b="\xe9"/>', "XML that is not UTF-8 text (byte 0xE9 at offset 6)"),
        (b'  <?xml version="1.0"?>' + entity().encode(), "declaration (<?xml ...?>) is not at"),
        (b"<!-- unended " + entity().encode(), "a comment that does not end"),
        (b"entityID = x", "text that is not PEM, XML or JSON"),
        (b"\x00\x01\x02\xff", "binary data"),
        (SP_KEY.read_bytes(), "a PEM private key"),
    ],
    ids=[
        "jwks",
        "empty",
        "whitespace",
        "doctype",
        "doctype-lower",
        "saml-response",
        "no-namespace",
        "other-md-element",
        "undeclared-prefix",
        "unended",
        "not-utf8",
        "late-declaration",
        "unended-comment",
        "text",
        "binary",
        "private-key",
    ],
)
def test_wrong_files_as_metadata(ws: Path, content: bytes, found: str) -> None:
    refused(ws, "metadata", content, found)


@pytest.mark.parametrize("which", CERT_KEYS)
@pytest.mark.parametrize(
    ("content", "found"),
    [
        (entity().encode(), "SAML metadata XML"),
        (SP_KEY.read_bytes(), "a PEM private key"),
        (json.dumps(JWKS).encode(), "a JWKS (JSON)"),
        (b"", "an empty file"),
        (b"cert", "base64 text that is not an X.509 certificate"),
        (b"\x30\x82\x01\x00junk", "DER data that is not an X.509 certificate"),
        (
            IDP_CERT.read_bytes()
            + b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
            "a PEM certificate block that is not an X.509 certificate (the certificate 2 of 2)",
        ),
    ],
    ids=["metadata", "private-key", "jwks", "empty", "word", "bad-der", "bad-second-block"],
)
def test_wrong_files_as_certificates(ws: Path, which: str, content: bytes, found: str) -> None:
    refused(ws, which, content, found)


def test_metadata_xml_as_a_certificate_reads_in_full(ws: Path) -> None:
    message = refused(ws, "certificate", entity().encode(), "SAML metadata XML")
    assert message == (
        f"jitprov.toml: connections.okta.certificate: {EXPECT_CERT} in f, found SAML metadata XML"
    )


@pytest.mark.parametrize("which", PRIVATE_KEYS)
@pytest.mark.parametrize(
    ("content", "found"),
    [
        (IDP_CERT.read_bytes(), "a PEM certificate"),
        (entity().encode(), "SAML metadata XML"),
        (b"", "an empty file"),
        (b"not a key", "text that is not PEM, XML or JSON"),
        (
            b"-----BEGIN PUBLIC KEY-----\nMFkw\n-----END PUBLIC KEY-----\n",
            "a PEM public key",
        ),
        (
            b"-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIF\n-----END ENCRYPTED PRIVATE KEY-----\n",
            "an encrypted private key",
        ),
        (
            b"-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES-128-CBC,00\n",
            "an encrypted private key",
        ),
    ],
    ids=["certificate", "metadata", "empty", "text", "public-key", "pkcs8-enc", "legacy-enc"],
)
def test_wrong_files_as_private_keys(ws: Path, which: str, content: bytes, found: str) -> None:
    refused(ws, which, content, found)


def test_a_certificate_as_a_private_key(ws: Path) -> None:
    message = refused(ws, "sp_key", IDP_CERT.read_bytes(), "a PEM certificate")
    assert message == (
        f"jitprov.toml: connections.okta.sp_key: {EXPECT_KEY} in f, found a PEM certificate"
    )


def test_xmlsec_keys_are_not_openssh_and_client_key_not_a_der_certificate(ws: Path) -> None:
    openssh = b"-----BEGIN OPENSSH PRIVATE KEY-----\nb3Bl\n-----END OPENSSH PRIVATE KEY-----\n"
    refused(ws, "decryption_key", openssh, "an OpenSSH private key")
    pem = IDP_CERT.read_bytes()
    der = base64.b64decode(b"".join(pem.strip().splitlines()[1:-1]))
    refused(ws, "client_key", der, "a DER certificate")


@pytest.mark.parametrize(
    ("content", "found"),
    [
        (b"{}", 'a JSON object without "keys"'),
        (b'{"issuer": "https://accounts.example.com"}', 'a JSON object without "keys"'),
        (b'{"keys": {"kty": "RSA"}}', 'a JSON object whose "keys" is not a list (it is an object)'),
        (b"[]", "JSON that is a list"),
        (b"{", "invalid JSON"),
        (b"[" * 100_000, "JSON nested too deeply"),
        (IDP_CERT.read_bytes(), "a PEM certificate"),
        (entity().encode(), "SAML metadata XML"),
        (b"", "an empty file"),
    ],
    ids=[
        "empty-object",
        "discovery",
        "keys-object",
        "list",
        "broken",
        "deep",
        "pem",
        "xml",
        "empty",
    ],
)
def test_wrong_files_as_jwks(ws: Path, content: bytes, found: str) -> None:
    refused(ws, "jwks", content, found)


def test_a_jwks_larger_than_a_fetched_one_may_be_is_not_read(ws: Path) -> None:
    """A JWKS is parsed with the bound of a fetched one (1 MiB): a larger file is not read
    whole, and is an error."""
    padded = {"keys": JWKS["keys"], "pad": "x" * 1_100_000}
    refused(ws, "jwks", json.dumps(padded).encode(), "of more than 1048576 bytes")


def test_an_unreadable_file_is_an_error(ws: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (ws / "f").write_bytes(IDP_CERT.read_bytes())
    real_open = Path.open

    def fail(self: Path, *args: object, **kwargs: object) -> object:
        if self.name == "f":
            raise PermissionError(13, "Permission denied")
        return real_open(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Path, "open", fail)
    message = error_of(ws, KEYS["certificate"][0])
    assert message == "jitprov.toml: connections.okta.certificate: cannot read f: Permission denied"


def test_only_the_start_of_a_metadata_file_is_read_at_load(ws: Path) -> None:
    """Metadata can be a federation aggregate of tens of megabytes: the check at load
    reads only its start (METADATA_HEAD_BYTES) to find the root element, never the whole
    file. Shown by behaviour, not timing: 20 MB whose first 64 KiB are the start of a
    valid EntityDescriptor and the rest garbage (not UTF-8, not XML) loads. The whole
    file is read, and refused, where the metadata is used: parse_metadata, at sign-in
    and by `jitprov connection keys`."""
    from engine.saml.metadata import MetadataError, parse_metadata

    start = f'<md:EntityDescriptor xmlns:md="{MD}" entityID="{ISSUER}">'.encode()
    padding = b"<!-- " + b"." * (METADATA_HEAD_BYTES - len(start) - 9) + b" -->"
    head = start + padding
    assert len(head) == METADATA_HEAD_BYTES
    content = head + b"\xff\x00<garbage" * (20_000_000 // 10)
    loads(ws, "metadata", content)
    with pytest.raises(MetadataError):
        parse_metadata((ws / "f").read_bytes(), ISSUER)


def test_a_root_start_tag_past_the_first_64_kib_is_an_error(ws: Path) -> None:
    """What cannot be decided from the start of the file is said to be so."""
    content = b"<!-- " + b"." * METADATA_HEAD_BYTES + b" -->" + entity().encode()
    refused(ws, "metadata", content, f"in the first {METADATA_HEAD_BYTES} bytes")


# --- any bytes at all: a ConfigError or a loaded config, nothing else ---------------

_PREFIXES = [
    b"",
    f'<md:EntityDescriptor xmlns:md="{MD}"'.encode(),
    b'<?xml version="1.0" encoding="',
    b"<!--",
    b"\xef\xbb\xbf<",
    b"\xff\xfe<\x00",
    b"-----BEGIN CERTIFICATE-----\n",
    b"-----BEGIN PRIVATE KEY-----",
    b"-----BEGIN ",
    b"\x30\x82",
    b'{"keys": ',
    b"{",
]


@settings(max_examples=200, deadline=None)
@given(
    which=st.sampled_from(["metadata", "certificate", "jwks", "decryption_key", "client_key"]),
    prefix=st.sampled_from(_PREFIXES),
    content=st.binary(max_size=2_000),
)
def test_any_bytes_give_a_config_or_a_config_error(
    which: str, prefix: bytes, content: bytes
) -> None:
    # hypothesis runs the body many times with one set of fixtures: a folder of its own
    with tempfile.TemporaryDirectory() as folder:
        ws = _workspace(Path(folder))
        (ws / "f").write_bytes(prefix + content)
        try:
            load_config(write(ws, KEYS[which][0]))
        except ConfigError as exc:
            assert str(exc).startswith(f"jitprov.toml: {_connection_key(which)}: ")
