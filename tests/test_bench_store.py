"""The store benchmark compares like with like: its hand-written sqlite3 loop must leave
exactly the store jitprov leaves (every table, audit rows included), or its ratio would
flatter one side."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

from bench.bench_store import baseline, ours, tokens, workspace


def _dump(db: Path) -> dict[str, list[tuple[object, ...]]]:
    conn = sqlite3.connect(db)
    try:
        names = [
            r[0]
            for r in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
            )
        ]
        return {n: sorted(conn.execute(f"SELECT * FROM [{n}]"), key=repr) for n in names}
    finally:
        conn.close()


def test_the_baseline_loop_writes_the_same_store_as_jitprov(tmp_path: Path) -> None:
    config = workspace(tmp_path / "ours", 300)
    theirs = tmp_path / "baseline.db"
    shutil.copy(tmp_path / "ours" / "jitprov.db", theirs)
    batch = tokens(300, 400)  # first logins and sign-ins of existing accounts
    apply_ours, close_ours = ours(config, decoded=True)
    apply_ours.prepare(batch)  # type: ignore[attr-defined]
    apply_theirs, close_theirs = baseline(theirs)
    outcomes = set()
    for token in batch:
        result = apply_ours(token)
        outcome = apply_theirs(token)
        assert result.outcome == outcome, token  # type: ignore[attr-defined]
        outcomes.add(outcome)
    close_ours()
    close_theirs()
    assert outcomes == {"created", "updated"}
    mine, hand = _dump(tmp_path / "ours" / "jitprov.db"), _dump(theirs)
    assert mine.keys() == hand.keys()
    for table in mine:
        assert mine[table] == hand[table], f"table {table} differs"
    assert len(mine["audit"]) == 400
