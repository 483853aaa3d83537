"""`jitprov serve [--host 127.0.0.1] [--port 8000]`: provision over HTTP (engine.serve)."""

from __future__ import annotations

import argparse
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
            "POST /oidc/{connection} (id_token) with the apply --json result."
        ),
    )
    parser.add_argument("--host", default="127.0.0.1", help="default: 127.0.0.1")
    parser.add_argument("--port", type=int, default=8000, help="default: 8000")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace, ws: Workspace) -> int:
    from engine.provision import RulesError
    from engine.serve import ProvisioningServer

    try:
        server = ProvisioningServer((args.host, args.port), ws.config)
    except RulesError as exc:
        raise CommandError(str(exc)) from None
    except OSError as exc:
        raise CommandError(f"cannot listen on {args.host}:{args.port}: {exc.strerror}") from None
    host, port = server.server_address[:2]
    sys.stderr.write(f"jitprov serving on http://{host}:{port} (ctrl+c stops)\n")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        sys.stderr.write("stopped\n")
    finally:
        server.server_close()
    return EXIT_OK
