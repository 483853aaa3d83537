"""Adversarial stage: what the worst hostile tokens cost intake, beside a valid token.

product.md §2 bounds what a token may cost before its signature is verified: 50 ms of CPU
and 64 MiB of memory for anything up to `max_token_bytes`. `bench.hostile` builds the
family (transform, signature, attribute, value, namespace and EncryptedKey floods, deep
nesting, huge numbers, claim and string floods, giant claims), each as large as the size
limit allows and, where a bound decides, once just inside it (the worst token that
reaches the signature check) and once past it.

Each token is measured in a fresh process, after one valid token warmed it up, through
the whole of `read_token` (so the figure includes the signature check, and bounds what
comes before it from above): CPU time (`time.process_time`, median of the rounds) and
the peak resident memory the token added (Linux's VmHWM, reset before the token through
/proc/self/clear_refs). The baseline of each row is the valid token of its protocol,
measured the same way in the same run.

Run: `python -m bench.bench_adversarial [--quick]`.
"""

from __future__ import annotations

import contextlib
import json
import pickle
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from bench.harness import Comparison, Stats

CPU_BOUND_MS = 50.0
MEMORY_BOUND_MIB = 64.0


@dataclass(frozen=True, slots=True)
class Cost:
    """One token's cost: CPU per round, peak memory added, and intake's answer."""

    cpu_ms: list[float]
    peak_mib: float
    answer: str


def _status(field: str) -> int:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith(field):
                return int(line.split()[1])  # kB
    raise RuntimeError(f"no {field} in /proc/self/status")


def _child(family: Path, name: str, rounds: int) -> None:
    """In a fresh process: warm up on the valid token, then measure `name`."""
    from engine.intake import read_token
    from engine.token import TokenRejected

    tokens = pickle.loads(family.read_bytes())
    chosen = next(t for t in tokens if t.name == name)
    now = pickle.loads((family.parent / "now.pickle").read_bytes())

    def once() -> str:
        try:
            read_token(chosen.raw, chosen.connection, now=now)
        except TokenRejected as exc:
            return exc.reason
        return "accepted"

    for warm in (t for t in tokens if t.reason is None):  # the valid token of each protocol
        with contextlib.suppress(TokenRejected):
            read_token(warm.raw, warm.connection, now=now)
    with open("/proc/self/clear_refs", "w", encoding="ascii") as refs:
        refs.write("5")  # reset VmHWM to the current resident size
    before = _status("VmRSS:")
    started = time.process_time()
    answer = once()
    cpu = [(time.process_time() - started) * 1000]
    peak = (_status("VmHWM:") - before) / 1024
    for _ in range(rounds - 1):
        started = time.process_time()
        once()
        cpu.append((time.process_time() - started) * 1000)
    sys.stdout.write(json.dumps({"cpu_ms": cpu, "peak_mib": peak, "answer": answer}))


def _measure(family: Path, name: str, rounds: int) -> Cost:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.bench_adversarial",
            "--child",
            str(family),
            name,
            str(rounds),
        ],
        check=True,
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parent.parent,
    ).stdout
    return Cost(**json.loads(out))


def _stats(cost: Cost) -> Stats:
    samples = sorted(cost.cpu_ms)
    return Stats(statistics.median(samples) * 1e6, samples[-1] * 1e6, len(samples))


def run(quick: bool) -> list[Comparison]:
    from bench.hostile import NOW, hostile_tokens

    rounds = 3 if quick else 7
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        tokens = hostile_tokens(folder)
        family = folder / "family.pickle"
        family.write_bytes(pickle.dumps(tokens))
        (folder / "now.pickle").write_bytes(pickle.dumps(NOW))
        costs = {token.name: _measure(family, token.name, rounds) for token in tokens}
    valid = {t.connection.protocol: t.name for t in tokens if t.reason is None}
    results = []
    for token in tokens:
        if token.reason is None:
            continue
        cost, base = costs[token.name], costs[valid[token.connection.protocol]]
        cpu = statistics.median(cost.cpu_ms)
        within = cpu <= CPU_BOUND_MS and cost.peak_mib <= MEMORY_BOUND_MIB
        results.append(
            Comparison(
                stage="adversarial",
                subject=f"{token.name} ({len(token.raw):,} B): {token.attack}",
                baseline=f"{valid[token.connection.protocol]}: a valid token ({base.answer})",
                ours=_stats(cost),
                theirs=_stats(base),
                notes=f"answer {cost.answer} (expected {token.reason})",
                clock="cpu",
                extra={
                    "cpu_ms": round(cpu, 2),
                    "peak_mib": round(cost.peak_mib, 1),
                    "valid_cpu_ms": round(statistics.median(base.cpu_ms), 2),
                    "valid_peak_mib": round(base.peak_mib, 1),
                    "answer": cost.answer,
                    "expected": token.reason,
                    "within_bound": within,
                },
            )
        )
    print(adversarial_table(results), file=sys.stderr)
    return results


def adversarial_table(results: list[Comparison]) -> str:
    """CPU and memory per hostile token against the §2 bound, for docs/performance.md."""
    lines = [
        f"| hostile token | answer | CPU ms (median) | peak MiB | valid token: CPU ms, MiB "
        f"| within {CPU_BOUND_MS:g} ms / {MEMORY_BOUND_MIB:g} MiB |",
        "|---|---|---|---|---|---|",
    ]
    for c in results:
        e = c.extra
        lines.append(
            f"| {c.subject} | {e['answer']} | {e['cpu_ms']} | {e['peak_mib']} "
            f"| {e['valid_cpu_ms']}, {e['valid_peak_mib']} | {'yes' if e['within_bound'] else 'NO'} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--child":
        _child(Path(sys.argv[2]), sys.argv[3], int(sys.argv[4]))
    else:
        for line in run("--quick" in sys.argv):
            print(line.subject, line.extra)
