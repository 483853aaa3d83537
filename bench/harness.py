"""A small benchmark harness on `time.perf_counter_ns`: median of repeated rounds.

Every stage module in `bench/` exposes `run(quick: bool) -> list[Comparison]`; a
comparison measures jitprov and its baseline side by side, in the same process and run,
on the same inputs, and reports the ratio (jitprov / baseline: below 1 is faster).
"""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field


@dataclass(frozen=True, slots=True)
class Stats:
    """Per-call times in nanoseconds over the measured rounds."""

    median_ns: float
    p99_ns: float
    rounds: int

    @property
    def median_ms(self) -> float:
        return self.median_ns / 1e6


def measure(
    fn: Callable[[], object], *, rounds: int = 30, number: int = 1, warmup: int = 2
) -> Stats:
    """Call `fn` `number` times per round, `rounds` rounds; per-call median and p99."""
    for _ in range(warmup):
        fn()
    samples: list[float] = []
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        for _ in range(rounds):
            start = time.perf_counter_ns()
            for _ in range(number):
                fn()
            samples.append((time.perf_counter_ns() - start) / number)
    finally:
        if gc_was_enabled:
            gc.enable()
    samples.sort()
    p99 = samples[min(len(samples) - 1, int(len(samples) * 0.99))]
    return Stats(statistics.median(samples), p99, rounds)


@dataclass(slots=True)
class Comparison:
    """One stage: jitprov against one baseline, same inputs, same run."""

    stage: str
    subject: str
    baseline: str
    ours: Stats
    theirs: Stats
    target: float | None = None  # the ratio to stay at or under, when there is one
    notes: str = ""
    extra: dict[str, object] = field(default_factory=dict)
    invalid: str = ""  # why the measurement does not count (e.g. errors): never met

    @property
    def ratio(self) -> float:
        return self.ours.median_ns / self.theirs.median_ns

    @property
    def met(self) -> bool | None:
        if self.target is None:
            return None
        return not self.invalid and self.ratio <= self.target

    def to_json(self) -> dict[str, object]:
        data = asdict(self)
        data["ratio"] = self.ratio
        data["met"] = self.met
        return data
