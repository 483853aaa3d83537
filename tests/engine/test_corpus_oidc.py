"""Every `oidc-id-token` case of the shared corpus gets the manifest's spec verdict.

The manifest's `spec_*` keys are normative; the source keys are history. Each case runs
through the intake front door (`read_token`) and through `validate_id_token` directly.
"""

from __future__ import annotations

import json
import tomllib
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from engine.config import Connection
from engine.flatten import flatten_claims
from engine.intake import read_token
from engine.oidc import validate_id_token
from engine.token import Token, TokenRejected
from tests.corpus_revisions import allowed_reasons

CORPUS = Path(__file__).resolve().parents[2].parent / "shared" / "corpus"
MANIFEST = CORPUS / "MANIFEST.toml"


def _cases() -> list[Any]:
    if not MANIFEST.is_file():
        return [pytest.param(None, marks=pytest.mark.skip(reason=f"no corpus at {CORPUS}"))]
    manifest = tomllib.loads(MANIFEST.read_text(encoding="utf-8"))
    return [
        pytest.param(case, id=case["id"])
        for case in manifest["case"]
        if case["kind"] == "oidc-id-token"
    ]


def connection_for(case: dict[str, Any], folder: Path) -> Connection:
    """The Connection `spec_options` describe; a `jwks` table is written to a file."""
    options = case["spec_options"]
    jwks = options["jwks"]
    if isinstance(jwks, dict):
        path = folder / "jwks.json"
        path.write_text(json.dumps(jwks), encoding="utf-8")
    else:
        path = CORPUS / jwks
    rules = folder / "corpus.rules"
    rules.write_text("username = subject\n", encoding="utf-8")
    values: dict[str, Any] = {
        "id": "corpus",
        "protocol": options.get("protocol", "oidc"),
        "issuer": options["issuer"],
        "audience": options["audience"],
        "rules": rules,
        "jwks": path,
    }
    for key in ("clock_skew", "max_token_bytes", "subject_from", "link_by"):
        if key in options:
            values[key] = options[key]
    return Connection(**values)


def _front_door(raw: bytes, conn: Connection, now: datetime, nonce: str | None) -> Token:
    return read_token(raw, conn, now=now, nonce=nonce)


def _direct(raw: bytes, conn: Connection, now: datetime, nonce: str | None) -> Token:
    return validate_id_token(raw, conn, now=now, nonce=nonce)


@pytest.mark.parametrize("entry", [_front_door, _direct], ids=["read_token", "validate"])
@pytest.mark.parametrize("case", _cases())
def test_corpus_oidc_case(
    case: dict[str, Any],
    entry: Callable[[bytes, Connection, datetime, str | None], Token],
    tmp_path: Path,
) -> None:
    verdict = case["spec_verdict"]
    if verdict == "skip":
        pytest.skip(case.get("spec_note", "the spec cannot express this case"))
    options = case["spec_options"]
    conn = connection_for(case, tmp_path)
    now = datetime.fromisoformat((options.get("at") or case["valid_at"]).replace("Z", "+00:00"))
    raw = (CORPUS / case["path"]).read_bytes()
    nonce = options.get("nonce")
    if verdict == "invalid":
        with pytest.raises(TokenRejected) as caught:
            entry(raw, conn, now, nonce)
        allowed = allowed_reasons(case)
        assert caught.value.reason in allowed, caught.value.message
        return
    token = entry(raw, conn, now, nonce)  # valid, and denied: the deny is the pipeline's
    expected = case.get("claims") or json.loads(case["claims_json"])
    assert token.kind == "oidc"
    assert token.name_id == expected["sub"]
    assert token.claims == expected
    assert token.attributes == flatten_claims(expected)
