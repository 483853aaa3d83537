"""Four processes provisioning into one store at once, with shared subjects: no lost
update, no "database is locked", and the same store as applying the tokens one by one.
Run against a SQLite file and against PostgreSQL (tests/engine/conftest.py)."""

from __future__ import annotations

import json
import sys
from itertools import pairwise
from pathlib import Path

if str(Path(__file__).parent) not in sys.path:  # tests/engine is not an importable package
    sys.path.insert(0, str(Path(__file__).parent))
import pytest
from provision_fixtures import Bench, jitprov_process, jsonl, person, snapshot, workspace

pytestmark = pytest.mark.usefixtures("store_backend")

RULES = """\
username   = first(@uid)
department = first(@department)
groups    += @groups
"""
PROCESSES, TOKENS, SUBJECTS = 4, 150, 15


def tokens_of(process: int) -> list[bytes]:
    """Process p's tokens: subjects shared by every process; each adds its own group."""
    return [
        person(
            f"u{i % SUBJECTS}",
            token_id=f"p{process}-t{i}",
            department=f"d{i % SUBJECTS}",
            groups=[f"p{process}-g{i}"],
        )
        for i in range(TOKENS)
    ]


def test_four_processes_lose_no_update_and_match_sequential_application(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    config = workspace(shared, RULES)
    children = []
    for p in range(PROCESSES):
        batch = shared / f"p{p}.jsonl"
        batch.write_text(jsonl(tokens_of(p)))
        args = ("apply", "-c", "okta", "--unsigned-samples", "--json", "--batch", str(batch))
        children.append(jitprov_process(config, *args))
    outputs = [child.communicate(timeout=300) for child in children]
    for child, (out, err) in zip(children, outputs, strict=True):
        assert child.returncode == 0, err
        assert b"locked" not in err and b"locked" not in out
        outcomes = [json.loads(line)["outcome"] for line in out.splitlines()]
        assert len(outcomes) == TOKENS
        assert set(outcomes) <= {"created", "updated"}, set(outcomes)

    one_by_one = tmp_path / "sequential"
    one_by_one.mkdir()
    bench = Bench(workspace(one_by_one, RULES))
    for p in range(PROCESSES):
        for token in tokens_of(p):
            assert bench.apply(token).outcome in ("created", "updated")
    expected = bench.snapshot()
    bench.close()

    check = Bench(config)
    got = snapshot(check.store)
    assert got == expected
    assert len(got["users"]) == SUBJECTS
    for user in got["users"].values():
        assert len(user["members"]["groups"]) == PROCESSES * TOKENS // SUBJECTS
    assert check.rows("SELECT count(*) FROM audit") == [(PROCESSES * TOKENS,)]
    assert check.rows("SELECT count(*) FROM audit WHERE outcome = 'created'") == [(SUBJECTS,)]
    order = [row[0].split("-")[0] for row in check.rows("SELECT token_id FROM audit ORDER BY id")]
    switches = sum(a != b for a, b in pairwise(order))
    assert switches > PROCESSES, "the processes did not overlap: nothing was concurrent"
    check.close()
