"""An application that gains single sign-on and JIT provisioning from `jitprov serve`.

jitprov does the whole sign-in: it sends the browser to the IdP (`GET /login/...`),
takes the IdP's answer, validates it, creates or updates the account, and sends the
browser back here with a one-time `jitprov_ref`. This app only:

1. links to `{JITPROV_PUBLIC_URL}/login/{connection}?return_to={this app}/sso/return`;
2. at `/sso/return`, redeems the reference at `POST {JITPROV_URL}/pickup` with the
   service token, and signs the person in with the account jitprov answers;
3. at `/sso/error`, says the sign-in was refused (jitprov's `error_url`).

    JITPROV_URL=http://127.0.0.1:8000 JITPROV_TOKEN=... APP_URL=http://127.0.0.1:5000 \
    SSO_CONNECTIONS=saml,oidc FLASK_SECRET_KEY=... flask --app sso_app run

`JITPROV_PUBLIC_URL` is jitprov's address as the browser reaches it (default
JITPROV_URL). The `make demo-sso` target runs it beside `serve` and two test IdPs.
"""

from __future__ import annotations

import logging
import os
import secrets
from collections.abc import Mapping
from urllib.parse import urlencode

import httpx
from flask import Flask, redirect, render_template_string, request, session

log = logging.getLogger(__name__)

PAGE = """<!doctype html><html lang="en"><meta charset="utf-8"><title>{{ title }}</title>
<h1>{{ title }}</h1><p id="message">{{ text }}</p>
{% if user %}<dl id="account">
  <dt>Username</dt><dd id="username">{{ user.username }}</dd>
  <dt>E-mail</dt><dd id="email">{{ user.email }}</dd>
  <dt>Groups</dt><dd id="groups">{{ user.groups | join(", ") or "none" }}</dd>
  <dt>Through</dt><dd id="connection">{{ user.connection }} ({{ user.outcome }})</dd>
</dl><form method="post" action="/logout"><button>Sign out</button></form>{% endif %}
{% for name, url in links %}<p><a class="sso" id="sso-{{ name }}" href="{{ url }}">Sign in with SSO ({{ name }})</a></p>{% endfor %}
</html>"""


def create_app(settings: Mapping[str, str] | None = None) -> Flask:
    """The application, configured from `settings` (default: the environment), read once."""
    env = os.environ if settings is None else settings
    app = Flask(__name__)
    app.secret_key = env.get("FLASK_SECRET_KEY") or secrets.token_hex(32)
    app.config.update(SESSION_COOKIE_HTTPONLY=True, SESSION_COOKIE_SAMESITE="Lax")
    jitprov = env.get("JITPROV_URL", "http://127.0.0.1:8000").rstrip("/")
    public = env.get("JITPROV_PUBLIC_URL", jitprov).rstrip("/")
    here = env.get("APP_URL", "http://127.0.0.1:5000").rstrip("/")
    connections = env.get("SSO_CONNECTIONS", "saml").split(",")
    token = env.get("JITPROV_TOKEN")  # jitprov.toml's [serve] token_env
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    back = urlencode({"return_to": f"{here}/sso/return"})
    links = [(name, f"{public}/login/{name}?{back}") for name in connections if name]

    def page(title: str, text: str, status: int = 200, user: dict | None = None):
        shown = [] if user else links
        return render_template_string(PAGE, title=title, text=text, user=user, links=shown), status

    @app.get("/")
    def home():
        user = session.get("user")
        if user is None:
            return page("Not signed in", "Sign in through your identity provider.")
        return page("Welcome", f"Signed in as {user['username']}", user=user)

    @app.get("/sso/return")
    def sso_return():
        # jitprov sent the browser here after provisioning: pick the account up (once).
        session.clear()
        ref = request.args.get("jitprov_ref", "")
        try:
            answer = httpx.post(
                f"{jitprov}/pickup", data={"jitprov_ref": ref}, headers=headers, timeout=10
            )
        except httpx.HTTPError as exc:
            log.warning("jitprov did not answer the pickup: %s", exc)
            return page("Sign-in temporarily unavailable", "Please try again in a minute.", 503)
        if answer.status_code != 200:
            log.warning("pickup refused: %s %s", answer.status_code, answer.text[:200])
            return page("Sign-in expired", "Please sign in again.", 403)
        result = answer.json()
        account = result["user"]
        session["user"] = {
            "username": account["username"],
            "email": account.get("email"),
            "groups": account.get("groups", []),
            "connection": result["connection"],
            "outcome": result["outcome"],
        }
        return redirect("/", 303)

    @app.get("/sso/error")
    def sso_error():
        # jitprov's error_url: the reason code only; the details are in its audit log.
        code = request.args.get("error", "unknown")
        return page("Sign-in refused", f"The sign-in did not succeed ({code}).", 403)

    @app.post("/logout")
    def logout():
        session.clear()
        return redirect("/", 303)

    return app


if __name__ == "__main__":
    port = int(os.environ.get("APP_PORT", "5000"))
    create_app().run(host="127.0.0.1", port=port)
