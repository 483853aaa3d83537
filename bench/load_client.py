"""The load stage's client: closed-loop HTTP clients in a process of their own.

`LoadClient` starts one spawned process that runs jobs sent over a pipe. A job is a
base URL, a path, pre-encoded form bodies (one distinct token each: a token is never
sent twice) and a concurrency C: C clients on one uvloop event loop, each with its own
keep-alive HTTP/1.1 connection (connected, and answered one GET /healthz, before the
clock starts: the figures are of a steady state, not of a worker accepting a burst of
new connections), each sending the next body as soon as its previous answer is in. Answers are read with httptools'
response parser (the parser uvicorn uses for requests). Per request: the latency from
send to the whole answer read, and the status (-1 for a transport error). Per job: the
wall time from the first send to the last answer, and the CPU time the client process
spent, so its share of the machine is known.

Why this client: the servers and the client share this machine's two cores, so every
microsecond the client spends is taken from the servers. httpx cost 1.1 to 4.7 ms of
client CPU per request here, `http.client` in threads 0.15 to 0.4 ms; one event loop
with a C parser costs a few tens of microseconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import time
from multiprocessing.connection import Connection
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

import httptools
import uvloop

TIMEOUT_SECONDS = 60.0


class _Answer:
    """httptools callbacks: the body of the answer being read, when it is whole, and
    whether the connection stays open after it. (The parser says so only inside the
    callback: once the answer is complete it is reset for the next one, and
    `should_keep_alive()` is False from then on.)"""

    def __init__(self) -> None:
        self.complete = False
        self.keep_alive = False
        self.body = bytearray()
        self.parser = httptools.HttpResponseParser(self)

    def on_body(self, data: bytes) -> None:
        self.body += data

    def on_message_complete(self) -> None:
        self.complete = True
        self.keep_alive = self.parser.should_keep_alive()


def _request(host: str, port: int, path: str, body: bytes) -> bytes:
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
        "Content-Type: application/x-www-form-urlencoded\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode("ascii") + body


async def _run(url: str, path: str, bodies: list[bytes], concurrency: int) -> dict[str, Any]:
    address = urlsplit(url)
    host, port = address.hostname or "127.0.0.1", address.port or 80
    requests = [_request(host, port, path, body) for body in bodies]
    latencies = [0] * len(bodies)
    statuses = [0] * len(bodies)
    failures: list[str] = []
    turns = iter(range(len(bodies)))  # one event loop: each body is taken once
    reconnects = 0  # connections opened after the clock started (`Connection: close`)

    async def connect() -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        return await asyncio.wait_for(asyncio.open_connection(host, port), TIMEOUT_SECONDS)

    async def warm() -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """A connection that has been answered once and stays open."""
        while True:
            reader, writer = await connect()
            answer = _Answer()
            writer.write(f"GET /healthz HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode())
            while not answer.complete:
                data = await asyncio.wait_for(reader.read(65536), TIMEOUT_SECONDS)
                if not data:
                    raise ConnectionError("the server closed the connection on /healthz")
                answer.parser.feed_data(data)
            if answer.keep_alive:
                return reader, writer
            writer.close()  # `Connection: close` (a worker over its share): again

    async def one_client(stream: tuple[asyncio.StreamReader, asyncio.StreamWriter]) -> None:
        nonlocal reconnects
        reader, writer = stream
        answer = _Answer()
        parser = answer.parser
        try:
            while (n := next(turns, None)) is not None:
                started = time.perf_counter_ns()
                try:
                    writer.write(requests[n])
                    answer.complete = False
                    answer.body.clear()
                    while not answer.complete:
                        data = await asyncio.wait_for(reader.read(65536), TIMEOUT_SECONDS)
                        if not data:
                            raise ConnectionError("the server closed the connection")
                        parser.feed_data(data)
                    statuses[n] = parser.get_status_code()
                    if statuses[n] != 200 and len(failures) < 5:
                        failures.append(f"{statuses[n]}: {bytes(answer.body[:200])!r}")
                    if not answer.keep_alive:  # `Connection: close`: a new one,
                        writer.close()  # as any HTTP client does (its cost is measured
                        reader, writer = await connect()  # in this request's latency)
                        reconnects += 1
                        answer = _Answer()
                        parser = answer.parser
                except (OSError, TimeoutError, httptools.HttpParserError) as exc:
                    statuses[n] = -1
                    if len(failures) < 5:
                        failures.append(f"{type(exc).__name__}: {exc}")
                    writer.close()  # the next request opens a new connection
                    reader, writer = await connect()
                    answer = _Answer()
                    parser = answer.parser
                latencies[n] = time.perf_counter_ns() - started
        finally:
            writer.close()

    streams = await asyncio.gather(*(warm() for _ in range(concurrency)))
    cpu = time.process_time()
    began = time.perf_counter()
    await asyncio.gather(*(one_client(stream) for stream in streams))
    wall = time.perf_counter() - began
    cpu = time.process_time() - cpu
    return {
        "latencies_ns": latencies,
        "statuses": statuses,
        "wall_s": wall,
        "client_cpu_s": cpu,
        "failures": failures,
        "reconnects": reconnects,
    }


def _job(url: str, path: str, bodies: list[bytes], concurrency: int) -> dict[str, Any]:
    result: dict[str, Any] = uvloop.run(_run(url, path, bodies, concurrency))
    return result


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
