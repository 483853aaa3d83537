"""Token intake's front door: form detection and dispatch (product.md §2 step 1)."""

from __future__ import annotations

import base64
import binascii
import json
import sys
import tomllib
import types
import zlib
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.config import Connection
from engine.intake import detect_form, read_token
from engine.sample import parse_sample_text
from engine.token import REASON_CODES, Token, TokenRejected

if str(Path(__file__).parent) not in sys.path:  # tests/engine is not an importable package
    sys.path.insert(0, str(Path(__file__).parent))
from oidc_fixtures import (
    NOW,
    claims,
    connection,
    public_jwk,
    rsa_key,
    sign,
    write_jwks,
)

CORPUS = Path(__file__).resolve().parents[2].parent / "shared" / "corpus"
XML = b'<samlp:Response xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" ID="_1"/>'
SAMPLE = b'subject = "jdoe@example.com"\n[attributes]\nemail = "jdoe@example.com"\n'


def deflate(data: bytes) -> bytes:
    packer = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    return packer.compress(data) + packer.flush()


@pytest.fixture
def oidc(tmp_path: Path) -> Connection:
    return connection(write_jwks(tmp_path, public_jwk(rsa_key())))


@pytest.fixture
def saml2(tmp_path: Path) -> Connection:
    cert = tmp_path / "idp.pem"
    cert.write_text("unused", encoding="utf-8")
    return Connection(
        id="okta",
        protocol="saml2",
        issuer="http://www.okta.com/exk1abc",
        audience="https://sp.example.com",
        rules=cert,
        certificates=(cert,),
    )


@pytest.fixture
def fake_saml(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """A stand-in engine.saml that records what intake hands it: the token as received
    (`validate_saml`), or for base64 the bytes intake decoded once (`validate_decoded`)."""
    calls: list[dict[str, Any]] = []

    def validate_saml(
        raw: bytes, conn: Connection, *, now: datetime, request_id: str | None = None
    ) -> Token:
        calls.append({"raw": raw, "now": now, "request_id": request_id})
        return Token("saml", "jdoe", None, conn.issuer, None, {}, "_1", None)

    def validate_decoded(
        decoded: bytes, conn: Connection, *, now: datetime, request_id: str | None = None
    ) -> Token:
        calls.append({"decoded": decoded, "now": now, "request_id": request_id})
        return Token("saml", "jdoe", None, conn.issuer, None, {}, "_1", None)

    module = types.ModuleType("engine.saml")
    module.validate_saml = validate_saml  # type: ignore[attr-defined]
    module.validate_decoded = validate_decoded  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "engine.saml", module)
    return calls


# --- detect_form -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "form"),
    [
        (XML, "saml-xml"),
        (b'<?xml version="1.0"?>' + XML, "saml-xml"),
        (b"\xef\xbb\xbf\n  " + XML, "saml-xml"),
        (XML.decode().encode("utf-16"), "saml-xml"),
        (base64.b64encode(XML), "saml-base64"),
        (base64.encodebytes(XML), "saml-base64"),  # wrapped at 76 columns
        (b"\xef\xbb\xbf " + base64.b64encode(XML) + b"\r\n", "saml-base64"),
        (base64.b64encode(b"\xef\xbb\xbf" + XML), "saml-base64"),
        (base64.b64encode(deflate(XML)), "saml-deflate"),
        (base64.urlsafe_b64encode(deflate(XML)), "saml-deflate"),
        (b"  " + base64.b64encode(deflate(XML)) + b"\n", "saml-deflate"),
        (SAMPLE, "sample"),
        (b"\xef\xbb\xbf" + SAMPLE, "sample"),
        (b'[attributes]\nemail = "x"\n', "sample"),
        (b'subject = "x\n', "sample"),  # broken TOML that reads like a sample
        (b'name = "x"\n', "unknown"),  # TOML, but not a sample
        (b"hello world", "unknown"),
        (b"", "unknown"),
        (b"\x00\x01\x02", "unknown"),
        (base64.b64encode(b"not xml at all"), "unknown"),
        (b"eyJhbGciOiJub25lIn0.e30.", "jwt"),
        (b"eyJhbGciOiJSU0EtT0FFUCIsImVuYyI6IkEyNTZHQ00ifQ.a.b.c.d", "jwt"),
        (b"a.b.c", "unknown"),
    ],
)
def test_detect_form(raw: bytes, form: str) -> None:
    assert detect_form(raw) == form


def test_detect_form_of_a_signed_token() -> None:
    assert detect_form(b"\n" + sign(claims(), rsa_key()) + b"\n") == "jwt"


def test_every_corpus_saml_file_is_detected_in_its_encoding() -> None:
    manifest = CORPUS / "MANIFEST.toml"
    if not manifest.is_file():
        pytest.skip(f"no corpus at {CORPUS}")
    expected = {"xml": "saml-xml", "base64": "saml-base64", "deflate+base64": "saml-deflate"}
    cases = tomllib.loads(manifest.read_text(encoding="utf-8"))["case"]
    for case in cases:
        if case["kind"] == "saml-response" and case.get("encoding") in expected:
            raw = (CORPUS / case["path"]).read_bytes()
            assert detect_form(raw) == expected[case["encoding"]], case["id"]


# --- read_token ------------------------------------------------------------------------


def test_oidc_token_is_validated(oidc: Connection) -> None:
    token = read_token(sign(claims(nonce="n"), rsa_key()), oidc, now=NOW, nonce="n")
    assert token.kind == "oidc"
    with pytest.raises(TokenRejected) as info:
        read_token(sign(claims(nonce="n"), rsa_key()), oidc, now=NOW, nonce="other")
    assert info.value.reason == "wrong-nonce"


def test_jwe_on_an_oidc_connection_is_unsupported(oidc: Connection) -> None:
    raw = b"eyJhbGciOiJSU0EtT0FFUCIsImVuYyI6IkEyNTZHQ00ifQ.a.b.c.d"
    with pytest.raises(TokenRejected) as info:
        read_token(raw, oidc, now=NOW)
    assert info.value.reason == "unsupported"


@pytest.mark.parametrize("protocol", ["oidc", "saml2"])
def test_sample_needs_allow_samples(protocol: str, oidc: Connection, saml2: Connection) -> None:
    conn = oidc if protocol == "oidc" else saml2
    with pytest.raises(TokenRejected) as info:
        read_token(SAMPLE, conn, now=NOW)
    assert info.value.reason == "unsigned"
    assert "--unsigned-samples" in info.value.message
    token = read_token(SAMPLE, conn, now=NOW, allow_samples=True)
    assert token.kind == "sample"
    assert token.attributes == {"email": ["jdoe@example.com"]}


def test_broken_sample_is_malformed_with_allow_samples(oidc: Connection) -> None:
    with pytest.raises(TokenRejected) as info:
        read_token(b'subject = "x\n', oidc, now=NOW, allow_samples=True)
    assert info.value.reason == "malformed"


@pytest.mark.parametrize(
    "raw",
    [XML, base64.b64encode(XML), base64.b64encode(deflate(XML))],
    ids=["xml", "b64", "deflate"],
)
def test_saml_on_an_oidc_connection_is_malformed(oidc: Connection, raw: bytes) -> None:
    with pytest.raises(TokenRejected) as info:
        read_token(raw, oidc, now=NOW)
    assert info.value.reason == "malformed"
    assert "ID token" in info.value.message


def test_jwt_on_a_saml_connection_is_malformed(saml2: Connection) -> None:
    with pytest.raises(TokenRejected) as info:
        read_token(sign(claims(), rsa_key()), saml2, now=NOW)
    assert info.value.reason == "malformed"
    assert "SAML" in info.value.message


@pytest.mark.parametrize("raw", [b"hello", b"", b'name = "x"\n', b"a.b"])
def test_unrecognised_input_is_malformed(raw: bytes, oidc: Connection, saml2: Connection) -> None:
    for conn in (oidc, saml2):
        with pytest.raises(TokenRejected) as info:
            read_token(raw, conn, now=NOW)
        assert info.value.reason == "malformed"


@pytest.mark.parametrize(
    "raw",
    [SAMPLE, XML, base64.b64encode(XML), b"x" * 50],
    ids=["sample", "xml", "base64", "garbage"],
)
def test_size_limit_comes_first_for_every_form(raw: bytes, tmp_path: Path) -> None:
    jwks = write_jwks(tmp_path, public_jwk(rsa_key()))
    for protocol in ("oidc", "saml2"):
        conn = connection(jwks, protocol=protocol, max_token_bytes=len(raw) - 1)
        with pytest.raises(TokenRejected) as info:
            read_token(raw, conn, now=NOW, allow_samples=False)
        assert info.value.reason == "too-large"


def test_jwt_size_limit(tmp_path: Path) -> None:
    raw = sign(claims(), rsa_key())
    conn = connection(write_jwks(tmp_path, public_jwk(rsa_key())), max_token_bytes=len(raw) - 1)
    with pytest.raises(TokenRejected) as info:
        read_token(raw, conn, now=NOW)
    assert info.value.reason == "too-large"


@pytest.mark.parametrize(
    "raw",
    [
        b"\xef\xbb\xbf\n" + XML,
        base64.b64encode(XML) + b"\n",
        base64.b64encode(deflate(XML)),
    ],
    ids=["xml", "b64", "deflate"],
)
def test_saml_forms_go_to_the_saml_validator(
    raw: bytes, saml2: Connection, fake_saml: list[dict[str, Any]]
) -> None:
    token = read_token(raw, saml2, now=NOW, request_id="req-1", nonce="ignored")
    assert token.kind == "saml"
    (call,) = fake_saml
    assert call["request_id"] == "req-1"
    assert call["now"] == NOW
    if raw.lstrip(b"\xef\xbb\xbf\n").startswith(b"<"):
        assert call["raw"] == raw.removeprefix(b"\xef\xbb\xbf\n").strip()
    else:  # base64: decoded once, by intake, and handed over as decoded
        assert "raw" not in call
        assert call["decoded"] == base64.b64decode(raw)


def test_utf16_xml_is_handed_over_unchanged(
    saml2: Connection, fake_saml: list[dict[str, Any]]
) -> None:
    raw = XML.decode().encode("utf-16")
    read_token(raw, saml2, now=NOW)
    assert fake_saml[0]["raw"] == raw


def _auth0_saml(tmp_path: Path) -> tuple[bytes, Connection, datetime]:
    path = CORPUS / "gosaml2" / "valid" / "auth0_response.xml"
    if not path.is_file():
        pytest.skip(f"no corpus at {CORPUS}")
    rules = tmp_path / "r.rules"
    rules.write_text("username = subject\n", encoding="utf-8")
    conn = Connection(
        id="auth0",
        protocol="saml2",
        issuer="urn:scaleft-test.auth0.com",
        audience="urn:scaleft-test.auth0.com",
        rules=rules,
        certificates=(CORPUS / "gosaml2" / "certs" / "auth0_cert.pem",),
        recipient="http://localhost:8080/v1/_saml_callback",
        require_signed="response",
        clock_skew=0,
        allow_sha1=True,
    )
    return path.read_bytes(), conn, datetime.fromisoformat("2016-07-25T18:30:00+00:00")


@pytest.mark.parametrize("encoding", ["xml", "base64", "deflate"])
def test_real_saml_response_in_every_encoding(tmp_path: Path, encoding: str) -> None:
    xml, conn, now = _auth0_saml(tmp_path)
    raw = {
        "xml": xml,
        "base64": base64.b64encode(xml),
        "deflate": base64.b64encode(deflate(xml)),
    }[encoding]
    token = read_token(raw, conn, now=now)
    assert token.kind == "saml"
    assert token.name_id == "google-oauth2|117637692321743777825"


@pytest.mark.parametrize("encoding", ["base64", "wrapped", "base64url", "deflate"])
def test_a_base64_token_is_decoded_once(
    tmp_path: Path, encoding: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Intake decodes a base64 token once, whole, to tell its form, and the SAML
    validator takes those bytes: no second base64 decode (nor a trial TOML parse)."""
    xml, conn, now = _auth0_saml(tmp_path)
    raw = {
        "base64": base64.b64encode(xml),
        "wrapped": base64.encodebytes(xml),
        "base64url": base64.urlsafe_b64encode(xml),
        "deflate": base64.b64encode(deflate(xml)),
    }[encoding]
    read_token(raw, conn, now=now)  # the certificate is read and cached
    decodes: list[int] = []
    real = binascii.a2b_base64

    def counted(data: Any, **options: Any) -> bytes:
        decoded: bytes = real(data, **options)  # (a first try that fails is no decode)
        decodes.append(len(data))
        return decoded

    def no_toml(text: str) -> dict[str, Any]:
        raise AssertionError("a base64 token was parsed as TOML")

    monkeypatch.setattr(binascii, "a2b_base64", counted)
    monkeypatch.setattr("engine.intake.load_toml", no_toml)
    token = read_token(raw, conn, now=now, allow_samples=True)
    assert token.name_id == "google-oauth2|117637692321743777825"
    assert decodes == [len(raw.translate(None, b" \n"))]


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(raw=st.one_of(st.binary(max_size=300), st.text(max_size=300).map(str.encode)))
def test_random_input_is_a_reason_never_a_traceback(
    raw: bytes, oidc: Connection, saml2: Connection
) -> None:
    for conn in (oidc, saml2):
        for allow in (False, True):
            try:
                token = read_token(raw, conn, now=NOW, allow_samples=allow)
            except TokenRejected as exc:
                assert exc.reason in REASON_CODES
            else:
                assert token.kind == "sample" and allow


@settings(max_examples=150, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(["subject", "issuer", "token_id", "attributes", "x"]),
        st.one_of(st.text(max_size=5), st.integers(), st.lists(st.text(max_size=3), max_size=3)),
        max_size=4,
    )
)
def test_random_samples_parse_or_are_malformed(table: dict[str, Any]) -> None:
    text = "\n".join(f"{key} = {json.dumps(value)}" for key, value in table.items())
    try:
        parse_sample_text(text)
    except TokenRejected as exc:
        assert exc.reason == "malformed"
