"""TUI benchmark: typing in the rules editor on a 500-line file.

Measures, in the real app (`App.run_test`, headless), the time from the last keystroke
of a short burst to the moment the problems panel and the live preview both show the
new text — debounce, compile, dry run and redraw included. The baseline is the 150 ms
budget itself (a ratio ≤ 1 meets it); the bare engine time (compile + dry run of the
same text, no UI) is reported alongside, to show what the UI adds.

Run standalone: `python -m bench.bench_tui [--quick]`.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from bench.bench_rules import dense_file
from bench.harness import Comparison, Stats, measure, placeholder_certificate
from tui.app import make_app
from tui.facade import Facade
from tui.screens.rules import RulesScreen

BUDGET_MS = 150.0
NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)

CONFIG = """\
[store]
path = "jitprov.db"

[store.fields]
department  = "text"
employee_id = "text"

[connections.bench]
protocol    = "saml2"
issuer      = "http://idp.example.com/"
certificate = "idp.crt"
audience    = "https://sp.example.com/saml"
rules       = "bench.rules"
"""

SAMPLE = """\
subject = "ann.lee@example.com"
[attributes]
email = "Ann.Lee@Example.com"
department = "Engineering"
displayName = "Ann Lee"
memberOf = ["CN=eng,OU=A,DC=example", "CN=vpn,OU=Net,DC=example"]
"""


def workspace(folder: Path, lines: int) -> Path:
    """A one-connection workspace whose rules file is a dense `lines`-line file."""
    (folder / "samples").mkdir(parents=True)
    placeholder_certificate(folder / "idp.crt")
    # The last line is a comment without a newline: the keys are typed at its end.
    (folder / "bench.rules").write_text(dense_file(lines) + "# typing here:")
    (folder / "samples" / "bench-ann.toml").write_text(SAMPLE)
    config = folder / "jitprov.toml"
    config.write_text(CONFIG)
    return config


async def _typing(config: Path, rounds: int, burst: str) -> list[float]:
    """Per round: type `burst`, then wait until problems and preview show it (seconds
    from the burst's last keystroke)."""
    app = make_app(Facade(config, clock=lambda: NOW))
    samples: list[float] = []
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("2")
        screen = app.screen
        assert isinstance(screen, RulesScreen)
        await _until(pilot, lambda: screen.shown_generation == screen.generation >= 0)
        screen.editor.move_cursor(screen.editor.document.end)
        screen.editor.focus()
        for _ in range(rounds):
            for key in burst:
                await pilot.press(key)
            await _until(pilot, lambda: screen.shown_generation == screen.generation)
            assert screen.check is not None and screen.check.errors == 0
            assert screen.preview is not None and screen.preview.outcome == "created"
            samples.append(screen.updated_at - screen.edited_at)
    return samples


async def _until(pilot: object, done: object, timeout: float = 10.0) -> None:
    deadline = time.perf_counter() + timeout
    while not done():  # type: ignore[operator]
        if time.perf_counter() > deadline:
            raise TimeoutError("the editor never caught up")
        await asyncio.sleep(0.002)


def _stats(seconds: list[float]) -> Stats:
    ordered = sorted(s * 1e9 for s in seconds)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return Stats(statistics.median(ordered), p99, len(ordered))


def run(quick: bool) -> list[Comparison]:
    rounds = 8 if quick else 30
    with tempfile.TemporaryDirectory(prefix="jitprov-bench-tui-") as temp:
        config = workspace(Path(temp), 500)
        latency = asyncio.run(_typing(config, rounds, "abc"))
        facade = Facade(config, clock=lambda: NOW)
        source = facade.read_rules("bench")
        sample = Path(temp) / "samples" / "bench-ann.toml"

        def engine_only() -> None:
            facade.preview("bench", facade.check("bench", source), sample)

        bare = measure(engine_only, rounds=5 if quick else 15)
    return [
        Comparison(
            stage="tui.rules-editor 500 lines",
            subject="last keystroke → problems and preview updated (headless app)",
            baseline=f"{BUDGET_MS:.0f} ms budget",
            ours=_stats(latency),
            theirs=Stats(BUDGET_MS * 1e6, BUDGET_MS * 1e6, 1),
            target=1.0,
            notes="includes the 50 ms debounce; bursts of 3 keys typed into a comment",
            extra={"engine_only_ms": round(bare.median_ms, 2)},
        )
    ]


def main(argv: list[str]) -> None:
    for comparison in run(quick="--quick" in argv):
        met = {None: "", True: " (met)", False: " (NOT met)"}[comparison.met]
        print(
            f"{comparison.stage:28} ours {comparison.ours.median_ms:9.2f} ms "
            f"(p99 {comparison.ours.p99_ns / 1e6:.2f})   {comparison.baseline}   "
            f"ratio {comparison.ratio:5.2f}{met}   {comparison.extra}"
        )


if __name__ == "__main__":
    main(sys.argv[1:])
