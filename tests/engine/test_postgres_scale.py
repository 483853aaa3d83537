"""Scale-out: three `jitprov serve` processes (three application servers, 1 or 2
workers each) on one PostgreSQL store, under concurrent sign-ins from client threads.

What a user would notice if it went wrong, checked after the load:
- the same people signing in through all three servers at once, each token adding a
  group of its own: one account each, and every group a successful token added is on
  it (no lost update);
- first logins racing for one email (different subjects, on two connections with
  `link_by = "email"`): one account has the email; on each connection exactly one
  subject gets it (created or linked), the others are denied saying the account is
  already linked to another identity of that connection (docs/provisioning.md,
  "The pipeline" step 5);
- one token delivered to all three servers at once: one sign-in, two replays;
- every answer is JSON with an expected outcome and its status (200/401/403: no 500, no
  503 store error), the audit log has one row per delivery with the answered outcome,
  no traceback in any server's log, and PostgreSQL counted no deadlock.

Needs JITPROV_TEST_POSTGRES (tests/engine/conftest.py); skipped without it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import http.client
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.parse
from collections import Counter, defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if str(Path(__file__).parent) not in sys.path:  # tests/engine is not an importable package
    sys.path.insert(0, str(Path(__file__).parent))
from provision_fixtures import Bench
from serve_fixtures import CLI, DEMO, ROOT, free_port

from engine.config import Connection, load_config
from engine.saml.mint import mint
from engine.sample import Sample

PERSISTENT = "urn:oasis:names:tc:SAML:2.0:nameid-format:persistent"
FORM = {"Content-Type": "application/x-www-form-urlencoded"}
STATUS = {"created": 200, "updated": 200, "linked": 200, "unchanged": 200}
STATUS |= {"denied": 403, "rejected": 401}
SUCCESS = ("created", "updated", "linked", "unchanged")

WORKERS = (2, 1, 1)  # three application servers
PEOPLE, ROUNDS, CLIENTS = 6, 40, 12  # shared subjects: every person on every server
EMAILS, PER_CONNECTION = 3, 3  # first-login races: subjects per email and connection
REPLAYED = 2  # tokens delivered to all three servers at once
SECONDS = 120  # the bound on any wait (a server start, an answer, the whole load)

RULES = """\
let mail = lower(first(@email))
deny "no e-mail address in the assertion" when mail == null
username = email_local(mail)
email    = mail
groups  += [lower(g) for g in @groups]
"""


def write_workspace(root: Path, url: str) -> Path:
    """Two SAML connections with link_by = "email" on one PostgreSQL store: `okta`
    (create-and-update) and `portal` (create-only), both signed by the demo IdP key."""
    (root / "rules").mkdir(parents=True)
    shutil.copytree(DEMO / "certs", root / "certs")
    (root / "rules" / "okta.rules").write_text(RULES)
    (root / "rules" / "portal.rules").write_text(RULES)
    config = root / "jitprov.toml"
    config.write_text(
        f"""\
[store]
url  = {json.dumps(url)}
pool = 3

[connections.okta]
protocol       = "saml2"
issuer         = "http://www.okta.com/exk1demo"
certificate    = "certs/idp-test.crt"
audience       = "https://sp.example.com/saml"
recipient      = "https://sp.example.com/saml/acs"
require_signed = "assertion"
rules          = "rules/okta.rules"
link_by        = "email"

[connections.portal]
protocol       = "saml2"
issuer         = "https://portal.example/idp"
certificate    = "certs/idp-test.crt"
audience       = "https://sp.example.com/saml"
require_signed = "assertion"
rules          = "rules/portal.rules"
mode           = "create-only"
link_by        = "email"
"""
    )
    return config


@dataclass
class Delivery:
    """One token sent to one server, and what came back."""

    kind: str  # "load", "race" or "replay"
    connection: str
    token_id: str
    subject: str
    email: str
    group: str
    token: str
    server: int
    status: int = 0
    body: bytes = b""
    sent_at: float = 0.0  # monotonic seconds: sent, answered
    answered_at: float = 0.0
    answer: dict[str, Any] = field(default_factory=dict)

    @property
    def outcome(self) -> str:
        return str(self.answer.get("outcome"))


class Minter:
    """Signed SAML responses from the demo IdP for the workspace's connections."""

    def __init__(self, config: Path) -> None:
        self.connections = load_config(config).connections
        self.key = (DEMO / "certs" / "idp-test.key").read_bytes()
        self.cert = (DEMO / "certs" / "idp-test.crt").read_bytes()

    def token(self, connection: str, token_id: str, subject: str, email: str, group: str) -> str:
        sample = Sample(
            subject=subject,
            subject_format=PERSISTENT,
            token_id=token_id,
            attributes={"email": [email], "groups": [group]},
        )
        conn: Connection = self.connections[connection]
        raw = mint(sample, conn, key_pem=self.key, cert_pem=self.cert, encoding="base64")
        return raw.decode()

    def delivery(
        self, kind: str, connection: str, token_id: str, subject: str, email: str, server: int
    ) -> Delivery:
        group = f"g-{token_id}".lower()
        token = self.token(connection, token_id, subject, email, group)
        return Delivery(kind, connection, token_id, subject, email, group, token, server)


class Server:
    """`jitprov serve` in a process group of its own (its supervisor and workers), so
    that stopping it can end every process it started."""

    def __init__(self, config: Path, name: str, workers: int) -> None:
        self.port = free_port()
        self.log_path = config.parent / f"serve-{name}.log"
        self.command = [*CLI, "--config", str(config), "serve", "--port", str(self.port)]
        self.command += ["--workers", str(workers), "--no-watch"]
        self.process: subprocess.Popen[bytes] | None = None
        self._log: Any = None

    def start(self) -> None:
        self._log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            self.command,
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=self._log,
            start_new_session=True,
        )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def ready(self) -> bool:
        """/readyz answers 200: rules compiled and the store reachable."""
        assert self.process is not None
        assert self.process.poll() is None, f"serve exited early:\n{self.log()[-3000:]}"
        try:
            status, _ = self.post_raw("GET", "/readyz", None, {}, timeout=5)
        except OSError:
            return False
        return status == 200

    def post_raw(
        self,
        method: str,
        path: str,
        body: bytes | None,
        headers: dict[str, str],
        *,
        timeout: float = SECONDS,
    ) -> tuple[int, bytes]:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            connection.request(method, path, body=body, headers=headers)
            response = connection.getresponse()
            return response.status, response.read()
        finally:
            connection.close()

    def send(self, delivery: Delivery) -> None:
        body = urllib.parse.urlencode({"SAMLResponse": delivery.token}).encode()
        delivery.sent_at = time.monotonic()
        delivery.status, delivery.body = self.post_raw(
            "POST", f"/acs/{delivery.connection}", body, FORM
        )
        delivery.answered_at = time.monotonic()

    def stop(self) -> None:
        if self.process is None:
            return
        try:
            if self.process.poll() is None:
                self.process.terminate()  # graceful: in-flight sign-ins finish
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.process.wait(timeout=30)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)  # anything left of the group
            self.process.wait(timeout=30)
            self._log.close()


def wait_for(condition: Callable[[], bool], what: str, seconds: float = SECONDS) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)  # polling the condition


def database_name(url: str) -> str:
    import psycopg

    return str(psycopg.conninfo.conninfo_to_dict(url)["dbname"])


class Activity:
    """The admin connection's view of the test database: its server processes, and
    the deadlocks PostgreSQL counted in it."""

    def __init__(self, admin_url: str, database: str) -> None:
        import psycopg

        self.conn = psycopg.connect(admin_url, autocommit=True)
        self.database = database

    def deadlocks(self) -> int:
        self.conn.execute("SELECT pg_stat_clear_snapshot()")
        row = self.conn.execute(
            "SELECT deadlocks FROM pg_stat_database WHERE datname = %s", (self.database,)
        ).fetchone()
        return int(row[0]) if row and row[0] is not None else 0

    def backends(self) -> int:
        row = self.conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = %s", (self.database,)
        ).fetchone()
        return int(row[0]) if row else 0

    def close(self) -> None:
        self.conn.close()


def run_load(servers: list[Server], loads: list[Delivery], bursts: list[Delivery]) -> None:
    """The shared-subject load from CLIENTS threads; meanwhile each burst delivery (the
    first-login races and the replays) in a thread of its own, all released at once."""
    errors: list[str] = []
    lock = threading.Lock()

    def send(delivery: Delivery) -> None:
        try:
            servers[delivery.server].send(delivery)
        except Exception as exc:  # a refused or cut connection: reported below
            with lock:
                errors.append(f"{delivery.kind} {delivery.token_id}: {exc!r}")

    gate = threading.Barrier(len(bursts))

    def burst(delivery: Delivery) -> None:
        gate.wait(timeout=SECONDS)
        send(delivery)

    racers = [threading.Thread(target=burst, args=(d,), daemon=True) for d in bursts]
    with ThreadPoolExecutor(max_workers=CLIENTS) as pool:
        futures = [pool.submit(send, d) for d in loads]
        for racer in racers:
            racer.start()
        for future in futures:
            future.result(timeout=SECONDS)
    for racer in racers:
        racer.join(timeout=SECONDS)
        assert not racer.is_alive(), "a burst delivery never returned"
    assert not errors, "\n".join(errors[:10])


def overlapping(deliveries: list[Delivery]) -> int:
    """How many pairs of these deliveries, to different servers, were in flight at once."""
    return sum(
        a.server != b.server and a.sent_at < b.answered_at and b.sent_at < a.answered_at
        for i, a in enumerate(deliveries)
        for b in deliveries[i + 1 :]
    )


def check_answer(delivery: Delivery) -> None:
    """Well-formed JSON with an expected outcome, and the status of that outcome."""
    where = f"{delivery.kind} {delivery.token_id} via server {delivery.server}"
    try:
        answer = json.loads(delivery.body)
    except ValueError:
        raise AssertionError(
            f"{where}: not JSON: {delivery.status} {delivery.body[:300]!r}"
        ) from None
    assert isinstance(answer, dict), (where, answer)
    delivery.answer = answer
    outcome = answer.get("outcome")
    assert outcome in STATUS, f"{where}: {delivery.status} {answer}"
    assert delivery.status == STATUS[outcome], f"{where}: {delivery.status} {answer}"
    assert answer["connection"] == delivery.connection, (where, answer)


def test_three_servers_share_one_store_without_lost_updates_or_duplicates(
    tmp_path: Path, new_database: Callable[[], str]
) -> None:
    url = new_database()  # skips without JITPROV_TEST_POSTGRES
    admin_url = os.environ["JITPROV_TEST_POSTGRES"]
    config = write_workspace(tmp_path, url)
    minter = Minter(config)
    servers = len(WORKERS)

    # Shared subjects: round r sends every person's token, person p's through server
    # (r + p) % 3, so each person has tokens in flight on several servers at once.
    loads = [
        minter.delivery(
            "load", "okta", f"_load-p{p}-r{r}", f"person{p}", f"person{p}@example.com", (r + p) % 3
        )
        for r in range(ROUNDS)
        for p in range(PEOPLE)
    ]
    # First logins racing for one email: PER_CONNECTION subjects on each connection.
    races = [
        minter.delivery(
            "race",
            connection,
            f"_race-e{e}-{connection}-{s}",
            f"race{e}-{connection}-{s}",
            f"Race{e}@Example.com" if s % 2 else f"race{e}@example.com",
            (e + s + (connection == "portal")) % servers,
        )
        for e in range(EMAILS)
        for connection in ("okta", "portal")
        for s in range(PER_CONNECTION)
    ]
    # One token delivered to every server at once.
    replays = []
    for k in range(REPLAYED):
        first = minter.delivery(
            "replay", "okta", f"_replay-{k}", f"replay{k}", f"replay{k}@example.com", 0
        )
        replays += [dataclasses.replace(first, server=server) for server in range(servers)]

    activity = Activity(admin_url, database_name(url))
    deadlocks_before = activity.deadlocks()
    started = [Server(config, f"s{n}", workers) for n, workers in enumerate(WORKERS)]
    try:
        with contextlib.ExitStack() as stack:
            for server in started:
                stack.callback(server.stop)
                server.start()  # all three at once: they race to create the schema too
            for server in started:
                wait_for(server.ready, f"{server.log_path.name}: /readyz")
            run_load(started, loads, races + replays)
        logs = {server.log_path.name: server.log() for server in started}
        for name, text in logs.items():
            assert "Traceback" not in text, f"{name}:\n{text[-3000:]}"
        # Every server process of the store gone, so PostgreSQL has counted everything.
        wait_for(lambda: activity.backends() == 0, "the servers' connections to close")
        deadlocks_after = activity.deadlocks()
    finally:
        activity.close()

    everything = loads + races + replays
    for delivery in everything:
        check_answer(delivery)
    assert deadlocks_after == deadlocks_before, "PostgreSQL detected a deadlock"
    # The load did what it is for: one person's sign-ins in flight on two servers at once.
    assert all(overlapping([d for d in loads if d.subject == f"person{p}"]) for p in range(PEOPLE))
    assert all(
        overlapping([d for d in races if d.email.lower() == f"race{e}@example.com"])
        for e in range(EMAILS)
    )

    bench = Bench(config)
    try:
        # One account per person, email and replayed token; keys unique.
        users = bench.rows("SELECT id, username, email FROM users")
        assert len(users) == PEOPLE + EMAILS + REPLAYED, users
        for column in ("username_key", "email_key"):
            twice = bench.rows(
                f"SELECT {column}, count(*) FROM users GROUP BY 1 HAVING count(*) > 1"
            )
            assert twice == [], f"duplicate {column}: {twice}"
        groups: dict[str, set[str]] = defaultdict(set)
        for username, group in bench.rows(
            "SELECT u.username, g.value FROM user_groups g JOIN users u ON u.id = g.user_id"
        ):
            groups[username].add(group)
        links = bench.rows("SELECT connection, subject, user_id FROM identity_links")

        # Shared subjects: one creation each, every other token an update, and every
        # token's group on the account.
        for p in range(PEOPLE):
            mine = [d for d in loads if d.subject == f"person{p}"]
            outcomes = Counter(d.outcome for d in mine)
            assert outcomes == {"created": 1, "updated": ROUNDS - 1}, (p, outcomes)
            assert groups[f"person{p}"] == {d.group for d in mine}, f"person{p}: lost update"

        # First-login races: per email one account; per connection one winner.
        for e in range(EMAILS):
            mine = [d for d in races if d.subject.startswith(f"race{e}-")]
            assert Counter(d.outcome for d in mine) == {
                "created": 1,
                "linked": 1,
                "denied": 2 * PER_CONNECTION - 2,
            }, [(d.subject, d.outcome, d.answer.get("message")) for d in mine]
            [account] = [
                u for u in users if u[2] is not None and u[2].lower() == f"race{e}@example.com"
            ]
            winners = [d for d in mine if d.outcome in SUCCESS]
            for connection in ("okta", "portal"):
                won = [d for d in winners if d.connection == connection]
                assert len(won) == 1, (e, connection, won)
                assert (connection, won[0].subject, account[0]) in links
            for denied in (d for d in mine if d.outcome == "denied"):
                message = denied.answer.get("message") or ""
                expected = f"already linked to another identity of connection '{denied.connection}'"
                assert expected in message, (denied.subject, message)
                assert not [link for link in links if link[1] == denied.subject]
            # A create-only link writes nothing but the link: its group is not added.
            added = {
                d.group for d in winners if not (d.connection == "portal" and d.outcome == "linked")
            }
            assert groups[account[1]] == added, (e, groups[account[1]], added)

        # The token delivered to every server: one sign-in, two replays.
        for k in range(REPLAYED):
            mine = [d for d in replays if d.token_id == f"_replay-{k}"]
            assert sorted(d.outcome for d in mine) == ["created", "rejected", "rejected"]
            assert {d.answer.get("reason") for d in mine if d.outcome == "rejected"} == {"replay"}

        # The audit log: one row per delivery, with the outcome the caller was given.
        audited = Counter(tuple(row) for row in bench.rows("SELECT token_id, outcome FROM audit"))
        answered = Counter((d.token_id, d.outcome) for d in everything)
        assert audited == answered
        assert sum(audited.values()) == len(everything)
    finally:
        bench.close()
