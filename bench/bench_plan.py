"""Stage `plan`: `jitprov plan` of an edited rules text over 100,000 recorded sign-ins
(quick: 5,000), beside the provisioner's dry run of the same tokens.

The workspace is the demo's okta connection (examples/demo/rules/okta.rules, the demo's
`[store.fields]`, `link_by = "email"`) with a SQLite store filled in bulk: for each
identity the account its first sign-in created (users, groups and roles rows), its
identity link and its recorded sign-in (the attribute bag as engine.recorded.bag_json
writes it), or for one denied (contractors, no e-mail) the recorded sign-in alone.
The rows are written by hand (`rows`) rather than by 100,000 real sign-ins; before
anything is timed the stage applies the first identities' tokens for real into a
second store and asserts that both stores hold the very same rows.

The rules planned are okta.rules edited three ways (`edited`): finance groups are now
kept, sales people get the "crm" role, interns are denied. Two identities in five
would change and one in a hundred be denied; the stage asserts the plan's counts
against what the population says (`expected_verdicts`), and against the outcomes of
the dry runs.

Comparisons (wall time):
- `engine.plan.plan` over every recorded identity as the command runs it (one worker
  process per CPU; below engine.plan.IN_PROCESS identities, in this process), against
  jitprov's budget: 100,000 recorded sign-ins in under 10 s on 2 cores, i.e. 100 µs
  per identity (the quick run's budget is scaled to its population); target ≤ 1.0;
- plan per identity against `Provisioner.apply_token(conn, token, dry_run=True)` per
  token in one process (what `apply --dry-run` does after intake: one read transaction
  per token), same tokens, same rules — for information. Identities and tokens per
  second are in `extra`, with plan's time in one process (`workers=1`).

`python -m bench.bench_plan [--quick]`
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from bench.harness import Comparison, Stats, placeholder_certificate
from engine.config import Connection, load_config
from engine.plan import IN_PROCESS, PlanReport, plan, verdict_of
from engine.provision import Provisioner, rules_from_source
from engine.recorded import bag_json
from engine.store import SqliteStore, layout_for
from engine.token import Token

ROOT = Path(__file__).resolve().parent.parent
DEMO_RULES = ROOT / "examples" / "demo" / "rules" / "okta.rules"
CONFIG = """\
[store]
path = "jitprov.db"

[store.fields]
department   = "text"
employee_id  = "text"
cost_center  = "text"
entitlements = "set"

[connections.okta]
protocol       = "saml2"
issuer         = "http://www.okta.com/exk1demo"
certificate    = "idp.pem"
audience       = "https://sp.example.com/saml"
recipient      = "https://sp.example.com/saml/acs"
require_signed = "assertion"
rules          = "okta.rules"
attributes     = ["email", "firstName", "lastName", "department", "groups", "employeeType", "employeeNumber"]
mode           = "create-and-update"
link_by        = "email"
redact         = ["employee_id"]
"""
ISSUER = "http://www.okta.com/exk1demo"
EMAIL_FORMAT = "urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress"
AUTHN = "urn:oasis:names:tc:SAML:2.0:ac:classes:PasswordProtectedTransport"
STAMP = "2026-10-01T08:00:00Z"  # when every recorded sign-in happened
SAMPLE = 20  # identities applied for real to check the bulk rows
BUDGET_S = 10.0  # the target: 100,000 recorded sign-ins planned in under 10 s on 2 cores
BUDGET_FOR = 100_000
FIRST = ("Ada", "Alan", "Grace", "Edsger", "Barbara", "Donald", "Ken", "Frances", "Radia")
LAST = ("Lovelace", "Turing", "Hopper", "Dijkstra", "Liskov", "Knuth", "Thompson", "Allen")
DEPARTMENTS = (
    "Engineering",
    "Sales",
    "R&D",
    "Engineering",
    "Support",
    "Finance",
    "Sales",
    "Ops",
    "Engineering",
    "Marketing",
)
TEAMS = {
    "Engineering": ("eng-platform", "eng-compilers", "eng-web", "eng-data"),
    "R&D": ("eng-research", "eng-labs"),
    "Sales": ("sales-emea", "sales-amer", "sales-apac"),
    "Ops": ("ops-OnCall", "ops-infra"),
    "Support": ("ops-support", "support-tier1"),
    "Finance": ("finance-ledger",),
    "Marketing": ("mkt-brand",),
}


@dataclass(frozen=True, slots=True)
class Person:
    """One recorded identity of the population."""

    n: int
    first: str
    last: str
    email: str | None  # the e-mail attribute (None: the token has none)
    name_id: str
    department: str
    kind: str  # employee, contractor or intern
    groups: tuple[str, ...]

    @property
    def denied(self) -> bool:
        """Denied at its recorded sign-in (by the demo's rules): no account."""
        return self.email is None or self.kind == "contractor"

    def attributes(self) -> dict[str, list[str]]:
        found: dict[str, list[str]] = {}
        if self.email is not None:
            found["email"] = [self.email]
        found["firstName"] = [self.first]
        found["lastName"] = [self.last]
        found["department"] = [self.department]
        found["groups"] = list(self.groups)
        found["employeeType"] = [self.kind]
        found["employeeNumber"] = [f"E-{self.n}"]
        return found

    def token(self, token_id: str | None) -> Token:
        return Token(
            kind="saml",
            name_id=self.name_id,
            name_id_format=EMAIL_FORMAT,
            issuer=ISSUER,
            authn_context=AUTHN,
            attributes=self.attributes(),
            token_id=token_id,
            expires_at=None,
        )


def person(n: int) -> Person:
    """Identity `n`: 2 % contractors, 1 % interns, 0.5 % without an e-mail attribute;
    a fifth of them in finance groups (the edited rules keep those)."""
    first, last = FIRST[n % len(FIRST)], LAST[(n // len(FIRST)) % len(LAST)]
    address = f"{first}.{last}.{n}@Example.com"
    kind = "contractor" if n % 50 == 7 else "intern" if n % 100 == 13 else "employee"
    department = DEPARTMENTS[(n // 7) % len(DEPARTMENTS)]
    teams = TEAMS[department]
    groups = ["Everyone", teams[n % len(teams)]]
    if n % 5 == 2:
        groups.append("finance-readers")
    if n % 3 == 0:
        groups.append("vpn-users")
    if n % 11 == 4:
        groups.append("ops-OnCall")
    email = None if n % 200 == 17 else address
    return Person(n, first, last, email, address, department, kind, tuple(groups))


def population(count: int) -> Iterator[Person]:
    return (person(n) for n in range(count))


def edited(source: str) -> str:
    """okta.rules with three edits: finance groups kept, the "crm" role for sales, interns
    denied."""
    kept = 'r"^(eng|sales|ops)-"'
    contractors = (
        'deny "contractors are not provisioned" when "contractor" in lower(@employeeType)\n'
    )
    assert kept in source and contractors in source, "examples/demo/rules/okta.rules changed"
    out = source.replace(kept, 'r"^(eng|sales|ops|finance)-"')
    out = out.replace(
        contractors,
        contractors
        + 'deny "interns sign up through the intern portal" when "intern" in lower(@employeeType)\n',
    )
    return out + '\nrule "sales use the CRM" when dept == "Sales" {\n    roles += "crm"\n}\n'


def expected_verdicts(count: int) -> Counter[str]:
    """What the edited rules would do to each identity, by hand."""
    found: Counter[str] = Counter()
    for p in population(count):
        if p.denied:
            found["same"] += 1  # denied then, denied still
        elif p.kind == "intern":
            found["deny"] += 1
        elif p.department == "Sales" or any(g.startswith("finance-") for g in p.groups):
            found["change"] += 1
        else:
            found["same"] += 1
    return found


# ------------------------------------------------------------------ the store in bulk


def workspace(folder: Path) -> Path:
    """The demo's okta connection and an empty store (its tables made by jitprov)."""
    folder.mkdir(parents=True, exist_ok=True)
    placeholder_certificate(folder / "idp.pem")
    shutil.copyfile(DEMO_RULES, folder / "okta.rules")
    (folder / "jitprov.toml").write_text(CONFIG)
    config = load_config(folder / "jitprov.toml")
    SqliteStore(folder / "jitprov.db", layout_for(config)).close()
    return folder / "jitprov.toml"


INSERTS = {
    "users": "INSERT INTO users (id, username, email, given_name, family_name, display_name,"
    " active, department, employee_id, username_key, email_key, created_at, updated_at)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    "user_groups": "INSERT INTO user_groups (user_id, value, source) VALUES (?, ?, ?)",
    "user_roles": "INSERT INTO user_roles (user_id, value, source) VALUES (?, ?, ?)",
    "identity_links": "INSERT INTO identity_links (connection, subject, subject_key, user_id,"
    " created_at, last_seen_at) VALUES (?, ?, ?, ?, ?, ?)",
    "recorded_signins": "INSERT INTO recorded_signins (connection, subject_key, subject,"
    " user_id, outcome, at, rules_sha256, bag) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
}


DEPARTMENT = {"Engineering": "engineering", "R&D": "engineering", "Sales": "sales"}


def rows(
    people: Iterable[Person], conn: Connection, rules_sha256: str, user_id: int = 0
) -> dict[str, list[tuple[object, ...]]]:
    """The rows the demo's okta rules leave for each identity's first sign-in at STAMP,
    the accounts numbered in sign-in order after `user_id`: written by hand, checked
    by `verify`."""
    out: dict[str, list[tuple[object, ...]]] = {table: [] for table in INSERTS}

    def no_secret() -> bytes:
        raise AssertionError("no attribute of the bench's tokens is hashed")

    for p in people:
        key = p.name_id.lower()
        bag = bag_json(p.token(None), conn, no_secret)
        if p.denied:
            out["recorded_signins"].append(
                ("okta", key, p.name_id, None, "denied", STAMP, rules_sha256, bag)
            )
            continue
        user_id += 1
        assert p.email is not None
        mail = p.email.lower()
        username = mail[: mail.rfind("@")]
        out["users"].append(
            (
                user_id,
                username,
                mail,
                p.first,
                p.last,
                f"{p.first} {p.last}",
                1,
                DEPARTMENT.get(p.department, "other"),
                f"E-{p.n}",
                username.lower(),
                mail.lower(),
                STAMP,
                STAMP,
            )
        )
        kept = {g.lower() for g in p.groups if g.startswith(("eng-", "sales-", "ops-"))}
        out["user_groups"] += [(user_id, g, "okta") for g in sorted(kept | {"everyone"})]
        roles = ["viewer"] + (["developer"] if p.department == "Engineering" else [])
        out["user_roles"] += [(user_id, r, "okta") for r in roles]
        out["identity_links"].append(("okta", p.name_id, key, user_id, STAMP, STAMP))
        out["recorded_signins"].append(
            ("okta", key, p.name_id, user_id, "created", STAMP, rules_sha256, bag)
        )
    return out


def fill(config_path: Path, count: int, step: int = 10_000) -> None:
    """Write `count` identities' rows into the workspace's store, in one transaction,
    `step` identities at a time."""
    config = load_config(config_path)
    conn = config.connection("okta")
    sha = hashlib.sha256(conn.rules.read_bytes()).hexdigest()
    db = sqlite3.connect(config_path.parent / "jitprov.db", isolation_level=None)
    try:
        db.execute("BEGIN")
        accounts = 0
        for start in range(0, count, step):
            made = rows(map(person, range(start, min(count, start + step))), conn, sha, accounts)
            accounts += len(made["users"])
            for table, sql in INSERTS.items():
                db.executemany(sql, made[table])
        db.execute("COMMIT")
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        db.execute("ANALYZE")
    finally:
        db.close()


TABLES = (
    "users",
    "user_groups",
    "user_roles",
    "user_entitlements",
    "identity_links",
    "recorded_signins",
)


def dump(db_path: Path) -> dict[str, list[tuple[object, ...]]]:
    db = sqlite3.connect(db_path)
    try:
        return {t: sorted(db.execute(f"SELECT * FROM {t}").fetchall(), key=repr) for t in TABLES}
    finally:
        db.close()


def verify(folder: Path, count: int = SAMPLE) -> None:
    """The bulk rows of the first `count` identities are those their real sign-ins
    leave (Provisioner.apply_token, at STAMP): every table plan reads, row for row."""
    bulk = workspace(folder / "bulk")
    fill(bulk, count, step=7)  # several parts: their accounts numbered on
    real = workspace(folder / "real")
    config = load_config(real)
    provisioner = Provisioner(config)
    conn = config.connection("okta")
    at = datetime.fromisoformat(STAMP.replace("Z", "+00:00"))
    outcomes: Counter[str] = Counter()
    try:
        for p in population(count):
            result = provisioner.apply_token(conn, p.token(f"okta-{p.n}"), now=at)
            outcomes[result.outcome] += 1
            assert result.outcome == ("denied" if p.denied else "created"), result.message
    finally:
        provisioner.close()
    assert outcomes["denied"] and outcomes["created"], outcomes
    mine, theirs = dump(bulk.parent / "jitprov.db"), dump(real.parent / "jitprov.db")
    for table in TABLES:
        assert mine[table] == theirs[table], f"bulk rows of {table} differ from real sign-ins'"


# ------------------------------------------------------------------------ timings


def timed_plan(
    config_path: Path, source: str, workers: int | None = None
) -> tuple[float, PlanReport]:
    config = load_config(config_path)
    started = time.perf_counter()
    report = plan(config, "okta", source, workers=workers)
    return time.perf_counter() - started, report


def timed_dry_runs(config_path: Path, source: str, count: int) -> tuple[float, Counter[str]]:
    """`Provisioner.apply_token(..., dry_run=True)` of every identity's next token (a new
    token id) under `source`, one after the other in this process: seconds, and the
    verdicts the outcomes give (engine.plan.verdict_of against the recorded outcome)."""
    config = load_config(config_path)
    conn = config.connection("okta")
    rules = rules_from_source(conn, config, source)
    people = list(population(count))
    tokens = [p.token(f"okta-next-{p.n}") for p in people]
    now = datetime.now(UTC)
    provisioner = Provisioner(config)
    provisioner.store(dry_run=True)
    verdicts: Counter[str] = Counter()
    try:
        started = time.perf_counter()
        results = [
            provisioner.apply_token(conn, token, now=now, dry_run=True, rules=rules)
            for token in tokens
        ]
        spent = time.perf_counter() - started
    finally:
        provisioner.close()
    for p, result in zip(people, results, strict=True):
        verdicts[verdict_of(result.outcome, "denied" if p.denied else "created")] += 1
    return spent, verdicts


def _check(report: PlanReport, count: int, expected: Counter[str]) -> None:
    counts = Counter({k: v for k, v in report.counts.items() if v})
    assert report.recorded == count and counts == expected, (report.counts, expected)
    assert report.unreadable == 0 and len(report.accounts) == count - expected["same"]


def run(quick: bool) -> list[Comparison]:
    count = 5_000 if quick else 100_000
    rounds = 2 if quick else 3
    source = edited(DEMO_RULES.read_text())
    expected = expected_verdicts(count)
    cpus = os.cpu_count() or 1
    workers = cpus if count >= IN_PROCESS and cpus > 1 else 1
    with tempfile.TemporaryDirectory(prefix="jitprov-bench-plan-") as temp:
        folder = Path(temp)
        verify(folder / "check")
        config_path = workspace(folder / "main")
        started = time.perf_counter()
        fill(config_path, count)
        filled = time.perf_counter() - started
        # The plan's rounds with the others between them (the dry runs after the first,
        # plan in one process after the second), so that drift in the machine's speed
        # shows in the rounds' spread rather than between the contenders.
        walls: list[float] = []
        alone = dry = 0.0
        for turn in range(rounds):
            wall, report = timed_plan(config_path, source)
            walls.append(wall)
            _check(report, count, expected)
            if turn == 0:
                dry, verdicts = timed_dry_runs(config_path, source, count)
                assert verdicts == expected, (verdicts, expected)
            elif turn == 1:
                alone, report = timed_plan(config_path, source, workers=1)
                _check(report, count, expected)
    wall = statistics.median(walls)
    budget = BUDGET_S * count / BUDGET_FOR
    per_s, alone_per_s, dry_per_s = round(count / wall), round(count / alone), round(count / dry)
    how = f"{workers} worker processes" if workers > 1 else "in one process"
    extra: dict[str, object] = {
        "identities": count,
        "workers": workers,
        "cpus": cpus,
        "plan_seconds": [round(w, 3) for w in walls],
        "identities_per_s": per_s,
        "one_process_seconds": round(alone, 3),
        "one_process_identities_per_s": alone_per_s,
        "dry_run_seconds": round(dry, 3),
        "dry_run_tokens_per_s": dry_per_s,
        "verdicts": dict(sorted(expected.items())),
        "fill_seconds": round(filled, 2),
        "load_average_1min": round(os.getloadavg()[0], 2),
    }
    subject = f"plan of an edited okta.rules over {count:,} recorded sign-ins"
    return [
        Comparison(
            stage="plan",
            subject=f"{subject} ({how})",
            baseline=f"{budget:g} s budget (100,000 in 10 s on 2 cores)",
            ours=Stats(wall * 1e9, max(walls) * 1e9, len(walls)),
            theirs=Stats(budget * 1e9, budget * 1e9, 1),
            target=1.0,
            notes=f"wall time of engine.plan.plan as the command runs it, workers' start"
            f" included; median of {rounds} runs, the slowest as p99; {per_s:,} identities/s",
            extra=extra,
        ),
        Comparison(
            stage="plan",
            subject=f"{subject}, per identity ({how})",
            baseline="Provisioner.apply_token dry run per token, one process "
            "(apply --dry-run after intake)",
            ours=Stats(wall / count * 1e9, max(walls) / count * 1e9, len(walls)),
            theirs=Stats(dry / count * 1e9, dry / count * 1e9, 1),
            notes=f"wall time; plan {per_s:,} identities/s ({alone_per_s:,} in one process),"
            f" the dry runs {dry_per_s:,} tokens/s; same tokens and rules, verdicts asserted"
            " equal",
            extra={
                "identities_per_s": per_s,
                "one_process_identities_per_s": alone_per_s,
                "dry_run_tokens_per_s": dry_per_s,
            },
        ),
    ]


def main(argv: list[str]) -> None:
    for c in run("--quick" in argv):
        met = {None: "", True: " (met)", False: " (NOT met)"}[c.met]
        print(
            f"{c.subject}: {c.ours.median_ms:,.3f} ms; {c.baseline}: {c.theirs.median_ms:,.3f} ms;"
            f" ratio {c.ratio:.2f}{met}; {c.extra}"
        )


if __name__ == "__main__":
    main(sys.argv[1:])
