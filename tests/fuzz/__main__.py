"""`python -m tests.fuzz [--seconds N] [TARGET...]`: the fuzzing campaign (`make fuzz`).

Each target runs in its own process (tests/fuzz/child.py, under atheris/libFuzzer) for
`--seconds` of wall time, one target after the other. Per target, under `.fuzz/TARGET/`
(untracked): `seeds/`, rebuilt every run (the target's `seeds()`: the shared corpus at
../shared/corpus, the tests' and the demo's tokens, rules and cases; plus the saved
regressions); `corpus/`, the inputs libFuzzer found interesting, kept between runs;
`artifacts/`, libFuzzer's crash-*/timeout-*/oom-* files; `fuzz.log`, libFuzzer's output.

A finding stops libFuzzer: the runner copies its artifact to
tests/fuzz/regressions/TARGET/ and starts the target again for the time left (the child
then skips that cause). Exit status: 0 when nothing new was found, 1 when something was
(each finding is listed; replay one with `pytest tests/fuzz -k NAME`), 2 when a target
could not run.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import importlib
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.fuzz.harness import REGRESSIONS, ROOT

TARGETS = ("saml", "oidc", "rules", "sample", "case")
# libFuzzer's -max_len per target: room for real tokens, files and their mutants.
MAX_LEN = {"saml": 65536, "oidc": 16384, "rules": 8192, "sample": 8192, "case": 8192}
DICTS = Path(__file__).resolve().parent / "dicts"
ARTIFACT = re.compile(r"(crash|timeout|oom|leak|slow-unit)-[0-9a-f]+\Z")


@dataclass
class Report:
    target: str
    seconds: float = 0.0
    runs: int = 0
    executions: int = 0
    corpus: int = 0
    new: list[tuple[Path, str]] = field(default_factory=list)
    known: list[Path] = field(default_factory=list)
    error: str | None = None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.fuzz", description=__doc__.split("\n\n")[0] if __doc__ else None
    )
    parser.add_argument("targets", nargs="*", metavar="TARGET", help=f"of {', '.join(TARGETS)}")
    parser.add_argument("--seconds", type=int, default=60, help="per target (default 60)")
    parser.add_argument("--timeout", type=int, default=10, help="libFuzzer -timeout (s)")
    parser.add_argument("--rss-limit-mb", type=int, default=1536, help="libFuzzer -rss_limit_mb")
    parser.add_argument(
        "--address-space-mb",
        type=int,
        default=4096,
        help="RLIMIT_AS of each target's process: a runaway allocation is a MemoryError "
        "finding, not the machine's OOM killer",
    )
    parser.add_argument("--work", type=Path, default=ROOT / ".fuzz", help="(default .fuzz)")
    options = parser.parse_args(argv)
    unknown = [t for t in options.targets if t not in TARGETS]
    if unknown:
        parser.error(f"unknown target {', '.join(unknown)}; the targets are {', '.join(TARGETS)}")
    reports = [run_target(t, options) for t in options.targets or TARGETS]
    print()
    for r in reports:
        status = r.error or f"{len(r.new)} new finding(s), {len(r.known)} known"
        print(
            f"{r.target:7} {r.seconds:5.0f} s  {r.executions:8} inputs  corpus {r.corpus:5}  "
            f"{status}"
        )
        for path, summary in r.new:
            print(f"    {path.relative_to(ROOT)}: {summary}")
    if any(r.error for r in reports):
        return 2
    return 1 if any(r.new for r in reports) else 0


def run_target(name: str, options: argparse.Namespace) -> Report:
    report = Report(name)
    base: Path = options.work / name
    corpus, seeds, artifacts = base / "corpus", base / "seeds", base / "artifacts"
    for folder in (corpus, artifacts):
        folder.mkdir(parents=True, exist_ok=True)
    count = write_seeds(name, seeds)
    log = base / "fuzz.log"
    log.write_text("", encoding="utf-8")
    print(f"{name}: {count} seeds, fuzzing for {options.seconds} s (log: {log})", flush=True)
    started = time.monotonic()
    deadline = started + options.seconds
    while (left := int(deadline - time.monotonic())) >= 1:
        before = set(artifacts.iterdir())
        mark = log.stat().st_size
        code = run_child(name, left, options, corpus, seeds, artifacts, log)
        report.runs += 1
        output = log.read_text(encoding="utf-8", errors="replace")[mark:]
        stats(report, output)
        found = sorted(p for p in set(artifacts.iterdir()) - before if ARTIFACT.match(p.name))
        if not found:
            if code != 0:
                tail = "\n".join(output.splitlines()[-25:])
                report.error = f"exited {code} without an artifact; see {log}"
                print(f"{name}: {report.error}\n{tail}", file=sys.stderr)
            break
        for artifact in found:
            saved = save(name, artifact)
            summary = finding_summary(output)
            if saved is None:
                report.known.append(artifact)
                (seeds / artifact.name.split("-", 1)[1]).unlink(missing_ok=True)
                print(f"{name}: {artifact.name} is a saved regression again: {summary}")
            else:
                report.new.append((saved, summary))
                print(f"{name}: NEW {saved.relative_to(ROOT)}: {summary}", flush=True)
    report.seconds = time.monotonic() - started
    report.corpus = sum(1 for _ in corpus.iterdir())
    return report


def write_seeds(name: str, seeds: Path) -> int:
    """The target's seeds (and its saved crash regressions) as files named by their
    SHA-1, inputs longer than its -max_len left out (libFuzzer would cut them)."""
    shutil.rmtree(seeds, ignore_errors=True)
    seeds.mkdir(parents=True)
    module = importlib.import_module(f"tests.fuzz.{name}")
    inputs = list(module.seeds())
    inputs += [p.read_bytes() for p in sorted((REGRESSIONS / name).glob("crash-*"))]
    written = 0
    for data in inputs:
        if len(data) <= MAX_LEN[name]:
            (seeds / hashlib.sha1(data).hexdigest()).write_bytes(data)
            written += 1
    return written


def run_child(
    name: str,
    seconds: int,
    options: argparse.Namespace,
    corpus: Path,
    seeds: Path,
    artifacts: Path,
    log: Path,
) -> int:
    command = [
        sys.executable,
        "-m",
        "tests.fuzz.child",
        name,
        f"-max_total_time={seconds}",
        f"-timeout={options.timeout}",
        f"-rss_limit_mb={options.rss_limit_mb}",
        f"-max_len={MAX_LEN[name]}",
        f"-artifact_prefix={artifacts}{os.sep}",
        "-print_final_stats=1",
    ]
    dictionary = DICTS / f"{name}.dict"
    if dictionary.is_file():
        command.append(f"-dict={dictionary}")
    command += [str(corpus), str(seeds)]
    limit = options.address_space_mb * 1024 * 1024

    def confine() -> None:  # in the child, before it runs: gentle on a shared machine
        os.nice(10)
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    with log.open("a", encoding="utf-8") as out:
        out.write(f"$ {' '.join(command)}\n")
        out.flush()
        child = subprocess.Popen(
            command,
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            preexec_fn=confine,
            start_new_session=True,
        )
        try:
            code = child.wait()
        finally:
            # The child's confirm worker may outlive a child that libFuzzer ended.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(child.pid, signal.SIGKILL)
    return code


def save(name: str, artifact: Path) -> Path | None:
    """Copy a new artifact to tests/fuzz/regressions/NAME/; None when an identical input
    is saved there already."""
    folder = REGRESSIONS / name
    folder.mkdir(parents=True, exist_ok=True)
    data = artifact.read_bytes()
    for saved in folder.iterdir():
        if saved.is_file() and saved.read_bytes() == data:
            return None
    target = folder / artifact.name
    shutil.copyfile(artifact, target)
    return target


def finding_summary(output: str) -> str:
    """The finding's one line from a child's output (the Finding's message, else what
    libFuzzer says)."""
    lines = output.splitlines()
    for line in reversed(lines):
        for prefix in ("Finding: ", "tests.fuzz.harness.Finding: "):
            if line.startswith(prefix):
                return line.removeprefix(prefix)
    for line in reversed(lines):
        if "ERROR: libFuzzer:" in line or "ALARM:" in line:
            return line.strip("= ")
    return "see the log"


def stats(report: Report, output: str) -> None:
    found = re.findall(r"stat::number_of_executed_units:\s*(\d+)", output)
    if found:
        report.executions += int(found[-1])
    else:
        done = re.findall(r"^#(\d+)\s", output, re.M)
        report.executions += int(done[-1]) if done else 0


if __name__ == "__main__":
    sys.exit(main())
