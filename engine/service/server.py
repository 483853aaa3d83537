"""Run the sign-in service under uvicorn: worker processes, a TCP or Unix socket, reloads.

`serve` binds the socket and runs uvicorn's process supervisor with N workers (one or
more, always in child processes). Each worker imports `app_from_environment`, which builds
its own application (config parsed, rules compiled, nothing shared with other workers)
from the version the supervisor validated: the config's text and every connection's rules
text, in a private file JITPROV_SERVE_VERSION names. A worker never reads the config or
rules files itself, so one started later (a worker that died and is replaced, or the
second of a reload) serves what was checked, even while a file is being edited or broken. uvicorn frames HTTP (httptools,
on uvloop's event loop): it answers malformed requests itself, keeps an early answer's connection from reading
the unread body as a next request, refuses connections past `limit_concurrency` with
503, and on SIGTERM stops accepting and lets in-flight requests finish.
`TimedHttpTools` adds what uvicorn lacks: a deadline for each request's head.

Reloads: on SIGHUP, or when the config or a file it names changes (checked every
second), the supervisor validates the new version first — the config loads and every
connection's rules compile — and only then replaces the workers one by one, each new
worker serving before its old one stops. A broken version is logged with its
diagnostics and the running workers keep serving the version they have.

Metrics: the workers write prometheus-client's multi-process files into one directory
(PROMETHEUS_MULTIPROC_DIR, a fresh temporary one unless the environment names one);
GET /metrics in any worker sums them all.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import ipaddress
import json
import logging
import os
import shutil
import signal
import socket
import sys
import tempfile
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple

from starlette.applications import Starlette
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.supervisors.multiprocess import Multiprocess

from engine.config import Config, ConfigError, load_config, parse_config, read_config_text
from engine.lifecycle import Pruned, prune
from engine.provision import RulesError, read_rules_source, rules_from_source
from engine.service.access import LogFormat
from engine.service.app import create_app
from engine.service.balance import balance_file, worker_balance
from engine.service.metrics import MULTIPROCESS_ENV, Metrics
from engine.store import open_store

CONFIG_ENV = "JITPROV_SERVE_CONFIG"
VERSION_ENV = "JITPROV_SERVE_VERSION"
LOG_FORMAT_ENV = "JITPROV_SERVE_LOG_FORMAT"
KEEP_ALIVE_SECONDS = 5
GRACEFUL_SECONDS = 20
BACKLOG = 2048
CONNECTIONS_PER_WORKER = 256  # past it: 503 from uvicorn, before any parsing
HEADER_SECONDS = 10  # from connecting (or the last answer) to a request's whole headers
REQUESTS_PER_CONNECTION = 100  # then `Connection: close` (nginx's keepalive_requests)
WATCH_SECONDS = 1.0  # how often the config and its files are checked for a change
WORKER_START_SECONDS = 60  # a new worker must serve within this, or the reload is dropped
log = logging.getLogger("jitprov.serve")
# How serve runs uvicorn, beyond the app and the address (the load benchmark runs its
# peer application with the same settings).
UVICORN: dict[str, Any] = {
    "backlog": BACKLOG,
    "limit_concurrency": CONNECTIONS_PER_WORKER,
    "timeout_keep_alive": KEEP_ALIVE_SECONDS,
    "timeout_graceful_shutdown": GRACEFUL_SECONDS,
    "timeout_worker_healthcheck": WORKER_START_SECONDS,
    "server_header": False,
    "date_header": False,
    "access_log": False,
    "log_level": "warning",
    "http": "engine.service.server:TimedHttpTools",
    "loop": "uvloop",
}


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


class Checked(NamedTuple):
    """A config that can be served: the config, the sha256 of each connection's compiled
    rules, and the texts they came from (what the workers are given)."""

    config: Config
    rules_sha256: dict[str, str]
    config_text: str
    rules_sources: dict[str, str]


def validate(config_path: Path) -> Checked:
    """The config at `config_path`, its rules compiled: what a worker will serve. Each
    file is read once, and the texts read are the ones checked and kept. ServiceError
    (with the diagnostics) when it cannot be served."""
    try:
        path = Path(config_path).resolve()
        text = read_config_text(path)
        config = parse_config(text, path)
        sources = {name: read_rules_source(c) for name, c in config.connections.items()}
        rules = {
            name: rules_from_source(c, config, sources[name]).sha256
            for name, c in config.connections.items()
        }
        service_token(config)
    except (ConfigError, RulesError) as exc:
        raise ServiceError(str(exc)) from None
    return Checked(config, rules, text, sources)


class Versions:
    """The validated versions the workers start from: each written once, as JSON, into
    a private folder (mode 0700, removed at the end), and named in the environment that
    workers started from then on inherit (JITPROV_SERVE_VERSION)."""

    def __init__(self) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="jitprov-serving-"))
        self._written = 0

    def publish(self, checked: Checked) -> str | None:
        """Make `checked` the version new workers start from; the one it replaces."""
        self._written += 1
        path = self.folder / f"version-{self._written}.json"
        data = {
            "config_path": str(checked.config.path),
            "config_text": checked.config_text,
            "rules_sources": checked.rules_sources,
        }
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w", encoding="utf-8") as out:
            json.dump(data, out)
        previous = os.environ.get(VERSION_ENV)
        os.environ[VERSION_ENV] = str(path)
        return previous

    def restore(self, previous: str | None) -> None:
        """Go back to `previous` (a reload that did not take)."""
        dropped = os.environ.get(VERSION_ENV)
        if previous is None:
            os.environ.pop(VERSION_ENV, None)
        else:
            os.environ[VERSION_ENV] = previous
        if dropped and dropped != previous:
            Path(dropped).unlink(missing_ok=True)

    def retire(self, previous: str | None) -> None:
        """Forget `previous` once no worker can start from it again."""
        if previous:
            Path(previous).unlink(missing_ok=True)

    def close(self) -> None:
        os.environ.pop(VERSION_ENV, None)
        shutil.rmtree(self.folder, ignore_errors=True)


def read_version(path: Path) -> tuple[Config, dict[str, str]]:
    """A worker's side of Versions: the config and the rules texts to serve."""
    data = json.loads(path.read_text(encoding="utf-8"))
    config = parse_config(data["config_text"], Path(data["config_path"]))
    return config, dict(data["rules_sources"])


def watched_files(config: Config) -> list[Path]:
    """The files a change of which changes what the workers serve: the config and every
    file a connection names (rules, certificates, metadata, keys, JWKS)."""
    files = [config.path]
    for connection in config.connections.values():
        files.append(Path(connection.rules))
        files.extend(Path(p) for p in connection.certificates)
        files.extend(Path(p) for p in (connection.metadata, connection.decryption_key) if p)
        if connection.jwks is not None:
            files.append(Path(connection.jwks))
    return files


def fingerprint(files: list[Path]) -> tuple[tuple[str, int, int, int], ...]:
    """What a change to any of `files` changes (path, size, mtime, inode; -1 if absent)."""
    marks = []
    for path in files:
        try:
            st = path.stat()
            marks.append((str(path), st.st_size, st.st_mtime_ns, st.st_ino))
        except OSError:
            marks.append((str(path), -1, -1, -1))
    return tuple(marks)


class Supervisor(Multiprocess):
    """uvicorn's worker supervisor, with reloads that validate before they replace, and
    on TCP a listening socket per worker slot.

    Each slot's socket (SO_REUSEPORT, all on the service's address) is made and held by
    the supervisor and handed to the slot's worker, and to the worker that replaces it
    (a reload, or one that died). The kernel spreads new connections over the slots'
    sockets (engine.service.balance); a connection waiting at a slot's socket while its
    worker is replaced stays queued for the next one (a socket per worker process would
    close with the process, and reset it)."""

    def __init__(
        self,
        config: Any,
        sockets: list[Any],
        serving: Checked,
        watch: bool,
        versions: Versions,
        per_slot: bool = False,
    ) -> None:
        self._per_slot = per_slot
        self._slots: dict[int, socket.socket] = {}
        self._renewing: int | None = None  # restart_all's slot being replaced
        super().__init__(config, sockets=sockets)
        self.serving = serving
        self.versions = versions
        self.watching = watch
        self._marks = fingerprint(watched_files(serving.config))
        self.metrics = Metrics()  # this process's file among the workers'

    @property
    def sockets(self) -> list[socket.socket]:
        """What uvicorn hands the worker it is about to start: the shared sockets, or on
        TCP the listening socket of that worker's slot."""
        if not self._per_slot:
            return self._given
        return [self._slot_socket(self._next_slot())]

    @sockets.setter
    def sockets(self, given: list[socket.socket]) -> None:
        self._given = given

    def _next_slot(self) -> int:
        """The slot of the worker being started: the one restart_all replaces, else a
        dead worker's (keep_subprocess_alive), else a new one (start, SIGTTIN)."""
        if self._renewing is not None:
            slot = self._renewing
            self._renewing += 1
            return slot
        for slot, process in enumerate(self.processes):
            if process.process.exitcode is not None:
                return slot
        return len(self.processes)

    def _slot_socket(self, slot: int) -> socket.socket:
        if (sock := self._slots.get(slot)) is None:
            address = self._given[0]
            sock = _reuse_port(socket.socket(address.family, socket.SOCK_STREAM))
            sock.bind(address.getsockname())
            sock.listen(BACKLOG)
            sock.set_inheritable(True)
            self._slots[slot] = sock
        return sock

    def restart_all(self) -> None:
        self._renewing = 0
        try:
            super().restart_all()
        finally:
            self._renewing = None

    def handle_ttou(self) -> None:
        super().handle_ttou()
        for slot in [s for s in self._slots if s >= len(self.processes)]:
            self._slots.pop(slot).close()  # no worker will take its connections

    def run(self) -> None:
        if self.watching:
            threading.Thread(target=self._watch, name="jitprov-watch", daemon=True).start()
        threading.Thread(target=self._prune, name="jitprov-prune", daemon=True).start()
        try:
            super().run()
        finally:
            for sock in self._slots.values():
                sock.close()

    def _prune(self) -> None:
        """Prune the store (engine.lifecycle) at start and then every
        `[retention] prune_every_seconds`, one supervisor per host doing it; a failure
        is logged and tried again at the next turn."""
        while True:
            config = self.serving.config
            try:
                pruned = prune_store(config)
            except Exception as exc:  # a store that is down must not stop the service
                log.error("pruning failed, tried again later: %s", exc)
            else:
                if pruned.total:
                    parts = ", ".join(f"{n} {name}" for name, n in pruned.counts.items() if n)
                    log.warning("pruned %s", parts)
            if self.should_exit.wait(config.retention.prune_every_seconds):
                return

    def _watch(self) -> None:
        """Ask for a reload (as SIGHUP would) when a watched file has changed and then
        stayed the same for one more look, so a file being written is not read half-way."""
        seen = self._marks
        while not self.should_exit.wait(WATCH_SECONDS):
            now = fingerprint(watched_files(self.serving.config))
            if now != seen:
                seen = now  # changed: look again before acting
                continue
            if now != self._marks:
                self._marks = now
                os.kill(os.getpid(), signal.SIGHUP)

    def handle_hup(self) -> None:
        try:
            checked = validate(self.serving.config.path)
        except ServiceError as exc:
            kept = _versions_text(self.serving.rules_sha256)
            log.error("reload refused, still serving %s: %s", kept, exc)
            self.metrics.reloads.labels("refused").inc()
            return
        self._marks = fingerprint(watched_files(checked.config))
        log.warning("reloading: %s", _versions_text(checked.rules_sha256))
        before = [process.pid for process in self.processes]
        previous = self.versions.publish(checked)
        self.restart_all()
        after = [process.pid for process in self.processes]
        if any(pid in before for pid in after):
            # Not every worker was replaced: those left run the old version, and any
            # worker started from now on (one that dies is replaced) must match them.
            self.versions.restore(previous)
            log.error("reload failed: a new worker did not start; the running ones serve on")
            self.metrics.reloads.labels("failed").inc()
            return
        self.versions.retire(previous)
        self.metrics.reloads.labels("applied").inc()
        self.serving = checked
        log.warning("reloaded: %s", _versions_text(checked.rules_sha256))


def prune_store(config: Config) -> Pruned:
    """One pruning pass over the config's store (its own connection, closed after)."""
    store = open_store(config)
    try:
        return prune(store, config, datetime.now(UTC))
    finally:
        store.close()


def _versions_text(versions: dict[str, str]) -> str:
    return ", ".join(f"{name} rules {sha[:12]}" for name, sha in versions.items()) or "no rules"


def _reuse_port(sock: socket.socket) -> socket.socket:
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    return sock


def _shared_port(host: str, port: int) -> socket.socket:
    """The service's TCP address, bound (SO_REUSEPORT) but never listened on: the
    supervisor binds one listening socket per worker slot to the same address from it
    (Supervisor.sockets)."""
    family, kind, proto, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    sock = _reuse_port(socket.socket(family, kind, proto))
    try:
        sock.bind(address)
    except OSError:
        sock.close()
        raise
    return sock


class TimedHttpTools(HttpToolsProtocol):
    """uvicorn's httptools protocol with a deadline for request heads: a connection that
    has not sent a whole request head within HEADER_SECONDS of connecting (or of its last
    answer) is closed, so slow or half-sent headers cannot hold connections forever.
    (uvicorn bounds idle keep-alive connections, not a head that never ends.) And the
    application's kept-alive connections spread over the workers: a worker holding more
    than its share answers with `Connection: close` (engine.service.balance), and every
    connection is closed after REQUESTS_PER_CONNECTION requests, as behind nginx."""

    _head_deadline: asyncio.TimerHandle | None = None
    _requests = 0  # requests begun on this connection
    _leaving = False  # answered with `Connection: close` by this class

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        if (balance := worker_balance()) is not None:
            balance.opened()
        self._arm_head_deadline()

    def on_headers_complete(self) -> None:
        self._cancel_head_deadline()
        super().on_headers_complete()
        self._requests += 1
        if self.cycle is None or not self.cycle.keep_alive or self._leaving:
            return
        balance = worker_balance()
        if self._requests >= REQUESTS_PER_CONNECTION or (
            balance is not None and balance.over_share()
        ):
            # Answered with `Connection: close`: the client opens a new connection,
            # which the least busy worker is the likeliest to accept (a kept-alive
            # connection stays with the worker that accepted it, however busy).
            self.cycle.keep_alive = False
            self._leaving = True
            if balance is not None:
                balance.leave()

    def on_response_complete(self) -> None:
        waiting = not self.pipeline  # a pipelined request's head has arrived already
        super().on_response_complete()
        if waiting:
            self._arm_head_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_deadline()
        if (balance := worker_balance()) is not None:
            balance.closed(self._leaving)
        super().connection_lost(exc)

    def _arm_head_deadline(self) -> None:
        self._cancel_head_deadline()
        if not self.transport.is_closing():
            self._head_deadline = self.loop.call_later(HEADER_SECONDS, self._head_too_slow)

    def _cancel_head_deadline(self) -> None:
        if self._head_deadline is not None:
            self._head_deadline.cancel()
            self._head_deadline = None

    def _head_too_slow(self) -> None:
        self._head_deadline = None
        if not self.transport.is_closing():
            self.transport.close()


def app_from_environment() -> Starlette:
    """The application of one worker (uvicorn's factory). A config that does not load
    is said in one line on stderr, and the worker exits as one that could not start."""
    log_format: LogFormat = "text" if os.environ.get(LOG_FORMAT_ENV) == "text" else "json"
    # SIGHUP is the supervisor's (reload); a worker reached by it too (a signal to the
    # whole process group) must not die of it.
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    _log_to_stderr(logging.getLogger("jitprov.access"))
    _log_to_stderr(log)
    if (balance := worker_balance()) is not None:
        atexit.register(balance.release)  # a stopped worker's slot is free again
    try:  # create_app compiles the rules: once, here
        sources = None
        if version := os.environ.get(VERSION_ENV):  # the supervisor's validated version
            config, sources = read_version(Path(version))
        else:
            config = load_config(Path(os.environ[CONFIG_ENV]))
        return create_app(
            config, token=service_token(config), log_format=log_format, rules_sources=sources
        )
    except (ConfigError, RulesError, ServiceError, OSError, ValueError, KeyError) as exc:
        log.error("worker not started: %s", exc)
        sys.exit(3)  # uvicorn's STARTUP_FAILURE: the supervisor keeps the running workers


def _log_to_stderr(logger: logging.Logger) -> None:
    handler = logging.StreamHandler()  # stderr, one line per record
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger.handlers[:] = [handler]
    logger.setLevel(logging.INFO)
    logger.propagate = False


@contextlib.contextmanager
def metrics_directory() -> Iterator[Path]:
    """The directory the workers' metrics files go to, set in the environment for them:
    PROMETHEUS_MULTIPROC_DIR when it names one (emptied of old files first), else a new
    temporary directory, removed afterwards. Enter it before anything imports
    prometheus_client: the library reads the variable once, at import."""
    given = os.environ.get(MULTIPROCESS_ENV)
    if given:
        folder = Path(given)
        folder.mkdir(parents=True, exist_ok=True)
        for old in folder.glob("*.db"):
            old.unlink()
        yield folder
        return
    folder = Path(tempfile.mkdtemp(prefix="jitprov-metrics-"))
    os.environ[MULTIPROCESS_ENV] = str(folder)
    try:
        yield folder
    finally:
        os.environ.pop(MULTIPROCESS_ENV, None)
        shutil.rmtree(folder, ignore_errors=True)


def _check_address(host: str, port: int) -> None:
    """ServiceError, saying why, when `host:port` cannot be listened on (in use, not an
    address of this machine, a privileged port). The probe binds without SO_REUSEPORT:
    the service's own sockets set it, and would share a port another `serve` (of the
    same user) listens on without a word; this probe is what refuses that."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except OSError as exc:
        raise ServiceError(f"cannot listen on {host}:{port}: {exc}") from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            raise ServiceError(f"cannot listen on {host}:{port}: {exc.strerror}") from None


def serve(
    serving: Checked,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    uds: str | None = None,
    workers: int = 1,
    log_format: LogFormat = "json",
    watch: bool = True,
) -> None:
    """Serve `serving` (from `validate`) until stopped (SIGINT or SIGTERM: in-flight
    sign-ins finish first). Call it inside `metrics_directory()`."""
    import uvicorn

    os.environ[CONFIG_ENV] = str(serving.config.path)
    os.environ[LOG_FORMAT_ENV] = log_format
    # The workers share one listening socket, and a kept-alive connection stays with
    # the worker that accepted it. libuv (under uvloop) then accepts one connection per
    # turn of its loop, not every pending one, so a burst of new connections spreads
    # over the workers (as Node's cluster does).
    os.environ.setdefault("UV_TCP_SINGLE_ACCEPT", "1")
    _log_to_stderr(log)
    settings = uvicorn.Config(
        "engine.service.server:app_from_environment",
        factory=True,
        host=host,
        port=port,
        uds=uds,
        workers=workers,
        lifespan="on",
        **UVICORN,
    )
    where = f"unix:{uds}" if uds else f"http://{host}:{port}"
    if uds is None:
        _check_address(host, port)
    try:
        sock = settings.bind_socket() if uds else _shared_port(host, port)
    except SystemExit:  # uvicorn has logged why
        raise ServiceError(f"cannot listen on {where}") from None
    except OSError as exc:
        raise ServiceError(f"cannot listen on {where}: {exc.strerror}") from None
    log.warning("jitprov serving on %s with %d worker(s) (ctrl+c stops)", where, workers)
    try:
        # The supervisor handles SIGINT and SIGTERM (workers stop gracefully, then it
        # returns: exit status 0), SIGHUP (reload) and SIGTTIN/SIGTTOU (one worker more
        # or fewer), in every case, one worker included.
        versions = Versions()
        try:
            versions.publish(serving)
            with balance_file(shed=uds is None):
                Supervisor(settings, [sock], serving, watch, versions, uds is None).run()
        finally:
            versions.close()
    finally:
        sock.close()
        if uds and os.path.exists(uds):
            os.remove(uds)
