"""Recorded sign-ins and `jitprov plan`: a plan is what each identity's next sign-in
would do with the planned rules — checked against real sign-ins, over random rules
edits and random populations — and redacted attributes are never recorded in clear
unless the connection asks for it."""

from __future__ import annotations

import json
import sqlite3
import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine import plan as plan_module
from engine.config import load_config
from engine.plan import plan
from engine.provision import Provisioner, RulesError, rules_from_source
from engine.recorded import HASH_PREFIX, hashed
from engine.store import layout_for
from engine.store.sqlite import SqliteStore
from tui.cli import run as cli

if str(Path(__file__).parent) not in sys.path:  # tests/engine is not an importable package
    sys.path.insert(0, str(Path(__file__).parent))
from provision_fixtures import NOW, TRANSIENT, Bench, person, sample, workspace

RULES = """\
deny "contractors are not provisioned" when "contractor" in @type
username     = first(@uid)
email        = lower(first(@mail))
department   = first(@dept)
employee_id  = first(@badge)
groups       = @groups
"""
FIELDS = {"employee_id": "text"}


def bench_for(root: Path, rules: str = RULES, **extra: Any) -> Bench:
    connection = {"link_by": "email", **extra}
    return Bench(workspace(root, rules, connections={"okta": connection}, fields=FIELDS))


def signin(bench: Bench, uid: str, minutes: int = 0, **attributes: Any) -> str:
    attributes.setdefault("mail", f"{uid}@example.com")
    result = bench.apply(person(uid, **attributes), now=NOW + timedelta(minutes=minutes))
    return result.outcome


def recorded_rows(bench: Bench) -> dict[str, dict[str, Any]]:
    rows = bench.rows(
        "SELECT subject_key, subject, user_id, outcome, at, rules_sha256, bag"
        " FROM recorded_signins ORDER BY subject_key"
    )
    return {
        r[0]: {
            "subject": r[1],
            "user_id": r[2],
            "outcome": r[3],
            "at": r[4],
            "sha": r[5],
            "bag": json.loads(r[6]),
        }
        for r in rows
    }


@pytest.fixture
def bench(tmp_path: Path, store_backend: str) -> Iterator[Bench]:
    b = bench_for(tmp_path)
    yield b
    b.close()


# -- what is recorded -------------------------------------------------------------------


def test_each_identity_keeps_its_latest_signin(bench: Bench) -> None:
    signin(bench, "ann", dept="Sales", groups=["a"])
    signin(bench, "ann", minutes=5, dept="Eng", groups=["a", "b"])
    signin(bench, "bob", type="contractor")
    rows = recorded_rows(bench)
    assert set(rows) == {"ann-subject", "bob-subject"}
    ann = rows["ann-subject"]
    assert ann["outcome"] == "updated"
    assert ann["at"] == "2025-05-01T12:05:00Z"
    assert ann["bag"]["attributes"]["dept"] == ["Eng"]
    assert ann["bag"]["attributes"]["groups"] == ["a", "b"]
    assert ann["user_id"] == bench.user("ann").id  # type: ignore[union-attr]
    assert ann["sha"] == bench.provisioner.rules("okta").sha256
    assert rows["bob-subject"]["outcome"] == "denied"  # denied sign-ins are recorded too
    assert rows["bob-subject"]["user_id"] is None


def test_rejected_tokens_and_dry_runs_record_nothing(bench: Bench) -> None:
    bench.apply(b"not a token at all")
    bench.apply(person("cat", mail="cat@example.com"), dry_run=True)
    assert recorded_rows(bench) == {}


def test_record_false_records_nothing(tmp_path: Path, store_backend: str) -> None:
    bench = bench_for(tmp_path, record=False)
    try:
        assert signin(bench, "ann") == "created"
        assert recorded_rows(bench) == {}
    finally:
        bench.close()


def test_redacted_attributes_are_recorded_only_as_keyed_hashes(
    tmp_path: Path, store_backend: str
) -> None:
    bench = bench_for(tmp_path, redact=["badge", "employee_id"])
    try:
        signin(bench, "ann", badge="B-1234")
        bag = recorded_rows(bench)["ann-subject"]["bag"]
        (value,) = bag["attributes"]["badge"]
        assert value.startswith(HASH_PREFIX) and "B-1234" not in json.dumps(bag)
        secret = bytes.fromhex(
            bench.rows("SELECT value FROM store_meta WHERE name = 'record_secret'")[0][0]
        )
        assert value == hashed(secret, "B-1234")  # keyed by the store's own secret
        assert bag["attributes"]["uid"] == ["ann"]  # the others in clear
    finally:
        bench.close()


def test_each_store_has_its_own_hash_key(tmp_path: Path) -> None:
    values = []
    for name in ("one", "two"):
        bench = bench_for(tmp_path / name, redact=["badge"])
        signin(bench, "ann", badge="B-1234")
        values.append(recorded_rows(bench)["ann-subject"]["bag"]["attributes"]["badge"][0])
        bench.close()
    assert values[0] != values[1]


def test_record_redacted_keeps_them_in_clear(tmp_path: Path, store_backend: str) -> None:
    bench = bench_for(tmp_path, redact=["badge"], record_redacted=True)
    try:
        signin(bench, "ann", badge="B-1234")
        assert recorded_rows(bench)["ann-subject"]["bag"]["attributes"]["badge"] == ["B-1234"]
    finally:
        bench.close()


def test_a_transient_subject_is_recorded_under_its_account(
    tmp_path: Path, store_backend: str
) -> None:
    bench = bench_for(tmp_path)
    try:
        for n in range(2):  # a new transient NameID at every sign-in
            token = sample(f"tmp-{n}", subject_format=TRANSIENT, uid="ann", mail="ann@example.com")
            assert bench.apply(token).outcome in ("created", "unchanged")
        rows = recorded_rows(bench)
        assert len(rows) == 1
        (row,) = rows.values()
        assert row["subject"] == "tmp-1" and row["user_id"] == bench.user("ann").id  # type: ignore[union-attr]
        report = plan(bench.config, "okta", RULES.replace("first(@dept)", '"x"'), workers=1)
        assert [a.username for a in report.accounts] == ["ann"]
        assert report.accounts[0].changes == {"department": [None, "x"]}
    finally:
        bench.close()


# -- the plan ---------------------------------------------------------------------------


def population(bench: Bench) -> None:
    signin(bench, "ann", dept="Eng", groups=["eng", "all"])
    signin(bench, "bob", dept="Sales", groups=["sales", "all"])
    signin(bench, "cy", dept="Eng", groups=["eng"])
    signin(bench, "dee", type="contractor")


def test_unchanged_rules_plan_no_change(bench: Bench) -> None:
    population(bench)
    report = plan(bench.config, "okta", RULES, workers=1)
    assert report.recorded == 4
    assert report.counts == {"change": 0, "deny": 0, "same": 4}  # dee was denied and stays so
    assert report.accounts == []


def test_a_rules_edit_is_planned_field_by_field_with_its_lines(bench: Bench) -> None:
    population(bench)
    edited = RULES.replace("groups       = @groups", 'groups       = @groups\ngroups += "staff"')
    edited = edited.replace("department   = first(@dept)", "department   = lower(first(@dept))")
    edited = edited.replace(
        'deny "contractors', 'deny "sales is paused" when "Sales" in @dept\ndeny "contractors'
    )
    report = plan(bench.config, "okta", edited, workers=1)
    assert report.counts == {"change": 2, "deny": 1, "same": 1}
    assert report.outcomes == {"updated": 2, "denied": 2}
    by_name = {a.username: a for a in report.accounts}
    assert by_name["bob"].verdict == "deny" and by_name["bob"].message == "sales is paused"
    assert by_name["bob"].deny_line == 1
    ann = by_name["ann"]
    assert ann.changes == {
        "department": ["Eng", "eng"],
        "groups": {"added": ["staff"], "removed": []},
    }
    assert ann.lines == {"department": [5], "groups": [8]}
    groups = {(g.field, g.op, g.value): g.count for g in report.groups}
    assert groups == {("groups", "+", "staff"): 2, ("department", "=", "eng"): 2}
    assert report.fields == {"department": 2, "groups": 2}
    # Nothing was written: the accounts are as they were.
    assert bench.user("ann").fields["department"] == "Eng"  # type: ignore[union-attr]


def test_plan_since_takes_only_recent_signins(bench: Bench) -> None:
    signin(bench, "ann", minutes=0)
    signin(bench, "bob", minutes=60)
    edited = RULES.replace("first(@dept)", '"x"')
    report = plan(bench.config, "okta", edited, since=NOW + timedelta(minutes=30), workers=1)
    assert [a.username for a in report.accounts] == ["bob"]


def test_rules_that_do_not_compile_are_an_error(bench: Bench) -> None:
    population(bench)
    with pytest.raises(RulesError, match="unknown name"):
        plan(bench.config, "okta", "username = nosuchname\n", workers=1)


def test_plan_warns_when_rules_read_hashed_attributes(tmp_path: Path, store_backend: str) -> None:
    bench = bench_for(tmp_path, redact=["badge", "employee_id"])
    try:
        signin(bench, "ann", badge="B-1")
        report = plan(bench.config, "okta", RULES, workers=1)
        assert any("badge" in w and "record_redacted" in w for w in report.warnings)
        # The redacted field's change is shown redacted.
        edited = RULES.replace("first(@badge)", '"B-2"')
        (ann,) = plan(bench.config, "okta", edited, workers=1).accounts
        assert ann.changes == {"employee_id": ["***", "***"]}
    finally:
        bench.close()


def test_worker_processes_give_the_same_plan(bench: Bench, monkeypatch: pytest.MonkeyPatch) -> None:
    for n in range(30):
        signin(bench, f"u{n:02}", dept="Sales" if n % 3 else "Eng", groups=["all"])
    edited = RULES.replace("groups       = @groups", 'groups = @groups\ngroups += "x"')
    alone = plan(bench.config, "okta", edited, workers=1)
    monkeypatch.setattr(plan_module, "IN_PROCESS", 10)
    monkeypatch.setattr(plan_module, "CHUNK", 7)
    seen: list[tuple[int, int]] = []
    spread = plan(
        bench.config, "okta", edited, workers=2, progress=lambda d, t: seen.append((d, t))
    )
    assert spread.counts == alone.counts == {"change": 30, "deny": 0, "same": 0}
    assert [a.to_json() for a in spread.accounts] == [a.to_json() for a in alone.accounts]
    assert seen[-1] == (30, 30)


# -- the command ------------------------------------------------------------------------


def test_plan_command_exit_codes_and_json(
    bench: Bench, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    population(bench)
    config = str(bench.config.path)
    assert cli(["plan", "-c", "okta", "--config", config]) == 0
    out = capsys.readouterr().out
    assert "would change: 0   would be denied: 0   unchanged: 4" in out
    edited = tmp_path / "edited.rules"
    edited.write_text(RULES.replace('"contractor" in @type', '"Eng" in @dept'))
    assert cli(["plan", "-c", "okta", "--rules", str(edited), "--config", config, "--json"]) == 2
    data = json.loads(capsys.readouterr().out)
    assert data["summary"]["deny"] == 2 and data["summary"]["change"] == 1
    assert {a["username"] for a in data["accounts"] if a["verdict"] == "deny"} == {"ann", "cy"}
    assert set(data["accounts"][0]) >= {"subject", "username", "verdict", "outcome", "changes"}
    broken = tmp_path / "broken.rules"
    broken.write_text("username = \n")
    assert cli(["plan", "-c", "okta", "--rules", str(broken), "--config", config]) == 1
    assert "broken.rules" in capsys.readouterr().err
    assert cli(["plan", "-c", "okta", "--since", "yesterday", "--config", config]) == 1
    assert "--since" in capsys.readouterr().err


# -- differential: the plan equals real sign-ins ----------------------------------------

knobs = st.fixed_dictionaries(
    {
        "deny": st.sampled_from([None, "contractor", "x"]),
        "email": st.sampled_from(["lower(first(@mail))", "first(@mail)"]),
        "dept": st.sampled_from(["first(@dept)", "lower(first(@dept))", '"fixed"', "null"]),
        "dept_op": st.sampled_from(["=", ":=", "?="]),
        "groups_op": st.sampled_from(["=", "+=", ":="]),
        "extra": st.sampled_from([None, '"staff"', "lower(first(@dept))"]),
        "drop": st.booleans(),
        "username": st.sampled_from(["first(@uid)", "email_local(lower(first(@mail)))"]),
    }
)


def rules_of(k: dict[str, Any]) -> str:
    lines = []
    if k["deny"]:
        lines.append(f'deny "no {k["deny"]}" when "{k["deny"]}" in @type')
    lines.append(f"username = {k['username']}")
    lines.append(f"email = {k['email']}")
    lines.append(f"department {k['dept_op']} {k['dept']}")
    lines.append(f"groups {k['groups_op']} @groups")
    if k["extra"]:
        lines.append(f"groups += {k['extra']}")
    if k["drop"]:
        lines.append("groups -= @drop")
    return "\n".join(lines) + "\n"


people = st.lists(
    st.tuples(
        st.sampled_from(["s1", "s2", "s3", "s4"]),
        st.fixed_dictionaries(
            {
                "uid": st.sampled_from(["ann", "bob", "Ann"]),
                "mail": st.sampled_from(["ann@x.org", "bob@x.org", "ANN@x.org", "cy@x.org"]),
            },
            optional={
                "dept": st.lists(st.sampled_from(["Eng", "Sales"]), min_size=1, max_size=1),
                "groups": st.lists(st.sampled_from(["a", "b", "Eng"]), max_size=2),
                "drop": st.lists(st.sampled_from(["a", "staff"]), max_size=1),
                "type": st.lists(st.sampled_from(["contractor", "x", "y"]), max_size=1),
            },
        ),
    ),
    min_size=1,
    max_size=6,
)


def copy_store(source: SqliteStore, target: Path) -> None:
    with sqlite3.connect(target) as copy:
        source.conn.backup(copy)


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(old=knobs, new=knobs, signins=people)
def test_the_plan_is_what_each_next_signin_would_do(
    tmp_path_factory: pytest.TempPathFactory,
    old: dict[str, Any],
    new: dict[str, Any],
    signins: list[tuple[str, dict[str, Any]]],
) -> None:
    root = tmp_path_factory.mktemp("plan")
    bench = bench_for(root, rules_of(old))
    latest: dict[str, bytes] = {}
    try:
        for minute, (subject, attributes) in enumerate(signins):
            token = sample(subject, **attributes)
            bench.apply(token, now=NOW + timedelta(minutes=minute))
            latest[subject] = token
        report = plan(bench.config, "okta", rules_of(new), workers=1)
        planned = {a.subject: a for a in report.accounts}
        recorded = {r.subject: r for r in bench.store.recorded("okta")}
        assert set(recorded) <= set(latest)
        assert report.recorded == len(recorded)
        config = load_config(bench.config.path)
        layout = layout_for(config)
        for n, (subject, row) in enumerate(sorted(recorded.items())):
            trial = root / f"trial-{n}.db"
            copy_store(bench.store, trial)
            store = SqliteStore(trial, layout)
            real = Provisioner(
                config,
                store=store,
                rules_loader=lambda conn, cfg: rules_from_source(conn, cfg, rules_of(new)),
            )
            try:
                result = real.apply(
                    "okta", latest[subject], now=NOW + timedelta(days=1), allow_samples=True
                )
            finally:
                real.close()
            if subject in planned:
                account = planned[subject]
                assert (account.outcome, account.changes) == (
                    result.outcome,
                    result.redacted_changes(),
                ), subject
                assert account.message == (result.message if result.outcome == "denied" else None)
            else:
                assert result.outcome == "unchanged" or (
                    result.outcome == "denied" and row.outcome == "denied"
                ), (subject, result.outcome, result.message)
    finally:
        bench.close()


def test_since_takes_ages_and_dates_and_never_overflows() -> None:
    from datetime import UTC, datetime

    from engine.moments import EARLIEST, since

    now = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
    assert since("90d", now) == datetime(2026, 9, 8, 12, 0, tzinfo=UTC)
    assert since("12h", now) == datetime(2026, 12, 7, 0, 0, tzinfo=UTC)
    assert since("2w", now) == datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
    assert since("2026-11-01", now) == datetime(2026, 11, 1, tzinfo=UTC)
    assert since("2026-11-01T08:00:00+02:00", now) == datetime(2026, 11, 1, 6, tzinfo=UTC)
    assert since("999999w", now) == EARLIEST  # before year 1: the earliest moment
    with pytest.raises(ValueError, match="expected an age such as 90d"):
        since("yesterday", now)
