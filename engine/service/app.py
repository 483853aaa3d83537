"""`create_app(config)`: the sign-in service as an ASGI application (Starlette).

Routes, each a plain function calling the same front door as `jitprov apply`:
- `POST /acs/{connection}`: the SAML HTTP-POST binding (`SAMLResponse`, form or JSON);
- `POST /oidc/{connection}`: `id_token` (form or JSON);
- `GET /login/{connection}?return_to=URL`: an SP-initiated sign-in: 303 to the IdP
  with an AuthnRequest recorded in the store (public: a browser comes here);
- `GET /metadata/{connection}`: this SP's SAML metadata for the connection (public);
- `GET /healthz`: the process answers; `GET /readyz`: config loaded, rules compiled,
  store reachable (503 when not), with the rules' sha256 per connection;
- `GET /metrics`: the Prometheus text format (engine.service.metrics).
With a service token (`[serve] token_env`), every route but /healthz, /login and /metadata needs it as a
bearer token: only the application may call the service.
`request_id` and `nonce` come from the query string or the body's fields.

Answers: the `apply --json` object, with 200 for created/updated/linked/unchanged, 403
denied, 401 rejected, 503 store error; `{"error": ...}` with 400/404/405/408/413 for a
request that is not a token delivery, and 503 with `Retry-After` when a worker with
pipeline threads is saturated. Nothing of HTTP is parsed here: uvicorn frames requests
(and closes or drains the connection of an early answer), Starlette routes them.

The pipeline is synchronous. On a SQLite store it runs on the event loop, one sign-in at
a time (it is all CPU; one worker process per core gives the parallelism). On a
PostgreSQL store it runs in pipeline threads (create_app's `slots`), overlapping the
store's round trips. Each thread has its own `Provisioner`: its own parser and compiled
schemas (nothing lxml or xmlsec builds is shared between threads); they share the
process's one store, whose pool gives each transaction a connection of its own.
Everything else a worker shares — the config, compiled rules — is built before it
serves and is read-only.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import threading
import time
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import anyio
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from engine.config import Config, ConfigError, Connection
from engine.handoff import PickupRefused, hand_off, pick_up
from engine.keysources import Refresher
from engine.oidc.code_flow import callback as oidc_callback
from engine.oidc.code_flow import start_login as oidc_login
from engine.provision import (
    CompiledRulesLike,
    Provisioner,
    RulesError,
    load_rules,
    rules_from_source,
)
from engine.result import SUCCESS, Result
from engine.saml import schema
from engine.saml.authn_request import REQUEST_PREFIX, LoginError, allowed_return
from engine.saml.authn_request import start_login as saml_login
from engine.service.access import AccessLog, LogFormat
from engine.service.browser import (
    NO_STORE,
    NoStore,
    browser_hash,
    hash_cookie,
    is_browser,
    landing,
    page,
    set_sign_in_cookie,
    sign_in_cookie,
    signed_in,
)
from engine.service.browser import refused as browser_refused
from engine.service.metrics import CONTENT_TYPE, Metrics
from engine.store import AuditRow, Store, StoreError, open_store
from engine.store.base import listen_for_retries
from engine.store.sqlite import SqliteStore
from engine.store.values import iso
from engine.token import Token, TokenRejected

STATUS = {
    "created": 200,
    "updated": 200,
    "linked": 200,
    "unchanged": 200,
    "denied": 403,
    "rejected": 401,
    "error": 503,
}
FORM_SLACK = 64 * 1024  # a token at its size limit, form-encoded, plus other fields
BODY_SECONDS = 10  # to receive a whole body: a slow sender holds a slot no longer
FIELD = {"acs": "SAMLResponse", "oidc": "id_token"}
PG_SLOTS = 4  # pipeline threads per worker on a PostgreSQL store (at most its pool)
TURN_POLL_SECONDS = 0.0005  # a worker waiting for the store's writers' queue looks again
PROTOCOL = {"acs": "saml2", "oidc": "oidc"}


class _Load:
    """Sign-ins running or waiting for a slot; only the event loop's thread counts."""

    admitted = 0


class _TooLarge(Exception):
    """The request body passed its limit."""


class _Provisioners:
    """One Provisioner per thread that signs in (or starts a sign-in, or checks
    readiness), closed when its thread has ended (anyio retires idle worker threads
    after a few seconds, so without that each burst after a pause would leave a store
    connection open for good) and all closed when the app shuts down. They share the
    rules compiled when the app was made (read-only): a rules file edited while serving
    reaches sign-ins only through a reload, never half-way."""

    def __init__(self, config: Config, compiled: dict[str, CompiledRulesLike]) -> None:
        self.config = config
        self.compiled = compiled
        self._local = threading.local()
        self._all: list[tuple[threading.Thread, Provisioner]] = []
        self._lock = threading.Lock()
        self._shared: Store | None = None  # PostgreSQL: one store (one pool) per process
        self._opening = threading.Lock()

    def get(self) -> Provisioner:
        found: Provisioner | None = getattr(self._local, "provisioner", None)
        if found is None:
            schema.warm()  # this thread's schemas, before its first token
            shared = self.shared_store if self.config.store.url is not None else None
            found = Provisioner(self.config, rules_loader=self._compiled, shared_store=shared)
            self._local.provisioner = found
            with self._lock:
                ended = [p for thread, p in self._all if not thread.is_alive()]
                self._all = [(t, p) for t, p in self._all if t.is_alive()]
                self._all.append((threading.current_thread(), found))
            for provisioner in ended:
                provisioner.close()
        return found

    def count(self) -> int:
        """The provisioners open now (tests)."""
        with self._lock:
            return len(self._all)

    def _compiled(self, connection: Connection, _config: Config) -> CompiledRulesLike:
        return self.compiled[connection.id]

    def shared_store(self) -> Store:
        """The process's PostgreSQL store, opened by the first thread that needs it (the
        app's start, normally); raises StoreError, and the next call tries again."""
        with self._opening:
            if self._shared is None:
                self._shared = open_store(self.config)
            return self._shared

    def close(self) -> None:
        with self._lock:
            for _thread, provisioner in self._all:
                provisioner.close()
            self._all.clear()
        with self._opening:
            if self._shared is not None:
                self._shared.close()
                self._shared = None


def create_app(
    config: Config,
    *,
    slots: int | None = None,
    queue: int = 128,
    threads: bool | None = None,
    token: str | None = None,
    log_format: LogFormat | None = None,
    rules_sources: Mapping[str, str] | None = None,
) -> Starlette:
    """The service for `config`: rules compiled now (RulesError when one does not),
    from `rules_sources` (the text of each connection's rules, as validated by the
    supervisor) when given, else from the connections' files.

    Where sign-ins run: with `threads` (the default for a PostgreSQL store, whose
    round trips are worth overlapping) in pipeline threads, at most `slots` at once, the
    others waiting for a slot in order. Without (the default for SQLite, a local file:
    the pipeline is CPU and the GIL would let only one thread run it anyway) each runs
    on the event loop in its turn — no thread hop, no contention. Either way at most
    `slots + queue` sign-ins are admitted at once (running or waiting); past that one is
    answered 503 with Retry-After at once (load shedding).

    With `token`, every route but /healthz needs `Authorization: Bearer <token>`
    (compared in constant time); without one, a request is 401 before its body is read.
    With `log_format`, every request writes one access line (engine.service.access).
    """
    secret = token.encode("utf-8") if token else None

    def refused(request: Request) -> Response | None:
        if secret is None:
            return None
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), secret):
            return None
        return _error(
            401,
            "expected Authorization: Bearer <the service token>",
            headers={"WWW-Authenticate": "Bearer"},
        )

    if slots is None:  # PostgreSQL: threads overlap round trips, within the pool
        slots = min(config.store.pool, PG_SLOTS) if config.store.url is not None else 2
    compiled = {
        name: load_rules(c, config)
        if rules_sources is None
        else rules_from_source(c, config, rules_sources[name])
        for name, c in config.connections.items()
    }
    _warm_keys(config)
    provisioners = _Provisioners(config, compiled)
    limiter = anyio.CapacityLimiter(slots)
    load = _Load()
    metrics = Metrics()
    # asyncio's own lock and sleep, not anyio's: the service only runs on asyncio
    # (uvicorn), and anyio's make a checkpoint of every acquire, a loop turn per sign-in.
    turns = asyncio.Lock()  # one sign-in of this worker at the store at a time
    if threads is None:
        threads = config.store.url is not None

    refresher = Refresher(config)  # fetched keys kept fresh ahead of the sign-ins

    @asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        unlisten = listen_for_retries(metrics.store_retry)
        refresher.start()
        if not threads:
            provisioners.get()  # the event loop's own, warm before the first sign-in
        elif config.store.url is not None:
            # The pool and any schema change before the first sign-in, never in one. A
            # store that cannot be opened now is tried again by the sign-ins (each an
            # `error` until it opens) and reported by /readyz.
            with contextlib.suppress(StoreError):
                await anyio.to_thread.run_sync(provisioners.shared_store)
        try:
            yield
        finally:
            unlisten()
            await anyio.to_thread.run_sync(refresher.stop)
            provisioners.close()

    async def deliver(request: Request) -> Response:
        started = time.perf_counter()
        response = await answer(request)
        outcome = getattr(request.state, "outcome", None)
        if outcome is None:
            metrics.refusal(response.status_code)
        else:
            name = request.path_params["connection"]
            seconds = time.perf_counter() - started
            metrics.signin(name, outcome, request.state.reason, seconds)
        return response

    async def answer(request: Request) -> Response:
        kind = "acs" if request.scope["path"].startswith("/acs/") else "oidc"
        browser = kind == "acs" and is_browser(request)  # an IdP's form, posted by a person
        if not browser and (refusal := refused(request)) is not None:
            return refusal
        name = request.path_params["connection"]
        connection = config.connections.get(name)
        if connection is None:
            return _error(404, f"unknown connection {name!r}")
        if connection.protocol != PROTOCOL[kind]:
            other = "acs" if connection.protocol == "saml2" else "oidc"
            return _error(
                404, f"connection {name!r} is {connection.protocol}: POST to /{other}/{name}"
            )
        try:
            async with asyncio.timeout(BODY_SECONDS):  # cheaper than a cancel scope
                body = await _body(request, connection.max_token_bytes * 2 + FORM_SLACK)
        except _TooLarge:
            return _error(413, "the request body is too large")
        except TimeoutError:
            return _error(408, f"the request body did not arrive within {BODY_SECONDS} s")
        fields = dict(request.query_params)
        try:
            fields.update(_fields(body, request.headers.get("content-type", "")))
        except ValueError as exc:
            return _error(400, str(exc))
        field = FIELD[kind]
        token = fields.get(field)
        if not token:
            return _error(400, f"expected a {field} field in the body")
        if load.admitted >= slots + queue:
            return _error(
                503,
                "every sign-in slot is busy and the queue is full; retry",
                headers={"Retry-After": "1"},
            )
        relay = fields.get("RelayState") if browser else None
        cookie = browser_hash(request) if browser else None  # its sign-in cookie
        load.admitted += 1
        try:
            if threads:
                result = await anyio.to_thread.run_sync(
                    _provision,
                    provisioners,
                    connection,
                    field,
                    token,
                    fields,
                    cookie,
                    relay,
                    limiter=limiter,
                )
            else:
                await asyncio.sleep(0)  # let the loop poll (accept, read) between sign-ins
                result = await _sign_in(
                    provisioners,
                    turns,
                    connection,
                    field,
                    token,
                    fields,
                    cookie,
                    relay,
                    held=metrics.held_turn,
                )
        except RulesError as exc:
            return _error(500, str(exc))
        finally:
            load.admitted -= 1
        request.state.outcome, request.state.reason = result.outcome, result.reason
        if browser:
            return await to_browser(connection, result)
        return JSONResponse(result.to_json(), status_code=STATUS[result.outcome])

    async def to_browser(connection: Connection, result: Result) -> Response:
        """A browser's next page: the application with a reference to pick the sign-in
        up, or the connection's error page."""
        if result.outcome not in SUCCESS:
            return browser_refused(connection, result)
        if result.return_to is None:
            return signed_in(result, "", None)
        try:
            ref = await anyio.to_thread.run_sync(_hand_off, provisioners, result, limiter=limiter)
        except StoreError as exc:
            failed = Result("error", connection.id, message=f"store error: {exc}")
            return browser_refused(connection, failed)
        return signed_in(result, ref, result.return_to)

    async def healthz(_request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    sp_documents = _sp_documents(config)

    async def metadata(request: Request) -> Response:
        # Public, like any SP's metadata: the IdP's administrator (or the IdP itself)
        # fetches it; it holds only what the IdP must know, no secret.
        name = request.path_params["connection"]
        document = sp_documents.get(name)
        if document is None:
            return _error(404, f"no connection {name!r}")
        if isinstance(document, str):
            return _error(404, document)
        return Response(document, media_type="application/samlmetadata+xml")

    async def readyz(request: Request) -> Response:
        if (refusal := refused(request)) is not None:
            return refusal
        ready, detail = await anyio.to_thread.run_sync(_readiness, provisioners, limiter=limiter)
        return JSONResponse(detail, status_code=200 if ready else 503)

    async def exposition(request: Request) -> Response:
        if (refusal := refused(request)) is not None:
            metrics.refusal(refusal.status_code)
            return refusal
        text = await anyio.to_thread.run_sync(metrics.exposition)
        return Response(text, media_type=CONTENT_TYPE)

    async def login(request: Request) -> Response:
        # A browser, sent by the application: public, and never cached.
        name = request.path_params["connection"]
        if name not in config.connections:
            return _error(404, f"no connection {name!r}")
        connection = config.connections[name]
        return_to = request.query_params.get("return_to")
        force = request.query_params.get("force_authn", "").lower() in ("1", "true", "yes")
        value = sign_in_cookie(request)  # binds the answer to this browser
        try:
            target = await anyio.to_thread.run_sync(
                _login,
                provisioners,
                connection,
                return_to,
                force,
                hash_cookie(value),
                limiter=limiter,
            )
        except (LoginError, StoreError) as exc:
            status = 400 if isinstance(exc, LoginError) else 503
            if isinstance(exc, LoginError) and exc.reason is not None:
                await anyio.to_thread.run_sync(
                    _audit_refusal, provisioners, connection.id, exc.reason, str(exc)
                )
            if not is_browser(request):
                return _error(status, str(exc), headers=NO_STORE)
            if isinstance(exc, LoginError) and exc.reason is not None:
                failed = Result("rejected", connection.id, reason=exc.reason)
                return browser_refused(connection, failed)
            return page(status, "Sign-in cannot start", str(exc))
        answer = Response(status_code=303, headers={"Location": target, **NO_STORE})
        set_sign_in_cookie(answer, value)
        return answer

    async def callback(request: Request) -> Response:
        # The IdP sends the browser back with a code (or an error) and the state.
        name = request.path_params["connection"]
        connection = config.connections.get(name)
        if connection is None or connection.protocol != "oidc":
            return page(404, "No such sign-in", f"there is no OIDC connection {name!r}")
        params = dict(request.query_params)
        started = time.perf_counter()
        try:
            result = await anyio.to_thread.run_sync(
                _callback, provisioners, connection, params, browser_hash(request), limiter=limiter
            )
        except RulesError as exc:
            return page(500, "Sign-in unavailable", str(exc))
        metrics.signin(name, result.outcome, result.reason, time.perf_counter() - started)
        request.state.outcome, request.state.reason = result.outcome, result.reason
        return await to_browser(connection, result)

    async def pickup(request: Request) -> Response:
        # The application redeems a browser's jitprov_ref: once, within 60 s.
        if (refusal := refused(request)) is not None:
            return refusal
        try:
            async with asyncio.timeout(BODY_SECONDS):
                body = await _body(request, FORM_SLACK)
            fields = _fields(body, request.headers.get("content-type", ""))
        except _TooLarge:
            return _error(413, "the request body is too large")
        except TimeoutError:
            return _error(408, f"the request body did not arrive within {BODY_SECONDS} s")
        except ValueError as exc:
            return _error(400, str(exc))
        ref = fields.get("jitprov_ref")
        if not ref:
            return _error(400, "expected a jitprov_ref field in the body")
        try:
            data = await anyio.to_thread.run_sync(_pick_up, provisioners, ref, limiter=limiter)
        except StoreError as exc:
            return _error(503, f"store error: {exc}")
        except PickupRefused as exc:
            status = {"malformed": 400, "wrong-request": 404}.get(exc.reason, 410)
            return JSONResponse(
                {"error": exc.message, "reason": exc.reason}, status_code=status, headers=NO_STORE
            )
        return JSONResponse(data, headers=NO_STORE)

    routes = [
        Route("/login/{connection}", login, methods=["GET"]),
        Route("/callback/{connection}", callback, methods=["GET"]),
        Route("/pickup", pickup, methods=["POST"]),
        Route("/acs/{connection}", deliver, methods=["POST"]),
        Route("/oidc/{connection}", deliver, methods=["POST"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/metadata/{connection}", metadata, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/metrics", exposition, methods=["GET"]),
    ]
    middleware = [Middleware(AccessLog, log_format=log_format)] if log_format else []
    middleware.append(Middleware(NoStore))
    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        middleware=middleware,
        exception_handlers={HTTPException: _http_error},
    )
    app.state.provisioners = provisioners
    app.state.metrics = metrics
    app.state.load = load
    return app


def _login(
    provisioners: _Provisioners,
    connection: Connection,
    return_to: str | None,
    force: bool,
    browser: str,
) -> str:
    """A new sign-in this SP starts (engine.saml.authn_request, engine.oidc.code_flow), in
    a thread: the URL to send the browser to; `browser` is the hash of its sign-in
    cookie, which the answer must bring back."""
    store = provisioners.get().store()
    start = oidc_login if connection.protocol == "oidc" else saml_login
    return start(
        connection,
        store,
        now=datetime.now(UTC),
        return_to=return_to,
        force_authn=force,
        browser=browser,
    )


def _callback(
    provisioners: _Provisioners, connection: Connection, params: dict[str, str], browser: str
) -> Result:
    """An OIDC sign-in coming back (in a thread: the code exchange waits on the IdP): the
    request taken, the code exchanged, the ID token validated with its nonce and
    provisioned; every refusal is audited like a token's."""
    provisioner = provisioners.get()
    now = datetime.now(UTC)
    try:
        answer = oidc_callback(connection, provisioner.store(), params, now, browser)
    except TokenRejected as exc:
        return provisioner.reject(connection, exc.reason, exc.message, now=now, dry_run=False)
    except StoreError as exc:
        return Result("error", connection.id, message=f"store error: {exc}")
    read = provisioner.intake(connection, answer.id_token, now=now, nonce=answer.pending.nonce)
    result = provisioner.record(connection, read, now=now, dry_run=False)
    result.return_to = answer.pending.return_to or landing(connection)
    return result


def _hand_off(provisioners: _Provisioners, result: Result) -> str:
    """Keep a browser's sign-in for the application (engine.handoff): its reference."""
    return hand_off(provisioners.get().store(), result, datetime.now(UTC))


def _pick_up(provisioners: _Provisioners, ref: str) -> dict[str, Any]:
    """The application's pickup; a refused one is audited (the reference named in it is
    never written: it would let the audit's readers pick a sign-in up)."""
    now = datetime.now(UTC)
    store = provisioners.get().store()
    try:
        return pick_up(store, ref, now)
    except PickupRefused as exc:
        _audit_refusal(provisioners, exc.connection, exc.reason, f"pickup: {exc.message}")
        raise


def _audit_refusal(
    provisioners: _Provisioners, connection: str | None, reason: str, message: str
) -> None:
    """The audit row of a browser flow's refusal that concerns no token (a return URL
    outside the allowlist at /login, a refused pickup). A store that fails here only
    loses the row: the refusal stands."""
    row = AuditRow(
        at=iso(datetime.now(UTC)),
        connection=connection,
        subject=None,
        token_id=None,
        outcome="rejected",
        reason=reason,
        message=message,
        user_id=None,
    )
    with contextlib.suppress(StoreError):
        provisioners.get().store().write_audit(row)


def _sp_documents(config: Config) -> dict[str, bytes | str]:
    """Each connection's SP metadata (engine.saml.sp_metadata), made once, or why there
    is none (an OIDC connection, no recipient)."""
    from engine.saml.sp_metadata import SpMetadataError, sp_metadata

    documents: dict[str, bytes | str] = {}
    for name, connection in config.connections.items():
        try:
            documents[name] = sp_metadata(connection)
        except SpMetadataError as exc:
            documents[name] = str(exc)
    return documents


def _warm_keys(config: Config) -> None:
    """Read every connection's signing keys now (they are cached per file or URL, shared
    by the threads, re-read when a file changes or a copy goes stale), so that no first
    sign-in pays for it. Keys that cannot be had now are left for the sign-ins to
    report, with their reason (a fetch is bounded by its timeout)."""
    from engine.oidc.fetched import fetched_keys
    from engine.oidc.keys import load_jwks
    from engine.saml.keys import KeyFileError, trusted_certs

    for connection in config.connections.values():
        with contextlib.suppress(KeyFileError, ConfigError, TokenRejected):
            if connection.protocol == "saml2":
                trusted_certs(connection)
                continue
            if connection.jwks is not None:
                load_jwks(Path(connection.jwks))
            if connection.jwks_uri is not None or connection.discovery is not None:
                fetched_keys(connection, None)


async def _http_error(_request: Request, exc: Exception) -> Response:
    """Starlette's own answers (no such path, another method) as JSON like the rest."""
    assert isinstance(exc, HTTPException)
    message = {404: "no such route", 405: "method not allowed"}.get(exc.status_code)
    return _error(exc.status_code, message or str(exc.detail), headers=dict(exc.headers or {}))


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


async def _body(request: Request, limit: int) -> bytes:
    """The body, read as it streams in, refused once it passes `limit`."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise _TooLarge
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _TooLarge
        chunks.append(chunk)
    return b"".join(chunks)


def _fields(body: bytes, content_type: str) -> dict[str, str]:
    """Form or JSON fields of a request body (ValueError when it is neither)."""
    kind = content_type.split(";", 1)[0].strip().lower()
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError("the request body is not UTF-8") from None
    if kind == "application/json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"the JSON body does not parse: {exc.msg}") from None
        except RecursionError:
            raise ValueError("the JSON body is nested too deeply") from None
        if not isinstance(data, dict):
            raise ValueError("expected a JSON object")
        return {k: v for k, v in data.items() if isinstance(v, str)}
    if kind in ("application/x-www-form-urlencoded", ""):
        return dict(parse_qsl(text, keep_blank_values=True, max_num_fields=64))
    raise ValueError(f"expected a form or JSON body, got Content-Type {content_type!r}")


def _provision(
    provisioners: _Provisioners,
    connection: Connection,
    field: str,
    token: str,
    fields: dict[str, str],
    browser: str | None = None,
    relay: str | None = None,
) -> Result:
    """One sign-in, in a pipeline thread; `browser`: a browser's post (the hash of its
    sign-in cookie), None for an application's."""
    provisioner = provisioners.get()
    now = datetime.now(UTC)
    read = _intake(provisioner, connection, field, token, fields, now)
    read, landing_url = _landing(connection, read, browser, relay)
    result = provisioner.record(connection, read, now=now, dry_run=False, browser=browser)
    result.return_to = result.return_to or landing_url
    return result


async def _sign_in(
    provisioners: _Provisioners,
    turns: asyncio.Lock,
    connection: Connection,
    field: str,
    token: str,
    fields: dict[str, str],
    browser: str | None = None,
    relay: str | None = None,
    *,
    held: Callable[[float], None] | None = None,
) -> Result:
    """One sign-in on the event loop: the token validated first (CPU, nothing shared),
    then written in the store's turn. While another worker process has the turn, this
    one looks again every TURN_POLL_SECONDS and validates other tokens in between. (A
    thread blocked on the turn would hold it, once granted, until the GIL let it run:
    up to 5 ms of the other workers waiting for nothing.)"""
    provisioner = provisioners.get()
    now = datetime.now(UTC)
    read = _intake(provisioner, connection, field, token, fields, now)
    read, landing_url = _landing(connection, read, browser, relay)
    result = await _record(provisioner, turns, connection, read, now, browser, held)
    result.return_to = result.return_to or landing_url
    return result


async def _record(
    provisioner: Provisioner,
    turns: asyncio.Lock,
    connection: Connection,
    read: Token | TokenRejected,
    now: datetime,
    browser: str | None,
    held: Callable[[float], None] | None = None,
) -> Result:
    """The write, in this worker's turn and then the store's (SQLite's writers' queue);
    `held` is told how long the store's turn was held."""
    async with turns:
        try:
            store = provisioner.store()
        except StoreError:  # the error, as a result
            return provisioner.record(connection, read, now=now, dry_run=False, browser=browser)
        if not isinstance(store, SqliteStore):  # no writers' queue to take a turn in
            return provisioner.record(connection, read, now=now, dry_run=False, browser=browser)
        while not store.writer_turn(wait=False):
            await asyncio.sleep(TURN_POLL_SECONDS)
        taken = time.perf_counter()
        try:
            return provisioner.record(connection, read, now=now, dry_run=False, browser=browser)
        finally:
            store.end_writer_turn()  # when the write did not use the turn (an early error)
            if held is not None:
                held(time.perf_counter() - taken)


def _landing(
    connection: Connection, read: Token | TokenRejected, browser: str | None, relay: str | None
) -> tuple[Token | TokenRejected, str | None]:
    """A browser's response: where it goes next when it answers no request of jitprov's
    (IdP-initiated, or the application's own request): its RelayState when the
    connection's `return_urls` allow it — a RelayState they do not allow refuses the
    sign-in (`wrong-return-url`: never an open redirect) — else the first of them. A
    response to jitprov's own request goes where the request said (Provisioner.record)."""
    if browser is None or isinstance(read, TokenRejected):
        return read, None
    if read.in_response_to and read.in_response_to.startswith(REQUEST_PREFIX):
        return read, None
    if not relay:
        return read, landing(connection)
    try:
        return read, allowed_return(connection, relay)
    except LoginError as exc:
        return TokenRejected("wrong-return-url", f"RelayState: {exc}", read.name_id), None


def _intake(
    provisioner: Provisioner,
    connection: Connection,
    field: str,
    token: str,
    fields: dict[str, str],
    now: datetime,
) -> Token | TokenRejected:
    try:
        raw = token.encode("utf-8")
    except UnicodeEncodeError:  # a JSON body's lone surrogate (`"\ud800"`)
        return TokenRejected(
            "malformed", f"the {field} field holds a lone surrogate, which is not text"
        )
    return provisioner.intake(
        connection, raw, now=now, request_id=fields.get("request_id"), nonce=fields.get("nonce")
    )


def _readiness(provisioners: _Provisioners) -> tuple[bool, dict[str, Any]]:
    """Config loaded and rules compiled (at start), the store reachable (now)."""
    provisioner = provisioners.get()
    rules = {c: provisioner.rules(c).sha256 for c in provisioners.config.connections}
    try:
        provisioner.store().audit(limit=1)  # one read: the store answers
    except StoreError as exc:
        return False, {"status": "unavailable", "store": str(exc), "rules_sha256": rules}
    return True, {"status": "ready", "rules_sha256": rules}
