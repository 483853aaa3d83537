"""The access log: one line per request, as JSON or text, never a token's contents.

Each line: time, method, route (the path with the connection in its place), connection,
outcome and reason (for a sign-in), HTTP status, duration in milliseconds, and the
request id (the caller's `X-Request-Id` when it sends a sane one, else a new one; it is
echoed in the answer's `X-Request-Id`). Nothing of the body, the query string or the
headers is written: no token, no attribute, no redacted value can reach the log.
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from collections.abc import MutableMapping
from datetime import UTC, datetime
from typing import Any, Literal

from starlette.types import ASGIApp, Message, Receive, Scope, Send

LogFormat = Literal["json", "text"]
log = logging.getLogger("jitprov.access")
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}\Z")
_ROUTE = re.compile(r"\A/(acs|oidc|login|callback|metadata)/([^/]+)/?\Z")


class AccessLog:
    """ASGI middleware writing the access line of every HTTP request."""

    def __init__(self, app: ASGIApp, log_format: LogFormat = "json") -> None:
        self.app = app
        self.log_format = log_format

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        given = dict(scope.get("headers") or []).get(b"x-request-id", b"").decode("latin-1")
        request_id = given if _REQUEST_ID.match(given) else uuid.uuid4().hex
        state: MutableMapping[str, Any] = scope.setdefault("state", {})
        status = 500

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                headers = list(message.get("headers") or [])
                headers.append((b"x-request-id", request_id.encode("latin-1")))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            self._write(scope, state, status, request_id, started)

    def _write(
        self,
        scope: Scope,
        state: MutableMapping[str, Any],
        status: int,
        request_id: str,
        started: float,
    ) -> None:
        path = str(scope.get("path", ""))
        match = _ROUTE.match(path)
        line = {
            "time": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "method": scope.get("method"),
            "route": f"/{match.group(1)}/{{connection}}" if match else path[:64],
            "connection": match.group(2)[:64] if match else None,
            "outcome": state.get("outcome"),
            "reason": state.get("reason"),
            "status": status,
            "duration_ms": round((time.perf_counter() - started) * 1000, 2),
            "request_id": request_id,
        }
        if self.log_format == "json":
            log.info(json.dumps(line, ensure_ascii=True))
        else:
            shown = " ".join(f"{k}={v}" for k, v in line.items() if v is not None)
            log.info(shown)
