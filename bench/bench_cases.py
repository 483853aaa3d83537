"""Stage `cases`: `jitprov test` on 1,000 generated cases (quick: 200).

Ours is the command as users run it (`jitprov test --json`, in this process, output
discarded) with one worker per CPU (`--jobs CPUS`; by default the command uses only
the idle ones); the baseline is the same command with `--jobs 1`: every case one by
one in a single process. Same workspace, same cases,
same run — the ratio shows what the process pool buys on this machine. Cases per
second, CPU seconds and the load average are in `extra`. The quick run's 200 cases
stay in one process either way (a worker needs 200 cases to pay for itself).

Runnable alone: `python -m bench.bench_cases [--quick]`.
"""

from __future__ import annotations

import contextlib
import io
import os
import resource
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from bench.harness import Comparison, Stats, measure, placeholder_certificate
from engine.cases.runner import available_cpus

RULES = """\
deny "contractors are not provisioned" when "contractor" in @type
username   = first(@uid)
email      = first(@email)
department = match first(@department) {
    "Engineering" => "engineering"
    "Sales"       => "sales"
    else          => "other"
}
groups     = [lower(g) for g in @groups if g matches r"^(eng|sales|ops)-"]
groups    += "everyone"

rule "first login defaults" on create {
    active = true
    roles  = ["viewer"]
}
"""

CONFIG = """\
[store]
path = "jitprov.db"
[store.fields]
department = "text"
[connections.idp]
protocol    = "saml2"
issuer      = "https://idp.example/saml"
certificate = "idp.pem"
audience    = "https://sp.example/saml"
rules       = "idp.rules"
link_by     = "email"
"""


def _case(i: int) -> str:
    """One of five kinds in turn: created, updated, linked, denied, username conflict."""
    uid = f"user{i:05d}"
    dept = ("Engineering", "Sales", "Ops")[i % 3]
    head = f"""\
# generated case {i}
connection = "idp"
unsigned = true

[sample]
subject = "{uid}@example.com"
subject_format = "urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress"
[sample.attributes]
uid = "{uid}"
email = "{uid}@example.com"
department = "{dept}"
groups = ["eng-a{i % 5}", "sales-b{i % 3}", "other"]
type = "{"contractor" if i % 5 == 3 else "employee"}"
"""
    kind = i % 5
    if kind == 0:
        return head + '\n[expect]\noutcome = "created"\n[expect.user]\nactive = true\n'
    if kind == 1:
        return head + (
            f'\n[given.user]\nusername = "{uid}"\nemail = "{uid}@example.com"\n'
            'groups = ["old"]\n[given.user.local]\ngroups = ["vpn"]\n'
            '\n[expect]\noutcome = "updated"\n[expect.user]\n'
            f'groups = ["eng-a{i % 5}", "everyone", "sales-b{i % 3}", "vpn"]\n'
        )
    if kind == 2:
        return head + (
            f'\n[[given.accounts]]\nusername = "old-{uid}"\nemail = "{uid.upper()}@example.com"\n'
            '\n[expect]\noutcome = "linked"\n'
        )
    if kind == 3:
        return head + '\n[expect]\noutcome = "denied"\nmessage_has = "contractors"\n'
    return head + (
        f'\n[[given.accounts]]\nusername = "{uid}"\nemail = "other-{uid}@example.com"\n'
        '\n[expect]\noutcome = "denied"\nmessage_has = "already taken"\n'
    )


def make_workspace(root: Path, count: int) -> Path:
    """A workspace with `count` cases under tests/; returns its config path."""
    (root / "tests").mkdir(parents=True)
    placeholder_certificate(root / "idp.pem")
    (root / "idp.rules").write_text(RULES, encoding="utf-8")
    for i in range(count):
        folder = root / "tests" / f"group-{i % 10}"
        folder.mkdir(exist_ok=True)
        (folder / f"case-{i:05d}.case.toml").write_text(_case(i), encoding="utf-8")
    config = root / "jitprov.toml"
    config.write_text(CONFIG, encoding="utf-8")
    return config


def _jitprov_test(config: Path, *extra: str) -> None:
    from tui.cli import run

    with contextlib.redirect_stdout(io.StringIO()) as out:
        code = run(["--config", str(config), "test", "--json", *extra])
    if code != 0:
        raise RuntimeError(f"jitprov test failed (exit {code}): {out.getvalue()[:2000]}")


def run(quick: bool) -> list[Comparison]:
    count = 200 if quick else 1000
    rounds = 2 if quick else 3
    with tempfile.TemporaryDirectory(prefix="bench-cases-") as tmp:
        config = make_workspace(Path(tmp), count)
        jobs = str(available_cpus())
        ours = measure(lambda: _jitprov_test(config, "--jobs", jobs), rounds=rounds, warmup=1)
        theirs = measure(lambda: _jitprov_test(config, "--jobs", "1"), rounds=rounds, warmup=1)
        ours_cpu = _cpu_seconds(lambda: _jitprov_test(config, "--jobs", jobs))
        theirs_cpu = _cpu_seconds(lambda: _jitprov_test(config, "--jobs", "1"))
    return [
        Comparison(
            stage="cases",
            subject=f"jitprov test --jobs {jobs}, {count} cases",
            baseline=f"jitprov test --jobs 1 ({count} cases one by one, one process)",
            ours=ours,
            theirs=theirs,
            notes="wall time of the whole command; each case gets a fresh store. Parallelism "
            "helps only with idle CPUs: compare the CPU seconds with the load average",
            extra={
                "cases": count,
                "cases_per_second": _rate(count, ours),
                "baseline_cases_per_second": _rate(count, theirs),
                "cpu_seconds": ours_cpu,  # this process and its workers
                "baseline_cpu_seconds": theirs_cpu,
                "cpus": available_cpus(),
                "load_average_1min": round(os.getloadavg()[0], 2),
            },
        )
    ]


def _cpu_seconds(fn: Callable[[], object]) -> float:
    """CPU time (user + system) of one call, this process and the workers it waited for."""

    def used() -> float:
        own = resource.getrusage(resource.RUSAGE_SELF)
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime

    before = used()
    fn()
    return round(used() - before, 3)


def _rate(count: int, stats: Stats) -> float:
    return round(count / (stats.median_ns / 1e9), 1)


def main() -> None:
    quick = "--quick" in sys.argv[1:]
    for comparison in run(quick):
        extra = comparison.extra
        print(
            f"{comparison.subject}: {comparison.ours.median_ms / 1000:.2f} s "
            f"({extra['cases_per_second']} cases/s); {comparison.baseline}: "
            f"{comparison.theirs.median_ms / 1000:.2f} s "
            f"({extra['baseline_cases_per_second']} cases/s); ratio {comparison.ratio:.2f}; "
            f"CPU {extra['cpu_seconds']} s vs {extra['baseline_cpu_seconds']} s on "
            f"{extra['cpus']} CPUs, load average {extra['load_average_1min']}"
        )


if __name__ == "__main__":
    main()
