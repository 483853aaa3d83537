"""`jitprov test`: run rule test cases (product.md §5) and report like a test runner.

One line per case (`PASS name` / `FAIL name` / `ERROR name`, coloured on a terminal),
the diff of each failure, then `N passed, N failed` (`, N errors` when case files are
broken). Exit 1 when any case fails or errors, else 0 — with `--update`, a failing
case whose file was rewritten no longer counts. `--json` prints one document instead;
a progress bar goes to stderr only when it is a terminal and there are many cases.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tui.cli import EXIT_OK, EXIT_USAGE, CommandError, Workspace, print_json

if TYPE_CHECKING:
    from engine.cases import CaseResult

PROGRESS_FROM = 20  # fewer cases finish before a bar would be worth drawing
STYLES = {
    "passed": ("PASS", "bold green"),
    "failed": ("FAIL", "bold red"),
    "error": ("ERROR", "bold magenta"),
}


def register(subparsers: Any, common: argparse.ArgumentParser) -> None:
    parser = subparsers.add_parser(
        "test",
        parents=[common],
        help="run rule test cases (*.case.toml)",
        description="Run every *.case.toml under PATHs (default: the workspace's tests/), "
        "each against a fresh store, and compare the result with its [expect].",
    )
    parser.add_argument(
        "paths", nargs="*", metavar="PATH", help="case files or folders (searched recursively)"
    )
    parser.add_argument("--junit", metavar="FILE", help="also write a JUnit XML report")
    parser.add_argument(
        "--update", action="store_true", help="rewrite the [expect] of failing cases"
    )
    parser.add_argument(
        "-k", metavar="PATTERN", dest="pattern", help="only cases whose name or path has this"
    )
    parser.add_argument(
        "-j",
        "--jobs",
        type=int,
        metavar="N",
        help="worker processes at most (default: the idle CPUs)",
    )
    parser.set_defaults(run=run)


def shown_path(path: Path, cwd: Path) -> str:
    """A case's path for people: relative to the current folder when under it."""
    try:
        return path.relative_to(cwd).as_posix()
    except ValueError:
        return path.as_posix()


def run(args: argparse.Namespace, ws: Workspace) -> int:
    # The case runner and rich are imported here, on use, not at every command's start.
    from engine.cases import discover, select, write_junit

    config = ws.config
    cwd = Path.cwd().resolve()
    roots = [Path(p) for p in args.paths] or [config.root / "tests"]
    if not args.paths and not roots[0].is_dir():
        roots = []
    try:
        items = discover(roots, shown=lambda p: shown_path(p, cwd))
    except FileNotFoundError as exc:
        raise CommandError(f"no such case file or folder: {exc}") from None
    if not items:
        where = ", ".join(map(str, roots)) or f"{config.root / 'tests'} (no such folder)"
        sys.stderr.write(f"jitprov: no *.case.toml under {where}\n")
    items = select(items, args.pattern)
    if args.jobs is not None and args.jobs < 1:
        raise CommandError("--jobs: expected at least 1")
    results = _run_with_progress(config, items, args.jobs)
    updated = _update(results) if args.update else set()
    if args.junit:
        try:
            write_junit(results, args.junit)
        except OSError as exc:
            raise CommandError(f"--junit: cannot write {args.junit}: {exc.strerror}") from None
    if args.json:
        print_json(summary_json(results))
    else:
        _print(results, updated)
    unresolved = [r for r in results if r.status != "passed" and r.path not in updated]
    return EXIT_USAGE if unresolved else EXIT_OK


def summary_json(results: list[CaseResult]) -> dict[str, Any]:
    """`test --json` (product.md §3): counts and one entry per case."""
    return {
        "passed": sum(r.status == "passed" for r in results),
        "failed": sum(r.status == "failed" for r in results),
        "errors": sum(r.status == "error" for r in results),
        "cases": [r.to_json() for r in results],
    }


def summary_line(results: list[CaseResult]) -> str:
    counts = summary_json(results)
    line = f"{counts['passed']} passed, {counts['failed']} failed"
    if counts["errors"]:
        line += f", {counts['errors']} error" + ("s" if counts["errors"] != 1 else "")
    return line


def _run_with_progress(config: Any, items: list[Any], jobs: int | None) -> list[CaseResult]:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from engine.cases import run_cases

    if len(items) < PROGRESS_FROM or not sys.stderr.isatty():
        return run_cases(config, items, jobs=jobs)
    console = Console(stderr=True)
    columns = (
        TextColumn("cases"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task("cases", total=len(items))
        advance: Callable[[int], None] = lambda n: progress.advance(task, n)  # noqa: E731
        return run_cases(config, items, jobs=jobs, on_progress=advance)


def _update(results: list[CaseResult]) -> set[str]:
    """Rewrite failing cases; returns the shown paths of those rewritten."""
    from engine.cases import update_case

    updated: set[str] = set()
    for result in results:
        if result.status != "failed" or result.actual is None:
            continue
        try:
            update_case(Path(result.file or result.path), result.actual)
        except Exception as exc:  # tomlkit's errors have no common base class
            sys.stderr.write(f"jitprov: error: {result.path}: cannot update: {exc}\n")
            continue
        updated.add(result.path)
    return updated


def _print(results: list[CaseResult], updated: set[str]) -> None:
    from rich.console import Console
    from rich.text import Text

    console = Console(highlight=False, soft_wrap=True)
    for result in results:
        label, style = STYLES[result.status]
        line = Text(label, style=style)
        line.append(f" {result.name}")
        console.print(line)
        if result.status == "failed":  # an error's message names the file already
            console.print(Text(f"  in {result.path}", style="dim"))
        for diff in result.diff_lines():
            console.print(Text(diff))
        if result.path in updated:
            console.print(Text(f"  updated {result.path}", style="yellow"))
    console.print(Text(summary_line(results), style="bold"))
    if updated:
        console.print(Text(f"updated {len(updated)} case file(s)", style="yellow"))
