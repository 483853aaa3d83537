"""The PostgreSQL store: the SQLite store's tables, the same behaviour on the same tokens,
additive migration, and clear errors. (The provisioning, atomicity and concurrency
suites also run against it: see tests/engine/conftest.py.)"""

from __future__ import annotations

import random
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from engine.config import load_config
from engine.store import Layout, SqliteStore, StoreError, layout_for, open_store
from engine.store.postgres import PostgresStore, redacted

if str(Path(__file__).parent) not in sys.path:  # tests/engine is not an importable package
    sys.path.insert(0, str(Path(__file__).parent))
import provision_fixtures
from provision_fixtures import NOW, Bench, person, snapshot, workspace

LAYOUT = Layout.build(
    {
        "username": "text",
        "email": "text",
        "active": "bool",
        "level": "number",
        "groups": "set",
        "roles": "set",
    },
    link_by=("email",),
)


def _columns(store: Any, table: str) -> list[str]:
    if isinstance(store, SqliteStore):
        return sorted(r[1] for r in store.conn.execute(f"PRAGMA table_info({table})"))
    rows = store.conn.execute(
        "SELECT column_name FROM information_schema.columns"
        " WHERE table_schema = current_schema() AND table_name = %s",
        (table,),
    )
    return sorted(r[0] for r in rows)


def test_the_tables_and_columns_are_the_sqlite_stores(
    tmp_path: Path, new_database: Callable[[], str]
) -> None:
    lite = SqliteStore(tmp_path / "s.db", LAYOUT)
    pg = PostgresStore(new_database(), LAYOUT)
    tables = ["users", "user_groups", "user_roles", "identity_links", "audit", "seen_tokens"]
    for table in tables:
        assert _columns(pg, table) == _columns(lite, table), table
    lite.close()
    pg.close()


def test_values_round_trip_with_their_types(new_database: Callable[[], str]) -> None:
    from decimal import Decimal

    store = PostgresStore(new_database(), LAYOUT)
    fields = {
        "username": "JDoe",
        "email": "J@Example.com",
        "active": True,
        "level": Decimal("2.50"),
    }
    user_id = store.atomic(lambda t: t.insert_user(fields, NOW))
    loaded = store.atomic(lambda t: t.load_user(user_id), write=False)
    assert loaded is not None
    assert loaded.fields["active"] is True
    assert loaded.fields["level"] == Decimal("2.5")
    assert store.atomic(lambda t: t.find_by_key("email", "j@EXAMPLE.com")) == [user_id]
    with pytest.raises(StoreError, match=r"unique|duplicate"):
        store.atomic(lambda t: t.insert_user({"username": "jdoe"}, NOW))  # casefold-unique
    store.close()


def test_the_same_tokens_leave_the_same_store_as_sqlite(
    tmp_path: Path, new_database: Callable[[], str]
) -> None:
    """A seeded mix of first logins, updates, group changes, renames into a taken name,
    link_by matches and replays: the same outcomes, messages and store on both."""
    rules = (
        "username = first(@uid)\nemail = lower(first(@email))\n"
        "department = first(@department)\ngroups = @groups\n"
        'deny "contractors are not provisioned" when "contractor" in @groups\n'
    )
    connections = {"okta": {}, "entra": {"link_by": "email"}}
    rng = random.Random(7)
    tokens = []
    for _ in range(120):
        who = rng.randrange(12)
        tokens.append(
            (
                rng.choice(["okta", "entra"]),
                person(
                    f"u{who}" if rng.random() > 0.1 else f"u{rng.randrange(12)}",
                    subject=f"s{who}",
                    email=f"U{who}@Example.com",
                    department=rng.choice(["a", "b", "c"]),
                    groups=rng.sample(["x", "y", "z", "contractor"], rng.randrange(3)),
                    token_id=f"t{rng.randrange(100)}",
                ),
            )
        )
    outcomes: dict[str, list[tuple[str, str | None]]] = {}
    stores = {}
    for backend in ("sqlite", "postgres"):
        root = tmp_path / backend
        root.mkdir()
        provision_fixtures.NEW_DATABASE = new_database if backend == "postgres" else None
        try:
            bench = Bench(workspace(root, rules, connections=connections))
        finally:
            provision_fixtures.NEW_DATABASE = None
        results = [bench.apply(raw, connection) for connection, raw in tokens]
        outcomes[backend] = [(r.outcome, r.message) for r in results]
        stores[backend] = (snapshot(bench.store), [r.outcome for r in bench.store.audit()])
        bench.close()
    assert outcomes["postgres"] == outcomes["sqlite"]
    assert stores["postgres"] == stores["sqlite"]
    kinds = {outcome for outcome, _ in outcomes["sqlite"]}
    assert {"created", "updated", "denied", "rejected", "linked"} <= kinds, kinds


def test_new_fields_are_added_and_keys_filled_with_the_fold(
    new_database: Callable[[], str],
) -> None:
    url = new_database()
    first = Layout.build({"username": "text", "email": "text"})
    store = PostgresStore(url, first)
    store.atomic(lambda t: t.insert_user({"username": "a", "email": "STRASSE@Example.com"}, NOW))
    store.close()
    later = PostgresStore(url, Layout.build({**LAYOUT.scalars, "groups": "set"}, ("email",)))
    [user] = later.users()
    assert user.fields["email"] == "STRASSE@Example.com" and user.fields["level"] is None
    assert later.atomic(lambda t: t.find_by_key("email", "strasse@example.COM")) == [user.id]
    later.close()


def test_an_unreachable_server_is_a_store_error_without_the_password(tmp_path: Path) -> None:
    url = "postgresql://app:s3cret@127.0.0.1:1/jitprov?connect_timeout=2"
    with pytest.raises(StoreError) as caught:
        PostgresStore(url, LAYOUT)
    assert "s3cret" not in str(caught.value)
    assert "postgresql://app:***@127.0.0.1:1/jitprov" in str(caught.value)
    root = tmp_path / "ws"
    root.mkdir()
    config = workspace(root)
    text = config.read_text().replace('path = "jitprov.db"', f'url = "{url}"')
    config.write_text(text)
    bench = Bench(config)
    result = bench.apply(person("jdoe"))
    assert result.outcome == "error" and "s3cret" not in (result.message or "")
    assert result.sso == "stop"


def test_redacted_keeps_everything_but_the_password() -> None:
    assert redacted("postgresql://u:p@h:5/db?x=1") == "postgresql://u:***@h:5/db?x=1"
    assert redacted("postgresql:///db") == "postgresql:///db"


def test_open_store_picks_postgres_for_a_url(
    tmp_path: Path, new_database: Callable[[], str]
) -> None:
    provision_fixtures.NEW_DATABASE = new_database
    try:
        config = load_config(workspace(tmp_path))
    finally:
        provision_fixtures.NEW_DATABASE = None
    store = open_store(config)
    assert isinstance(store, PostgresStore)
    assert layout_for(config).scalars.keys() <= set(_columns(store, "users"))
    store.close()


def _bench(root: Path, new_database: Callable[[], str]) -> Bench:
    """A Bench on a workspace whose store is a fresh PostgreSQL database."""
    provision_fixtures.NEW_DATABASE = new_database
    try:
        return Bench(workspace(root))
    finally:
        provision_fixtures.NEW_DATABASE = None


def _terminate(store: Any) -> None:
    """End every server process of the store's database but the caller's (a restart,
    as the store's pooled connections see it)."""
    import psycopg

    with psycopg.connect(store.url, autocommit=True) as admin:
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )


def test_a_connection_lost_between_tokens_is_made_again(
    tmp_path: Path, new_database: Callable[[], str]
) -> None:
    """A server restart or failover between sign-ins goes unnoticed: nothing of the next
    token had been sent, so it connects again and goes through."""
    bench = _bench(tmp_path, new_database)
    assert bench.apply(person("ann")).outcome == "created"
    _terminate(bench.store)
    assert bench.apply(person("bob")).outcome == "created"
    assert sorted(u.fields["username"] for u in bench.store.users()) == ["ann", "bob"]
    bench.close()


def test_a_connection_lost_before_the_commit_runs_the_token_again(
    tmp_path: Path, new_database: Callable[[], str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Lost in the middle of a token, before its COMMIT was sent: the server rolled it
    back, so it runs again on a new connection and is written once."""
    from engine.store.postgres import PostgresTransaction

    bench = _bench(tmp_path, new_database)
    assert bench.apply(person("ann")).outcome == "created"
    real = PostgresTransaction.write_audit
    calls: list[int] = []

    def cut_first(self: PostgresTransaction, row: Any) -> None:
        calls.append(1)
        if len(calls) == 1:
            _terminate(bench.store)
        real(self, row)

    monkeypatch.setattr(PostgresTransaction, "write_audit", cut_first)
    again = bench.apply(person("bob"))
    assert again.outcome == "created", again.message
    assert len(calls) == 2
    assert sorted(u.fields["username"] for u in bench.store.users()) == ["ann", "bob"]
    assert bench.rows("SELECT count(*) FROM audit WHERE subject = 'bob-subject'") == [(1,)]
    bench.close()


def _cut_at_commit(bench: Bench) -> threading.Thread:
    """Make bob's first commit wait in a deferred trigger, and end its server process
    there from another connection (as a crash or a restart during COMMIT would)."""
    import psycopg

    bench.execute("CREATE SEQUENCE cut_seq")
    bench.execute(
        "CREATE FUNCTION cut() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
        " IF NEW.subject = 'bob-subject' AND nextval('cut_seq') = 1 THEN PERFORM pg_sleep(60);"
        " END IF; RETURN NEW; END $$"
    )
    bench.execute(
        "CREATE CONSTRAINT TRIGGER cut AFTER INSERT ON audit"
        " DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION cut()"
    )
    url = bench.store.url

    def cut() -> None:
        deadline = time.monotonic() + 60
        with psycopg.connect(url, autocommit=True) as admin:
            while time.monotonic() < deadline:
                sleeping = admin.execute(
                    "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
                    " AND query = 'COMMIT' AND wait_event = 'PgSleep'"
                ).fetchall()
                if sleeping:
                    admin.execute("SELECT pg_terminate_backend(%s)", (sleeping[0][0],))
                    return
                time.sleep(0.005)

    thread = threading.Thread(target=cut)
    thread.start()
    return thread


def test_a_connection_lost_while_committing_is_resolved_and_written_once(
    tmp_path: Path, new_database: Callable[[], str]
) -> None:
    """Lost during COMMIT: the store asks the server what became of the transaction
    (txid_status); it was rolled back, so the token runs again and is written once."""
    bench = _bench(tmp_path, new_database)
    assert bench.apply(person("ann")).outcome == "created"
    cutter = _cut_at_commit(bench)
    result = bench.apply(person("bob"))
    cutter.join(timeout=60)
    assert result.outcome == "created", result.message
    assert bench.rows("SELECT nextval('cut_seq')") == [(3,)]  # committed on the 2nd try
    assert bench.rows("SELECT count(*) FROM audit WHERE subject = 'bob-subject'") == [(1,)]
    assert sorted(u.fields["username"] for u in bench.store.users()) == ["ann", "bob"]
    bench.close()


def test_a_commit_whose_outcome_cannot_be_known_is_an_error_that_says_so(
    tmp_path: Path, new_database: Callable[[], str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """When the server cannot say what became of a broken commit, the token is not run
    again (it may have been written) but reported as an error (exit 4) that says so;
    the next token goes through on a new connection."""
    bench = _bench(tmp_path, new_database)
    assert bench.apply(person("ann")).outcome == "created"
    monkeypatch.setattr(PostgresStore, "_outcome", lambda self, xid: None)
    cutter = _cut_at_commit(bench)
    lost = bench.apply(person("bob"))
    cutter.join(timeout=60)
    assert lost.outcome == "error"
    assert "while committing" in (lost.message or "") and "unknown" in (lost.message or "")
    assert bench.apply(person("cid")).outcome == "created"
    bench.close()
