"""`store_backend`: run a provisioning test module against SQLite and PostgreSQL.

PostgreSQL runs when JITPROV_TEST_POSTGRES holds the URL of a database the tests may use
to create and drop others (.ci/run starts a local server and sets it); each workspace a
test writes gets a fresh database, dropped afterwards. Without it the PostgreSQL
variants are skipped, saying why.
"""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest

if str(Path(__file__).parent) not in sys.path:  # tests/engine is not an importable package
    sys.path.insert(0, str(Path(__file__).parent))
import provision_fixtures

ADMIN_URL = os.environ.get("JITPROV_TEST_POSTGRES")


class Databases:
    """Fresh PostgreSQL databases for one test, dropped when it ends."""

    def __init__(self, admin_url: str) -> None:
        import psycopg

        self._psycopg = psycopg
        self.admin = psycopg.connect(admin_url, autocommit=True)
        self.admin_url = admin_url
        self.names: list[str] = []

    def new(self) -> str:
        name = f"jitprov_test_{uuid.uuid4().hex[:12]}"
        self.admin.execute(f'CREATE DATABASE "{name}"')
        self.names.append(name)
        info = self._psycopg.conninfo.conninfo_to_dict(self.admin_url)
        info["dbname"] = name
        return "postgresql://?" + urlencode({k: v for k, v in info.items() if v})

    def drop_all(self) -> None:
        for name in self.names:
            self.admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        self.admin.close()


@pytest.fixture(params=["sqlite", "postgres"])
def store_backend(request: Any) -> Iterator[str]:
    if request.param == "sqlite":
        yield "sqlite"
        return
    if not ADMIN_URL:
        pytest.skip("PostgreSQL: set JITPROV_TEST_POSTGRES (.ci/run starts a server)")
    databases = Databases(ADMIN_URL)
    provision_fixtures.NEW_DATABASE = databases.new
    try:
        yield "postgres"
    finally:
        provision_fixtures.NEW_DATABASE = None
        databases.drop_all()


@pytest.fixture
def new_database() -> Iterator[Any]:
    """Make fresh PostgreSQL databases (a function returning each one's URL)."""
    if not ADMIN_URL:
        pytest.skip("PostgreSQL: set JITPROV_TEST_POSTGRES (.ci/run starts a server)")
    databases = Databases(ADMIN_URL)
    try:
        yield databases.new
    finally:
        databases.drop_all()
