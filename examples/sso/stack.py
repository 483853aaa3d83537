"""Everything a browser sign-in needs, on loopback: two test IdPs, `jitprov serve` and
the demo application — for `make demo-sso` (a person clicks through it) and for the
real-browser tests (tests/engine/test_browser_sso.py).

- a SAML IdP (examples/idp/saml_idp.py, pysaml2's IdP server) that has imported the SP
  metadata `jitprov connection sp-metadata saml` prints;
- an OpenID Provider (examples/idp/oidc_provider.py, authlib's server components) with
  jitprov registered as a confidential client (client_secret_basic);
- a fresh jitprov workspace whose connections `saml` and `oidc` trust them, with a
  service token, return URLs and an error URL on the application;
- `jitprov serve` (its own process, as in production) and the application
  (examples/apps/sso_app.py), in this process.

People: alice / alice and bob / bob (the IdPs' default users).
"""

from __future__ import annotations

import contextlib
import http.client
import os
import secrets
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from werkzeug.serving import make_server

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from examples.apps import sso_app  # noqa: E402
from examples.idp import oidc_provider, saml_idp  # noqa: E402

CLIENT_ID = "jitprov-demo"
RULES = """# The demo IdPs' people: e-mail, names and groups.
let mail = lower(first(@email))

deny "no e-mail address in the sign-in" when mail == null

username     = email_local(mail)
email        = mail
given_name   = first(@firstName) ?? first(@given_name)
family_name  = first(@lastName) ?? first(@family_name)
groups       = [lower(g) for g in @groups]
groups      += "everyone"
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Stack:
    """The running stack: its addresses and workspace."""

    root: Path
    app_url: str
    serve_url: str
    saml_idp_url: str
    oidc_url: str
    token: str
    log: Path
    _stops: list[object] = field(default_factory=list, repr=False)

    @property
    def config(self) -> Path:
        return self.root / "jitprov.toml"

    @property
    def store(self) -> Path:
        return self.root / "jitprov.db"

    def idp_initiated_url(self, relay_state: str | None = None) -> str:
        """The SAML IdP's own sign-in link for this SP (IdP-initiated)."""
        from urllib.parse import urlencode

        query = {"sp": f"{self.serve_url}/metadata/saml"}
        query["RelayState"] = relay_state or f"{self.app_url}/sso/return"
        return f"{self.saml_idp_url}/sso/unsolicited?{urlencode(query)}"


def _workspace(root: Path, serve: str, app: str, idp: str, op: str) -> None:
    from engine.saml.keys import generate_key_pair

    (root / "rules").mkdir(parents=True, exist_ok=True)
    generate_key_pair(root / "certs", "sp", "jitprov demo SP")
    (root / "rules" / "people.rules").write_text(RULES)
    (root / "jitprov.toml").write_text(
        f"""# The `make demo-sso` workspace: two IdPs on loopback, one application.
[store]
path = "jitprov.db"

[sp]
entity_id = "{serve}/metadata/saml"

[serve]
token_env = "JITPROV_SERVICE_TOKEN"

[connections.saml]
protocol       = "saml2"
issuer         = "{idp}/metadata"
metadata       = "idp/idp-metadata.xml"
audience       = "{serve}/metadata/saml"
recipient      = "{serve}/acs/saml"
sp_certificate = "certs/sp.crt"
sp_key         = "certs/sp.key"
require_signed = "both"
rules          = "rules/people.rules"
attributes     = ["email", "firstName", "lastName", "groups"]
link_by        = "email"
return_urls    = ["{app}/"]
error_url      = "{app}/sso/error"

[connections.oidc]
protocol          = "oidc"
issuer            = "{op}"
discovery         = "{op}/.well-known/openid-configuration"
audience          = "{CLIENT_ID}"
redirect_uri      = "{serve}/callback/oidc"
client_secret_env = "JITPROV_DEMO_OIDC_SECRET"
rules             = "rules/people.rules"
link_by           = "email"
return_urls       = ["{app}/"]
error_url         = "{app}/sso/error"
"""
    )


def _quiet() -> None:
    """werkzeug's line per request would bury what the demo prints (jitprov's own access
    log is in serve.log)."""
    import logging

    logging.getLogger("werkzeug").setLevel(logging.WARNING)


def _serve_wsgi(app: object, port: int) -> object:
    server = make_server("127.0.0.1", port, app, threaded=True)  # type: ignore[arg-type]
    threading.Thread(target=server.serve_forever, daemon=True, name=f"wsgi-{port}").start()
    return server


def _wait_healthy(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    """Until `serve` answers /healthz (a condition, bounded: 60 s)."""
    port = int(url.rsplit(":", 1)[1])
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"jitprov serve exited: {log.read_text(errors='replace')[-2000:]}")
        with contextlib.suppress(OSError):
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            try:
                connection.request("GET", "/healthz")
                if connection.getresponse().status == 200:
                    return
            finally:
                connection.close()
        time.sleep(0.05)  # polling a condition, not waiting for time to pass
    raise RuntimeError("jitprov serve did not answer /healthz within 60 s")


@contextlib.contextmanager
def running(
    root: Path,
    *,
    app_port: int = 0,
    serve_port: int = 0,
    idp_port: int = 0,
    op_port: int = 0,
) -> Iterator[Stack]:
    """The whole stack in `root` (a new folder) while in the block; port 0: a free one."""
    _quiet()
    root = root.resolve()
    root.mkdir(parents=True, exist_ok=True)
    app_url = f"http://127.0.0.1:{app_port or free_port()}"
    serve_url = f"http://127.0.0.1:{serve_port or free_port()}"
    token = secrets.token_hex(32)
    oidc_secret = secrets.token_hex(16)
    stops: list[object] = []
    process: subprocess.Popen[bytes] | None = None
    try:
        idp_server, idp_url = saml_idp.bind(idp_port)
        stops.append(idp_server)
        op = oidc_provider.serve_in_thread(port=op_port)
        stops.append(op.server)
        saml_idp.prepare_state(root / "idp", idp_url)
        _workspace(root, serve_url, app_url, idp_url, op.url)
        client = {
            "client_id": CLIENT_ID,
            "client_secret": oidc_secret,
            "redirect_uris": [f"{serve_url}/callback/oidc"],
            "token_endpoint_auth_method": "client_secret_basic",
        }
        op.set_app(oidc_provider.create_app(root / "op", op.url, [client], oidc_provider.DEFAULT_USERS))
        # The SAML IdP imports this SP's metadata, as its administrator would.
        from engine.config import load_config
        from engine.saml.sp_metadata import sp_metadata

        sp_file = root / "sp-metadata.xml"
        sp_file.write_bytes(sp_metadata(load_config(root / "jitprov.toml").connection("saml")))
        idp_app = saml_idp.create_app(root / "idp", idp_url, [sp_file], saml_idp.DEFAULT_USERS)
        saml_idp.serve_in_thread(idp_app, server=idp_server)

        log = root / "serve.log"
        env = {
            **os.environ,
            "JITPROV_SERVICE_TOKEN": token,
            "JITPROV_DEMO_OIDC_SECRET": oidc_secret,
        }
        command = [
            sys.executable,
            "-c",
            "import sys; from tui.cli import main; sys.exit(main())",
            "--config",
            str(root / "jitprov.toml"),
            "serve",
            "--port",
            serve_url.rsplit(":", 1)[1],
            "--workers",
            "1",
        ]
        with log.open("wb") as sink:
            process = subprocess.Popen(
                command, cwd=ROOT, stderr=sink, stdout=sink, env=env, start_new_session=True
            )
        _wait_healthy(serve_url, process, log)

        settings = {
            "JITPROV_URL": serve_url,
            "JITPROV_TOKEN": token,
            "APP_URL": app_url,
            "SSO_CONNECTIONS": "saml,oidc",
        }
        stops.append(_serve_wsgi(sso_app.create_app(settings), int(app_url.rsplit(":", 1)[1])))
        yield Stack(root, app_url, serve_url, idp_url, op.url, token, log, stops)
    finally:
        if process is not None and process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, 15)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, 9)
                process.wait()
        for server in reversed(stops):
            with contextlib.suppress(Exception):
                server.shutdown()  # type: ignore[attr-defined]
                server.server_close()  # type: ignore[attr-defined]
