"""`python -m bench [--quick] [STAGE...]`: run every stage side by side with its baselines.

Writes `bench/results.json` and plots into `docs/performance/`, and prints the ratio
table. Each stage module (`bench/bench_*.py`) exposes `run(quick: bool) -> list[Comparison]`.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import sys
import time
from pathlib import Path

from bench.harness import Comparison

STAGES = (
    "rules",
    "saml",
    "adversarial",
    "store",
    "end_to_end",
    "cases",
    "concurrency",
    "postgres",
    "load",
    "tui",
)
ROOT = Path(__file__).resolve().parent.parent


def machine() -> dict[str, object]:
    """What the figures were measured on."""
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
    }


def run_stages(names: list[str], quick: bool) -> tuple[list[Comparison], list[str]]:
    results: list[Comparison] = []
    missing: list[str] = []
    for name in names:
        try:
            module = importlib.import_module(f"bench.bench_{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"bench.bench_{name}":
                raise
            missing.append(name)
            continue
        started = time.perf_counter()
        print(f"· {name} …", file=sys.stderr, flush=True)
        results.extend(module.run(quick))
        print(f"  {name} took {time.perf_counter() - started:.1f} s", file=sys.stderr)
    return results, missing


def table(results: list[Comparison]) -> str:
    """The ratio table printed at the end (and pasted into docs/performance.md)."""
    header = (
        "| stage | jitprov | baseline | ours (median) | baseline (median) | ratio | target | met |"
    )
    lines = [header, "|---|---|---|---|---|---|---|---|"]
    for c in results:
        target = "" if c.target is None else f"≤ {c.target:g}x"
        met = "" if c.met is None else ("yes" if c.met else "NO")
        if c.invalid:
            met += f" (invalid: {c.invalid})"
        lines.append(
            f"| {c.stage} | {c.subject} | {c.baseline} | {c.ours.median_ms:.3f} ms "
            f"| {c.theirs.median_ms:.3f} ms | {c.ratio:.2f}x | {target} | {met} |"
        )
    return "\n".join(lines)


def _short(label: str, width: int = 60) -> str:
    return label if len(label) <= width else label[: width - 1] + "…"


def plot(results: list[Comparison], folder: Path) -> list[Path]:
    """Bar charts of the ratios, and any curves stages put in `extra["curve"]`."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no plots", file=sys.stderr)
        return []
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    fig, ax = plt.subplots(figsize=(11, 0.6 * len(results) + 1.5))
    labels = [_short(f"{c.stage}: {c.subject}") + "\n  vs " + _short(c.baseline) for c in results]
    ratios = [c.ratio for c in results]
    colors = ["tab:green" if c.met in (True, None) else "tab:red" for c in results]
    positions = list(range(len(results)))
    ax.barh(positions, ratios, color=colors)
    ax.set_yticks(positions, labels, fontsize=8)
    for index, c in enumerate(results):
        if c.target is not None:
            ax.plot([c.target, c.target], [index - 0.4, index + 0.4], color="black")
    ax.axvline(1.0, color="grey", linestyle=":")
    ax.set_xscale("log")
    ax.set_xlabel("time ratio, jitprov / baseline, log scale (lower is better; black = target)")
    ax.invert_yaxis()
    fig.tight_layout()
    path = folder / "ratios.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    written.append(path)
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
        path = folder / f"{c.stage}-curve.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a one-minute run")
    parser.add_argument("stages", nargs="*", metavar="STAGE", help=f"any of {', '.join(STAGES)}")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.stages) - set(STAGES))
    if unknown:
        parser.error(f"unknown stage(s) {', '.join(unknown)}; expected any of {', '.join(STAGES)}")
    names = args.stages or list(STAGES)
    started = time.perf_counter()
    results, missing = run_stages(names, args.quick)
    report = {
        "machine": machine(),
        "quick": args.quick,
        "seconds": round(time.perf_counter() - started, 1),
        "results": [c.to_json() for c in results],
        "missing_stages": missing,
    }
    out = ROOT / "bench" / "results.json"
    out.write_text(json.dumps(report, indent=2, default=str) + "\n")
    plots = plot(results, ROOT / "docs" / "performance")
    print(table(results))
    if missing:
        print(f"\nstages without a benchmark module yet: {', '.join(missing)}")
    print(f"\nwrote {out.relative_to(ROOT)}" + "".join(f", {p.relative_to(ROOT)}" for p in plots))
    return 0


if __name__ == "__main__":
    sys.exit(main())
