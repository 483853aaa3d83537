"""The PostgreSQL store under faults, as a user of `jitprov serve` or `jitprov apply`
would meet them:

1. the server restarted (`pg_ctl restart -m fast`, several times) while threads sign
   people in through one shared store, as serve's threads do; and restarted while the
   pool's connections are idle — on a server of the test's own, never the shared one;
2. a statement waiting past `statement_timeout` on a lock another session holds (also
   through `jitprov apply`: exit 4, the message, no traceback);
3. a full pool (`pool = 1`): a sign-in that cannot get a connection within
   `pool_timeout`.

Each fault is an `error` result that says what happened (never an exception, never a
hang), the store is never half-written, and later sign-ins succeed on the same store
without reopening anything. Needs JITPROV_TEST_POSTGRES (tests/engine/conftest.py), and
for the restarts PostgreSQL's server binaries (initdb, pg_ctl in PG_BIN).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

if str(Path(__file__).parent) not in sys.path:  # tests/engine is not an importable package
    sys.path.insert(0, str(Path(__file__).parent))
import provision_fixtures
from provision_fixtures import Bench, jitprov_process, person, workspace
from serve_fixtures import free_port

from engine.config import Config, load_config
from engine.provision import Provisioner
from engine.result import Result
from engine.store import open_store
from engine.store.postgres import PostgresStore


def _server_binaries() -> Path:
    """The newest installed PostgreSQL's server binaries (Debian's layout)."""
    found = sorted(
        Path("/usr/lib/postgresql").glob("*/bin"),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
    )
    return found[-1] if found else Path("/usr/lib/postgresql/bin")


PG_BIN = _server_binaries()
SECONDS = 60  # the bound on every wait: a sign-in, a restart, a thread
SUCCESS = ("created", "updated", "linked", "unchanged")

RULES = """\
username = first(@uid)
email    = first(@email)
groups  += @groups
"""


def pg_workspace(root: Path, url: str, store: str = "") -> Path:
    """A workspace on the PostgreSQL database `url`, with extra `[store]` lines."""
    root.mkdir(parents=True, exist_ok=True)
    provision_fixtures.NEW_DATABASE = lambda: url
    try:
        config = workspace(root, RULES)
    finally:
        provision_fixtures.NEW_DATABASE = None
    text = config.read_text()
    config.write_text(text.replace("\n\n[store.fields]", f"\n{store}\n\n[store.fields]", 1))
    return config


def in_thread(work: Callable[[], Result], what: str) -> Result:
    """`work()` in a thread of its own; fails the test if it has not returned within
    SECONDS (a hang) or if it raised (an exception escaped instead of a Result)."""
    box: list[Any] = []

    def run() -> None:
        try:
            box.append(work())
        except BaseException as exc:  # reported in the test's thread
            box.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(SECONDS)
    assert not thread.is_alive(), f"{what} did not return within {SECONDS} s"
    if isinstance(box[0], BaseException):
        raise AssertionError(f"{what} raised {box[0]!r}") from box[0]
    result: Result = box[0]
    return result


def wait_for(condition: Callable[[], bool], what: str, seconds: float = SECONDS) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)  # polling the condition


@contextlib.contextmanager
def locked_users(url: str) -> Iterator[Any]:
    """Another session holding `users` in ACCESS EXCLUSIVE mode until the block ends."""
    import psycopg

    with psycopg.connect(url) as holder:  # not autocommit: the lock lasts until rollback
        holder.execute("LOCK TABLE users IN ACCESS EXCLUSIVE MODE")
        try:
            yield holder
        finally:
            holder.rollback()


def lock_waiters(url: str) -> int:
    """Server processes of jitprov's pool waiting for a lock in the database."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as probe:
        row = probe.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
            " AND application_name = 'jitprov' AND wait_event_type = 'Lock'"
        ).fetchone()
    return int(row[0]) if row else 0


# --- a PostgreSQL server of the test's own ------------------------------------------------


@dataclass
class OwnServer:
    """A PostgreSQL cluster in a temporary directory, on a Unix socket of its own."""

    home: Path
    port: int
    as_owner: list[str]  # the command prefix that runs a binary as the cluster's owner

    @property
    def data(self) -> Path:
        return self.home / "data"

    @property
    def url(self) -> str:
        return f"postgresql:///postgres?host={self.home}&port={self.port}&user=postgres"

    def ctl(self, *args: str) -> None:
        command = [*self.as_owner, str(PG_BIN / "pg_ctl"), "-D", str(self.data), *args]
        done = subprocess.run(command, capture_output=True, timeout=SECONDS + 30, check=False)
        log = (self.home / "server.log").read_text(errors="replace")[-2000:]
        assert done.returncode == 0, f"pg_ctl {args[0]}: {done.stderr.decode()}\n{log}"

    def restart(self) -> None:
        self.ctl("restart", "-m", "fast", "-w", "-t", str(SECONDS), "-l", str(self.log))

    @property
    def log(self) -> Path:
        return self.home / "server.log"


@pytest.fixture
def own_server() -> Iterator[OwnServer]:
    """initdb into a temporary directory, started with pg_ctl; stopped and removed after.
    As root, the binaries run as the `postgres` user, in a directory it owns."""
    if not os.environ.get("JITPROV_TEST_POSTGRES"):
        pytest.skip("PostgreSQL: set JITPROV_TEST_POSTGRES (.ci/run starts a server)")
    missing = [name for name in ("initdb", "pg_ctl") if not (PG_BIN / name).exists()]
    if missing:
        pytest.skip(f"PostgreSQL's server binaries are not in {PG_BIN}: {', '.join(missing)}")
    as_owner: list[str] = []
    home = Path(tempfile.mkdtemp(prefix="jitprov-pg-"))
    if os.geteuid() == 0:
        try:
            owner = pwd.getpwnam("postgres")
        except KeyError:
            shutil.rmtree(home)
            pytest.skip("running as root, and there is no `postgres` user to run initdb as")
        if shutil.which("runuser") is None:
            shutil.rmtree(home)
            pytest.skip("running as root, and runuser is missing to run initdb as postgres")
        os.chown(home, owner.pw_uid, owner.pw_gid)
        as_owner = ["runuser", "-u", "postgres", "--"]
    server = OwnServer(home, free_port(), as_owner)
    started = False
    try:
        initdb = [*as_owner, str(PG_BIN / "initdb"), "-D", str(server.data), "-U", "postgres"]
        initdb += ["--auth=trust", "--no-sync", "--no-locale", "-E", "UTF8"]
        done = subprocess.run(initdb, capture_output=True, timeout=120, check=False)
        assert done.returncode == 0, f"initdb: {done.stderr.decode()}"
        settings = [
            "listen_addresses = ''",
            f"port = {server.port}",
            f"unix_socket_directories = '{home}'",
            "max_connections = 40",
        ]
        with (server.data / "postgresql.conf").open("a") as conf:
            conf.write("\n".join(settings) + "\n")
        server.ctl("start", "-w", "-t", str(SECONDS), "-l", str(server.log))
        started = True
        yield server
    finally:
        if started:
            with contextlib.suppress(AssertionError, subprocess.TimeoutExpired):
                server.ctl("stop", "-m", "immediate", "-w", "-t", str(SECONDS))
        shutil.rmtree(home, ignore_errors=True)


# --- 1. the server restarted mid-load -----------------------------------------------------

THREADS = 6
PEOPLE = 12
RESTARTS = 6  # each one a new chance to catch a commit in flight
BETWEEN = 40  # sign-ins begun after a restart returned, before the next one


@dataclass
class Signed:
    """One sign-in of the load: its token number, result and when it ran."""

    n: int
    started: float
    ended: float = 0.0
    result: Result | None = None
    escaped: BaseException | None = None


@dataclass
class Load:
    """THREADS threads signing people in through one shared store until stopped."""

    config: Config
    store: PostgresStore
    done: list[Signed] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    numbers: Iterator[int] = field(default_factory=itertools.count)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @staticmethod
    def token(n: int) -> bytes:
        # Every token adds a group of its own: a lost or half-written one would show.
        return person(f"u{n % PEOPLE}", token_id=f"t{n}", groups=[f"g{n}"])

    def run(self) -> None:
        provisioner = Provisioner(self.config, shared_store=lambda: self.store)  # as serve does
        while not self.stop.is_set():
            with self.lock:
                n = next(self.numbers)
            signed = Signed(n, time.monotonic())
            try:
                signed.result = provisioner.apply("okta", self.token(n), allow_samples=True)
            except BaseException as exc:  # must not happen: reported by the test
                signed.escaped = exc
            signed.ended = time.monotonic()
            with self.lock:
                self.done.append(signed)

    def count(self, after: float = 0.0) -> int:
        with self.lock:
            return sum(s.started > after for s in self.done)


# What an error during a restart may say: the connection was lost, the server is
# shutting down or starting, or no connection came within pool_timeout; or, for a
# commit cut off on its way, that whether the token was written is unknown.
CLEAR = (
    "connection lost",
    "no connection to the store within",
    "the database system is shutting down",
    "the database system is starting up",
    "terminating connection due to administrator command",
    "server closed the connection unexpectedly",
)
UNKNOWN = "whether this token was written is unknown"


@dataclass
class Stored:
    """What the store holds of the load's tokens."""

    audit: dict[str, list[tuple[str, Any]]]  # token id: (outcome, user id) of each row
    seen: set[str]  # replay entries
    members: dict[str, int]  # group: the account holding it
    users: dict[int, str]  # id: username

    @classmethod
    def read(cls, store: PostgresStore) -> Stored:
        audit: dict[str, list[tuple[str, Any]]] = {}
        rows = store.conn.execute("SELECT token_id, outcome, user_id FROM audit ORDER BY id")
        for token_id, outcome, user_id in rows:
            audit.setdefault(token_id, []).append((outcome, user_id))
        seen = {row[0] for row in store.conn.execute("SELECT token_id FROM seen_tokens")}
        members = {
            value: user_id
            for user_id, value in store.conn.execute("SELECT user_id, value FROM user_groups")
        }
        users = {row[0]: row[1] for row in store.conn.execute("SELECT id, username FROM users")}
        return cls(audit, seen, members, users)

    def applied(self, n: int) -> tuple[bool, bool, bool]:
        """Token n's audit row of a success, replay entry, group: all or none."""
        written = any(outcome in SUCCESS for outcome, _ in self.audit.get(f"t{n}", []))
        return written, f"t{n}" in self.seen, f"g{n}" in self.members


def test_a_server_restarted_mid_load_gives_clear_errors_and_no_half_written_token(
    tmp_path: Path, own_server: OwnServer
) -> None:
    config = load_config(pg_workspace(tmp_path / "ws", own_server.url))
    store = open_store(config)
    assert isinstance(store, PostgresStore)
    load = Load(config, store)
    threads = [threading.Thread(target=load.run, daemon=True) for _ in range(THREADS)]
    restarts: list[tuple[float, float]] = []
    try:
        for thread in threads:
            thread.start()
        for _ in range(RESTARTS):
            last = restarts[-1][1] if restarts else 0.0
            wait_for(lambda last=last: load.count(after=last) >= BETWEEN, "sign-ins under load")
            began = time.monotonic()
            own_server.restart()
            restarts.append((began, time.monotonic()))
        wait_for(lambda: load.count(after=restarts[-1][1]) >= BETWEEN, "sign-ins after")
    finally:
        load.stop.set()
        for thread in threads:
            thread.join(SECONDS)
    try:
        assert not any(thread.is_alive() for thread in threads), "a sign-in never returned"
        stored = Stored.read(store)  # on the same store: nothing reopened
    finally:
        store.close()
    escaped = [(s.n, s.escaped) for s in load.done if s.escaped is not None]
    assert not escaped, f"exceptions escaped Provisioner.apply: {escaped[:5]}"
    results = {s.n: s for s in load.done}
    errors: dict[int, str] = {}
    for n, signed in results.items():
        result = signed.result
        assert result is not None
        if result.outcome == "error":
            errors[n] = result.message or ""
        else:
            assert result.outcome in ("created", "updated"), (n, result.outcome, result.message)

    def during(signed: Signed) -> bool:
        return any(signed.started < end and signed.ended > began for began, end in restarts)

    # Each restart was met by sign-ins in flight (else this tested nothing).
    for began, end in restarts:
        assert any(s.started < end and s.ended > began for s in load.done)
    # An error says what happened: the applied state is shown for a message that does not.
    unclear = [
        (n, message, "applied (audit, replay entry, group):", stored.applied(n))
        for n, message in errors.items()
        if not any(clear in message for clear in (*CLEAR, UNKNOWN))
    ]
    assert not unclear, f"errors that do not say what happened: {unclear[:5]}"
    # Errors only where a restart was under way: every other sign-in succeeded, on the
    # same store, nothing reopened.
    outside = [(n, errors[n]) for n in errors if not during(results[n])]
    assert not outside, f"sign-ins failed with no restart under way: {outside[:5]}"

    # Nothing half-written.
    created = {
        uid for rows in stored.audit.values() for outcome, uid in rows if outcome == "created"
    }
    assert set(stored.users) <= created, "an account without the audit row of its creation"
    for n, signed in results.items():
        result = signed.result
        assert result is not None
        state = stored.applied(n)
        if result.outcome != "error":
            rows = stored.audit.get(f"t{n}")
            assert rows == [(result.outcome, result.user_id)], (n, rows)
            assert state == (True, True, True), (n, state)
            assert stored.members[f"g{n}"] == result.user_id
            assert stored.users[result.user_id] == f"u{n % PEOPLE}"
        elif UNKNOWN in errors[n]:  # either way, but all of it or nothing
            assert state in ((True, True, True), (False, False, False)), (n, state)
        else:
            assert state == (False, False, False), f"token {n} was written: {errors[n]}"
            rows = stored.audit.get(f"t{n}", [])
            assert rows == ([("error", None)] if result.audit_written else []), (n, rows)
    # Every group in the store came from a token that was applied (or may have been).
    possible = {f"g{n}" for n in results if n not in errors or UNKNOWN in errors[n]}
    assert set(stored.members) <= possible


BURST = 6  # sign-ins at once, so the pool (10 by default) keeps six connections


def test_a_restart_while_the_pool_is_idle_goes_unnoticed_by_the_next_sign_in(
    tmp_path: Path, own_server: OwnServer
) -> None:
    """docs/provisioning.md: "A connection lost while idle (a restart, a failover, an
    idle timeout) is made again when the next token begins: nothing of it had been
    sent." After a burst of BURST sign-ins at once the pool keeps BURST connections; a
    restart while they are idle ends every one of them."""
    config = load_config(pg_workspace(tmp_path / "ws", own_server.url))
    store = open_store(config)
    assert isinstance(store, PostgresStore)

    def sign_in(uid: str) -> Result:
        provisioner = Provisioner(config, shared_store=lambda: store)  # as serve does
        return provisioner.apply("okta", person(uid, token_id=f"t-{uid}"), allow_samples=True)

    try:
        burst: list[Result] = []
        with locked_users(own_server.url):  # the burst waits here, each on a connection
            threads = [
                threading.Thread(target=lambda uid=f"b{i}": burst.append(sign_in(uid)))
                for i in range(BURST)
            ]
            for thread in threads:
                thread.start()
            wait_for(lambda: lock_waiters(own_server.url) == BURST, "the burst to hold the pool")
        for thread in threads:
            thread.join(SECONDS)
        assert [r.outcome for r in burst] == ["created"] * BURST, [r.message for r in burst]

        own_server.restart()  # no sign-in in flight

        after = in_thread(lambda: sign_in("ann"), "the first sign-in after the restart")
        assert after.outcome == "created", after.message
        assert in_thread(lambda: sign_in("bob"), "the next one").outcome == "created"
        names = sorted(u.fields["username"] for u in store.users())
        assert names == sorted(["ann", "bob", *(f"b{i}" for i in range(BURST))])
    finally:
        store.close()


# --- 2. a statement past statement_timeout ---------------------------------------------------


def test_a_statement_timeout_is_an_error_that_says_so_and_the_next_sign_in_succeeds(
    tmp_path: Path, new_database: Callable[[], str]
) -> None:
    url = new_database()
    path = pg_workspace(tmp_path / "ws", url, "statement_timeout = 0.3")
    bench = Bench(path)
    try:
        assert bench.apply(person("ann", token_id="t-ann")).outcome == "created"
        with locked_users(url):
            blocked = in_thread(
                lambda: bench.apply(person("bob", token_id="t-bob")), "a sign-in on a locked table"
            )
            assert blocked.outcome == "error", blocked.message
            assert "statement timeout" in (blocked.message or ""), blocked.message
            assert blocked.sso == "stop"

            # The same through `jitprov apply`: exit 4, the message, no traceback.
            token = tmp_path / "cid.toml"
            token.write_bytes(person("cid", token_id="t-cid"))
            child = jitprov_process(path, "apply", "-c", "okta", "--unsigned-samples", str(token))
            out, err = child.communicate(timeout=SECONDS)
            assert child.returncode == 4, (out, err)
            assert b"statement timeout" in out + err, (out, err)
            assert b"Traceback" not in err and b"internal error" not in err, err

        again = bench.apply(person("bob", token_id="t-bob-2"))
        assert again.outcome == "created", again.message
        assert sorted(u.fields["username"] for u in bench.store.users()) == ["ann", "bob"]
        outcomes = bench.rows("SELECT token_id, outcome FROM audit ORDER BY id")
        assert outcomes == [
            ("t-ann", "created"),
            ("t-bob", "error"),
            ("t-cid", "error"),
            ("t-bob-2", "created"),
        ]
        assert bench.rows("SELECT token_id FROM seen_tokens ORDER BY token_id") == [
            ("t-ann",),
            ("t-bob-2",),
        ]
    finally:
        bench.close()


# --- 3. a full pool -------------------------------------------------------------------------


def test_a_full_pool_is_an_error_within_pool_timeout_and_both_sign_ins_recover(
    tmp_path: Path, new_database: Callable[[], str]
) -> None:
    url = new_database()
    config = load_config(pg_workspace(tmp_path / "ws", url, "pool = 1\npool_timeout = 0.3"))
    store = open_store(config)
    first = Provisioner(config, shared_store=lambda: store)  # two threads, one pool
    second = Provisioner(config, shared_store=lambda: store)

    def sign_in(provisioner: Provisioner, uid: str) -> Result:
        return provisioner.apply("okta", person(uid, token_id=f"t-{uid}"), allow_samples=True)

    try:
        assert sign_in(first, "ann").outcome == "created"
        holding: list[Result] = []
        with locked_users(url):
            # The only connection, held by a sign-in waiting for the lock.
            holder = threading.Thread(target=lambda: holding.append(sign_in(first, "bob")))
            holder.start()
            wait_for(lambda: lock_waiters(url) == 1, "the first sign-in to wait for the lock")
            starved = in_thread(lambda: sign_in(second, "cid"), "a sign-in with the pool full")
            assert starved.outcome == "error", starved.message
            assert "no connection to the store within 0.3 s" in (starved.message or "")
            # Its audit row needed a connection too: the message says it was not written.
            assert starved.audit_written is False
            assert "the audit row could not be written either" in (starved.message or "")
            assert holder.is_alive() and not holding  # still waiting: the pool was full
        holder.join(SECONDS)
        assert not holder.is_alive(), "the held sign-in never returned"
        assert [r.outcome for r in holding] == ["created"], [r.message for r in holding]

        assert sign_in(second, "cid2").outcome == "created"
        assert sign_in(first, "dan").outcome == "created"
        names = sorted(u.fields["username"] for u in store.users())
        assert names == ["ann", "bob", "cid2", "dan"]
        rows = store.conn.execute("SELECT token_id, outcome FROM audit ORDER BY id").fetchall()
        assert rows == [
            ("t-ann", "created"),
            ("t-bob", "created"),
            ("t-cid2", "created"),
            ("t-dan", "created"),
        ]
    finally:
        first.close()
        second.close()
        store.close()
