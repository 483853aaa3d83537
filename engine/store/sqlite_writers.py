"""How several writers share one SQLite file (docs/provisioning.md, "Concurrency and durability").

Writers queue on an advisory lock file beside the store; a transaction SQLite still
finds busy is retried whole by the store; WAL checkpoints run in a background thread so
that no sign-in pays for one.
"""

from __future__ import annotations

import os
import sqlite3
import threading

BUSY_CODES = (5, 6)  # SQLITE_BUSY, SQLITE_LOCKED (primary result codes)

CHECKPOINT_EVERY = 100  # write transactions between background checkpoints
AUTOCHECKPOINT_PAGES = 20_000  # SQLite's own checkpoint: a backstop only


class Checkpointer:
    """Runs `PRAGMA wal_checkpoint(PASSIVE)` on its own connection in a daemon thread
    when poked. A passive checkpoint never blocks writers, and the sqlite3 module lets go
    of the GIL while it copies pages, so the tail latency of provisioning stays low."""

    def __init__(self, path: str) -> None:
        self._path = path
        self._wake = threading.Event()
        self._closed = False
        self.runs = 0  # checkpoints completed (for tests and diagnostics)
        self._thread = threading.Thread(target=self._run, name="jitprov-checkpoint", daemon=True)
        self._thread.start()

    def poke(self) -> None:
        self._wake.set()

    def close(self) -> None:
        self._closed = True
        self._wake.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        try:
            conn = sqlite3.connect(self._path, isolation_level=None, timeout=1.0)
        except sqlite3.Error:
            return
        try:
            while True:
                self._wake.wait()
                self._wake.clear()
                if self._closed:
                    return
                try:
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                    self.runs += 1
                except sqlite3.Error:
                    continue  # busy or gone: SQLite's automatic checkpoint still applies
        finally:
            conn.close()


def writer_lock(path: str) -> int | None:
    """The descriptor of `<store>.lock`, the writers' queue; None for an in-memory store
    or where the lock file cannot be created (then SQLite's busy handling alone serves)."""
    if path == ":memory:" or path.startswith("file:"):
        return None
    try:
        return os.open(path + ".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError:
        return None


def busy(exc: sqlite3.Error) -> bool:
    """SQLITE_BUSY or SQLITE_LOCKED: another connection holds the lock; try again."""
    return getattr(exc, "sqlite_errorcode", 0) & 0xFF in BUSY_CODES


def rollback(conn: sqlite3.Connection) -> None:
    """Roll back if a transaction is open; a failing rollback must not hide the cause."""
    try:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
    except sqlite3.Error:
        pass
