"""The load stage's servers: jitprov serve, the peer and the floor, started and stopped.

Parent side: `Server` starts a server command in a process group of its own, waits for
/healthz, and stops it with SIGTERM (uvicorn stops its workers gracefully), waiting up
to 30 s before SIGKILL; anything of the group still alive after that is killed too, so
no worker outlives the stage. `group_cpu_seconds` reads the CPU time of a server's
processes (the supervisor and every worker) from /proc; `accounts` counts a store's
users table read-only.

Child side, `python -m bench.load_server {peer,floor} --folder WS --port P --workers N`:
the peer or the floor under uvicorn with serve's own settings (engine.service.server's
UVICORN: backlog, connections per worker, timeouts, the httptools protocol on uvloop, no
server or date header, no uvicorn access log), the same worker count and the same
process model (uvicorn's supervisor, the workers in child processes), so the servers
differ only in the application they run.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from contextlib import closing
from pathlib import Path
from types import TracebackType

from bench.peer_app import FOLDER_ENV, create_store

ROOT = Path(__file__).resolve().parent.parent
CLI = [sys.executable, "-c", "import sys; from tui.cli import main; sys.exit(main())"]
WAIT_EXITED = os.WEXITED | os.WNOWAIT | os.WNOHANG  # has it exited? (left unreaped)
FACTORIES = {
    "peer": "bench.peer_app:asgi_from_environment",
    "floor": "bench.floor_app:floor_from_environment",
}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Server:
    """A server command in its own process group, from /healthz answering to stopped."""

    def __init__(
        self, system: str, command: list[str], port: int, log: Path, store: Path | None
    ) -> None:
        self.system, self.command, self.port, self.log_path = system, command, port, log
        self.store = store  # its users table is counted around each run (None: no store)
        self.url = f"http://127.0.0.1:{port}"
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Server:
        import httpx

        self._log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            self.command, cwd=ROOT, stdout=self._log, stderr=self._log, start_new_session=True
        )
        deadline = time.monotonic() + 60
        try:
            while True:
                with contextlib.suppress(httpx.HTTPError):
                    if httpx.get(self.url + "/healthz", timeout=5).status_code == 200:
                        return self
                exited = os.waitid(os.P_PID, self.process.pid, WAIT_EXITED) is not None
                if exited or time.monotonic() > deadline:
                    tail = self.log_path.read_text(errors="replace")[-2000:]
                    raise RuntimeError(f"{self.system} did not start:\n{tail}")
                time.sleep(0.1)  # polling a condition: the next probe
        except BaseException:
            self.__exit__(None, None, None)
            raise

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        assert self.process is not None
        process = self.process
        if process.returncode is None:  # not reaped yet: its process group is still ours
            # os.kill, not Popen.send_signal: that one reaps a dead leader first, and
            # then its process group id is free for anything to take.
            os.kill(process.pid, signal.SIGTERM)  # uvicorn: graceful, workers too
            deadline = time.monotonic() + 30
            # Wait for the exit without reaping it: while the leader is a zombie, its
            # process group id cannot be taken by anything else.
            while os.waitid(os.P_PID, process.pid, WAIT_EXITED) is None:
                if time.monotonic() > deadline:
                    os.kill(process.pid, signal.SIGKILL)
                time.sleep(0.05)  # polling a condition: the exit
            with contextlib.suppress(ProcessLookupError):  # a worker left behind
                os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        self._log.close()


def jitprov_server(folder: Path, workers: int) -> Server:
    port = free_port()
    command = [*CLI, "--config", str(folder / "jitprov.toml"), "serve", "--port", str(port)]
    command += ["--workers", str(workers)]
    return Server("jitprov", command, port, folder / "jitprov.log", folder / "jitprov.db")


def other_server(app: str, folder: Path, workers: int) -> Server:
    """The peer or the floor, under bench.load_server."""
    if app == "peer":
        create_store(folder / "peer.db")
    port = free_port()
    command = [sys.executable, "-m", "bench.load_server", app, "--folder", str(folder)]
    command += ["--port", str(port), "--workers", str(workers)]
    store = folder / "peer.db" if app == "peer" else None
    return Server(app, command, port, folder / f"{app}.log", store)


def group_cpu_seconds(group: int) -> float:
    """CPU time (user + system) of every live process in process group `group` (Linux
    /proc: the server's supervisor and its workers, all threads)."""
    ticks = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:  # gone meanwhile
            continue
        if int(fields[2]) == group:  # pgrp; utime and stime follow at 11 and 12
            ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def accounts(store: Path | None) -> int:
    """Rows in the store's users table, read-only (0 before the store exists)."""
    if store is None or not store.exists():
        return 0
    with closing(sqlite3.connect(f"file:{store}?mode=ro", uri=True)) as db:
        return int(db.execute("SELECT count(*) FROM users").fetchone()[0])


def main(argv: list[str] | None = None) -> None:
    import uvicorn
    from uvicorn.supervisors.multiprocess import Multiprocess

    from engine.service.server import UVICORN

    parser = argparse.ArgumentParser(prog="python -m bench.load_server")
    parser.add_argument("app", choices=sorted(FACTORIES))
    parser.add_argument("--folder", type=Path, required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args(argv)
    os.environ[FOLDER_ENV] = str(args.folder.resolve())
    config = uvicorn.Config(
        FACTORIES[args.app],
        factory=True,
        host="127.0.0.1",
        port=args.port,
        workers=args.workers,
        **{**UVICORN, "lifespan": "off"},  # a2wsgi speaks no lifespan; nothing to start
    )
    # Like serve: uvicorn's supervisor with the workers in child processes, one worker
    # included (a worker that dies is replaced; SIGTERM stops them all gracefully).
    sock = config.bind_socket()
    try:
        Multiprocess(config, sockets=[sock]).run()
    finally:
        sock.close()


if __name__ == "__main__":
    main()
