"""A Flask application whose SAML sign-in goes through `jitprov serve`.

The IdP posts the browser to POST /saml/acs with SAMLResponse (and RelayState); this app
forwards SAMLResponse to jitprov, which validates it and creates, updates or links the
account, then signs the person in with the account jitprov answers.

    JITPROV_URL=http://127.0.0.1:8000 JITPROV_CONNECTION=okta JITPROV_TOKEN=... \
    FLASK_SECRET_KEY=... flask --app flask_app run
"""

import logging
import os
import secrets

import httpx
from flask import Flask, redirect, render_template_string, request, session

log = logging.getLogger(__name__)

PAGE = """<!doctype html><title>{{ title }}</title><h1>{{ title }}</h1><p>{{ text }}</p>"""


def page(title: str, text: str, status: int):
    return render_template_string(PAGE, title=title, text=text), status  # escapes both


def unavailable():
    return page("Sign-in temporarily unavailable", "Please try again in a minute.", 503)


def misconfigured():
    return page("Sign-in is misconfigured", "The sign-in service refused this application.", 502)


def create_app() -> Flask:
    """The application, configured from the environment (read once, here)."""
    app = Flask(__name__)
    app.secret_key = os.environ.get("FLASK_SECRET_KEY")
    if not app.secret_key:
        # Development only: a random key, so a forgotten setting can never mean a known
        # key. Sessions then end with the process and are not shared between workers.
        log.warning("FLASK_SECRET_KEY is not set: using a random key for this process")
        app.secret_key = secrets.token_hex(32)
    # Behind TLS (always, in production) also set SESSION_COOKIE_SECURE = True.
    app.config.update(SESSION_COOKIE_HTTPONLY=True, SESSION_COOKIE_SAMESITE="Lax")

    acs_url = os.environ.get("JITPROV_URL", "http://127.0.0.1:8000").rstrip("/")
    acs_url += "/acs/" + os.environ.get("JITPROV_CONNECTION", "okta")
    headers = {}
    if token := os.environ.get("JITPROV_TOKEN"):  # jitprov.toml's [serve] token_env
        headers["Authorization"] = f"Bearer {token}"

    @app.get("/")
    def home():
        if "username" not in session:
            return page("Not signed in", "Sign in through your identity provider.", 200)
        groups = ", ".join(session["groups"]) or "none"
        who = f"{session['username']} ({session['email']}); groups: {groups}"
        return page("Welcome", f"Signed in as {who}.", 200)

    @app.post("/saml/acs")
    def acs():
        session.clear()  # a sign-in attempt replaces whoever was signed in
        saml_response = request.form.get("SAMLResponse")
        if not saml_response:
            return page("Bad request", "Expected a SAMLResponse field.", 400)
        # If you send AuthnRequests, also send their ID as "request_id": jitprov then
        # checks the response's InResponseTo.
        try:
            answer = httpx.post(
                acs_url, data={"SAMLResponse": saml_response}, headers=headers, timeout=10
            )
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
            session.update(username=user["username"], email=user["email"], groups=user["groups"])
            # 303 See Other: the browser GETs the page (a 307 would post the token again).
            return redirect(local_path(request.form.get("RelayState")), code=303)
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
