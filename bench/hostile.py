"""A family of hostile tokens, each as large as `max_token_bytes` allows, for the
adversarial benchmark stage and the cost-bound tests.

Each is forged (its signature cannot verify) and aims at one expensive step *before* the
signature check: parsing, schema validation, canonicalisation, decryption, JSON
decoding, number formatting. `hostile_tokens(folder)` builds them all beside a valid
token of each protocol, with the connections that read them.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from lxml import etree

from engine.bounds import MAX_JSON_VALUES, MAX_MARKUP
from engine.config import Connection
from engine.saml.keys import generate_test_idp
from engine.saml.mint import mint
from engine.saml.xml import NS, parse_xml
from engine.sample import Sample
from engine.token import TokenRejected

AT = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
NOW = AT + timedelta(seconds=30)
ISSUER = "https://idp.hostile.example/saml"
AUDIENCE = "https://sp.hostile.example/saml"
OIDC_ISSUER = "https://op.hostile.example"
LIMIT = 1_048_576  # the default max_token_bytes
SAML_NS = NS["saml"]
DS_NS = NS["ds"]


@dataclass(frozen=True, slots=True)
class Hostile:
    """One token of the family: its name, what it attacks, its bytes, its connection,
    and the reason code intake must answer with."""

    name: str
    attack: str
    raw: bytes
    connection: Connection
    reason: str | None  # None: a valid token (the reference point)


def _saml_connection(folder: Path, cert: Path, **overrides: object) -> Connection:
    rules = folder / "hostile.rules"
    rules.write_text("username = subject\n")
    values: dict[str, object] = {
        "id": "hostile",
        "protocol": "saml2",
        "issuer": ISSUER,
        "audience": AUDIENCE,
        "rules": rules,
        "certificates": (cert,),
        "require_signed": "assertion",
    }
    values.update(overrides)
    return Connection(**values)  # type: ignore[arg-type]


def _valid_saml(conn: Connection, key: Path, cert: Path) -> bytes:
    sample = Sample(
        subject="jdoe@example.com",
        subject_format="urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress",
        token_id="_hostile-1",
        attributes={
            "email": ["jdoe@example.com"],
            "memberOf": [f"CN=group{n},OU=Apps,DC=example,DC=com" for n in range(8)],
        },
    )
    return mint(sample, conn, key_pem=key.read_bytes(), cert_pem=cert.read_bytes(), at=AT)


Grower = Callable[[etree._Element, int], None]


def _fill(valid: bytes, grow: Grower, *, within_bounds: bool) -> bytes:
    """The valid token grown by `grow(root, n)` as far as max_token_bytes allows (and,
    `within_bounds`, as far as the markup bound allows: the worst token that reaches the
    signature check). A binary search on n."""

    def build(n: int) -> bytes:
        trial = etree.fromstring(valid)
        grow(trial, n)
        return etree.tostring(trial)

    def fits(text: bytes) -> bool:
        return len(text) <= LIMIT and (not within_bounds or text.count(b"<") <= MAX_MARKUP)

    low, high = 0, 1
    while fits(build(high)):
        low, high = high, high * 2
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (middle, high) if fits(build(middle)) else (low, middle)
    return build(low)


def _assertion(root: etree._Element) -> etree._Element:
    node = root.find(f"{{{SAML_NS}}}Assertion")
    assert node is not None
    return node


def _reference(root: etree._Element) -> etree._Element:
    node = _assertion(root).find(f"{{{DS_NS}}}Signature/{{{DS_NS}}}SignedInfo/{{{DS_NS}}}Reference")
    assert node is not None
    return node


def _transform_flood(root: etree._Element, n: int) -> None:
    transforms = _reference(root).find(f"{{{DS_NS}}}Transforms")
    assert transforms is not None
    for _ in range(n):
        etree.SubElement(
            transforms,
            f"{{{DS_NS}}}Transform",
            Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#",
        )


def _attribute_flood(root: etree._Element, n: int) -> None:
    statement = _assertion(root).find(f"{{{SAML_NS}}}AttributeStatement")
    assert statement is not None
    for i in range(n):
        attribute = etree.SubElement(statement, f"{{{SAML_NS}}}Attribute", Name=f"a{i}")
        etree.SubElement(attribute, f"{{{SAML_NS}}}AttributeValue").text = "x"


def _signature_flood(root: etree._Element, n: int) -> None:
    assertion = _assertion(root)
    signature = assertion.find(f"{{{DS_NS}}}Signature")
    assert signature is not None
    text = etree.tostring(signature)
    for _ in range(n):
        signature.addnext(etree.fromstring(text))


def _value_flood(root: etree._Element, n: int) -> None:
    """Many values of one attribute, each split by comments (text joined from pieces)."""
    statement = _assertion(root).find(f"{{{SAML_NS}}}AttributeStatement")
    assert statement is not None
    attribute = etree.SubElement(statement, f"{{{SAML_NS}}}Attribute", Name="memberOf")
    for _ in range(n):
        value = etree.SubElement(attribute, f"{{{SAML_NS}}}AttributeValue")
        value.text = "g"
        value.append(etree.Comment(""))
        value[-1].tail = "h"


def _namespace_flood(root: etree._Element, declarations: int, elements: int) -> bytes:
    """`declarations` namespace declarations on the Response, `elements` attribute values
    under them, and the Assertion's signature switched to inclusive canonicalisation,
    which renders every declaration in scope."""
    for node in root.iter(f"{{{DS_NS}}}CanonicalizationMethod", f"{{{DS_NS}}}Transform"):
        if "c14n" in node.get("Algorithm", ""):
            node.set("Algorithm", "http://www.w3.org/TR/2001/REC-xml-c14n-20010315")
    text = etree.tostring(root).decode()
    spaces = " ".join(f'xmlns:n{i}="urn:n{i}"' for i in range(declarations))
    text = text.replace("<samlp:Response ", f"<samlp:Response {spaces} ", 1)
    values = "".join(f"<saml:AttributeValue>v{i}</saml:AttributeValue>" for i in range(elements))
    attribute = f'<saml:Attribute Name="flood">{values}</saml:Attribute>'
    text = text.replace("</saml:AttributeStatement>", attribute + "</saml:AttributeStatement>", 1)
    return text.encode()


def _largest_namespace_flood(valid: bytes, declarations: int) -> bytes:
    """`declarations` over as many elements as the namespace-scope bound lets through
    (a binary search on the element count, judged by the safe parser itself)."""

    def passes(elements: int) -> bool:
        try:
            parse_xml(_namespace_flood(etree.fromstring(valid), declarations, elements))
        except TokenRejected:
            return False
        return True

    low, high = 0, MAX_MARKUP // 2
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (middle, high) if passes(middle) else (low, middle)
    return _namespace_flood(etree.fromstring(valid), declarations, low)


def _deep_nesting(root: etree._Element, depth: int) -> bytes:
    text = etree.tostring(root).decode()
    nested = "<x>" * depth + "v" + "</x>" * depth
    value = f'<saml:Attribute Name="deep"><saml:AttributeValue>{nested}</saml:AttributeValue></saml:Attribute>'
    return text.replace(
        "</saml:AttributeStatement>", value + "</saml:AttributeStatement>", 1
    ).encode()


def _encrypted_key_flood(
    folder: Path, key: Path, cert: Path, count: int
) -> tuple[bytes, Connection]:
    """An EncryptedAssertion with `count` EncryptedKeys beside its EncryptedData (each
    one an RSA private-key operation to try)."""
    sp_key, sp_cert = generate_test_idp(folder / "sp", "hostile SP")
    conn = _saml_connection(folder, cert, decryption_key=sp_key)
    sample = Sample(subject="jdoe@example.com", token_id="_enc", attributes={"a": ["b"]})
    raw = mint(
        sample,
        conn,
        key_pem=key.read_bytes(),
        cert_pem=cert.read_bytes(),
        at=AT,
        encrypt_for=sp_cert.read_bytes(),
    )
    root = etree.fromstring(raw)
    xenc = NS["xenc"]
    data = root.find(f".//{{{xenc}}}EncryptedData")
    assert data is not None
    encrypted_key = data.find(f".//{{{xenc}}}EncryptedKey")
    assert encrypted_key is not None
    # Keys that do not decrypt (wrong ciphertext) first, the real one last.
    holder = data.getparent()
    assert holder is not None
    bogus = etree.fromstring(etree.tostring(encrypted_key))
    cipher = bogus.find(f".//{{{xenc}}}CipherValue")
    assert cipher is not None
    cipher.text = base64.b64encode(b"\x01" * 256).decode()
    key_info = encrypted_key.getparent()
    assert key_info is not None
    key_info.remove(encrypted_key)
    for _ in range(count):
        holder.append(etree.fromstring(etree.tostring(bogus)))
    holder.append(encrypted_key)
    return etree.tostring(root), conn


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _jwt(header: dict[str, object], payload: str) -> bytes:
    head = _b64url(json.dumps(header).encode())
    body = _b64url(payload.encode())
    return f"{head}.{body}.{_b64url(b'x' * 256)}".encode()


def _oidc_connection(folder: Path, **overrides: object) -> Connection:
    from joserfc.jwk import RSAKey

    jwks = folder / "jwks.json"
    if not jwks.exists():
        key = RSAKey.generate_key(2048, parameters={"kid": "k1", "alg": "RS256", "use": "sig"})
        jwks.write_text(json.dumps({"keys": [key.as_dict(private=False)]}))
        (folder / "jwk-private.json").write_text(json.dumps(key.as_dict(private=True)))
    rules = folder / "hostile.rules"
    rules.write_text("username = subject\n")
    values: dict[str, object] = {
        "id": "hostile-oidc",
        "protocol": "oidc",
        "issuer": OIDC_ISSUER,
        "audience": "client-1",
        "rules": rules,
        "jwks": jwks,
    }
    values.update(overrides)
    return Connection(**values)  # type: ignore[arg-type]


def _valid_oidc(folder: Path, conn: Connection) -> bytes:
    from joserfc import jwt
    from joserfc.jwk import RSAKey

    key = RSAKey.import_key(json.loads((folder / "jwk-private.json").read_text()))
    claims = {
        "iss": OIDC_ISSUER,
        "sub": "user-1",
        "aud": "client-1",
        "iat": int(AT.timestamp()),
        "exp": int(AT.timestamp()) + 300,
        "email": "jdoe@example.com",
        "groups": [f"group{n}" for n in range(8)],
    }
    return jwt.encode({"alg": "RS256", "kid": "k1"}, claims, key).encode()


def _claims(extra: str) -> str:
    stamp = int(AT.timestamp())
    return (
        f'{{"iss":"{OIDC_ISSUER}","sub":"user-1","aud":"client-1","iat":{stamp},'
        f'"exp":{stamp + 300}{extra}}}'
    )


def _payload_budget(extra_len: int) -> int:
    """How many bytes of JSON fit in a compact JWT under LIMIT (base64url grows 4/3)."""
    return (LIMIT - 600) * 3 // 4 - len(_claims("")) - extra_len


def hostile_tokens(folder: Path) -> list[Hostile]:
    """Every token of the family (and a valid one of each protocol), built in `folder`."""
    key, cert = generate_test_idp(folder, "hostile IdP")
    conn = _saml_connection(folder, cert)
    valid = _valid_saml(conn, key, cert)
    root = etree.fromstring(valid)
    out = [Hostile("saml-valid", "a valid signed Response (reference point)", valid, conn, None)]

    def fill(grow: Grower, within_bounds: bool = False) -> bytes:
        return _fill(valid, grow, within_bounds=within_bounds)

    out.append(
        Hostile(
            "saml-transform-flood",
            "thousands of c14n Transforms in one Reference",
            fill(_transform_flood),
            conn,
            "unsupported",
        )
    )
    out.append(
        Hostile(
            "saml-signature-flood",
            "hundreds of Signatures on the Assertion",
            fill(_signature_flood),
            conn,
            "signature-wrapping",
        )
    )
    out.append(
        Hostile(
            "saml-attribute-flood",
            "as many Attributes as the markup bound lets through",
            fill(_attribute_flood, within_bounds=True),
            conn,
            "bad-signature",
        )
    )
    out.append(
        Hostile(
            "saml-attribute-flood-over",
            "a megabyte of Attributes, past the markup bound",
            fill(_attribute_flood),
            conn,
            "malformed",
        )
    )
    out.append(
        Hostile(
            "saml-value-flood",
            "as many comment-split AttributeValues as the markup bound lets through",
            fill(_value_flood, within_bounds=True),
            conn,
            "bad-signature",
        )
    )
    out.append(
        Hostile(
            "saml-namespace-flood",
            "declarations in scope of as many elements as the scope bound lets through, "
            "inclusive c14n",
            _largest_namespace_flood(valid, 16),
            conn,
            "bad-signature",
        )
    )
    out.append(
        Hostile(
            "saml-namespace-flood-over",
            "2,000 declarations in scope of 2,000 elements (a minute of c14n unbounded)",
            _namespace_flood(etree.fromstring(valid), 2000, 2000),
            conn,
            "malformed",
        )
    )
    out.append(
        Hostile(
            "saml-deep-nesting",
            "an AttributeValue nested 10,000 levels deep",
            _deep_nesting(root, 10_000),
            conn,
            "malformed",
        )
    )
    encrypted, enc_conn = _encrypted_key_flood(folder, key, cert, 200)
    out.append(
        Hostile(
            "saml-encrypted-key-flood",
            "200 EncryptedKeys, each an RSA decryption to try",
            encrypted,
            enc_conn,
            "decryption-failed",
        )
    )
    oidc = _oidc_connection(folder)
    oidc_subject = _oidc_connection(folder, subject_from="big")
    header = {"alg": "RS256", "kid": "k1"}
    out.append(
        Hostile("oidc-valid", "a valid signed ID token", _valid_oidc(folder, oidc), oidc, None)
    )
    out.append(
        Hostile(
            "oidc-huge-number",
            "a claim 1E+999999999 on a connection with subject_from",
            _jwt(header, _claims(',"big":1E+999999999')),
            oidc_subject,
            "malformed",
        )
    )
    count = _payload_budget(0) // 8
    many = "".join(f',"c{i:05d}":1' for i in range(count))
    out.append(
        Hostile(
            "oidc-claim-flood",
            "claims up to max_token_bytes",
            _jwt(header, _claims(many[: _payload_budget(0)].rsplit(",", 1)[0])),
            oidc,
            "malformed",
        )
    )
    size = _payload_budget(40) // MAX_JSON_VALUES
    strings = ",".join([f'"{"s" * (size - 3)}"'] * (MAX_JSON_VALUES - 20))
    out.append(
        Hostile(
            "oidc-string-flood",
            "as many string values as the value bound lets through",
            _jwt(header, _claims(f',"groups":[{strings}]')),
            oidc_subject,
            "bad-signature",
        )
    )
    tiny = ",".join(['"s"'] * (_payload_budget(40) // 4))
    out.append(
        Hostile(
            "oidc-string-flood-over",
            "a megabyte of tiny strings, past the value bound",
            _jwt(header, _claims(f',"groups":[{tiny}]')),
            oidc_subject,
            "malformed",
        )
    )
    giant = "g" * _payload_budget(20)
    out.append(
        Hostile(
            "oidc-giant-claim",
            "one string claim of most of a megabyte",
            _jwt(header, _claims(f',"big":"{giant}"')),
            oidc_subject,
            "bad-signature",
        )
    )
    out.append(
        Hostile(
            "oidc-deep-nesting",
            "arrays nested 100,000 deep",
            _jwt(header, _claims(',"deep":' + "[" * 100_000 + "]" * 100_000)),
            oidc,
            "malformed",
        )
    )
    return out
