"""The bench's floors are independent of jitprov, and they agree with it.

A floor (bench/floors) is what jitprov is measured against: if it imported jitprov's own
code, the ratio would measure nothing. So every floor module is parsed here and must not
import `rules`, `engine` or `tui` (nor a `bench` module outside bench/floors, which might),
and importing all of them in a fresh process must load none of jitprov's modules. Then
each floor must give jitprov's answer on the bench's kind of input, or the ratio would
compare different work.
"""

from __future__ import annotations

import ast
import base64
import json
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FLOORS = ROOT / "bench" / "floors"
FORBIDDEN = ("rules", "engine", "tui")


def _imported(path: Path) -> list[str]:
    """Every module a file imports, relative imports resolved against bench.floors;
    `importlib.import_module("x")` and `__import__("x")` with a literal count too."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = "bench.floors"
    found: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                prefix = ".".join(base)
                if node.module:
                    found.append(f"{prefix}.{node.module}")
                else:
                    found += [f"{prefix}.{alias.name}" for alias in node.names]
            else:
                found.append(node.module or "")
        elif isinstance(node, ast.Call):
            name = ast.unparse(node.func)
            if name in ("importlib.import_module", "import_module", "__import__") and node.args:
                first = node.args[0]
                if isinstance(first, ast.Constant) and isinstance(first.value, str):
                    found.append(first.value)
                else:
                    found.append("<dynamic import>")
    return found


def _allowed(module: str) -> bool:
    top = module.split(".")[0]
    if top in FORBIDDEN or module == "<dynamic import>":
        return False
    if top == "bench":
        return module in ("bench", "bench.floors") or module.startswith("bench.floors.")
    return True


def test_there_are_floors() -> None:
    names = {p.stem for p in FLOORS.glob("*.py")}
    assert {"saml", "oidc", "rules", "store", "pipeline"} <= names


@pytest.mark.parametrize("path", sorted(FLOORS.glob("*.py")), ids=lambda p: p.name)
def test_a_floor_imports_nothing_of_jitprov(path: Path) -> None:
    bad = [m for m in _imported(path) if not _allowed(m)]
    assert bad == [], f"{path.name} imports {bad}: a floor must not use jitprov's code"


def test_the_import_check_sees_every_form(tmp_path: Path) -> None:
    sample = tmp_path / "x.py"
    sample.write_text(
        "import engine.saml\nfrom rules import compile_rules\nfrom .. import bench_saml\n"
        "import importlib\nimportlib.import_module('tui.cli')\nfrom . import saml\n"
    )
    found = _imported(sample)
    assert [m for m in found if not _allowed(m)] == [
        "engine.saml",
        "rules",
        "bench.bench_saml",
        "tui.cli",
    ]


PROBE = """
import importlib, pkgutil, sys
import bench.floors
for info in pkgutil.iter_modules(bench.floors.__path__, "bench.floors."):
    importlib.import_module(info.name)
ours = sorted(
    m for m in sys.modules
    if m.split(".")[0] in {"rules", "engine", "tui"}
    or (m.startswith("bench.") and not m.startswith("bench.floors"))
)
print(",".join(ours))
"""


def test_importing_the_floors_loads_none_of_jitprov() -> None:
    done = subprocess.run(
        [sys.executable, "-c", PROBE],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
        timeout=120,
    )
    assert done.stdout.strip() == ""


# ------------------------------------------------------------------ they agree with jitprov


def test_the_saml_floor_reads_what_jitprov_reads(tmp_path: Path) -> None:
    from bench.bench_saml import _fixture, floor_for
    from bench.floors.saml import Rejected
    from engine.saml import validate_saml

    xml, conn, cert_pem, at = _fixture(tmp_path)
    now = at + timedelta(seconds=5)
    floor = floor_for(cert_pem, conn)
    token, found = validate_saml(xml, conn, now=now), floor.validate(xml, now)
    assert found.subject == token.name_id
    assert found.attributes == token.attributes
    assert found.token_id == token.token_id
    assert found.expires_at == token.expires_at
    assert found.issuer == token.issuer
    # and it refuses what it must
    tampered = xml.replace(b"value-3-", b"value-9-", 1)
    assert tampered != xml
    with pytest.raises(Rejected) as refused:
        floor.validate(tampered, now)
    assert refused.value.reason == "bad-signature"
    with pytest.raises(Rejected) as refused:
        floor.validate(xml, now + timedelta(minutes=10))
    assert refused.value.reason == "expired"
    with pytest.raises(Rejected) as refused:
        floor.validate(xml, now, request_id="_another")
    assert refused.value.reason == "wrong-request"
    start = xml.index(b"<samlp:Response")
    doctype = xml[:start] + b'<!DOCTYPE r [<!ENTITY e "x">]>\n' + xml[start:]
    with pytest.raises(Rejected) as refused:
        floor.validate(doctype, now)
    assert refused.value.reason == "dtd"


def test_the_saml_floor_refuses_a_wrapped_assertion(tmp_path: Path) -> None:
    from lxml import etree

    from bench.bench_saml import _fixture, floor_for
    from bench.floors.saml import SAML, Rejected

    xml, conn, cert_pem, at = _fixture(tmp_path)
    floor = floor_for(cert_pem, conn)
    root = etree.fromstring(xml)
    signed = root.find(f"{SAML}Assertion")
    assert signed is not None
    evil = etree.fromstring(etree.tostring(signed))
    evil.set("ID", "_evil")
    for signature in evil.iter("{http://www.w3.org/2000/09/xmldsig#}Signature"):
        signature.getparent().remove(signature)
    name_id = evil.find(f"{SAML}Subject/{SAML}NameID")
    assert name_id is not None
    name_id.text = "admin@example.com"
    root.insert(0, evil)  # a second, unsigned Assertion before the signed one
    with pytest.raises(Rejected):
        floor.validate(etree.tostring(root), at + timedelta(seconds=5))


def test_the_oidc_floor_gives_jitprovs_claims(tmp_path: Path) -> None:
    from bench.bench_oidc import AUDIENCE, ISSUER, NONCE, mint_tokens
    from bench.floors.oidc import OidcFloor, Rejected
    from engine.config import Connection
    from engine.oidc import validate_id_token

    at = int(time.time())
    jwks, tokens = mint_tokens(3, at)
    (tmp_path / "jwks.json").write_text(json.dumps(jwks))
    (tmp_path / "r.rules").write_text("username = subject\n")
    conn = Connection(
        id="o",
        protocol="oidc",
        issuer=ISSUER,
        audience=AUDIENCE,
        rules=tmp_path / "r.rules",
        jwks=tmp_path / "jwks.json",
    )
    floor = OidcFloor(jwks, issuer=ISSUER, audience=AUDIENCE)
    now = datetime.fromtimestamp(at + 5, UTC)
    for text in tokens:
        token = validate_id_token(text.encode(), conn, now=now, nonce=NONCE)
        claims = floor.validate(text, now, NONCE)
        assert claims == token.claims
        assert claims["sub"] == token.name_id
    with pytest.raises(Rejected) as refused:
        floor.validate(tokens[0], now, "another nonce")
    assert refused.value.reason == "wrong-nonce"
    with pytest.raises(Rejected) as refused:
        floor.validate(tokens[0], now + timedelta(hours=1), NONCE)
    assert refused.value.reason == "expired"
    head, payload, signature = tokens[0].split(".")
    forged = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    forged["sub"] = "someone-else"
    body = base64.urlsafe_b64encode(json.dumps(forged).encode()).rstrip(b"=").decode()
    with pytest.raises(Rejected) as refused:
        floor.validate(f"{head}.{body}.{signature}", now, NONCE)
    assert refused.value.reason == "bad-signature"
    other = OidcFloor({"keys": [jwks["keys"][0]]}, issuer=ISSUER, audience=AUDIENCE)
    with pytest.raises(Rejected) as refused:
        other.validate(tokens[0], now, NONCE)
    assert refused.value.reason == "untrusted-signer"


@pytest.mark.parametrize("connection", ["okta", "entra", "shib"])
def test_the_rules_floors_decide_as_the_demo_rules_do(connection: str) -> None:
    from bench.bench_rules import agree, demo_inputs
    from bench.floors import rules as floors

    evaluate, inputs = demo_inputs(connection)
    assert len(inputs) >= 4  # every demo sample of the connection, created and stored
    agree(evaluate, floors.DEMO[connection], inputs)


def test_the_rules_floor_decides_as_the_30_statements_do() -> None:
    from bench.bench_rules import CONTEXT, FIELDS, REALISTIC, STORED_USER, TOKEN, agree
    from bench.floors import rules as floors
    from rules import compile_rules

    compiled = compile_rules(REALISTIC, FIELDS).rules
    assert compiled is not None
    variants = [
        TOKEN,
        {**TOKEN, "employeeType": ["contractor"]},
        {**TOKEN, "email": ["ann@elsewhere.example"]},
        {k: v for k, v in TOKEN.items() if k not in ("email", "displayName", "department")},
        {
            **TOKEN,
            "email": [],
            "urn:oid:0.9.2342.19200300.100.1.3": ["Bo@Example.com"],
            "department": ["Sales"],
            "memberOf": [r"CN=Lee\, Ann,OU=Apps,DC=x", 'CN="Q, R",OU=apps,DC=x', "OU=Apps,DC=x"],
            "title": ["engineer"],
        },
    ]
    stored = [None, STORED_USER, {"username": "x", "display_name": ""}]
    inputs = [(bag, CONTEXT, user) for bag in variants for user in stored]
    agree(compiled.evaluate, floors.realistic, inputs)


def test_the_rules_floor_decides_as_the_end_to_end_rules_do() -> None:
    from bench.bench_end_to_end import RULES
    from bench.bench_rules import CONTEXT, agree
    from bench.floors import rules as floors
    from rules import compile_rules

    compiled = compile_rules(RULES, {"department": "text"}).rules
    assert compiled is not None
    bags = [
        {
            "email": ["User1@Example.com"],
            "givenName": ["Test"],
            "sn": ["User 1"],
            "department": ["Sales"],
            "memberOf": ["CN=Team1,OU=Apps,DC=x", "CN=P,OU=Devices,DC=x", r"CN=A\2Cb,OU=Apps"],
        },
        {"email": ["x@y.z"]},
        {"givenName": ["No Mail"]},
    ]
    inputs = [(bag, CONTEXT, user) for bag in bags for user in (None, {"username": "u"})]
    agree(compiled.evaluate, floors.end_to_end, inputs)


def test_the_floors_together_leave_jitprovs_rows_and_the_pipeline_its_outcomes(
    tmp_path: Path,
) -> None:
    """SAML floor + rules floor + store floor on the end to end stage's tokens leave the
    very rows jitprov's apply leaves; python3-saml's pipeline reaches the same outcomes."""
    import shutil

    from bench.bench_end_to_end import (
        AUDIENCE,
        ISSUER,
        RECIPIENT,
        dump,
        floors_sum,
        mint_tokens,
        workspace,
    )
    from bench.floors.pipeline import Pipeline
    from engine.config import load_config
    from engine.provision import Provisioner

    conn, key_pem, cert_pem = workspace(tmp_path)
    at = datetime.now(UTC).replace(microsecond=0)
    tokens = mint_tokens(conn, key_pem, cert_pem, 12, at, "_t")
    config = load_config(tmp_path / "jitprov.toml")
    provisioner = Provisioner(config)
    provisioner.store()
    provisioner.close()
    shutil.copy(tmp_path / "jitprov.db", tmp_path / "floors.db")
    now = at + timedelta(seconds=5)
    floors, close = floors_sum(conn, cert_pem, tmp_path / "floors.db", now)
    pipeline = Pipeline(
        cert_pem, issuer=ISSUER, audience=AUDIENCE, recipient=RECIPIENT, db=tmp_path / "peer.db"
    )
    provisioner = Provisioner(config)
    try:
        for raw in tokens:
            ours = provisioner.apply("bench", raw, now=now).outcome
            assert floors(raw) == ours
            assert pipeline.sign_in(raw.decode()) == ours
    finally:
        provisioner.close()
        close()
    mine, theirs = dump(tmp_path / "jitprov.db"), dump(tmp_path / "floors.db")
    for table in mine:
        assert mine[table] == theirs[table], f"table {table} differs"
    assert {row[4] for row in mine["audit"]} == {"created", "updated"}
