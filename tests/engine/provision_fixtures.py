"""Helpers for provisioning tests: a temporary workspace, sample tokens, a provisioner.

Tokens are unsigned TOML samples (`--unsigned-samples`); each test writes its own small
rules file into its workspace.
"""

from __future__ import annotations

import importlib
import json
import shutil
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any


def _real_rules_package() -> None:
    """Work around the test layout: with tests/engine/__init__.py, pytest puts tests/ first
    on sys.path, so `rules` can resolve to the namespace package tests/rules (no
    __init__.py) instead of the project's `rules`. Put the project's back."""
    root = str(Path(__file__).resolve().parents[2])
    if root not in sys.path:
        sys.path.insert(0, root)
    current = sys.modules.get("rules")
    if current is not None and getattr(current, "__file__", None) is None:
        del sys.modules["rules"]
        importlib.import_module("rules")


_real_rules_package()

from engine.config import Config, load_config  # noqa: E402
from engine.provision import Provisioner  # noqa: E402
from engine.result import Result  # noqa: E402
from engine.store import SqliteStore, Store, StoredUser, layout_for  # noqa: E402
from engine.store.postgres import PostgresStore  # noqa: E402

EMAIL = "urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress"
TRANSIENT = "urn:oasis:names:tc:SAML:2.0:nameid-format:transient"
PERSISTENT = "urn:oasis:names:tc:SAML:2.0:nameid-format:persistent"
NOW = datetime(2025, 5, 1, 12, 0, tzinfo=UTC)

BASIC_RULES = """\
username     = first(@uid)
email        = first(@email)
display_name = first(@name)
department   = first(@department)
groups       = @groups
"""


def toml_value(value: Any) -> str:
    """A TOML literal for a string, a bool, a number or a list of those."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, int | float):
        return str(value)
    return json.dumps(str(value), ensure_ascii=False)


# Set by the `store_backend` fixture (tests/engine/conftest.py) while a test runs against
# PostgreSQL: makes a fresh database and returns its URL, for each workspace written.
NEW_DATABASE: Callable[[], str] | None = None


def workspace(
    root: Path,
    rules: str | dict[str, str] = BASIC_RULES,
    *,
    connections: dict[str, dict[str, Any]] | None = None,
    fields: dict[str, str] | None = None,
    store: str = "jitprov.db",
) -> Path:
    """Write jitprov.toml, rules and a dummy certificate; return the config's path.

    `rules` is one rules text for every connection, or one per connection id.
    `connections` maps ids to extra keys (default: one saml2 connection "okta").
    """
    connections = connections if connections is not None else {"okta": {}}
    (root / "rules").mkdir(parents=True, exist_ok=True)
    # A real certificate: the config loader checks that it is one (the tests here do
    # not sign anything with it).
    shutil.copyfile(Path(__file__).resolve().parent / "data" / "saml" / "idp.crt", root / "idp.pem")
    if NEW_DATABASE is not None and store == "jitprov.db":
        lines = ["[store]", f"url = {toml_value(NEW_DATABASE())}", "", "[store.fields]"]
    else:
        lines = ["[store]", f"path = {toml_value(store)}", "", "[store.fields]"]
    for name, kind in ({"department": "text"} | (fields or {})).items():
        lines.append(f"{name} = {toml_value(kind)}")
    for conn_id, extra in connections.items():
        text = rules if isinstance(rules, str) else rules[conn_id]
        (root / "rules" / f"{conn_id}.rules").write_text(text, encoding="utf-8")
        protocol = extra.get("protocol", "saml2")
        table: dict[str, Any] = {
            "protocol": protocol,
            "issuer": f"https://{conn_id}.example/idp",
            "audience": "https://sp.example/saml",
            "rules": f"rules/{conn_id}.rules",
        }
        if protocol == "saml2":
            table["certificate"] = "idp.pem"
        else:
            (root / "jwks.json").write_text('{"keys": []}')
            table["jwks"] = "jwks.json"
        table.update(extra)
        lines += ["", f"[connections.{conn_id}]"]
        lines += [f"{key} = {toml_value(value)}" for key, value in table.items()]
    path = root / "jitprov.toml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def sample(
    subject: str,
    *,
    token_id: str | None = None,
    subject_format: str | None = None,
    **attributes: Any,
) -> bytes:
    """A TOML sample token; attribute values are a string or a list of strings."""
    lines = [f"subject = {toml_value(subject)}"]
    if subject_format:
        lines.append(f"subject_format = {toml_value(subject_format)}")
    if token_id:
        lines.append(f"token_id = {toml_value(token_id)}")
    lines.append("[attributes]")
    lines += [f"{toml_value(k)} = {toml_value(v)}" for k, v in attributes.items()]
    return ("\n".join(lines) + "\n").encode()


def person(uid: str, **more: Any) -> bytes:
    """A sample for a person `uid` with an email and a subject derived from it."""
    attributes: dict[str, Any] = {"uid": uid, "email": f"{uid}@example.com"}
    attributes.update(more)
    subject = attributes.pop("subject", f"{uid}-subject")
    return sample(subject, **attributes)


class Bench:
    """A workspace with a provisioner: `apply` tokens, read the store back."""

    def __init__(self, config_path: Path) -> None:
        self.config: Config = load_config(config_path)
        self.provisioner = Provisioner(self.config)

    def apply(
        self, raw: bytes, connection: str = "okta", *, dry_run: bool = False, **kw: Any
    ) -> Result:
        kw.setdefault("now", NOW)
        return self.provisioner.apply(connection, raw, dry_run=dry_run, allow_samples=True, **kw)

    @property
    def store(self) -> Any:
        """The open store: SQLite, or PostgreSQL under the `store_backend` fixture."""
        store: Store = self.provisioner.store()
        assert isinstance(store, SqliteStore | PostgresStore)
        return store

    @property
    def postgres(self) -> bool:
        return isinstance(self.store, PostgresStore)

    def user(self, username: str) -> StoredUser | None:
        return self.store.user_by_username(username)

    def rows(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        return [tuple(row) for row in self.store.conn.execute(sql, params)]

    def execute(self, sql: str, *params: Any) -> None:
        """One statement on the store, committed (both stores' connections autocommit)."""
        self.store.conn.execute(sql, params)

    def snapshot(self) -> dict[str, Any]:
        """The store's content without ids and timestamps (for equality of stores)."""
        return snapshot(self.store)

    def close(self) -> None:
        self.provisioner.close()


def snapshot(store: SqliteStore | PostgresStore) -> dict[str, Any]:
    """Users (by username), their members with sources, links; audit outcomes counted."""
    users = {}
    for user in store.users():
        users[user.fields["username"]] = {
            "fields": user.fields,
            "members": {k: sorted(v) for k, v in user.members.items()},
            "links": user.links,
        }
    seen = sorted(map(tuple, store.conn.execute("SELECT connection, token_id FROM seen_tokens")))
    return {"users": users, "seen": seen}


def open_sqlite(config_path: Path) -> SqliteStore:
    config = load_config(config_path)
    assert config.store.path is not None
    return SqliteStore(config.store.path, layout_for(config))


ROOT = Path(__file__).resolve().parents[2]
# The CLI in a child process, with only the provisioning commands registered (so another
# command's module being mid-change cannot break these tests).
_CHILD = (
    "import sys, tui.cli as c; "
    "c.COMMANDS = ('apply', 'explain', 'users', 'audit'); "
    "sys.exit(c.run(sys.argv[1:]))"
)


def jitprov_process(config: Path, *argv: str, **popen: Any) -> Any:
    """`jitprov ARGV --config CONFIG` as a child process (subprocess.Popen)."""
    import subprocess

    popen.setdefault("stdout", subprocess.PIPE)
    popen.setdefault("stderr", subprocess.PIPE)
    command = [sys.executable, "-c", _CHILD, *argv, "--config", str(config)]
    return subprocess.Popen(command, cwd=ROOT, **popen)


def jsonl(tokens: list[bytes]) -> str:
    """A `--batch FILE.jsonl` body."""
    return "".join(json.dumps({"token": t.decode()}) + "\n" for t in tokens)
