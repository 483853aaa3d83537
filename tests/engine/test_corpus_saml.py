"""Every SAML and metadata case of the shared corpus gets the manifest's spec verdict.

The manifest's `spec_*` keys are normative (its header says how to read them); the
source keys are history and are not used here.
"""

from __future__ import annotations

import sys
import tomllib
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from engine.config import Connection
from engine.saml import validate_saml
from engine.token import TokenRejected
from tests.corpus_revisions import allowed_reasons

CORPUS = Path(__file__).resolve().parents[2].parent / "shared" / "corpus"
MANIFEST = CORPUS / "MANIFEST.toml"
KINDS = ("saml-response", "metadata")
if str(Path(__file__).parent) not in sys.path:  # tests/engine is not an importable package
    sys.path.insert(0, str(Path(__file__).parent))


def _cases() -> list[Any]:
    if not MANIFEST.is_file():
        return [pytest.param(None, marks=pytest.mark.skip(reason=f"no corpus at {CORPUS}"))]
    manifest = tomllib.loads(MANIFEST.read_text(encoding="utf-8"))
    return [pytest.param(case, id=case["id"]) for case in manifest["case"] if case["kind"] in KINDS]


def _when(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def connection_for(case: dict[str, Any], rules: Path) -> Connection:
    """The Connection `spec_options` describe (paths relative to the corpus folder)."""
    options = case["spec_options"]
    certs = options.get("certificate", [])
    certs = [certs] if isinstance(certs, str) else certs
    values: dict[str, Any] = {
        "id": "corpus",
        "protocol": options.get("protocol", "saml2"),
        "issuer": options["issuer"],
        "audience": options["audience"],
        "rules": rules,
        "certificates": tuple(CORPUS / c for c in certs),
    }
    for key in (
        "recipient",
        "require_signed",
        "clock_skew",
        "allow_sha1",
        "check_cert_dates",
        "require_in_response_to",
        "max_token_bytes",
        "subject_from",
        "link_by",
    ):
        if key in options:
            values[key] = options[key]
    for key in ("decryption_key", "metadata"):
        if key in options:
            values[key] = CORPUS / options[key]
    return Connection(**values)


def _run_saml(case: dict[str, Any], tmp_path: Path) -> None:
    rules = tmp_path / "corpus.rules"
    rules.write_text("username = subject\n", encoding="utf-8")
    connection = connection_for(case, rules)
    options = case["spec_options"]
    now = _when(options["at"] if "at" in options else case["valid_at"])
    raw = (CORPUS / case["path"]).read_bytes()
    verdict = case["spec_verdict"]
    if verdict == "invalid":
        with pytest.raises(TokenRejected) as caught:
            validate_saml(raw, connection, now=now, request_id=options.get("request_id"))
        allowed = allowed_reasons(case)
        assert caught.value.reason in allowed, caught.value.message
        return
    token = validate_saml(raw, connection, now=now, request_id=options.get("request_id"))
    if verdict == "denied":
        return  # the deny is the pipeline's (spec_rules); the token itself validates
    extract = case.get("extract", {})
    expected_attrs: dict[str, list[str]] = case.get("attributes", {})
    if "nameid" in extract:
        assert token.name_id == extract["nameid"]
    if "nameid_format" in extract:
        assert token.name_id_format == extract["nameid_format"]
    if connection.subject_from is not None and connection.subject_from in expected_attrs:
        assert (
            token.attributes[connection.subject_from][0]
            == (expected_attrs[connection.subject_from][0])
        )
    for name, values in expected_attrs.items():
        # The manifest header: "empty values are dropped" (cj-onelogin-valid lists [""]).
        assert token.attributes.get(name, []) == [v for v in values if v], name
    for value in case.get("must_not_extract", []):
        flat = [token.name_id, *(v for vs in token.attributes.values() for v in vs)]
        assert value not in flat


def _run_metadata(case: dict[str, Any], tmp_path: Path) -> None:
    from saml_fixtures import import_into_workspace

    result = import_into_workspace(CORPUS / case["path"], tmp_path)
    if case["spec_verdict"] == "valid":
        assert result["connections"]["md"]["issuer"] == case["extract"]["entity_id"]
    else:
        assert result is None


@pytest.mark.parametrize("case", _cases())
def test_corpus_case(case: dict[str, Any], tmp_path: Path) -> None:
    if case["spec_verdict"] == "skip":
        pytest.skip(f"manifest spec_verdict = skip: {case['spec_note']}")
    if case["kind"] == "metadata":
        _run_metadata(case, tmp_path)
    else:
        _run_saml(case, tmp_path)


def _decrypt_only_cases() -> list[Any]:
    if not MANIFEST.is_file():
        return [pytest.param(None, marks=pytest.mark.skip(reason=f"no corpus at {CORPUS}"))]
    manifest = tomllib.loads(MANIFEST.read_text(encoding="utf-8"))
    return [
        pytest.param(case, id=case["id"])
        for case in manifest["case"]
        if case.get("scope") == "decrypt-and-extract" and "sp_key" in case
    ]


@pytest.mark.parametrize("case", _decrypt_only_cases())
def test_corpus_decryption_alone(case: dict[str, Any]) -> None:
    """The skipped decrypt-and-extract cases (their signer's certificate is not in the
    corpus) still show the decryption step handles each content cipher a real IdP used;
    this is not a verdict: validate_saml is not run on them."""
    from engine.saml.attributes import read_attributes
    from engine.saml.decode import decode_saml
    from engine.saml.decrypt import decrypt_element
    from engine.saml.xml import SAML, parse_xml, text_of

    root = parse_xml(decode_saml((CORPUS / case["path"]).read_bytes(), 1 << 20))
    encrypted = root.find(f"{SAML}EncryptedAssertion")
    assert encrypted is not None
    assertion = decrypt_element(encrypted, (CORPUS / case["sp_key"]).read_bytes())
    assert text_of(assertion.find(f"{SAML}Subject/{SAML}NameID")) == case["extract"]["nameid"]
    for name, value in case["extract"].items():
        if name not in ("nameid", "nameid_format", "session_index"):
            assert read_attributes(assertion)[name][0] == value


def _imported_cases() -> list[Any]:
    """Valid responses whose IdP certificate came from one of the corpus's metadata
    files: (case, that metadata file)."""
    if not MANIFEST.is_file():
        return [pytest.param(None, None, marks=pytest.mark.skip(reason=f"no corpus at {CORPUS}"))]
    manifest = tomllib.loads(MANIFEST.read_text(encoding="utf-8"))
    metadata = {f["source_path"]: f["path"] for f in manifest["file"] if f["kind"] == "metadata"}
    from_metadata = {}
    for f in manifest["file"]:
        origin = f.get("source_path", "").split(" (X509Certificate")[0]
        if f["kind"] == "cert" and origin in metadata and f["path"].endswith(".derived.pem"):
            from_metadata[f["path"]] = metadata[origin]
    return [
        pytest.param(case, from_metadata[case["spec_options"]["certificate"]], id=case["id"])
        for case in manifest["case"]
        if case["kind"] == "saml-response"
        and case["spec_verdict"] == "valid"
        and case["spec_options"].get("certificate") in from_metadata
    ]


@pytest.mark.parametrize(("case", "metadata"), _imported_cases())
def test_a_connection_imported_from_the_idp_s_metadata_accepts_its_responses(
    case: dict[str, Any], metadata: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`connection import-metadata` with the options that describe this SP (audience,
    recipient, require_signed, decryption key) gives a connection that checks clean and
    signs the IdP's response in; the case's other settings (clock_skew, allow_sha1, ...)
    are written as an administrator would."""
    from engine.config_edit import save_connection
    from tui.cli import run

    options = case["spec_options"]
    config = tmp_path / "jitprov.toml"
    config.write_text('[store]\npath = "jitprov.db"\n', encoding="utf-8")
    argv = ["connection", "import-metadata", str(CORPUS / metadata), "--id", "md"]
    argv += ["--audience", options["audience"], "--config", str(config)]
    if "recipient" in options:
        argv += ["--recipient", options["recipient"]]
    if "require_signed" in options:
        argv += ["--require-signed", options["require_signed"]]
    if "decryption_key" in options:
        argv += ["--decryption-key", str(CORPUS / options["decryption_key"])]
    assert run(argv) == 0, capsys.readouterr().err
    imported = tomllib.loads(config.read_text())["connections"]["md"]
    assert imported["issuer"] == options["issuer"]
    settings = {
        k: options[k]
        for k in ("clock_skew", "allow_sha1", "check_cert_dates", "require_in_response_to")
        if k in options
    }
    save_connection(config, "md", {**imported, **settings})
    capsys.readouterr()
    assert run(["check", "--config", str(config)]) == 0, capsys.readouterr().out
    token = tmp_path / "response.xml"
    token.write_bytes((CORPUS / case["path"]).read_bytes())
    at = options.get("at", case["valid_at"])
    apply = ["apply", "-c", "md", "--at", at, "--json", "--config", str(config), str(token)]
    if "request_id" in options:
        apply += ["--request-id", options["request_id"]]
    code = run(apply)
    out = capsys.readouterr().out
    assert code == 0, out
    assert '"outcome": "created"' in out
