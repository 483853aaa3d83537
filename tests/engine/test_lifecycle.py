"""The account lifecycle as an administrator meets it (engine.lifecycle): `jitprov users
disable|enable|delete USER`, `users list --not-seen-since AGE` and `jitprov prune`, with
what the next sign-in of the account does, and prune's short transactions under
concurrent sign-ins. Run against SQLite and PostgreSQL (tests/engine/conftest.py)."""

from __future__ import annotations

import io
import json
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import redirect_stderr, redirect_stdout
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

if str(Path(__file__).parent) not in sys.path:  # tests/engine is not an importable package
    sys.path.insert(0, str(Path(__file__).parent))
from provision_fixtures import NOW, Bench, person, workspace

import tui.cli
from engine import lifecycle
from engine.config import load_config
from engine.result import Result
from engine.store import open_store
from engine.store.base import AuditRow
from engine.store.values import iso
from engine.store.writes import SqlTransaction

# Every test here runs against SQLite and against PostgreSQL (tests/engine/conftest.py).
pytestmark = pytest.mark.usefixtures("store_backend")

# Only the commands under test: another command's module must not break these tests.
OWN_COMMANDS = ("apply", "users", "audit", "prune")
PRUNE_KEYS = ["dry_run", "replay", "requests", "handoffs", "audit", "recorded"]


@pytest.fixture(autouse=True)
def _own_commands(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tui.cli, "COMMANDS", OWN_COMMANDS)


def cli(config: Path, *argv: str) -> tuple[int, str, str]:
    """`jitprov ARGV --config CONFIG` in-process: exit code, stdout, stderr."""
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = tui.cli.run([*argv, "--config", str(config)])
    return code, out.getvalue(), err.getvalue()


class Admin:
    """A workspace with a provisioner (`bench`) and the CLI on the same store."""

    def __init__(self, config: Path) -> None:
        self.config = config
        self.bench = Bench(config)

    def run(self, *argv: str) -> tuple[int, str, str]:
        return cli(self.config, *argv)

    def json(self, *argv: str) -> Any:
        code, out, err = self.run(*argv, "--json")
        assert code == 0, err
        return json.loads(out)

    def apply(self, raw: bytes, connection: str = "okta", **kw: Any) -> Result:
        result: Result = self.bench.apply(raw, connection, **kw)
        return result

    def rows(self, sql: str, *params: object) -> list[tuple[Any, ...]]:
        """`sql` with `?` marks, on either store."""
        if self.bench.postgres:
            sql = sql.replace("?", "%s")
        rows: list[tuple[Any, ...]] = self.bench.rows(sql, *params)
        return rows

    def execute(self, sql: str, *params: object) -> None:
        """One statement with `?` marks, committed, on either store."""
        self.bench.execute(sql.replace("?", "%s") if self.bench.postgres else sql, *params)

    def count(self, table: str, where: str = "1 = 1", *params: object) -> int:
        [(n,)] = self.rows(f"SELECT count(*) FROM {table} WHERE {where}", *params)
        return int(n)

    def outcomes(self, user_id: int) -> list[str]:
        """The account's audit outcomes, oldest first."""
        return [r.outcome for r in reversed(self.bench.store.audit(user_id=user_id))]

    def account_rows(self, user_id: int) -> dict[str, list[tuple[Any, ...]]]:
        """Everything the store keeps about one account, row by row."""
        return {
            "users": self.rows("SELECT * FROM users WHERE id = ?", user_id),
            "groups": self.rows(
                "SELECT value, source FROM user_groups WHERE user_id = ? ORDER BY 1", user_id
            ),
            "roles": self.rows(
                "SELECT value, source FROM user_roles WHERE user_id = ? ORDER BY 1", user_id
            ),
            "links": self.rows(
                "SELECT * FROM identity_links WHERE user_id = ? ORDER BY connection", user_id
            ),
        }

    def close(self) -> None:
        self.bench.close()


def with_retention(config: Path, **days: object) -> Path:
    """Add a [retention] table (values written as TOML literals)."""
    lines = ["", "[retention]", *(f"{k} = {v}" for k, v in days.items())]
    config.write_text(config.read_text(encoding="utf-8") + "\n".join(lines) + "\n")
    return config


@pytest.fixture
def admin(tmp_path: Path) -> Iterator[Admin]:
    a = Admin(workspace(tmp_path))
    yield a
    a.close()


def make(tmp_path: Path, **kw: Any) -> Admin:
    return Admin(workspace(tmp_path, **kw))


# -- disable / enable ----------------------------------------------------------------


def test_a_disabled_account_is_denied_until_enabled_and_each_change_is_audited(
    admin: Admin,
) -> None:
    created = admin.apply(person("jdoe", groups=["eng"], department="Sales"))
    assert created.outcome == "created" and created.user_id is not None
    uid = created.user_id
    assert "disabled_at" not in admin.json("users", "show", "jdoe")

    code, out, err = admin.run("users", "disable", "JDOE")  # any case
    assert (code, err) == (0, "")
    assert out == f"disabled jdoe (account {uid})\n"
    shown = admin.json("users", "show", "jdoe")
    assert shown["disabled_at"] is not None and shown["disabled_at"].endswith("Z")
    before = admin.account_rows(uid)

    # The next sign-in, even one that would change the account, is denied and says why.
    denied = admin.apply(
        person("jdoe", groups=["ops"], department="R&D"), now=NOW + timedelta(hours=1)
    )
    assert denied.outcome == "denied" and denied.sso == "stop"
    assert denied.message is not None
    assert denied.message.startswith(f"the account is disabled (since {shown['disabled_at']})")
    assert "jitprov users enable" in denied.message
    assert admin.account_rows(uid) == before  # no field, member or link changed
    assert admin.json("users", "show", "jdoe") == shown

    [disabled, _] = [r for r in admin.bench.store.audit(user_id=uid) if r.outcome != "denied"]
    assert (disabled.outcome, disabled.connection, disabled.user_id) == ("disabled", None, uid)
    assert disabled.message == f"account {uid} (jdoe) disabled by an administrator"
    assert admin.outcomes(uid) == ["created", "disabled", "denied"]

    # Disabling again changes nothing: same account, no second audit row.
    code, out, _ = admin.run("users", "disable", "jdoe")
    assert (code, out) == (0, f"jdoe (account {uid}) was already disabled\n")
    assert admin.json("users", "show", "jdoe") == shown
    again = admin.json("users", "disable", "jdoe")
    assert again == shown
    assert admin.outcomes(uid) == ["created", "disabled", "denied"]

    code, out, _ = admin.run("users", "enable", "jdoe")
    assert (code, out) == (0, f"enabled jdoe (account {uid})\n")
    assert "disabled_at" not in admin.json("users", "show", "jdoe")
    code, out, _ = admin.run("users", "enable", "jdoe")
    assert (code, out) == (0, f"jdoe (account {uid}) was already enabled\n")
    assert admin.outcomes(uid) == ["created", "disabled", "denied", "enabled"]

    works = admin.apply(person("jdoe", groups=["ops"], department="R&D"))
    assert works.outcome == "updated" and works.sso == "continue"
    assert "disabled" not in works.changes
    assert works.changes["department"] == ["Sales", "R&D"]
    assert admin.outcomes(uid)[-1] == "updated"


def test_disabling_twice_in_the_same_second_reports_nothing_changed(admin: Admin) -> None:
    """Twice in the same second: the second call is still "nothing changed"."""
    admin.apply(person("jdoe"))
    store, config = admin.bench.store, admin.bench.config
    now = datetime.now(UTC)
    first, changed = lifecycle.set_disabled(store, config, "jdoe", True, now)
    assert changed and first.disabled_at == iso(now)
    second, changed = lifecycle.set_disabled(store, config, "jdoe", True, now)
    assert not changed and second.disabled_at == iso(now)
    _, changed = lifecycle.set_disabled(store, config, "jdoe", False, now)
    assert changed
    _, changed = lifecycle.set_disabled(store, config, "jdoe", False, now)
    assert not changed
    assert [r.outcome for r in store.audit()] == ["enabled", "disabled", "created"]


def test_on_disabled_enable_lets_the_sign_in_enable_the_account_again(tmp_path: Path) -> None:
    admin = make(tmp_path, connections={"okta": {"on_disabled": "enable"}})
    created = admin.apply(person("jdoe", groups=["eng"]))
    assert created.user_id is not None
    uid = created.user_id
    assert admin.run("users", "disable", "jdoe")[0] == 0

    back = admin.apply(person("jdoe", groups=["eng"]))
    assert back.outcome == "updated" and back.sso == "continue"
    assert back.changes == {"disabled": [True, False]}
    assert "disabled_at" not in admin.json("users", "show", "jdoe")
    [row, *_] = admin.bench.store.audit(user_id=uid)
    assert (row.outcome, row.connection) == ("updated", "okta")
    assert row.changes == {"disabled": [True, False]}
    assert admin.apply(person("jdoe", groups=["eng"])).outcome == "unchanged"

    # With other changes too, both are in the result.
    admin.run("users", "disable", "jdoe")
    changed = admin.apply(person("jdoe", groups=["eng", "ops"]))
    assert changed.outcome == "updated"
    assert changed.changes == {
        "groups": {"added": ["ops"], "removed": []},
        "disabled": [True, False],
    }
    user = admin.bench.user("jdoe")
    assert user is not None and user.disabled_at is None
    assert admin.outcomes(uid) == [
        "created",
        "disabled",
        "updated",
        "unchanged",
        "disabled",
        "updated",
    ]
    admin.close()


def test_a_dry_run_sign_in_does_not_enable_a_disabled_account(tmp_path: Path) -> None:
    admin = make(tmp_path, connections={"okta": {"on_disabled": "enable"}})
    admin.apply(person("jdoe"))
    admin.run("users", "disable", "jdoe")
    planned = admin.apply(person("jdoe"), dry_run=True)
    assert planned.outcome == "updated" and planned.changes == {"disabled": [True, False]}
    user = admin.bench.user("jdoe")
    assert user is not None and user.disabled_at is not None
    admin.close()


# -- delete ---------------------------------------------------------------------------


def test_delete_removes_the_account_with_its_rows_and_keeps_its_audit(tmp_path: Path) -> None:
    connections: dict[str, dict[str, Any]] = {"okta": {}, "entra": {"link_by": "email"}}
    admin = make(tmp_path, connections=connections)
    created = admin.apply(person("jdoe", groups=["eng", "ops"]))
    assert created.user_id is not None
    uid = created.user_id
    linked = admin.apply(person("jdoe", subject="jdoe-entra"), "entra")
    assert linked.outcome == "linked"
    admin.apply(person("ann", groups=["eng"]))
    ann = admin.bench.user("ann")
    assert ann is not None
    ann_before = admin.account_rows(ann.id)
    assert admin.count("recorded_signins") == 3
    history = admin.bench.store.audit(user_id=uid)
    assert [r.outcome for r in history] == ["linked", "created"]

    deleted = admin.json("users", "delete", "JDoe")
    assert deleted["deleted"]["id"] == uid and deleted["deleted"]["username"] == "jdoe"
    assert {k: v for k, v in deleted.items() if k != "deleted"} == {
        "groups": 2,
        "roles": 0,
        "recorded": 2,
        "links": 2,
        "users": 1,
    }
    assert admin.account_rows(uid) == {"users": [], "groups": [], "roles": [], "links": []}
    assert admin.count("recorded_signins", "user_id = ?", uid) == 0
    assert admin.rows("SELECT subject FROM recorded_signins") == [("ann-subject",)]
    assert admin.account_rows(ann.id) == ann_before  # another account is untouched

    [row, *kept] = admin.bench.store.audit(user_id=uid)
    assert kept == history  # the sign-ins' audit rows stay, unchanged
    assert (row.outcome, row.connection, row.subject, row.user_id) == ("deleted", None, None, uid)
    assert row.message == (
        f"account {uid} (jdoe) deleted by an administrator, with 2 identity link(s),"
        " 2 set member(s) and 2 recorded sign-in(s)"
    )
    code, _, err = admin.run("users", "show", "jdoe")
    assert code == 1 and "no user named 'jdoe'" in err

    # The same identity signs in again: a fresh account, nothing of the old one.
    fresh = admin.apply(person("jdoe", groups=["new"]))
    assert fresh.outcome == "created"
    user = admin.bench.user("jdoe")
    assert user is not None
    assert user.members["groups"] == {("new", "okta")}
    assert user.links == [("okta", "jdoe-subject")]
    assert admin.apply(person("jdoe", subject="jdoe-entra"), "entra").outcome == "linked"
    admin.close()


def test_delete_human_output_and_unknown_users(admin: Admin) -> None:
    created = admin.apply(person("jdoe", groups=["eng"]))
    code, out, err = admin.run("users", "delete", "jdoe")
    assert (code, err) == (0, "")
    assert out == (
        f"deleted jdoe (account {created.user_id}) with 1 identity link(s), 1 set member(s)"
        " and 1 recorded sign-in(s)\n"
    )
    audit_rows = admin.count("audit")
    for action in ("delete", "disable", "enable", "show"):
        code, out, err = admin.run("users", action, "jdoe")
        assert (code, out) == (1, ""), action
        assert err == "jitprov: error: no user named 'jdoe'\n", action
    assert admin.count("audit") == audit_rows  # a failed change writes no audit row
    code, _, err = admin.run("users", "delete")
    assert code == 1 and "users delete needs a USER" in err


def test_admin_audit_rows_do_not_name_an_account_whose_username_is_redacted(
    tmp_path: Path,
) -> None:
    admin = make(tmp_path, connections={"okta": {"redact": ["username"]}})
    created = admin.apply(person("jdoe"))
    uid = created.user_id
    for action in ("disable", "enable", "delete"):
        code, out, _ = admin.run("users", action, "jdoe")
        assert code == 0 and "jdoe" in out  # the administrator sees whom they changed
    rows = admin.bench.store.audit(user_id=uid)
    assert [r.outcome for r in rows] == ["deleted", "enabled", "disabled", "created"]
    assert rows[1].message == f"account {uid} enabled by an administrator"
    assert rows[2].message == f"account {uid} disabled by an administrator"
    assert all("jdoe" not in (r.message or "") for r in rows)
    admin.close()


def test_a_recreated_account_does_not_inherit_the_deleted_ones_audit(tmp_path: Path) -> None:
    """`jitprov audit --user jdoe` after a delete and a new sign-in: the new account's
    history only (SQLite would give the deleted newest account's id again: the store
    keeps a floor for new ids)."""
    admin = make(tmp_path)
    admin.apply(person("ann"))
    old = admin.apply(person("jdoe"))
    admin.run("users", "delete", "jdoe")
    new = admin.apply(person("jdoe"))
    assert new.outcome == "created"
    assert new.user_id != old.user_id
    code, out, err = admin.run("audit", "--user", "jdoe", "--json")
    assert code == 0, err
    assert [r["outcome"] for r in json.loads(out)] == ["created"]
    admin.close()


# -- users list --not-seen-since --------------------------------------------------------


def test_not_seen_since_lists_exactly_the_stale_accounts(tmp_path: Path) -> None:
    connections: dict[str, dict[str, Any]] = {"okta": {}, "entra": {"link_by": "email"}}
    admin = make(tmp_path, connections=connections)
    now = datetime.now(UTC).replace(microsecond=0)
    long_ago, lately = now - timedelta(days=200), now - timedelta(days=10)

    def sign_in(uid: str, at: datetime, connection: str = "okta", **kw: Any) -> int:
        result = admin.apply(person(uid, **kw), connection, now=at)
        assert result.outcome in ("created", "unchanged", "linked"), result.message
        assert result.user_id is not None
        return result.user_id

    gone = sign_in("gone", long_ago)  # signed in long ago only
    back = sign_in("back", long_ago)  # long ago, and lately again
    sign_in("back", lately)
    other = sign_in("other", long_ago)  # one old link, and a recent one elsewhere
    assert sign_in("other", lately, "entra", subject="other-entra") == other
    recent = sign_in("recent", lately)
    quiet = sign_in("quiet", long_ago)  # never signed in (no link): counts from creation
    fresh = sign_in("fresh", lately)
    admin.execute("DELETE FROM identity_links WHERE user_id IN (?, ?)", quiet, fresh)
    asleep = sign_in("asleep", long_ago - timedelta(days=1))  # stale and disabled too
    admin.run("users", "disable", "asleep")

    for since in ("90d", (now - timedelta(days=90)).date().isoformat()):
        listed = admin.json("users", "list", "--not-seen-since", since)
        assert [u["username"] for u in listed] == ["asleep", "gone", "quiet"], since
        by_name = {u["username"]: u for u in listed}
        assert by_name["gone"]["last_seen_at"] == iso(long_ago)
        assert by_name["quiet"]["last_seen_at"] == iso(long_ago)  # its created_at
        assert by_name["quiet"]["links"] == []
        assert by_name["asleep"]["last_seen_at"] == iso(long_ago - timedelta(days=1))
        assert "disabled_at" in by_name["asleep"] and "disabled_at" not in by_name["gone"]
        assert {u["id"] for u in listed} == {gone, quiet, asleep}
        assert not {back, other, recent, fresh} & {u["id"] for u in listed}

    code, out, _ = admin.run("users", "list", "--not-seen-since", "90d")
    assert code == 0
    lines = out.splitlines()
    assert [line.split()[1] for line in lines[1:]] == ["asleep", "gone", "quiet"]
    assert "disabled" in lines[1] and "disabled" not in lines[2]
    assert admin.json("users", "list", "--not-seen-since", "400d") == []
    code, out, _ = admin.run("users", "list", "--not-seen-since", "2000-01-01")
    assert (code, out) == (0, "no accounts unseen since 2000-01-01T00:00:00+00:00\n")
    code, _, err = admin.run("users", "list", "--not-seen-since", "soon")
    assert code == 1 and "--not-seen-since: expected an age such as 90d" in err
    code, _, err = admin.run("users", "show", "gone", "--not-seen-since", "90d")
    assert code == 1 and "--not-seen-since goes with users list" in err
    admin.close()


# -- prune ----------------------------------------------------------------------------


def _prunable(admin: Admin) -> dict[str, Any]:
    """What prune may touch, for comparing before and after."""
    return {
        "seen": admin.rows("SELECT token_id FROM seen_tokens ORDER BY 1"),
        "audit": admin.rows("SELECT id, at, outcome FROM audit ORDER BY id"),
        "recorded": admin.rows("SELECT subject, at FROM recorded_signins ORDER BY 1"),
    }


def _seen_tokens(admin: Admin) -> None:
    expired, now, later = iso(NOW - timedelta(hours=1)), iso(NOW), iso(NOW + timedelta(hours=1))
    for token_id, expires in [("expired", expired), ("at-now", now), ("later", later)]:
        admin.execute(
            "INSERT INTO seen_tokens (connection, token_id, expires_at) VALUES ('okta', ?, ?)",
            token_id,
            expires,
        )
    admin.execute(
        "INSERT INTO seen_tokens (connection, token_id, expires_at) VALUES ('okta', 'never', NULL)"
    )


def test_prune_removes_what_retention_says_and_dry_run_only_counts(tmp_path: Path) -> None:
    admin = Admin(with_retention(workspace(tmp_path), audit_days=30, recorded_days=60))
    _seen_tokens(admin)
    admin.apply(person("old"), now=NOW - timedelta(days=70))  # audit and recorded: go
    admin.apply(person("mid"), now=NOW - timedelta(days=40))  # audit goes, recorded stays
    admin.apply(person("mid"), now=NOW - timedelta(days=31))  # audit goes
    admin.apply(person("new"), now=NOW - timedelta(days=29))  # both stay
    admin.apply(person("new"), now=NOW)
    at = ("--at", iso(NOW))
    before = _prunable(admin)

    counts = {"replay": 2, "requests": 0, "handoffs": 0, "audit": 3, "recorded": 1}
    planned = admin.json("prune", "--dry-run", *at)
    assert list(planned) == PRUNE_KEYS
    assert planned == {"dry_run": True, **counts}
    assert _prunable(admin) == before  # nothing removed
    code, out, _ = admin.run("prune", "--dry-run", *at)
    assert code == 0
    assert out.splitlines() == [
        "would remove 2 expired replay entries",
        "would remove 0 expired sign-in requests",
        "would remove 0 expired hand-offs",
        "would remove 3 audit rows past audit_days",
        "would remove 1 recorded sign-ins past recorded_days",
    ]
    assert _prunable(admin) == before

    done = admin.json("prune", *at)
    assert list(done) == PRUNE_KEYS and done == {"dry_run": False, **counts}
    after = _prunable(admin)
    assert after["seen"] == [("later",), ("never",)]
    assert [(at, outcome) for _, at, outcome in after["audit"]] == [
        (iso(NOW - timedelta(days=29)), "created"),
        (iso(NOW), "unchanged"),
    ]
    assert after["audit"] == before["audit"][3:]  # the same rows, ids and all
    assert after["recorded"] == [
        ("mid-subject", iso(NOW - timedelta(days=31))),
        ("new-subject", iso(NOW)),
    ]
    # The accounts themselves are not pruned.
    assert sorted(u.fields["username"] for u in admin.bench.store.users()) == ["mid", "new", "old"]
    again = admin.json("prune", *at)
    assert again == {"dry_run": False, **dict.fromkeys(counts, 0)}
    code, out, _ = admin.run("prune", *at)
    assert code == 0 and out.splitlines()[0] == "removed 0 expired replay entries"
    code, out, err = admin.run("prune", "--at", "2025-05-01T12:00:00")
    assert (code, out) == (1, "") and "--at: give a time zone" in err
    admin.close()


def test_prune_without_retention_keeps_audit_and_recorded_sign_ins(admin: Admin) -> None:
    _seen_tokens(admin)
    admin.apply(person("old"), now=NOW - timedelta(days=3000))
    before = _prunable(admin)
    code, out, err = admin.run("prune", "--at", iso(NOW))
    assert (code, err) == (0, "")
    assert out.splitlines() == [
        "removed 2 expired replay entries",
        "removed 0 expired sign-in requests",
        "removed 0 expired hand-offs",
        "removed 0 audit rows past audit_days (kept for ever: no [retention] audit_days)",
        "removed 0 recorded sign-ins past recorded_days (kept for ever: no [retention]"
        " recorded_days)",
    ]
    after = _prunable(admin)
    assert after["audit"] == before["audit"] and len(after["audit"]) == 1
    assert after["recorded"] == before["recorded"] and len(after["recorded"]) == 1
    assert after["seen"] == [("later",), ("never",)]


@pytest.mark.parametrize(
    ("retention", "message"),
    [
        (
            {"audit_days": 0},
            "retention.audit_days: expected a whole number of days, 1 or more, got 0",
        ),
        (
            {"recorded_days": -5},
            "retention.recorded_days: expected a whole number of days, 1 or more, got -5",
        ),
        ({"audit_days": '"x"'}, 'retention.audit_days: expected a whole number of days, got "x"'),
        ({"audit_days": "1.5"}, "retention.audit_days: expected a whole number of days, got 1.5"),
        ({"audit_days": "true"}, "retention.audit_days: expected a whole number of days"),
        ({"keep_days": 3}, "retention.keep_days: unknown key"),
    ],
)
def test_a_wrong_retention_is_a_clear_config_error(
    tmp_path: Path, retention: dict[str, object], message: str
) -> None:
    config = with_retention(workspace(tmp_path), **retention)
    for argv in (["prune"], ["prune", "--dry-run", "--json"]):
        code, out, err = cli(config, *argv)
        assert (code, out) == (1, "")
        assert err.startswith("jitprov: error: jitprov.toml: ")
        assert message in err
        if "unknown key" in message:  # and it says which keys there are
            assert "expected one of audit_days, " in err and "recorded_days" in err


# -- prune under concurrent sign-ins ------------------------------------------------------

SIGNERS, OLD_ROWS, BATCH, MIN_SIGN_INS = 4, 3000, 50, 25
WAIT = 120  # seconds: a bound on waiting for a condition (a hang fails, nothing is timed)


def test_prune_in_short_batches_loses_no_concurrent_sign_in(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = with_retention(workspace(tmp_path), audit_days=30, recorded_days=30)
    setup = Bench(config)
    old_at = iso(NOW - timedelta(days=400))
    old = [
        AuditRow(old_at, "okta", f"old-{i}", None, "created", None, None, None)
        for i in range(OLD_ROWS)
    ]
    setup.store.atomic(lambda txn: [txn.write_audit(row) for row in old])
    setup.close()

    # Each delete_batch (prune's only writes), and each of prune's transactions.
    batches: list[tuple[str, int]] = []
    real_batch = SqlTransaction.delete_batch

    def delete_batch(self: Any, table: str, where: str, params: Any, limit: int) -> int:
        gone = real_batch(self, table, where, params, limit)
        batches.append((table, gone))
        return gone

    monkeypatch.setattr(SqlTransaction, "delete_batch", delete_batch)

    signed = 0  # sign-ins committed so far
    progress = threading.Condition()
    pruned = threading.Event()
    results: list[list[Result]] = [[] for _ in range(SIGNERS)]
    failures: list[BaseException] = []

    def signer(n: int) -> None:
        nonlocal signed
        bench = Bench(config)  # a store of its own (SQLite: its own connection)
        try:
            i = 0
            while not failures and (not pruned.is_set() or i < MIN_SIGN_INS):
                uid = f"s{n}-{i}"
                results[n].append(bench.apply(person(uid, token_id=uid, groups=[f"g{n}"])))
                i += 1
                with progress:
                    signed += 1
                    progress.notify_all()
        except BaseException as exc:
            failures.append(exc)
        finally:
            bench.close()

    pruner: Any = open_store(load_config(config))
    real_atomic: Callable[..., Any] = pruner.atomic
    transactions = 0

    def atomic(work: Callable[[Any], Any], *, write: bool = True) -> Any:
        """One of prune's transactions; then wait until a sign-in has committed since it
        began, so that prune's batches and the sign-ins surely interleave."""
        nonlocal transactions
        with progress:
            began = signed
        value = real_atomic(work, write=write)
        transactions += 1
        with progress:
            ok = progress.wait_for(lambda: signed > began or bool(failures), timeout=WAIT)
        assert ok, "no sign-in committed between two of prune's transactions"
        return value

    pruner.atomic = atomic
    outcome: list[lifecycle.Pruned] = []

    def prune() -> None:
        try:
            outcome.append(lifecycle.prune(pruner, load_config(config), NOW, batch=BATCH))
        except BaseException as exc:
            failures.append(exc)
        finally:
            pruned.set()

    threads = [threading.Thread(target=signer, args=(n,)) for n in range(SIGNERS)]
    threads.append(threading.Thread(target=prune))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=600)
        assert not thread.is_alive(), "a thread did not finish"
    pruner.close()
    if failures:
        raise failures[0]

    [report] = outcome
    assert report.counts["audit"] == OLD_ROWS
    audit_batches = [gone for table, gone in batches if table == "audit"]
    assert sum(audit_batches) == OLD_ROWS
    assert all(gone <= BATCH for _, gone in batches)
    assert len(audit_batches) >= OLD_ROWS // BATCH  # many short transactions, not one
    assert transactions >= len(audit_batches)

    every = [r for rs in results for r in rs]
    assert len(every) >= SIGNERS * MIN_SIGN_INS
    assert {r.outcome for r in every} == {"created"}, {(r.outcome, r.message) for r in every}
    check = Admin(config)
    usernames = {u.fields["username"] for u in check.bench.store.users()}
    expected = {r.subject.removesuffix("-subject") for r in every if r.subject}
    assert len(expected) == len(every) and usernames == expected  # every account is there
    audit = check.rows("SELECT subject, outcome, at FROM audit")
    assert sorted(audit) == sorted((f"{u}-subject", "created", iso(NOW)) for u in expected)
    assert check.count("audit", "at < ?", iso(NOW - timedelta(days=30))) == 0
    assert check.count("recorded_signins") == len(every)
    assert check.count("seen_tokens") == len(every)
    check.close()
