"""`python -m bench [--quick] [STAGE...]`: run the stages side by side with their baselines.

A full run (`make bench`: every stage) writes `bench/results.json`, the plots in
`docs/performance/` and the results block of docs/performance.md (between the
`<!-- bench:results -->` markers): the table, the machine, the load average at the
start and end, the date and the run's duration. A run of some stages replaces those
stages' results in `bench/results.json` and keeps the others (each result names the run
it came from), then rewrites the plots and the block the same way. A `--quick` run
(smaller inputs) prints its table and writes nothing unless `--out FILE` is given.
`--report` rewrites the plots and the block from `bench/results.json` without running
anything. Each stage module (`bench/bench_*.py`) exposes
`run(quick: bool) -> list[Comparison]`.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import json
import os
import platform
import sqlite3
import sys
import tempfile
import time
import traceback
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.harness import Comparison

STAGES = (
    "rules",
    "saml",
    "oidc",
    "adversarial",
    "store",
    "end_to_end",
    "cases",
    "concurrency",
    "postgres",
    "plan",
    "load",
    "tui",
)
ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results.json"
DOCS = ROOT / "docs" / "performance.md"
PLOTS = ROOT / "docs" / "performance"
BEGIN, END = "<!-- bench:results -->", "<!-- /bench:results -->"
LIBRARIES = (
    "lxml",
    "xmlsec",
    "python3-saml",
    "joserfc",
    "cryptography",
    "google-re2",
    "pyparsing",
)


def machine() -> dict[str, object]:
    """What the figures were measured on: CPUs, Python, the libraries that do the work."""
    versions: dict[str, str] = {"sqlite": sqlite3.sqlite_version}
    for name in LIBRARIES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    try:
        from lxml import etree

        versions["libxml2"] = ".".join(map(str, etree.LIBXML_VERSION))
    except ImportError:
        pass
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "libraries": versions,
    }


def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def stage_of(result: dict[str, Any]) -> str:
    """The stage module a result came from (older results name it only in `stage`)."""
    if isinstance(result.get("module"), str):
        return str(result["module"])
    return str(result["stage"]).split(".")[0].split(" ")[0]


def run_stages(
    names: list[str], quick: bool
) -> tuple[list[tuple[str, Comparison]], list[str], dict[str, str]]:
    """Every stage's comparisons; the stages without a module; the stages that failed
    (a floor disagreeing with jitprov, say), with why: a failed stage has no figures,
    and the others still run."""
    results: list[tuple[str, Comparison]] = []
    missing: list[str] = []
    failed: dict[str, str] = {}
    for name in names:
        try:
            module = importlib.import_module(f"bench.bench_{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"bench.bench_{name}":
                failed[name] = f"cannot import it: {type(exc).__name__}: {exc}"
            else:
                missing.append(name)
            continue
        except Exception as exc:  # a module that does not import measures nothing
            traceback.print_exc()
            failed[name] = f"cannot import it: {type(exc).__name__}: {exc}".splitlines()[0]
            continue
        started = time.perf_counter()
        print(f"· {name} … (load average {_load()[0]})", file=sys.stderr, flush=True)
        try:
            results.extend((name, c) for c in module.run(quick))
        except Exception as exc:  # one stage's failure must not lose the others' figures
            traceback.print_exc()
            failed[name] = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
            print(f"  {name} FAILED: {failed[name]}", file=sys.stderr)
            continue
        print(f"  {name} took {time.perf_counter() - started:.1f} s", file=sys.stderr)
    return results, missing, failed


# ------------------------------------------------------------------------ the report


def _ms(ns: float) -> str:
    ms = ns / 1e6
    if ms >= 100:
        return f"{ms:,.0f} ms"
    if ms >= 10:
        return f"{ms:.1f} ms"
    if ms >= 1:
        return f"{ms:.2f} ms"
    if ms >= 0.1:
        return f"{ms:.3f} ms"
    return f"{ms:.4f} ms"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def table(results: Sequence[Comparison]) -> str:
    """The results table (printed at the end, and written into docs/performance.md)."""
    header = [
        "stage",
        "jitprov",
        "baseline",
        "jitprov (median)",
        "baseline (median)",
        "ratio",
        "spread over turns",
        "clock",
        "target",
        "met",
    ]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for c in results:
        spread = f"{c.spread[0]:.2f}–{c.spread[1]:.2f}x ({len(c.turn_ratios)})" if c.spread else ""
        target = "" if c.target is None else f"≤ {c.target:.3g}x"
        met = "" if c.met is None else ("yes" if c.met else "NO")
        if c.invalid:
            met += f" (invalid: {c.invalid})"
        row = [
            c.stage,
            c.subject,
            c.baseline,
            _ms(c.ours.median_ns),
            _ms(c.theirs.median_ns),
            f"{c.ratio:.2f}x",
            spread,
            c.clock,
            target,
            met,
        ]
        lines.append("| " + " | ".join(_cell(x) for x in row) + " |")
    return "\n".join(lines)


def _machine_line(info: dict[str, Any]) -> str:
    libraries = info.get("libraries") or {}
    shown = ", ".join(f"{name} {version}" for name, version in libraries.items())
    return (
        f"{info.get('cpus')} CPUs ({info.get('processor')}, {info.get('platform')}), "
        f"Python {info.get('python')}" + (f"; {shown}" if shown else "")
    )


def _run_line(number: int, run: dict[str, Any], several: bool) -> str:
    date = run.get("date")
    when = f"{date[:16].replace('T', ' ')} UTC" if date else "date not recorded"
    stages = run.get("stages") or []
    command = run.get("command") or "python -m bench"
    load = run.get("load_average") or {}
    if load:
        start, end = load.get("start") or [None], load.get("end") or [None]
        loads = f"; load average {start[0]} at the start, {end[0]} at the end (1 minute)"
    else:
        loads = "; load average not recorded"
    seconds = run.get("seconds")
    took = f", {seconds:,.0f} s" if isinstance(seconds, int | float) else ""
    label = f"{number}. " if several else ""
    failed = run.get("failed") or {}
    broke = "".join(
        f" Stage {name} failed, no figures from it: {why}." for name, why in failed.items()
    )
    return f"{label}{when}: `{command}` ({', '.join(stages) or 'no stage'}){took}{loads}.{broke}"


STAGE_TITLES = {
    "rules": "Rules: evaluation against the plain-Python floor, and `check`",
    "saml": "SAML validation",
    "oidc": "OIDC validation",
    "adversarial": "Hostile tokens: CPU time and memory through intake, per token",
    "store": "Store",
    "end_to_end": "End to end, signed SAML → account",
    "cases": "Cases in parallel",
    "concurrency": "Processes on one store",
    "postgres": "PostgreSQL store",
    "plan": "`jitprov plan` over recorded sign-ins",
    "load": "`jitprov serve` under load",
    "tui": "Editor",
}


def report(data: dict[str, Any]) -> str:
    """The generated block of docs/performance.md: runs, machine, one table a stage."""
    runs: list[dict[str, Any]] = data.get("runs") or []
    several = len(runs) > 1
    out = [
        BEGIN,
        "<!-- Written by `python -m bench` (bench/__main__.py) from bench/results.json;"
        " do not edit by hand. -->",
        "",
        "The runs behind these figures:" if several else "The run behind these figures:",
        "",
    ]
    out += [_run_line(number, run, several) for number, run in enumerate(runs, 1)]
    out.append("")
    for text in sorted({json.dumps(run.get("machine"), sort_keys=True) for run in runs}):
        out.append(f"Machine: {_machine_line(json.loads(text))}.")
    out += [
        "",
        "Ratios are jitprov's time over the baseline's (below 1 is faster). Where the clock "
        "is `cpu`, both sides ran in turns on CPU time: the medians are over the turns, the "
        "ratio is the median of the turns' ratios and the spread their lowest and highest "
        "(the number of turns in brackets); a budget's turns are the rounds measured. "
        "`wall` is elapsed time.",
    ]
    by_stage: dict[str, list[tuple[int, Comparison]]] = {}
    for raw in data["results"]:
        by_stage.setdefault(stage_of(raw), []).append(
            (int(raw.get("run", 0)), Comparison.from_json(raw))
        )
    for stage, found in by_stage.items():
        title = STAGE_TITLES.get(stage, stage)
        numbers = f" (run {found[0][0] + 1})" if several else ""
        out += ["", f"**{title}**{numbers}", ""]
        comparisons = [c for _, c in found]
        if stage == "adversarial":  # its own table says more: CPU and memory to the bound
            from bench.bench_adversarial import adversarial_table

            out.append(adversarial_table(comparisons))
        else:
            out.append(table(comparisons))
        out += DETAILS.get(stage, lambda _: [])(comparisons)
    missed = [
        (stage_of(raw), Comparison.from_json(raw))
        for raw in data["results"]
        if raw.get("met") is False
    ]
    out += ["", "Targets not met in these figures:" if missed else "Every target was met."]
    if missed:
        out.append("")
        out += [
            f"- {c.stage}: {c.subject} against {c.baseline}: {c.ratio:.2f}x"
            + (f" (spread {c.spread[0]:.2f}–{c.spread[1]:.2f}x)" if c.spread else "")
            + f", target ≤ {c.target:.3g}x"
            + (f"; invalid: {c.invalid}" if c.invalid else "")
            for _, c in missed
        ]
    out += ["", "![ratios](performance/ratios.png)", END]
    return "\n".join(out)


def _store_details(found: Sequence[Comparison]) -> list[str]:
    """The latency tail and the growth curve's points, from the store's first comparison."""
    extra = found[0].extra if found else {}
    tails, curve = extra.get("p99_us"), extra.get("curve")
    if not isinstance(tails, dict) or not isinstance(curve, dict):
        return []
    lines = [
        "",
        "| accounts in the store | "
        + " | ".join(f"{name}: CPU µs per token (median) | {name}: p99 µs (wall)" for name in curve)
        + " |",
        "|---|" + "---|---|" * len(curve),
    ]
    sizes = [int(point[0]) for point in next(iter(curve.values()))]
    for index, size in enumerate(sizes):
        cells = []
        for name, points in curve.items():
            tail = tails.get(name, {})
            p99 = tail.get(str(size), tail.get(size, ""))  # type: ignore[union-attr]
            cells += [f"{points[index][1]:,.1f}", f"{p99:,}" if p99 != "" else ""]
        lines.append(f"| {size:,} | " + " | ".join(cells) + " |")
    return lines


def _end_to_end_details(found: Sequence[Comparison]) -> list[str]:
    for c in found:
        tails = c.extra.get("p99_ms")
        if isinstance(tails, dict):
            shown = ", ".join(f"{name} {value} ms" for name, value in tails.items())
            return ["", f"CPU time per token, p99 over the tokens: {shown}."]
    return []


def _load_details(found: Sequence[Comparison]) -> list[str]:
    """Throughput, latency and server CPU of each level (jitprov, the peer, the floor)."""
    rows = [c for c in found if isinstance(c.extra.get("peer"), dict)]
    if not rows:
        return []

    def cell(e: dict[str, Any]) -> str:
        return (
            f"{e['throughput_rps']:,.0f}/s; {e['p50_ms']} / {e['p99_ms']} ms; "
            f"{e.get('server_cpu_us_per_request', '?')} µs"
        )

    lines = [
        "",
        "Each level in detail (requests per second; p50 / p99; server CPU per request):",
        "",
        "| level | jitprov | peer | floor (no sign-in) | jitprov ÷ peer throughput |",
        "|---|---|---|---|---|",
    ]
    for c in rows:
        peer, floor = c.extra["peer"], c.extra.get("floor") or {}
        assert isinstance(peer, dict) and isinstance(floor, dict)
        level = c.subject.removeprefix("jitprov serve, ")
        speed = float(c.extra["throughput_rps"]) / max(float(peer["throughput_rps"]), 1e-9)
        floor_cell = f"{floor['throughput_rps']:,.0f}/s" if floor else ""
        lines.append(f"| {level} | {cell(c.extra)} | {cell(peer)} | {floor_cell} | {speed:.2f}x |")
    return lines


def _postgres_details(found: Sequence[Comparison]) -> list[str]:
    lines: list[str] = []
    writers = [c for c in found if "jitprov_sign_ins_per_s" in c.extra]
    if writers:
        lines += [
            "",
            "| writers | jitprov sign-ins/s | loop sign-ins/s |",
            "|---|---|---|",
        ]
        lines += [
            f"| {c.extra['writers']} | {c.extra['jitprov_sign_ins_per_s']:,} "
            f"| {c.extra['loop_sign_ins_per_s']:,} |"
            for c in writers
        ]
    for c in found:
        e = c.extra
        if "deadlocks" in e:
            lines += [
                "",
                f"Contention: p50 {e['p50_ms']} ms, p99 {e['p99_ms']} ms "
                f"({e.get('sign_ins_per_s', '?')} sign-ins/s); the same tokens one by one: p50 "
                f"{e.get('serial_p50_ms')} ms, p99 {e.get('serial_p99_ms')} ms; "
                f"{e['deadlocks']} deadlocks, {e['store_retries']} store retries, "
                f"{e['failed_sign_ins']} failed sign-ins, {e['stale_reads']} stale reads.",
            ]
    return lines


def _plan_details(found: Sequence[Comparison]) -> list[str]:
    """Throughput: plan's identities per second, and the dry runs' tokens per second."""
    for c in found:
        e = c.extra
        runs = e.get("plan_seconds")
        if "dry_run_tokens_per_s" not in e or not isinstance(runs, list):
            continue
        how = f"{e['workers']} worker processes" if e.get("workers") != 1 else "one process"
        return [
            "",
            f"plan: {e['identities_per_s']:,} identities/s ({how}; "
            f"{e['one_process_identities_per_s']:,} in one process), runs of "
            + ", ".join(f"{s:.2f} s" for s in runs)
            + f"; `apply --dry-run`'s steps (Provisioner.apply_token, dry run): "
            f"{e['dry_run_tokens_per_s']:,} tokens/s in one process; verdicts {e['verdicts']}.",
        ]
    return []


DETAILS = {
    "store": _store_details,
    "end_to_end": _end_to_end_details,
    "load": _load_details,
    "postgres": _postgres_details,
    "plan": _plan_details,
}


def write_docs(data: dict[str, Any], path: Path = DOCS) -> bool:
    """Replace the block between the markers; False (and nothing written) without them."""
    text = path.read_text()
    start, end = text.find(BEGIN), text.find(END)
    if start < 0 or end < start:
        print(f"{path.name}: no {BEGIN} … {END} block: not written", file=sys.stderr)
        return False
    _write_atomically(path, text[:start] + report(data) + text[end + len(END) :])
    return True


def _write_atomically(path: Path, text: str) -> None:
    """Write to a temporary file beside `path`, then move it in place: never half-written."""
    mode = path.stat().st_mode & 0o777 if path.exists() else 0o644
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.chmod(name, mode)
    os.replace(name, path)


def _short(label: str, width: int = 60) -> str:
    return label if len(label) <= width else label[: width - 1] + "…"


def plot(results: Sequence[Comparison], folder: Path) -> list[Path]:
    """Bar charts of the ratios (with their spread), and any curves stages put in
    `extra["curve"]`. Each image is written whole (to a temporary name, then moved)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no plots", file=sys.stderr)
        return []
    folder.mkdir(parents=True, exist_ok=True)
    written = []

    def save(fig: Any, name: str) -> None:
        path = folder / name
        partial = folder / f".{name}.partial.png"
        fig.savefig(partial, dpi=110)
        plt.close(fig)
        os.replace(partial, path)
        written.append(path)

    fig, ax = plt.subplots(figsize=(11, 0.6 * len(results) + 1.5))
    labels = [_short(f"{c.stage}: {c.subject}") + "\n  vs " + _short(c.baseline) for c in results]
    ratios = [c.ratio for c in results]
    colors = ["tab:green" if c.met in (True, None) else "tab:red" for c in results]
    positions = list(range(len(results)))
    low = [c.ratio - c.spread[0] if c.spread else 0.0 for c in results]
    high = [c.spread[1] - c.ratio if c.spread else 0.0 for c in results]
    ax.barh(positions, ratios, color=colors, xerr=[low, high], ecolor="dimgrey", capsize=2)
    ax.set_yticks(positions, labels, fontsize=8)
    for index, c in enumerate(results):
        if c.target is not None:
            ax.plot([c.target, c.target], [index - 0.4, index + 0.4], color="black")
    ax.axvline(1.0, color="grey", linestyle=":")
    ax.set_xscale("log")
    ax.set_xlabel(
        "time ratio, jitprov / baseline, log scale (lower is better; black = target; "
        "whiskers = spread over turns)"
    )
    ax.invert_yaxis()
    fig.tight_layout()
    save(fig, "ratios.png")
    for c in results:
        curve = c.extra.get("curve")
        if not isinstance(curve, dict):
            continue
        fig, ax = plt.subplots(figsize=(7, 4))
        for series, points in curve.items():
            xs = [p[0] for p in points]
            ys = [p[1] for p in points]
            ax.plot(xs, ys, marker="o", label=series)
        ax.set_xscale("log")
        ax.set_xlabel(str(c.extra.get("curve_x", "x")))
        ax.set_ylabel(str(c.extra.get("curve_y", "µs per token")))
        ax.set_title(f"{c.stage}: {c.subject}")
        ax.legend()
        fig.tight_layout()
        save(fig, f"{c.stage}-curve.png")
    return written


# ------------------------------------------------------------------- results.json


def _previous() -> dict[str, Any] | None:
    """The results file as a list of runs, an older file's single run made the first."""
    try:
        data: dict[str, Any] = json.loads(RESULTS.read_text())
    except (OSError, ValueError):
        return None
    if data.get("quick"):
        return None
    if "runs" not in data:
        stages = sorted({stage_of(r) for r in data.get("results", [])})
        data["runs"] = [
            {
                "date": None,
                "command": "python -m bench",
                "quick": False,
                "stages": stages,
                "seconds": data.get("seconds"),
                "load_average": None,
                "machine": data.get("machine"),
            }
        ]
        for result in data.get("results", []):
            result["run"] = 0
    return data


def merged(
    run: dict[str, Any], results: Iterable[tuple[str, Comparison]], missing: list[str]
) -> dict[str, Any]:
    """This run's results, with the previous full results of the stages it did not run."""
    fresh = [{**c.to_json(), "module": name} for name, c in results]
    previous = _previous()
    kept: list[dict[str, Any]] = []
    old_runs: list[dict[str, Any]] = []
    if previous is not None:
        ran = set(run["stages"])
        kept = [r for r in previous.get("results", []) if stage_of(r) not in ran]
        used = sorted({int(r.get("run", 0)) for r in kept})
        renumber = {old: new for new, old in enumerate(used)}
        old_runs = [previous["runs"][i] for i in used if i < len(previous["runs"])]
        kept = [{**r, "run": renumber[int(r.get("run", 0))]} for r in kept]
    runs = [*old_runs, run]
    for result in fresh:
        result["run"] = len(runs) - 1
    order = {name: index for index, name in enumerate(STAGES)}
    everything = sorted(
        [*kept, *fresh], key=lambda r: order.get(stage_of(r), len(order))
    )  # stable: each stage's comparisons keep their order
    return {
        "runs": runs,
        "machine": run["machine"],
        "quick": False,
        "seconds": run["seconds"],
        "results": everything,
        "missing_stages": missing,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument(
        "--quick", action="store_true", help="smaller inputs, a look only (writes nothing)"
    )
    parser.add_argument("--out", type=Path, help="write this run's results to FILE instead")
    parser.add_argument(
        "--report", action="store_true", help="rewrite the plots and docs from results.json"
    )
    parser.add_argument("stages", nargs="*", metavar="STAGE", help=f"any of {', '.join(STAGES)}")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.stages) - set(STAGES))
    if unknown:
        parser.error(f"unknown stage(s) {', '.join(unknown)}; expected any of {', '.join(STAGES)}")
    if args.report:
        data = json.loads(RESULTS.read_text())
        plots = plot([Comparison.from_json(r) for r in data["results"]], PLOTS)
        write_docs(data)
        print("rewrote " + ", ".join(str(p.relative_to(ROOT)) for p in [DOCS, *plots]))
        return 0
    names = args.stages or list(STAGES)
    started_at, load_start = datetime.now(UTC), _load()
    started = time.perf_counter()
    results, missing, failed = run_stages(names, args.quick)
    command = "python -m bench" + "".join(f" {a}" for a in (argv or sys.argv[1:]))
    run = {
        "date": started_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "command": command,
        "quick": args.quick,
        "stages": [n for n in names if n not in missing and n not in failed],
        "failed": failed,
        "seconds": round(time.perf_counter() - started, 1),
        "load_average": {"start": load_start, "end": _load()},
        "machine": machine(),
    }
    print(table([c for _, c in results]))
    if missing:
        print(f"\nstages without a benchmark module yet: {', '.join(missing)}")
    for name, why in failed.items():
        print(f"\nstage {name} FAILED (no figures): {why}")
    print(
        f"\n{run['seconds']} s; load average {load_start[0]} at the start, "
        f"{run['load_average']['end'][0]} at the end"  # type: ignore[index]
    )
    if args.out is not None or args.quick:
        if args.out is not None:
            data = {**run, "results": [{**c.to_json(), "module": n} for n, c in results]}
            args.out.write_text(json.dumps(data, indent=2, default=str) + "\n")
            print(f"wrote {args.out}")
        return 0
    data = merged(run, results, missing)
    _write_atomically(RESULTS, json.dumps(data, indent=2, default=str) + "\n")
    plots = plot([Comparison.from_json(r) for r in data["results"]], PLOTS)
    write_docs(data)
    shown = [RESULTS, *plots, DOCS]
    print("wrote " + ", ".join(str(p.relative_to(ROOT)) for p in shown))
    return 0


if __name__ == "__main__":
    sys.exit(main())
