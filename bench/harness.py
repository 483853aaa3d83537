"""A small benchmark harness: per-call medians, and paired turns on CPU time.

Every stage module in `bench/` exposes `run(quick: bool) -> list[Comparison]`; a
comparison measures jitprov and its baseline side by side, in the same process and run,
on the same inputs, and reports the ratio (jitprov / baseline: below 1 is faster).

Latency comparisons run in *turns* (`in_turns`): in each turn every contender does its
batch of calls, one after the other (the order reversed every other turn), timed with
the process's CPU clock (`time.process_time_ns`: the CPU the process spent, every thread
of it, not the wall time other work on the machine stretches). A turn gives one figure
per contender and one ratio; the comparison's ratio is the median of the turns' ratios
and its spread their minimum and maximum, so drift in the machine's speed hits both
sides of each ratio alike and shows in the spread rather than in one side's median.
"""

from __future__ import annotations

import gc
import shutil
import statistics
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

MIN_TURNS = 5


@dataclass(frozen=True, slots=True)
class Stats:
    """Per-call times in nanoseconds over the measured rounds (or turns)."""

    median_ns: float
    p99_ns: float
    rounds: int

    @property
    def median_ms(self) -> float:
        return self.median_ns / 1e6

    @classmethod
    def of(cls, samples: Sequence[float]) -> Stats:
        """Median and p99 (the largest, below 100 samples) of per-call samples."""
        ordered = sorted(samples)
        p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
        return cls(float(statistics.median(ordered)), float(p99), len(ordered))


def measure(
    fn: Callable[[], object], *, rounds: int = 30, number: int = 1, warmup: int = 2
) -> Stats:
    """Call `fn` `number` times per round, `rounds` rounds; per-call median and p99
    (wall time, `perf_counter_ns`)."""
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
    return Stats.of(samples)


def in_turns(
    contenders: Mapping[str, Callable[[], object]],
    *,
    turns: int,
    number: Mapping[str, int] | int = 1,
    warmup: int = 1,
    clock: Callable[[], int] = time.process_time_ns,
) -> dict[str, list[float]]:
    """Per-call CPU nanoseconds of each contender in each turn.

    Each turn calls every contender `number` times in a row (its own count when a
    mapping), the contenders one after the other, in reverse order every other turn;
    garbage collection runs between the batches, never inside one.
    """
    if turns < MIN_TURNS:
        raise ValueError(f"at least {MIN_TURNS} turns, for a median with a spread")
    counts = {n: number if isinstance(number, int) else number[n] for n in contenders}
    for _ in range(warmup):
        for fn in contenders.values():
            fn()
    out: dict[str, list[float]] = {name: [] for name in contenders}
    names = list(contenders)
    gc_was_enabled = gc.isenabled()
    try:
        for turn in range(turns):
            for name in names if turn % 2 == 0 else reversed(names):
                fn, count = contenders[name], counts[name]
                gc.collect()
                gc.disable()
                start = clock()
                for _ in range(count):
                    fn()
                out[name].append((clock() - start) / count)
                gc.enable()
    finally:
        if not gc_was_enabled:
            gc.disable()
    return out


class Background:
    """The CPU time of threads a contender starts (jitprov's SQLite store checkpoints its
    WAL in a daemon thread), read from each thread's own clock, so that it is charged to
    the contender that started it. Measuring around each call with the process's clock
    instead would charge that thread's work to whichever contender happened to be
    running meanwhile; the calls themselves are timed on the calling thread's clock
    (`time.thread_time_ns`)."""

    def __init__(self) -> None:
        self.owned: dict[str, list[threading.Thread]] = {}
        self._known = {t.ident for t in threading.enumerate()}
        self._last: dict[str, int] = {}

    def adopt(self, name: str) -> None:
        """Threads started since the last call belong to `name`."""
        new = [t for t in threading.enumerate() if t.ident not in self._known]
        self.owned.setdefault(name, []).extend(new)
        self._known.update(t.ident for t in new)
        self._last.setdefault(name, 0)
        self._last[name] = self.cpu(name)

    def cpu(self, name: str) -> int:
        total = 0
        for thread in self.owned.get(name, []):
            if thread.is_alive() and thread.ident is not None:
                try:
                    total += time.clock_gettime_ns(time.pthread_getcpuclockid(thread.ident))
                except (OSError, ProcessLookupError):  # it ended just now
                    continue
        return total

    def since(self, name: str) -> int:
        """CPU nanoseconds `name`'s threads spent since the last call (or adoption)."""
        now = self.cpu(name)
        spent, self._last[name] = max(0, now - self._last.get(name, now)), now
        return spent


def turn_stats(values: Sequence[float]) -> Stats:
    """Median over turns; the slowest turn stands in the p99 slot."""
    return Stats(float(statistics.median(values)), float(max(values)), len(values))


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
    turn_ratios: list[float] = field(default_factory=list)  # one a turn, when paired
    clock: str = "wall"  # "cpu": process CPU time; "wall": elapsed time

    @classmethod
    def paired(
        cls,
        stage: str,
        subject: str,
        baseline: str,
        ours: Sequence[float],
        theirs: Sequence[float],
        **kwargs: Any,
    ) -> Comparison:
        """A comparison from per-turn figures of both sides (the same turns, in order)."""
        ratios = [a / b for a, b in zip(ours, theirs, strict=True)]
        kwargs.setdefault("clock", "cpu")
        return cls(
            stage,
            subject,
            baseline,
            turn_stats(ours),
            turn_stats(theirs),
            turn_ratios=ratios,
            **kwargs,
        )

    @property
    def ratio(self) -> float:
        if self.turn_ratios:
            return float(statistics.median(self.turn_ratios))
        return self.ours.median_ns / self.theirs.median_ns

    @property
    def spread(self) -> tuple[float, float] | None:
        """The lowest and highest per-turn ratio, when the comparison ran in turns."""
        if not self.turn_ratios:
            return None
        return min(self.turn_ratios), max(self.turn_ratios)

    @property
    def met(self) -> bool | None:
        if self.target is None:
            return None
        return not self.invalid and self.ratio <= self.target

    def to_json(self) -> dict[str, object]:
        data = asdict(self)
        data["ratio"] = self.ratio
        data["spread"] = list(self.spread) if self.spread else None
        data["met"] = self.met
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Comparison:
        """A comparison as `to_json` wrote it (results kept from an earlier run)."""
        return cls(
            stage=data["stage"],
            subject=data["subject"],
            baseline=data["baseline"],
            ours=Stats(**data["ours"]),
            theirs=Stats(**data["theirs"]),
            target=data.get("target"),
            notes=data.get("notes", ""),
            extra=dict(data.get("extra") or {}),
            invalid=data.get("invalid", ""),
            turn_ratios=list(data.get("turn_ratios") or []),
            clock=data.get("clock", "wall"),
        )


def placeholder_certificate(path: Path) -> None:
    """A real IdP certificate at `path` for a workspace whose tokens are samples (never
    signed): the config loader checks that a certificate file holds one."""
    shutil.copyfile(
        Path(__file__).resolve().parent.parent / "examples/demo/certs/idp-test.crt", path
    )
