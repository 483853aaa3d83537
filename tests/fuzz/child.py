"""One fuzz target under atheris, in its own process (the runner, tests/fuzz/__main__.py,
starts it): `python -m tests.fuzz.child TARGET [libFuzzer flags] CORPUS SEEDS...`.

jitprov's packages (and the pure-Python parsers each target leans on) are imported under
atheris' coverage instrumentation, so nothing here may import them first.

Instrumented code runs slower, so a cost found here is measured again in a plain
process before it counts: a `tests.fuzz.confirm` worker, started first, which also
replays the saved regressions and the target's hand-written hostile inputs. The
signature of each that still fails is a known cause, skipped while fuzzing, so that a
run reports only new causes (test_regressions.py keeps the known ones in view).
"""

from __future__ import annotations

import contextlib
import importlib
import itertools
import struct
import subprocess
import sys
from typing import IO

# Packages whose Python code gives each target its coverage feedback.
INSTRUMENT = {
    "saml": ("engine", "tomllib"),
    "oidc": ("engine", "tomllib"),
    "rules": ("rules", "pyparsing"),
    "sample": ("engine", "tomllib"),
    "case": ("engine", "tomllib"),
}


class Confirmer:
    """The plain worker process: `confirm(data)` is the signature of the finding `data`
    gives there (None when it gives none)."""

    def __init__(self, name: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.fuzz.confirm", name],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        assert self.process.stdin is not None and self.process.stdout is not None
        self.send: IO[bytes] = self.process.stdin
        self.receive: IO[bytes] = self.process.stdout
        self.known: set[str] = set()
        for line in self.receive:
            text = line.decode("utf-8", "replace").rstrip("\n")
            if text == "ready":
                break
            signature, _, label = text.partition("\t")
            self.known.add(signature)
            sys.stderr.write(f"INFO: known cause {signature} ({label})\n")
        else:
            raise SystemExit("the tests.fuzz.confirm worker did not start")

    def confirm(self, data: bytes) -> str | None:
        self.send.write(struct.pack(">Q", len(data)) + data)
        self.send.flush()
        answer = self.receive.readline().decode("utf-8", "replace").rstrip("\n")
        return answer or None


def main(argv: list[str]) -> None:
    name, flags = argv[1], argv[2:]
    import atheris

    confirmer = Confirmer(name)
    already = [p for p in INSTRUMENT[name] if p in sys.modules]
    if already:
        sys.stderr.write(f"WARNING: imported before instrumenting: {', '.join(already)}\n")
    with atheris.instrument_imports(include=list(INSTRUMENT[name])):
        module = importlib.import_module(f"tests.fuzz.{name}")
    from tests.fuzz.harness import Finding

    # Warm up: the first calls load keys, fill caches and import lazily, and must not be
    # what a cost finding measures. The first seeds are each target's richest tokens.
    for data in itertools.islice(module.seeds(), 8):
        with contextlib.suppress(Exception):
            module.check(data)

    def test_one_input(data: bytes) -> None:
        try:
            module.check(data)
        except Finding as finding:
            signature: str | None = finding.signature
            if finding.kind in ("cpu", "memory"):
                signature = confirmer.confirm(data)  # None: only instrumentation's cost
            if signature is not None and signature not in confirmer.known:
                raise

    mutator = getattr(module, "mutate", None)
    atheris.Setup([argv[0], *flags], test_one_input, custom_mutator=mutator)
    atheris.Fuzz()


if __name__ == "__main__":
    main(sys.argv)
