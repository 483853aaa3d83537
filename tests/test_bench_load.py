"""The load stage's client keeps its connections alive, and opens a new one only when
the server says `Connection: close` (it once reconnected before every request: its
parser says whether a connection stays open only while the answer is being read)."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator

import pytest

from bench.bench_load import Run, _comparisons, _store_bound
from bench.load_client import LoadClient


class _Counting(http.server.ThreadingHTTPServer):
    daemon_threads = True
    connections = 0
    requests = 0
    close_every = 0  # answer every Nth POST with `Connection: close` (0: never)


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Counting

    def setup(self) -> None:
        super().setup()
        self.server.connections += 1

    def _answer(self, close: bool) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "2")
        if close:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(b"ok")

    def do_GET(self) -> None:  # /healthz, before the clock starts
        self._answer(close=False)

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        self.server.requests += 1
        every = self.server.close_every
        self._answer(close=bool(every) and self.server.requests % every == 0)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[_Counting]:
    httpd = _Counting(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield httpd
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_each_client_keeps_one_connection(server: _Counting) -> None:
    url = f"http://127.0.0.1:{server.server_address[1]}"
    with LoadClient() as client:
        out = client.run(url, "/acs/x", [b"SAMLResponse=%d" % n for n in range(40)], 4)
    assert out["statuses"] == [200] * 40
    assert out["reconnects"] == 0
    assert server.connections == 4


def test_a_connection_the_server_closes_is_opened_again(server: _Counting) -> None:
    server.close_every = 10
    url = f"http://127.0.0.1:{server.server_address[1]}"
    with LoadClient() as client:
        out = client.run(url, "/acs/x", [b"SAMLResponse=%d" % n for n in range(40)], 2)
    assert out["statuses"] == [200] * 40
    assert out["reconnects"] == 4
    assert server.connections == 2 + 4


def _run(
    workers: int,
    share: float | None,
    throughput: float,
    system: str = "jitprov",
    protocol: str = "OIDC",
    clients: int = 32,
) -> Run:
    return Run(
        system=system,
        protocol=protocol,
        workers=workers,
        clients=clients,
        sent=100,
        wall_s=100 / throughput,
        p50_ms=1.0,
        p99_ms=2.0,
        errors=0,
        statuses={"200": 100},
        accounts_added=100,
        client_cpu_us=50.0,
        server_cpu_us=600.0,
        failures=[],
        store_turn_share=share,
    )


def test_the_store_turn_bounds_what_more_workers_can_give() -> None:
    """With 1 worker the SQLite store's writer turn was held 40% of the run: one writer
    at a time allows at most 2.5x that throughput, whatever the workers."""
    one, wide = _run(1, 0.4, 1000.0), _run(2, 0.72, 1500.0)
    assert _store_bound(one, wide, 2) == (
        "; the SQLite store's writer turn was held 40% of the run by 1 worker, so one"
        " writer at a time allows at most 2.50x, and 2 workers held it 72%"
    )
    assert _store_bound(_run(1, None, 1000.0), wide, 2) == ""  # not measured: said nothing
    assert wide.extra()["store_turn_share"] == 0.72
    assert "store_turn_share" not in _run(1, None, 1.0).extra()
    # And the 2-worker comparison carries it.
    runs = []
    for workers, share, rate in ((1, 0.4, 1000.0), (2, 0.72, 1500.0)):
        for clients in (1, 8, 32, 128):
            for protocol in ("SAML", "OIDC"):
                for system in ("jitprov", "peer", "floor"):
                    mine = share if system == "jitprov" else None
                    runs.append(_run(workers, mine, rate, system, protocol, clients))
    found = [c for c in _comparisons(runs, 2, 0.5) if c.subject.endswith(": 2 workers")]
    assert len(found) == 8
    assert all("allows at most 2.50x" in c.notes for c in found)
    assert found[0].extra["one_worker_store_turn_share"] == 0.4
