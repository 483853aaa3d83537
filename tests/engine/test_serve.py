"""`jitprov serve`: SAML POST binding and id_token deliveries answered with the result.

Routes and shapes through Starlette's in-process client (on SQLite and PostgreSQL);
framing, descriptors and signals through a real `jitprov serve` on a loopback port.
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from engine.config import load_config
from engine.service import create_app
from engine.store import SqliteStore

if str(Path(__file__).parent) not in sys.path:  # tests/engine is not an importable package
    sys.path.insert(0, str(Path(__file__).parent))
import provision_fixtures
from serve_fixtures import Served, demo_workspace, free_port, fresh_token

DEMO = Path(__file__).resolve().parents[2] / "examples" / "demo"
FORM = "application/x-www-form-urlencoded"


@pytest.fixture
def workspace(tmp_path: Path, store_backend: str) -> Path:
    """A copy of the demo workspace, on SQLite or on PostgreSQL; its config's path."""
    shutil.copytree(DEMO, tmp_path / "demo", ignore=shutil.ignore_patterns("*.db*"))
    config = tmp_path / "demo" / "jitprov.toml"
    if provision_fixtures.NEW_DATABASE is not None:  # the PostgreSQL variant
        url = provision_fixtures.NEW_DATABASE()
        config.write_text(config.read_text().replace('path = "jitprov.db"', f'url = "{url}"'))
    return config


@pytest.fixture
def client(workspace: Path) -> Iterator[TestClient]:
    with TestClient(create_app(load_config(workspace))) as test_client:
        yield test_client


def post(client: TestClient, path: str, body: bytes, content_type: str) -> tuple[int, Any]:
    response = client.post(path, content=body, headers={"Content-Type": content_type})
    return response.status_code, response.json()


def form(**fields: str) -> bytes:
    return urllib.parse.urlencode(fields).encode()


def test_a_signed_response_is_provisioned_and_a_replay_refused(client: TestClient) -> None:
    fresh = fresh_token()
    status, result = post(client, "/acs/okta", form(SAMLResponse=fresh, RelayState="/h"), FORM)
    assert (status, result["outcome"]) == (200, "created"), result
    assert result["user"]["username"] == "grace.hopper"
    status, result = post(client, "/acs/okta", form(SAMLResponse=fresh), FORM)
    assert (status, result["reason"]) == (401, "replay")
    token = base64.b64encode((DEMO / "samples" / "okta-engineer.xml").read_bytes()).decode()
    # The demo's tokens were minted for 2024-05-01: at the real clock they are expired.
    status, result = post(client, "/acs/okta", form(SAMLResponse=token), FORM)
    assert (status, result["outcome"], result["reason"]) == (401, "rejected", "expired")
    assert result["subject"] == "Ada.Lovelace@example.com"
    assert set(result) == {
        "outcome",
        "connection",
        "subject",
        "user",
        "changes",
        "reason",
        "message",
        "sso",
        "trace",
    }


def test_routing_and_bad_requests(client: TestClient) -> None:
    assert post(client, "/acs/nope", form(SAMLResponse="x"), FORM)[0] == 404
    assert client.post("/elsewhere", content=b"").status_code == 404
    status, body = post(client, "/oidc/okta", form(id_token="x"), FORM)
    assert status == 404 and "POST to /acs/okta" in body["error"]
    status, body = post(client, "/acs/okta", form(RelayState="x"), FORM)
    assert status == 400 and "SAMLResponse" in body["error"]
    assert post(client, "/acs/okta", b"{", "application/json")[0] == 400
    assert post(client, "/acs/okta", b"x", "text/plain")[0] == 400
    status, body = post(client, "/acs/okta", form(SAMLResponse="not a token"), FORM)
    assert (status, body["outcome"], body["reason"]) == (401, "rejected", "malformed")
    assert client.get("/acs/okta").status_code == 405
    assert client.get("/healthz").json() == {"status": "ok"}


def test_readyz_names_the_rules_in_use(client: TestClient) -> None:
    response = client.get("/readyz")
    assert response.status_code == 200
    ready = response.json()
    assert ready["status"] == "ready"
    assert set(ready["rules_sha256"]) == set(load_config(DEMO / "jitprov.toml").connections)


def test_an_oversized_body_is_refused_unread(client: TestClient) -> None:
    limit = load_config(DEMO / "jitprov.toml").connection("okta").max_token_bytes
    status, body = post(client, "/acs/okta", b"SAMLResponse=" + b"A" * (3 * limit), FORM)
    assert status == 413 and "too large" in body["error"]


def test_a_lone_surrogate_or_deep_json_is_an_answer_not_a_dropped_connection(
    client: TestClient,
) -> None:
    """A JSON body's `"\\ud800"` dropped the connection (UnicodeEncodeError), and 20,000
    `[` a RecursionError: now a rejected result with an audit row, and a 400."""
    status, body = post(client, "/acs/okta", b'{"SAMLResponse": "\\ud800"}', "application/json")
    assert (status, body["outcome"], body["reason"]) == (401, "rejected", "malformed")
    status, body = post(client, "/acs/okta", b"[" * 20_000, "application/json")
    assert status == 400 and "nested too deeply" in body["error"]


# --- a real server ---------------------------------------------------------------------


@pytest.fixture
def running(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    """`jitprov serve --workers 1` on a free loopback port, ready (healthz answers)."""
    with Served(demo_workspace(tmp_path)) as served:
        assert served.process is not None
        yield served.process, served.port


def _responses(raw: bytes) -> list[int]:
    """The status codes of the HTTP/1.1 responses in `raw`, in order."""
    return [int(line.split()[1]) for line in raw.split(b"\r\n") if line.startswith(b"HTTP/1.1 ")]


def test_an_early_answer_never_reads_its_body_as_the_next_request(
    running: tuple[subprocess.Popen[bytes], int],
) -> None:
    """The old server answered 404 and then parsed the unread body as the next request
    on the keep-alive connection: behind a proxy, one user's answer reached another."""
    _, port = running
    smuggled = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
    first = (
        b"POST /acs/nope HTTP/1.1\r\nHost: x\r\nContent-Type: " + FORM.encode() + b"\r\n"
        b"Content-Length: " + str(len(smuggled)).encode() + b"\r\n\r\n" + smuggled
    )
    second = b"GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(first + second)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    statuses = _responses(received)
    assert statuses[0] == 404
    assert b'"status":"ok"' not in received  # the smuggled /healthz was never answered
    assert statuses[1:] in ([], [200])  # closed, or the real next request answered


def _descriptors(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def test_descriptors_stay_flat_over_2000_requests_without_keep_alive(
    running: tuple[subprocess.Popen[bytes], int],
) -> None:
    process, port = running
    bodies = [form(SAMLResponse="x"), b"junk"]
    for n in range(200):  # warm up the thread pool and the store
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        connection.request("POST", "/acs/okta", body=bodies[n % 2], headers={"Content-Type": FORM})
        connection.getresponse().read()
        connection.close()
    before = _descriptors(process.pid)
    for n in range(2000):
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        path = "/acs/okta" if n % 3 else "/acs/nope"
        connection.request("POST", path, body=bodies[n % 2], headers={"Content-Type": FORM})
        connection.getresponse().read()
        connection.close()
    assert _descriptors(process.pid) <= before + 4


def test_sigterm_stops_the_server_cleanly(running: tuple[subprocess.Popen[bytes], int]) -> None:
    process, _ = running
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=30) == 0


# --- the service token -----------------------------------------------------------------


def test_with_a_service_token_only_the_application_may_call(workspace: Path) -> None:
    with TestClient(create_app(load_config(workspace), token="s3cret-token")) as client:
        body = form(SAMLResponse=fresh_token())
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "s3cret-token"}):
            response = client.post(
                "/acs/okta", content=body, headers={"Content-Type": FORM, **headers}
            )
            assert response.status_code == 401 and "Bearer" in response.json()["error"]
            assert response.headers["WWW-Authenticate"] == "Bearer"
        assert client.get("/readyz").status_code == 401
        assert client.get("/healthz").status_code == 200  # liveness stays open
        good = {"Content-Type": FORM, "Authorization": "Bearer s3cret-token"}
        response = client.post("/acs/okta", content=body, headers=good)
        assert (response.status_code, response.json()["outcome"]) == (200, "created")


def _serve(workspace: Path, *argv: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    command = [sys.executable, "-c", "import sys; from tui.cli import main; sys.exit(main())"]
    done = subprocess.run(
        [*command, "--config", str(workspace), "serve", *argv],
        cwd=Path(__file__).resolve().parents[2],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
        check=False,
    )
    return done.returncode, done.stderr


def test_serving_beyond_loopback_without_a_token_is_refused_at_start(tmp_path: Path) -> None:
    shutil.copytree(DEMO, tmp_path / "demo", ignore=shutil.ignore_patterns("*.db*"))
    config = tmp_path / "demo" / "jitprov.toml"
    code, err = _serve(config, "--host", "0.0.0.0", "--port", str(free_port()))
    assert code == 1 and "without a service token" in err and "Traceback" not in err
    config.write_text(config.read_text() + '\n[serve]\ntoken_env = "JITPROV_TEST_TOKEN"\n')
    code, err = _serve(config, "--host", "0.0.0.0", "--port", str(free_port()))
    assert code == 1 and "JITPROV_TEST_TOKEN" in err and "not set" in err
    config.write_text(config.read_text().replace("JITPROV_TEST_TOKEN", "not a name!"))
    code, err = _serve(config)
    assert code == 1 and "serve.token_env" in err


# --- the access log ----------------------------------------------------------------------


def test_the_access_log_has_one_line_per_request_and_never_the_token(
    workspace: Path, caplog: pytest.LogCaptureFixture
) -> None:
    fresh = fresh_token()
    caplog.set_level("INFO", logger="jitprov.access")
    with TestClient(create_app(load_config(workspace), log_format="json")) as client:
        response = client.post(
            "/acs/okta",
            content=form(SAMLResponse=fresh),
            headers={"Content-Type": FORM, "X-Request-Id": "req-42"},
        )
        assert response.headers["X-Request-Id"] == "req-42"
        client.post("/acs/okta", content=form(SAMLResponse=fresh), headers={"Content-Type": FORM})
        client.get("/healthz", headers={"X-Request-Id": "bad id with spaces"})
    lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == "jitprov.access"]
    assert [(x["route"], x["status"], x["outcome"], x["reason"]) for x in lines] == [
        ("/acs/{connection}", 200, "created", None),
        ("/acs/{connection}", 401, "rejected", "replay"),
        ("/healthz", 200, None, None),
    ]
    assert lines[0]["request_id"] == "req-42" and lines[0]["connection"] == "okta"
    assert lines[2]["request_id"] != "bad id with spaces"
    assert all(isinstance(x["duration_ms"], float) for x in lines)
    logged = caplog.text
    assert fresh[:40] not in logged and "grace" not in logged.lower()


def test_a_port_in_use_is_a_clear_error_at_start(tmp_path: Path) -> None:
    config = demo_workspace(tmp_path)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code, err = _serve(config, "--port", str(port), "--workers", "1")
    assert code == 1, err  # a usage error (3 would say "rejected")
    assert f"cannot listen on 127.0.0.1:{port}: Address already in use" in err
    assert "Traceback" not in err and "serving on" not in err


def test_a_thread_s_provisioner_is_closed_once_its_thread_has_ended(workspace: Path) -> None:
    """anyio retires idle worker threads; the store connections of those threads must not
    stay open (each pause between bursts of /login or /readyz would leave more)."""
    import threading

    from engine.service.app import _Provisioners

    provisioners = _Provisioners(load_config(workspace), {})
    stores: list[Any] = []

    def sign_in_thread() -> None:
        stores.append(provisioners.get().store())

    for _ in range(5):
        thread = threading.Thread(target=sign_in_thread)
        thread.start()
        thread.join()
    assert provisioners.count() == 1  # the last thread's; the four before it were closed
    if isinstance(stores[0], SqliteStore):
        for store in stores[:4]:
            with pytest.raises(sqlite3.ProgrammingError):  # closed
                store.conn.execute("SELECT 1")
        assert stores[4].conn.execute("SELECT 1").fetchone() == (1,)
    provisioners.close()
    assert provisioners.count() == 0
