"""What was read from a configured file, kept until the file changes: one entry per file.

Keys (JWKS files, IdP certificates and metadata, the SP decryption key) are read and
parsed once, then served from memory while the file stays the same; a changed file (its
modification time, size, inode or change time differ) is read again and replaces its
own entry. Entries are per file (and per what is read from it, such as a metadata
file's entity), so connections taking turns never evict each other's: the cache holds
as many entries as the config names files. `limit` only guards a long-lived process
against unbounded growth (files renamed or configs reloaded many times over); past
it, the entry read longest ago goes.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Hashable
from pathlib import Path
from typing import Generic, TypeVar

V = TypeVar("V")

Stamp = tuple[int, int, int, int]


def stamp(path: Path | str) -> Stamp:
    """What tells a changed file (OSError when it cannot be read)."""
    stat = os.stat(path)
    return (stat.st_mtime_ns, stat.st_size, stat.st_ino, stat.st_ctime_ns)


class FileCache(Generic[V]):
    """Values read from files, one entry per key (a path, or a path and what was read)."""

    def __init__(self, limit: int = 4096) -> None:
        self._entries: dict[Hashable, tuple[Stamp, V]] = {}
        self._lock = threading.Lock()
        self.limit = limit

    def get(self, key: Hashable, path: Path | str, read: Callable[[], V]) -> V:
        """The value for `key`, read from `path` by `read()` when the file is new or has
        changed since. OSError from the stat, and whatever `read` raises (nothing is
        kept then), propagate."""
        now = stamp(path)
        found = self._entries.get(key)
        if found is not None and found[0] == now:
            return found[1]
        value = read()  # outside the lock: two threads may both read, either result is good
        with self._lock:
            self._entries.pop(key, None)
            while len(self._entries) >= self.limit:
                del self._entries[next(iter(self._entries))]
            self._entries[key] = (now, value)
        return value

    def __len__(self) -> int:
        return len(self._entries)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
