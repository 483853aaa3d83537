"""Token intake from 32 threads at once gives every token the verdict it gets alone.

A server validates tokens in a pool of threads. A shared lxml parser and one lazily
compiled XML schema used by every thread gave, under load, `XMLSchemaParseError:
Internal error`, valid tokens refused as `bad-signature` ("Namespace prefix … not
defined") and, once in a while, a crash. Each thread now has its own parser and
schemas; this test runs valid and invalid tokens of every form (signed, encrypted,
tampered, wrapped, expired, hostile, OIDC) through fresh threads, many at once, and
compares every verdict with the single-threaded one.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from lxml import etree

from engine.intake import read_token
from engine.token import TokenRejected
from tests.engine import oidc_fixtures as of

if str(Path(__file__).parent) not in sys.path:  # tests/engine is not an importable package
    sys.path.insert(0, str(Path(__file__).parent))
from saml_fixtures import LATER, SP_CERT, connection, find, make_token

THREADS = 32
ROUNDS = 20


def _verdict(raw: bytes, conn: Any, now: datetime) -> str:
    try:
        token = read_token(raw, conn, now=now)
    except TokenRejected as exc:
        return f"rejected {exc.reason}"
    return f"accepted {token.name_id} {sorted(token.attributes)}"


def _tampered(root: etree._Element) -> None:
    find(root, ".//saml:AttributeValue").text = "tampered"


def _wrapped(root: etree._Element) -> None:
    assertion = find(root, "saml:Assertion")
    evil = etree.fromstring(etree.tostring(assertion))
    evil.set("ID", "_evil")
    root.append(evil)


def _cases(tmp_path: Path) -> list[tuple[str, bytes, Any, datetime]]:
    conn = connection()
    key = of.rsa_key()
    oidc = of.connection(of.write_jwks(tmp_path, of.public_jwk(key)))
    oidc_now = datetime.fromtimestamp(of.NOW_TS, UTC)
    saml: list[tuple[str, Callable[[], bytes]]] = [
        ("signed assertion", lambda: make_token()),
        ("signed response", lambda: make_token(signing="response")),
        ("signed both, base64", lambda: make_token("base64", signing="both")),
        ("deflated", lambda: make_token("deflate")),
        ("encrypted", lambda: make_token(encrypt_for=SP_CERT)),
        ("tampered", lambda: make_token(after_sign=_tampered)),
        ("wrapped", lambda: make_token(after_sign=_wrapped)),
        ("unsigned", lambda: make_token(signing="none")),
        ("garbage", lambda: b"<samlp:Response xmlns:samlp='urn:x'>"),
        ("dtd", lambda: b"<!DOCTYPE x [<!ENTITY a 'b'>]><x>&a;</x>"),
    ]
    cases = [(name, build(), conn, LATER) for name, build in saml]
    cases.append(("expired", make_token(), conn, datetime(2030, 1, 1, tzinfo=UTC)))
    cases += [
        ("oidc valid", of.sign(of.claims(), key), oidc, oidc_now),
        ("oidc wrong audience", of.sign(of.claims(aud="x"), key), oidc, oidc_now),
        ("oidc bad signature", of.sign(of.claims(), of.rsa_key("other")), oidc, oidc_now),
        ("oidc surrogate", of.sign(b'{"sub": "\\ud800"}', key), oidc, oidc_now),
    ]
    return cases


def compare(folder: Path) -> list[tuple[str, str, str]]:
    """Verdicts from 32 threads first (nothing compiled yet: every thread's first token
    starts at once, so each builds its parser and schema while others validate), then
    alone in this thread; the tokens whose two verdicts differ."""
    cases = _cases(folder)
    work = [case for case in cases for _ in range(ROUNDS)]
    random.Random(11).shuffle(work)
    start = threading.Barrier(THREADS)

    def first(case: tuple[str, bytes, Any, datetime]) -> tuple[str, str]:
        start.wait(timeout=60)
        return case[0], _verdict(*case[1:])

    def run(case: tuple[str, bytes, Any, datetime]) -> tuple[str, str]:
        return case[0], _verdict(*case[1:])

    with ThreadPoolExecutor(max_workers=THREADS) as pool:
        threaded = list(pool.map(first, work[:THREADS])) + list(pool.map(run, work[THREADS:]))
    alone = {name: _verdict(raw, conn, now) for name, raw, conn, now in cases}
    assert alone["signed assertion"].startswith("accepted")
    assert alone["encrypted"].startswith("accepted")
    assert alone["tampered"] == "rejected bad-signature"
    return [(name, got, alone[name]) for name, got in threaded if got != alone[name]]


def _fresh_python(*args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    """`python ARGS` in a fresh process (nothing compiled or cached yet), from the root."""
    return subprocess.run(
        [sys.executable, *args],
        cwd=Path(__file__).resolve().parents[2],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_32_threads_give_every_token_its_single_threaded_verdict(tmp_path: Path) -> None:
    """In a fresh process, so that the threads meet the intake before anything in it
    was compiled or cached."""
    done = _fresh_python("-m", "tests.engine.test_intake_threads", str(tmp_path), timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout) == []


WARM_ALL_AT_ONCE = """
import sys, threading
from engine.saml import schema
barrier = threading.Barrier(16)
failures = []
def warm():
    barrier.wait()
    try:
        schema.warm()
        schema.protocol_schema()
    except Exception as exc:
        failures.append(repr(exc))
threads = [threading.Thread(target=warm) for _ in range(16)]
for t in threads: t.start()
for t in threads: t.join()
sys.exit(f"{len(failures)} threads could not compile: {failures[0]}" if failures else 0)
"""


def test_threads_compiling_their_schemas_at_once_never_break_the_process() -> None:
    """The first schema compile of a process sets up libxml2's built-in types; 16 threads
    doing it at once broke about one fresh process in six for good ("the given type is
    not a built-in type"): every later sign-in of that server worker was a 500."""
    for _ in range(12):
        done = _fresh_python("-c", WARM_ALL_AT_ONCE, timeout=120)
        assert done.returncode == 0, done.stderr[-2000:]


if __name__ == "__main__":
    print(json.dumps(compare(Path(sys.argv[1]))))
