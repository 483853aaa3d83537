"""Store stage: provisioning samples into a pre-filled SQLite store, against a hand-written
sqlite3 loop doing the same reads and writes with the same durability settings (WAL,
`synchronous=NORMAL`, foreign keys, one `BEGIN IMMEDIATE` transaction per token). The
loop is bench/floors/store.py's `baseline` (no jitprov code); it leaves exactly jitprov's
store (tests/test_bench_store.py compares the two row by row).

Comparisons against the same loop (which gets each token's values decoded and only
talks to SQLite), on CPU time, each token applied by every contender in turn, the batch
cut into ten turns for the ratio's median and spread:
- steps 3–8 (`Provisioner.apply_token` on already-decoded samples: replay, find, rules
  evaluation, diff, write, audit) — the store and pipeline cost; target ≤ 1.5x;
- the whole `Provisioner.apply` from sample bytes, intake included — for information;
- the command, `jitprov apply --batch DIR --json` over sample files against the loop
  reading the same files (CPU of the child process, start included; five turns).
Mix: 80 % sign-ins of existing accounts (a department and a group change), 20 % first
logins. Per-token medians at several store sizes (1M accounts in full mode), and the
latency tail (p99 of wall time per token).

`python -m bench.bench_store [--quick]`
"""

from __future__ import annotations

import gc
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from bench.floors.store import (
    STAMP,
    STORE_RULES,
    STORE_RULES_SHA256,
    STORE_TRACE,
    Token,
    baseline,
)
from bench.harness import MIN_TURNS, Background, Comparison, Stats, placeholder_certificate
from engine.config import load_config
from engine.intake import read_token
from engine.provision import Provisioner
from engine.store import SqliteStore, layout_for

# The loop itself is bench/floors/store.py's `baseline` (no jitprov code in it).
RULES = STORE_RULES
CONFIG = """\
[store]
path = "jitprov.db"
[store.fields]
department = "text"
[connections.okta]
protocol = "saml2"
issuer = "https://idp.example/"
certificate = "idp.pem"
audience = "https://sp.example/"
rules = "okta.rules"
"""
# What a hand-written mapping of RULES records in each audit row, as constants.
TRACE = STORE_TRACE
RULES_SHA256 = STORE_RULES_SHA256
NOW = datetime(2025, 5, 1, 12, 0, tzinfo=UTC)


def _sample(n: int, token_id: str, department: str, groups: tuple[str, ...]) -> bytes:
    quoted = ", ".join(f'"{g}"' for g in groups)
    return (
        f'subject = "s{n}"\ntoken_id = "{token_id}"\n[attributes]\nuid = "u{n}"\n'
        f'email = "u{n}@example.com"\ndepartment = "{department}"\ngroups = [{quoted}]\n'
    ).encode()


def tokens(accounts: int, count: int) -> list[Token]:
    """`count` sign-ins: 4 of 5 for existing accounts (changing), 1 of 5 first logins."""
    out = []
    for i in range(count):
        n = (i * 7919) % accounts if i % 5 else accounts + i
        department = f"dept-{i % 13}"
        groups = ("everyone", f"team-{i % 17}")
        out.append(Token(_sample(n, f"t{i}", department, groups), n, f"t{i}", department, groups))
    return out


def workspace(folder: Path, accounts: int) -> Path:
    """A workspace whose store holds `accounts` accounts (each with 2 groups and a link)."""
    folder.mkdir(parents=True, exist_ok=True)
    placeholder_certificate(folder / "idp.pem")
    (folder / "okta.rules").write_text(RULES)
    (folder / "jitprov.toml").write_text(CONFIG)
    config = load_config(folder / "jitprov.toml")
    store = SqliteStore(folder / "jitprov.db", layout_for(config))
    conn = store.conn
    conn.execute("BEGIN")
    conn.executemany(
        "INSERT INTO users (id, username, username_key, email, department, created_at, updated_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?)",
        (
            (n + 1, f"u{n}", f"u{n}", f"u{n}@example.com", "old", STAMP, STAMP)
            for n in range(accounts)
        ),
    )
    conn.executemany(
        "INSERT INTO user_groups (user_id, value, source) VALUES (?, ?, 'okta')",
        ((n + 1, g) for n in range(accounts) for g in ("everyone", "team-old")),
    )
    conn.executemany(
        "INSERT INTO identity_links (connection, subject, subject_key, user_id, created_at,"
        " last_seen_at) VALUES ('okta', ?, ?, ?, ?, ?)",
        ((f"s{n}", f"s{n}", n + 1, STAMP, STAMP) for n in range(accounts)),
    )
    conn.execute("COMMIT")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    store.close()
    return folder / "jitprov.toml"


def ours(
    config_path: Path, *, decoded: bool
) -> tuple[Callable[[Token], object], Callable[[], None]]:
    """jitprov's apply: from decoded tokens (steps 3–8) or from sample bytes."""
    provisioner = Provisioner(load_config(config_path))
    conn = provisioner.config.connection("okta")
    rules = provisioner.rules("okta")
    cache: dict[str, object] = {}

    def apply(token: Token) -> object:
        if decoded:
            validated = cache.pop(token.token_id)
            result = provisioner.apply_token(conn, validated, now=NOW, rules=rules)  # type: ignore[arg-type]
        else:
            result = provisioner.apply("okta", token.raw, now=NOW, allow_samples=True)
        assert result.outcome in ("created", "updated", "unchanged"), result.message
        return result

    def prepare(batch: list[Token]) -> None:
        for t in batch:
            cache[t.token_id] = read_token(t.raw, conn, now=NOW, allow_samples=True)

    apply.prepare = prepare  # type: ignore[attr-defined]
    return apply, provisioner.close


Maker = Callable[[], tuple[Callable[[Token], object], Callable[[], None]]]


TURNS = 10  # the batch is cut into this many turns for the ratio's median and spread


@dataclass(slots=True)
class Measured:
    """One contender's times: CPU per token for each turn (its background threads'
    included), and each token's CPU and wall time (the wall time for the latency tail)."""

    turns: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    wall: list[float] = field(default_factory=list)

    def stats(self) -> Stats:
        """Median CPU per token; p99 of the wall time per token."""
        return Stats(float(statistics.median(self.cpu)), Stats.of(self.wall).p99_ns, len(self.cpu))


def _interleaved(makers: dict[str, Maker], batch: list[Token]) -> dict[str, Measured]:
    """Apply each token with every contender in turn (each on its own copy of the store),
    so drift in the machine's speed (page cache, other load) hits them alike; CPU and
    wall time of each, the turns being TURNS equal parts of the batch. The CPU time of
    a token is the main thread's; the CPU of the threads a contender started (jitprov's
    WAL checkpointer) is added to its turns (harness.Background)."""
    background = Background()
    appliers = {}
    closers = []
    for name, make in makers.items():
        apply, close = make()
        if hasattr(apply, "prepare"):
            apply.prepare(batch)  # decoding is not what this measures
        appliers[name] = apply
        closers.append(close)
    out = {name: Measured() for name in makers}
    names = list(appliers)
    cpu, wall = time.thread_time_ns, time.perf_counter_ns
    warm = 2
    size = max(1, (len(batch) - warm) // TURNS)
    sums = dict.fromkeys(names, 0)
    gc.disable()
    try:
        for n, token in enumerate(batch):
            for name in names if n % 2 == 0 else reversed(names):
                started, started_cpu = wall(), cpu()
                appliers[name](token)
                spent_cpu, spent = cpu() - started_cpu, wall() - started
                if n == 0:
                    background.adopt(name)  # the store (and its threads) opened just now
                if n >= warm:
                    out[name].cpu.append(spent_cpu)
                    out[name].wall.append(spent)
                    sums[name] += spent_cpu
            if n == warm - 1:
                for name in names:
                    background.since(name)
            if n >= warm and (n - warm + 1) % size == 0 and len(out[names[0]].turns) < TURNS:
                for name in names:
                    out[name].turns.append((sums[name] + background.since(name)) / size)
                    sums[name] = 0
                gc.enable()
                gc.collect()
                gc.disable()
    finally:
        gc.enable()
        for close in closers:
            close()
    return out


def compare(folder: Path, accounts: int, count: int, *, full: bool) -> dict[str, Measured]:
    """Per-token times on copies of one pre-filled store: "steps" (decoded tokens),
    "apply" (from bytes, when `full`), "baseline"."""
    config = workspace(folder / "ours", accounts)
    theirs = folder / "baseline.db"
    shutil.copy(folder / "ours" / "jitprov.db", theirs)
    if full:
        shutil.copytree(folder / "ours", folder / "ours2")
    batch = tokens(accounts, count)
    makers: dict[str, Maker] = {
        "steps": lambda: ours(config, decoded=True),
        "baseline": lambda: baseline(theirs),
    }
    if full:
        config2 = folder / "ours2" / "jitprov.toml"
        makers["apply"] = lambda: ours(config2, decoded=False)
    return _interleaved(makers, batch)


def _loop_over_files(db: Path, folder: Path) -> None:
    """The hand-written side of the command comparison: read each sample file, parse its
    TOML, and make the baseline's writes."""
    apply, close = baseline(db)
    try:
        for path in sorted(folder.iterdir()):
            data = tomllib.loads(path.read_bytes().decode("utf-8"))
            found = data["attributes"]
            n = int(data["subject"][1:])
            apply(Token(b"", n, data["token_id"], found["department"], tuple(found["groups"])))
    finally:
        close()


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def batch_command(
    folder: Path, accounts: int, count: int, rounds: int = MIN_TURNS
) -> dict[str, list[float]]:
    """`jitprov apply --batch DIR --json` as users run it (process start, config and rules,
    reading the files, intake, writes, a JSON line per token) against a hand-written loop
    reading the same files: CPU time per token (the child process's, the loop's own),
    the two taking turns (the first alternating), each round on a fresh copy of the
    pre-filled store. Each round's figure per contender, and the wall times."""
    config = workspace(folder / "ours", accounts)
    pristine = folder / "pristine.db"
    shutil.copy(folder / "ours" / "jitprov.db", pristine)
    samples = folder / "samples"
    samples.mkdir()
    for i, token in enumerate(tokens(accounts, count)):
        (samples / f"{i:05d}.toml").write_bytes(token.raw)
    script = Path(sys.executable).with_name("jitprov")
    fallback = [sys.executable, "-c", "import sys; from tui.cli import main; sys.exit(main())"]
    command = [str(script)] if script.exists() else fallback
    command += ["--config", str(config), "apply", "-c", "okta", "--unsigned-samples"]
    command += ["--at", STAMP, "--batch", str(samples), "--json"]
    times: dict[str, list[float]] = {"command": [], "loop": [], "command_wall": [], "loop_wall": []}
    for turn in range(rounds):
        for name in ("command", "loop") if turn % 2 == 0 else ("loop", "command"):
            db = folder / "ours" / "jitprov.db" if name == "command" else folder / "loop.db"
            for extra in ("-wal", "-shm", ".lock"):
                Path(f"{db}{extra}").unlink(missing_ok=True)
            shutil.copy(pristine, db)
            started = time.perf_counter_ns()
            if name == "command":
                before = _children_cpu()
                done = subprocess.run(command, capture_output=True, check=False)
                spent = (_children_cpu() - before) * 1e9
                if done.returncode != 0 or done.stdout.count(b"\n") != count:
                    raise RuntimeError(f"apply --batch failed: {done.stderr.decode()[-500:]}")
            else:
                before_ns = time.process_time_ns()
                _loop_over_files(db, samples)
                spent = time.process_time_ns() - before_ns
            times[f"{name}_wall"].append((time.perf_counter_ns() - started) / count)
            times[name].append(spent / count)
    return times


def run(quick: bool) -> list[Comparison]:
    count, prefill = (2_000, 10_000) if quick else (10_000, 100_000)
    sizes = (1_000, 10_000) if quick else (1_000, 100_000, 1_000_000)
    curve: dict[str, list[tuple[int, float]]] = {"jitprov": [], "sqlite3 loop": []}
    p99: dict[str, dict[int, float]] = {"jitprov": {}, "sqlite3 loop": {}}
    with tempfile.TemporaryDirectory() as tmp:
        main = compare(Path(tmp) / "main", prefill, count, full=True)
        shutil.rmtree(Path(tmp) / "main", ignore_errors=True)
        for size in sizes:
            if size == prefill:
                measured = main
            else:
                measured = compare(Path(tmp) / f"n{size}", size, count, full=False)
                shutil.rmtree(Path(tmp) / f"n{size}", ignore_errors=True)
            for name, key in (("jitprov", "steps"), ("sqlite3 loop", "baseline")):
                stats = measured[key].stats()
                curve[name].append((size, round(stats.median_ns / 1e3, 1)))
                p99[name][size] = round(stats.p99_ns / 1e3, 1)
        files = 1_000 if quick else count
        command = batch_command(Path(tmp) / "command", prefill, files)
    subject = f"{count:,} samples into {prefill:,} accounts"
    wall = {k: round(statistics.median(command[f"{k}_wall"]) / 1e3, 1) for k in ("command", "loop")}
    return [
        Comparison.paired(
            stage="store",
            subject=f"steps 3-8, {subject}",
            baseline="hand-written sqlite3 loop leaving the identical store "
            "(bench/floors/store.py)",
            ours=main["steps"].turns,
            theirs=main["baseline"].turns,
            target=1.5,
            notes="CPU time per token, decoded samples: replay, find, rules, diff, write, "
            f"audit; {TURNS} turns of the batch; tails (p99_us) in wall time",
            extra={
                "curve": curve,
                "curve_x": "accounts in the store",
                "curve_y": "CPU µs per token (median)",
                "p99_us": p99,
            },
        ),
        Comparison.paired(
            stage="store",
            subject=f"whole apply from bytes, {subject}",
            baseline="hand-written sqlite3 loop (bench/floors/store.py)",
            ours=main["apply"].turns,
            theirs=main["baseline"].turns,
            notes="includes sample intake (TOML parsing), which the baseline does not do",
        ),
        Comparison.paired(
            stage="store",
            subject=f"`jitprov apply --batch DIR --json`, {files:,} samples into {prefill:,} "
            "accounts",
            baseline="hand-written loop reading the same files (tomllib + sqlite3)",
            ours=command["command"],
            theirs=command["loop"],
            target=1.5,
            notes="CPU time per token over the whole batch, the command's process start "
            "included; each turn on a fresh copy of the store",
            extra={"wall_us_per_token": wall},
        ),
    ]


def main(argv: list[str]) -> int:
    for c in run("--quick" in argv):
        print(
            f"{c.stage}: {c.subject}: ours {c.ours.median_ns / 1e3:.1f} µs "
            f"(p99 {c.ours.p99_ns / 1e3:.0f}), baseline {c.theirs.median_ns / 1e3:.1f} µs "
            f"(p99 {c.theirs.p99_ns / 1e3:.0f}), ratio {c.ratio:.2f}, target {c.target}"
        )
        for key in ("curve", "p99_us"):
            if key in c.extra:
                print(f"  {key}: {c.extra[key]}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
