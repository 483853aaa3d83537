"""`jitprov serve`: the sign-in service over HTTP (engine.service), under uvicorn."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from tui.cli import EXIT_OK, CommandError, Workspace


def register(subparsers: Any, common: argparse.ArgumentParser) -> None:
    parser = subparsers.add_parser(
        "serve",
        parents=[common],
        help="an HTTP endpoint: POST /acs/{connection} and /oidc/{connection}",
        description=(
            "Answer POST /acs/{connection} (SAML HTTP-POST binding: SAMLResponse) and "
            "POST /oidc/{connection} (id_token) with the apply --json result; GET /healthz "
            "and /readyz for load balancers."
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
        "--log-format",
        choices=("json", "text"),
        default="json",
        help="the access log on stderr, one line per request (default: json)",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace, ws: Workspace) -> int:
    from engine.provision import RulesError
    from engine.service.app import create_app
    from engine.service.server import ServiceError, check_exposure, serve, service_token

    if args.workers < 1:
        raise CommandError(f"--workers: expected at least 1, got {args.workers}")
    try:
        token = service_token(ws.config)
        check_exposure(args.host, args.uds, token)
        create_app(ws.config, token=token)  # every connection's rules, checked first
    except (RulesError, ServiceError) as exc:
        raise CommandError(str(exc)) from None
    where = f"unix:{args.uds}" if args.uds else f"http://{args.host}:{args.port}"
    sys.stderr.write(f"jitprov serving on {where} with {args.workers} worker(s) (ctrl+c stops)\n")
    path = ws.locate()
    assert path is not None
    serve(
        path,
        host=args.host,
        port=args.port,
        uds=args.uds,
        workers=args.workers,
        log_format=args.log_format,
    )
    return EXIT_OK
