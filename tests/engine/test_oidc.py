"""OIDC ID-token validation: one test per reason code and defect (product.md §2).

Every token here is valid except for the defect its test names; keys are generated.
"""

from __future__ import annotations

import json
import random
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.config import ConfigError, Connection
from engine.flatten import flatten_claims
from engine.oidc import validate_id_token
from engine.token import REASON_CODES, Token, TokenRejected

if str(Path(__file__).parent) not in sys.path:  # tests/engine is not an importable package
    sys.path.insert(0, str(Path(__file__).parent))
from oidc_fixtures import (
    AUDIENCE,
    ISSUER,
    NOW,
    NOW_TS,
    SKEW,
    b64,
    claims,
    connection,
    ec_key,
    hmac_with_secret,
    oct_key,
    okp_key,
    public_jwk,
    rsa_key,
    sign,
    unsigned,
    write_jwks,
)


@pytest.fixture
def conn(tmp_path: Path) -> Connection:
    """A connection trusting an RSA, an EC, an Ed25519 key (with kids) and an HMAC secret."""
    jwks = write_jwks(
        tmp_path,
        public_jwk(rsa_key(), use="sig"),
        public_jwk(ec_key()),
        public_jwk(okp_key()),
        public_jwk(oct_key(), kid="hmac"),
    )
    return connection(jwks)


def check(token: bytes, conn: Connection, **kw: Any) -> Token:
    kw.setdefault("now", NOW)
    return validate_id_token(token, conn, **kw)


def rejected(token: bytes, conn: Connection, **kw: Any) -> TokenRejected:
    with pytest.raises(TokenRejected) as info:
        check(token, conn, **kw)
    assert info.value.reason in REASON_CODES
    assert info.value.message
    return info.value


# --- valid tokens ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("alg", "key"),
    [
        ("RS256", lambda: rsa_key()),
        ("PS256", lambda: rsa_key()),
        ("RS512", lambda: rsa_key()),
        ("ES256", lambda: ec_key()),
        ("EdDSA", lambda: okp_key()),
    ],
)
def test_valid_token_each_algorithm(conn: Connection, alg: str, key: Any) -> None:
    token = check(sign(claims(), key(), alg), conn)
    assert token.kind == "oidc"
    assert token.name_id == "user-1"
    assert token.issuer == ISSUER


def test_valid_hmac_token_without_kid_uses_the_oct_key(conn: Connection) -> None:
    assert check(sign(claims(), oct_key(), "HS256", kid=None), conn).name_id == "user-1"


def test_token_fields(conn: Connection) -> None:
    token = check(
        sign(
            claims(acr="urn:mfa", email_verified=True, jti="id-1", groups=["a", "b"]),
            rsa_key(),
        ),
        conn,
    )
    assert token.name_id_format is None
    assert token.authn_context == "urn:mfa"
    assert token.token_id == "id-1"
    assert token.email_verified is True
    assert token.expires_at == NOW + timedelta(seconds=300 + SKEW)
    assert token.attributes["groups"] == ["a", "b"]
    assert token.attributes["email_verified"] == ["true"]
    assert token.claims["sub"] == "user-1"
    assert token.claims["exp"] == NOW_TS + 300


def test_email_verified_string_is_not_true(conn: Connection) -> None:
    token = check(sign(claims(email_verified="true"), rsa_key()), conn)
    assert token.email_verified is False


def test_token_id_without_jti_is_sub_iat_nonce_then_sub_iat(conn: Connection) -> None:
    with_nonce = check(sign(claims(nonce="n-1"), rsa_key()), conn)
    plain = check(sign(claims(), rsa_key()), conn)
    assert json.loads(with_nonce.token_id or "") == ["user-1", str(NOW_TS - 10), "n-1"]
    assert json.loads(plain.token_id or "") == ["user-1", str(NOW_TS - 10)]
    # joined unambiguously: a sub containing the separator cannot collide
    other = check(sign(claims(sub='user-1","x', iat=NOW_TS - 10), rsa_key()), conn)
    assert other.token_id != with_nonce.token_id


# --- size, structure, unsupported forms -----------------------------------------------


def test_too_large_counts_the_token_as_received(tmp_path: Path) -> None:
    token = sign(claims(), rsa_key())
    small = connection(write_jwks(tmp_path, public_jwk(rsa_key())), max_token_bytes=len(token))
    assert check(token, small).name_id == "user-1"
    assert rejected(token + b"\n", small).reason == "too-large"


@pytest.mark.parametrize(
    "defect",
    [
        "two-segments",
        "bad-base64",
        "header-not-json",
        "payload-array",
        "payload-not-json",
        "duplicate-claim",
        "nan",
        "truncated",
        "no-alg",
        "non-ascii",
    ],
)
def test_malformed(conn: Connection, defect: str) -> None:
    good = sign(claims(), rsa_key()).decode()
    head, body, sig = good.split(".")
    duplicate = b64(b'{"sub": "a", "sub": "b"}')
    nan = b64(b'{"exp": NaN}')
    no_alg = b64(b'{"kid": "rsa"}')
    tokens = {
        "two-segments": f"{head}.{body}",
        "bad-base64": f"{head}.{body}!.{sig}",
        "header-not-json": f"{b64(b'not json')}.{body}.{sig}",
        "payload-array": f"{head}.{b64(b'[1, 2]')}.{sig}",
        "payload-not-json": f"{head}.{b64(b'{')}.{sig}",
        "duplicate-claim": f"{head}.{duplicate}.{sig}",
        "nan": f"{head}.{nan}.{sig}",
        "truncated": good[: len(head) + 10],
        "no-alg": f"{no_alg}.{body}.{sig}",
        "non-ascii": good + "é",
    }
    assert rejected(tokens[defect].encode(), conn).reason == "malformed"


def test_jwe_is_unsupported(conn: Connection) -> None:
    header = b64(json.dumps({"alg": "RSA-OAEP", "enc": "A256GCM"}).encode())
    assert rejected(f"{header}.a.b.c.d".encode(), conn).reason == "unsupported"


@pytest.mark.parametrize("typ", ["at+jwt", "AT+JWT", "application/at+jwt", "Application/AT+JWT"])
def test_access_token_typ_is_unsupported(conn: Connection, typ: str) -> None:
    assert rejected(sign(claims(), rsa_key(), typ=typ), conn).reason == "unsupported"


def test_typ_jwt_is_fine(conn: Connection) -> None:
    assert check(sign(claims(), rsa_key(), typ="JWT"), conn)


def test_crit_is_unsupported(conn: Connection) -> None:
    token = sign(claims(), rsa_key(), crit=["exp"], exp=1)
    assert rejected(token, conn).reason == "unsupported"


# --- algorithms and keys --------------------------------------------------------------


def test_alg_none_is_unsupported(conn: Connection) -> None:
    assert rejected(unsigned(claims()), conn).reason == "unsupported"
    assert rejected(unsigned(claims(), kid="rsa"), conn).reason == "unsupported"


def test_unknown_alg_is_unsupported(conn: Connection) -> None:
    good = sign(claims(), rsa_key()).decode().split(".")
    head = b64(json.dumps({"alg": "HS1", "kid": "rsa"}).encode())
    assert rejected(f"{head}.{good[1]}.{good[2]}".encode(), conn).reason == "unsupported"


def test_hmac_with_the_rsa_public_key_as_secret_is_unsupported(tmp_path: Path) -> None:
    """Key confusion: HS256 MACed with the RSA public key's PEM must never verify."""
    pem = rsa_key().as_pem(private=False)
    rsa_only = connection(write_jwks(tmp_path, public_jwk(rsa_key())))
    named = hmac_with_secret(claims(), pem, kid="rsa")
    unnamed = hmac_with_secret(claims(), pem)
    assert rejected(named, rsa_only).reason == "unsupported"
    assert rejected(unnamed, rsa_only).reason == "unsupported"


def test_es256_header_on_an_rsa_kid_is_unsupported(conn: Connection) -> None:
    token = sign(claims(), ec_key(), "ES256", kid="rsa")
    assert rejected(token, conn).reason == "unsupported"


def test_es384_on_a_p256_key_is_unsupported(conn: Connection) -> None:
    token = sign(claims(), ec_key("ec384", "P-384"), "ES384", kid="ec")
    assert rejected(token, conn).reason == "unsupported"


@pytest.mark.parametrize("member", ["jwk", "jku", "x5u", "x5c"])
def test_keys_carried_in_the_header_are_ignored(conn: Connection, member: str) -> None:
    attacker = rsa_key("attacker")
    values = {
        "jwk": public_jwk(attacker),
        "jku": "https://attacker.example/jwks.json",
        "x5u": "https://attacker.example/cert.pem",
        "x5c": ["MIIBattackercert"],
    }
    named = rejected(sign(claims(), attacker, **{member: values[member]}), conn)
    assert named.reason == "untrusted-signer"
    posing = rejected(sign(claims(), attacker, kid="rsa", **{member: values[member]}), conn)
    assert posing.reason == "bad-signature"
    unnamed = rejected(sign(claims(), attacker, kid=None, **{member: values[member]}), conn)
    assert unnamed.reason == "bad-signature"


def test_header_keys_do_not_break_a_valid_token(conn: Connection) -> None:
    token = sign(claims(), rsa_key(), x5c=["not base64 at all !"], jku=42, jwk="junk")
    assert check(token, conn).name_id == "user-1"


def test_unknown_kid_is_untrusted_signer(conn: Connection) -> None:
    error = rejected(sign(claims(), rsa_key(), kid="rotated-away"), conn)
    assert error.reason == "untrusted-signer"
    assert "rotated-away" in error.message


def test_configured_kid_with_a_bad_signature_is_bad_signature(conn: Connection) -> None:
    token = sign(claims(), rsa_key("other"), kid="rsa")
    assert rejected(token, conn).reason == "bad-signature"


def test_no_kid_and_no_key_verifies_is_bad_signature(conn: Connection) -> None:
    token = sign(claims(), rsa_key("other"), kid=None)
    assert rejected(token, conn).reason == "bad-signature"


def test_no_kid_tries_every_fitting_key(tmp_path: Path) -> None:
    jwks = write_jwks(tmp_path, public_jwk(rsa_key("other")), public_jwk(rsa_key()))
    assert check(sign(claims(), rsa_key(), kid=None), connection(jwks)).name_id == "user-1"


def test_enc_key_is_never_used(tmp_path: Path) -> None:
    jwks = write_jwks(tmp_path, public_jwk(rsa_key(), use="enc"))
    conn = connection(jwks)
    assert rejected(sign(claims(), rsa_key()), conn).reason == "untrusted-signer"
    assert rejected(sign(claims(), rsa_key(), kid=None), conn).reason == "unsupported"


def test_key_alg_mismatch_is_never_used(tmp_path: Path) -> None:
    conn = connection(write_jwks(tmp_path, public_jwk(rsa_key(), alg="RS512")))
    assert rejected(sign(claims(), rsa_key(), "RS256"), conn).reason == "unsupported"
    assert check(sign(claims(), rsa_key(), "RS512"), conn).name_id == "user-1"


def test_short_rsa_key_is_never_used(tmp_path: Path) -> None:
    weak = rsa_key("weak", 1024)
    conn = connection(write_jwks(tmp_path, public_jwk(weak)))
    assert rejected(sign(claims(), weak), conn).reason == "unsupported"


def test_unreadable_jwks_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "jwks.json"
    path.write_text("{not json", encoding="utf-8")
    with pytest.raises(ConfigError):
        check(sign(claims(), rsa_key()), connection(path))


# --- claims ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "change",
    [
        {"iss": ...},
        {"sub": ...},
        {"aud": ...},
        {"exp": ...},
        {"iat": ...},
        {"iss": 1},
        {"sub": ""},
        {"sub": None},
        {"aud": 5},
        {"aud": []},
        {"aud": ["a", 3]},
        {"exp": "1800000000"},
        {"exp": True},
        {"iat": None},
        {"nbf": "soon"},
    ],
)
def test_missing_or_mistyped_required_claim_is_malformed(conn: Connection, change: Any) -> None:
    assert rejected(sign(claims(**change), rsa_key()), conn).reason == "malformed"


def test_missing_claim_is_reported_before_the_signature(conn: Connection) -> None:
    token = sign(claims(sub=...), rsa_key("other"), kid="rsa")
    assert rejected(token, conn).reason == "malformed"


def test_signature_is_checked_before_the_issuer(conn: Connection) -> None:
    token = sign(claims(iss="https://evil.example/"), rsa_key("other"), kid="rsa")
    assert rejected(token, conn).reason == "bad-signature"


def test_wrong_issuer(conn: Connection) -> None:
    error = rejected(sign(claims(iss="https://other.example/"), rsa_key()), conn)
    assert error.reason == "wrong-issuer"
    assert ISSUER in error.message and "other.example" in error.message


def test_issuer_compares_exactly(conn: Connection) -> None:
    token = sign(claims(iss=ISSUER.rstrip("/")), rsa_key())
    assert rejected(token, conn).reason == "wrong-issuer"


def test_issuer_is_checked_before_expiry(conn: Connection) -> None:
    token = sign(claims(iss="x", exp=NOW_TS - 1000), rsa_key())
    assert rejected(token, conn).reason == "wrong-issuer"


@pytest.mark.parametrize(
    ("aud", "azp", "outcome"),
    [
        (AUDIENCE, ..., "valid"),
        ([AUDIENCE], ..., "valid"),
        ("other", ..., "wrong-audience"),
        (AUDIENCE.upper(), ..., "wrong-audience"),
        ([AUDIENCE, "other"], ..., "wrong-audience"),
        ([AUDIENCE, "other"], AUDIENCE, "valid"),
        ([AUDIENCE, "other"], "other", "wrong-audience"),
        ([AUDIENCE, AUDIENCE], ..., "valid"),
        (AUDIENCE, "someone-else", "valid"),
    ],
)
def test_audience_and_azp(conn: Connection, aud: Any, azp: Any, outcome: str) -> None:
    token = sign(claims(aud=aud, azp=azp), rsa_key())
    if outcome == "valid":
        assert check(token, conn).name_id == "user-1"
    else:
        assert rejected(token, conn).reason == outcome


@pytest.mark.parametrize(
    ("change", "now_offset", "outcome"),
    [
        ({"exp": NOW_TS}, SKEW - 1, "valid"),
        ({"exp": NOW_TS}, SKEW - 0.000001, "valid"),
        ({"exp": NOW_TS}, SKEW, "expired"),
        ({"exp": NOW_TS + 0.5}, SKEW + 0.5, "expired"),
        ({"nbf": NOW_TS}, -SKEW, "valid"),
        ({"nbf": NOW_TS}, -SKEW - 0.000001, "not-yet-valid"),
        ({"iat": NOW_TS, "exp": NOW_TS + 600}, -SKEW, "valid"),
        ({"iat": NOW_TS, "exp": NOW_TS + 600}, -SKEW - 1, "not-yet-valid"),
    ],
)
def test_time_window_edges(conn: Connection, change: Any, now_offset: float, outcome: str) -> None:
    token = sign(claims(**change), rsa_key())
    now = NOW + timedelta(seconds=now_offset)
    if outcome == "valid":
        assert check(token, conn, now=now).name_id == "user-1"
    else:
        assert rejected(token, conn, now=now).reason == outcome


def test_zero_clock_skew(tmp_path: Path) -> None:
    conn = connection(write_jwks(tmp_path, public_jwk(rsa_key())), clock_skew=0)
    token = sign(claims(exp=NOW_TS), rsa_key())
    assert rejected(token, conn).reason == "expired"


@pytest.mark.parametrize(
    ("claim", "expected", "outcome"),
    [
        ("n-1", "n-1", "valid"),
        ("n-1", None, "valid"),
        (..., None, "valid"),
        ("n-2", "n-1", "wrong-nonce"),
        (..., "n-1", "wrong-nonce"),
        (7, "7", "wrong-nonce"),
    ],
)
def test_nonce(conn: Connection, claim: Any, expected: str | None, outcome: str) -> None:
    token = sign(claims(nonce=claim), rsa_key())
    if outcome == "valid":
        assert check(token, conn, nonce=expected).name_id == "user-1"
    else:
        assert rejected(token, conn, nonce=expected).reason == outcome


def test_expiry_is_checked_before_the_nonce(conn: Connection) -> None:
    token = sign(claims(exp=NOW_TS - 1000, nonce="x"), rsa_key())
    assert rejected(token, conn, nonce="y").reason == "expired"


def test_whitespace_and_bom_around_the_token(conn: Connection) -> None:
    token = b"\xef\xbb\xbf  " + sign(claims(), rsa_key()) + b"\r\n"
    assert check(token, conn).name_id == "user-1"


def test_decimal_claims_flatten_exactly(conn: Connection) -> None:
    token = check(sign(claims(score=2.50, big=1e21, exp=NOW_TS + 300.25), rsa_key()), conn)
    assert token.attributes["score"] == ["2.5"]
    assert token.attributes["big"] == ["1000000000000000000000"]
    assert token.attributes["exp"] == [f"{NOW_TS + 300}.25"]


# --- never a crash, never accepted ----------------------------------------------------

_GOOD: dict[str, bytes] = {}


def _good() -> bytes:
    if "token" not in _GOOD:
        _GOOD["token"] = sign(claims(nested={"a": [1, {"b": True}]}), rsa_key())
    return _GOOD["token"]


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.data())
def test_flipping_any_payload_character_is_rejected(conn: Connection, data: st.DataObject) -> None:
    head, body, sig = _good().decode().split(".")
    index = data.draw(st.integers(0, len(body) - 1))
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.=+/ \x00é"
    replacement = data.draw(st.sampled_from(alphabet).filter(lambda c: c != body[index]))
    mutated = body[:index] + replacement + body[index + 1 :]
    token = f"{head}.{mutated}.{sig}".encode()
    try:
        result = check(token, conn)
    except TokenRejected as exc:
        assert exc.reason in REASON_CODES
    else:
        # base64url's last character may carry unused bits: same bytes, same token
        assert b64(json.dumps(result.claims).encode()) and mutated != body
        assert _same_payload(body, mutated)


def _same_payload(a: str, b: str) -> bool:
    from engine.oidc.compact import b64url_decode

    try:
        return b64url_decode(a) == b64url_decode(b)
    except ValueError:
        return False


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.binary(max_size=400))
def test_random_bytes_are_rejected_never_a_traceback(conn: Connection, raw: bytes) -> None:
    with pytest.raises(TokenRejected) as info:
        check(raw, conn)
    assert info.value.reason in REASON_CODES


@settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.lists(st.text(alphabet="ABCabc012-_.", max_size=40), min_size=1, max_size=6))
def test_random_dotted_segments_are_rejected(conn: Connection, parts: list[str]) -> None:
    with pytest.raises(TokenRejected) as info:
        check(".".join(parts).encode(), conn)
    assert info.value.reason in REASON_CODES


def test_many_random_json_payloads_signed_are_never_a_crash(conn: Connection) -> None:
    rng = random.Random(7)
    values: list[Any] = [None, True, 0, -1, 1.5, "", "x", [], {}, [None], {"a": None}, 10**30]
    for _ in range(60):
        payload = claims(
            **{
                k: rng.choice(values)
                for k in rng.sample(
                    ["iss", "sub", "aud", "exp", "iat", "nbf", "azp", "nonce", "jti", "acr"], 3
                )
            }
        )
        try:
            check(sign(payload, rsa_key()), conn, nonce=rng.choice([None, "x"]))
        except TokenRejected as exc:
            assert exc.reason in REASON_CODES


# --- flattening (rules-language.md §4) -------------------------------------------------


@pytest.mark.parametrize(
    ("claims_in", "attributes"),
    [
        ({"email": "a@b.c"}, {"email": ["a@b.c"]}),
        (
            {"address": {"country": "NL", "locality": "Delft"}},
            {"address.country": ["NL"], "address.locality": ["Delft"]},
        ),
        ({"roles": ["admin", "dev"]}, {"roles": ["admin", "dev"]}),
        (
            {"groups": [{"name": "a"}, {"name": "b", "id": 2}]},
            {"groups.name": ["a", "b"], "groups.id": ["2"]},
        ),
        (
            {"n": 2, "d": 2.50, "t": True, "f": False},
            {"n": ["2"], "d": ["2.5"], "t": ["true"], "f": ["false"]},
        ),
        ({"gone": None, "empty": "", "list": [None, "", "x"], "none": []}, {"list": ["x"]}),
        (
            {"address.country": "top", "address": {"country": "nested"}},
            {"address.country": ["top"]},
        ),
        (
            {"address": {"country": "nested"}, "address.country": "top"},
            {"address.country": ["top"]},
        ),
        ({"a": {"b.c": "x"}, "a.b": {"c": "y"}}, {"a.b.c": ["x", "y"]}),
        ({"a.b.c": "top", "a": {"b": {"c": "deep"}}}, {"a.b.c": ["top"]}),
        ({"m": [[1, 2], [3]]}, {"m": ["1", "2", "3"]}),
        ({"deep": {"x": {"y": {"z": 0}}}}, {"deep.x.y.z": ["0"]}),
        ({"big": 10**20, "neg": -0.5}, {"big": ["100000000000000000000"], "neg": ["-0.5"]}),
    ],
)
def test_flatten_claims(claims_in: dict[str, Any], attributes: dict[str, list[str]]) -> None:
    assert flatten_claims(claims_in) == attributes


def test_decimal_text_straight_from_the_token(conn: Connection) -> None:
    body = json.dumps(claims())[:-1] + ', "price": 19.90, "tiny": 0.000001, "e": 1E+2}'
    token = check(sign(body.encode(), rsa_key()), conn)
    assert token.attributes["price"] == ["19.9"]
    assert token.attributes["tiny"] == ["0.000001"]
    assert token.attributes["e"] == ["100"]
    assert token.claims["e"] == 100


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.data())
def test_flipping_any_character_of_the_token_is_never_accepted(
    conn: Connection, data: st.DataObject
) -> None:
    good = _good().decode()
    index = data.draw(st.integers(0, len(good) - 1))
    replacement = data.draw(st.sampled_from("Aa0-_.=+/ ").filter(lambda c: c != good[index]))
    mutated = good[:index] + replacement + good[index + 1 :]
    try:
        check(mutated.encode(), conn)
    except TokenRejected as exc:
        assert exc.reason in REASON_CODES
    else:
        # only a change in base64url's unused trailing bits leaves the token's bytes equal
        pairs = zip(good.split("."), mutated.split("."), strict=True)
        assert all(_same_payload(a, b) for a, b in pairs)


def test_deeply_nested_claims_are_malformed_not_a_crash(conn: Connection) -> None:
    body = json.dumps(claims())[:-1] + ', "deep": ' + "[" * 5000 + "]" * 5000 + "}"
    assert rejected(sign(body.encode(), rsa_key()), conn).reason == "malformed"
    body = json.dumps(claims())[:-1] + ', "deep": ' + "[" * 60 + '"x"' + "]" * 60 + "}"
    assert check(sign(body.encode(), rsa_key()), conn).attributes["deep"] == ["x"]


def test_connections_taking_turns_keep_their_jwks_cached(tmp_path: Path) -> None:
    """Two OIDC connections signing in by turns used to evict each other's keys, so
    every token re-read and re-parsed its JWKS; a changed file is still read again."""
    import os

    from engine.oidc.keys import load_jwks

    first = write_jwks(tmp_path, public_jwk(rsa_key("a")), name="a.json")
    second = write_jwks(tmp_path, public_jwk(rsa_key("b")), name="b.json")
    keys_a, keys_b = load_jwks(first), load_jwks(second)
    assert load_jwks(first) is keys_a and load_jwks(second) is keys_b  # both kept
    write_jwks(tmp_path, public_jwk(rsa_key("c")), name="a.json")
    stat = first.stat()
    os.utime(first, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    changed = load_jwks(first)
    assert changed is not keys_a and [e.kid for e in changed] == ["c"]
