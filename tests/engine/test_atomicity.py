"""A batch killed with SIGKILL mid-way leaves every token fully applied or not at all, and
running the batch again completes it. Run against SQLite and PostgreSQL
(tests/engine/conftest.py)."""

from __future__ import annotations

import json
import signal
import sqlite3
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from engine.config import load_config
from engine.store import open_store
from engine.store.postgres import PostgresTransaction
from engine.store.sqlite import SqliteTransaction

if str(Path(__file__).parent) not in sys.path:  # tests/engine is not an importable package
    sys.path.insert(0, str(Path(__file__).parent))
from provision_fixtures import Bench, jitprov_process, jsonl, person, workspace

pytestmark = pytest.mark.usefixtures("store_backend")
N = 400


def _state(config: Path, i: int) -> tuple[bool, bool, bool, bool, bool]:
    """For token i: account, both set members, link, audit row, replay entry."""
    store: Any = open_store(load_config(config))
    mark = "?" if isinstance(store.conn, sqlite3.Connection) else "%s"
    try:

        def one(sql: str, value: str) -> Any:
            return store.conn.execute(sql.replace("?", mark), (value,)).fetchone()

        user = one("SELECT id FROM users WHERE username = ?", f"u{i}")
        members = one(
            "SELECT count(*) FROM user_groups g JOIN users u ON u.id = g.user_id"
            " WHERE u.username = ?",
            f"u{i}",
        )[0]
        link = one("SELECT 1 FROM identity_links WHERE subject = ?", f"u{i}-subject")
        audit = one("SELECT 1 FROM audit WHERE token_id = ?", f"t{i}")
        seen = one("SELECT 1 FROM seen_tokens WHERE token_id = ?", f"t{i}")
        return (
            user is not None,
            members == 2,
            link is not None,
            audit is not None,
            seen is not None,
        )
    finally:
        store.close()


def test_sigkill_mid_batch_is_all_or_nothing_per_token_and_rerun_completes(tmp_path: Path) -> None:
    config = workspace(tmp_path)
    batch = tmp_path / "batch.jsonl"
    tokens = [person(f"u{i}", token_id=f"t{i}", groups=[f"a{i}", f"b{i}"]) for i in range(N)]
    batch.write_text(jsonl(tokens))
    args = ("apply", "-c", "okta", "--unsigned-samples", "--json", "--batch", str(batch))
    child = jitprov_process(config, *args)
    assert child.stdout is not None
    done = 0
    deadline = time.monotonic() + 60
    while done < 60 and time.monotonic() < deadline:
        if child.stdout.readline():
            done += 1
    child.send_signal(signal.SIGKILL)
    child.wait()
    assert child.returncode == -signal.SIGKILL
    states = [_state(config, i) for i in range(N)]
    applied = [i for i, s in enumerate(states) if all(s)]
    partial = [(i, s) for i, s in enumerate(states) if any(s) and not all(s)]
    assert partial == []
    assert 60 <= len(applied) < N, "the batch was not killed mid-way"
    assert applied == list(range(len(applied)))  # input order

    rerun = jitprov_process(config, *args)
    out, err = rerun.communicate(timeout=120)
    assert rerun.returncode == 0, err
    results = [json.loads(line) for line in out.splitlines()]
    assert [r["outcome"] for r in results] == ["rejected"] * len(applied) + ["created"] * (
        N - len(applied)
    )
    assert all(r["reason"] == "replay" for r in results[: len(applied)])
    assert all(all(_state(config, i)) for i in range(N))


def test_a_failure_after_the_account_writes_rolls_the_whole_token_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bench = Bench(workspace(tmp_path))
    assert bench.apply(person("ann", groups=["a"])).outcome == "created"
    before = bench.snapshot()
    transaction: Any = PostgresTransaction if bench.postgres else SqliteTransaction
    real = transaction.write_audit
    calls = []

    def failing_once(self: Any, row: Any) -> None:
        calls.append(row.outcome)
        if len(calls) == 1:  # the audit row is the last write of the token's transaction
            if bench.postgres:
                import psycopg

                raise psycopg.OperationalError("disk I/O error")
            raise sqlite3.OperationalError("disk I/O error")
        real(self, row)

    monkeypatch.setattr(transaction, "write_audit", failing_once)
    result = bench.apply(person("jdoe", groups=["x"], token_id="t-err"))
    assert (result.outcome, result.audit_written) == ("error", True)
    assert "disk I/O error" in (result.message or "")
    assert bench.snapshot() == before  # no account, member, link or replay entry
    [row] = [r for r in bench.store.audit() if r.outcome == "error"]
    assert row.token_id == "t-err" and row.user_id is None
    monkeypatch.setattr(transaction, "write_audit", real)
    assert bench.apply(person("jdoe", groups=["x"], token_id="t-err")).outcome == "created"
