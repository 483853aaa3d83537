"""The store's schema version and `jitprov migrate`: a store is changed only when the
config needs it, once, and never by a sign-in; `migrate = "manual"` leaves every change
to `jitprov migrate`. Run against SQLite and PostgreSQL (tests/engine/conftest.py)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

if str(Path(__file__).parent) not in sys.path:  # tests/engine is not an importable package
    sys.path.insert(0, str(Path(__file__).parent))
from provision_fixtures import Bench, person, workspace

from engine.config import load_config
from engine.store import StoreError, migrate_store, open_store
from engine.store.versions import SCHEMA_VERSION
from tui.cli import run as main

pytestmark = pytest.mark.usefixtures("store_backend")


def _grow(config: Path, extra: str) -> None:
    """Declare more fields in the config's [store.fields]."""
    text = config.read_text()
    config.write_text(text.replace("[store.fields]\n", f"[store.fields]\n{extra}\n", 1))


def _migrate(config: Path, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict]:
    code = main(["migrate", "--json", "--config", str(config), *args])
    return code, json.loads(capsys.readouterr().out)


def test_migrate_reports_what_a_new_field_needs_and_check_changes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = workspace(tmp_path)
    bench = Bench(config)
    assert bench.apply(person("ann")).outcome == "created"
    bench.close()
    assert _migrate(config, capsys, "--check") == (
        0,
        {
            "store": _migrate(config, capsys)[1]["store"],
            "schema_version": SCHEMA_VERSION,
            "changes": [],
            "applied": False,
            "current": True,
        },
    )

    _grow(config, 'costcenter = "text"\nbadges = "set"')
    code, pending = _migrate(config, capsys, "--check")
    assert code == 1 and not pending["applied"] and not pending["current"]
    assert pending["changes"] == [
        "created table user_badges",
        "added column users.costcenter",
        "created index idx_user_badges_user_id_value_source",
        "created index idx_user_badges_value",
    ]
    # --check wrote nothing: asked again, the same answer.
    assert _migrate(config, capsys, "--check")[1]["changes"] == pending["changes"]

    code, done = _migrate(config, capsys)
    assert code == 0 and done["applied"] and done["changes"] == pending["changes"]
    assert _migrate(config, capsys, "--check") == (0, {**done, "changes": [], "applied": False})
    bench = Bench(config)
    assert bench.rows("SELECT username, costcenter FROM users") == [("ann", None)]
    bench.close()


def test_migrate_speaks_plainly_on_a_terminal(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = workspace(tmp_path)
    bench = Bench(config)
    assert bench.store is not None  # opening it makes the tables
    bench.close()
    assert main(["migrate", "--config", str(config)]) == 0
    assert f"up to date (schema version {SCHEMA_VERSION})" in capsys.readouterr().out
    _grow(config, 'costcenter = "text"')
    assert main(["migrate", "--check", "--config", str(config)]) == 1
    out = capsys.readouterr().out
    assert "would change:\n  added column users.costcenter\n" in out


def test_a_manual_store_behind_the_config_is_refused_until_migrated(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = workspace(tmp_path)
    text = config.read_text().replace("[store]\n", '[store]\nmigrate = "manual"\n', 1)
    config.write_text(text)
    bench = Bench(config)  # an empty store is made on first open, manual or not
    assert bench.apply(person("ann")).outcome == "created"
    bench.close()

    _grow(config, 'costcenter = "text"')
    with pytest.raises(StoreError, match=r"run `jitprov migrate` first"):
        open_store(load_config(config))
    token = tmp_path / "bob.toml"
    token.write_bytes(person("bob"))
    args = ["apply", "-c", "okta", "--unsigned-samples", "--config", str(config), str(token)]
    assert main(args) == 4
    assert "run `jitprov migrate` first" in capsys.readouterr().out

    assert migrate_store(load_config(config)).changes == ["added column users.costcenter"]
    bench = Bench(config)
    assert bench.apply(person("bob")).outcome == "created"
    bench.close()


def test_a_store_from_a_newer_jitprov_is_refused(tmp_path: Path) -> None:
    config = workspace(tmp_path)
    bench = Bench(config)
    bench.execute(
        "UPDATE store_meta SET value = %s WHERE name = 'schema_version'"
        if bench.postgres
        else "UPDATE store_meta SET value = ? WHERE name = 'schema_version'",
        str(SCHEMA_VERSION + 1),
    )
    bench.close()
    with pytest.raises(StoreError, match="newer than this jitprov's"):
        open_store(load_config(config))


def test_a_store_made_before_schema_versions_is_recorded_once(tmp_path: Path) -> None:
    config = workspace(tmp_path)
    bench = Bench(config)
    assert bench.apply(person("ann")).outcome == "created"
    bench.execute("DELETE FROM store_meta WHERE name NOT LIKE 'fold:' || '%%'")
    bench.close()
    report = migrate_store(load_config(config))
    assert report.changes == [] and not report.applied  # nothing to add: only recorded
    bench = Bench(config)
    rows = dict(bench.rows("SELECT name, value FROM store_meta"))
    assert rows["schema_version"] == str(SCHEMA_VERSION)
    assert rows["field:users.department"] == "text"
    assert bench.apply(person("bob")).outcome == "created"
    bench.close()


def test_sign_ins_and_reopening_a_current_store_run_no_ddl(tmp_path: Path) -> None:
    """With every schema change refused by the server (an event trigger), a current
    store still opens and provisions: neither opening it nor signing in changes tables."""
    config = workspace(tmp_path)
    bench = Bench(config)
    if not bench.postgres:
        bench.close()
        pytest.skip("SQLite has no event triggers; its open reads store_meta the same way")
    assert bench.apply(person("ann")).outcome == "created"
    bench.execute(
        "CREATE FUNCTION no_ddl() RETURNS event_trigger LANGUAGE plpgsql AS $$ BEGIN"
        " RAISE EXCEPTION 'DDL during sign-ins: %%', tg_tag; END $$"
    )
    bench.execute("CREATE EVENT TRIGGER no_ddl ON ddl_command_start EXECUTE FUNCTION no_ddl()")
    bench.close()
    for round_ in range(2):
        bench = Bench(config)
        for name in ("bob", "cid", "ann"):
            result = bench.apply(person(name, token_id=f"{name}-{round_}"))
            assert result.outcome in ("created", "updated", "unchanged"), result.message
        bench.close()
    # ...and a config that needs a change meets the trigger in `migrate`, not in a sign-in.
    _grow(config, 'costcenter = "text"')
    with pytest.raises(StoreError, match="DDL during sign-ins"):
        migrate_store(load_config(config))


def test_pending_requests_are_taken_once(tmp_path: Path) -> None:
    from datetime import UTC, datetime, timedelta

    from engine.store import PendingRequest

    bench = Bench(workspace(tmp_path))
    store = bench.store
    now = datetime(2026, 1, 1, tzinfo=UTC)
    old = PendingRequest("okta", "_jitprov-old", now - timedelta(days=2), None)
    store.add_pending(old, now - timedelta(days=3))
    fresh = PendingRequest("okta", "_jitprov-1", now + timedelta(minutes=10), "https://app/")
    store.add_pending(fresh, now)  # also forgets requests expired a day ago or more
    assert store.take_pending("okta", "_jitprov-old") is None
    assert store.take_pending("other", "_jitprov-1") is None  # another connection's
    assert store.take_pending("okta", "_jitprov-1") == fresh
    assert store.take_pending("okta", "_jitprov-1") is None  # single use
    bench.close()


def test_a_version_2_store_gains_the_oidc_request_columns_and_handoffs(tmp_path: Path) -> None:
    """Schema 3 (the browser sign-ins): a store of version 2 — pending_requests without
    nonce and verifier, no handoffs table — is brought up to date, its requests kept."""
    from datetime import UTC, datetime, timedelta

    from engine.store import PendingRequest

    config = workspace(tmp_path)
    bench = Bench(config)
    assert bench.apply(person("ann")).outcome == "created"
    now = datetime.now(UTC).replace(microsecond=0)
    kept = PendingRequest("okta", "_jitprov-2", now + timedelta(minutes=5), "https://app/")
    bench.store.add_pending(kept, now)
    bench.execute("DROP TABLE handoffs")
    for column in ("nonce", "verifier"):
        bench.execute(f"ALTER TABLE pending_requests DROP COLUMN {column}")
    bench.execute("UPDATE store_meta SET value = '2' WHERE name = 'schema_version'")
    bench.close()
    report = migrate_store(load_config(config))
    assert report.applied
    assert "created table handoffs" in report.changes
    assert "added column pending_requests.nonce" in report.changes
    bench = Bench(config)
    taken = bench.store.take_pending("okta", "_jitprov-2")
    assert taken is not None and taken.return_to == "https://app/" and taken.nonce is None
    oidc = PendingRequest("oidc", "state-1", now + timedelta(minutes=5), None, "n-1", "v-1")
    bench.store.add_pending(oidc, now)
    assert bench.store.take_pending("oidc", "state-1") == oidc
    bench.close()


def test_a_handoff_is_picked_up_once_and_forgotten_after_its_time(tmp_path: Path) -> None:
    from datetime import UTC, datetime, timedelta

    from engine.store import Handoff

    bench = Bench(workspace(tmp_path))
    store = bench.store
    now = datetime(2026, 1, 1, tzinfo=UTC)
    old = Handoff("a" * 64, "okta", '{"outcome": "created"}', now - timedelta(hours=1))
    store.add_handoff(old, now - timedelta(hours=1, minutes=1))
    fresh = Handoff("b" * 64, "okta", '{"outcome": "linked"}', now + timedelta(seconds=60))
    store.add_handoff(fresh, now)  # forgets `old`, expired more than ten minutes ago
    assert store.take_handoff("a" * 64, now) is None
    assert store.take_handoff("b" * 64, now) == fresh
    again = store.take_handoff("b" * 64, now + timedelta(seconds=1))
    assert again is not None and again.picked_at == now and again.result == ""
    bench.close()


def test_a_version_3_store_gains_recorded_signins_and_disabled_accounts(tmp_path: Path) -> None:
    """Schema 4 (plan and lifecycle): a store of version 3 — no recorded_signins, no
    users.disabled_at, no record secret — is brought up to date, its accounts kept; its
    sign-ins are then recorded and its accounts can be disabled."""
    config = workspace(tmp_path)
    bench = Bench(config)
    assert bench.apply(person("ann")).outcome == "created"
    bench.execute("DROP TABLE recorded_signins")
    bench.execute("ALTER TABLE users DROP COLUMN disabled_at")
    bench.execute("DELETE FROM store_meta WHERE name = 'record_secret'")
    bench.execute("UPDATE store_meta SET value = '3' WHERE name = 'schema_version'")
    bench.close()
    report = migrate_store(load_config(config))
    assert report.applied
    assert "created table recorded_signins" in report.changes
    assert "added column users.disabled_at" in report.changes
    bench = Bench(config)
    assert bench.user("ann") is not None and bench.user("ann").disabled_at is None  # type: ignore[union-attr]
    assert bench.apply(person("ann", department="Eng")).outcome == "updated"
    assert [r.subject for r in bench.store.recorded("okta")] == ["ann-subject"]
    secret = bench.rows("SELECT value FROM store_meta WHERE name = 'record_secret'")
    assert len(secret) == 1 and len(secret[0][0]) == 64
    bench.close()
