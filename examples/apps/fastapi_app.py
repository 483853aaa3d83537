"""A FastAPI application whose SAML sign-in goes through `jitprov serve`.

The IdP posts the browser to POST /saml/acs with SAMLResponse (and RelayState); this app
forwards SAMLResponse to jitprov, which validates it and creates, updates or links the
account, then signs the person in with the account jitprov answers.

    JITPROV_URL=http://127.0.0.1:8000 JITPROV_CONNECTION=okta JITPROV_TOKEN=... \
    SESSION_SECRET_KEY=... uvicorn --factory fastapi_app:create_app --port 5000

Sessions: Starlette's SessionMiddleware (a signed cookie; needs `itsdangerous`). The form
is parsed here with the standard library, so `python-multipart` is not needed.
"""

import html
import logging
import os
import secrets
from contextlib import asynccontextmanager
from urllib.parse import parse_qs

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from starlette.middleware.sessions import SessionMiddleware

log = logging.getLogger(__name__)
MAX_BODY = 512 * 1024  # a browser's SAMLResponse post is far smaller


def page(title: str, text: str, status: int) -> HTMLResponse:
    title, text = html.escape(title), html.escape(text)
    return HTMLResponse(
        f"<!doctype html><title>{title}</title><h1>{title}</h1><p>{text}</p>", status
    )


def unavailable() -> HTMLResponse:
    return page("Sign-in temporarily unavailable", "Please try again in a minute.", 503)


def misconfigured() -> HTMLResponse:
    return page("Sign-in is misconfigured", "The sign-in service refused this application.", 502)


def create_app() -> FastAPI:
    """The application, configured from the environment (read once, here)."""
    secret = os.environ.get("SESSION_SECRET_KEY")
    if not secret:
        # Development only: a random key, so a forgotten setting can never mean a known
        # key. Sessions then end with the process and are not shared between workers.
        log.warning("SESSION_SECRET_KEY is not set: using a random key for this process")
        secret = secrets.token_hex(32)
    base_url = os.environ.get("JITPROV_URL", "http://127.0.0.1:8000")
    acs_path = "/acs/" + os.environ.get("JITPROV_CONNECTION", "okta")
    headers = {}
    if token := os.environ.get("JITPROV_TOKEN"):  # jitprov.toml's [serve] token_env
        headers["Authorization"] = f"Bearer {token}"

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        # One client for the application's life: its connections to jitprov are reused.
        async with httpx.AsyncClient(base_url=base_url, headers=headers, timeout=10) as client:
            app.state.jitprov = client
            yield

    app = FastAPI(lifespan=lifespan)
    # Behind TLS (always, in production) pass https_only=True.
    app.add_middleware(SessionMiddleware, secret_key=secret, same_site="lax")

    @app.get("/")
    async def home(request: Request) -> HTMLResponse:
        user = request.session
        if "username" not in user:
            return page("Not signed in", "Sign in through your identity provider.", 200)
        groups = ", ".join(user["groups"]) or "none"
        who = f"{user['username']} ({user['email']}); groups: {groups}"
        return page("Welcome", f"Signed in as {who}.", 200)

    @app.post("/saml/acs")
    async def acs(request: Request):
        request.session.clear()  # a sign-in attempt replaces whoever was signed in
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_BODY:
                return page("Bad request", "The request is too large.", 413)
        fields = parse_qs(body.decode("utf-8", "replace"), max_num_fields=16)
        form = {name: values[0] for name, values in fields.items()}
        if not form.get("SAMLResponse"):
            return page("Bad request", "Expected a SAMLResponse field.", 400)
        # If you send AuthnRequests, also send their ID as "request_id": jitprov then
        # checks the response's InResponseTo.
        try:
            jitprov: httpx.AsyncClient = request.app.state.jitprov
            answer = await jitprov.post(acs_path, data={"SAMLResponse": form["SAMLResponse"]})
            result = answer.json()
        except (httpx.HTTPError, ValueError) as exc:  # refused, timed out, not JSON
            log.error("jitprov did not answer: %r", exc)
            return unavailable()

        if "outcome" not in result:
            # jitprov refused this application's request, not the person: a wrong service
            # token (401), an unknown connection (404), a busy service (503, Retry-After)...
            log.error("jitprov refused the request: %s %s", answer.status_code, result.get("error"))
            return unavailable() if answer.status_code == 503 else misconfigured()
        if result["outcome"] in ("created", "updated", "linked", "unchanged"):  # 200
            user = result["user"]
            request.session.update(
                username=user["username"], email=user["email"], groups=user["groups"]
            )
            # 303 See Other: the browser GETs the page (a 307 would post the token again).
            return RedirectResponse(local_path(form.get("RelayState")), status_code=303)
        if result["outcome"] in ("rejected", "denied"):  # 401: a bad or replayed token; 403: a rule
            reason = f" ({result['reason']})" if result["reason"] else ""
            return page("Sign-in refused", f"{result['message']}{reason}", 403)
        # "error" (503): the store failed. With on_error = "continue" in the connection,
        # result["sso"] is "continue": you may let the person in on what you already know.
        log.error("jitprov could not provision: %s", result["message"])
        return unavailable()

    return app


def local_path(target: str | None) -> str:
    """`target` when it is a path on this site, else "/": never redirect elsewhere."""
    # "/page" only: "//host/page" is another site, and so are "/\host" and "/<tab>/host"
    # (browsers read "\" as "/" and drop tabs and newlines).
    if not target or not target.startswith("/") or target.startswith("//"):
        return "/"
    if "\\" in target or any(ord(c) < 0x20 or ord(c) == 0x7F for c in target):
        return "/"
    return target
