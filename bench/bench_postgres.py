"""PostgreSQL store stage: throughput of `jitprov apply --batch` with several writer
processes against a hand-written psycopg loop, and many writers on a few shared accounts.

Throughput. A store of 100,000 accounts (each with two groups and an identity link) is
made once: `jitprov migrate` creates the schema in a template database, COPY fills it.
Each run gets a fresh copy (`CREATE DATABASE … TEMPLATE`). 10,000 sign-ins — 4 of 5 of
existing accounts changing their department and a group, 1 of 5 first logins, as in the
store stage — are split between 1, 4 and 8 writer processes:
- jitprov: each writer is a `jitprov apply --batch SHARE.jsonl --unsigned-samples --json`
  process;
- the baseline: each writer is bench/pg_loop.py, a hand-written psycopg loop that parses
  the same JSONL and sample TOML and makes the same reads and writes (one transaction per
  sign-in, `SELECT … FOR UPDATE` of the account, member diff, link, audit row), with the
  same durability (`synchronous_commit` left at its default, on). It imports nothing of
  jitprov.
Wall time runs from the start of the first process to the end of the last; the two take
turns going first, two rounds (one with --quick), and each is given the median. After each
run the two stores must be identical — accounts, group rows, links, replay entries and
every token's audit row (outcome, changes and trace JSON), ids and timestamps aside —
and every sign-in must have succeeded; otherwise the comparison is invalid. Target:
jitprov within 1.3x of the loop's wall time at every writer count.

Contention. 8 writer processes (each a `Provisioner`, as `jitprov serve` runs one per
worker) sign in the same 20 people over and over, first logins included; each token
adds a group of its own and the rules record how many groups the account had before
(`display_name`), so an update lost, or made from a stale read of the account, shows:
as a missing group, or as a count two sign-ins both saw. Each writer makes one warm-up
sign-in of its own first (its connection, the server session's caches), then the clock
starts and every sign-in is timed in its writer (target: p99 under 50 ms). Deadlocks
(pg_stat_database), store retries and failed sign-ins must all be 0, and the final
store must equal the one the same tokens leave when one writer applies them one by one
(compared as above; audit rows by count of outcomes). A control run gives each writer
20 people of its own: the same work without shared accounts, so that what the
contention costs shows apart from what 8 processes on the machine's cores cost.

PostgreSQL: JITPROV_BENCH_POSTGRES is the URL of a database whose role may create
databases (default postgresql:///postgres); without a server the stage says why and
returns nothing. Its databases are named jitprov_bench_<pid>_… and dropped at the end.

`python -m bench.bench_postgres [--quick]`
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
import queue
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from bench.bench_store import CONFIG as STORE_CONFIG
from bench.bench_store import RULES, RULES_SHA256, STAMP, tokens
from bench.harness import Comparison, Stats, placeholder_certificate

ADMIN_ENV = "JITPROV_BENCH_POSTGRES"
DEFAULT_ADMIN = "postgresql:///postgres"
NOW = datetime(2025, 5, 1, 12, 0, tzinfo=UTC)
LOOP = Path(__file__).with_name("pg_loop.py")
TARGET = 1.3
P99_BUDGET_MS = 50.0

# The store stage's workspace, on PostgreSQL.
CONFIG = STORE_CONFIG.replace('path = "jitprov.db"', "url = {url}")
# Contention: each token adds a group of its own (`+=`), and display_name records how
# many groups the account held before it: in any one-by-one order of the tokens, every
# count is seen once per account and the last one is the total minus one.
CONTENTION_RULES = """\
username     = first(@uid)
email        = first(@email)
department   = first(@department)
display_name = text(count(user.groups))
groups      += @groups
"""
SHARED_PEOPLE = 20


# -- the server -------------------------------------------------------------------------


def admin_url() -> str:
    return os.environ.get(ADMIN_ENV) or DEFAULT_ADMIN


def redacted(url: str) -> str:
    """The URL for messages, without a password."""
    if "@" not in url or "://" not in url:
        return url
    scheme, rest = url.split("://", 1)
    credentials, host = rest.rsplit("@", 1)
    if ":" not in credentials:
        return url
    return f"{scheme}://{credentials.split(':', 1)[0]}:***@{host}"


class Server:
    """Databases of this run on the server behind `admin`: made, copied, dropped."""

    def __init__(self, admin: str) -> None:
        import psycopg

        self._psycopg = psycopg
        self.admin_url = admin
        self.admin = psycopg.connect(admin, autocommit=True, connect_timeout=5)
        self.prefix = f"jitprov_bench_{os.getpid()}_"
        self.names: list[str] = []

    def url(self, name: str) -> str:
        info = self._psycopg.conninfo.conninfo_to_dict(self.admin_url)
        info["dbname"] = name
        return "postgresql://?" + urlencode({k: v for k, v in info.items() if v})

    def create(self, label: str, template: str | None = None) -> str:
        name = self.prefix + label
        self.drop(name)
        self.names.append(name)
        copy = f' TEMPLATE "{template}"' if template else ""
        self.admin.execute(f'CREATE DATABASE "{name}"{copy}')
        return name

    def drop(self, name: str) -> None:
        self.admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        if name in self.names:
            self.names.remove(name)

    def checkpoint(self) -> None:
        """Write dirty pages now, so a run does not pay for the copy made before it."""
        # Not a superuser (nor pg_checkpoint): the contenders take turns going first anyway.
        with contextlib.suppress(self._psycopg.Error):
            self.admin.execute("CHECKPOINT")

    def deadlocks(self, name: str) -> int:
        row = self.admin.execute(
            "SELECT deadlocks FROM pg_stat_database WHERE datname = %s", (name,)
        ).fetchone()
        return int(row[0]) if row and row[0] is not None else 0

    def wait_idle(self, name: str, seconds: float = 10.0) -> None:
        """Until no session is connected to the database: a backend reports its
        statistics (the deadlock count among them) before it leaves pg_stat_activity."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            row = self.admin.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = %s", (name,)
            ).fetchone()
            if not row or not row[0]:
                return
            time.sleep(0.01)

    def close(self) -> None:
        for name in list(self.names):
            try:
                self.drop(name)
            except self._psycopg.Error as exc:
                print(f"postgres stage: could not drop {name}: {exc}", file=sys.stderr)
        self.admin.close()


def unreachable(admin: str) -> str | None:
    """Why the stage cannot run (no psycopg, no server, no right to create databases)."""
    try:
        import psycopg
    except ImportError:
        return "psycopg is not installed (pip install 'jitprov[postgres]')"
    try:
        with psycopg.connect(admin, autocommit=True, connect_timeout=5) as conn:
            row = conn.execute(
                "SELECT rolcreatedb OR rolsuper FROM pg_roles WHERE rolname = current_user"
            ).fetchone()
    except psycopg.Error as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        return f"cannot connect to {redacted(admin)}: {first}"
    if not row or not row[0]:
        return f"the role of {redacted(admin)} may not create databases"
    return None


# -- workspaces and the pre-filled store ------------------------------------------------


def workspace(folder: Path, url: str, rules: str = RULES) -> Path:
    """A workspace whose store is the database at `url`; returns its config's path."""
    folder.mkdir(parents=True, exist_ok=True)
    placeholder_certificate(folder / "idp.pem")
    (folder / "okta.rules").write_text(rules)
    (folder / "jitprov.toml").write_text(CONFIG.format(url=json.dumps(url)))
    return folder / "jitprov.toml"


def jitprov_command(config: Path, *args: str) -> list[str]:
    script = Path(sys.executable).with_name("jitprov")
    if script.exists():
        return [str(script), "--config", str(config), *args]
    code = "import sys; from tui.cli import main; sys.exit(main())"
    return [sys.executable, "-c", code, "--config", str(config), *args]


def _chunks(lines: Iterator[str], size: int = 20_000) -> Iterator[str]:
    block: list[str] = []
    for line in lines:
        block.append(line)
        if len(block) == size:
            yield "".join(block)
            block.clear()
    if block:
        yield "".join(block)


def prefill(url: str, folder: Path, accounts: int) -> None:
    """`jitprov migrate`, then `accounts` accounts by COPY: each with the groups
    "everyone" and "team-old" and a link from connection okta, then VACUUM ANALYZE."""
    import psycopg

    config = workspace(folder, url)
    done = subprocess.run(jitprov_command(config, "migrate"), capture_output=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"jitprov migrate failed: {done.stderr.decode()[-500:]}")
    s = STAMP
    tables = {
        "users (id, username, username_key, email, department, created_at, updated_at)": (
            f"{n + 1}\tu{n}\tu{n}\tu{n}@example.com\told\t{s}\t{s}\n" for n in range(accounts)
        ),
        "user_groups (user_id, value, source)": (
            f"{n + 1}\t{g}\tokta\n" for n in range(accounts) for g in ("everyone", "team-old")
        ),
        "identity_links (connection, subject, subject_key, user_id, created_at, last_seen_at)": (
            f"okta\ts{n}\ts{n}\t{n + 1}\t{s}\t{s}\n" for n in range(accounts)
        ),
    }
    with psycopg.connect(url, autocommit=True) as conn:
        with conn.transaction():
            for table, rows in tables.items():
                with conn.cursor().copy(f"COPY {table} FROM STDIN") as copy:
                    for block in _chunks(rows):
                        copy.write(block)
            conn.execute(f"ALTER TABLE users ALTER COLUMN id RESTART WITH {accounts + 1}")
        conn.execute("VACUUM ANALYZE")


# -- comparing stores -------------------------------------------------------------------

Snapshot = dict[str, list[tuple[Any, ...]]]


def snapshot(url: str) -> Snapshot:
    """A store's rows without ids and timestamps, accounts named by username: every
    account column, every set table's rows, links, replay entries, recorded sign-ins,
    audit rows."""
    import psycopg

    with psycopg.connect(url) as conn:
        columns = [
            str(r[0])
            for r in conn.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_schema ="
                " current_schema() AND table_name = 'users' ORDER BY column_name"
            )
            if r[0] not in ("id", "created_at", "updated_at")
        ]
        sets = [
            str(r[0])
            for r in conn.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema ="
                " current_schema() AND table_name LIKE 'user\\_%' ORDER BY table_name"
            )
        ]
        listed = ", ".join(f'"{c}"' for c in columns)
        order = ", ".join(str(i + 1) for i in range(len(columns)))
        out: Snapshot = {
            "users": conn.execute(f"SELECT {listed} FROM users ORDER BY {order}").fetchall()
        }
        out["members"] = [
            row
            for table in sets
            for row in conn.execute(
                f'SELECT %s::text, u.username, m.value, m.source FROM "{table}" m'
                " JOIN users u ON u.id = m.user_id ORDER BY 2, 3, 4",
                (table,),
            ).fetchall()
        ]
        out["links"] = conn.execute(
            "SELECT l.connection, l.subject, l.subject_key, u.username FROM identity_links l"
            " JOIN users u ON u.id = l.user_id ORDER BY 1, 2, 3, 4"
        ).fetchall()
        out["seen_tokens"] = conn.execute(
            "SELECT connection, token_id, expires_at FROM seen_tokens ORDER BY 1, 2, 3"
        ).fetchall()
        out["recorded"] = conn.execute(
            "SELECT r.connection, r.subject_key, r.subject, u.username, r.outcome,"
            " r.rules_sha256, r.bag FROM recorded_signins r"
            " LEFT JOIN users u ON u.id = r.user_id ORDER BY 1, 2"
        ).fetchall()
        out["audit"] = conn.execute(
            "SELECT a.token_id, a.connection, a.subject, a.outcome, a.reason, a.message,"
            " u.username, a.changes, a.trace, a.rules_sha256 FROM audit a"
            " LEFT JOIN users u ON u.id = a.user_id ORDER BY 1, 2, 3, 4, 5, 6, 7, 8, 9, 10"
        ).fetchall()
    return out


def differences(ours: Snapshot, theirs: Snapshot, *, limit: int = 3) -> list[str]:
    """What differs between two snapshots, table by table (empty: identical)."""
    found = []
    for table in sorted(ours.keys() | theirs.keys()):
        a, b = ours.get(table, []), theirs.get(table, [])
        if a == b:
            continue
        only_a = list((Counter(a) - Counter(b)).elements())
        only_b = list((Counter(b) - Counter(a)).elements())
        found.append(
            f"{table}: {len(a)} rows against {len(b)}; {len(only_a)} only in the first"
            f" (e.g. {sorted(only_a, key=repr)[:limit]}), {len(only_b)} only in the second"
            f" (e.g. {sorted(only_b, key=repr)[:limit]})"
        )
    return found


def outcome_counts(snap: Snapshot) -> dict[str, int]:
    return dict(sorted(Counter(row[3] for row in snap["audit"]).items()))


def stale_reads(snap: Snapshot) -> int:
    """Contention rules: sign-ins that saw an account's group count another sign-in of
    the same account had already seen (a lost update: both read the same state)."""
    seen: Counter[tuple[str, object]] = Counter()
    for row in snap["audit"]:
        changes = json.loads(row[7]) if row[7] else {}
        before = changes.get("display_name", [None])[0] if isinstance(changes, dict) else None
        seen[row[2], before] += 1
    return sum(n - 1 for n in seen.values() if n > 1)


def order_free(snap: Snapshot) -> Snapshot:
    """A snapshot without what depends on the order in which concurrent sign-ins
    committed: the audit rows, and which sign-in each identity's recorded row holds
    (the last one committed; `recorded_last` checks that)."""
    out = {k: v for k, v in snap.items() if k != "audit"}
    out["recorded"] = [row[:6] for row in snap["recorded"]]  # all but the bag
    return out


def last_sign_ins(url: str) -> dict[str, str]:
    """Each subject's last committed sign-in: the token id of its newest audit row that
    wrote the account (PostgreSQL serialises an account's sign-ins on its row, so the
    later one's audit row takes the higher id)."""
    import psycopg

    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT DISTINCT ON (subject) subject, token_id FROM audit"
            " WHERE outcome IN ('created', 'updated', 'unchanged') ORDER BY subject, id DESC"
        ).fetchall()
    return {str(subject): str(token) for subject, token in rows}


def recorded_last(snap: Snapshot, last: dict[str, str]) -> list[str]:
    """Problems, if any recorded sign-in is not its identity's last one: a contention
    token `c-W-J` carries the one group `g-W-J`, so the bag tells which token it holds."""
    problems = []
    for row in snap["recorded"]:
        subject, bag = row[2], json.loads(row[6])
        token = last.get(subject)
        if token is not None and not token.startswith("c-"):
            continue  # a warm-up sign-in, alone for its person
        held = bag.get("attributes", {}).get("groups")
        if token is None or held != ["g-" + token.removeprefix("c-")]:
            problems.append(f"recorded: {subject} holds {held}, its last sign-in was {token}")
    return problems[:3]


# -- throughput: jitprov apply --batch against the loop ---------------------------------


@dataclass(slots=True)
class Run:
    """One contender's run at one writer count."""

    seconds: float
    outcomes: Counter[str] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)


def write_shares(folder: Path, raw: Sequence[bytes], writers: int) -> list[Path]:
    """The tokens dealt round-robin into one JSONL file per writer."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for w in range(writers):
        path = folder / f"share-{writers}-{w}.jsonl"
        path.write_text("".join(json.dumps({"token": t.decode()}) + "\n" for t in raw[w::writers]))
        paths.append(path)
    return paths


def run_jitprov(config: Path, shares: list[Path], folder: Path) -> Run:
    base = ["apply", "-c", "okta", "--unsigned-samples", "--at", STAMP, "--json", "--batch"]
    commands = [jitprov_command(config, *base, str(share)) for share in shares]
    run, outs = _timed(commands, folder, "jitprov")
    for share, out in zip(shares, outs, strict=True):
        lines = out.read_text().splitlines()
        expected = sum(1 for line in share.read_text().splitlines() if line.strip())
        if len(lines) != expected:
            run.failures.append(f"{share.name}: {len(lines)} results for {expected} tokens")
        for line in lines:
            try:
                result = json.loads(line)
            except ValueError:
                run.failures.append(f"{share.name}: not a result: {line[:200]!r}")
                continue
            run.outcomes[result["outcome"]] += 1
            if result["outcome"] not in ("created", "updated", "unchanged"):
                run.failures.append(f"{result['outcome']}: {result.get('message')}")
    return run


def run_loop(url: str, shares: list[Path], folder: Path, rules_sha256: str) -> Run:
    commands = [
        [sys.executable, str(LOOP), url, str(share), STAMP, rules_sha256] for share in shares
    ]
    run, outs = _timed(commands, folder, "loop")
    for out in outs:
        text = out.read_text().strip()
        try:
            run.outcomes.update(json.loads(text) if text else {})
        except ValueError:
            run.failures.append(f"{out.name}: not a count of outcomes: {text[:200]!r}")
    return run


def _timed(commands: list[list[str]], folder: Path, label: str) -> tuple[Run, list[Path]]:
    """Start every command at once (output to files); seconds from the first start to
    the last end."""
    outs = [folder / f"{label}-{len(commands)}-{i}.out" for i in range(len(commands))]
    with contextlib.ExitStack() as files:
        started = time.perf_counter()
        running = [
            subprocess.Popen(
                command,
                stdout=files.enter_context(out.open("wb")),
                stderr=files.enter_context(out.with_suffix(".err").open("wb")),
            )
            for command, out in zip(commands, outs, strict=True)
        ]
        codes = [process.wait() for process in running]
        run = Run(time.perf_counter() - started)
    for code, out in zip(codes, outs, strict=True):
        if code != 0:
            stderr = out.with_suffix(".err").read_text(errors="replace")
            run.failures.append(f"{out.stem}: exit {code}: {stderr[-300:]}")
    return run, outs


def throughput(
    server: Server, template: str, folder: Path, raw: Sequence[bytes], writers: int, first: str
) -> tuple[Run, Run, list[str]]:
    """jitprov and the loop at one writer count (`first` goes first), each on a fresh
    copy of the template; what differs between the stores they leave."""
    shares = write_shares(folder / "shares", raw, writers)
    names = {k: server.create(f"{k}_{writers}", template) for k in ("jitprov", "loop")}
    urls = {k: server.url(name) for k, name in names.items()}
    config = workspace(folder / f"ws-{writers}", urls["jitprov"])
    runs: dict[str, Run] = {}
    for name in sorted(names, key=lambda n: n != first):
        server.checkpoint()
        if name == "jitprov":
            runs[name] = run_jitprov(config, shares, folder)
        else:
            runs[name] = run_loop(urls["loop"], shares, folder, RULES_SHA256)
    ours, theirs = runs["jitprov"], runs["loop"]
    problems = []
    if ours.outcomes != theirs.outcomes:
        problems.append(f"outcomes differ: {dict(ours.outcomes)} against {dict(theirs.outcomes)}")
    if sum(ours.outcomes.values()) != len(raw):
        problems.append(f"{sum(ours.outcomes.values())} results for {len(raw)} tokens")
    with ThreadPoolExecutor(2) as pool:  # the server sorts both at once
        mine, theirs_snap = pool.map(snapshot, (urls["jitprov"], urls["loop"]))
    problems += differences(mine, theirs_snap)
    for name in names.values():
        server.drop(name)
    return ours, theirs, problems


# -- contention: many writers, a few shared accounts ------------------------------------


def contention_tokens(writers: int, per_writer: int, *, shared: bool = True) -> list[list[bytes]]:
    """Each writer's tokens: one of SHARED_PEOPLE people at random (seeded), a group and
    a token id of its own. `shared=False`: each writer has SHARED_PEOPLE people of its
    own (the same work without contention)."""
    out = []
    for w in range(writers):
        pick = random.Random(w)
        share = []
        for j in range(per_writer):
            p = (
                f"{pick.randrange(SHARED_PEOPLE)}"
                if shared
                else f"{w}x{pick.randrange(SHARED_PEOPLE)}"
            )
            share.append(
                f'subject = "cs{p}"\ntoken_id = "c-{w}-{j}"\n[attributes]\nuid = "c{p}"\n'
                f'email = "c{p}@example.com"\ndepartment = "dept-{p[-1]}"\n'
                f'groups = ["g-{w}-{j}"]\n'.encode()
            )
        out.append(share)
    return out


def warmup_tokens(writers: int) -> list[bytes]:
    """One sign-in per writer, of a person of its own, made before the clock starts: the
    process's first sign-in opens its pool's connection and fills that server session's
    caches, which `jitprov serve` pays once per worker, not per sign-in."""
    return [
        f'subject = "warm{w}"\ntoken_id = "warm-{w}"\n[attributes]\nuid = "warm{w}"\n'
        f'email = "warm{w}@example.com"\ndepartment = "warm"\ngroups = ["warm"]\n'.encode()
        for w in range(writers)
    ]


def _writer(config: str, warmup: list[bytes], raw: list[bytes], barrier: Any, results: Any) -> None:
    """One writer process: a Provisioner (as in each `jitprov serve` worker), its warm-up
    sign-ins, then every sign-in timed, the store's retries counted; reports to
    `results`."""
    try:
        from engine.config import load_config
        from engine.provision import Provisioner
        from engine.store.base import listen_for_retries

        retries: list[str] = []
        stop = listen_for_retries(retries.append)
        provisioner = Provisioner(load_config(config))
        provisioner.rules("okta")
        provisioner.store()
        cold, failures = [], []
        for token in warmup:
            started = time.perf_counter_ns()
            result = provisioner.apply("okta", token, now=NOW, allow_samples=True)
            cold.append(time.perf_counter_ns() - started)
            if result.outcome not in ("created", "updated", "unchanged"):
                failures.append(f"warm-up: {result.outcome}: {result.message}")
    except BaseException:
        barrier.abort()  # the stage hears of it at once, not after the barrier's timeout
        raise
    barrier.wait()
    latencies, outcomes = [], Counter[str]()
    for token in raw:
        started = time.perf_counter_ns()
        result = provisioner.apply("okta", token, now=NOW, allow_samples=True)
        latencies.append(time.perf_counter_ns() - started)
        outcomes[result.outcome] += 1
        if result.outcome not in ("created", "updated", "unchanged"):
            failures.append(f"{result.outcome}: {result.message}")
    provisioner.close()
    stop()
    results.put((latencies, dict(outcomes), len(retries), failures, cold))


@dataclass(slots=True)
class Contention:
    """What the writers of one contention run report, summed."""

    seconds: float
    latencies: list[int] = field(default_factory=list)
    outcomes: Counter[str] = field(default_factory=Counter)
    retries: int = 0
    deadlocks: int = 0
    failures: list[str] = field(default_factory=list)
    crashed: list[str] = field(default_factory=list)  # writers that did not report
    warmup: list[int] = field(default_factory=list)  # the warm-up sign-ins' latencies


def contend(
    server: Server,
    template: str,
    folder: Path,
    shares: list[list[bytes]],
    warmups: list[list[bytes]],
    *,
    keep: bool = True,
) -> tuple[Contention, Snapshot, dict[str, str]]:
    """Each share applied by a writer process of its own (after its warm-up sign-ins),
    all starting at once, on a fresh copy of the template; what they report, and
    (`keep`) the store they leave with each subject's last sign-in."""
    name = server.create(f"contention_{len(shares)}", template)
    config = workspace(folder / f"contention-{len(shares)}", server.url(name), CONTENTION_RULES)
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(len(shares) + 1)
    results = context.Queue()
    workers = [
        context.Process(target=_writer, args=(str(config), warm, share, barrier, results))
        for warm, share in zip(warmups, shares, strict=True)
    ]
    deadlocks = server.deadlocks(name)
    for worker in workers:
        worker.start()
    found = Contention(float("nan"))
    got: list[Any] = []
    try:
        barrier.wait(timeout=120)
        started = time.perf_counter()
        while len(got) < len(workers):
            try:
                got.append(results.get(timeout=1.0))
            except queue.Empty:
                if not any(w.is_alive() for w in workers) and results.empty():
                    break  # a writer died without reporting
        found.seconds = time.perf_counter() - started
    except threading.BrokenBarrierError:
        found.crashed.append("a writer failed before it could start")
    for worker in workers:
        worker.join(timeout=60)
        if worker.exitcode != 0:
            found.crashed.append(f"a writer exited with {worker.exitcode}")
            worker.kill()
    if len(got) < len(workers):
        found.crashed.append(f"{len(workers) - len(got)} writers did not report")
    for latencies, outcomes, retries, failures, cold in got:
        found.warmup += cold
        found.latencies += latencies
        found.outcomes.update(outcomes)
        found.retries += retries
        found.failures += failures
    server.wait_idle(name)  # every session gone: its statistics are in
    found.deadlocks = server.deadlocks(name) - deadlocks
    snap = snapshot(server.url(name)) if keep else {}
    last = last_sign_ins(server.url(name)) if keep else {}
    server.drop(name)
    return found, snap, last


def _stats(samples: list[int]) -> Stats:
    if not samples:
        return Stats(float("nan"), float("nan"), 0)
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return Stats(float(statistics.median(ordered)), float(p99), len(ordered))


def contention(
    server: Server, template: str, folder: Path, writers: int, per_writer: int
) -> list[Comparison]:
    """`writers` processes on SHARED_PEOPLE accounts, against the same tokens applied
    one by one by one writer (round-robin over the shares: the order of a fair run)."""
    shares = contention_tokens(writers, per_writer)
    serial = [t for group in zip(*shares, strict=True) for t in group]
    warm = warmup_tokens(writers)
    many, many_snap, many_last = contend(server, template, folder, shares, [[t] for t in warm])
    one, one_snap, one_last = contend(server, template, folder, [serial], [warm])
    # The control: as many writers and sign-ins, each writer with people of its own, so
    # what the shared accounts cost shows apart from what the machine's cores cost.
    unshared = contention_tokens(writers, per_writer, shared=False)
    apart, _, _ = contend(server, template, folder, unshared, [[t] for t in warm], keep=False)
    problems = many.crashed + one.crashed + apart.crashed + one.failures[:3] + apart.failures[:3]
    problems += differences(order_free(many_snap), order_free(one_snap))
    problems += recorded_last(many_snap, many_last) + recorded_last(one_snap, one_last)
    if outcome_counts(many_snap) != outcome_counts(one_snap):
        problems.append(
            f"audit outcomes differ: {outcome_counts(many_snap)} against {outcome_counts(one_snap)}"
        )
    total = writers * per_writer
    if sum(many.outcomes.values()) != total:
        problems.append(f"{sum(many.outcomes.values())} results for {total} tokens")
    counts = {
        "deadlocks": many.deadlocks,
        "store_retries": many.retries,
        "failed_sign_ins": len(many.failures),
        "stale_reads": stale_reads(many_snap),
    }
    named = [f"{v} {k.replace('_', ' ')}" for k, v in counts.items() if v]
    reason = "; ".join(named + many.failures[:3] + problems)[:1000]
    ours, theirs = _stats(many.latencies), _stats(one.latencies)
    subject = (
        f"{writers} writer processes x {per_writer} sign-ins on {SHARED_PEOPLE} shared accounts"
    )
    extra: dict[str, object] = {
        **counts,
        "p50_ms": round(ours.median_ns / 1e6, 2),
        "p99_ms": round(ours.p99_ns / 1e6, 2),
        "serial_p50_ms": round(theirs.median_ns / 1e6, 2),
        "serial_p99_ms": round(theirs.p99_ns / 1e6, 2),
        "sign_ins_per_s": round(total / many.seconds) if many.seconds > 0 else None,
        "serial_sign_ins_per_s": round(total / one.seconds) if one.seconds > 0 else None,
        "unshared_p50_ms": round(_stats(apart.latencies).median_ns / 1e6, 2),
        "unshared_p99_ms": round(_stats(apart.latencies).p99_ns / 1e6, 2),
        "unshared_sign_ins_per_s": round(total / apart.seconds) if apart.seconds > 0 else None,
        "unshared_deadlocks_retries": [apart.deadlocks, apart.retries],
        "serial_deadlocks_retries": [one.deadlocks, one.retries],
        "outcomes": dict(sorted(many.outcomes.items())),
        "warmup_ms": sorted(round(v / 1e6, 1) for v in many.warmup),
    }
    budget = Stats(P99_BUDGET_MS * 1e6, P99_BUDGET_MS * 1e6, 1)
    return [
        Comparison(
            "postgres",
            f"contention: {subject}, latency per sign-in (Provisioner.apply)",
            "the same tokens applied one by one by one writer",
            ours,
            theirs,
            notes="median and p99 of each sign-in, timed in its writer; the final store"
            " must equal the one-writer store, with 0 deadlocks, retries and failures",
            extra=extra,
            invalid=reason,
        ),
        Comparison(
            "postgres",
            f"contention: {subject}: p99 latency",
            f"{P99_BUDGET_MS:g} ms budget",
            Stats(ours.p99_ns, ours.p99_ns, ours.rounds),
            budget,
            target=1.0,
            extra={"p99_ms": extra["p99_ms"]},
            invalid=reason,
        ),
    ]


# -- the stage --------------------------------------------------------------------------


def run(quick: bool) -> list[Comparison]:
    admin = admin_url()
    why = unreachable(admin)
    if why is not None:
        print(f"postgres stage skipped: {why} (set {ADMIN_ENV})", file=sys.stderr)
        return []
    import psycopg

    sizes = Sizes.quick() if quick else Sizes()
    server = Server(admin)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            return _measure(server, Path(tmp), sizes)
    except (psycopg.Error, RuntimeError) as exc:
        print(f"postgres stage stopped: {type(exc).__name__}: {exc}", file=sys.stderr)
        return []
    finally:
        server.close()


@dataclass(frozen=True, slots=True)
class Sizes:
    accounts: int = 100_000
    count: int = 10_000
    levels: tuple[int, ...] = (1, 4, 8)
    rounds: int = 2
    writers: int = 8  # contention
    per_writer: int = 250

    @classmethod
    def quick(cls) -> Sizes:
        return cls(20_000, 2_000, (1, 4), 1, 8, 60)


def _measure(server: Server, folder: Path, sizes: Sizes) -> list[Comparison]:
    started = time.perf_counter()
    template = server.create("template")
    prefill(server.url(template), folder / "template", sizes.accounts)
    filled = time.perf_counter() - started
    count, levels = sizes.count, sizes.levels
    raw = [t.raw for t in tokens(sizes.accounts, count)]
    seconds: dict[tuple[str, int], list[float]] = {}
    problems: dict[int, list[str]] = {k: [] for k in levels}
    outcomes: dict[int, Counter[str]] = {}
    for r in range(sizes.rounds):
        for i, k in enumerate(levels):
            first = ("jitprov", "loop")[(i + r) % 2]  # each goes first in turn
            ours, theirs, differ = throughput(server, template, folder, raw, k, first)
            seconds.setdefault(("jitprov", k), []).append(ours.seconds)
            seconds.setdefault(("loop", k), []).append(theirs.seconds)
            problems[k] += ours.failures[:3] + theirs.failures[:3] + differ
            outcomes[k] = ours.outcomes
    median = {key: statistics.median(values) for key, values in seconds.items()}
    rate = {
        name: {k: count / median[key, k] for k in levels}
        for name, key in (("jitprov", "jitprov"), ("psycopg loop", "loop"))
    }
    subject = f"{count:,} sign-ins into {sizes.accounts:,} accounts"
    results = []
    for k in levels:
        extra: dict[str, object] = {
            "writers": k,
            "jitprov_sign_ins_per_s": round(rate["jitprov"][k]),
            "loop_sign_ins_per_s": round(rate["psycopg loop"][k]),
            "jitprov_seconds": [round(s, 2) for s in seconds["jitprov", k]],
            "loop_seconds": [round(s, 2) for s in seconds["loop", k]],
            "outcomes": dict(sorted(outcomes[k].items())),
            "template_seconds": round(filled, 1),
        }
        if k != levels[0]:
            extra["scaling_over_1_writer"] = {
                name: round(by[k] / by[levels[0]], 2) for name, by in rate.items()
            }
        if k == levels[-1]:
            extra["curve"] = {
                name: [(n, round(v)) for n, v in by.items()] for name, by in rate.items()
            }
            extra["curve_x"] = "writer processes"
            extra["curve_y"] = "sign-ins per second (median of the rounds)"
        results.append(
            Comparison(
                stage="postgres",
                subject=f"`jitprov apply --batch`, {k} writer process{'es' if k > 1 else ''},"
                f" {subject}",
                baseline="hand-written psycopg loop, same writers, identical store",
                ours=_per_sign_in(seconds["jitprov", k], count),
                theirs=_per_sign_in(seconds["loop", k], count),
                target=TARGET,
                notes="wall time per sign-in, from the start of all writers to the end of"
                f" all (process start included); median of {sizes.rounds} round(s), max as p99",
                extra=extra,
                invalid="; ".join(problems[k])[:1000],
            )
        )
    results += contention(server, template, folder, sizes.writers, sizes.per_writer)
    return results


def _per_sign_in(seconds: list[float], count: int) -> Stats:
    return Stats(statistics.median(seconds) / count * 1e9, max(seconds) / count * 1e9, len(seconds))


def main(argv: list[str]) -> int:
    for c in run("--quick" in argv):
        met = {None: "", True: " (met)", False: " (NOT met)"}[c.met]
        print(
            f"{c.subject}: ours {c.ours.median_ms:.3f} ms (p99 {c.ours.p99_ns / 1e6:.2f}),"
            f" baseline {c.theirs.median_ms:.3f} ms, ratio {c.ratio:.2f}{met}"
        )
        if c.invalid:
            print(f"  INVALID: {c.invalid}")
        print(f"  { ({k: v for k, v in c.extra.items() if not k.startswith('curve')}) }")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
