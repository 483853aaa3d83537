"""The load stage's floor: serve's HTTP stack answering at once, signing nobody in.

A Starlette app with jitprov's routes that does what `engine.service.app` does around a
sign-in and nothing else: reads the body, parses the form, hops to a worker thread (a
capacity limiter of 8, like serve's slots) and answers a small JSON object. No token is
read, nothing is written, no access line. Under the same uvicorn as jitprov and the peer
(bench/load_server.py), its throughput bounds what any sign-in pipeline could reach on
this stack, so it tells whether a throughput target is within reach at all.
"""

from __future__ import annotations

from urllib.parse import parse_qsl

import anyio
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

FIELDS = ("SAMLResponse", "id_token")


def _answer(token: str) -> dict[str, object]:
    return {"outcome": "created", "bytes": len(token)}


def floor_from_environment() -> Starlette:
    """One worker's application (uvicorn's factory)."""
    limiter = anyio.CapacityLimiter(8)

    async def deliver(request: Request) -> Response:
        body = await request.body()
        fields = dict(parse_qsl(body.decode("utf-8"), keep_blank_values=True, max_num_fields=64))
        token = next((fields[f] for f in FIELDS if fields.get(f)), None)
        if token is None:
            return JSONResponse({"error": "expected a token field"}, status_code=400)
        return JSONResponse(await anyio.to_thread.run_sync(_answer, token, limiter=limiter))

    async def healthz(_request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    return Starlette(
        routes=[
            Route("/acs/{connection}", deliver, methods=["POST"]),
            Route("/oidc/{connection}", deliver, methods=["POST"]),
            Route("/healthz", healthz, methods=["GET"]),
        ]
    )
