"""SAML validation speed: jitprov's `validate_saml` against python3-saml and the SAML floor.

One signed ~8 KB Response (Assertion signed, RSA-SHA256, 14 attributes) is validated
three ways in the same run, in turns, on CPU time (bench/harness.py):
- jitprov: `validate_saml`, every strict check of product.md §2 plus reading the
  NameID and attributes;
- python3-saml: `OneLogin_Saml2_Response(settings, b64).is_valid(request_data)` +
  `get_attributes()` (strict mode, signed assertions wanted; target ratio ≤ 0.4);
- the floor (bench/floors/saml.py, no jitprov code): lxml parse with a safe parser, the
  SAML protocol XSD compiled once, xmlsec verifying with the pinned key, the wrapping
  checks and the same condition checks, NameID and attributes read into a dict
  (target ≤ 1.5x). Before timing, the stage asserts that the floor reads the same
  subject, token ID, expiry and attributes as jitprov.

Run: `python -m bench.bench_saml [--quick]`.
"""

from __future__ import annotations

import base64
import sys
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bench.floors.pipeline import python3_saml_request, python3_saml_settings
from bench.floors.saml import SamlFloor
from bench.harness import Comparison, in_turns
from engine.config import Connection
from engine.saml import validate_saml
from engine.saml.keys import generate_test_idp
from engine.saml.mint import mint
from engine.sample import Sample

ISSUER = "https://idp.bench.example/saml"
AUDIENCE = "https://sp.bench.example/saml"
HOST, PATH = "sp.bench.example", "/saml/acs"
RECIPIENT = f"https://{HOST}{PATH}"


def _fixture(folder: Path) -> tuple[bytes, Connection, bytes, datetime]:
    key, cert = generate_test_idp(folder, "bench IdP")
    rules = folder / "bench.rules"
    rules.write_text("username = subject\n")
    conn = Connection(
        id="bench",
        protocol="saml2",
        issuer=ISSUER,
        audience=AUDIENCE,
        rules=rules,
        certificates=(cert,),
        recipient=RECIPIENT,
        require_signed="assertion",
    )
    attributes = {
        f"urn:oid:1.3.6.1.4.1.5923.1.1.1.{n}": [f"value-{n}-" + "x" * 60] for n in range(13)
    }
    attributes["memberOf"] = [f"CN=group{n},OU=Apps,DC=example,DC=com" for n in range(8)]
    sample = Sample(
        subject="jdoe@example.com",
        token_id="_bench",
        subject_format="urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress",
        attributes=attributes,
    )
    at = datetime.now(UTC).replace(microsecond=0)
    xml = mint(sample, conn, key_pem=key.read_bytes(), cert_pem=cert.read_bytes(), at=at)
    return xml, conn, cert.read_bytes(), at


def floor_for(cert_pem: bytes, connection: Connection) -> SamlFloor:
    """The SAML floor set up for a bench connection (issuer, audience, recipient, skew)."""
    return SamlFloor(
        cert_pem,
        issuer=connection.issuer,
        audience=connection.audience,
        recipient=connection.recipient,
        skew=connection.clock_skew,
        require_signed=connection.require_signed,
    )


def run(quick: bool) -> list[Comparison]:
    with tempfile.TemporaryDirectory() as tmp:
        return _run(Path(tmp), quick)


def _run(folder: Path, quick: bool) -> list[Comparison]:
    from onelogin.saml2.response import OneLogin_Saml2_Response

    xml, conn, cert_pem, at = _fixture(folder)
    b64 = base64.b64encode(xml).decode()
    now = at + timedelta(seconds=5)
    settings = python3_saml_settings(
        cert_pem, issuer=ISSUER, audience=AUDIENCE, recipient=RECIPIENT
    )
    request = python3_saml_request(RECIPIENT, b64)
    floor = floor_for(cert_pem, conn)

    def ours() -> object:
        return validate_saml(xml, conn, now=now).attributes

    def theirs() -> object:
        response = OneLogin_Saml2_Response(settings, b64)
        if not response.is_valid(request, raise_exceptions=True):
            raise AssertionError(response.get_error())
        return response.get_attributes()

    def bare() -> object:
        return floor.validate(xml, now).attributes

    token, found = validate_saml(xml, conn, now=now), floor.validate(xml, now)
    assert (found.subject, found.token_id, found.attributes, found.expires_at) == (
        token.name_id,
        token.token_id,
        token.attributes,
        token.expires_at,
    ), "the floor must read what jitprov reads"
    assert theirs() == token.attributes
    found_turns = in_turns(
        {"ours": ours, "python3-saml": theirs, "floor": bare},
        turns=9 if quick else 25,
        number={"ours": 60, "python3-saml": 15, "floor": 60}
        if quick
        else {"ours": 150, "python3-saml": 40, "floor": 150},
        warmup=3,
    )
    size = len(xml)
    note = f"signed Response, {size} bytes; CPU time per validation"
    return [
        Comparison.paired(
            "saml",
            "validate_saml (strict + attributes)",
            "python3-saml is_valid + get_attributes",
            found_turns["ours"],
            found_turns["python3-saml"],
            target=0.4,
            notes=note,
            extra={"bytes": size},
        ),
        Comparison.paired(
            "saml",
            "validate_saml (strict + attributes)",
            "floor: lxml + XSD + xmlsec with the pinned key + the same checks "
            "(bench/floors/saml.py)",
            found_turns["ours"],
            found_turns["floor"],
            target=1.5,
            notes=note + "; the floor reads the same subject and attributes (asserted)",
            extra={"bytes": size},
        ),
    ]


def main() -> int:
    for c in run("--quick" in sys.argv):
        met = "" if c.met is None else (" met" if c.met else " NOT MET")
        spread = f" [{c.spread[0]:.2f}-{c.spread[1]:.2f}]" if c.spread else ""
        print(
            f"{c.subject} vs {c.baseline}: {c.ours.median_ms:.3f} ms vs "
            f"{c.theirs.median_ms:.3f} ms = {c.ratio:.2f}x{spread} (target ≤ {c.target}){met}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
