"""Property tests: no change to a signed element is ever accepted, nothing crashes."""

from __future__ import annotations

import sys
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.saml import validate_saml
from engine.token import REASON_CODES, TokenRejected

if str(Path(__file__).parent) not in sys.path:  # tests/engine is not an importable package
    sys.path.insert(0, str(Path(__file__).parent))
from saml_fixtures import LATER, connection, make_token

GOOD = make_token(signing="assertion")
START = GOOD.index(b"<saml:Assertion")
END = GOOD.index(b"</saml:Assertion>") + len(b"</saml:Assertion>")
KEYINFO = (GOOD.index(b"<ds:KeyInfo>"), GOOD.index(b"</ds:KeyInfo>"))
CONN = connection()


def _outcome(raw: bytes) -> str:
    try:
        validate_saml(raw, CONN, now=LATER)
    except TokenRejected as exc:
        assert exc.reason in REASON_CODES
        return exc.reason
    return "accepted"


def test_the_unchanged_token_is_accepted() -> None:
    assert _outcome(GOOD) == "accepted"


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(min_value=START, max_value=END - 1), st.integers(min_value=1, max_value=255))
def test_flipping_any_byte_of_the_signed_assertion_is_rejected(offset: int, mask: int) -> None:
    mutated = bytearray(GOOD)
    mutated[offset] ^= mask
    if bytes(mutated) == GOOD:
        return
    outcome = _outcome(bytes(mutated))
    if outcome == "accepted" and KEYINFO[0] < offset < KEYINFO[1]:
        return  # KeyInfo is outside what is signed, and never used: the key is configured
    if outcome == "accepted":
        # Only a change the c14n does not see may pass: whitespace inside a tag, or the
        # quote style of an attribute. Anything else must be refused.
        before, after = GOOD[offset : offset + 1], bytes(mutated[offset : offset + 1])
        assert {before, after} <= {b" ", b"\t", b"\n", b"\r", b'"', b"'"}, (offset, after)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2048))
def test_random_bytes_are_rejected_never_a_crash(raw: bytes) -> None:
    assert _outcome(raw) in {"malformed", "too-large", "dtd"}


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=512))
def test_random_xmlish_text_is_rejected_never_a_crash(text: str) -> None:
    raw = ("<samlp:Response xmlns:samlp='urn:oasis:names:tc:SAML:2.0:protocol'>" + text).encode()
    assert _outcome(raw) != "accepted"
