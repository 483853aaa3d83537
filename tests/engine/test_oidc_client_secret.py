"""`client_secret_env`: HS256/384/512 ID tokens verified with the client secret, read from
an environment variable at each use and never from the workspace."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import Any

import pytest

if str(Path(__file__).parent) not in sys.path:  # tests/engine is not an importable package
    sys.path.insert(0, str(Path(__file__).parent))
from oidc_fixtures import (
    HMAC_SECRET,
    check,
    claims,
    connection,
    oct_key,
    public_jwk,
    refused,
    rsa_key,
    sign,
    write_jwks,
)

from engine.config import Connection

VARIABLE = "JITPROV_TEST_CLIENT_SECRET"


@pytest.fixture
def secret_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Connection:
    monkeypatch.setenv(VARIABLE, HMAC_SECRET.decode())
    conn = connection(tmp_path / "rules", client_secret_env=VARIABLE)
    return dataclasses.replace(conn, jwks=None)


@pytest.mark.parametrize("alg", ["HS256", "HS384", "HS512"])
def test_each_hmac_alg_verifies_with_the_secret(secret_only: Connection, alg: str) -> None:
    assert check(sign(claims(), oct_key(), alg, kid=None), secret_only).name_id == "user-1"


def test_a_kid_of_the_idp_s_own_naming_still_finds_the_secret(secret_only: Connection) -> None:
    token = sign(claims(), oct_key(), "HS256", kid="whatever-the-idp-calls-it")
    assert check(token, secret_only).name_id == "user-1"


def test_another_secret_is_a_bad_signature(secret_only: Connection) -> None:
    token = sign(claims(), oct_key(b"not-the-client-secret-at-all-0123"), "HS256", kid=None)
    assert refused(token, secret_only).reason == "bad-signature"


def test_a_rotated_secret_takes_effect_from_the_environment(
    secret_only: Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    new = b"the-rotated-client-secret-0123456789"
    monkeypatch.setenv(VARIABLE, new.decode())
    assert check(sign(claims(), oct_key(new), "HS256", kid=None), secret_only)
    old = sign(claims(), oct_key(), "HS256", kid=None)
    assert refused(old, secret_only).reason == "bad-signature"


def test_a_missing_secret_is_untrusted_signer_naming_the_variable(
    secret_only: Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(VARIABLE)
    problem = refused(sign(claims(), oct_key(), "HS256", kid=None), secret_only)
    assert problem.reason == "untrusted-signer"
    assert VARIABLE in problem.message and HMAC_SECRET.decode() not in problem.message


def test_an_rsa_token_needs_a_jwks_when_only_a_secret_is_set(secret_only: Connection) -> None:
    problem = refused(sign(claims(), rsa_key(), "RS256"), secret_only)
    assert problem.reason == "untrusted-signer"
    assert "needs a key from a JWKS" in problem.message


def test_the_secret_sits_beside_a_jwks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(VARIABLE, HMAC_SECRET.decode())
    jwks = write_jwks(tmp_path, public_jwk(rsa_key(), use="sig"))
    both = connection(jwks, client_secret_env=VARIABLE)
    assert check(sign(claims(), rsa_key(), "RS256"), both).name_id == "user-1"
    assert check(sign(claims(), oct_key(), "HS256", kid=None), both).name_id == "user-1"


def test_key_confusion_stays_refused_with_a_secret(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """HS256 MACed with the RSA public key's PEM verifies with neither key."""
    from oidc_fixtures import hmac_with_secret

    monkeypatch.setenv(VARIABLE, HMAC_SECRET.decode())
    jwks = write_jwks(tmp_path, public_jwk(rsa_key(), use="sig"))
    both = connection(jwks, client_secret_env=VARIABLE)
    pem: Any = rsa_key().as_pem(private=False)
    token = hmac_with_secret(claims(), pem, kid="rsa")
    assert refused(token, both).reason == "bad-signature"
