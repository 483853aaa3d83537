"""What `serve` answers a browser (docs/sso.md): where a sign-in goes next, and the plain
pages shown when there is nowhere to go.

A request is a browser's when it accepts `text/html` and carries no `Authorization`
header: an IdP's auto-submitted form, a person following a link. An application calling
the JSON API sends its service token (or asks for JSON) and gets the result object as
before. Every answer made here carries `Cache-Control: no-store` and `Referrer-Policy:
no-referrer` (the next page's address holds the one-time reference), and says nothing of
the token: a refusal names its reason code only, the details stay in the audit log.
"""

from __future__ import annotations

import hashlib
import html
import re
import secrets
from urllib.parse import urlencode, urlsplit, urlunsplit

from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from engine.config import Connection
from engine.result import SUCCESS, Result
from engine.saml.authn_request import REQUEST_LIFETIME

NO_STORE = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"}
COOKIE = "jitprov_signin"  # binds a sign-in's answer to the browser that started it
_COOKIE_VALUE = re.compile(r"[A-Za-z0-9_-]{43}\Z")
_STATUS = {"denied": 403, "rejected": 401, "error": 503}


class NoStore:
    """ASGI middleware: every answer but the SP metadata says `Cache-Control: no-store`
    (results, references, redirects and errors are each for one request only)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or str(scope.get("path", "")).startswith("/metadata/"):
            await self.app(scope, receive, send)
            return

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers") or [] if k != b"cache-control"]
                headers.append((b"cache-control", b"no-store"))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, sending)


def is_browser(request: Request) -> bool:
    """A person's browser, not an application: it takes HTML and sends no credentials."""
    return "text/html" in request.headers.get("accept", "") and (
        "authorization" not in request.headers
    )


def sign_in_cookie(request: Request) -> str:
    """The browser's sign-in cookie: the one it has (one per browser, for every sign-in
    it starts), or a new random one."""
    given = request.cookies.get(COOKIE, "")
    return given if _COOKIE_VALUE.match(given) else secrets.token_urlsafe(32)


def set_sign_in_cookie(response: Response, value: str) -> None:
    """`Secure; SameSite=None`: the IdP's form posts to /acs from the IdP's site, and
    the cookie must come along (a top-level navigation: a first-party cookie then).
    Browsers keep Secure cookies from https sites and from localhost only: serve must be
    reached over https in production."""
    response.set_cookie(
        COOKIE,
        value,
        max_age=int(REQUEST_LIFETIME.total_seconds()),
        path="/",
        secure=True,
        httponly=True,
        samesite="none",
    )


def hash_cookie(value: str) -> str:
    """What the store keeps of a sign-in cookie: its SHA-256."""
    return hashlib.sha256(value.encode("ascii")).hexdigest()


def browser_hash(request: Request) -> str:
    """The hash of the answering browser's sign-in cookie; "" when it sent none."""
    given = request.cookies.get(COOKIE, "")
    return hash_cookie(given) if _COOKIE_VALUE.match(given) else ""


def with_query(url: str, **params: str) -> str:
    """`url` with `params` added to its query string (before any fragment)."""
    parts = urlsplit(url)
    query = f"{parts.query}&{urlencode(params)}" if parts.query else urlencode(params)
    return urlunsplit(parts._replace(query=query))


def landing(connection: Connection) -> str | None:
    """Where a sign-in that names no return URL goes: the first of `return_urls`."""
    return connection.return_urls[0] if connection.return_urls else None


def signed_in(result: Result, ref: str, return_to: str | None) -> Response:
    """A provisioned sign-in: 303 to the return URL with the reference to pick it up."""
    if return_to is None:
        return page(
            200,
            "Signed in",
            f"You are signed in through {result.connection}, but this connection has no"
            " return URL to send you to. Its administrator sets return_urls.",
        )
    return RedirectResponse(with_query(return_to, jitprov_ref=ref), 303, headers=NO_STORE)


def refused(connection: Connection, result: Result) -> Response:
    """A sign-in that did not provision: to `error_url` with the reason code, or a page."""
    code = refusal_code(result)
    if connection.error_url is not None:
        return RedirectResponse(with_query(connection.error_url, error=code), 303, headers=NO_STORE)
    return page(
        _STATUS.get(result.outcome, 400),
        "Sign-in refused" if result.outcome != "error" else "Sign-in unavailable",
        f"The sign-in through {connection.id} did not succeed (reason: {code})."
        " The details are in jitprov's audit log; your administrator can look them up.",
    )


def refusal_code(result: Result) -> str:
    """The one word a browser is told: the reason code, else the outcome."""
    assert result.outcome not in SUCCESS
    return result.reason or result.outcome


def page(status: int, title: str, text: str) -> HTMLResponse:
    """A plain page: a title and a sentence, escaped."""
    body = (
        "<!doctype html><html lang=en><meta charset=utf-8>"
        f"<title>{html.escape(title)}</title>"
        f"<h1>{html.escape(title)}</h1><p>{html.escape(text)}</p></html>"
    )
    return HTMLResponse(body, status_code=status, headers=NO_STORE)
