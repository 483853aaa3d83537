"""Fuzz target `case`: TOML bytes as a rule test case (`*.case.toml`).

The bytes are written as `tests/okta/fuzz.case.toml` in a private copy of the demo
workspace and read with `load_case(path, config)`, as `jitprov test` reads a case
(engine/cases/runner.py), so the demo's token files and connections resolve.

Invariants: the only exception is CaseError (engine/cases/model.py: "never a
traceback"); a case that loads names a known connection, a zoned `at`, an outcome and
reason from the spec's lists; an inline `[sample]` is handed on as TOML text that reads
back as the same table; each call within 50 ms of CPU and 64 MiB.
"""

from __future__ import annotations

import atexit
import functools
import math
import shutil
import tempfile
import tomllib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from engine.cases.model import Case, CaseError, load_case
from engine.config import Config, load_config
from engine.result import OUTCOMES
from tests.fuzz.harness import FUZZ_LIMITS, ROOT, SPEC_REASONS, Finding, Limits, run

NAME = "case"
DEMO = ROOT / "examples" / "demo"


@functools.cache
def workspace() -> tuple[Config, Path]:
    """The config of a private copy of the demo workspace (removed at exit), and where
    the case file goes."""
    folder = Path(tempfile.mkdtemp(prefix="jitprov-fuzz-case-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    copy = folder / "demo"
    shutil.copytree(DEMO, copy, ignore=shutil.ignore_patterns("*.db", "*.db-*", "*.lock"))
    return load_config(copy / "jitprov.toml"), copy / "tests" / "okta" / "fuzz.case.toml"


def check(data: bytes, limits: Limits = FUZZ_LIMITS) -> None:
    """Load `data` as a case file; raise Finding when an invariant breaks."""
    config, path = workspace()
    path.write_bytes(data)
    loaded = run(
        NAME,
        "load_case",
        lambda: load_case(path, config),
        limits=limits,
        allowed=(CaseError,),
        key=lambda c: "load_case:error" if c.error else "load_case:loaded",
    )
    if loaded.error is not None:
        message = str(loaded.error)
        if not message.startswith(str(path)):
            raise Finding(NAME, "error", f"a CaseError not naming the file: {message}", "path")
        return
    case: Case = loaded.value

    def fail(key: str, detail: str) -> Finding:
        return Finding(NAME, "loaded", detail, key)

    if case.connection not in config.connections:
        raise fail("connection", f"unknown connection {case.connection!r} loaded")
    if case.at is not None and case.at.utcoffset() is None:
        raise fail("at", f"at {case.at} without a zone")
    if case.expect is not None:
        if case.expect.outcome not in OUTCOMES:
            raise fail("outcome", f"outcome {case.expect.outcome!r}")
        if case.expect.reason is not None and case.expect.reason not in SPEC_REASONS:
            raise fail("reason", f"reason {case.expect.reason!r} is not a §2 code")
    # As load_case reads it (read_text: universal newlines, so a lone CR is a newline).
    table = tomllib.loads(path.read_text(encoding="utf-8")).get("sample")
    if table is not None:
        back = tomllib.loads(case.token.decode("utf-8"))
        if _plain(back) != _plain(table):
            raise fail("sample-text", f"the inline sample reads back as {back!r}, not {table!r}")


def _plain(value: Any) -> Any:
    """`value` with NaN made comparable (NaN != NaN)."""
    if isinstance(value, float) and math.isnan(value):
        return "NaN"
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


# ----------------------------------------------------------------- seeds and hostile


def seeds() -> Iterator[bytes]:
    """The demo's and the engine tests' case files, and HOSTILE."""
    for folder in (DEMO / "tests", ROOT / "tests" / "engine" / "data" / "cases"):
        for path in sorted(folder.rglob("*.case.toml")):
            yield path.read_bytes()
    for make in HOSTILE.values():
        yield make()


HOSTILE: dict[str, Callable[[], bytes]] = {
    "sample-odd-keys": lambda: (
        b'connection = "okta"\nunsigned = true\n[sample]\nsubject = "a"\n'
        b'[sample.attributes]\n"a\\"b" = "x"\n"\\u007f" = ["\\u007f", "\\ud7ff"]\n'
        b"n = nan\ni = -inf\nd = 1979-05-27T07:32:00.999999-07:00\nt = 07:32:00\n"
    ),
    "at-forms": lambda: (
        b'connection = "okta"\ntoken = "../../samples/okta-sales.toml"\nat = "2024-W01"\n'
    ),
    "at-local": lambda: (
        b'connection = "okta"\ntoken = "../../samples/okta-sales.toml"\nat = 2024-05-01T12:00:00\n'
    ),
    "token-is-a-folder": lambda: b'connection = "okta"\ntoken = ".."\n',
    "token-nul-path": lambda: b'connection = "okta"\ntoken = "\\u0000"\n',
    "given-weird": lambda: (
        b'connection = "okta"\ntoken = "../../samples/okta-sales.toml"\n'
        b'[given.user]\nlocal = {roles = ["x"]}\nvip = 1\n[[given.accounts]]\nusername = 1\n'
    ),
    "dotted-key": lambda: b'connection = "okta"\n' + b"x" + b".a" * 6000 + b" = 1\n",
    "expect-user-types": lambda: (
        b'connection = "okta"\ntoken = "../../samples/okta-sales.toml"\n[expect]\n'
        b'outcome = "created"\n[expect.user]\nactive = ""\nroles = "x"\n'
    ),
}
