"""Store stage: provisioning samples into a pre-filled SQLite store, against a hand-written
sqlite3 loop doing the same reads and writes with the same durability settings (WAL,
`synchronous=NORMAL`, foreign keys, one `BEGIN IMMEDIATE` transaction per token).

Two comparisons against the same baseline (which gets each token's values decoded and
only talks to SQLite):
- steps 3–8 (`Provisioner.apply_token` on already-decoded samples: replay, find, rules
  evaluation, diff, write, audit) — the store and pipeline cost; target ≤ 1.5x;
- the whole `Provisioner.apply` from sample bytes, intake included — for information.
Mix: 80 % sign-ins of existing accounts (a department and a group change), 20 % first
logins. Per-token medians and p99 at several store sizes (1M accounts in full mode).

`python -m bench.bench_store [--quick]`
"""

from __future__ import annotations

import gc
import hashlib
import json
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from bench.harness import Comparison, Stats
from engine.config import load_config
from engine.intake import read_token
from engine.provision import Provisioner
from engine.store import SqliteStore, layout_for

RULES = """\
username   = first(@uid)
email      = first(@email)
department = first(@department)
groups     = @groups
"""
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
TRACE = json.dumps(
    [
        {"field": f, "line": n, "rule": None}
        for n, f in enumerate(("username", "email", "department", "groups"), 1)
    ]
)
RULES_SHA256 = hashlib.sha256(RULES.encode()).hexdigest()
NOW = datetime(2025, 5, 1, 12, 0, tzinfo=UTC)
STAMP = "2025-05-01T12:00:00Z"


@dataclass(frozen=True, slots=True)
class Token:
    """One sign-in, as sample bytes (ours) and as decoded values (the baseline's)."""

    raw: bytes
    n: int
    token_id: str
    department: str
    groups: tuple[str, ...]


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
    (folder / "idp.pem").write_text("unused\n")
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


def baseline(db: Path) -> tuple[Callable[[Token], object], Callable[[], None]]:
    """The same reads and writes by hand: prepared statements, no abstraction. It leaves
    a store identical to jitprov's, audit rows included (the trace and the rules' digest
    are constants here); tests/test_bench_store.py compares the two stores row by row."""
    conn = sqlite3.connect(db, isolation_level=None, timeout=5.0)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute("PRAGMA foreign_keys = ON")
    ex = conn.execute

    def apply(t: Token) -> object:
        ex("BEGIN IMMEDIATE")
        cur = ex(
            "INSERT INTO seen_tokens (connection, token_id, expires_at) VALUES ('okta', ?, NULL)"
            " ON CONFLICT (connection, token_id) DO NOTHING",
            (t.token_id,),
        )
        assert cur.rowcount == 1
        row = ex(
            "SELECT user_id FROM identity_links WHERE connection = 'okta' AND subject_key = ?",
            (f"s{t.n}",),
        ).fetchone()
        changes: dict[str, object] = {}
        wanted = set(t.groups)
        if row is None:
            username, email = f"u{t.n}", f"u{t.n}@example.com"
            assert ex("SELECT id FROM users WHERE username_key = ?", (username,)).fetchone() is None
            user_id = ex(
                "INSERT INTO users (username, username_key, email, department, created_at,"
                " updated_at) VALUES (?, ?, ?, ?, ?, ?)",
                (username, username, email, t.department, STAMP, STAMP),
            ).lastrowid
            conn.executemany(
                "INSERT INTO user_groups (user_id, value, source) VALUES (?, ?, 'okta')",
                [(user_id, g) for g in sorted(wanted)],
            )
            ex(
                "INSERT INTO identity_links (connection, subject, subject_key, user_id,"
                " created_at, last_seen_at) VALUES ('okta', ?, ?, ?, ?, ?)",
                (f"s{t.n}", f"s{t.n}", user_id, STAMP, STAMP),
            )
            changes = {
                "username": [None, username],
                "email": [None, email],
                "department": [None, t.department],
                "groups": {"added": sorted(wanted), "removed": []},
            }
            outcome = "created"
        else:
            user_id = row[0]
            user = ex(
                "SELECT id, username, email, department FROM users WHERE id = ?", (user_id,)
            ).fetchone()
            members = set(ex("SELECT value, source FROM user_groups WHERE user_id = ?", (user_id,)))
            ex("SELECT connection, subject FROM identity_links WHERE user_id = ?", (user_id,))
            keep = {m for m in members if m[1] != "okta"} | {(g, "okta") for g in wanted}
            if user[3] != t.department:
                ex(
                    "UPDATE users SET department = ?, updated_at = ? WHERE id = ?",
                    (t.department, STAMP, user_id),
                )
                changes["department"] = [user[3], t.department]
            elif keep != members:
                ex("UPDATE users SET updated_at = ? WHERE id = ?", (STAMP, user_id))
            conn.executemany(
                "DELETE FROM user_groups WHERE user_id = ? AND value = ? AND source = ?",
                [(user_id, v, s) for v, s in members - keep],
            )
            conn.executemany(
                "INSERT INTO user_groups (user_id, value, source) VALUES (?, ?, ?)",
                [(user_id, v, s) for v, s in keep - members],
            )
            ex(
                "UPDATE identity_links SET last_seen_at = ? WHERE connection = 'okta'"
                " AND subject_key = ?",
                (STAMP, f"s{t.n}"),
            )
            old, new = {v for v, _ in members}, {v for v, _ in keep}
            if old != new:
                changes["groups"] = {"added": sorted(new - old), "removed": sorted(old - new)}
            outcome = "updated" if changes or keep != members else "unchanged"
        ex(
            "INSERT INTO audit (at, connection, subject, token_id, outcome, reason, message,"
            " user_id, changes, trace, rules_sha256) VALUES (?, 'okta', ?, ?, ?, NULL, NULL,"
            " ?, ?, ?, ?)",
            (
                STAMP,
                f"s{t.n}",
                t.token_id,
                outcome,
                user_id,
                json.dumps(changes),
                TRACE,
                RULES_SHA256,
            ),
        )
        ex("COMMIT")
        return outcome

    return apply, conn.close


Maker = Callable[[], tuple[Callable[[Token], object], Callable[[], None]]]


def _interleaved(makers: dict[str, Maker], batch: list[Token]) -> dict[str, Stats]:
    """Apply each token with every contender in turn (each on its own copy of the store),
    so drift in the machine's speed (page cache, other load) hits them alike."""
    appliers = {}
    closers = []
    for name, make in makers.items():
        apply, close = make()
        if hasattr(apply, "prepare"):
            apply.prepare(batch)  # decoding is not what this measures
        appliers[name] = apply
        closers.append(close)
    samples: dict[str, list[int]] = {name: [] for name in makers}
    gc.disable()
    try:
        for n, token in enumerate(batch):
            for name, apply in appliers.items():
                started = time.perf_counter_ns()
                apply(token)
                if n >= 2:  # warm-up
                    samples[name].append(time.perf_counter_ns() - started)
    finally:
        gc.enable()
        for close in closers:
            close()
    out = {}
    for name, values in samples.items():
        values.sort()
        p99 = values[min(len(values) - 1, int(len(values) * 0.99))]
        out[name] = Stats(float(statistics.median(values)), float(p99), len(values))
    return out


def compare(folder: Path, accounts: int, count: int, *, full: bool) -> dict[str, Stats]:
    """Per-token stats on copies of one pre-filled store: "steps" (decoded tokens),
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


def batch_command(folder: Path, accounts: int, count: int, rounds: int = 2) -> dict[str, Stats]:
    """`jitprov apply --batch DIR --json` as users run it (process start, config and rules,
    reading the files, intake, writes, a JSON line per token) against a hand-written loop
    reading the same files: wall time per token, the two taking turns, each round on a
    fresh copy of the pre-filled store."""
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
    times: dict[str, list[float]] = {"command": [], "loop": []}
    for _ in range(rounds):
        for name in times:
            db = folder / "ours" / "jitprov.db" if name == "command" else folder / "loop.db"
            for extra in ("-wal", "-shm", ".lock"):
                Path(f"{db}{extra}").unlink(missing_ok=True)
            shutil.copy(pristine, db)
            started = time.perf_counter_ns()
            if name == "command":
                done = subprocess.run(command, capture_output=True, check=False)
                if done.returncode != 0 or done.stdout.count(b"\n") != count:
                    raise RuntimeError(f"apply --batch failed: {done.stderr.decode()[-500:]}")
            else:
                _loop_over_files(db, samples)
            times[name].append((time.perf_counter_ns() - started) / count)
    return {
        name: Stats(statistics.median(values), max(values), len(values))
        for name, values in times.items()
    }


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
                stats = main
            else:
                stats = compare(Path(tmp) / f"n{size}", size, count, full=False)
                shutil.rmtree(Path(tmp) / f"n{size}", ignore_errors=True)
            for name, key in (("jitprov", "steps"), ("sqlite3 loop", "baseline")):
                curve[name].append((size, stats[key].median_ns / 1e3))
                p99[name][size] = round(stats[key].p99_ns / 1e3, 1)
        command = batch_command(Path(tmp) / "command", prefill, count)
    subject = f"{count:,} samples into {prefill:,} accounts"
    return [
        Comparison(
            stage="store",
            subject=f"steps 3-8, {subject}",
            baseline="hand-written sqlite3 loop",
            ours=main["steps"],
            theirs=main["baseline"],
            target=1.5,
            notes="per token, decoded samples: replay, find, rules, diff, write, audit",
            extra={
                "curve": curve,
                "curve_x": "accounts in the store",
                "curve_y": "µs per token (median)",
                "p99_us": p99,
            },
        ),
        Comparison(
            stage="store",
            subject=f"whole apply from bytes, {subject}",
            baseline="hand-written sqlite3 loop",
            ours=main["apply"],
            theirs=main["baseline"],
            notes="includes sample intake (TOML parsing), which the baseline does not do",
        ),
        Comparison(
            stage="store",
            subject=f"`jitprov apply --batch DIR --json`, {subject}",
            baseline="hand-written loop reading the same files (tomllib + sqlite3)",
            ours=command["command"],
            theirs=command["loop"],
            target=1.5,
            notes="wall time per token over the whole batch, process start included;"
            " the rounds' median, max as p99",
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
