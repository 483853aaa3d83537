"""GET /metrics: what the sign-in service did, in the Prometheus text format.

- `jitprov_signins_total{connection,outcome,reason}`: every token delivery answered
  with a result (reason "" for created/updated/linked/unchanged);
- `jitprov_signin_seconds{connection}`: a histogram of the time from the request to its
  answer, for those deliveries;
- `jitprov_refused_requests_total{status}`: requests answered without a result (400,
  401 without the service token, 404, 408, 413, 503 when every slot is busy);
- `jitprov_store_retries_total{store}`: transactions the store retried (busy, or a
  serialization failure), a sign of contention;
- `jitprov_store_turn_seconds_total`: on a SQLite store, the seconds this service held
  the store's writer turn (SQLite lets one writer at a time, across every process on
  the file). Its rate summed over the workers is the share of time the store was
  writing: near 1, the store is the ceiling, and more workers only wait for it (a
  PostgreSQL store writes different accounts at once);
- `jitprov_worker_connections{worker}`: under `serve`, each worker's open client
  connections (kept-alive ones spread evenly: engine.service.balance);
- `jitprov_reloads_total{result}`: reloads asked for (SIGHUP or a changed file), by
  result: `applied`, `refused` (the new version does not validate: the running one
  serves on) or `failed` (a new worker did not start).

Under `jitprov serve` the workers are processes: prometheus-client's multi-process mode
(PROMETHEUS_MULTIPROC_DIR, set by `serve` before the library is imported) keeps one file
of values per process, and a scrape of any worker sums them all. Without that variable
(an application embedding `create_app`, the tests) the values live in this process.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

from engine.service.balance import Balance, worker_balance

MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    """The service's counters and histogram, and their exposition."""

    def __init__(self) -> None:
        # Imported here, not at the top: the library decides between one process and
        # many when it is first imported, so `serve` sets the directory first.
        from prometheus_client import CollectorRegistry, Counter, Histogram

        self.multiprocess = bool(os.environ.get(MULTIPROCESS_ENV))
        self._counts: dict[tuple[str, str, str], Any] = {}
        self._timings: dict[str, Any] = {}
        # Multi-process values go to files whatever the registry; a registry of our own
        # keeps two apps in one process (tests) from colliding on names.
        self.registry = CollectorRegistry(auto_describe=True)
        self.signins = Counter(
            "jitprov_signins",
            "Token deliveries answered with a result, by connection, outcome and reason.",
            ["connection", "outcome", "reason"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "jitprov_signin_seconds",
            "Time from request to answer of a token delivery, by connection.",
            ["connection"],
            buckets=BUCKETS,
            registry=self.registry,
        )
        self.refused = Counter(
            "jitprov_refused_requests",
            "Requests answered without a result (bad request, no token, busy...), by status.",
            ["status"],
            registry=self.registry,
        )
        self.store_retries = Counter(
            "jitprov_store_retries",
            "Store transactions retried (database busy or a serialization failure).",
            ["store"],
            registry=self.registry,
        )
        self.store_turn = Counter(
            "jitprov_store_turn_seconds",
            "Seconds the SQLite store's writer turn was held (one writer at a time).",
            registry=self.registry,
        )
        self.reloads = Counter(
            "jitprov_reloads",
            "Reloads of config and rules asked for, by result (applied, refused, failed).",
            ["result"],
            registry=self.registry,
        )

    def signin(self, connection: str, outcome: str, reason: str | None, seconds: float) -> None:
        # The labelled children are kept: looking them up anew is most of the cost of
        # counting, on every sign-in. Their number is bounded by the connections times
        # the outcomes and reason codes, all from the config and the product.
        key = (connection, outcome, reason or "")
        if (count := self._counts.get(key)) is None:
            count = self._counts[key] = self.signins.labels(*key)
        if (timing := self._timings.get(connection)) is None:
            timing = self._timings[connection] = self.latency.labels(connection)
        count.inc()
        timing.observe(seconds)

    def refusal(self, status: int) -> None:
        self.refused.labels(str(status)).inc()

    def store_retry(self, store: str) -> None:
        self.store_retries.labels(store).inc()

    def held_turn(self, seconds: float) -> None:
        self.store_turn.inc(seconds)

    def exposition(self) -> bytes:
        """The text format: every worker's values summed when there are several."""
        from prometheus_client import CollectorRegistry, generate_latest, multiprocess

        registry: Any = self.registry
        if self.multiprocess:
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
            if (balance := worker_balance()) is not None:
                registry.register(_Connections(balance))
        return bytes(generate_latest(registry))


class _Connections:
    """`jitprov_worker_connections{worker}`: each live worker's open connections, read
    from the file the workers balance their connections by, when scraped."""

    def __init__(self, balance: Balance) -> None:
        self.balance = balance

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import GaugeMetricFamily

        family = GaugeMetricFamily(
            "jitprov_worker_connections",
            "Open client connections, by worker (slot number).",
            labels=["worker"],
        )
        for slot, count in sorted(self.balance.counts().items()):
            family.add_metric([str(slot)], count)
        yield family
