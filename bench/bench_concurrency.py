"""Concurrency: tokens per second with 1, 2 and 4 processes provisioning into one store.

Every process runs its own `Provisioner` on the same SQLite file (WAL, busy timeout,
one `BEGIN IMMEDIATE` transaction per token, whole-transaction retry when busy) and
applies its share of unsigned samples; a quarter of the subjects are shared between
processes, so they contend for the same accounts. Wall time covers all processes. The
baseline is the same tokens applied by one process. On a 2-core machine more processes
cannot add throughput beyond the cores; the point is that contention costs little and
nothing is lost (tests/engine/test_concurrency.py checks the final store).

`python -m bench.bench_concurrency [--quick]`
"""

from __future__ import annotations

import multiprocessing
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from bench.bench_store import CONFIG  # the same one-connection workspace
from bench.harness import Comparison, Stats, placeholder_certificate

RULES = """\
username   = lower(subject)
email      = first(@email)
department = first(@department)
groups     = @groups
groups    += "everyone"
"""
NOW = datetime(2025, 5, 1, 12, 0, tzinfo=UTC)


def _sample(n: int, worker: int) -> bytes:
    person = n % 50 if n % 4 == 0 else 1000 * (worker + 1) + n  # a quarter shared
    return (
        f'subject = "user{person}"\ntoken_id = "w{worker}-t{n}"\n[attributes]\n'
        f'email = "user{person}@example.com"\ndepartment = "dept{n % 7}"\n'
        f'groups = ["g{n % 5}", "g{(n + 1) % 5}"]\n'
    ).encode()


def _worker(folder: str, worker: int, count: int, start: multiprocessing.Event) -> None:  # type: ignore[valid-type]
    from engine.config import load_config
    from engine.provision import Provisioner

    provisioner = Provisioner(load_config(Path(folder) / "jitprov.toml"))
    provisioner.rules("okta")
    provisioner.store()
    start.wait()  # type: ignore[attr-defined]
    for n in range(count):
        result = provisioner.apply("okta", _sample(n, worker), now=NOW, allow_samples=True)
        if result.outcome in ("error", "rejected"):
            raise SystemExit(f"{result.outcome}: {result.message}")
    provisioner.close()


def _workspace(folder: Path) -> None:
    placeholder_certificate(folder / "idp.pem")
    (folder / "okta.rules").write_text(RULES)
    (folder / "jitprov.toml").write_text(CONFIG)


def _wall_time(processes: int, total: int) -> float:
    """Seconds for `processes` processes to apply `total` tokens into a fresh store."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        _workspace(folder)
        from engine.config import load_config
        from engine.provision import Provisioner

        Provisioner(load_config(folder / "jitprov.toml")).store().close()  # create the schema
        context = multiprocessing.get_context("spawn")
        start = context.Event()
        share = total // processes
        workers = [
            context.Process(target=_worker, args=(tmp, w, share, start)) for w in range(processes)
        ]
        for w in workers:
            w.start()
        time.sleep(1.0)  # let every worker import and open the store
        began = time.perf_counter()
        start.set()
        for w in workers:
            w.join()
            if w.exitcode != 0:
                raise RuntimeError(f"a worker failed (exit {w.exitcode})")
        return time.perf_counter() - began


def run(quick: bool) -> list[Comparison]:
    total = 400 if quick else 2000
    rounds = 1 if quick else 3
    times = {k: sorted(_wall_time(k, total) for _ in range(rounds)) for k in (1, 2, 4)}

    def stats(k: int) -> Stats:
        median = times[k][len(times[k]) // 2]
        return Stats(median / total * 1e9, times[k][-1] / total * 1e9, rounds)

    results = []
    for k in (2, 4):
        results.append(
            Comparison(
                "concurrency",
                f"{k} processes, one store",
                "1 process",
                stats(k),
                stats(1),
                notes=f"{total} unsigned samples, a quarter of subjects shared",
                extra={
                    "tokens_per_second": round(total / times[k][len(times[k]) // 2]),
                    "baseline_tokens_per_second": round(total / times[1][len(times[1]) // 2]),
                },
            )
        )
    return results


def main() -> int:
    for c in run("--quick" in sys.argv):
        print(
            f"{c.subject}: {c.extra['tokens_per_second']} tokens/s "
            f"(1 process: {c.extra['baseline_tokens_per_second']} tokens/s)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
