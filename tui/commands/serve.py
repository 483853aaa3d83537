"""`jitprov serve`: the sign-in service over HTTP (engine.service), under uvicorn."""

from __future__ import annotations

import argparse
import os
from typing import Any

from tui.cli import EXIT_OK, CommandError, Workspace


def register(subparsers: Any, common: argparse.ArgumentParser) -> None:
    parser = subparsers.add_parser(
        "serve",
        parents=[common],
        help="the sign-in service over HTTP, for browsers and applications",
        description=(
            "Answer POST /acs/{connection} (SAML HTTP-POST binding: SAMLResponse) and "
            "POST /oidc/{connection} (id_token) with the apply --json result. Run browser "
            "sign-ins: GET /login/{connection} starts one (SAML AuthnRequest, or the OIDC "
            "code flow with PKCE, answered at GET /callback/{connection}); the person is "
            "sent back to the application with a one-time jitprov_ref, redeemed at POST "
            "/pickup; GET /metadata/{connection} is this SP's SAML metadata. GET /healthz "
            "and /readyz for load balancers, /metrics for Prometheus. SIGHUP, or a change "
            "to the config or a file it names, reloads: the new version is checked first, "
            "and a broken one is logged while the running one serves on. SIGTERM stops "
            "after the sign-ins in flight."
        ),
    )
    parser.add_argument("--host", default="127.0.0.1", help="default: 127.0.0.1")
    parser.add_argument("--port", type=int, default=8000, help="default: 8000")
    parser.add_argument("--uds", metavar="PATH", help="listen on a Unix socket instead")
    parser.add_argument(
        "--workers",
        type=int,
        default=os.cpu_count() or 1,
        help="worker processes (default: the number of CPUs)",
    )
    parser.add_argument(
        "--no-watch",
        dest="watch",
        action="store_false",
        help="reload only on SIGHUP, not when the config or a file it names changes",
    )
    parser.add_argument(
        "--log-format",
        choices=("json", "text"),
        default="json",
        help="the access log on stderr, one line per request (default: json)",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace, ws: Workspace) -> int:
    from engine.service.server import (
        ServiceError,
        check_exposure,
        metrics_directory,
        serve,
        service_token,
        validate,
    )

    if args.workers < 1:
        raise CommandError(f"--workers: expected at least 1, got {args.workers}")
    path = ws.locate()
    assert path is not None
    try:
        serving = validate(path)  # the config loads and every connection's rules compile
        check_exposure(args.host, args.uds, service_token(serving.config))
    except ServiceError as exc:
        raise CommandError(str(exc)) from None
    with metrics_directory():
        try:
            serve(
                serving,
                host=args.host,
                port=args.port,
                uds=args.uds,
                workers=args.workers,
                log_format=args.log_format,
                watch=args.watch,
            )
        except ServiceError as exc:
            raise CommandError(str(exc)) from None
    return EXIT_OK
