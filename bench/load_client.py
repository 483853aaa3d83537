"""The load stage's client: closed-loop HTTP clients in a process of their own.

`LoadClient` starts one spawned process that runs jobs sent over a pipe. A job is a
base URL, a path, pre-encoded form bodies (one distinct token each: a token is never
sent twice) and a concurrency C: C threads, each with its own keep-alive HTTP/1.1
connection (the standard library's `http.client`, connected before the clock starts),
each taking the next body as soon as its previous answer is in. Per request: the latency
from send to the whole answer read, and the status (-1 for a transport error). Per job:
the wall time from the first send to the last answer, and the CPU time the client process
spent, so its share of the machine is known.

Why not httpx: on this 2-core machine, against a server answering a fixed JSON at once,
one `httpx.AsyncClient` cost 1.1 ms of client CPU per request at 1 and 8 connections and
3 to 4.7 ms at 32 and 128 (its pool), so the client, not the server, set the pace;
`http.client` in threads cost 0.12 to 0.2 ms per request at every level.
"""

from __future__ import annotations

import contextlib
import http.client
import multiprocessing
import threading
import time
from multiprocessing.connection import Connection
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

FORM = {"content-type": "application/x-www-form-urlencoded"}
TIMEOUT_SECONDS = 60.0


def _job(url: str, path: str, bodies: list[bytes], concurrency: int) -> dict[str, Any]:
    address = urlsplit(url)
    host, port = address.hostname or "127.0.0.1", address.port
    latencies = [0] * len(bodies)
    statuses = [0] * len(bodies)
    failures: list[str] = []
    turns = iter(range(len(bodies)))
    turn_lock = threading.Lock()
    ready = threading.Barrier(concurrency + 1)

    def next_turn() -> int | None:
        with turn_lock:  # each body is sent once
            return next(turns, None)

    def one_client() -> None:
        connection = http.client.HTTPConnection(host, port, timeout=TIMEOUT_SECONDS)
        try:
            connection.connect()
        finally:
            ready.wait()
        try:
            while (n := next_turn()) is not None:
                started = time.perf_counter_ns()
                try:
                    connection.request("POST", path, body=bodies[n], headers=FORM)
                    response = connection.getresponse()
                    answer = response.read()
                    statuses[n] = response.status
                    if response.status != 200 and len(failures) < 5:
                        failures.append(f"{response.status}: {answer[:200]!r}")
                except (OSError, http.client.HTTPException) as exc:
                    statuses[n] = -1
                    connection.close()  # the next request opens a new connection
                    if len(failures) < 5:
                        failures.append(f"{type(exc).__name__}: {exc}")
                latencies[n] = time.perf_counter_ns() - started
        finally:
            connection.close()

    threads = [threading.Thread(target=one_client) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    ready.wait()  # every client connected
    cpu = time.process_time()
    began = time.perf_counter()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - began
    cpu = time.process_time() - cpu
    return {
        "latencies_ns": latencies,
        "statuses": statuses,
        "wall_s": wall,
        "client_cpu_s": cpu,
        "failures": failures,
    }


def _serve(pipe: Connection) -> None:
    """In the client process: run jobs until told to stop (None)."""
    while (job := pipe.recv()) is not None:
        try:
            pipe.send(_job(**job))
        except Exception as exc:  # the parent reports it; the process stays usable
            pipe.send({"crashed": f"{type(exc).__name__}: {exc}"})


class LoadClient:
    """One client process for the whole stage, started and stopped by the block."""

    def __enter__(self) -> LoadClient:
        context = multiprocessing.get_context("spawn")
        self._pipe, theirs = context.Pipe()
        self._process = context.Process(target=_serve, args=(theirs,), daemon=True)
        self._process.start()
        theirs.close()
        return self

    def run(self, url: str, path: str, bodies: list[bytes], concurrency: int) -> dict[str, Any]:
        self._pipe.send({"url": url, "path": path, "bodies": bodies, "concurrency": concurrency})
        result: dict[str, Any] = self._pipe.recv()
        if "crashed" in result:
            raise RuntimeError(f"the load client failed: {result['crashed']}")
        return result

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        with contextlib.suppress(OSError):  # the process is gone already
            self._pipe.send(None)
        self._process.join(timeout=10)
        if self._process.is_alive():
            self._process.kill()
            self._process.join()
        self._pipe.close()
