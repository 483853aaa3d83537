"""The SQLite store: schema, additive migration, keys, replay entries, and failures that
must give the `error` outcome with existing data intact."""

from __future__ import annotations

import os
import sqlite3
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from engine.store import Layout, SchemaError, SqliteStore, StoreError, UserWrite
from rules.vocabulary import BUILTIN_FIELDS

if str(Path(__file__).parent) not in sys.path:  # tests/engine is not an importable package
    sys.path.insert(0, str(Path(__file__).parent))
from provision_fixtures import NOW, Bench, open_sqlite, person, snapshot, workspace

LAYOUT = Layout.build({**BUILTIN_FIELDS, "cost": "number", "badges": "set"}, ("email",))


@pytest.fixture
def store(tmp_path: Path) -> SqliteStore:
    return SqliteStore(tmp_path / "s.db", LAYOUT)


def test_tables_and_indexes_follow_the_spec(store: SqliteStore) -> None:
    tables = {r[0] for r in store.conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"users", "user_groups", "user_roles", "user_badges"} <= tables
    assert {"identity_links", "audit", "seen_tokens"} <= tables
    columns = [r[1] for r in store.conn.execute("PRAGMA table_info(users)")]
    assert columns[0] == "id" and {"username", "username_key", "email_key", "cost"} <= set(columns)
    audit = [r[1] for r in store.conn.execute("PRAGMA table_info(audit)")]
    assert audit == [
        "id",
        "at",
        "connection",
        "subject",
        "token_id",
        "outcome",
        "reason",
        "message",
        "user_id",
        "changes",
        "trace",
        "rules_sha256",
    ]
    plan = " ".join(
        str(r)
        for r in store.conn.execute(
            "EXPLAIN QUERY PLAN SELECT id FROM users WHERE email_key = ?", ("x",)
        )
    )
    assert "USING INDEX" in plan or "USING COVERING INDEX" in plan
    assert store.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert store.conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1


def test_unique_keys_hold(store: SqliteStore) -> None:
    user_id = store.atomic(lambda t: t.insert_user({"username": "JDoe"}, NOW))
    with pytest.raises(StoreError):
        store.atomic(lambda t: t.insert_user({"username": "jdoe"}, NOW))
    store.atomic(lambda t: t.write_link("okta", "S", "s", user_id, NOW))
    with pytest.raises(StoreError):
        store.atomic(lambda t: t.write_link("okta", "S2", "s", user_id, NOW))
    with pytest.raises(StoreError):  # a member row for an account that does not exist
        store.add_members(999, "groups", [("x", "local")])


def test_claim_token_once_until_it_expires(store: SqliteStore) -> None:
    expires = NOW + timedelta(minutes=5)
    assert store.atomic(lambda t: t.claim_token("c", "id1", expires, NOW))
    assert not store.atomic(lambda t: t.claim_token("c", "id1", expires, NOW))
    assert store.atomic(lambda t: t.claim_token("other", "id1", expires, NOW))
    assert store.atomic(lambda t: t.token_seen("c", "id1", NOW))
    later = NOW + timedelta(minutes=6)
    assert not store.atomic(lambda t: t.token_seen("c", "id1", later))
    assert store.atomic(lambda t: t.claim_token("c", "id1", later + timedelta(minutes=5), later))
    assert store.atomic(lambda t: t.claim_token("c", "never", None, NOW))
    far = NOW + timedelta(days=3650)
    assert not store.atomic(lambda t: t.claim_token("c", "never", None, far))


def test_values_round_trip_with_their_types(store: SqliteStore) -> None:
    from decimal import Decimal

    fields = {"username": "a", "active": True, "cost": Decimal("2.50"), "email": "A@X"}
    user_id = store.atomic(lambda t: t.insert_user(fields, NOW))
    user = store.load_user(user_id)
    assert user is not None
    assert user.fields["active"] is True and user.fields["cost"] == Decimal("2.5")
    assert store.conn.execute("SELECT cost, email_key FROM users").fetchone() == ("2.5", "a@x")
    store.atomic(lambda t: t.update_user(user_id, UserWrite(fields={"cost": 3}), NOW))
    assert store.conn.execute("SELECT cost FROM users").fetchone() == ("3",)


def test_new_fields_migrate_additively(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    old = SqliteStore(path, Layout.build(BUILTIN_FIELDS))
    user_id = old.atomic(lambda t: t.insert_user({"username": "a", "email": "A@Example.com"}, NOW))
    old.close()
    new_layout = Layout.build({**BUILTIN_FIELDS, "dept": "text", "tags": "set"}, ("email",))
    new = SqliteStore(path, new_layout)
    user = new.load_user(user_id)
    assert user is not None and user.fields["dept"] is None and user.members["tags"] == set()
    assert new.atomic(lambda t: t.find_by_key("email", "a@EXAMPLE.com")) == [user_id]
    new.close()
    again = SqliteStore(path, Layout.build(BUILTIN_FIELDS))  # an older config: nothing dropped
    assert "dept" in [r[1] for r in again.conn.execute("PRAGMA table_info(users)")]


def test_a_field_named_like_an_internal_column_is_refused() -> None:
    with pytest.raises(SchemaError, match="created_at"):
        Layout.build({**BUILTIN_FIELDS, "created_at": "text"})
    with pytest.raises(SchemaError, match="email_key"):
        Layout.build({**BUILTIN_FIELDS, "email_key": "text"}, ("email",))


def test_users_list_reads_members_and_links_in_bulk(store: SqliteStore) -> None:
    def fill(t):  # type: ignore[no-untyped-def]
        for n in range(3):
            uid = t.insert_user({"username": f"u{n}"}, NOW)
            t.write_members(uid, UserWrite(insert={"groups": [("g", "okta"), ("g", "local")]}))
            t.write_link("okta", f"s{n}", f"s{n}", uid, NOW)

    store.atomic(fill)
    users = store.users()
    assert [u.fields["username"] for u in users] == ["u0", "u1", "u2"]
    assert all(u.distinct("groups") == ["g"] for u in users)
    assert users[2].links == [("okta", "s2")]
    assert store.user_by_username("U1") is not None


# -- failures: the `error` outcome, data intact --------------------------------------


def _filled(tmp_path: Path) -> tuple[Bench, dict[str, object]]:
    bench = Bench(workspace(tmp_path))
    assert bench.apply(person("ann", groups=["a"])).outcome == "created"
    return bench, bench.snapshot()


def test_missing_directory_is_an_error_outcome(tmp_path: Path) -> None:
    bench = Bench(workspace(tmp_path, store="no/such/dir/jitprov.db"))
    result = bench.apply(person("jdoe"))
    assert result.outcome == "error" and result.sso == "stop"
    assert result.audit_written is False
    assert "unable to open" in (result.message or "")
    assert "audit row could not be written" in (result.message or "")
    assert result.to_json()["user"] is None
    assert not (tmp_path / "no").exists()


def test_corrupt_file_is_an_error_outcome_and_left_alone(tmp_path: Path) -> None:
    bench = Bench(workspace(tmp_path))
    garbage = b"this is not a SQLite database, but somebody's data" * 100
    (tmp_path / "jitprov.db").write_bytes(garbage)
    result = bench.apply(person("jdoe"))
    assert result.outcome == "error"
    assert "not a database" in (result.message or "")
    assert (tmp_path / "jitprov.db").read_bytes() == garbage


def test_on_error_continue_lets_the_sign_on_proceed(tmp_path: Path) -> None:
    bench = Bench(
        workspace(
            tmp_path, store="missing/jitprov.db", connections={"okta": {"on_error": "continue"}}
        )
    )
    result = bench.apply(person("jdoe"))
    assert (result.outcome, result.sso) == ("error", "continue")


def test_read_only_database_is_an_error_outcome(tmp_path: Path) -> None:
    bench, before = _filled(tmp_path)
    bench.close()
    config = bench.config
    assert config.store.path is not None
    from engine.provision import Provisioner
    from engine.store import layout_for

    read_only = SqliteStore(config.store.path, layout_for(config), pragmas={"query_only": "ON"})
    provisioner = Provisioner(config, store=read_only)
    result = provisioner.apply("okta", person("jdoe"), now=NOW, allow_samples=True)
    assert result.outcome == "error" and "readonly" in (result.message or "")
    assert result.audit_written is False
    provisioner.close()
    assert snapshot(open_sqlite(tmp_path / "jitprov.toml")) == before


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores file permissions")
def test_read_only_file_is_an_error_outcome(tmp_path: Path) -> None:
    bench, before = _filled(tmp_path)
    bench.close()
    db = tmp_path / "jitprov.db"
    db.chmod(0o444)
    tmp_path.chmod(0o555)
    try:
        result = Bench(tmp_path / "jitprov.toml").apply(person("jdoe"))
        assert result.outcome == "error"
    finally:
        tmp_path.chmod(0o755)
        db.chmod(0o644)
    assert snapshot(open_sqlite(tmp_path / "jitprov.toml")) == before


def test_full_disk_is_an_error_outcome_and_rolls_back(tmp_path: Path) -> None:
    bench, before = _filled(tmp_path)
    bench.close()
    config = bench.config
    assert config.store.path is not None
    from engine.provision import Provisioner
    from engine.store import layout_for

    pages = sqlite3.connect(config.store.path).execute("PRAGMA page_count").fetchone()[0]
    full = SqliteStore(config.store.path, layout_for(config), pragmas={"max_page_count": pages})
    provisioner = Provisioner(config, store=full)
    big = person("jdoe", name="x" * 200_000, groups=[f"g{n}" for n in range(500)])
    result = provisioner.apply("okta", big, now=NOW, allow_samples=True)
    assert result.outcome == "error"
    assert "full" in (result.message or "")
    assert result.audit_written is not None
    provisioner.close()
    after = snapshot(open_sqlite(tmp_path / "jitprov.toml"))
    assert after == before


def test_pipeline_reaches_store_only_through_the_interface() -> None:
    for module in ("provision.py", "steps.py", "changes.py", "result.py"):
        source = (Path(__file__).parents[2] / "engine" / module).read_text()
        assert "sqlite" not in source.lower(), module
