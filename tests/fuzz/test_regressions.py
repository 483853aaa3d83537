"""Replay what `make fuzz` found, and each target's hand-written hostile inputs.

Every file under tests/fuzz/regressions/TARGET/ (copied there by the fuzzing runner)
and every entry of a target's HOSTILE goes through that target's `check` with
TEST_LIMITS: the same invariants as while fuzzing (the exception type and reason
codes, what an accepted token may hold), and ten times the CPU bound, so that a loaded
CI machine does not flake. No atheris needed.

A finding that still fails on the current code is listed in KNOWN with what it shows,
and runs as xfail(strict=True): the suite stays green, and the entry must be removed
once the code is fixed (strict: an unexpected pass fails).
"""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tests.fuzz.harness import REGRESSIONS, TEST_LIMITS, Finding

TARGETS = ("saml", "oidc", "rules", "sample", "case")

# "TARGET/FILE" (a saved regression) or "TARGET/hostile:NAME" → what it shows. (The
# first campaign's ten were fixed by 1538b5e, 505fba5 and the commit that emptied this.)
KNOWN: dict[str, str] = {}


def _module(target: str) -> ModuleType:
    return importlib.import_module(f"tests.fuzz.{target}")


def _cases() -> Iterator[Any]:
    for target in TARGETS:
        folder = REGRESSIONS / target
        files = sorted(p for p in folder.iterdir() if p.is_file()) if folder.is_dir() else []
        sources: list[Path | str] = [*files, *_module(target).HOSTILE]
        for source in sources:
            label = source.name if isinstance(source, Path) else f"hostile:{source}"
            key = f"{target}/{label}"
            marks = []
            if key in KNOWN:
                marks.append(pytest.mark.xfail(strict=True, raises=Finding, reason=KNOWN[key]))
            yield pytest.param(target, source, id=key, marks=marks)


_WARM: set[str] = set()


@pytest.mark.parametrize(("target", "source"), list(_cases()))
def test_invariants_hold(target: str, source: Path | str) -> None:
    module = _module(target)
    if target not in _WARM:  # a cold first call (keys, caches) is not the input's cost
        _WARM.add(target)
        with contextlib.suppress(Finding):
            module.check(next(module.seeds()), TEST_LIMITS)
    data = source.read_bytes() if isinstance(source, Path) else module.HOSTILE[source]()
    module.check(data, TEST_LIMITS)


def test_every_known_finding_is_still_there() -> None:
    """A KNOWN key without its file or hostile input would hide nothing: remove it."""
    present = set()
    for target in TARGETS:
        folder = REGRESSIONS / target
        if folder.is_dir():
            present |= {f"{target}/{p.name}" for p in folder.iterdir()}
        present |= {f"{target}/hostile:{name}" for name in _module(target).HOSTILE}
    assert set(KNOWN) <= present, sorted(set(KNOWN) - present)
