"""The postgres benchmark compares like with like: its hand-written psycopg loop
(bench/pg_loop.py) must leave exactly the store `jitprov apply --batch` leaves, and its
store comparison must see a difference when there is one.

Runs when JITPROV_TEST_POSTGRES holds the URL of a database whose role may create
databases (as for tests/engine/test_postgres.py); skipped otherwise.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.bench_postgres import (
    Server,
    contention,
    differences,
    prefill,
    recorded_last,
    snapshot,
    stale_reads,
    throughput,
)
from bench.bench_store import tokens

ADMIN_URL = os.environ.get("JITPROV_TEST_POSTGRES")
pytestmark = pytest.mark.skipif(
    not ADMIN_URL, reason="PostgreSQL: set JITPROV_TEST_POSTGRES (.ci/run starts a server)"
)


@pytest.fixture
def server() -> Iterator[Server]:
    assert ADMIN_URL is not None
    found = Server(ADMIN_URL)
    found.prefix = f"jitprov_test_bench_{os.getpid()}_"
    try:
        yield found
    finally:
        found.close()


def test_the_loop_leaves_the_store_jitprov_leaves(server: Server, tmp_path: Path) -> None:
    template = server.create("template")
    prefill(server.url(template), tmp_path / "template", 300)
    raw = [t.raw for t in tokens(300, 200)]  # first logins and changes of existing accounts
    ours, theirs, problems = throughput(server, template, tmp_path, raw, 2, "loop")
    assert problems == []
    assert ours.failures == theirs.failures == []
    assert ours.outcomes == theirs.outcomes == {"created": 40, "updated": 160}


def test_a_changed_account_is_a_difference(server: Server, tmp_path: Path) -> None:
    template = server.create("template")
    prefill(server.url(template), tmp_path / "template", 50)
    copy = server.create("copy", template)
    before = snapshot(server.url(template))
    assert differences(before, snapshot(server.url(copy))) == []
    import psycopg

    with psycopg.connect(server.url(copy), autocommit=True) as conn:
        conn.execute("UPDATE users SET department = 'new' WHERE username = 'u7'")
    found = differences(before, snapshot(server.url(copy)))
    assert len(found) == 1 and found[0].startswith("users: 50 rows against 50; 1 only")


def test_stale_reads_counts_a_group_count_seen_twice() -> None:
    def row(subject: str, before: str | None) -> tuple[object, ...]:
        changes = json.dumps({"display_name": [before, "x"]})
        return ("t", "okta", subject, "updated", None, None, "u", changes, "[]", "")

    serial = {"audit": [row("a", None), row("a", "0"), row("a", "1"), row("b", "0")]}
    assert stale_reads(serial) == 0
    lost = {"audit": [row("a", None), row("a", "0"), row("a", "0"), row("b", "0")]}
    assert stale_reads(lost) == 1


def test_contending_writers_leave_the_one_writer_store(server: Server, tmp_path: Path) -> None:
    """8 writers on 20 shared people end where one writer does, but for which sign-in
    each identity's recorded row holds: the last committed one, in either run (it
    differs between the runs, and the comparison must not call that a difference)."""
    template = server.create("template")
    prefill(server.url(template), tmp_path / "template", 50)
    latency, _p99 = contention(server, template, tmp_path, 8, 15)
    assert latency.invalid == ""
    assert latency.extra["outcomes"] == {"created": 20, "updated": 100}


def test_a_recorded_sign_in_that_is_not_the_last_is_named() -> None:
    def recorded(subject: str, group: str) -> tuple[object, ...]:
        bag = json.dumps({"attributes": {"groups": [group]}})
        return ("okta", subject, subject, "u", "updated", "sha", bag)

    snap = {"recorded": [recorded("cs1", "g-3-7"), recorded("warm0", "warm")]}
    assert recorded_last(snap, {"cs1": "c-3-7", "warm0": "warm-0"}) == []
    assert recorded_last(snap, {"cs1": "c-2-9", "warm0": "warm-0"}) == [
        "recorded: cs1 holds ['g-3-7'], its last sign-in was c-2-9"
    ]
