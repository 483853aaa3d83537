"""The plain (uninstrumented) worker of a fuzz child (tests/fuzz/child.py):
`python -m tests.fuzz.confirm TARGET`.

First it warms the target up and replays the saved crash regressions and the target's
hand-written hostile inputs, printing `SIGNATURE<TAB>LABEL` for each that still fails,
then `ready`. Then, for each input on stdin (an 8-byte big-endian length, the bytes), it
prints the signature of the finding the input gives, or an empty line.
"""

from __future__ import annotations

import contextlib
import importlib
import itertools
import struct
import sys

from tests.fuzz.harness import REGRESSIONS, Finding


def main(name: str) -> None:
    module = importlib.import_module(f"tests.fuzz.{name}")
    out = sys.stdout
    for data in itertools.islice(module.seeds(), 8):
        with contextlib.suppress(Exception):
            module.check(data)
    replays = [(p.name, p.read_bytes) for p in sorted((REGRESSIONS / name).glob("crash-*"))]
    replays += list(module.HOSTILE.items())
    for label, read in replays:
        try:
            module.check(read())
        except Finding as finding:
            out.write(f"{finding.signature}\t{label}\n")
        except Exception as exc:  # the harness's own bug: say so, and keep going
            sys.stderr.write(f"WARNING: {label}: {type(exc).__name__}: {exc}\n")
    out.write("ready\n")
    out.flush()
    source = sys.stdin.buffer
    while header := source.read(8):
        (size,) = struct.unpack(">Q", header)
        data = source.read(size)
        try:
            module.check(data)
        except Finding as finding:
            out.write(f"{finding.signature}\n")
        except Exception as exc:  # the harness's own bug: a finding, so that it is seen
            out.write(f"{name}:harness:{type(exc).__name__}\n")
        else:
            out.write("\n")
        out.flush()


if __name__ == "__main__":
    main(sys.argv[1])
