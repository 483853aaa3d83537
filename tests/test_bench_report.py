"""The bench's report: paired turns give a median ratio with its spread, a run of some
stages keeps the other stages' results, and docs/performance.md's block is rewritten
between its markers and nowhere else."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import bench.__main__ as main
from bench.harness import Comparison, Stats, in_turns


def _comparison(stage: str, ratios: list[float]) -> Comparison:
    theirs = [100.0] * len(ratios)
    return Comparison.paired(stage, "ours", "theirs", [r * 100 for r in ratios], theirs, target=1.5)


def test_paired_turns_give_the_median_ratio_and_its_spread() -> None:
    c = _comparison("saml", [1.2, 1.0, 1.6, 1.1, 1.3])
    assert c.ratio == pytest.approx(1.2)
    assert c.spread == pytest.approx((1.0, 1.6))
    assert c.clock == "cpu"
    assert c.met is True
    data = c.to_json()
    assert data["spread"] == pytest.approx([1.0, 1.6])
    again = Comparison.from_json(json.loads(json.dumps(data)))
    assert again.ratio == pytest.approx(c.ratio) and again.spread == c.spread


def test_a_comparison_without_turns_keeps_the_ratio_of_medians() -> None:
    c = Comparison("x", "a", "b", Stats(3e6, 4e6, 1), Stats(2e6, 2e6, 1))
    assert c.ratio == pytest.approx(1.5)
    assert c.spread is None
    assert Comparison.from_json(c.to_json()).clock == "wall"


def test_turns_interleave_and_need_five() -> None:
    calls: list[str] = []
    found = in_turns(
        {"a": lambda: calls.append("a"), "b": lambda: calls.append("b")},
        turns=5,
        number=2,
        warmup=0,
    )
    assert [len(v) for v in found.values()] == [5, 5]
    assert calls[:8] == ["a", "a", "b", "b", "b", "b", "a", "a"]  # reversed every other turn
    with pytest.raises(ValueError):
        in_turns({"a": lambda: None}, turns=3)


def _run(stages: list[str]) -> dict[str, object]:
    return {
        "date": "2026-01-01T00:00:00Z",
        "command": "python -m bench " + " ".join(stages),
        "quick": False,
        "stages": stages,
        "seconds": 12.0,
        "load_average": {"start": [0.5, 0.4, 0.3], "end": [1.5, 0.6, 0.4]},
        "machine": {"cpus": 2, "python": "3.11.7", "platform": "Linux", "processor": "x86_64"},
    }


def test_a_partial_run_keeps_the_other_stages(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    results = tmp_path / "results.json"
    monkeypatch.setattr(main, "RESULTS", results)
    first = main.merged(
        _run(["rules", "saml"]),
        [
            ("rules", _comparison("rules.evaluate x", [2.0] * 5)),
            ("saml", _comparison("saml", [1.0] * 5)),
        ],
        [],
    )
    results.write_text(json.dumps(first))
    second = main.merged(_run(["saml"]), [("saml", _comparison("saml", [1.4] * 5))], [])
    stages = [(r["stage"], r["run"]) for r in second["results"]]
    assert stages == [("rules.evaluate x", 0), ("saml", 1)]
    assert len(second["runs"]) == 2
    third = main.merged(
        _run(["rules", "saml"]),
        [
            ("rules", _comparison("rules.evaluate x", [2.0] * 5)),
            ("saml", _comparison("saml", [1.0] * 5)),
        ],
        [],
    )
    assert len(third["runs"]) == 1  # every stage ran again: no earlier run is named


def test_the_docs_block_is_written_between_its_markers(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(main, "RESULTS", tmp_path / "results.json")
    data = main.merged(
        _run(["saml"]), [("saml", _comparison("saml", [1.2, 1.0, 1.6, 1.1, 1.3]))], []
    )
    doc = tmp_path / "performance.md"
    doc.write_text(
        f"# Title\n\nprose before\n\n{main.BEGIN}\nold table\n{main.END}\n\nprose after\n"
    )
    assert main.write_docs(data, doc)
    text = doc.read_text()
    assert text.startswith("# Title\n\nprose before\n\n<!-- bench:results -->")
    assert text.endswith("<!-- /bench:results -->\n\nprose after\n")
    assert "old table" not in text
    assert "| saml | ours | theirs |" in text
    assert "1.20x | 1.00–1.60x (5) | cpu | ≤ 1.5x | yes |" in text
    assert "load average 0.5 at the start, 1.5 at the end" in text
    assert "2026-01-01 00:00 UTC" in text
    plain = tmp_path / "plain.md"
    plain.write_text("no markers\n")
    assert not main.write_docs(data, plain)
    assert plain.read_text() == "no markers\n"


def test_the_docs_carry_the_generated_block() -> None:
    text = main.DOCS.read_text()
    assert text.count(main.BEGIN) == 1 and text.count(main.END) == 1
    assert text.index(main.BEGIN) < text.index(main.END)


def test_background_threads_are_charged_to_the_contender_that_started_them() -> None:
    import threading

    from bench.harness import Background

    background = Background()
    done = threading.Event()
    stop = threading.Event()

    def spin() -> None:
        total = 0
        while not stop.is_set():
            total += 1
            if total == 200_000:
                done.set()

    background.adopt("nobody")
    worker = threading.Thread(target=spin, daemon=True)
    worker.start()
    background.adopt("spinner")
    done.wait(10)
    stop.set()
    spent = background.since("spinner")
    worker.join(10)
    assert spent > 0
    assert background.since("nobody") == 0
    assert [t.name for t in background.owned["spinner"]] == [worker.name]
