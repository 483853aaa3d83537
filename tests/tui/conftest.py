"""Fixtures of the TUI tests: a temporary copy of examples/demo, a facade with a fixed
clock, and helpers that wait for the app's workers to settle.

Snapshots and pilots run on a copy, so nothing a test saves touches the repository, and
the fixed clock makes every rendered time and dry run the same on every run.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from textual.app import App
from textual.pilot import Pilot

from tui.app import JitprovApp, make_app
from tui.facade import Facade

DEMO = Path(__file__).resolve().parents[2] / "examples" / "demo"
FIXED_NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
SIZE = (120, 40)


def copy_demo(target: Path) -> Path:
    """A copy of examples/demo (without any store file), its jitprov.toml's path."""
    shutil.copytree(DEMO, target, ignore=shutil.ignore_patterns("*.db", "*.db-*"))
    cert = target / "certs" / "idp-test.crt"
    if not cert.exists():  # the config only needs the file to exist for these tests
        cert.parent.mkdir(exist_ok=True)
        cert.write_text("placeholder certificate\n")
    return target / "jitprov.toml"


@pytest.fixture
def demo_config(tmp_path: Path) -> Path:
    return copy_demo(tmp_path / "demo")


@pytest.fixture
def facade(demo_config: Path) -> Facade:
    return Facade(demo_config, clock=lambda: FIXED_NOW)


@pytest.fixture
def app(facade: Facade) -> Iterator[JitprovApp]:
    yield make_app(facade)


async def settle(pilot: Pilot[None], app: App[None] | None = None, rounds: int = 3) -> None:
    """Wait until no worker runs and the messages they posted are handled."""
    target = app or pilot.app
    for _ in range(rounds):
        await pilot.pause()
        await target.workers.wait_for_complete()
        await pilot.pause(0.05)
