"""The store at run time: the writers' lock, background checkpoints, search in SQL."""

from __future__ import annotations

import fcntl
import os
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from engine.config import load_config
from engine.provision import Provisioner
from engine.store import sqlite_writers
from tests.engine.provision_fixtures import person, workspace


def test_a_dry_run_creates_no_files(tmp_path: Path) -> None:
    provisioner = Provisioner(load_config(workspace(tmp_path)))
    result = provisioner.apply("okta", person("ann"), dry_run=True, allow_samples=True)
    provisioner.close()
    assert result.outcome == "created"
    assert not any(p.name.startswith("jitprov.db") for p in tmp_path.iterdir())


def test_a_write_waits_for_the_lock_holder_and_then_proceeds(tmp_path: Path) -> None:
    provisioner = Provisioner(load_config(workspace(tmp_path)))
    first = provisioner.apply("okta", person("ann"), allow_samples=True)
    assert first.outcome == "created"
    lock = tmp_path / "jitprov.db.lock"
    assert lock.exists()
    holder = os.open(lock, os.O_RDWR)
    fcntl.flock(holder, fcntl.LOCK_EX)  # another process's writer, in effect
    outcomes: list[str] = []
    writer = threading.Thread(
        target=lambda: outcomes.append(
            provisioner.apply("okta", person("bob"), allow_samples=True).outcome
        )
    )
    writer.start()
    time.sleep(0.3)
    assert outcomes == []  # queued behind the holder, not failed
    fcntl.flock(holder, fcntl.LOCK_UN)
    os.close(holder)
    writer.join(timeout=10)
    provisioner.close()
    assert outcomes == ["created"]


def test_a_writer_turn_taken_ahead_is_used_by_the_next_write_and_then_given_up(
    tmp_path: Path,
) -> None:
    """`jitprov serve` takes the store's turn without blocking, validates while another
    process writes, and writes in its turn; the write gives the turn up."""
    provisioner = Provisioner(load_config(workspace(tmp_path)))
    store = provisioner.store()
    holder = os.open(tmp_path / "jitprov.db.lock", os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(holder, fcntl.LOCK_EX)  # another worker is writing
        assert store.writer_turn(wait=False) is False  # at once, not blocked
        fcntl.flock(holder, fcntl.LOCK_UN)
        assert store.writer_turn(wait=False) is True  # this worker's turn now
        with pytest.raises(BlockingIOError):  # held by this store for its next write
            fcntl.flock(holder, fcntl.LOCK_EX | fcntl.LOCK_NB)
        result = provisioner.apply("okta", person("ann"), allow_samples=True)
        assert result.outcome == "created"
        fcntl.flock(holder, fcntl.LOCK_EX | fcntl.LOCK_NB)  # the write gave it up
        fcntl.flock(holder, fcntl.LOCK_UN)
        assert store.writer_turn(wait=False) is True
        store.end_writer_turn()  # a turn no write used is given up too
        fcntl.flock(holder, fcntl.LOCK_EX | fcntl.LOCK_NB)
    finally:
        os.close(holder)
        provisioner.close()


def test_wal_checkpoints_run_in_the_background(tmp_path: Path, monkeypatch: Any) -> None:
    """No sign-in pays for a checkpoint: they run on their own connection and thread."""
    monkeypatch.setattr(sqlite_writers, "CHECKPOINT_EVERY", 5)
    provisioner = Provisioner(load_config(workspace(tmp_path)))
    outcomes = {
        provisioner.apply("okta", person(f"u{n}"), allow_samples=True).outcome for n in range(30)
    }
    store = provisioner.store()
    checkpointer = store._checkpointer  # type: ignore[attr-defined]
    assert checkpointer is not None
    deadline = time.monotonic() + 10
    while checkpointer.runs == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    provisioner.close()
    assert outcomes == {"created"}
    assert checkpointer.runs >= 1
    assert not checkpointer._thread.is_alive()  # closed with the store


@pytest.mark.usefixtures("store_backend")  # SQLite and PostgreSQL
def test_search_pages_users_and_audit_in_sql(tmp_path: Path) -> None:
    provisioner = Provisioner(load_config(workspace(tmp_path)))
    for n in range(25):
        provisioner.apply("okta", person(f"user{n:02d}"), allow_samples=True)
    store = provisioner.store()
    page, total = store.search_users("USER1", limit=5)
    assert total == 10  # user10 … user19, case-insensitively
    assert [u.fields["username"] for u in page] == [f"user1{n}" for n in range(5)]
    assert all(u.links for u in page)  # whole accounts, members and links included
    page, total = store.search_users("", limit=10, offset=20)
    assert (len(page), total) == (5, 25)
    rows, total = store.search_audit("user07", limit=10)
    assert total == 1 and rows[0].outcome == "created"
    rows, total = store.search_audit("%", limit=10)  # no wildcard meaning
    assert total == 0
    provisioner.close()
