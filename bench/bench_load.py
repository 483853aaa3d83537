"""Load: `jitprov serve` under 1, 8, 32 and 128 concurrent clients, beside a Flask peer.

Three servers answer over real sockets, each under uvicorn with the same knobs and the
same worker count (1 worker, then one per CPU; bench/load_server.py):
- jitprov: `jitprov serve` on its default SQLite store (every strict check, rules,
  replay cache, links, audit row, metrics, the JSON access log on stderr);
- the peer a team would write today (bench/peer_app.py): Flask + python3-saml `is_valid`
  (or joserfc for ID tokens) + a hand-written mapping + a sqlite-utils upsert, through
  a2wsgi;
- the floor (bench/floor_app.py): serve's HTTP stack answering at once, signing nobody
  in — the most any pipeline could reach on it.

Every request carries a token of its own — a signed SAML response (the demo IdP's key)
or an RS256 ID token, each for a new person with a new ID, minted at the real clock
before the timing starts (bench/load_tokens.py) — so every answer is a `created`
account. All three get the same tokens (the stores and replay caches are separate). The
clients run in a process of their own (bench/load_client.py): C closed-loop clients, one
keep-alive connection each. At each level the servers take turns, SAML then OIDC, each
going first in turn, so a burst of other work on the machine does not land on one side.
Per run: throughput (answers 200 per second of wall time), p50 and p99 latency of those
answers, errors (any other status, or a transport error), the server's CPU time per
request (all its processes, from /proc: a figure other work on the machine disturbs less
than throughput), and the store counted before and after (read-only): accounts added
must equal sign-ins accepted.

Targets (the issue): jitprov ≥ 3x the peer's throughput at every level (a time-per-request
ratio ≤ 0.333); with N workers ≥ 1.7x the throughput of 1 (ratio ≤ 0.588, at 8 clients
and more: one client is one connection, served by one worker); p99 at 32 clients under
50 ms (with N workers, serve's default); zero errors and zero lost updates.

`python -m bench.bench_load [--quick]`
"""

from __future__ import annotations

import json
import math
import os
import statistics
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

from bench.harness import Comparison, Stats
from bench.load_client import LoadClient
from bench.load_server import (
    Server,
    accounts,
    group_cpu_seconds,
    jitprov_server,
    other_server,
)
from bench.load_tokens import mint_all, workspace

LEVELS = (1, 8, 32, 128)
MACHINE_SPEEDUP = float("nan")  # measured by `measure`: N CPU-bound processes over 1
REQUESTS = {1: 600, 8: 1000, 32: 1200, 128: 1536}  # per run, full mode (1-2 s of jitprov)
QUICK_REQUESTS = {1: 40, 8: 60, 32: 64, 128: 128}
P99_BUDGET_MS = 50.0
PATHS = {
    ("jitprov", "SAML"): "/acs/bench",
    ("jitprov", "OIDC"): "/oidc/bench-oidc",
    ("peer", "SAML"): "/acs",
    ("peer", "OIDC"): "/oidc",
    ("floor", "SAML"): "/acs/bench",
    ("floor", "OIDC"): "/oidc/bench-oidc",
}
PEER = {
    "SAML": "peer (Flask + python3-saml is_valid + sqlite-utils upsert)",
    "OIDC": "peer (Flask + joserfc RS256 + sqlite-utils upsert)",
}


# -- runs -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Run:
    """One system, protocol, worker count and level: what the clients and store saw."""

    system: str
    protocol: str
    workers: int
    clients: int
    sent: int
    wall_s: float
    p50_ms: float
    p99_ms: float
    errors: int
    statuses: dict[str, int]
    accounts_added: int | None  # None: a server without a store (the floor)
    client_cpu_us: float  # the client process's CPU per request
    server_cpu_us: float  # the server's processes' CPU per request (all workers)
    failures: list[str]
    reconnects: int = 0  # connections the server closed (`Connection: close`), reopened
    # jitprov only: the share of the run's wall time the SQLite store's writer turn was
    # held (serve's jitprov_store_turn_seconds_total); one writer at a time, so near 1
    # the store is the ceiling whatever the workers.
    store_turn_share: float | None = None

    @property
    def throughput(self) -> float:
        """Sign-ins answered 200 per second of wall time (a fast 503 is no sign-in)."""
        return self.statuses.get("200", 0) / self.wall_s

    @property
    def lost(self) -> int:
        """Accepted sign-ins (200) without an account in the store."""
        if self.accounts_added is None:
            return 0
        return self.statuses.get("200", 0) - self.accounts_added

    def stats(self) -> Stats:
        """Time per request (1 / throughput) as the median, the latency p99 as p99."""
        return Stats(_share(1e9, self.throughput), self.p99_ms * 1e6, self.sent)

    def extra(self) -> dict[str, object]:
        return {
            "throughput_rps": round(self.throughput, 1),
            "p50_ms": round(self.p50_ms, 2),
            "p99_ms": round(self.p99_ms, 2),
            "errors": self.errors,
            "statuses": self.statuses,
            "sent": self.sent,
            "accounts_checked": self.accounts_added,
            "lost_updates": self.lost,
            "server_cpu_us_per_request": round(self.server_cpu_us),
            "client_cpu_us_per_request": round(self.client_cpu_us),
            "reconnects": self.reconnects,
            **(
                {}
                if self.store_turn_share is None
                else {"store_turn_share": round(self.store_turn_share, 3)}
            ),
        }


def _share(part: float, whole: float) -> float:
    """part / whole, infinite when nothing was answered (a run of errors only)."""
    return part / whole if whole else math.inf


def _percentile(values: list[int], q: float) -> float:
    ordered = sorted(values)
    return float(ordered[min(len(ordered) - 1, int(len(ordered) * q))])


def _one_run(
    client: LoadClient,
    server: Server,
    protocol: str,
    workers: int,
    clients: int,
    bodies: list[bytes],
) -> Run:
    assert server.process is not None
    before = accounts(server.store)
    turn = store_turn_seconds(server)
    cpu = group_cpu_seconds(server.process.pid)
    out = client.run(server.url, PATHS[server.system, protocol], bodies, clients)
    cpu = group_cpu_seconds(server.process.pid) - cpu
    held = None if turn is None else (store_turn_seconds(server) or 0.0) - turn
    added = None if server.store is None else accounts(server.store) - before
    statuses = Counter(str(s) for s in out["statuses"])
    # The latency of a sign-in: answers 200 only (an error is counted, not timed).
    latencies = [t for t, s in zip(out["latencies_ns"], out["statuses"], strict=True) if s == 200]
    latencies = latencies or [0]
    return Run(
        system=server.system,
        protocol=protocol,
        workers=workers,
        clients=clients,
        sent=len(bodies),
        wall_s=out["wall_s"],
        p50_ms=statistics.median(latencies) / 1e6,
        p99_ms=_percentile(latencies, 0.99) / 1e6,
        errors=sum(n for s, n in statuses.items() if s != "200"),
        statuses=dict(statuses),
        accounts_added=added,
        client_cpu_us=out["client_cpu_s"] / len(bodies) * 1e6,
        server_cpu_us=cpu / len(bodies) * 1e6,
        failures=out["failures"],
        reconnects=out["reconnects"],
        store_turn_share=None if held is None else held / out["wall_s"],
    )


def store_turn_seconds(server: Server) -> float | None:
    """jitprov's `jitprov_store_turn_seconds_total` from /metrics (None for the others)."""
    if server.system != "jitprov":
        return None
    import httpx

    text = httpx.get(server.url + "/metrics", timeout=10).text
    for line in text.splitlines():
        if line.startswith("jitprov_store_turn_seconds_total "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def _phase(
    folder: Path,
    workers: int,
    requests: dict[int, int],
    pool: ProcessPoolExecutor,
    client: LoadClient,
    jwk: str,
) -> list[Run]:
    """Both systems with `workers` workers: warm up, then every level, taking turns."""
    workspace(folder, json.loads(jwk))
    warm = 24 * workers
    wanted = {(p, f"w{p[0]}"): warm for p in ("SAML", "OIDC")}
    wanted |= {(p, f"{p[0].lower()}{c}n"): requests[c] for p in ("SAML", "OIDC") for c in LEVELS}
    bodies = mint_all(pool, wanted, folder / "jitprov.toml", jwk)
    runs = []
    with ExitStack() as stack:
        servers = [
            stack.enter_context(jitprov_server(folder, workers)),
            stack.enter_context(other_server("peer", folder, workers)),
            stack.enter_context(other_server("floor", folder, workers)),
        ]
        for server in servers:  # every worker and pipeline thread, warm
            for protocol in ("SAML", "OIDC"):
                warm_bodies = bodies[protocol, f"w{protocol[0]}"]
                client.run(server.url, PATHS[server.system, protocol], warm_bodies, 8 * workers)
        turn = 0
        for clients in LEVELS:
            for protocol in ("SAML", "OIDC"):
                tokens = bodies[protocol, f"{protocol[0].lower()}{clients}n"]
                turn += 1  # each system goes first in turn
                for server in servers[turn % 3 :] + servers[: turn % 3]:
                    run = _one_run(client, server, protocol, workers, clients, tokens)
                    runs.append(run)
                    print(
                        f"    {run.system:7} {protocol} {workers}w {clients:3}c: "
                        f"{run.throughput:6.0f}/s p50 {run.p50_ms:6.1f} ms "
                        f"p99 {run.p99_ms:6.1f} ms errors {run.errors} lost {run.lost} "
                        f"reconnects {run.reconnects}",
                        file=sys.stderr,
                        flush=True,
                    )
    if any(r.errors for r in runs):
        for log in sorted(folder.glob("*.log")):
            if (trace := _last_traceback(log)) is not None:
                print(f"  last traceback in {log.name}:\n{trace}", file=sys.stderr)
    return runs


def _last_traceback(log: Path) -> str | None:
    text = log.read_text(errors="replace")
    at = text.rfind("Traceback (most recent call last)")
    if at < 0:
        return None
    lines = text[at:].splitlines()
    end = next((n for n, line in enumerate(lines[1:], 1) if not line.startswith(" ")), 0)
    return "\n".join(lines[: end + 1][-30:])  # the innermost frames and the exception


# -- comparisons ------------------------------------------------------------------------


def _n(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def _invalid(*runs: Run) -> str:
    """Why a comparison of `runs` does not count: errors or lost updates in any of them."""
    bad = [f"{r.system}: {r.errors} errors, {r.lost} lost" for r in runs if r.errors or r.lost]
    return "; ".join(bad)


def _comparisons(runs: list[Run], many: int, load: float) -> list[Comparison]:
    by = {(r.system, r.protocol, r.workers, r.clients): r for r in runs}
    machine = f"load average {load:.1f} on {os.cpu_count()} CPUs before the stage"
    results = []
    worker_counts = sorted({r.workers for r in runs})
    for workers in worker_counts:
        for protocol in ("SAML", "OIDC"):
            for clients in LEVELS:
                ours, peer, floor = (
                    by[system, protocol, workers, clients]
                    for system in ("jitprov", "peer", "floor")
                )
                floor_ratio = _share(peer.throughput, floor.throughput)
                results.append(
                    Comparison(
                        "load",
                        f"jitprov serve, {protocol}, {_n(clients, 'client')}, {_n(workers, 'worker')}",
                        f"{PEER[protocol]}, same server, workers and tokens",
                        ours.stats(),
                        peer.stats(),
                        target=1 / 3,
                        invalid=_invalid(ours, peer),
                        notes=(
                            "time per request = 1 / throughput (ratio = peer throughput / "
                            f"jitprov throughput); {ours.sent} distinct signed tokens each; "
                            f"errors {ours.errors}, lost updates {ours.lost} (peer: "
                            f"{peer.errors}, {peer.lost}); serve's HTTP stack answering "
                            f"without a sign-in: {floor.throughput:.0f}/s, a ratio of "
                            f"{floor_ratio:.2f}; server CPU per request {ours.server_cpu_us:.0f}"
                            f" µs (peer {peer.server_cpu_us:.0f} µs); {machine}"
                        ),
                        extra={
                            **ours.extra(),
                            "peer": peer.extra(),
                            "floor": floor.extra(),
                            "floor_ratio": round(floor_ratio, 3),
                            "cpu_ratio": round(_share(ours.server_cpu_us, peer.server_cpu_us), 3),
                        },
                    )
                )
    if many > 1:
        for protocol in ("SAML", "OIDC"):
            for clients in LEVELS:
                wide, one = (
                    by["jitprov", protocol, many, clients],
                    by["jitprov", protocol, 1, clients],
                )
                peer_wide, peer_one = (
                    by["peer", protocol, many, clients],
                    by["peer", protocol, 1, clients],
                )
                results.append(
                    Comparison(
                        "load",
                        f"jitprov serve, {protocol}, {_n(clients, 'client')}: {many} workers",
                        "jitprov serve, same, 1 worker",
                        wide.stats(),
                        one.stats(),
                        target=None if clients == 1 else 1 / 1.7,
                        invalid=_invalid(wide, one),
                        notes=(
                            "one client is one keep-alive connection, served by one worker"
                            if clients == 1
                            else f"target: {many} workers ≥ 1.7x the throughput of 1"
                        )
                        + f"; {many} pure-Python processes together reached "
                        f"{MACHINE_SPEEDUP:.2f}x one alone in this run (the machine's own "
                        f"ceiling)" + _store_bound(one, wide, many) + f"; {machine}",
                        extra={
                            "machine_speedup": round(MACHINE_SPEEDUP, 2),
                            "store_turn_share": wide.store_turn_share,
                            "one_worker_store_turn_share": one.store_turn_share,
                            "throughput_rps": round(wide.throughput, 1),
                            "one_worker_throughput_rps": round(one.throughput, 1),
                            "speedup": round(_share(wide.throughput, one.throughput), 2),
                            "peer_speedup": round(
                                _share(peer_wide.throughput, peer_one.throughput), 2
                            ),
                        },
                    )
                )
    budget = Stats(P99_BUDGET_MS * 1e6, P99_BUDGET_MS * 1e6, 1)
    for workers in worker_counts:
        for protocol in ("SAML", "OIDC"):
            ours, peer = by["jitprov", protocol, workers, 32], by["peer", protocol, workers, 32]
            p99 = Stats(ours.p99_ms * 1e6, ours.p99_ms * 1e6, ours.sent)
            results.append(
                Comparison(
                    "load",
                    f"jitprov serve, {protocol}, 32 clients, {_n(workers, 'worker')}: p99 latency",
                    f"{P99_BUDGET_MS:g} ms budget",
                    p99,
                    budget,
                    target=1.0 if workers == many else None,
                    invalid=_invalid(ours),
                    notes=f"the target applies to serve's default, one worker per CPU; {machine}",
                    extra={"p99_ms": round(ours.p99_ms, 2), "peer_p99_ms": round(peer.p99_ms, 2)},
                )
            )
    return results


def _store_bound(one: Run, wide: Run, many: int) -> str:
    """What the store's one writer at a time allows: with 1 worker it held the store's
    turn a share s of the run, so no number of workers can exceed 1/s times that
    throughput (Amdahl's law, the write being the part that cannot run in parallel)."""
    if not one.store_turn_share or wide.store_turn_share is None:
        return ""
    bound = 1 / one.store_turn_share
    return (
        f"; the SQLite store's writer turn was held {one.store_turn_share:.0%} of the run"
        f" by 1 worker, so one writer at a time allows at most {bound:.2f}x, and"
        f" {many} workers held it {wide.store_turn_share:.0%}"
    )


def _verdict(runs: list[Run]) -> str:
    """Errors and lost updates over every run, per system."""
    parts = []
    for system in ("jitprov", "peer", "floor"):
        mine = [r for r in runs if r.system == system]
        errors, lost = sum(r.errors for r in mine), sum(r.lost for r in mine)
        sent = sum(r.sent for r in mine)
        parts.append(f"{system}: {errors} errors, {lost} lost updates in {sent} requests")
    return "; ".join(parts)


def load_table(runs: list[Run]) -> str:
    """Every run: throughput, latency, errors and the store check, for docs/performance.md."""
    lines = [
        "| system | token | workers | clients | req/s | p50 ms | p99 ms | errors "
        "| accounts added / sent | server CPU µs/req | client CPU µs/req | reconnects "
        "| store turn held |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in sorted(runs, key=lambda r: (r.protocol, r.workers, r.clients, r.system)):
        lines.append(
            f"| {r.system} | {r.protocol} | {r.workers} | {r.clients} | {r.throughput:.0f} "
            f"| {r.p50_ms:.1f} | {r.p99_ms:.1f} | {r.errors} "
            f"| {'n/a' if r.accounts_added is None else r.accounts_added} / {r.sent} "
            f"| {r.server_cpu_us:.0f} | {r.client_cpu_us:.0f} | {r.reconnects} "
            f"| {'' if r.store_turn_share is None else f'{r.store_turn_share:.0%}'} |"
        )
    return "\n".join(lines)


def _spin(rounds: int = 2_000_000) -> float:
    """Seconds of a pure-Python loop: CPU and nothing else (no jitprov, no I/O)."""
    began, total = time.perf_counter(), 0
    for n in range(rounds):
        total += n * n
    return time.perf_counter() - began


def machine_speedup(processes: int, pool: ProcessPoolExecutor, tries: int = 5) -> float:
    """What `processes` CPU-bound processes achieve together on this machine right now,
    as a multiple of one alone (the median of `tries`): the ceiling for N workers over
    1 in the same run. A shared or virtual machine delivers less than its CPU count."""
    speedups = []
    for _ in range(tries):
        alone = pool.submit(_spin).result()
        together = [f.result() for f in [pool.submit(_spin) for _ in range(processes)]]
        speedups.append(processes * alone / max(together))
    return statistics.median(speedups)


def measure(quick: bool) -> tuple[list[Run], float]:
    """Every run, and the machine's load average before the first (other work on it)."""
    from joserfc.jwk import RSAKey

    load = os.getloadavg()[0]

    requests = QUICK_REQUESTS if quick else REQUESTS
    many = os.cpu_count() or 1
    key = RSAKey.generate_key(2048, parameters={"kid": "bench-load"}, auto_kid=False)
    jwk = json.dumps(key.as_dict(private=True))
    runs: list[Run] = []
    with ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-load-")))
        pool = stack.enter_context(ProcessPoolExecutor(many, mp_context=get_context("spawn")))
        client = stack.enter_context(LoadClient())
        ceiling = [machine_speedup(many, pool)]
        for workers in sorted({1, many}):
            print(f"  {_n(workers, 'worker')}", file=sys.stderr, flush=True)
            runs += _phase(tmp / f"w{workers}", workers, requests, pool, client, jwk)
        ceiling.append(machine_speedup(many, pool))
    global MACHINE_SPEEDUP
    MACHINE_SPEEDUP = statistics.median(ceiling)
    print(
        f"  {many} CPU-bound processes together: {ceiling[0]:.2f}x / {ceiling[1]:.2f}x one"
        " alone (before / after the stage)",
        file=sys.stderr,
    )
    for run in runs:
        if run.errors or run.lost:
            print(
                f"  {run.system} {run.protocol} {run.workers}w {run.clients}c: "
                f"{run.errors} errors, {run.lost} lost; first: {run.failures[:2]}",
                file=sys.stderr,
            )
    return runs, load


def run(quick: bool) -> list[Comparison]:
    runs, load = measure(quick)
    print(load_table(runs), file=sys.stderr)
    print(_verdict(runs), file=sys.stderr)
    return _comparisons(runs, max(r.workers for r in runs), load)


def main() -> int:
    started = time.perf_counter()
    runs, load = measure("--quick" in sys.argv)
    print(load_table(runs))
    print(f"\n{_verdict(runs)}\n")
    for c in _comparisons(runs, max(r.workers for r in runs), load):
        met = "" if c.met is None else (" met" if c.met else " NOT MET")
        target = "" if c.target is None else f" (target ≤ {c.target:.3f}{met})"
        print(f"{c.subject} vs {c.baseline}: ratio {c.ratio:.2f}{target}")
    print(f"\n{time.perf_counter() - started:.0f} s; load average {load:.1f} before the stage")
    return 0


if __name__ == "__main__":
    sys.exit(main())
