"""End to end: a signed SAML response in, an account written, against two baselines.

Each token is a distinct, freshly minted, signed ~5 KB Response as the browser POSTs it
(base64), half first logins, half later sign-ins of the same people with new assertion
IDs, their department and groups changed. Three contenders, each on its own store,
take the tokens in turns of ten (same tokens, same machine, same run, the order
reversed every other turn; the first turn is a warm-up), timed on CPU time
(bench/harness.py); the ratio is the median of the turns' ratios:

- jitprov: `Provisioner.apply` — every strict check of product.md §2, rules, replay,
  link, diff, write and audit row, into its SQLite store;
- the python3-saml pipeline a team would otherwise build (bench/floors/pipeline.py):
  python3-saml `is_valid` + `get_attributes`, a hand mapping, hand-written sqlite3
  writes (target: a ratio ≤ 0.25, jitprov at least 4x faster);
- the sum of the floors, none of it jitprov's code: the SAML floor
  (bench/floors/saml.py), the rules written by hand (bench/floors/rules.py
  `end_to_end`) and the sqlite3 writes that leave jitprov's rows
  (bench/floors/store.py `SqliteRows`); target ≤ 1.5x. After the run the stage compares
  the floors' store with jitprov's row by row (the measurement counts only if they
  match).

Same durability everywhere: WAL, `synchronous=NORMAL`, one `BEGIN IMMEDIATE` per token.

And the whole process: `jitprov apply --batch DIR --json` over a folder of signed
responses (2,000; 200 with --quick), process start included, against the python3-saml
pipeline run as a whole process over the same files (`python -m bench.floors.pipeline`);
the CPU time of each child process, five turns each on a fresh store (target ≤ 0.3x).
Both run from byte-compiled modules, as installed packages do (pip compiles them when
it installs): the stage compiles this checkout's packages first, since a machine that
sets PYTHONDONTWRITEBYTECODE would otherwise have jitprov compile its ~60 modules from
source at every start while python3-saml, installed by pip, starts from bytecode.

`python -m bench.bench_end_to_end [--quick]`
"""

from __future__ import annotations

import base64
import compileall
import gc
import hashlib
import json
import resource
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bench.bench_saml import AUDIENCE, ISSUER, RECIPIENT, floor_for
from bench.floors import rules as rules_floor
from bench.floors.pipeline import Pipeline
from bench.floors.store import SqliteRows, bag
from bench.harness import MIN_TURNS, Background, Comparison, Stats
from engine.config import Connection, load_config
from engine.provision import Provisioner
from engine.saml import validate_saml
from engine.saml.keys import generate_test_idp
from engine.saml.mint import mint
from engine.sample import Sample

ROOT = Path(__file__).resolve().parent.parent
BLOCK = 10  # tokens a contender takes in a row before the next one's turn
PROCESS_TURNS = MIN_TURNS
PACKAGES = ("rules", "engine", "tui", "bench")  # what the two processes import from here
RULES = """\
let mail = lower(first(@email))
deny "no e-mail address" when mail == null
username     = email_local(mail)
email        = mail
display_name = join([first(@givenName), first(@sn)], " ")
department   = first(@department) ?? "unknown"
groups       = [lower(dn_value(g, "CN")) for g in @memberOf if g matches r"(?i)OU=Apps,"]
groups      += "everyone"
"""
# The audit trace of RULES when every assignment takes effect (all the bench's tokens):
# the store floor writes it as a constant (the rules floor builds no trace).
TRACE = json.dumps(
    [
        {"field": field, "line": line, "rule": None}
        for field, line in (
            ("username", 3),
            ("email", 4),
            ("display_name", 5),
            ("department", 6),
            ("groups", 7),
            ("groups", 8),
        )
    ]
)
RULES_SHA256 = hashlib.sha256(RULES.encode()).hexdigest()
CONFIG = f"""\
[store]
path = "jitprov.db"
[store.fields]
department = "text"
[connections.bench]
protocol = "saml2"
issuer = "{ISSUER}"
certificate = "idp-test.crt"
audience = "{AUDIENCE}"
recipient = "{RECIPIENT}"
rules = "bench.rules"
"""


def workspace(folder: Path) -> tuple[Connection, bytes, bytes]:
    """A jitprov workspace with the bench connection and a test IdP; (connection, the
    IdP's key and certificate as PEM)."""
    key, cert = generate_test_idp(folder, "bench IdP")
    (folder / "bench.rules").write_text(RULES)
    (folder / "jitprov.toml").write_text(CONFIG)
    conn = load_config(folder / "jitprov.toml").connection("bench")
    return conn, key.read_bytes(), cert.read_bytes()


def mint_tokens(
    conn: Connection, key_pem: bytes, cert_pem: bytes, count: int, at: datetime, prefix: str
) -> list[bytes]:
    """`count` signed responses (base64): half first logins of `count // 2` people,
    then each again with a new department or groups."""
    tokens = []
    people = max(1, count // 2)
    for n in range(count):
        person = n % people
        sample = Sample(
            subject=f"user{person}@example.com",
            token_id=f"{prefix}{n}",
            subject_format="urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress",
            attributes={
                "email": [f"User{person}@Example.com"],
                "givenName": ["Test"],
                "sn": [f"User {person}"],
                "department": ["Engineering" if n % 3 else "Sales"],
                "memberOf": [
                    f"CN=Team{(person + k + n // people) % 7},OU=Apps,DC=example,DC=com"
                    for k in range(4)
                ]
                + ["CN=Printers,OU=Devices,DC=example,DC=com"],
            },
        )
        tokens.append(
            mint(sample, conn, key_pem=key_pem, cert_pem=cert_pem, at=at, encoding="base64")
        )
    return tokens


def _stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _user_columns(db: Path) -> list[str]:
    conn = sqlite3.connect(db)
    try:
        names = [row[1] for row in conn.execute("PRAGMA table_info(users)")]
    finally:
        conn.close()
    return [n for n in names if n not in ("id", "username_key", "created_at", "updated_at")]


def dump(db: Path) -> dict[str, list[tuple[object, ...]]]:
    """The rows a sign-in writes, table by table, sorted (audit and user ids left out of
    the audit table's own id)."""
    conn = sqlite3.connect(db)
    try:
        return {
            table: sorted(conn.execute(f"SELECT {columns} FROM {table}"), key=repr)
            for table, columns in (
                ("users", "*"),
                ("user_groups", "*"),
                ("user_roles", "*"),
                ("identity_links", "*"),
                ("seen_tokens", "*"),
                ("recorded_signins", "*"),
                (
                    "audit",
                    "at, connection, subject, token_id, outcome, reason, message, user_id,"
                    " changes, trace, rules_sha256",
                ),
            )
        }
    finally:
        conn.close()


def floors_sum(
    conn: Connection, cert_pem: bytes, db: Path, now: datetime
) -> tuple[Callable[[bytes], str], Callable[[], None]]:
    """The sum of the floors on a jitprov store file: SAML floor, rules by hand, sqlite3."""
    saml = floor_for(cert_pem, conn)
    evaluate = rules_floor.end_to_end
    rows = SqliteRows(
        db,
        connection=conn.id,
        columns=_user_columns(db),
        sets=("groups", "roles"),
        trace=TRACE,
        rules_sha256=RULES_SHA256,
    )
    stamp = _stamp(now)

    def sign_in(b64: bytes) -> str:
        token = saml.validate(base64.b64decode(b64), now)
        plan = evaluate(token.attributes, token.subject, None)
        if "denied" in plan:
            return "denied"
        recorded = bag(
            "saml",
            token.subject,
            token.subject_format,
            token.issuer,
            token.authn_context,
            token.attributes,
        )
        return rows.write(
            token.subject,
            token.token_id,
            _stamp(token.expires_at),
            stamp,
            plan["fields"],
            plan["sets"],
            recorded,
        )

    return sign_in, rows.close


def _per_token(folder: Path, conn: Connection, cert_pem: bytes, tokens: list[bytes], at: datetime):  # type: ignore[no-untyped-def]
    """Per-token CPU time of the three contenders, in turns of BLOCK tokens."""
    config = load_config(folder / "jitprov.toml")
    provisioner = Provisioner(config)
    provisioner.store()  # jitprov's store made before the clock starts
    provisioner.close()
    shutil.copy(folder / "jitprov.db", folder / "floors.db")  # the same empty tables
    provisioner = Provisioner(config)
    now = at + timedelta(seconds=5)
    pipeline = Pipeline(
        cert_pem, issuer=ISSUER, audience=AUDIENCE, recipient=RECIPIENT, db=folder / "peer.db"
    )
    floors, close_floors = floors_sum(conn, cert_pem, folder / "floors.db", now)
    texts = [t.decode() for t in tokens]
    for raw in (tokens[0], tokens[-1]):  # the SAML floor reads what jitprov reads
        token = validate_saml(raw, conn, now=now)
        found = floor_for(cert_pem, conn).validate(base64.b64decode(raw), now)
        assert (found.subject, found.attributes, found.token_id) == (
            token.name_id,
            token.attributes,
            token.token_id,
        ), "the SAML floor must read what jitprov reads"

    def ours(n: int) -> object:
        result = provisioner.apply("bench", tokens[n], now=now)
        assert result.outcome in ("created", "updated", "unchanged"), result.message
        return result

    def peer(n: int) -> object:
        return pipeline.sign_in(texts[n])

    def floor(n: int) -> object:
        return floors(tokens[n])

    contenders: dict[str, Callable[[int], object]] = {"ours": ours, "peer": peer, "floor": floor}
    per_turn: dict[str, list[float]] = {name: [] for name in contenders}
    per_token: dict[str, list[float]] = {name: [] for name in contenders}
    outcomes: dict[str, list[object]] = {name: [] for name in contenders}
    names = list(contenders)
    clock = time.thread_time_ns  # the calls run on this thread; helpers' threads below
    background = Background()
    try:
        for turn, start in enumerate(range(0, len(tokens), BLOCK)):
            block = range(start, min(start + BLOCK, len(tokens)))
            totals = {}
            for name in names if turn % 2 == 0 else reversed(names):
                fn = contenders[name]
                gc.collect()
                gc.disable()
                total = 0
                for n in block:
                    started = clock()
                    outcome = fn(n)
                    spent = clock() - started
                    total += spent
                    per_token[name].append(spent)
                    outcomes[name].append(getattr(outcome, "outcome", outcome))
                gc.enable()
                if turn == 0:
                    background.adopt(name)  # threads it started (jitprov's checkpointer)
                totals[name] = total
            if turn > 0:  # the first turn warms each contender up (imports, caches)
                for name in names:
                    spent = totals[name] + background.since(name)
                    per_turn[name].append(spent / len(block))
    finally:
        gc.enable()
        provisioner.close()
        close_floors()
    invalid = {"floor": "", "peer": ""}
    mine, theirs = dump(folder / "jitprov.db"), dump(folder / "floors.db")
    differ = [table for table in mine if mine[table] != theirs[table]]
    if differ:
        invalid["floor"] = f"the floors' store differs from jitprov's in {', '.join(differ)}"
    if outcomes["floor"] != outcomes["ours"]:
        invalid["floor"] = invalid["floor"] or "the floors' outcomes differ from jitprov's"
    if outcomes["peer"] != outcomes["ours"]:
        invalid["peer"] = "the python3-saml pipeline's outcomes differ from jitprov's"
    return per_turn, per_token, invalid, outcomes["ours"]


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def whole_process(folder: Path, count: int) -> tuple[list[float], list[float], dict[str, object]]:
    """`jitprov apply --batch DIR --json` and the python3-saml pipeline as processes over
    the same `count` files: CPU seconds per token of each turn (jitprov, pipeline)."""
    conn, key_pem, cert_pem = workspace(folder)
    provisioner = Provisioner(load_config(folder / "jitprov.toml"))
    provisioner.store()
    provisioner.close()
    pristine = folder / "pristine.db"
    shutil.copy(folder / "jitprov.db", pristine)
    at = datetime.now(UTC).replace(microsecond=0)
    responses = folder / "responses"
    responses.mkdir()
    for n, token in enumerate(mint_tokens(conn, key_pem, cert_pem, count, at, "_proc")):
        (responses / f"{n:05d}.b64").write_bytes(token)
    for package in PACKAGES:  # bytecode, as an installed package has (see above)
        compileall.compile_dir(ROOT / package, quiet=2)
    script = Path(sys.executable).with_name("jitprov")
    fallback = [sys.executable, "-c", "import sys; from tui.cli import main; sys.exit(main())"]
    jitprov = [str(script)] if script.exists() else fallback
    jitprov += ["--config", str(folder / "jitprov.toml"), "apply", "-c", "bench"]
    jitprov += ["--at", _stamp(at + timedelta(seconds=5)), "--batch", str(responses), "--json"]
    peer = [sys.executable, "-m", "bench.floors.pipeline", "--cert", str(folder / "idp-test.crt")]
    peer += ["--issuer", ISSUER, "--audience", AUDIENCE, "--recipient", RECIPIENT]
    peer += ["--db", str(folder / "peer.db"), str(responses)]
    cpu: dict[str, list[float]] = {"jitprov": [], "pipeline": []}
    wall: dict[str, list[float]] = {"jitprov": [], "pipeline": []}
    for turn in range(PROCESS_TURNS):
        order = ("jitprov", "pipeline") if turn % 2 == 0 else ("pipeline", "jitprov")
        for name in order:
            db = folder / ("jitprov.db" if name == "jitprov" else "peer.db")
            for extra in ("", "-wal", "-shm", ".lock"):
                Path(f"{db}{extra}").unlink(missing_ok=True)
            if name == "jitprov":
                shutil.copy(pristine, db)
            before, started = _children_cpu(), time.perf_counter()
            done = subprocess.run(
                jitprov if name == "jitprov" else peer, capture_output=True, cwd=ROOT, check=False
            )
            wall[name].append((time.perf_counter() - started) / count)
            cpu[name].append((_children_cpu() - before) / count)
            lines = [json.loads(line) for line in done.stdout.splitlines()]
            good = sum(1 for x in lines if x.get("outcome") in ("created", "updated"))
            if done.returncode != 0 or good != count:
                raise RuntimeError(
                    f"{name} over {count} responses: exit {done.returncode}, {good} signed in; "
                    f"{done.stderr.decode()[-500:]}"
                )
    extra: dict[str, object] = {
        "responses": count,
        "wall_ms_per_token": {k: round(sorted(v)[len(v) // 2] * 1e3, 3) for k, v in wall.items()},
    }
    return cpu["jitprov"], cpu["pipeline"], extra


def run(quick: bool) -> list[Comparison]:
    count = 80 if quick else 410  # ten tokens more than the turns measured: the warm-up
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        conn, key_pem, cert_pem = workspace(folder)
        at = datetime.now(UTC).replace(microsecond=0)
        tokens = mint_tokens(conn, key_pem, cert_pem, count, at, "_bench")
        per_turn, per_token, invalid, outcomes = _per_token(folder, conn, cert_pem, tokens, at)
        process = whole_process(folder / "process", 200 if quick else 2000)
    note = (
        f"{count} signed responses (base64), half first logins, half re-logins with changes; "
        f"CPU time per token, turns of {BLOCK} tokens"
    )
    p99 = {k: round(Stats.of(v[BLOCK:]).p99_ns / 1e6, 3) for k, v in per_token.items()}
    created = sum(1 for o in outcomes if o == "created")
    extra: dict[str, object] = {"p99_ms": p99, "created": created, "updated": count - created}
    return [
        Comparison.paired(
            "end_to_end",
            "jitprov apply (signed SAML → account)",
            "python3-saml is_valid + hand mapping + sqlite3 (bench/floors/pipeline.py)",
            per_turn["ours"],
            per_turn["peer"],
            target=0.25,
            notes=note + "; the pipeline's outcomes compared with jitprov's",
            extra=extra,
            invalid=invalid["peer"],
        ),
        Comparison.paired(
            "end_to_end",
            "jitprov apply (signed SAML → account)",
            "sum of the floors: SAML floor + rules by hand + sqlite3 writing jitprov's rows",
            per_turn["ours"],
            per_turn["floor"],
            target=1.5,
            notes=note + "; the floors' store compared with jitprov's row by row",
            extra=extra,
            invalid=invalid["floor"],
        ),
        Comparison.paired(
            "end_to_end",
            f"`jitprov apply --batch DIR --json`, {process[2]['responses']:,} signed responses",
            "the python3-saml pipeline as a process over the same files",
            [x * 1e9 for x in process[0]],
            [x * 1e9 for x in process[1]],
            target=0.3,
            notes="CPU time of the whole child process (start, imports, every response) per "
            f"response; {PROCESS_TURNS} turns, each on a fresh store",
            extra=process[2],
        ),
    ]


def main() -> int:
    for c in run("--quick" in sys.argv):
        spread = f" [{c.spread[0]:.2f}-{c.spread[1]:.2f}]" if c.spread else ""
        print(
            f"{c.subject} vs {c.baseline}: {c.ours.median_ms:.3f} ms vs "
            f"{c.theirs.median_ms:.3f} ms = {c.ratio:.2f}x{spread} (target ≤ {c.target:g})"
            f"{' INVALID: ' + c.invalid if c.invalid else ''} {c.extra}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
