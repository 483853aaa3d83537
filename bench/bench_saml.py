"""SAML validation speed: jitprov's `validate_saml` against python3-saml and a floor.

One signed ~8 KB Response (Assertion signed, RSA-SHA256, 14 attributes) is validated
three ways in the same run:
- jitprov: every strict check of product.md §2 plus attribute extraction;
- python3-saml: `OneLogin_Saml2_Response(settings, b64).is_valid(request_data)` +
  `get_attributes()` (strict mode; target ratio ≤ 0.4);
- the floor: lxml parse + schema check + xmlsec verify with a pinned key + the same
  condition checks, nothing else (target ≤ 2x).

Run: `python -m bench.bench_saml [--quick]`.
"""

from __future__ import annotations

import base64
import gc
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import xmlsec

from bench.harness import Comparison, Stats
from engine.config import Connection
from engine.saml import conditions, schema, validate_saml
from engine.saml.keys import generate_test_idp, trusted_certs
from engine.saml.mint import mint
from engine.saml.xml import DS, SAML, parse_xml
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


def python3_saml_request(b64: str) -> dict[str, object]:
    """The request python3-saml validates a POSTed response against (our ACS)."""
    return {
        "https": "on",
        "http_host": HOST,
        "script_name": PATH,
        "get_data": {},
        "post_data": {"SAMLResponse": b64},
    }


def _python3_saml(cert_pem: bytes):  # type: ignore[no-untyped-def]
    from onelogin.saml2.settings import OneLogin_Saml2_Settings

    body = "".join(cert_pem.decode().splitlines()[1:-1])
    return OneLogin_Saml2_Settings(
        {
            "strict": True,
            "sp": {
                "entityId": AUDIENCE,
                "assertionConsumerService": {
                    "url": RECIPIENT,
                    "binding": "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST",
                },
                "NameIDFormat": "urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress",
            },
            "idp": {
                "entityId": ISSUER,
                "singleSignOnService": {"url": "https://idp.bench.example/sso"},
                "x509cert": body,
            },
            "security": {"wantAssertionsSigned": True},
        },
        sp_validation_only=True,
    )


def _floor(xml: bytes, conn: Connection, key: xmlsec.Key, now: datetime) -> None:
    root = parse_xml(xml)
    if not schema.protocol_schema().validate(root.getroottree()):
        raise ValueError("schema")
    assertion = root.find(f"{SAML}Assertion")
    assert assertion is not None
    sig = assertion.find(f"{DS}Signature")
    assert sig is not None
    ctx = xmlsec.SignatureContext()
    ctx.register_id(assertion, "ID")
    ctx.key = key
    ctx.verify(sig)
    conditions.check_issuers(root, assertion, conn)
    conditions.check_in_response_to(root, assertion, conn, None)
    conditions.check_audience(assertion, conn)
    conditions.check_recipient(root, assertion, conn)
    conditions.check_times(assertion, conn.clock_skew, now)


def _interleaved(fns: list[Callable[[], object]], *, rounds: int, number: list[int]) -> list[Stats]:
    """Like `harness.measure` for several functions at once: each round times every
    function in turn; per-call median and p99 for each."""
    samples: list[list[float]] = [[] for _ in fns]
    for fn in fns:
        fn()
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        for _ in range(rounds):
            for index, (fn, count) in enumerate(zip(fns, number, strict=True)):
                start = time.perf_counter_ns()
                for _ in range(count):
                    fn()
                samples[index].append((time.perf_counter_ns() - start) / count)
    finally:
        if gc_was_enabled:
            gc.enable()
    stats = []
    for values in samples:
        values.sort()
        p99 = values[min(len(values) - 1, int(len(values) * 0.99))]
        stats.append(Stats(statistics.median(values), p99, rounds))
    return stats


def run(quick: bool) -> list[Comparison]:
    from onelogin.saml2.response import OneLogin_Saml2_Response

    rounds = 30 if quick else 200
    with tempfile.TemporaryDirectory() as tmp:
        xml, conn, cert_pem, at = _fixture(Path(tmp))
        b64 = base64.b64encode(xml).decode()
        now = at + timedelta(seconds=5)
        settings = _python3_saml(cert_pem)
        request = python3_saml_request(b64)
        key = trusted_certs(conn)[0].key  # the pinned public key, loaded once

        def ours() -> object:
            return validate_saml(xml, conn, now=now).attributes

        def theirs() -> object:
            response = OneLogin_Saml2_Response(settings, b64)
            if not response.is_valid(request, raise_exceptions=True):
                raise AssertionError(response.get_error())
            return response.get_attributes()

        ours()
        theirs()
        _floor(xml, conn, key, now)
        # Interleave the three round by round, so a burst of load on a shared machine
        # hits all of them alike instead of landing on one side of the ratio.
        mine, p3, floor = _interleaved(
            [ours, theirs, lambda: _floor(xml, conn, key, now)],
            rounds=rounds,
            number=[5, 2, 5],
        )
    size = len(xml)
    return [
        Comparison(
            "saml",
            "validate_saml (strict + attributes)",
            "python3-saml is_valid + get_attributes",
            mine,
            p3,
            target=0.4,
            notes=f"signed Response, {size} bytes",
            extra={"bytes": size},
        ),
        Comparison(
            "saml",
            "validate_saml (strict + attributes)",
            "floor: parse + schema + xmlsec verify + conditions",
            mine,
            floor,
            target=2.0,
            notes=f"signed Response, {size} bytes",
            extra={"bytes": size},
        ),
    ]


def main() -> int:
    results = run("--quick" in sys.argv)
    for c in results:
        met = "" if c.met is None else (" met" if c.met else " NOT MET")
        print(
            f"{c.subject} vs {c.baseline}: {c.ours.median_ms:.3f} ms vs "
            f"{c.theirs.median_ms:.3f} ms = {c.ratio:.2f}x (target ≤ {c.target}){met}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
