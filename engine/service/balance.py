"""Kept-alive connections spread evenly over `serve`'s workers.

A kept-alive connection stays with the worker that accepted it, and an application's
connection pool opens its connections in a burst (at its start, or after jitprov
restarts). With one listening socket shared by the workers, the worker that had just
answered was the one awake to accept, and took most of the burst: 32 connections over
2 workers split 24/8 and even 32/0, that worker's sign-ins waiting in line behind each
other while the other idled, the slowest answers three times the mean.

So on TCP each worker slot has a listening socket of its own (engine.service.server's
Supervisor: the kernel spreads new connections over them by a hash of their addresses),
and the workers
keep their counts of open connections in one small shared file, a slot each (the
worker's pid and its count). A worker holding more than its share (the open connections
of all workers over the number of workers, rounded up) answers the request it is
reading with `Connection: close`; the client's new connection lands on another worker
as likely as not. A connection being closed leaves its worker's share at once, so one
burst of requests does not close more than the excess.

Each worker writes only its own slot, from its event loop's thread; the others only
read it. A reading torn by a concurrent write can only make one decision wrong, and
the next request corrects it.
"""

from __future__ import annotations

import contextlib
import fcntl
import mmap
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

BALANCE_ENV = "JITPROV_SERVE_BALANCE"
SHED_ENV = "JITPROV_SERVE_SHED"  # "1": workers over their share close connections
SLOTS = 255  # workers at most
_SIZE = (2 + 2 * SLOTS) * 4  # 32-bit cells: slots taken, unused, then pid and count


@contextlib.contextmanager
def balance_file(shed: bool = True) -> Iterator[Path]:
    """The shared file, named in the environment the workers inherit, removed after.
    `shed`: whether a worker over its share closes connections. Only where each worker
    listens on a socket of its own (TCP): on one shared socket (a Unix socket) the
    worker that closes a connection is the likeliest to accept it again, so the counts
    are kept (for the metrics) and nothing is closed."""
    fd, name = tempfile.mkstemp(prefix="jitprov-balance-")
    try:
        os.ftruncate(fd, _SIZE)
        os.close(fd)
        os.environ[BALANCE_ENV] = name
        os.environ[SHED_ENV] = "1" if shed else "0"
        yield Path(name)
    finally:
        os.environ.pop(BALANCE_ENV, None)
        os.environ.pop(SHED_ENV, None)
        with contextlib.suppress(OSError):
            os.unlink(name)


class Balance:
    """This worker's slot in the shared file, and the others' counts. The file holds
    how many slots have ever been taken (cell 0), then a pid and a count per slot."""

    def __init__(self, path: Path, pid: int | None = None, shed: bool = True) -> None:
        self.shed = shed
        self._fd = os.open(path, os.O_RDWR)
        self._map = mmap.mmap(self._fd, _SIZE)
        self._cells = memoryview(self._map).cast("i")
        self.pid = pid or os.getpid()  # another process's: the tests' workers
        self.slot = self._claim()
        self.open = 0  # this worker's open connections
        self.leaving = 0  # of those, answered with `Connection: close`: being closed

    def _claim(self) -> int:
        """The first slot that is free or whose worker has died (under the file's lock,
        so two workers starting together take different slots)."""
        cells = self._cells
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        try:
            for slot in range(SLOTS):
                pid = cells[2 + 2 * slot]
                if pid == 0 or pid == self.pid or not _alive(pid):
                    cells[2 + 2 * slot] = self.pid
                    cells[3 + 2 * slot] = 0
                    cells[0] = max(cells[0], slot + 1)
                    return slot
            raise RuntimeError(f"more than {SLOTS} workers share one balance file")
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)

    def opened(self) -> None:
        self.open += 1
        self._cells[3 + 2 * self.slot] = self.open

    def closed(self, leaving: bool) -> None:
        self.open -= 1
        if leaving:
            self.leaving -= 1
        self._cells[3 + 2 * self.slot] = self.open

    def over_share(self) -> bool:
        """True when this worker keeps more connections than its share: then the
        connection whose request is being read is to be closed after its answer."""
        if not self.shed:
            return False
        cells = self._cells
        total = workers = 0
        for slot in range(cells[0]):
            if cells[2 + 2 * slot]:
                total += cells[3 + 2 * slot]
                workers += 1
        mine = self.open - self.leaving
        if workers < 2 or mine * workers < total + workers:  # mine <= ceil(total / workers)
            return False
        # A worker that died keeps its slot until a new one takes it: count the living.
        counts = self.counts()
        total, workers = sum(counts.values()), len(counts)
        return workers >= 2 and mine * workers >= total + workers

    def leave(self) -> None:
        """A connection of this worker's is answered with `Connection: close`: it no
        longer counts in the worker's share, though it is open until the client closes."""
        self.leaving += 1

    def counts(self) -> dict[int, int]:
        """Open connections by worker slot, of the workers alive."""
        cells = self._cells
        return {
            slot: cells[3 + 2 * slot]
            for slot in range(cells[0])
            if (pid := cells[2 + 2 * slot]) and (pid == self.pid or _alive(pid))
        }

    def release(self) -> None:
        """This worker stops: its slot is free again."""
        if self._cells[2 + 2 * self.slot] == self.pid:
            self._cells[3 + 2 * self.slot] = 0
            self._cells[2 + 2 * self.slot] = 0


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


_worker: Balance | None = None


def worker_balance() -> Balance | None:
    """This process's slot (claimed on first use) when `serve` shares a balance file
    with it, else None (one process, an embedded app, the tests)."""
    global _worker
    if _worker is None and (path := os.environ.get(BALANCE_ENV)):
        _worker = Balance(Path(path), shed=os.environ.get(SHED_ENV) != "0")
    return _worker
