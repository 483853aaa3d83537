"""The TOML sample form (product.md §2): parsing, type checks and the Token it gives."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.config import Connection
from engine.sample import Sample, load_sample, parse_sample_text, scalar_text
from engine.token import TokenRejected

ISSUER = "http://www.okta.com/exk1abc"

FULL = f"""
subject = "jdoe@example.com"
subject_format = "urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress"
issuer = "{ISSUER}"
authn_context = "urn:oasis:names:tc:SAML:2.0:ac:classes:PasswordProtectedTransport"
token_id = "sample-1"
[attributes]
email = "jdoe@example.com"
memberOf = ["CN=eng,OU=Apps,DC=example,DC=com", "CN=vpn,OU=Net,DC=example,DC=com"]
"""


@pytest.fixture
def conn(tmp_path: Path) -> Connection:
    rules = tmp_path / "r.rules"
    rules.write_text("", encoding="utf-8")
    return Connection(
        id="okta",
        protocol="saml2",
        issuer=ISSUER,
        audience="https://sp.example.com",
        rules=rules,
    )


def test_parse_the_spec_example() -> None:
    sample = parse_sample_text(FULL)
    assert sample == Sample(
        subject="jdoe@example.com",
        subject_format="urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress",
        issuer=ISSUER,
        authn_context="urn:oasis:names:tc:SAML:2.0:ac:classes:PasswordProtectedTransport",
        token_id="sample-1",
        attributes={
            "email": ["jdoe@example.com"],
            "memberOf": ["CN=eng,OU=Apps,DC=example,DC=com", "CN=vpn,OU=Net,DC=example,DC=com"],
        },
    )


def test_load_gives_a_sample_token(conn: Connection) -> None:
    token = load_sample(FULL.encode(), conn)
    assert token.kind == "sample"
    assert token.name_id == "jdoe@example.com"
    assert token.name_id_format == "urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress"
    assert token.issuer == ISSUER
    assert token.authn_context.endswith("PasswordProtectedTransport")  # type: ignore[union-attr]
    assert token.token_id == "sample-1"
    assert token.expires_at is None  # its replay entry never expires
    assert token.attributes["memberOf"][1].startswith("CN=vpn")


def test_minimal_sample_has_no_token_id(conn: Connection) -> None:
    token = load_sample('subject = "u1"\n', conn)
    assert token.token_id is None  # no replay check is possible without one
    assert token.issuer == ISSUER  # the connection's, as the sample stands for its IdP
    assert token.attributes == {}
    assert token.name_id_format is None


def test_wrong_issuer(conn: Connection) -> None:
    with pytest.raises(TokenRejected) as info:
        load_sample('subject = "u1"\nissuer = "https://other.example"\n', conn)
    assert info.value.reason == "wrong-issuer"
    assert ISSUER in info.value.message and "other.example" in info.value.message


def test_values_as_text_and_empty_values_dropped(conn: Connection) -> None:
    text = """subject = "u1"
[attributes]
age = 42
score = 2.50
admin = true
blank = ""
mixed = ["a", "", "b"]
nothing = []
[attributes.address]
country = "NL"
"""
    token = load_sample(text, conn)
    assert token.attributes == {
        "age": ["42"],
        "score": ["2.5"],
        "admin": ["true"],
        "mixed": ["a", "b"],
        "address.country": ["NL"],
    }


def test_quoted_dotted_name_is_one_attribute() -> None:
    sample = parse_sample_text('subject = "u"\n[attributes]\n"urn:oid:0.9.2342" = "x"\n')
    assert sample.attributes == {"urn:oid:0.9.2342": ["x"]}


def test_bom_is_tolerated(conn: Connection) -> None:
    assert load_sample(b'\xef\xbb\xbfsubject = "u1"\n', conn).name_id == "u1"


@pytest.mark.parametrize(
    ("text", "names"),
    [
        ('subject = "u"\nsubjct_format = "x"\n', "subjct_format"),
        ('subject = "u"\n[attribute]\nx = "y"\n', "attribute"),
        ("subject = 3\n", "subject"),
        ('[attributes]\nx = "y"\n', "subject"),
        ('subject = ""\n', "subject"),
        ('subject = "u"\nissuer = ["a"]\n', "issuer"),
        ('subject = "u"\ntoken_id = 7\n', "token_id"),
        ('subject = "u"\nattributes = "x"\n', "attributes"),
        ('subject = "u"\n[attributes]\nwhen = 2024-01-01\n', "attributes.when"),
        ('subject = "u"\n[attributes]\nx = [["a"]]\n', "attributes.x"),
        ('subject = "u"\n[attributes]\nx = [{a = 1}]\n', "attributes.x"),
        ('subject = "u"\n[attributes]\nx = nan\n', "attributes.x"),
        ('subject = "u"\nsubject = "v"\n', "TOML"),
        ("subject = \n", "TOML"),
    ],
)
def test_malformed_samples_name_the_key(text: str, names: str) -> None:
    with pytest.raises(TokenRejected) as info:
        parse_sample_text(text)
    assert info.value.reason == "malformed"
    assert names in info.value.message


def test_not_utf8(conn: Connection) -> None:
    with pytest.raises(TokenRejected) as info:
        load_sample(b'subject = "\xff"\n', conn)
    assert info.value.reason == "malformed"


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (True, "true"),
        (False, "false"),
        (2, "2"),
        (2.5, "2.5"),
        (2.0, "2"),
        (1e21, "1000000000000000000000"),
        (0.1, "0.1"),
        (-0.0, "0"),
        ("x", "x"),
        (None, None),
        (float("inf"), None),
    ],
)
def test_scalar_text(value: object, text: str | None) -> None:
    assert scalar_text(value) == text
