"""The load stage's client keeps its connections alive, and opens a new one only when
the server says `Connection: close` (it once reconnected before every request: its
parser says whether a connection stays open only while the answer is being read)."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator

import pytest

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
