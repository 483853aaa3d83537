"""Test IdP/SP key pairs (generated once, in data/saml/) and a token factory.

`make_token` mints a valid, signed token for `connection()` at `AT`, letting a test
change one thing (in the Assertion before it is signed, in the Response, the signing
choice, encryption) so each bad token differs from a good one by its one defect.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from lxml import etree

from engine.config import Connection
from engine.saml import mint as m
from engine.saml.xml import NS
from engine.sample import Sample

DATA = Path(__file__).parent / "data" / "saml"
IDP_KEY, IDP_CERT = DATA / "idp.key", DATA / "idp.crt"
OTHER_KEY, OTHER_CERT = DATA / "other-idp.key", DATA / "other-idp.crt"
SP_KEY, SP_CERT = DATA / "sp.key", DATA / "sp.crt"
ISSUER = "https://idp.example.org/saml"
AUDIENCE = "https://sp.example.com/saml"
RECIPIENT = "https://sp.example.com/saml/acs"
AT = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
LATER = AT + timedelta(seconds=30)
ATTRIBUTES = {
    "email": ["jdoe@example.com"],
    "memberOf": ["CN=eng,OU=Apps,DC=example,DC=com", "CN=vpn,OU=Net,DC=example,DC=com"],
    "displayName": ["Jane Doe"],
}
SAMPLE = Sample(
    subject="jdoe@example.com",
    subject_format="urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress",
    authn_context="urn:oasis:names:tc:SAML:2.0:ac:classes:PasswordProtectedTransport",
    token_id="_token-1",
    attributes=ATTRIBUTES,
)
Q = {"samlp": NS["samlp"], "saml": NS["saml"], "ds": NS["ds"]}

Mutator = Callable[[etree._Element], object]


def connection(**overrides: Any) -> Connection:
    """The test connection: our test IdP, strict defaults, recipient set."""
    values: dict[str, Any] = {
        "id": "test",
        "protocol": "saml2",
        "issuer": ISSUER,
        "audience": AUDIENCE,
        "recipient": RECIPIENT,
        "rules": DATA / "none.rules",
        "certificates": (IDP_CERT,),
        "decryption_key": SP_KEY,
    }
    values.update(overrides)
    return Connection(**values)


def make_response_tree(
    *,
    signing: m.Signing = "assertion",
    assertion: Mutator | None = None,
    response: Mutator | None = None,
    after_sign: Mutator | None = None,
    encrypt_for: Path | None = None,
    cipher: m.Cipher = "aes256-cbc",
    sample: Sample = SAMPLE,
    conn: Connection | None = None,
    key: Path = IDP_KEY,
    cert: Path = IDP_CERT,
    in_response_to: str | None = None,
    at: datetime = AT,
) -> etree._Element:
    """A minted Response tree; the mutators run before signing (so the signatures stay
    valid) except `after_sign`, which runs last (to break or wrap signatures)."""
    conn = conn or connection()
    key_pem, cert_pem = key.read_bytes(), cert.read_bytes()
    node = m.build_assertion(sample, conn, at, in_response_to=in_response_to)
    if assertion is not None:
        assertion(node)
    if signing in ("assertion", "both"):
        m.sign(node, key_pem, cert_pem)
    carried = m.encrypt(node, encrypt_for.read_bytes(), cipher=cipher) if encrypt_for else node
    root = m.build_response(carried, conn, at, in_response_to=in_response_to)
    if response is not None:
        response(root)
    if signing in ("response", "both"):
        m.sign(root, key_pem, cert_pem)
    if after_sign is not None:
        after_sign(root)
    return root


def make_token(encoding: m.Encoding = "xml", **options: Any) -> bytes:
    """`make_response_tree` serialised and encoded."""
    root = make_response_tree(**options)
    return m.encode(
        etree.tostring(root.getroottree(), xml_declaration=True, encoding="UTF-8"), encoding
    )


def find(root: etree._Element, path: str) -> etree._Element:
    """The one element at an XPath (with samlp/saml/ds prefixes)."""
    found = root.xpath(path, namespaces=Q)
    assert isinstance(found, list) and found, path
    node = found[0]
    assert isinstance(node, etree._Element)
    return node


WORKSPACE_CONFIG = """# A workspace for metadata import tests.
[store]
path = "jitprov.db"   # keep this comment
"""


def import_into_workspace(metadata: Path, workspace: Path, *extra: str) -> dict[str, Any] | None:
    """Run `jitprov connection import-metadata METADATA --id md` in a fresh workspace.

    Returns the new config as data on success; None on failure, after checking the
    config file was left exactly as it was.
    """
    import tomllib

    from tui.cli import run

    config = workspace / "jitprov.toml"
    if not config.exists():
        config.write_text(WORKSPACE_CONFIG, encoding="utf-8")
    before = config.read_text(encoding="utf-8")
    code = run(
        [
            "--config",
            str(config),
            "connection",
            "import-metadata",
            str(metadata),
            "--id",
            "md",
            *extra,
        ]
    )
    after = config.read_text(encoding="utf-8")
    if code != 0:
        assert code == 1
        assert after == before
        return None
    assert "# keep this comment" in after
    return tomllib.loads(after)


MD = "urn:oasis:names:tc:SAML:2.0:metadata"
DS = "http://www.w3.org/2000/09/xmldsig#"


def _b64(cert: Path) -> str:
    return "".join(cert.read_text().splitlines()[1:-1])


def entity(
    entity_id: str = ISSUER, certs: tuple[Path, ...] = (IDP_CERT,), use: str = "signing"
) -> str:
    """IdP metadata (one EntityDescriptor) with these certificates as KeyDescriptors."""
    keys = "".join(
        f'<md:KeyDescriptor use="{use}"><ds:KeyInfo><ds:X509Data><ds:X509Certificate>'
        f"{_b64(c)}</ds:X509Certificate></ds:X509Data></ds:KeyInfo></md:KeyDescriptor>"
        for c in certs
    )
    return (
        f'<md:EntityDescriptor xmlns:md="{MD}" xmlns:ds="{DS}" entityID="{entity_id}">'
        '<md:IDPSSODescriptor protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol">'
        f"{keys}"
        '<md:SingleSignOnService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST" '
        'Location="https://idp.example.org/sso"/>'
        "</md:IDPSSODescriptor></md:EntityDescriptor>"
    )
