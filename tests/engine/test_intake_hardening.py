"""Issue 11's intake defects, one regression test each (each failed before its fix).

InResponseTo from unsigned data, cost before trust (transform, signature, markup,
namespace, EncryptedKey and JSON floods; numbers written out in a billion digits),
values no store can hold, dates at the edges of time, and the interoperability cases
found while hardening (in-place encryption, vendor xsi:type, the browser's POST body).
"""

from __future__ import annotations

import json
import sys
import urllib.parse
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import xmlsec
from lxml import etree
from xmlsec import constants as xc

from engine.bounds import MAX_JSON_VALUES, MAX_MARKUP
from engine.intake import read_token
from engine.moments import LATEST
from engine.saml import mint as m
from engine.saml import validate_saml
from engine.saml.xml import NS, SAML
from engine.token import TokenRejected
from tests.engine import oidc_fixtures as of

if str(Path(__file__).parent) not in sys.path:  # tests/engine is not an importable package
    sys.path.insert(0, str(Path(__file__).parent))
import provision_fixtures as pf
from saml_fixtures import (
    AT,
    IDP_CERT,
    IDP_KEY,
    LATER,
    SAMPLE,
    SP_CERT,
    connection,
    find,
    make_response_tree,
    make_token,
)

XSI = "http://www.w3.org/2001/XMLSchema-instance"


def reason_of(raw: bytes, conn: Any, **options: Any) -> str:
    with pytest.raises(TokenRejected) as caught:
        read_token(raw, conn, now=options.pop("now", LATER), **options)
    return caught.value.reason


# --- InResponseTo only from signed data -------------------------------------------------


def _unsigned_response_in_response_to(value: str) -> bytes:
    """Assertion signed, Response not: the Response's InResponseTo is unsigned data."""
    return make_token(signing="assertion", response=lambda r: r.set("InResponseTo", value))


def test_unsigned_response_in_response_to_does_not_satisfy_require_in_response_to() -> None:
    raw = _unsigned_response_in_response_to("anything")
    assert reason_of(raw, connection(require_in_response_to=True)) == "wrong-request"


def test_unsigned_response_in_response_to_does_not_match_request_id() -> None:
    raw = _unsigned_response_in_response_to("req-1")
    assert reason_of(raw, connection(), request_id="req-1") == "wrong-request"


def test_signed_response_in_response_to_counts() -> None:
    raw = make_token(signing="both", response=lambda r: r.set("InResponseTo", "req-1"))
    read_token(raw, connection(require_in_response_to=True), now=LATER, request_id="req-1")


def test_signed_assertion_in_response_to_counts_without_a_response_signature() -> None:
    raw = make_token(signing="assertion", in_response_to="req-1")
    read_token(raw, connection(require_in_response_to=True), now=LATER, request_id="req-1")


# --- cost before trust: SAML ------------------------------------------------------------


def _add_transforms(count: int):
    def grow(root: etree._Element) -> None:
        transforms = find(
            root, "saml:Assertion/ds:Signature/ds:SignedInfo/ds:Reference/ds:Transforms"
        )
        for _ in range(count):
            etree.SubElement(
                transforms,
                f"{{{NS['ds']}}}Transform",
                Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#",
            )

    return grow


@pytest.mark.parametrize("extra", [1, 3000])
def test_transform_flood_is_unsupported_before_xmlsec(extra: int) -> None:
    raw = make_token(after_sign=_add_transforms(extra))
    with pytest.raises(TokenRejected) as caught:
        read_token(raw, connection(), now=LATER)
    assert caught.value.reason == "unsupported"
    assert f"{extra + 2} Transforms" in caught.value.message


def test_two_signatures_on_the_assertion_are_wrapping() -> None:
    def second(root: etree._Element) -> None:
        signature = find(root, "saml:Assertion/ds:Signature")
        signature.addnext(etree.fromstring(etree.tostring(signature)))

    assert reason_of(make_token(after_sign=second), connection()) == "signature-wrapping"


def _flood_attributes(count: int):
    def grow(assertion: etree._Element) -> None:
        statement = assertion.find(f"{SAML}AttributeStatement")
        assert statement is not None
        for i in range(count):
            attribute = etree.SubElement(statement, f"{SAML}Attribute", Name=f"a{i}")
            etree.SubElement(attribute, f"{SAML}AttributeValue").text = "x"

    return grow


def test_markup_flood_is_malformed_before_parsing() -> None:
    raw = make_token(assertion=_flood_attributes(MAX_MARKUP // 4 + 10))
    with pytest.raises(TokenRejected) as caught:
        read_token(raw, connection(), now=LATER)
    assert caught.value.reason == "malformed"
    assert "tags" in caught.value.message


def test_many_group_values_within_the_bounds_still_validate() -> None:
    """Three thousand values (a large directory's group list) are far below the bound."""

    def groups(assertion: etree._Element) -> None:
        statement = assertion.find(f"{SAML}AttributeStatement")
        assert statement is not None
        attribute = etree.SubElement(statement, f"{SAML}Attribute", Name="groups")
        for i in range(3000):
            value = etree.SubElement(
                attribute,
                f"{SAML}AttributeValue",
                nsmap={"xs": "http://www.w3.org/2001/XMLSchema", "xsi": XSI},
            )
            value.set(f"{{{XSI}}}type", "xs:string")
            value.text = f"group-{i}"

    token = read_token(make_token(assertion=groups), connection(), now=LATER)
    assert len(token.attributes["groups"]) == 3000


def test_namespace_scope_flood_is_malformed_before_canonicalisation() -> None:
    """Declarations in scope of many elements: inclusive c14n would cost their square at
    every element (a minute of CPU at a few thousand of each)."""
    raw = make_token(signing="assertion")
    text = raw.decode()
    spaces = " ".join(f'xmlns:n{i}="urn:n{i}"' for i in range(400))
    text = text.replace("<samlp:Response ", f"<samlp:Response {spaces} ", 1)
    values = "".join(f"<saml:AttributeValue>v{i}</saml:AttributeValue>" for i in range(400))
    text = text.replace(
        "</saml:AttributeStatement>",
        f'<saml:Attribute Name="f">{values}</saml:Attribute></saml:AttributeStatement>',
        1,
    )
    with pytest.raises(TokenRejected) as caught:
        read_token(text.encode(), connection(), now=LATER)
    assert caught.value.reason == "malformed"
    assert "namespaces in scope" in caught.value.message


def test_namespace_declaration_flood_is_malformed_before_parsing() -> None:
    raw = make_token().decode()
    spaces = " ".join(f'xmlns:n{i}="urn:n{i}"' for i in range(6000))
    raw = raw.replace("<samlp:Response ", f"<samlp:Response {spaces} ", 1)
    assert reason_of(raw.encode(), connection()) == "malformed"


def test_encrypted_key_flood_is_refused_before_any_rsa_operation() -> None:
    def more_keys(root: etree._Element) -> None:
        holder = find(root, "saml:EncryptedAssertion")
        key = holder.find(f".//{{{NS['xenc']}}}EncryptedKey")
        assert key is not None
        for _ in range(50):
            holder.append(etree.fromstring(etree.tostring(key)))

    raw = make_token(encrypt_for=SP_CERT, after_sign=more_keys)
    with pytest.raises(TokenRejected) as caught:
        read_token(raw, connection(), now=LATER)
    assert caught.value.reason == "decryption-failed"
    assert "51 EncryptedKeys" in caught.value.message


# --- cost before trust: OIDC ------------------------------------------------------------


@pytest.fixture
def oidc(tmp_path: Path) -> tuple[Any, Any]:
    key = of.rsa_key()
    jwks = of.write_jwks(tmp_path, of.public_jwk(key))
    return key, jwks


OIDC_NOW = datetime.fromtimestamp(of.NOW_TS, UTC)


def _payload(extra: str) -> bytes:
    base = json.dumps(of.claims())
    return (base[:-1] + extra + "}").encode()


def test_a_number_written_out_in_a_billion_digits_is_malformed(oidc: Any) -> None:
    """`1E+999999999` on a connection with subject_from cost 5 s and 3.9 GB."""
    key, jwks = oidc
    conn = of.connection(jwks, subject_from="big")
    token = of.sign(_payload(', "big": 1E+999999999'), key)
    with pytest.raises(TokenRejected) as caught:
        read_token(token, conn, now=OIDC_NOW)
    assert caught.value.reason == "malformed"
    assert "100 digits" in caught.value.message
    assert caught.value.subject is None


@pytest.mark.parametrize(
    ("number", "accepted"),
    [
        ("1E+99", True),
        ("1E+100", False),
        ("1" * 100, True),
        ("1" * 101, False),
        ("0.0000001", True),
        ("1E-98", True),
        ("1E-99", False),
        ("-12.5e3", True),
    ],
)
def test_numbers_up_to_100_characters_written_out_are_read(
    oidc: Any, number: str, accepted: bool
) -> None:
    key, jwks = oidc
    token = of.sign(_payload(f', "n": {number}'), key)
    if accepted:
        read_token(token, of.connection(jwks), now=OIDC_NOW)
    else:
        assert reason_of(token, of.connection(jwks), now=OIDC_NOW) == "malformed"


def test_claim_flood_is_malformed(oidc: Any) -> None:
    key, jwks = oidc
    many = "".join(f', "c{i}": {i}' for i in range(MAX_JSON_VALUES + 1))
    assert reason_of(of.sign(_payload(many), key), of.connection(jwks), now=OIDC_NOW) == "malformed"
    strings = ", ".join('"s"' for _ in range(MAX_JSON_VALUES + 1))
    token = of.sign(_payload(f', "groups": [{strings}]'), key)
    assert reason_of(token, of.connection(jwks), now=OIDC_NOW) == "malformed"


def test_a_huge_claim_name_nested_many_times_is_malformed(oidc: Any) -> None:
    """Flattening `{"<500 KB>": {"a": 1, "b": 1, ...}}` would build a 500 KB name per leaf."""
    key, jwks = oidc
    leaves = ", ".join(f'"l{i}": 1' for i in range(100))
    token = of.sign(_payload(f', "{"k" * 2000}": {{{leaves}}}'), key)
    with pytest.raises(TokenRejected) as caught:
        read_token(token, of.connection(jwks, subject_from="x"), now=OIDC_NOW)
    assert caught.value.reason == "malformed"
    assert "1024 characters" in caught.value.message


# --- values no store can hold -------------------------------------------------------------


@pytest.mark.parametrize(
    "extra",
    [
        ', "name": "a\\u0000b"',
        ', "name": "\\ud800"',
        ', "bad\\u0000name": "x"',
        ', "\\udfff": "x"',
        ', "nested": {"deep": ["ok", "\\ud800"]}',
    ],
)
def test_oidc_nul_or_lone_surrogate_is_malformed(oidc: Any, extra: str) -> None:
    key, jwks = oidc
    token = of.sign(_payload(extra), key)
    with pytest.raises(TokenRejected) as caught:
        read_token(token, of.connection(jwks), now=OIDC_NOW)
    assert caught.value.reason == "malformed"
    assert "no store can hold" in caught.value.message


@pytest.mark.parametrize(
    "sample",
    [
        b'subject = "a\\u0000b"\n',
        b'subject = "s"\n[attributes]\nname = "x\\u0000"\n',
        b'subject = "s"\n[attributes]\n"na\\u0000me" = "x"\n',
    ],
)
def test_sample_nul_is_malformed(sample: bytes) -> None:
    with pytest.raises(TokenRejected) as caught:
        read_token(sample, connection(), now=LATER, allow_samples=True)
    assert caught.value.reason == "malformed"


def test_sample_with_an_integer_past_python_limits_is_malformed() -> None:
    raw = b'subject = "s"\n[attributes]\nn = ' + b"1" * 5000 + b"\n"
    assert reason_of(raw, connection(), allow_samples=True) == "malformed"


def _oidc_workspace(root: Path, key: Any) -> Path:
    config = pf.workspace(
        root,
        "username = subject\nemail = first(@email)\n",
        connections={"google": {"protocol": "oidc", "issuer": of.ISSUER, "audience": of.AUDIENCE}},
    )
    of.write_jwks(root, of.public_jwk(key))
    return config


@pytest.mark.parametrize("value", ["\ud800", "a\x00b"])
def test_unholdable_claim_is_malformed_with_an_audit_row_on_both_stores(
    tmp_path: Path, store_backend: str, value: str
) -> None:
    """Before: a lone surrogate ended in an internal error without an audit row; a NUL
    was `created` on SQLite and `error` on PostgreSQL."""
    key = of.rsa_key()
    bench = pf.Bench(_oidc_workspace(tmp_path, key))
    payload = json.dumps(of.claims(email=value)).encode()  # json escapes both
    result = bench.provisioner.apply("google", of.sign(payload, key), now=OIDC_NOW)
    assert (result.outcome, result.reason) == ("rejected", "malformed")
    assert result.subject == "user-1" or result.subject is None
    rows = bench.rows("SELECT outcome, reason FROM audit")
    assert rows == [("rejected", "malformed")]
    assert bench.rows("SELECT count(*) FROM users") == [(0,)]


# --- dates at the edges of time -----------------------------------------------------------


def _window(not_before: str | None = None, not_on_or_after: str | None = None):
    def change(assertion: etree._Element) -> None:
        for node in (
            find(assertion, "saml:Conditions"),
            find(assertion, "saml:Subject/saml:SubjectConfirmation/saml:SubjectConfirmationData"),
        ):
            if not_before is not None:
                node.set("NotBefore", not_before)
            if not_on_or_after is not None:
                node.set("NotOnOrAfter", not_on_or_after)

    return change


def test_not_on_or_after_in_year_9999_is_an_ordinary_window() -> None:
    """Before: OverflowError, an internal error. product.md §2: a date outside the years
    1-9999 once the skew is applied is expired / not-yet-valid."""
    raw = make_token(assertion=_window(not_on_or_after="9999-12-31T23:59:59Z"))
    assert reason_of(raw, connection()) == "expired"  # + 120 s of skew: past year 9999
    token = read_token(raw, connection(clock_skew=0), now=LATER)
    assert token.expires_at == datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)
    assert reason_of(raw, connection(clock_skew=0), now=LATEST) == "expired"


def test_not_before_in_year_1_is_an_ordinary_window() -> None:
    raw = make_token(assertion=_window(not_before="0001-01-01T00:00:00Z"))
    assert reason_of(raw, connection()) == "not-yet-valid"  # - 120 s of skew: before year 1
    read_token(raw, connection(clock_skew=0), now=LATER)
    east = make_token(assertion=_window(not_before="0001-01-01T00:00:00+14:00"))
    assert reason_of(east, connection(clock_skew=0)) == "not-yet-valid"


def test_now_beyond_utc_in_a_far_west_zone_is_an_ordinary_window() -> None:
    """`--at 9999-12-31T23:59:59-14:00` as the engine receives it."""
    far_west = datetime.fromisoformat("9999-12-31T23:59:59-14:00")
    assert reason_of(make_token(), connection(), now=far_west) == "expired"


def test_year_9999_window_is_stored_through_the_pipeline(tmp_path: Path) -> None:
    key_pem, cert_pem = IDP_KEY.read_bytes(), IDP_CERT.read_bytes()
    config = pf.workspace(tmp_path, "username = subject\n", connections={"okta": {"clock_skew": 0}})
    bench = pf.Bench(config)
    conn = bench.config.connections["okta"]
    (tmp_path / "idp.pem").write_bytes(cert_pem)
    assertion = m.build_assertion(SAMPLE, conn, AT)
    _window(not_on_or_after="9999-12-31T23:59:59Z")(assertion)
    m.sign(assertion, key_pem, cert_pem)
    raw = etree.tostring(m.build_response(assertion, conn, AT))
    result = bench.provisioner.apply("okta", raw, now=AT + timedelta(seconds=30))
    assert result.outcome == "created", result.message
    assert bench.rows("SELECT expires_at FROM seen_tokens") == [("9999-12-31T23:59:59Z",)]


# --- interoperability ---------------------------------------------------------------------


def _encryption_for_the_sp(
    document: etree._Element,
) -> tuple[etree._Element, xmlsec.EncryptionContext]:
    """An EncryptedData template (AES-256-CBC, the key sent with RSA-OAEP) and a context
    that encrypts for the SP's certificate."""
    template = xmlsec.template.encrypted_data_create(
        document, xc.TransformAes256Cbc, type=xc.TypeEncElement, ns="xenc"
    )
    xmlsec.template.encrypted_data_ensure_cipher_value(template)
    key_info = xmlsec.template.encrypted_data_ensure_key_info(template, ns="ds")
    encrypted_key = xmlsec.template.add_encrypted_key(key_info, xc.TransformRsaOaep)
    xmlsec.template.encrypted_data_ensure_cipher_value(encrypted_key)
    manager = xmlsec.KeysManager()
    manager.add_key(xmlsec.Key.from_memory(SP_CERT.read_bytes(), xc.KeyDataFormatCertPem, None))
    ctx = xmlsec.EncryptionContext(manager)
    ctx.key = xmlsec.Key.generate(xc.KeyDataAes, 256, xc.KeyDataTypeSession)
    return template, ctx


def _encrypted_in_place() -> bytes:
    """An Assertion encrypted where it stands in the Response (xmlsec's in-place
    encryption): its plaintext uses `saml:`/`ds:` prefixes declared on the Response."""
    conn = connection()
    node = m.build_assertion(SAMPLE, conn, AT)
    m.sign(node, IDP_KEY.read_bytes(), IDP_CERT.read_bytes())
    root = etree.fromstring(etree.tostring(m.build_response(node, conn, AT)))
    assertion = root.find(f"{SAML}Assertion")
    assert assertion is not None
    data, ctx = _encryption_for_the_sp(root)
    holder = etree.Element(f"{SAML}EncryptedAssertion")
    assertion.addprevious(holder)
    holder.append(ctx.encrypt_xml(data, assertion))
    raw = etree.tostring(root)
    assert b"<saml:Assertion xmlns:saml" not in raw
    return raw


def test_assertion_encrypted_in_place_decrypts_in_context(
    capfd: pytest.CaptureFixture[str],
) -> None:
    token = validate_saml(_encrypted_in_place(), connection(), now=LATER)
    assert token.name_id == "jdoe@example.com"
    out, err = capfd.readouterr()
    assert (out, err) == ("", "")  # libxml2's namespace errors stay out of the output


def _encrypted_plaintext(plaintext: bytes) -> bytes:
    """A Response whose EncryptedAssertion holds `plaintext`, encrypted for the SP."""
    template, ctx = _encryption_for_the_sp(etree.Element("holder"))
    encrypted = ctx.encrypt_binary(template, plaintext)
    root = make_response_tree(signing="none")
    assertion = root.find(f"{SAML}Assertion")
    assert assertion is not None
    holder = etree.Element(f"{SAML}EncryptedAssertion")
    holder.append(encrypted)
    assertion.addprevious(holder)
    root.remove(assertion)
    return etree.tostring(root)


@pytest.mark.parametrize(
    "plaintext",
    [b"<saml:Assertion><nope:x/></saml:Assertion>", b"not xml at all", b"<a/><b/>"],
)
def test_decrypted_garbage_is_malformed_and_quiet(
    plaintext: bytes, capfd: pytest.CaptureFixture[str]
) -> None:
    """Anyone can encrypt for the SP's public key: broken plaintext is an answer, never
    noise on stderr (libxml2 printed ~165 lines of namespace errors)."""
    assert reason_of(_encrypted_plaintext(plaintext), connection()) == "malformed"
    assert capfd.readouterr() == ("", "")


def test_vendor_xsi_type_attribute_value_is_read_as_text() -> None:
    eidas = "http://eidas.europa.eu/attributes/naturalperson"

    def add(assertion: etree._Element) -> None:
        statement = assertion.find(f"{SAML}AttributeStatement")
        assert statement is not None
        attribute = etree.SubElement(
            statement,
            f"{SAML}Attribute",
            Name=f"{eidas}/CurrentFamilyName",
            nsmap={"eidas": eidas, "xsi": XSI},
        )
        value = etree.SubElement(attribute, f"{SAML}AttributeValue")
        value.set(f"{{{XSI}}}type", "eidas:CurrentFamilyNameType")
        value.text = "Garcia"

    token = read_token(make_token(assertion=add), connection(), now=LATER)
    assert token.attributes[f"{eidas}/CurrentFamilyName"] == ["Garcia"]


@pytest.mark.parametrize(
    "body",
    [
        lambda b64: b"SAMLResponse=" + urllib.parse.quote(b64).encode() + b"&RelayState=%2Fapp",
        lambda b64: b"RelayState=x&SAMLResponse=" + urllib.parse.quote_plus(b64).encode(),
        lambda b64: b"SAMLResponse=" + b64 + b"\n",
    ],
    ids=["quoted", "quote-plus-after-relay-state", "unquoted"],
)
def test_browser_post_body_is_read_for_its_saml_response(body: Any) -> None:
    raw = body(make_token("base64"))
    assert read_token(raw, connection(), now=LATER).name_id == "jdoe@example.com"


def test_browser_post_body_from_a_file_through_apply(tmp_path: Path, capsys: Any) -> None:
    from tui.cli import run

    key_pem, cert_pem = IDP_KEY.read_bytes(), IDP_CERT.read_bytes()
    config = pf.workspace(tmp_path, "username = subject\n")
    (tmp_path / "idp.pem").write_bytes(cert_pem)
    conn = pf.Bench(config).config.connections["okta"]
    b64 = m.mint(SAMPLE, conn, key_pem=key_pem, cert_pem=cert_pem, at=AT, encoding="base64")
    post = tmp_path / "post-body.txt"
    post.write_bytes(b"SAMLResponse=" + urllib.parse.quote(b64).encode() + b"&RelayState=")
    code = run(
        [
            "--config",
            str(config),
            "apply",
            "-c",
            "okta",
            str(post),
            "--json",
            "--at",
            "2024-05-01T12:00:30Z",
        ]
    )
    result = json.loads(capsys.readouterr().out)
    assert (code, result["outcome"]) == (0, "created"), result["message"]


@pytest.mark.parametrize(
    ("claim", "value", "reason"),
    [
        ("exp", 10**20, "expired"),
        ("iat", -(10**12), "not-yet-valid"),
        ("nbf", -(10**12), "not-yet-valid"),
    ],
)
def test_oidc_time_claims_outside_years_1_to_9999_are_time_window_outcomes(
    oidc: Any, claim: str, value: int, reason: str
) -> None:
    """Found by `make fuzz`: such a signed token was accepted."""
    key, jwks = oidc
    token = of.sign(of.claims(**{claim: value}), key)
    assert reason_of(token, of.connection(jwks), now=OIDC_NOW) == reason


def test_a_number_past_decimal_range_is_malformed_not_an_exception(oidc: Any) -> None:
    """Found by `make fuzz`: 1E+9999999999999999999 escaped as decimal.InvalidOperation."""
    key, jwks = oidc
    token = of.sign(_payload(', "n": 1E+9999999999999999999'), key)
    assert reason_of(token, of.connection(jwks), now=OIDC_NOW) == "malformed"


@pytest.mark.parametrize(
    "rules",
    ['username = dn_value(first(@memberOf), "CN")\n', 'username = "a\\u0000b"\n'],
    ids=["dn-escape-from-the-token", "rule-literal"],
)
def test_a_value_the_rules_make_unholdable_is_denied_the_same_on_both_stores(
    tmp_path: Path, store_backend: str, rules: str
) -> None:
    """`dn_value` decodes the DN escape `\\00` of a token value into a NUL (a username
    `ad\\x00min` beside `admin`): SQLite stored it, PostgreSQL failed. Now `denied`,
    audited, nothing stored, on both."""
    bench = pf.Bench(pf.workspace(tmp_path, rules))
    token = pf.sample("s-1", memberOf="CN=ad\\00min,OU=Staff,DC=example,DC=com")
    result = bench.apply(token)
    assert result.outcome == "denied", result.message
    assert "no store can hold" in (result.message or "")
    assert bench.rows("SELECT outcome FROM audit") == [("denied",)]
    assert bench.rows("SELECT count(*) FROM users") == [(0,)]


# --- the form is told from the head; the whole token is decoded once, and checked ---------


def test_base64_told_from_its_head_is_still_checked_whole() -> None:
    import base64

    from engine.intake import detect_form

    xml = make_token(signing="assertion")
    encoded = base64.b64encode(xml)
    assert len(encoded) > 4096 and detect_form(encoded) == "saml-base64"
    wrapped = b"\n".join(encoded[i : i + 76] for i in range(0, len(encoded), 76))
    assert detect_form(wrapped) == "saml-base64"
    assert read_token(wrapped, connection(), now=AT).name_id  # line-wrapped base64 reads
    broken = encoded[:5000] + b"!" + encoded[5001:]  # past the head: only the decoder sees it
    assert detect_form(broken) == "saml-base64"
    assert reason_of(broken, connection(), now=AT) == "malformed"
    assert detect_form(b"#" + encoded) == "unknown"
