"""Case-insensitive means NFC, then `str.lower` — never `str.casefold` (product.md §1,
issue 11): `admin@strasse.de` is not `admin@straße.de`, `ſ` is not `s`, `ﬁ` is not `fi`;
`JDoe@Example.com` is `jdoe@example.com`, and `é` is one key however it is encoded.
A store written when keys were casefolded is re-keyed once when it is opened."""

from __future__ import annotations

import logging
import sys
import unicodedata
from collections.abc import Iterator
from pathlib import Path

import pytest

if str(Path(__file__).parent) not in sys.path:  # tests/engine is not an importable package
    sys.path.insert(0, str(Path(__file__).parent))
from provision_fixtures import EMAIL, NOW, Bench, person, sample, workspace

from engine.store.values import fold
from engine.token import Token

# Every test here that takes `bench` or `store_backend` runs against SQLite and PostgreSQL.

NFC_JOSE = unicodedata.normalize("NFC", "José")
NFD_JOSE = unicodedata.normalize("NFD", "José")
assert NFC_JOSE != NFD_JOSE

RULES = "username = first(@uid)\nemail = first(@email)\n"


@pytest.fixture
def bench(tmp_path: Path, store_backend: str) -> Iterator[Bench]:
    """okta (SAML, link_by email) and google (OIDC, link_by email)."""
    connections = {
        "okta": {"link_by": "email"},
        "google": {"protocol": "oidc", "link_by": "email"},
    }
    b = Bench(workspace(tmp_path, {"okta": RULES, "google": RULES}, connections=connections))
    yield b
    b.close()


def oidc(bench: Bench, uid: str, email: str, *, sub: str = "g-1") -> Token:
    conn = bench.config.connection("google")
    return Token(
        kind="oidc",
        name_id=sub,
        name_id_format=None,
        issuer=conn.issuer,
        authn_context=None,
        attributes={"uid": [uid], "email": [email]},
        token_id=None,
        expires_at=None,
        email_verified=True,
    )


def apply_oidc(bench: Bench, uid: str, email: str, *, sub: str = "g-1") -> str:
    conn = bench.config.connection("google")
    result = bench.provisioner.apply_token(conn, oidc(bench, uid, email, sub=sub), now=NOW)
    return result.outcome


# -- the fold itself ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("one", "other", "same"),
    [
        ("JDoe@Example.com", "jdoe@example.com", True),
        ("admin@straße.de", "admin@strasse.de", False),
        ("ADMIN@STRASSE.DE", "admin@straße.de", False),
        ("ſam", "sam", False),  # long s
        ("ﬁona", "fiona", False),  # the fi ligature
        ("STRAẞE", "strasse", False),  # capital sharp s is not "ss"
        ("STRAẞE", "straße", True),  # ... it lower-cases to ß
        (NFD_JOSE, NFC_JOSE, True),  # é as e + U+0301 and as U+00E9
        ("ΣΊΣΥΦΟΣ", "σίσυφος", True),  # str.lower knows the final sigma
        ("σίσυφος", "σίσυφοσ", False),  # ... and keeps ς apart from σ
    ],
)
def test_fold_is_nfc_then_lower_never_casefold(one: str, other: str, same: bool) -> None:
    assert (fold(one) == fold(other)) is same
    assert fold(one) == unicodedata.normalize("NFC", one).lower()


# -- link_by, usernames and emailAddress NameIDs, on both stores --------------------


def test_oidc_link_by_verified_strasse_does_not_reach_the_strasse_sharp_s_account(
    bench: Bench,
) -> None:
    assert bench.apply(person("admin", email="admin@straße.de")).outcome == "created"
    outcome = apply_oidc(bench, "intruder", "admin@strasse.de")
    assert outcome == "created"  # a new account, never the other person's
    owner = bench.user("admin")
    assert owner is not None and owner.links == [("okta", "admin-subject")]
    assert len(bench.store.users()) == 2


def test_oidc_link_by_still_links_the_same_address_in_other_capitals(bench: Bench) -> None:
    assert bench.apply(person("jdoe", email="JDoe@Example.com")).outcome == "created"
    assert apply_oidc(bench, "jdoe", "jdoe@example.com") == "linked"
    assert len(bench.store.users()) == 1


def test_email_nameid_in_capitals_does_not_find_the_strasse_sharp_s_link(bench: Bench) -> None:
    first = bench.apply(sample("admin@straße.de", subject_format=EMAIL, uid="a1", email="x@a"))
    assert first.outcome == "created"
    other = bench.apply(sample("ADMIN@STRASSE.DE", subject_format=EMAIL, uid="a2", email="y@a"))
    assert other.outcome == "created"
    assert len(bench.store.users()) == 2
    again = bench.apply(sample("ADMIN@STRAßE.DE", subject_format=EMAIL, uid="a1", email="x@a"))
    assert again.outcome == "unchanged"  # the same address in other capitals


@pytest.mark.parametrize(
    ("stored", "incoming"),
    [("ſam", "sam"), ("ﬁona", "fiona"), ("STRAẞE", "strasse"), ("Straße", "STRASSE")],
)
def test_distinct_letters_are_distinct_usernames_and_link_by_values(
    bench: Bench, stored: str, incoming: str
) -> None:
    assert bench.apply(person(stored, email=f"{stored}@example.com")).outcome == "created"
    taken = bench.apply(person(incoming, email=f"{incoming}@example.com", subject="s2"))
    assert taken.outcome == "created", taken.message  # neither username nor email clash
    assert len(bench.store.users()) == 2


@pytest.mark.parametrize(
    ("stored", "incoming"),
    [("JDoe", "jdoe"), ("STRAẞE", "straße"), (NFD_JOSE, NFC_JOSE), (NFC_JOSE, NFD_JOSE.upper())],
)
def test_same_text_in_other_capitals_or_encodings_is_one_username_and_one_email(
    bench: Bench, stored: str, incoming: str
) -> None:
    assert bench.apply(person(stored, email=f"{stored}@example.com")).outcome == "created"
    clash = bench.apply(person(incoming, email=f"other-{incoming}@example.com", subject="s2"))
    assert clash.outcome == "denied"
    assert clash.message == f'username "{incoming}" is already taken by another account'
    found = bench.apply(person("new", email=f"{incoming}@example.com", subject="s3"))
    assert found.outcome == "denied" and "is already linked" in (found.message or "")
    assert len(bench.store.users()) == 1
    assert bench.user(incoming) is not None


def test_search_does_not_merge_distinct_letters(bench: Bench) -> None:
    bench.apply(person("Straße"))
    assert bench.store.search_users("strasse", limit=10)[1] == 0
    assert bench.store.search_users("STRASSE", limit=10)[1] == 0
    assert bench.store.search_users("straße", limit=10)[1] == 1


def test_sqlite_search_is_nfc_and_lower(tmp_path: Path) -> None:
    bench = Bench(workspace(tmp_path, RULES))
    bench.apply(person(NFD_JOSE))
    bench.apply(person("STRAẞE"))
    assert bench.store.search_users("josé", limit=10)[1] == 1
    assert bench.store.search_users("straße", limit=10)[1] == 1
    bench.close()


# -- re-keying a store written with casefolded keys -------------------------------


def _old_store(bench: Bench) -> None:
    """Turn the bench's store into one as the casefold code left it: no record of how its
    keys were computed, and hand-written rows with casefolded keys."""
    bench.execute("DROP TABLE IF EXISTS store_meta")
    users = [
        (1, "Straße", "strasse", "Admin@Straße.de", "admin@strasse.de"),
        (2, "ﬁona", "fiona", "ﬁona@example.com", "fiona@example.com"),
        (3, "JDoe", "jdoe", "JDoe@Example.com", "jdoe@example.com"),
    ]
    for user_id, username, username_key, email, email_key in users:
        bench.execute(
            "INSERT INTO users (id, username, username_key, email, email_key, created_at,"
            f" updated_at) VALUES ({user_id}, '{username}', '{username_key}', '{email}',"
            f" '{email_key}', '2024-01-01T00:00:00Z', '2024-01-01T00:00:00Z')"
        )
    links = [
        ("okta", "Admin@Straße.de", "admin@strasse.de", 1),  # an emailAddress NameID
        ("okta", "AbC-persistent", "AbC-persistent", 2),  # compared exactly
        ("okta", "JDoe@Example.com", "jdoe@example.com", 3),
    ]
    for connection, subject, key, user_id in links:
        bench.execute(
            "INSERT INTO identity_links (connection, subject, subject_key, user_id, created_at,"
            f" last_seen_at) VALUES ('{connection}', '{subject}', '{key}', {user_id},"
            " '2024-01-01T00:00:00Z', '2024-01-01T00:00:00Z')"
        )
    if bench.postgres:  # ids were given by hand: move the identity past them
        bench.execute("SELECT setval(pg_get_serial_sequence('users', 'id'), 10)")


def test_a_store_with_casefolded_keys_is_re_keyed_once_when_opened(
    tmp_path: Path, store_backend: str
) -> None:
    config = workspace(tmp_path, RULES, connections={"okta": {"link_by": "email"}})
    bench = Bench(config)
    assert bench.store is not None  # opening it creates the tables
    _old_store(bench)
    bench.close()

    bench = Bench(config)
    keys = bench.rows("SELECT id, username_key, email_key FROM users ORDER BY id")
    assert keys == [
        (1, "straße", "admin@straße.de"),
        (2, "ﬁona", "ﬁona@example.com"),
        (3, "jdoe", "jdoe@example.com"),
    ]
    links = bench.rows("SELECT subject, subject_key FROM identity_links ORDER BY user_id")
    assert links == [
        ("Admin@Straße.de", "admin@straße.de"),
        ("AbC-persistent", "AbC-persistent"),
        ("JDoe@Example.com", "jdoe@example.com"),
    ]
    meta = bench.rows("SELECT name, value FROM store_meta WHERE name LIKE 'fold:%%' ORDER BY name")
    assert meta == [
        ("fold:identity_links.subject_key", "nfc-lower"),
        ("fold:users.email_key", "nfc-lower"),
        ("fold:users.username_key", "nfc-lower"),
    ]
    # The re-keyed store behaves as the spec says.
    strasse = bench.apply(person("strasse", email="admin@strasse.de", subject="s-new"))
    assert strasse.outcome == "created"
    fiona = bench.apply(person("fiona", email="fiona@example.com", subject="f-new"))
    assert fiona.outcome == "created"
    found = bench.apply(sample("ADMIN@STRAßE.DE", subject_format=EMAIL, uid="Straße"))
    assert found.outcome in ("unchanged", "updated") and found.user_id == 1
    # Once: a key changed by hand afterwards is not computed again at the next open.
    bench.execute("UPDATE users SET email_key = 'left-alone' WHERE id = 3")
    bench.close()
    bench = Bench(config)
    assert bench.rows("SELECT email_key FROM users WHERE id = 3") == [("left-alone",)]
    bench.close()


def test_re_keying_keeps_both_accounts_that_now_share_a_username(
    tmp_path: Path, store_backend: str, caplog: pytest.LogCaptureFixture
) -> None:
    config = workspace(tmp_path, RULES)
    bench = Bench(config)
    assert bench.store is not None
    bench.execute("DROP TABLE IF EXISTS store_meta")
    for user_id, name in ((1, NFD_JOSE), (2, NFC_JOSE)):  # two keys under casefold
        bench.execute(
            "INSERT INTO users (id, username, username_key, created_at, updated_at) VALUES"
            f" ({user_id}, '{name}', '{name.casefold()}', '2024-01-01', '2024-01-01')"
        )
    links = [  # two emailAddress NameIDs, the same address once keys are NFC; a persistent one
        (NFD_JOSE + "@example.com", (NFD_JOSE + "@example.com").casefold(), 1),
        (NFC_JOSE + "@Example.com", (NFC_JOSE + "@Example.com").casefold(), 2),
        ("p-1", "p-1", 1),
    ]
    for subject, key, user_id in links:
        bench.execute(
            "INSERT INTO identity_links (connection, subject, subject_key, user_id, created_at,"
            f" last_seen_at) VALUES ('okta', '{subject}', '{key}', {user_id},"
            " '2024-01-01', '2024-01-01')"
        )
    if bench.postgres:
        bench.execute("SELECT setval(pg_get_serial_sequence('users', 'id'), 10)")
    bench.close()

    with caplog.at_level(logging.WARNING, logger="jitprov.store"):
        bench = Bench(config)
        users = bench.rows("SELECT id, username, username_key FROM users ORDER BY id")
    assert users == [(1, NFD_JOSE, None), (2, NFC_JOSE, fold(NFC_JOSE))]  # 2 had it already
    keys = bench.rows("SELECT subject_key FROM identity_links ORDER BY user_id, subject")
    assert keys == [
        ((NFD_JOSE + "@example.com").casefold(),),  # kept: the new key is taken
        ("p-1",),
        (fold(NFC_JOSE + "@example.com"),),
    ]
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "accounts 1 (" in logged and "account 2 keeps it" in logged
    assert "keeps its old key" in logged
    # Nothing is lost: account 1 still signs in through its other link; the address, one
    # address now, finds the account that kept its key; the username stays taken.
    assert bench.apply(person(NFD_JOSE, subject="p-1")).user_id == 1
    by_email = bench.apply(sample(NFD_JOSE + "@example.com", subject_format=EMAIL, uid=NFC_JOSE))
    assert by_email.user_id == 2
    assert len(bench.store.users()) == 2
    clash = bench.apply(person(NFD_JOSE.upper(), subject="someone-else"))
    assert clash.outcome == "denied" and "already taken" in (clash.message or "")
    bench.close()
