"""A small HTTP server on loopback standing in for an IdP's metadata or key endpoints:
what it serves is set by the test, and it counts what it was asked."""

from __future__ import annotations

import hashlib
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class FakeIdp:
    """Documents by path, with an ETag each (a matching If-None-Match is a 304); `down`
    answers 503 to everything; while `stall` is set, answers wait for `release`."""

    def __init__(self) -> None:
        self.documents: dict[str, bytes] = {}
        self.content_type = "application/xml"
        self.cache_control = "max-age=3600"
        self.down = False
        self.stall = threading.Event()
        self.release = threading.Event()
        self.hits: Counter[str] = Counter()
        self.not_modified = 0
        self.port = 0

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"


@contextmanager
def fake_idp() -> Iterator[FakeIdp]:
    state = FakeIdp()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            state.hits[self.path] += 1
            if state.stall.is_set():
                state.release.wait(30)
            body = state.documents.get(self.path)
            if state.down or body is None:
                self.send_response(503 if state.down else 404)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            etag = f'"{hashlib.sha256(body).hexdigest()[:16]}"'
            fresh = self.headers.get("If-None-Match") == etag
            state.not_modified += fresh
            self.send_response(304 if fresh else 200)
            self.send_header("ETag", etag)
            self.send_header("Cache-Control", state.cache_control)
            if not fresh:
                self.send_header("Content-Type", state.content_type)
                self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if not fresh:
                self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            return None

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    state.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        state.release.set()
        server.shutdown()
        server.server_close()
