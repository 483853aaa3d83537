"""A real `jitprov serve` for tests: started on a free loopback port, stopped after.

`Served` starts the command line's `serve` in a subprocess (its stderr, the access log,
goes to a file, never a pipe that could fill) and waits until /healthz answers — a
condition, not a sleep. `fresh_token()` mints a signed SAML response the demo's `okta`
connection accepts at the real clock.
"""

from __future__ import annotations

import contextlib
import dataclasses
import http.client
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from types import TracebackType

from engine.config import load_config
from engine.saml.mint import mint
from engine.sample import parse_sample_text

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "examples" / "demo"
CLI = [sys.executable, "-c", "import sys; from tui.cli import main; sys.exit(main())"]


def demo_workspace(folder: Path) -> Path:
    """A copy of the demo workspace under `folder` (no store); its config's path."""
    shutil.copytree(DEMO, folder / "demo", ignore=shutil.ignore_patterns("*.db*"))
    return folder / "demo" / "jitprov.toml"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def fresh_token(
    name: str = "okta-sales.toml", *, subject: str | None = None, person: str | None = None
) -> str:
    """A base64 SAML response signed by the demo IdP, valid now, with an ID of its own
    (never a replay of another); `subject` replaces the sample's NameID; `person` makes
    another person: NameID and email `<person>@example.com`, so username `<person>`."""
    config = load_config(DEMO / "jitprov.toml")
    sample = parse_sample_text((DEMO / "samples" / name).read_text())
    sample = dataclasses.replace(sample, token_id=f"_{uuid.uuid4().hex}")
    if person is not None:
        subject = f"{person}@example.com"
        attributes = {**sample.attributes, "email": [subject]}
        sample = dataclasses.replace(sample, attributes=attributes)
    if subject is not None:
        sample = dataclasses.replace(sample, subject=subject)
    return mint(
        sample,
        config.connection("okta"),
        key_pem=(DEMO / "certs" / "idp-test.key").read_bytes(),
        cert_pem=(DEMO / "certs" / "idp-test.crt").read_bytes(),
        encoding="base64",
    ).decode()


class Served:
    """`jitprov --config CONFIG serve --port P --workers W ARGV...` while in the block."""

    def __init__(
        self,
        config: Path,
        *argv: str,
        workers: int = 1,
        env: dict[str, str] | None = None,
        log: Path | None = None,
    ) -> None:
        self.config = config
        self.port = free_port()
        self.log_path = log or config.parent / "serve.log"
        self.command = [*CLI, "--config", str(config), "serve", "--port", str(self.port)]
        self.command += ["--workers", str(workers), *argv]
        self.env = {**os.environ, **(env or {})}
        self.process: subprocess.Popen[bytes] | None = None
        self.token = (env or {}).get("JITPROV_TEST_TOKEN")

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def connect(self, timeout: float = 10) -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, dict[str, str], bytes]:
        """One request on its own connection: status, headers, body."""
        sent = dict(headers or {})
        if self.token and "Authorization" not in sent:
            sent["Authorization"] = f"Bearer {self.token}"
        connection = self.connect()
        try:
            connection.request(method, path, body=body, headers=sent)
            response = connection.getresponse()
            return response.status, dict(response.getheaders()), response.read()
        finally:
            connection.close()

    def __enter__(self) -> Served:
        self._log_file = self.log_path.open("wb")
        self.process = subprocess.Popen(  # a process group of its own, ended whole at exit
            self.command, cwd=ROOT, stderr=self._log_file, env=self.env, start_new_session=True
        )
        deadline = time.monotonic() + 60
        while True:
            try:
                connection = self.connect(timeout=5)
                connection.request("GET", "/healthz")
                if connection.getresponse().status == 200:
                    connection.close()
                    return self
            except OSError:
                pass
            assert self.process.poll() is None, self.log()
            assert time.monotonic() < deadline, "serve did not answer /healthz within 60 s"
            time.sleep(0.05)  # polling a condition: the next probe

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        assert self.process is not None
        try:
            if self.process.poll() is None:
                self.process.terminate()  # a graceful stop: the workers first
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.process.wait(timeout=30)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)  # anything left of the group
            self.process.wait(timeout=30)
            self._log_file.close()
