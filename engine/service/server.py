"""Run the sign-in service under uvicorn: worker processes, a TCP or Unix socket.

Each worker process imports `app_from_environment`, which loads the workspace config
named by JITPROV_SERVE_CONFIG and builds its own application (rules compiled, nothing
shared with other workers). uvicorn frames HTTP: it answers malformed requests itself,
keeps an early answer's connection from reading the unread body as a next request,
closes idle keep-alive connections, refuses connections past `limit_concurrency` with
503, and on SIGTERM stops accepting and lets in-flight requests finish.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import signal
from pathlib import Path

from starlette.applications import Starlette

from engine.config import Config, load_config
from engine.service.access import LogFormat
from engine.service.app import create_app

CONFIG_ENV = "JITPROV_SERVE_CONFIG"
LOG_FORMAT_ENV = "JITPROV_SERVE_LOG_FORMAT"
KEEP_ALIVE_SECONDS = 5
GRACEFUL_SECONDS = 20
BACKLOG = 2048
CONNECTIONS_PER_WORKER = 256  # past it: 503 from uvicorn, before any parsing


class ServiceError(Exception):
    """The service cannot start as configured (said in one line)."""


def service_token(config: Config) -> str | None:
    """The bearer token the config's `[serve] token_env` names, or None when it names
    none; ServiceError when the variable is missing or empty."""
    if config.serve_token_env is None:
        return None
    token = os.environ.get(config.serve_token_env, "").strip()
    if not token:
        raise ServiceError(
            f"serve.token_env names {config.serve_token_env}, but that environment "
            "variable is not set (or empty): set it to the token the application sends"
        )
    return token


def check_exposure(host: str, uds: str | None, token: str | None) -> None:
    """ServiceError when the service would listen beyond this machine without a token."""
    if uds is not None or token is not None:
        return
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise ServiceError(
            f"refusing to listen on {host} without a service token: anyone who reaches "
            "it could provision accounts. Set [serve] token_env in jitprov.toml to an "
            "environment variable holding a secret the application sends as "
            "'Authorization: Bearer <secret>', or listen on 127.0.0.1 or --uds"
        )


def app_from_environment() -> Starlette:
    """The application of one worker (uvicorn's factory)."""
    config = load_config(Path(os.environ[CONFIG_ENV]))
    log_format: LogFormat = "text" if os.environ.get(LOG_FORMAT_ENV) == "text" else "json"
    handler = logging.StreamHandler()  # stderr: one access line per request
    handler.setFormatter(logging.Formatter("%(message)s"))
    access = logging.getLogger("jitprov.access")
    access.handlers[:] = [handler]
    access.setLevel(logging.INFO)
    access.propagate = False
    return create_app(config, token=service_token(config), log_format=log_format)


def _stopped(_signum: int, _frame: object) -> None:
    """The signal was handled: uvicorn has already shut down."""


def serve(
    config_path: Path,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    uds: str | None = None,
    workers: int = 1,
    log_format: LogFormat = "json",
) -> None:
    """Serve until stopped (SIGINT or SIGTERM: in-flight sign-ins finish first)."""
    import uvicorn

    os.environ[CONFIG_ENV] = str(config_path)
    os.environ[LOG_FORMAT_ENV] = log_format
    # uvicorn shuts down gracefully on SIGINT/SIGTERM, then re-raises the signal into the
    # handler that was installed before it: this one lets `serve` return, so a stop
    # asked for is exit status 0, not death by signal.
    for stop in (signal.SIGINT, signal.SIGTERM):
        signal.signal(stop, _stopped)
    uvicorn.run(
        "engine.service.server:app_from_environment",
        factory=True,
        host=host,
        port=port,
        uds=uds,
        workers=workers,
        backlog=BACKLOG,
        limit_concurrency=CONNECTIONS_PER_WORKER,
        timeout_keep_alive=KEEP_ALIVE_SECONDS,
        timeout_graceful_shutdown=GRACEFUL_SECONDS,
        server_header=False,
        date_header=False,
        access_log=False,
        log_level="warning",
        http="h11",
        lifespan="on",
    )
