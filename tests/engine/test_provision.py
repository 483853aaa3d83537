"""The pipeline, outcome by outcome (product.md §2 steps 3–8), on unsigned samples."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from engine.store import LOCAL_SOURCE

if str(Path(__file__).parent) not in sys.path:  # tests/engine is not an importable package
    sys.path.insert(0, str(Path(__file__).parent))
from provision_fixtures import (
    EMAIL,
    NOW,
    TRANSIENT,
    Bench,
    person,
    sample,
    workspace,
)

# Every test here runs against SQLite and against PostgreSQL (tests/engine/conftest.py).
pytestmark = pytest.mark.usefixtures("store_backend")


@pytest.fixture
def bench(tmp_path: Path) -> Iterator[Bench]:
    b = Bench(workspace(tmp_path))
    yield b
    b.close()


def make(tmp_path: Path, rules: str | dict[str, str] | None = None, **kw: object) -> Bench:
    args = {} if rules is None else {"rules": rules}
    return Bench(workspace(tmp_path, **args, **kw))  # type: ignore[arg-type]


# -- created / updated / unchanged ------------------------------------------------


def test_created_writes_account_sets_link_and_audit(bench: Bench) -> None:
    result = bench.apply(person("jdoe", groups=["eng", "all"], department="Sales"))
    assert result.outcome == "created"
    assert result.sso == "continue"
    assert result.changes == {
        "username": [None, "jdoe"],
        "email": [None, "jdoe@example.com"],
        "department": [None, "Sales"],
        "groups": {"added": ["all", "eng"], "removed": []},
    }
    user = bench.user("JDOE")
    assert user is not None and user.fields["department"] == "Sales"
    assert user.members["groups"] == {("all", "okta"), ("eng", "okta")}
    assert user.links == [("okta", "jdoe-subject")]
    assert result.user is not None and result.user["id"] == user.id
    assert result.user["links"] == [{"connection": "okta", "subject": "jdoe-subject"}]
    [row] = bench.store.audit()
    assert (row.outcome, row.user_id, row.subject) == ("created", user.id, "jdoe-subject")
    assert row.rules_sha256 and len(row.rules_sha256) == 64


def test_updated_only_when_a_row_changes_else_unchanged(bench: Bench) -> None:
    bench.apply(person("jdoe", groups=["eng"], department="Sales"))
    updated = bench.apply(person("jdoe", groups=["eng", "ops"], department="R&D"))
    assert updated.outcome == "updated"
    assert updated.changes == {
        "department": ["Sales", "R&D"],
        "groups": {"added": ["ops"], "removed": []},
    }
    again = bench.apply(person("jdoe", groups=["eng", "ops"], department="R&D"))
    assert again.outcome == "unchanged"
    assert again.changes == {}
    assert [r.outcome for r in bench.store.audit()] == ["unchanged", "updated", "created"]


def test_unchanged_touches_only_last_seen_at(tmp_path: Path) -> None:
    bench = make(tmp_path)
    bench.apply(person("jdoe"))
    before = bench.rows("SELECT * FROM users")
    later = NOW + timedelta(hours=1)
    assert bench.apply(person("jdoe"), now=later).outcome == "unchanged"
    assert bench.rows("SELECT * FROM users") == before
    [(seen,)] = bench.rows("SELECT last_seen_at FROM identity_links")
    assert seen == "2025-05-01T13:00:00Z"


def test_a_sign_in_touches_its_own_link_only(tmp_path: Path) -> None:
    bench = make(tmp_path)
    bench.apply(person("ann"))
    # a second link for ann: link row ids no longer match user ids (SQLite touches by row id)
    bench.execute(
        "INSERT INTO identity_links (connection, subject, subject_key, user_id, created_at,"
        " last_seen_at) VALUES ('other', 'a', 'a', 1, 'then', 'then')"
    )
    bench.apply(person("bob"))
    assert bench.apply(person("bob"), now=NOW + timedelta(hours=1)).outcome == "unchanged"
    seen = dict(bench.rows("SELECT subject, last_seen_at FROM identity_links"))
    assert seen == {
        "ann-subject": "2025-05-01T12:00:00Z",
        "a": "then",
        "bob-subject": "2025-05-01T13:00:00Z",
    }


def test_null_leaves_stored_values_alone(bench: Bench) -> None:
    bench.apply(person("jdoe", department="Sales", name="J. Doe"))
    result = bench.apply(person("jdoe"))  # no department, no name attribute: null
    assert result.outcome == "unchanged"
    user = bench.user("jdoe")
    assert user is not None
    assert user.fields["department"] == "Sales"
    assert user.fields["display_name"] == "J. Doe"


def test_sync_assignment_and_clear_empty_fields(tmp_path: Path) -> None:
    rules = "username = first(@uid)\ndepartment := first(@department)\n"
    rules += 'rule "strip" when "yes" in @strip { clear groups }\ngroups += @groups\n'
    bench = make(tmp_path, rules)
    bench.apply(person("jdoe", department="Sales", groups=["a"]))
    result = bench.apply(person("jdoe", strip="yes"))
    assert result.changes["department"] == ["Sales", None]
    user = bench.user("jdoe")
    assert user is not None and user.fields["department"] is None
    assert user.members["groups"] == set()
    assert result.changes["groups"] == {"added": [], "removed": ["a"]}


def test_username_is_case_insensitive_and_rename_conflict_is_denied(tmp_path: Path) -> None:
    bench = make(tmp_path)
    bench.apply(person("jdoe"))
    clash = bench.apply(person("JDoe", subject="other-subject"))
    assert clash.outcome == "denied"
    assert clash.message == 'username "JDoe" is already taken by another account'
    assert clash.user is None and clash.sso == "stop"
    bench.apply(person("ann"))
    rename = bench.apply(person("ANN", subject="jdoe-subject"))
    assert rename.outcome == "denied" and '"ANN"' in (rename.message or "")
    self_rename = bench.apply(person("JDOE", subject="jdoe-subject"))
    assert self_rename.outcome == "updated"
    assert self_rename.changes["username"] == ["jdoe", "JDOE"]
    assert len(bench.store.users()) == 2


def test_missing_username_on_creation_is_denied(tmp_path: Path) -> None:
    bench = make(tmp_path, "username = first(@uid)\n")
    result = bench.apply(sample("nobody", email="x@example.com"))
    assert result.outcome == "denied"
    assert "no rule produced a value for username" in (result.message or "")
    assert bench.store.users() == []
    assert [r.outcome for r in bench.store.audit()] == ["denied"]


def test_deny_rule_writes_audit_and_replay_entry_but_no_account(tmp_path: Path) -> None:
    rules = 'deny "contractors are not provisioned" when "contractor" in @type\n'
    rules += "username = first(@uid)\n"
    bench = make(tmp_path, rules)
    result = bench.apply(person("c1", type="contractor", token_id="t-1"))
    assert result.outcome == "denied"
    assert result.message == "contractors are not provisioned"
    assert bench.store.users() == []
    assert bench.rows("SELECT token_id FROM seen_tokens") == [("t-1",)]
    [row] = bench.store.audit()
    assert (row.outcome, row.message) == ("denied", "contractors are not provisioned")


# -- replay, rejected, dry run ----------------------------------------------------


def test_replay_of_a_sample_token_id_is_rejected(bench: Bench) -> None:
    assert bench.apply(person("jdoe", token_id="abc")).outcome == "created"
    again = bench.apply(person("jdoe", token_id="abc"))
    assert (again.outcome, again.reason, again.sso) == ("rejected", "replay", "stop")
    assert again.user is None
    assert [r.outcome for r in bench.store.audit()] == ["rejected", "created"]
    assert bench.store.audit()[0].reason == "replay"


def test_replay_is_per_connection(tmp_path: Path) -> None:
    bench = make(tmp_path, connections={"okta": {}, "entra": {}})
    assert bench.apply(person("jdoe", token_id="abc")).outcome == "created"
    other = bench.apply(person("jdoe", token_id="abc"), "entra")
    assert other.reason is None  # not a replay: denied only because "jdoe" is taken
    assert other.outcome == "denied" and "already taken" in (other.message or "")
    assert bench.rows("SELECT count(*) FROM seen_tokens") == [(2,)]


def test_intake_rejection_is_audited_with_no_subject(bench: Bench) -> None:
    result = bench.provisioner.apply("okta", b"not a token at all")
    assert result.outcome == "rejected" and result.reason == "malformed"
    assert result.subject is None and result.sso == "stop"
    assert result.to_json()["user"] is None
    [row] = bench.store.audit()
    assert (row.outcome, row.reason, row.subject) == ("rejected", "malformed", None)
    assert bench.rows("SELECT count(*) FROM seen_tokens") == [(0,)]


def test_unsigned_sample_without_the_flag_is_rejected(bench: Bench) -> None:
    result = bench.provisioner.apply("okta", person("jdoe"))
    assert (result.outcome, result.reason) == ("rejected", "unsigned")


def test_dry_run_writes_nothing_and_returns_the_planned_user(bench: Bench) -> None:
    bench.apply(person("ann"))
    before = bench.snapshot(), bench.store.audit()
    result = bench.apply(person("jdoe", groups=["eng"], token_id="t9"), dry_run=True)
    assert result.outcome == "created"
    assert result.user is not None and result.user["id"] is None
    assert result.user["groups"] == ["eng"] and result.user["username"] == "jdoe"
    assert (bench.snapshot(), bench.store.audit()) == before
    update = bench.apply(person("ann", department="Ops"), dry_run=True)
    assert update.outcome == "updated" and update.changes == {"department": [None, "Ops"]}
    assert (bench.snapshot(), bench.store.audit()) == before
    assert bench.apply(person("jdoe", token_id="t9")).outcome == "created"


def test_dry_run_never_creates_a_missing_store(tmp_path: Path) -> None:
    bench = make(tmp_path)
    assert bench.apply(person("jdoe"), dry_run=True).outcome == "created"
    assert not (tmp_path / "jitprov.db").exists()


# -- subjects ---------------------------------------------------------------------


def test_email_nameid_compares_case_insensitively(bench: Bench) -> None:
    first = bench.apply(sample("JDoe@Example.com", subject_format=EMAIL, uid="jdoe"))
    again = bench.apply(sample("jdoe@example.COM", subject_format=EMAIL, uid="jdoe"))
    assert (first.outcome, again.outcome) == ("created", "unchanged")


def test_other_subjects_compare_exactly(bench: Bench) -> None:
    bench.apply(sample("AbC", uid="first"))
    other = bench.apply(sample("abc", uid="second"))
    assert other.outcome == "created"
    assert len(bench.store.users()) == 2


def test_subject_from_takes_the_attribute_and_denies_without_it(tmp_path: Path) -> None:
    bench = make(tmp_path, connections={"okta": {"subject_from": "employee"}})
    ok = bench.apply(person("jdoe", employee="E-42"))
    assert ok.outcome == "created" and ok.subject == "E-42"
    assert bench.rows("SELECT subject FROM identity_links") == [("E-42",)]
    missing = bench.apply(person("ann"))
    assert missing.outcome == "denied" and "employee" in (missing.message or "")


def test_transient_without_link_by_is_denied(bench: Bench) -> None:
    result = bench.apply(sample("_t1", subject_format=TRANSIENT, uid="jdoe"))
    assert result.outcome == "denied" and "transient" in (result.message or "")


def test_transient_finds_its_account_only_through_link_by(tmp_path: Path) -> None:
    bench = make(tmp_path, connections={"okta": {"link_by": "email"}})
    created = bench.apply(sample("_t1", subject_format=TRANSIENT, uid="jdoe", email="j@x.org"))
    assert created.outcome == "created"
    assert bench.rows("SELECT count(*) FROM identity_links") == [(0,)]
    again = bench.apply(sample("_t2", subject_format=TRANSIENT, uid="jdoe", email="j@x.org"))
    assert again.outcome == "unchanged"
    respelled = bench.apply(sample("_t4", subject_format=TRANSIENT, uid="jdoe", email="J@X.org"))
    assert respelled.outcome == "updated"  # found case-insensitively; the email is rewritten
    changed = bench.apply(
        sample("_t3", subject_format=TRANSIENT, uid="jdoe", email="j@x.org", groups="g")
    )
    assert changed.outcome == "updated"
    assert bench.rows("SELECT count(*) FROM identity_links") == [(0,)]
    assert len(bench.store.users()) == 1


# -- link_by ----------------------------------------------------------------------


def _with_accounts(tmp_path: Path, *emails: str, **conn: object) -> Bench:
    rules = {
        "okta": "username = first(@uid)\nemail = first(@email)\ngroups += @groups\n",
        "entra": "username = first(@uid)\nemail = first(@email)\ngroups = @groups\n",
    }
    bench = Bench(
        workspace(tmp_path, rules, connections={"okta": {}, "entra": {"link_by": "email", **conn}})
    )
    for n, email in enumerate(emails):
        assert bench.apply(person(f"user{n}", email=email)).outcome == "created"
    return bench


def test_link_by_links_a_first_login_to_the_existing_account(tmp_path: Path) -> None:
    bench = _with_accounts(tmp_path, "JDoe@Example.com")
    result = bench.apply(person("ignored", email="jdoe@example.com", groups=["x"]), "entra")
    assert result.outcome == "linked"
    user = bench.user("ignored")  # the re-evaluation as an update renamed the account
    assert user is not None
    assert user.links == [("entra", "ignored-subject"), ("okta", "user0-subject")]
    assert result.changes["username"] == ["user0", "ignored"]
    assert len(bench.store.users()) == 1
    later = bench.apply(person("ignored", email="jdoe@example.com", groups=["x"]), "entra")
    assert later.outcome == "unchanged"


def test_link_by_two_accounts_with_the_same_value_is_denied(tmp_path: Path) -> None:
    bench = _with_accounts(tmp_path, "same@example.com", "SAME@example.com")
    result = bench.apply(person("new", email="Same@Example.com"), "entra")
    assert result.outcome == "denied"
    assert result.message is not None
    assert result.message.startswith("several accounts have email Same@Example.com")
    assert bench.rows("SELECT connection FROM identity_links ORDER BY 1") == [
        ("okta",),
        ("okta",),
    ]


def test_link_by_refuses_an_account_already_linked_for_this_connection(tmp_path: Path) -> None:
    bench = _with_accounts(tmp_path, "a@example.com")
    assert bench.apply(person("a2", email="a@example.com"), "entra").outcome == "linked"
    other = bench.apply(person("a3", email="a@example.com", subject="other"), "entra")
    assert other.outcome == "denied" and "already linked" in (other.message or "")


def test_link_by_none_found_continues_as_a_creation(tmp_path: Path) -> None:
    bench = _with_accounts(tmp_path, "a@example.com")
    assert bench.apply(person("b", email="b@example.com"), "entra").outcome == "created"


def test_link_by_deny_on_reevaluation(tmp_path: Path) -> None:
    rules = {
        "okta": "username = first(@uid)\nemail = first(@email)\n",
        "entra": 'deny "no relinking" when user.username == "user0"\n'
        "username = first(@uid)\nemail = first(@email)\n",
    }
    bench = Bench(
        workspace(tmp_path, rules, connections={"okta": {}, "entra": {"link_by": "email"}})
    )
    bench.apply(person("user0", email="a@example.com"))
    result = bench.apply(person("x", email="a@example.com"), "entra")
    assert (result.outcome, result.message) == ("denied", "no relinking")


# -- modes ------------------------------------------------------------------------


def test_update_only_without_an_account_is_denied(tmp_path: Path) -> None:
    bench = make(tmp_path, connections={"okta": {"mode": "update-only"}})
    result = bench.apply(person("jdoe"))
    assert result.outcome == "denied" and "no account to update" in (result.message or "")


def test_create_only_never_modifies_an_existing_account(tmp_path: Path) -> None:
    bench = make(tmp_path, connections={"okta": {"mode": "create-only"}})
    assert bench.apply(person("jdoe", department="Sales")).outcome == "created"
    result = bench.apply(person("jdoe", department="Ops", groups=["new"]))
    assert result.outcome == "unchanged" and result.changes == {}
    user = bench.user("jdoe")
    assert user is not None and user.fields["department"] == "Sales"


def test_create_only_links_without_modifying(tmp_path: Path) -> None:
    bench = _with_accounts(tmp_path, "a@example.com", mode="create-only")
    result = bench.apply(person("zz", email="a@example.com", groups=["g"]), "entra")
    assert result.outcome == "linked" and result.changes == {}
    user = bench.user("user0")
    assert user is not None and user.members["groups"] == set()


# -- sets and sources -------------------------------------------------------------


def test_full_sync_keeps_other_connections_and_local_members(tmp_path: Path) -> None:
    rules = {
        "okta": "username = first(@uid)\ngroups = @groups\n",
        "entra": "username = first(@uid)\ngroups += @groups\n",
    }
    bench = Bench(
        workspace(
            tmp_path,
            rules,
            connections={"okta": {}, "entra": {"subject_from": "uid", "mode": "update-only"}},
        )
    )
    bench.apply(person("jdoe", groups=["a", "b"]))
    user = bench.user("jdoe")
    assert user is not None
    bench.store.add_members(user.id, "groups", [("manual", LOCAL_SOURCE), ("a", LOCAL_SOURCE)])
    bench.store.atomic(lambda t: t.write_link("entra", "jdoe", "jdoe", user.id, NOW))
    assert bench.apply(person("jdoe", groups=["e"]), "entra").outcome == "updated"
    result = bench.apply(person("jdoe", groups=["c"]))  # okta full sync
    assert result.changes["groups"] == {"added": ["c"], "removed": ["b"]}  # "a" is still local
    user = bench.user("jdoe")
    assert user is not None
    assert user.members["groups"] == {
        ("c", "okta"),
        ("a", LOCAL_SOURCE),
        ("manual", LOCAL_SOURCE),
        ("e", "entra"),
    }
    assert user.distinct("groups") == ["a", "c", "e", "manual"]


def test_remove_drops_a_value_whatever_its_source(tmp_path: Path) -> None:
    bench = make(tmp_path, "username = first(@uid)\ngroups -= @drop\ngroups += @groups\n")
    bench.apply(person("jdoe", groups=["a"]))
    user = bench.user("jdoe")
    assert user is not None
    bench.store.add_members(user.id, "groups", [("a", LOCAL_SOURCE), ("b", LOCAL_SOURCE)])
    result = bench.apply(person("jdoe", drop=["a"]))
    assert result.changes == {"groups": {"added": [], "removed": ["a"]}}
    user = bench.user("jdoe")
    assert user is not None and user.members["groups"] == {("b", LOCAL_SOURCE)}


def test_a_new_source_row_for_a_held_value_is_an_update_without_a_reported_change(
    tmp_path: Path,
) -> None:
    bench = make(tmp_path, "username = first(@uid)\ngroups += @groups\n")
    bench.apply(person("jdoe"))
    user = bench.user("jdoe")
    assert user is not None
    bench.store.add_members(user.id, "groups", [("a", LOCAL_SOURCE)])
    result = bench.apply(person("jdoe", groups=["a"]))
    assert (result.outcome, result.changes) == ("updated", {})


def test_rules_see_distinct_set_values(tmp_path: Path) -> None:
    rules = (
        'username = first(@uid)\nrule "dup" when count(user.groups) == 1 { department = "one" }\n'
    )
    bench = make(tmp_path, rules)
    bench.apply(person("jdoe"))
    user = bench.user("jdoe")
    assert user is not None
    bench.store.add_members(user.id, "groups", [("a", LOCAL_SOURCE), ("a", "okta")])
    assert bench.apply(person("jdoe")).changes == {"department": [None, "one"]}


def test_oidc_link_by_email_needs_email_verified_true(tmp_path: Path) -> None:
    from engine.token import Token

    rules = {
        "okta": "username = first(@uid)\nemail = first(@email)\n",
        "google": "username = first(@uid)\nemail = first(@email)\n",
    }
    bench = Bench(
        workspace(
            tmp_path,
            rules,
            connections={"okta": {}, "google": {"protocol": "oidc", "link_by": "email"}},
        )
    )
    bench.apply(person("ann", email="Ann@Example.com"))
    conn = bench.config.connection("google")

    def oidc(verified: bool) -> Token:
        attributes = {"uid": ["ann2"], "email": ["ann@example.com"]}
        return Token("oidc", "g-123", None, conn.issuer, None, attributes, None, None, verified)

    refused = bench.provisioner.apply_token(conn, oidc(False), now=NOW)
    assert refused.outcome == "denied" and "email_verified" in (refused.message or "")
    linked = bench.provisioner.apply_token(conn, oidc(True), now=NOW)
    assert linked.outcome == "linked"
    assert linked.user is not None and linked.user["links"] == [
        {"connection": "google", "subject": "g-123"},
        {"connection": "okta", "subject": "ann-subject"},
    ]


def test_an_oidc_token_id_expires_for_replay(tmp_path: Path) -> None:
    from engine.token import Token

    bench = make(tmp_path)
    conn = bench.config.connection("okta")
    token = Token(
        "oidc",
        "sub-1",
        None,
        conn.issuer,
        None,
        {"uid": ["x"]},
        "jti-1",
        NOW + timedelta(minutes=5),
    )
    assert bench.provisioner.apply_token(conn, token, now=NOW).outcome == "created"
    again = bench.provisioner.apply_token(conn, token, now=NOW + timedelta(minutes=1))
    assert again.reason == "replay"
    later = bench.provisioner.apply_token(conn, token, now=NOW + timedelta(minutes=6))
    assert later.outcome == "unchanged"


def test_a_dry_run_before_the_first_write_does_not_keep_writes_in_memory(tmp_path: Path) -> None:
    bench = make(tmp_path)
    assert bench.apply(person("jdoe"), dry_run=True).outcome == "created"
    assert bench.apply(person("jdoe")).outcome == "created"
    assert bench.postgres or (tmp_path / "jitprov.db").exists()
    assert bench.apply(person("jdoe"), dry_run=True).outcome == "unchanged"
