"""`jitprov serve`: the provisioning pipeline behind a small HTTP endpoint.

- `POST /acs/{connection}` takes the SAML HTTP-POST binding (a form with
  `SAMLResponse`, base64) — the body an IdP's browser hop delivers;
- `POST /oidc/{connection}` takes `id_token` (a form, or JSON `{"id_token": ...}`);
- `request_id` and `nonce` may be given as query parameters (or form fields);
- the answer is the `apply --json` object. HTTP status: 200 for created, updated,
  linked and unchanged; 403 denied; 401 rejected; 503 store error (the JSON's `sso`
  still says whether the sign-on may continue); 400/404/405/411/413 for requests that
  are not a token delivery at all (with `{"error": "..."}`).

Each server thread has its own `Provisioner` (and so its own store connection); writes
are serialised by the store itself. The server binds to 127.0.0.1 by default: put it
behind the application's own TLS-terminating proxy.
"""

from __future__ import annotations

import json
import re
import threading
from datetime import UTC, datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from engine.config import Config
from engine.provision import Provisioner, RulesError

_ROUTE = re.compile(r"/(acs|oidc)/([^/]+)/?")
_STATUS = {
    "created": HTTPStatus.OK,
    "updated": HTTPStatus.OK,
    "linked": HTTPStatus.OK,
    "unchanged": HTTPStatus.OK,
    "denied": HTTPStatus.FORBIDDEN,
    "rejected": HTTPStatus.UNAUTHORIZED,
    "error": HTTPStatus.SERVICE_UNAVAILABLE,
}
_FORM_SLACK = 64 * 1024  # form encoding of a token at its size limit, plus other fields


class ProvisioningServer(ThreadingHTTPServer):
    """An HTTP server provisioning into the workspace's store."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], config: Config, *, quiet: bool = False) -> None:
        super().__init__(address, _Handler)
        self.config = config
        self.quiet = quiet
        self._local = threading.local()
        probe = Provisioner(config)
        for connection in config.connections:
            probe.rules(connection)  # fail at start on rules that do not compile

    def provisioner(self) -> Provisioner:
        """This thread's provisioner (compiled rules and a store connection of its own)."""
        found: Provisioner | None = getattr(self._local, "provisioner", None)
        if found is None:
            found = Provisioner(self.config)
            self._local.provisioner = found
        return found


class _Handler(BaseHTTPRequestHandler):
    server: ProvisioningServer
    server_version = "jitprov"
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        url = urlsplit(self.path)
        route = _ROUTE.fullmatch(url.path)
        if route is None:
            return self._error(
                HTTPStatus.NOT_FOUND, "expected POST /acs/{connection} or /oidc/{connection}"
            )
        kind, name = route.groups()
        connection = self.server.config.connections.get(name)
        if connection is None:
            return self._error(HTTPStatus.NOT_FOUND, f"unknown connection {name!r}")
        wanted = "saml2" if kind == "acs" else "oidc"
        if connection.protocol != wanted:
            other = "acs" if connection.protocol == "saml2" else "oidc"
            return self._error(
                HTTPStatus.NOT_FOUND,
                f"connection {name!r} is {connection.protocol}: POST to /{other}/{name}",
            )
        length = self.headers.get("Content-Length")
        if length is None or not length.isdigit():
            return self._error(HTTPStatus.LENGTH_REQUIRED, "a Content-Length is required")
        if int(length) > connection.max_token_bytes * 2 + _FORM_SLACK:
            return self._error(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "the request body is too large")
        body = self.rfile.read(int(length))
        fields = {k: v[-1] for k, v in parse_qs(url.query).items()}
        try:
            fields.update(_body_fields(body, self.headers.get("Content-Type", "")))
        except ValueError as exc:
            return self._error(HTTPStatus.BAD_REQUEST, str(exc))
        field = "SAMLResponse" if kind == "acs" else "id_token"
        token = fields.get(field)
        if not token:
            return self._error(HTTPStatus.BAD_REQUEST, f"expected a {field} field in the body")
        provisioner = self.server.provisioner()
        try:
            raw = token.encode("utf-8")
        except UnicodeEncodeError:  # a JSON body's lone surrogate (`"\ud800"`)
            result = provisioner.reject(
                connection,
                "malformed",
                f"the {field} field holds a lone surrogate, which is not text",
                now=datetime.now(UTC),
                dry_run=False,
            )
            return self._send(_STATUS[result.outcome], result.to_json())
        try:
            result = provisioner.apply(
                name,
                raw,
                request_id=fields.get("request_id"),
                nonce=fields.get("nonce"),
            )
        except RulesError as exc:
            return self._error(HTTPStatus.INTERNAL_SERVER_ERROR, str(exc))
        self._send(_STATUS[result.outcome], result.to_json())

    def do_GET(self) -> None:
        if urlsplit(self.path).path == "/healthz":
            return self._send(HTTPStatus.OK, {"status": "ok"})
        self._error(HTTPStatus.METHOD_NOT_ALLOWED, "tokens are delivered with POST")

    def _error(self, status: HTTPStatus, message: str) -> None:
        self._send(status, {"error": message})

    def _send(self, status: HTTPStatus, payload: Any) -> None:
        data = json.dumps(payload, ensure_ascii=False, default=str).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        if not self.server.quiet:
            super().log_message(format, *args)


def _body_fields(body: bytes, content_type: str) -> dict[str, str]:
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
        return {k: v[-1] for k, v in parse_qs(text, keep_blank_values=True).items()}
    raise ValueError(f"expected a form or JSON body, got Content-Type {content_type!r}")
