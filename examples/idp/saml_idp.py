"""A local SAML 2.0 test IdP for jitprov, built on pysaml2's IdP server (`saml2.server.Server`).

It signs people in with a username and a password from a small user table and answers
the SP with a signed SAML response (Response and Assertion both signed, RSA-SHA256 and
SHA-256, by pysaml2 through the `xmlsec1` binary), posted to the SP's ACS by the
HTTP-POST binding. It is for development and tests only: passwords are in clear, sign-ins
in progress live in memory, and it speaks plain HTTP on 127.0.0.1.

Run it:

    jitprov connection sp-metadata CONN > sp-metadata.xml
    python -m examples.idp.saml_idp --port 8090 --state .idp --sp-metadata sp-metadata.xml \
        [--sp-metadata other-sp.xml] [--users users.json]

then give the jitprov connection `issuer = "http://127.0.0.1:8090/metadata"` and
`metadata = ".idp/idp-metadata.xml"` (its signing certificate, and the sign-in URL that
`GET /login/CONN` sends the browser to). `users.json` maps a username to
`{"password": ..., "name_id": ..., "attributes": {"email": ["..."], ...}}`; without it
the users are `alice`/`alice` and `bob`/`bob` (DEFAULT_USERS).

Routes (all under the base URL, e.g. http://127.0.0.1:8090):

- `GET /metadata` — this IdP's metadata; its entityID is this very URL.
- `GET /sso/redirect?SAMLRequest=…[&RelayState=…][&SigAlg=…&Signature=…]` — an
  SP-initiated AuthnRequest (HTTP-Redirect binding) from an SP of the loaded metadata.
  When the SP's metadata says `AuthnRequestsSigned="true"` the query must be signed
  with the SP's signing certificate (a signature that is present is always checked).
  Answers the login form.
- `GET /sso/unsolicited?sp=<SP entityID>[&RelayState=…]` — IdP-initiated sign-in: the
  login form, then a response without InResponseTo to that SP's ACS.
- `POST /login` — the login form's target: the signed response, in an HTML form that
  posts itself to the SP's ACS (JavaScript onload; a Continue button without it).

The state directory keeps `idp.key` (mode 600) and `idp.crt`, the IdP's signing key pair
(RSA-2048, self-signed, ten years), made on first start and reused after; and
`idp-metadata.xml`, written at every start because it carries the base URL.

In-process (tests): the entity ID and the endpoints hold the port, so bind first, then
build the app for that URL, then serve:

    server, base_url = bind(0)                      # any free port
    app = create_app(state_dir, base_url, [sp_metadata_path], DEFAULT_USERS)
    serve_in_thread(app, server=server)             # a daemon thread
    ...
    server.shutdown(); server.server_close()

`prepare_state(state_dir, base_url)` writes the key pair and the IdP metadata alone, for
an SP that needs the IdP's metadata before its own metadata can exist.
"""

from __future__ import annotations

import argparse
import copy
import hmac
import html
import json
import os
import secrets
import shutil
import sys
import threading
import time
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from flask import Flask, Response, request
from werkzeug.exceptions import HTTPException
from werkzeug.serving import BaseWSGIServer, make_server

with warnings.catch_warnings():  # pysaml2 names a cipher mode `cryptography` has moved
    warnings.simplefilter("ignore")
    from saml2 import BINDING_HTTP_POST, BINDING_HTTP_REDIRECT, saml
    from saml2.attribute_converter import AttributeConverter
    from saml2.authn_context import PASSWORD
    from saml2.config import IdPConfig
    from saml2.metadata import create_metadata_string
    from saml2.s_utils import do_ava
    from saml2.saml import NAME_FORMAT_BASIC, NAMEID_FORMAT_PERSISTENT, NameID
    from saml2.server import Server
    from saml2.sigver import verify_redirect_signature
    from saml2.xmldsig import DIGEST_SHA256, SIG_RSA_SHA256

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

DEFAULT_USERS: dict[str, dict[str, Any]] = {
    "alice": {
        "password": "alice",
        "name_id": "alice-0001",
        "attributes": {
            "email": ["alice@example.com"],
            "firstName": ["Alice"],
            "lastName": ["Liddell"],
            "groups": ["engineering", "staff"],
        },
    },
    "bob": {
        "password": "bob",
        "name_id": "bob-0002",
        "attributes": {
            "email": ["bob@example.com"],
            "firstName": ["Bob"],
            "lastName": ["Builder"],
            "groups": ["sales"],
        },
    },
}

SIGN_IN_LIFETIME = 600  # seconds a person has to fill in the login form
ASSERTION_LIFETIME = {"minutes": 5}  # NotOnOrAfter of the assertion and its bearer data
KEY_FILE, CERT_FILE, METADATA_FILE = "idp.key", "idp.crt", "idp-metadata.xml"


# --- state: the signing key pair and this IdP's metadata -------------------------------


def ensure_keys(state_dir: Path) -> tuple[Path, Path]:
    """The IdP signing key pair in `state_dir` (made on first use): key and certificate."""
    key_path, cert_path = state_dir / KEY_FILE, state_dir / CERT_FILE
    if key_path.exists() and cert_path.exists():
        return key_path, cert_path
    state_dir.mkdir(parents=True, exist_ok=True)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "jitprov test IdP")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=3650))
        .sign(key, hashes.SHA256())
    )
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    key_path.unlink(missing_ok=True)
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(pem)
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return key_path, cert_path


def idp_config(state_dir: Path, base_url: str, sp_metadata: Iterable[Path] = ()) -> IdPConfig:
    """pysaml2's configuration of this IdP, built in code (as example/idp2 does in a file)."""
    xmlsec = shutil.which("xmlsec1")
    if xmlsec is None:
        raise RuntimeError("the xmlsec1 binary is not on PATH (pysaml2 signs with it)")
    key_path, cert_path = ensure_keys(state_dir)
    settings: dict[str, Any] = {
        "entityid": f"{base_url}/metadata",
        "name": "jitprov test IdP",
        "xmlsec_binary": xmlsec,
        "key_file": str(key_path),
        "cert_file": str(cert_path),
        "metadata_key_usage": "signing",  # one KeyDescriptor use="signing" in the metadata
        "signing_algorithm": SIG_RSA_SHA256,
        "digest_algorithm": DIGEST_SHA256,
        "accepted_time_diff": 60,
        "service": {
            "idp": {
                "endpoints": {
                    "single_sign_on_service": [(f"{base_url}/sso/redirect", BINDING_HTTP_REDIRECT)]
                },
                "name_id_format": [NAMEID_FORMAT_PERSISTENT],
                # pysaml2 can only demand signed requests from every SP at once; whether
                # one must sign is read from its own metadata instead (see sso_redirect).
                "want_authn_requests_signed": False,
                "sign_response": True,
                "sign_assertion": True,
                "policy": {
                    "default": {
                        "lifetime": ASSERTION_LIFETIME,
                        "name_form": NAME_FORMAT_BASIC,  # picks VerbatimNames below
                        "fail_on_missing_requested": False,
                    }
                },
            }
        },
    }
    paths = [str(p) for p in sp_metadata]
    if paths:
        settings["metadata"] = {"local": paths}
    config = IdPConfig().load(settings)
    # Attributes go out under the names the user table gives them (see VerbatimNames).
    config.attribute_converters = [VerbatimNames()]
    return config


def prepare_state(state_dir: Path, base_url: str) -> Path:
    """Make the key pair if needed and (re)write the IdP metadata; its path."""
    config = idp_config(state_dir, base_url.rstrip("/"))
    path = state_dir / METADATA_FILE
    path.write_bytes(create_metadata_string(None, config=config))
    return path


class VerbatimNames(AttributeConverter):  # type: ignore[misc]  # pysaml2 has no types
    """Emit each attribute with `Name` exactly its key (NameFormat basic).

    pysaml2's bundled attribute maps would rename known names (`email` becomes
    `urn:oid:1.2.840.113549.1.9.1` with a FriendlyName), and its fallback for unknown
    names lowercases them (`firstName` → `firstname`): neither is what a rules file
    written against a real IdP's attribute names expects.
    """

    def __init__(self) -> None:
        super().__init__(NAME_FORMAT_BASIC)

    def to_(self, attrvals: dict[str, Any]) -> list[saml.Attribute]:
        return [
            saml.Attribute(name=name, name_format=self.name_format, attribute_value=do_ava(values))
            for name, values in attrvals.items()
        ]


# --- the web app ------------------------------------------------------------------------


@dataclass
class SignIn:
    """A sign-in waiting for the login form: who answers where, to what."""

    sp: str  # the SP entity ID (the response's Audience)
    acs: str  # where the response is posted (Destination, bearer Recipient)
    in_response_to: str | None  # the AuthnRequest ID; None when IdP-initiated
    relay_state: str
    expires: float  # time.monotonic()


def _page(title: str, body: str, status: int = 200) -> Response:
    document = (
        "<!DOCTYPE html>\n<html><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title></head>\n<body>\n{body}\n</body></html>\n"
    )
    return Response(document, status=status, mimetype="text/html")


def _error(status: int, message: str) -> Response:
    return _page("Error", f"<h1>Error</h1>\n<p>{html.escape(message)}</p>", status)


def _login_form(action: str, key: str, sp: str, message: str = "", status: int = 200) -> Response:
    alert = f'<p id="error" role="alert">{html.escape(message)}</p>\n' if message else ""
    body = f"""<h1>jitprov test IdP</h1>
<p>Sign in to <code>{html.escape(sp)}</code></p>
{alert}<form method="post" action="{html.escape(action)}">
  <input type="hidden" name="key" value="{html.escape(key)}">
  <p><label for="username">Username</label>
     <input id="username" name="username" autocomplete="username" autofocus></p>
  <p><label for="password">Password</label>
     <input id="password" name="password" type="password" autocomplete="current-password"></p>
  <p><button type="submit">Sign in</button></p>
</form>"""
    return _page("Sign in", body, status)


def create_app(
    state_dir: Path, base_url: str, sp_metadata: list[Path], users: dict[str, dict[str, Any]]
) -> Flask:
    """The IdP as a WSGI app at `base_url` (its entity ID is `{base_url}/metadata`),
    trusting the SPs of the `sp_metadata` files and signing in `users`."""
    base_url = base_url.rstrip("/")
    metadata_path = prepare_state(state_dir, base_url)
    idp = Server(config=idp_config(state_dir, base_url, sp_metadata))
    lock = threading.Lock()  # pysaml2's Server is not meant for concurrent use
    pending: dict[str, SignIn] = {}  # sign-ins waiting for the login form, by random key
    login_url = f"{base_url}/login"  # absolute: the form is shown under /sso/…

    app = Flask(__name__)

    def start(sign_in: SignIn) -> Response:
        """Remember the sign-in under a random key and ask who is signing in."""
        now = time.monotonic()
        with lock:
            for old in [k for k, v in pending.items() if v.expires < now]:
                del pending[old]
            key = secrets.token_urlsafe(24)
            pending[key] = sign_in
        return _login_form(login_url, key, sign_in.sp)

    def known_sp(entity_id: str) -> bool:
        return entity_id in idp.metadata.service_providers()

    @app.get("/metadata")
    def metadata() -> Response:
        return Response(metadata_path.read_bytes(), mimetype="application/samlmetadata+xml")

    @app.get("/sso/redirect")
    def sso_redirect() -> Response:
        query = request.args
        saml_request = query.get("SAMLRequest")
        if not saml_request:
            return _error(400, "No SAMLRequest in the query.")
        relay_state = query.get("RelayState")
        try:
            with lock:
                parsed = idp.parse_authn_request(saml_request, BINDING_HTTP_REDIRECT)
        except Exception as exc:  # pysaml2 raises many kinds for a malformed request
            return _error(400, f"The AuthnRequest cannot be read: {exc or type(exc).__name__}")
        message = parsed.message if parsed else None
        if message is None or message.issuer is None or not message.issuer.text:
            return _error(400, "The AuthnRequest names no issuer.")
        sp = message.issuer.text.strip()
        if not known_sp(sp):
            return _error(400, f"Unknown SP {sp!r}: its metadata was not given to this IdP.")
        descriptors = idp.metadata[sp]["spsso_descriptor"]
        must_sign = any(d.get("authn_requests_signed") == "true" for d in descriptors)
        sigalg, signature = query.get("SigAlg"), query.get("Signature")
        if signature is not None or must_sign:
            if not (sigalg and signature):
                return _error(400, f"The request is not signed, and SP {sp!r} signs its requests.")
            # pysaml2 rebuilds the signed query string from the decoded parameters
            # (SAMLRequest, RelayState, SigAlg in that order) and checks it against
            # each signing certificate of the SP's metadata.
            signed = {"SAMLRequest": saml_request, "SigAlg": sigalg, "Signature": signature}
            if relay_state is not None:
                signed["RelayState"] = relay_state
            with lock:
                certs = idp.metadata.certs(sp, "spsso", "signing")
                if not any(_verifies(signed, idp, cert) for _, cert in certs):
                    return _error(400, "The request's signature does not verify.")
        try:
            with lock:
                # The ACS the request names must be in the SP's metadata (else SAMLError);
                # without one, the metadata's HTTP-POST ACS.
                args = idp.response_args(message, [BINDING_HTTP_POST])
        except Exception as exc:
            return _error(400, f"No HTTP-POST AssertionConsumerService for this request: {exc}")
        return start(
            SignIn(
                sp,
                args["destination"],
                message.id,
                relay_state or "",
                time.monotonic() + SIGN_IN_LIFETIME,
            )
        )

    @app.get("/sso/unsolicited")
    def sso_unsolicited() -> Response:
        sp = request.args.get("sp", "")
        if not known_sp(sp):
            return _error(400, f"Unknown SP {sp!r}: its metadata was not given to this IdP.")
        try:
            with lock:
                _, acs = idp.pick_binding(
                    "assertion_consumer_service", [BINDING_HTTP_POST], entity_id=sp
                )
        except Exception:
            return _error(400, f"SP {sp!r} has no HTTP-POST AssertionConsumerService.")
        relay_state = request.args.get("RelayState", "")
        return start(SignIn(sp, acs, None, relay_state, time.monotonic() + SIGN_IN_LIFETIME))

    @app.post("/login")
    def login() -> Response:
        key = request.form.get("key", "")
        with lock:
            sign_in = pending.get(key)
        if sign_in is None or sign_in.expires < time.monotonic():
            return _error(400, "This sign-in is unknown or has expired: start again at the SP.")
        username = request.form.get("username", "")
        password = request.form.get("password", "")
        user = _authenticate(users, username, password)
        if user is None:
            return _login_form(login_url, key, sign_in.sp, "Wrong username or password", 401)
        with lock:
            if pending.pop(key, None) is None:  # taken by a concurrent submit
                return _error(400, "This sign-in has already been answered.")
            response = idp.create_authn_response(
                copy.deepcopy(user.get("attributes", {})),
                sign_in.in_response_to,
                sign_in.acs,
                sign_in.sp,
                name_id=NameID(
                    format=NAMEID_FORMAT_PERSISTENT, text=str(user.get("name_id") or username)
                ),
                authn={"class_ref": PASSWORD, "authn_auth": idp.config.entityid},
                sign_response=True,
                sign_assertion=True,
                sign_alg=SIG_RSA_SHA256,
                digest_alg=DIGEST_SHA256,
            )
            # The form pysaml2 writes puts the location into action="…" unescaped.
            http_args = idp.apply_binding(
                BINDING_HTTP_POST,
                str(response),
                html.escape(sign_in.acs, quote=True),
                sign_in.relay_state,
                response=True,
            )
        return Response(http_args["data"], status=200, mimetype="text/html")

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> Response:
        return _error(exc.code or 400, exc.description or exc.name)

    @app.errorhandler(Exception)
    def internal_error(exc: Exception) -> Response:
        app.logger.exception("internal error")
        return _error(500, f"Internal error: {type(exc).__name__}")

    return app


def _authenticate(
    users: dict[str, dict[str, Any]], username: str, password: str
) -> dict[str, Any] | None:
    """The user when the password is theirs (a user without one never signs in)."""
    user = users.get(username)
    expected = user.get("password") if user else None
    if not isinstance(expected, str) or not expected:
        return None
    return user if hmac.compare_digest(password.encode(), expected.encode()) else None


def _verifies(signed: dict[str, str], idp: Server, cert: str) -> bool:
    try:
        return bool(verify_redirect_signature(signed, idp.sec.sec_backend, cert))
    except Exception:  # an unknown SigAlg, a Signature that is not base64, …
        return False


# --- serving ----------------------------------------------------------------------------


def _starting(environ: WSGIEnvironment, start_response: StartResponse) -> list[bytes]:
    start_response("503 Service Unavailable", [("Content-Type", "text/plain")])
    return [b"starting\n"]


def bind(port: int = 0) -> tuple[BaseWSGIServer, str]:
    """A threaded werkzeug server bound on 127.0.0.1:`port` (0: a free port), not yet
    serving, and its base URL; give it its app with `serve_in_thread(app, server=...)`
    or `server.app = app`."""
    server = make_server("127.0.0.1", port, _starting, threaded=True)
    return server, f"http://127.0.0.1:{server.server_port}"


def serve_in_thread(
    app: WSGIApplication, port: int = 0, *, server: BaseWSGIServer | None = None
) -> tuple[BaseWSGIServer, str]:
    """Serve `app` from a daemon thread (on `server` when given, from `bind`; else on a
    new one at `port`); stop it with `server.shutdown()` then `server.server_close()`."""
    if server is None:
        server, _ = bind(port)
    server.app = app
    base_url = f"http://127.0.0.1:{server.server_port}"
    threading.Thread(target=server.serve_forever, name="saml-idp", daemon=True).start()
    return server, base_url


def load_users(path: Path) -> dict[str, dict[str, Any]]:
    """A users file: {"name": {"password": ..., "name_id": ..., "attributes": {...}}}."""
    users = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(users, dict):
        raise ValueError(f"{path}: expected a JSON object of users")
    for name, user in users.items():
        if not isinstance(user, dict) or not isinstance(user.get("password"), str):
            raise ValueError(f"{path}: user {name!r} needs a string password")
        attributes = user.setdefault("attributes", {})
        if not isinstance(attributes, dict) or not all(
            isinstance(v, list) and all(isinstance(x, str) for x in v) for v in attributes.values()
        ):
            raise ValueError(f"{path}: user {name!r}: attributes map names to lists of strings")
    return users


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m examples.idp.saml_idp", description="A local SAML test IdP for jitprov."
    )
    parser.add_argument("--port", type=int, default=8090, help="port on 127.0.0.1 (0: any)")
    parser.add_argument("--state", type=Path, required=True, help="folder for keys and metadata")
    parser.add_argument(
        "--sp-metadata",
        type=Path,
        action="append",
        required=True,
        metavar="FILE",
        help="an SP's metadata (jitprov connection sp-metadata CONN); repeat for more SPs",
    )
    parser.add_argument("--users", type=Path, help="users JSON (default: alice and bob)")
    args = parser.parse_args(argv)
    try:
        users = load_users(args.users) if args.users else DEFAULT_USERS
        server, base_url = bind(args.port)
        server.app = create_app(args.state, base_url, args.sp_metadata, users)
    except (OSError, ValueError, RuntimeError) as exc:
        print(f"saml_idp: error: {exc}", file=sys.stderr)
        return 1
    print(f"SAML test IdP at {base_url}  (entity ID and metadata: {base_url}/metadata)")
    print(f"metadata file: {args.state / METADATA_FILE}; users: {', '.join(users)}")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
