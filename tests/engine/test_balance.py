"""The workers' shared counts of open connections (engine.service.balance): who holds
more than its share, and slots of workers that stopped or died."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.service.balance import BALANCE_ENV, Balance, balance_file


@pytest.fixture
def shared() -> Iterator[Path]:
    with balance_file() as path:
        yield path


def dead_pid() -> int:
    """The pid of a process that has exited and been reaped."""
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


def test_the_file_is_named_for_the_workers_and_removed_after() -> None:
    with balance_file() as path:
        assert os.environ[BALANCE_ENV] == str(path)
        assert path.exists()
    assert BALANCE_ENV not in os.environ
    assert not path.exists()


def test_workers_take_slots_of_their_own(shared: Path) -> None:
    first = Balance(shared, pid=os.getpid())
    second = Balance(shared, pid=os.getppid())
    assert (first.slot, second.slot) == (0, 1)
    first.opened()
    second.opened()
    second.opened()
    assert first.counts() == {0: 1, 1: 2} == second.counts()


def test_a_worker_over_its_share_lets_go_of_the_excess_and_no_more(shared: Path) -> None:
    busy = Balance(shared, pid=os.getpid())
    idle = Balance(shared, pid=os.getppid())
    for _ in range(7):
        busy.opened()  # a burst of 7 connections, all accepted by one worker
    assert not idle.over_share()
    closed = 0
    while busy.over_share():
        busy.leave()  # answered with `Connection: close`
        closed += 1
    assert closed == 3  # 4 stay: 7 over 2 workers, rounded up
    for _ in range(closed):  # the clients connect again, to the other worker
        busy.closed(leaving=True)
        idle.opened()
    assert busy.counts() == {0: 4, 1: 3}
    assert not busy.over_share() and not idle.over_share()


def test_one_more_than_the_other_is_even_enough(shared: Path) -> None:
    first = Balance(shared, pid=os.getpid())
    second = Balance(shared, pid=os.getppid())
    for _ in range(5):
        first.opened()
    for _ in range(4):
        second.opened()
    assert not first.over_share()
    second.opened()  # 5 and 5
    first.opened()  # 6 and 5
    assert not first.over_share()
    first.opened()  # 7 and 5: one would still be over after moving one, but 6/6 is even
    assert first.over_share()


def test_alone_a_worker_keeps_every_connection(shared: Path) -> None:
    only = Balance(shared, pid=os.getpid())
    for _ in range(50):
        only.opened()
    assert not only.over_share()


def test_a_dead_workers_slot_is_not_counted_and_is_taken_by_the_next(shared: Path) -> None:
    alive = Balance(shared, pid=os.getpid())
    gone = Balance(shared, pid=dead_pid())  # a worker that has died since it started
    for _ in range(3):
        gone.opened()  # it died holding these: its count stays in the file
    for _ in range(8):
        alive.opened()
    assert not alive.over_share()  # no other worker alive to take its connections
    assert alive.counts() == {0: 8}
    replacement = Balance(shared, pid=os.getppid())
    assert replacement.slot == 1  # the dead worker's slot, its count reset
    assert alive.counts() == {0: 8, 1: 0}
    assert alive.over_share()


def test_a_stopped_worker_frees_its_slot(shared: Path) -> None:
    first = Balance(shared, pid=os.getpid())
    first.opened()
    first.release()
    second = Balance(shared, pid=os.getppid())
    assert second.slot == 0
    assert second.counts() == {0: 0}


def test_on_one_shared_socket_the_counts_are_kept_and_nothing_is_closed(shared: Path) -> None:
    """A Unix socket: the worker closing a connection would most likely accept it again."""
    busy = Balance(shared, pid=os.getpid(), shed=False)
    Balance(shared, pid=os.getppid(), shed=False)
    for _ in range(9):
        busy.opened()
    assert not busy.over_share()
    assert busy.counts() == {0: 9, 1: 0}
