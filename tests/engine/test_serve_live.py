"""`jitprov serve` as it runs in production: worker processes behind a real socket.

Metrics summed over workers, reloads (a good and a broken rules file, by SIGHUP and by
watching), slow and half-sent requests, a full pipeline, and SIGTERM in the middle of a
burst of sign-ins. Every wait is on a condition (an answer, a log line, a status).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.parse
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

import engine.service.app as service_app
from engine.config import load_config
from engine.service import create_app

if str(Path(__file__).parent) not in sys.path:  # tests/engine is not an importable package
    sys.path.insert(0, str(Path(__file__).parent))
from serve_fixtures import CLI, Served, demo_workspace, fresh_token

FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def sign_in(served: Served, token: str, **extra: str) -> tuple[int, dict[str, Any]]:
    body = urllib.parse.urlencode({"SAMLResponse": token, **extra}).encode()
    status, _, answer = served.request("POST", "/acs/okta", body, FORM)
    return status, json.loads(answer)


def wait_for(
    condition: Callable[[], bool], what: str, seconds: float = 60, served: Served | None = None
) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        log = served.log()[-3000:] if served else ""
        assert time.monotonic() < deadline, f"timed out waiting for {what}\n{log}"
        time.sleep(0.05)  # polling the condition


def metric(text: str, name: str) -> float:
    """The value of the sample line starting with `name` (0 when absent)."""
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def scrape(served: Served) -> str:
    status, headers, body = served.request("GET", "/metrics")
    assert status == 200 and headers["content-type"].startswith("text/plain")
    return body.decode()


def readyz(served: Served) -> dict[str, Any]:
    status, _, body = served.request("GET", "/readyz")
    assert status == 200, body
    result: dict[str, Any] = json.loads(body)
    return result


def audit_versions(config: Path) -> list[str | None]:
    with sqlite3.connect(config.parent / "jitprov.db") as db:
        return [row[0] for row in db.execute("SELECT rules_sha256 FROM audit ORDER BY id")]


# --- metrics -------------------------------------------------------------------------------


def test_metrics_sum_every_worker(tmp_path: Path) -> None:
    config = demo_workspace(tmp_path)
    started = time.perf_counter()
    with Served(config, workers=2) as served:
        tokens = [fresh_token(person=f"metric{n}") for n in range(6)]
        for token in tokens:
            assert sign_in(served, token)[0] == 200
        for token in tokens[:2]:
            assert sign_in(served, token)[1]["reason"] == "replay"
        assert served.request("POST", "/acs/nope", b"x", FORM)[0] == 404
        assert served.request("POST", "/acs/okta", b"junk=1", FORM)[0] == 400
        # Whichever worker answers the scrape, the counts are the service's.
        for _ in range(4):
            text = scrape(served)
            created = 'jitprov_signins_total{connection="okta",outcome="created",reason=""}'
            assert metric(text, created) == 6
            replay = 'jitprov_signins_total{connection="okta",outcome="rejected",reason="replay"}'
            assert metric(text, replay) == 2
            assert metric(text, 'jitprov_signin_seconds_count{connection="okta"}') == 8
            assert metric(text, 'jitprov_refused_requests_total{status="404"}') == 1
            assert metric(text, 'jitprov_refused_requests_total{status="400"}') == 1
            # Eight writes held the SQLite store's turn: some time, less than all of it.
            held = metric(text, "jitprov_store_turn_seconds_total")
            assert 0 < held < time.perf_counter() - started


def test_metrics_need_the_service_token(tmp_path: Path) -> None:
    config = demo_workspace(tmp_path)
    config.write_text(config.read_text() + '\n[serve]\ntoken_env = "JITPROV_TEST_TOKEN"\n')
    with Served(config, env={"JITPROV_TEST_TOKEN": "t0ken-for-tests"}) as served:
        assert sign_in(served, fresh_token(person="counted"))[0] == 200  # with the token
        created = 'jitprov_signins_total{connection="okta",outcome="created",reason=""}'
        assert metric(scrape(served), created) == 1
        status, _, _ = served.request("GET", "/metrics", headers={"Authorization": "Bearer no"})
        assert status == 401


# --- reloads -----------------------------------------------------------------------------


def test_a_changed_rules_file_is_checked_then_served_and_a_broken_one_never(
    tmp_path: Path,
) -> None:
    config = demo_workspace(tmp_path)
    rules = config.parent / "rules" / "okta.rules"
    good = rules.read_text()
    with Served(config, workers=2) as served:
        first = readyz(served)["rules_sha256"]["okta"]
        assert sign_in(served, fresh_token(person="before"))[0] == 200

        rules.write_text(good + "\nthis is = broken(\n")
        wait_for(lambda: "reload refused" in served.log(), "the refusal", served=served)
        assert "E001" in served.log() and "okta.rules:" in served.log()  # the diagnostics
        status, answer = sign_in(served, fresh_token(person="during"))
        assert (status, answer["outcome"]) == (200, "created")  # the running rules serve on
        assert readyz(served)["rules_sha256"]["okta"] == first

        rules.write_text(good + '\ngroups += "reloaded"\n')
        wait_for(lambda: "reloaded: okta rules" in served.log(), "every worker replaced")
        assert readyz(served)["rules_sha256"]["okta"] != first
        status, answer = sign_in(served, fresh_token(person="after"))
        assert status == 200 and "reloaded" in answer["user"]["groups"]
        text = scrape(served)
        assert metric(text, 'jitprov_reloads_total{result="refused"}') >= 1
        assert metric(text, 'jitprov_reloads_total{result="applied"}') == 1
    versions = audit_versions(config)
    assert versions[0] == versions[1] == first and versions[-1] != first


def workers_of(served: Served) -> list[int]:
    """The worker processes of a running serve (not multiprocessing's resource tracker)."""
    found = []
    for child in Path(f"/proc/{served.pid}/task/{served.pid}/children").read_text().split():
        cmdline = Path(f"/proc/{child}/cmdline").read_bytes()
        if b"spawn_main" in cmdline:
            found.append(int(child))
    return found


def test_a_worker_replaced_while_the_rules_are_broken_serves_the_checked_version(
    tmp_path: Path,
) -> None:
    # A worker that dies is replaced by the supervisor. The replacement must start from
    # the version that was checked, not from the files as they are now: before, it read
    # the broken rules, could not start, and uvicorn then stopped the whole service.
    config = demo_workspace(tmp_path)
    rules = config.parent / "rules" / "okta.rules"
    with Served(config, workers=1) as served:
        first = readyz(served)["rules_sha256"]["okta"]
        rules.write_text(rules.read_text() + "\nthis is = broken(\n")
        wait_for(lambda: "reload refused" in served.log(), "the refusal", served=served)
        (dead,) = workers_of(served)
        os.kill(dead, signal.SIGKILL)
        wait_for(lambda: workers_of(served) not in ([], [dead]), "a new worker", served=served)

        def answers() -> bool:
            try:
                return readyz(served)["rules_sha256"]["okta"] == first
            except (OSError, AssertionError):
                return False

        wait_for(answers, "the new worker serving", served=served)
        assert served.process is not None and served.process.poll() is None  # still up
        status, answer = sign_in(served, fresh_token(person="replaced"))
        assert (status, answer["outcome"]) == (200, "created")
        assert "failed to start" not in served.log()
    assert audit_versions(config) == [first]


def test_sighup_reloads_and_a_broken_config_keeps_the_running_one(tmp_path: Path) -> None:
    config = demo_workspace(tmp_path)
    rules = config.parent / "rules" / "okta.rules"
    with Served(config, "--no-watch", workers=1) as served:
        first = readyz(served)["rules_sha256"]["okta"]
        original = config.read_text()
        config.write_text(original.replace('mode           = "create-and-update"', "mode = 7", 1))
        served.process.send_signal(signal.SIGHUP)  # type: ignore[union-attr]
        wait_for(lambda: "reload refused" in served.log(), "the refusal", served=served)
        assert "mode" in served.log().split("reload refused", 1)[1]
        assert sign_in(served, fresh_token(person="kept"))[0] == 200

        config.write_text(original)
        rules.write_text(rules.read_text() + '\ngroups += "by-sighup"\n')
        assert readyz(served)["rules_sha256"]["okta"] == first
        served.process.send_signal(signal.SIGHUP)  # type: ignore[union-attr]
        wait_for(lambda: "reloaded: okta rules" in served.log(), "the worker replaced")
        assert readyz(served)["rules_sha256"]["okta"] != first
        status, answer = sign_in(served, fresh_token(person="hup"))
        assert status == 200 and "by-sighup" in answer["user"]["groups"]


# --- slow, half-sent and too many -----------------------------------------------------------


def _closed_or_answered(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes (a reset counts as closed)."""
    received = b""
    try:
        while chunk := sock.recv(65536):
            received += chunk
    except ConnectionResetError:
        pass
    return received


def test_slow_and_half_sent_requests_are_cut_off_and_others_still_served(
    tmp_path: Path,
) -> None:
    config = demo_workspace(tmp_path)
    with Served(config, workers=1) as served:
        heads, bodies = [], []
        for _ in range(40):  # a head that never ends
            sock = socket.create_connection(("127.0.0.1", served.port), timeout=30)
            sock.sendall(b"POST /acs/okta HTTP/1.1\r\nHost: x\r\nContent-Ty")
            heads.append(sock)
        for _ in range(40):  # a body that never arrives
            sock = socket.create_connection(("127.0.0.1", served.port), timeout=30)
            sock.sendall(
                b"POST /acs/okta HTTP/1.1\r\nHost: x\r\nContent-Type: "
                b"application/x-www-form-urlencoded\r\nContent-Length: 5000\r\n\r\nSAMLR"
            )
            bodies.append(sock)
        silent = socket.create_connection(("127.0.0.1", served.port), timeout=30)
        # Meanwhile, a sign-in is served at once.
        status, answer = sign_in(served, fresh_token(person="patient"))
        assert (status, answer["outcome"]) == (200, "created")
        # Each socket waits at most 30 s (its timeout, which fails the test): the
        # server's 10 s deadlines close them first.
        for sock in [*heads, silent]:
            assert b"HTTP/1.1 200" not in _closed_or_answered(sock)
            sock.close()
        for sock in bodies:
            assert _closed_or_answered(sock).startswith(b"HTTP/1.1 408")
            sock.close()
        assert sign_in(served, fresh_token(person="later"))[0] == 200


async def test_a_saturated_worker_answers_503_with_retry_after(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One slot and a queue of one: the second sign-in waits its turn, the third is shed."""
    app = create_app(load_config(demo_workspace(tmp_path)), slots=1, queue=1, threads=True)
    release, entered = threading.Event(), threading.Event()
    provision = service_app._provision

    def held(*args: Any) -> Any:
        entered.set()
        assert release.wait(30)
        return provision(*args)

    monkeypatch.setattr(service_app, "_provision", held)
    transport = httpx.ASGITransport(app=app)

    def body(person: str) -> str:
        return urllib.parse.urlencode({"SAMLResponse": fresh_token(person=person)})

    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://jitprov") as client:
            first = asyncio.create_task(client.post("/acs/okta", content=body("a"), headers=FORM))
            while not entered.is_set():  # the one slot is taken
                await asyncio.sleep(0.01)
            queued = asyncio.create_task(client.post("/acs/okta", content=body("b"), headers=FORM))
            while app.state.load.admitted < 2:  # the second waits for the slot
                await asyncio.sleep(0.01)
            busy = await client.post("/acs/okta", content=body("c"), headers=FORM)
            assert busy.status_code == 503 and busy.headers["Retry-After"] == "1"
            assert "busy" in busy.json()["error"]
            release.set()
            for task in (first, queued):
                done = await task
                assert (done.status_code, done.json()["outcome"]) == (200, "created")
            metrics = (await client.get("/metrics")).text
            assert metric(metrics, 'jitprov_refused_requests_total{status="503"}') == 1
    finally:
        release.set()
        app.state.provisioners.close()


# --- SIGTERM in the middle of sign-ins -------------------------------------------------------


def test_sigterm_during_a_burst_finishes_what_it_accepted_and_half_writes_nothing(
    tmp_path: Path,
) -> None:
    config = demo_workspace(tmp_path)
    people = [f"burst{n}" for n in range(48)]
    tokens = {person: fresh_token(person=person) for person in people}
    answered: dict[str, int] = {}
    lock = threading.Lock()
    with Served(config, workers=2) as served:

        def one(person: str) -> None:
            try:
                status, _ = sign_in(served, tokens[person])
            except (OSError, ValueError):  # refused or cut off once it stops accepting
                return
            with lock:
                answered[person] = status

        with ThreadPoolExecutor(max_workers=16) as pool:
            futures = [pool.submit(one, person) for person in people]
            wait_for(lambda: len(answered) >= 8, "the first answers")
            served.process.send_signal(signal.SIGTERM)  # type: ignore[union-attr]
            for future in futures:
                future.result()
        assert served.process.wait(timeout=60) == 0  # type: ignore[union-attr]
    assert set(answered.values()) == {200}  # nothing accepted was dropped or failed
    with sqlite3.connect(config.parent / "jitprov.db") as db:
        stored = {row[0] for row in db.execute("SELECT username FROM users")}
        audited = db.execute("SELECT count(*) FROM audit WHERE outcome = 'created'").fetchone()
    # Every answered sign-in is stored with its audit row; no other account exists.
    assert stored == set(answered) and audited[0] == len(answered)


# --- every route and status, over a socket ---------------------------------------------------


def test_every_route_and_status_through_a_running_server(tmp_path: Path) -> None:
    config = demo_workspace(tmp_path)
    config.write_text(config.read_text() + '\n[serve]\ntoken_env = "JITPROV_TEST_TOKEN"\n')
    with Served(config, env={"JITPROV_TEST_TOKEN": "route-token"}) as served:
        fresh = fresh_token(person="routes")
        form = urllib.parse.urlencode({"SAMLResponse": fresh}).encode()
        as_json = json.dumps({"SAMLResponse": fresh_token(person="json")}).encode()
        huge = {"Content-Length": str(10**9), **FORM}
        cases: list[tuple[str, str, bytes | None, dict[str, str], int]] = [
            ("POST", "/acs/okta", form, FORM, 200),
            ("POST", "/acs/okta", form, FORM, 401),  # the replay
            ("POST", "/acs/okta", as_json, {"Content-Type": "application/json"}, 200),
            (
                "POST",
                "/acs/okta",
                urllib.parse.urlencode(
                    {"SAMLResponse": fresh_token("okta-contractor.toml")}
                ).encode(),
                FORM,
                403,
            ),
            ("POST", "/acs/okta", form, {**FORM, "Authorization": "Bearer wrong"}, 401),
            ("POST", "/acs/okta", b"RelayState=x", FORM, 400),
            ("POST", "/acs/okta", b"{", {"Content-Type": "application/json"}, 400),
            ("POST", "/acs/okta", b"SAMLResponse=x", {"Content-Type": "text/plain"}, 400),
            ("POST", "/acs/okta", b"\xff\xfe", FORM, 400),
            ("POST", "/acs/nope", form, FORM, 404),
            ("POST", "/oidc/okta", b"id_token=x", FORM, 404),
            ("GET", "/acs/okta", None, {}, 405),
            ("POST", "/acs/okta", b"", huge, 413),
            ("GET", "/healthz", None, {"Authorization": "none"}, 200),
            ("GET", "/readyz", None, {}, 200),
            ("GET", "/readyz", None, {"Authorization": "Bearer wrong"}, 401),
            ("GET", "/metrics", None, {}, 200),
        ]
        for method, path, body, headers, expected in cases:
            status, _, answer = served.request(method, path, body, headers)
            assert status == expected, (method, path, headers, answer[:200])
            if path != "/metrics":
                json.loads(answer)  # every answer is JSON, errors included
        # A malformed request is uvicorn's to answer, without reaching the app.
        with socket.create_connection(("127.0.0.1", served.port), timeout=10) as sock:
            sock.sendall(b"POST /acs/okta HTTP/1.1\r\nHost: x\r\nContent-Length: \xc2\xb2\r\n\r\n")
            assert _closed_or_answered(sock).startswith(b"HTTP/1.1 400")
        # The store unusable: the sign-in is an error (503), and /readyz says not ready.
        store = config.parent / "jitprov.db"
        for leftover in config.parent.glob("jitprov.db*"):
            leftover.unlink()
        store.mkdir()
    with Served(config, env={"JITPROV_TEST_TOKEN": "route-token"}) as served:
        status, answer = sign_in(served, fresh_token(person="nostore"))
        assert (status, answer["outcome"]) == (503, "error")
        status, _, body = served.request("GET", "/readyz")
        assert status == 503 and json.loads(body)["status"] == "unavailable"


def test_a_kept_alive_connection_is_closed_after_its_hundredth_request(tmp_path: Path) -> None:
    """So that the application's connections spread over the workers again (a kept-alive
    connection stays with the worker that accepted it, however busy that one is)."""
    from engine.service.server import REQUESTS_PER_CONNECTION

    with Served(demo_workspace(tmp_path)) as served:
        connection = served.connect()
        for n in range(1, REQUESTS_PER_CONNECTION + 1):
            connection.request("GET", "/healthz")
            response = connection.getresponse()
            assert response.status == 200
            response.read()
            closing = response.getheader("connection", "").lower() == "close"
            assert closing == (n == REQUESTS_PER_CONNECTION), n
        connection.close()


def worker_connections(served: Served) -> list[float]:
    """Each worker's open connections, from /metrics (the scrape's own included)."""
    text = scrape(served)
    return [metric(text, f'jitprov_worker_connections{{worker="{n}"}}') for n in range(2)]


def test_kept_alive_connections_spread_evenly_over_the_workers(tmp_path: Path) -> None:
    """An application's pool opening its connections in a burst: with one shared
    listening socket, the worker that had just answered took nearly all of them, the
    other idling. Now each worker listens on its own socket (the kernel spreads new
    connections) and one holding more than its share answers `Connection: close`."""
    with Served(demo_workspace(tmp_path), workers=2) as served:
        pool = [served.connect() for _ in range(12)]
        for connection in pool:  # connected together, before any request
            connection.connect()
        closes = 0

        def one_round() -> None:
            nonlocal closes
            for n, connection in enumerate(pool):
                connection.request("GET", "/healthz")
                response = connection.getresponse()
                response.read()
                assert response.status == 200
                if response.getheader("connection", "").lower() == "close":
                    closes += 1
                    connection.close()
                    pool[n] = served.connect()  # as a client's pool does
            for connection in pool:  # every connection in the pool is open again
                if connection.sock is None:
                    connection.connect()

        def settled() -> bool:
            """A whole round of requests without a `Connection: close`."""
            before = closes
            one_round()
            return closes == before

        wait_for(settled, "the connections to settle over the two workers", served=served)
        counts = worker_connections(served)  # the scrape's own connection among them
        assert sum(counts) == len(pool) + 1 and max(counts) <= 7, counts  # 6 and 6, + 1
        assert closes <= 2 * len(pool)  # the excess moved, not all, again and again
        for _ in range(3):  # and even, they stay where they are
            before = closes
            one_round()
            assert closes == before
        for connection in pool:
            connection.close()


def test_a_second_serve_on_the_same_port_is_refused(tmp_path: Path) -> None:
    """The workers' sockets set SO_REUSEPORT, which would let a second `serve` of the
    same user share the port and take half of the first one's connections: the start
    probes the address without it, and refuses."""
    config = demo_workspace(tmp_path)
    with Served(config, workers=2) as served:
        second = subprocess.run(
            [*CLI, "--config", str(config), "serve", "--port", str(served.port)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert second.returncode == 1, second.stderr
        assert f"cannot listen on 127.0.0.1:{served.port}: Address already in use" in (
            second.stderr
        )
        assert "Traceback" not in second.stderr
        assert readyz(served)["status"] == "ready"  # the first one serves on


def test_a_unix_socket_serves_and_is_removed_at_exit(tmp_path: Path) -> None:
    """`--uds PATH`: the workers share the one socket (nothing closes a connection to
    balance them there: the worker closing it would most likely accept it again)."""
    config = demo_workspace(tmp_path)
    path = tmp_path / "serve.sock"
    log = (tmp_path / "uds.log").open("wb")
    command = [*CLI, "--config", str(config), "serve", "--uds", str(path), "--workers", "2"]
    process = subprocess.Popen(command, stderr=log, start_new_session=True)
    try:
        with httpx.Client(transport=httpx.HTTPTransport(uds=str(path)), timeout=10) as client:

            def answers() -> bool:
                assert process.poll() is None, (tmp_path / "uds.log").read_text()
                try:
                    return client.get("http://jitprov/healthz").status_code == 200
                except httpx.TransportError:
                    return False

            wait_for(answers, "serve to answer on its Unix socket")
            body = urllib.parse.urlencode({"SAMLResponse": fresh_token(person="uds")})
            answer = client.post("http://jitprov/acs/okta", content=body, headers=FORM)
            assert answer.status_code == 200, answer.text
            assert answer.json()["outcome"] == "created"
            transports = [httpx.HTTPTransport(uds=str(path)) for _ in range(4)]
            pool = [httpx.Client(transport=t, timeout=10) for t in transports]
            for _ in range(10):  # 4 kept-alive connections, however they lie: none closed
                for other in pool:
                    said = other.get("http://jitprov/healthz").headers.get("connection")
                    assert said != "close"
            text = client.get("http://jitprov/metrics").text
            assert (
                sum(
                    float(line.rsplit(" ", 1)[1])
                    for line in text.splitlines()
                    if line.startswith("jitprov_worker_connections{")
                )
                == len(pool) + 1
            )
            for other in pool:
                other.close()
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
        assert not path.exists()
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
        log.close()


def listening_sockets(served: Served) -> dict[int, set[int]]:
    """Worker pid → the inodes of the listening TCP sockets it holds on served.port."""
    listening = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == served.port:
            listening.add(int(fields[9]))  # state LISTEN, our port: its inode
    held = {}
    for pid in workers_of(served):
        inodes = set()
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            with contextlib.suppress(OSError):
                target = os.readlink(fd)
                if target.startswith("socket:["):
                    inodes.add(int(target[8:-1]))
        held[pid] = inodes & listening
    return held


def test_each_worker_has_a_listening_socket_and_its_replacement_takes_it_over(
    tmp_path: Path,
) -> None:
    """One socket per worker slot, held by the supervisor: the kernel spreads new
    connections over them, and a connection waiting at a slot's socket while a reload
    replaces its worker is accepted by the new worker, not reset with the old one."""
    config = demo_workspace(tmp_path)
    with Served(config, "--no-watch", workers=2) as served:
        before = listening_sockets(served)
        assert len(before) == 2 and all(len(inodes) == 1 for inodes in before.values())
        slots = set().union(*before.values())
        assert len(slots) == 2  # a socket each, not one shared
        served.process.send_signal(signal.SIGHUP)  # type: ignore[union-attr]
        wait_for(lambda: "reloaded:" in served.log(), "both workers replaced", served=served)
        after = listening_sockets(served)
        assert not set(after) & set(before)  # new worker processes...
        assert set().union(*after.values()) == slots  # ...on the same two sockets
        assert sign_in(served, fresh_token(person="after-reload"))[0] == 200


# --- pruning -------------------------------------------------------------------------------


def test_serve_prunes_expired_rows_and_old_audit_periodically(tmp_path: Path) -> None:
    config = demo_workspace(tmp_path)
    text = config.read_text()
    config.write_text(text + "\n[retention]\naudit_days = 30\nprune_every_seconds = 1\n")
    with Served(config) as served:
        assert sign_in(served, fresh_token(person="fresh"))[0] == 200
        with sqlite3.connect(config.parent / "jitprov.db") as db:  # rows past their time
            db.execute(
                "INSERT INTO seen_tokens (connection, token_id, expires_at)"
                " VALUES ('okta', '_old', '2020-01-01T00:00:00Z')"
            )
            db.execute(
                "INSERT INTO audit (at, connection, outcome) VALUES ('2020-01-01T00:00:00Z',"
                " 'okta', 'created')"
            )

        def pruned() -> bool:
            with sqlite3.connect(config.parent / "jitprov.db") as db:
                old = db.execute("SELECT COUNT(*) FROM audit WHERE at < '2021'").fetchone()[0]
                seen = db.execute("SELECT COUNT(*) FROM seen_tokens WHERE token_id = '_old'")
                return old == 0 and seen.fetchone()[0] == 0

        wait_for(pruned, "the supervisor's pruning", served=served)
        assert "pruned" in served.log()
        # The sign-in's own rows are kept: its audit row, and its replay entry.
        with sqlite3.connect(config.parent / "jitprov.db") as db:
            assert db.execute("SELECT COUNT(*) FROM audit").fetchone()[0] == 1
            assert db.execute("SELECT COUNT(*) FROM seen_tokens").fetchone()[0] == 1
