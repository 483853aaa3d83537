"""Fuzz target `sample`: TOML bytes through the sample reader (engine/sample.py).

`load_sample(data, connection)` (the raw-bytes path), and, for bytes intake takes for
a sample, `read_token(data, connection, allow_samples=True)` (intake parses the TOML
once and hands the table over), on the engine tests' saml2 connection.

Invariants: the only exception is TokenRejected — from `load_sample`, `malformed` or
`wrong-issuer` (engine/sample.py's documented results); from `read_token`, a
product.md §2 code; both paths give the same token or the same reason; an accepted
sample keeps product.md §2's promises for values (no NUL, no lone surrogate: no store
can hold them; no empty value; a subject); each call within 50 ms of CPU and 64 MiB.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator

from engine.config import Connection
from engine.intake import detect_form, read_token
from engine.sample import load_sample
from engine.token import Token, TokenRejected
from tests.engine import saml_fixtures as fx
from tests.fuzz.harness import (
    FUZZ_LIMITS,
    ROOT,
    Finding,
    Limits,
    check_rejected,
    check_token,
    run,
)

NAME = "sample"
NOW = fx.LATER
SAMPLE_REASONS = ("malformed", "wrong-issuer")


@functools.cache
def connection() -> Connection:
    return fx.connection()


def check(data: bytes, limits: Limits = FUZZ_LIMITS) -> None:
    """Read `data` as a sample both ways; raise Finding when an invariant breaks."""
    conn = connection()
    direct = run(
        NAME,
        "load_sample",
        lambda: load_sample(data, conn),
        limits=limits,
        allowed=(TokenRejected,),
        key=lambda c: f"load_sample:{getattr(c.error, 'reason', 'accepted')}",
    )
    if isinstance(direct.error, TokenRejected):
        check_rejected(NAME, direct.error)
        if direct.error.reason not in SAMPLE_REASONS:
            raise Finding(
                NAME, "reason", f"load_sample rejected with {direct.error.reason}", "load"
            )
    else:
        check_token(NAME, direct.value, conn, "sample")
    if detect_form(data) != "sample":
        return
    intake = run(
        NAME,
        "read_token",
        lambda: read_token(data, conn, now=NOW, allow_samples=True),
        limits=limits,
        allowed=(TokenRejected,),
        key=lambda c: f"read_token:{getattr(c.error, 'reason', 'accepted')}",
    )
    if isinstance(intake.error, TokenRejected):
        check_rejected(NAME, intake.error)
    else:
        check_token(NAME, intake.value, conn, "sample")
    if _outcome(direct.value, direct.error) != _outcome(intake.value, intake.error):
        raise Finding(
            NAME,
            "differential",
            f"load_sample gives {_outcome(direct.value, direct.error)}, read_token gives "
            f"{_outcome(intake.value, intake.error)}",
            "paths",
        )


def _outcome(token: Token | None, error: Exception | None) -> object:
    return getattr(error, "reason", None) if error is not None else token


# ----------------------------------------------------------------- seeds and hostile


def seeds() -> Iterator[bytes]:
    """The demo's and the engine tests' samples, the README's example, HOSTILE."""
    for path in sorted((ROOT / "examples" / "demo" / "samples").glob("*.toml")):
        yield path.read_bytes()
    for path in sorted((ROOT / "tests" / "engine" / "data").rglob("*.toml")):
        if not path.name.endswith(".case.toml") and path.name != "jitprov.toml":
            yield path.read_bytes()
    yield (
        b'subject = "jdoe@example.com"\n'
        b'subject_format = "urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress"\n'
        b'issuer = "https://idp.example.org/saml"\n'
        b'authn_context = "urn:oasis:names:tc:SAML:2.0:ac:classes:PasswordProtectedTransport"\n'
        b'token_id = "sample-1"\n'
        b"[attributes]\n"
        b'email = "jdoe@example.com"\n'
        b'memberOf = ["CN=eng,OU=Apps,DC=example,DC=com", "CN=vpn,OU=Net,DC=example,DC=com"]\n'
        b'level = 3.50\nvip = true\ncount = 12\nempty = ""\n'
        b'[attributes.address]\ncountry = "NL"\n'
    )
    for make in HOSTILE.values():
        yield make()


HOSTILE: dict[str, Callable[[], bytes]] = {
    "nul-subject": lambda: b'subject = "a\\u0000b"\n',
    "nul-attribute": lambda: b'subject = "a"\n[attributes]\nx = "v\\u0000"\n',
    "nul-attribute-name": lambda: b'subject = "a"\n[attributes]\n"x\\u0000" = "v"\n',
    "deep-tables": lambda: (
        b'subject = "a"\n[attributes]\nx = ' + b"{a=" * 2000 + b"1" + b"}" * 2000
    ),
    "deep-arrays": lambda: b'subject = "a"\n[attributes]\nx = ' + b"[" * 2000 + b"]" * 2000,
    "huge-number": lambda: b'subject = "a"\n[attributes]\nx = 1e999999\n',
    "long-decimal": lambda: b'subject = "a"\n[attributes]\nx = 0.' + b"1" * 4000 + b"\n",
    "many-keys": lambda: (
        b'subject = "a"\n[attributes]\n' + b"".join(b"k%d = %d\n" % (i, i) for i in range(20000))
    ),
    "dotted-key": lambda: b'subject = "a"\n[attributes]\nx' + b".a" * 6000 + b" = 1\n",
    "bom-and-blank": lambda: b'\xef\xbb\xbf\n  subject = "a"\n',
}
