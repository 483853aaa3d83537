"""The workspace config loader: every key validated, errors name file, key and expectation."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from engine.config import ConfigError, find_config, load_config

BASE = """
[store]
path = "jitprov.db"

[store.fields]
department = "text"
entitlements = "set"

[connections.okta]
protocol = "saml2"
issuer = "http://www.okta.com/exk1abc"
certificate = "certs/okta.pem"
audience = "https://sp.example.com/saml"
rules = "rules/okta.rules"
"""

SAML_DATA = Path(__file__).resolve().parent / "data" / "saml"


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    (tmp_path / "certs").mkdir()
    # Real files of their kind: the loader checks what each holds.
    shutil.copyfile(SAML_DATA / "idp.crt", tmp_path / "certs" / "okta.pem")
    (tmp_path / "certs" / "jwks.json").write_text('{"keys": []}')
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "okta.rules").write_text("username = subject\n")
    return tmp_path


def write(ws: Path, text: str) -> Path:
    path = ws / "jitprov.toml"
    path.write_text(text)
    return path


def error_of(ws: Path, text: str) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(write(ws, text))
    return str(info.value)


def test_valid_config_resolves_paths_and_defaults(workspace: Path) -> None:
    config = load_config(write(workspace, BASE))
    okta = config.connection("okta")
    assert okta.certificates == ((workspace / "certs" / "okta.pem").resolve(),)
    assert okta.rules == (workspace / "rules" / "okta.rules").resolve()
    assert okta.clock_skew == 120
    assert okta.require_signed == "either"  # product.md §1: either is the default
    assert okta.mode == "create-and-update"
    assert okta.max_token_bytes == 1_048_576
    assert config.store.path == (workspace / "jitprov.db").resolve()
    assert config.fields["department"] == "text"
    assert config.fields["groups"] == "set"
    assert config.extra_fields == {"department": "text", "entitlements": "set"}


def test_wrong_choice_names_file_key_and_expectation(workspace: Path) -> None:
    message = error_of(workspace, BASE + 'mode = "create"\n')
    assert message == (
        "jitprov.toml: connections.okta.mode: expected one of create-and-update, "
        'create-only, update-only, got "create"'
    )


def test_unknown_key_is_an_error_with_a_suggestion(workspace: Path) -> None:
    message = error_of(workspace, BASE + "clock_skwe = 30\n")
    assert message.startswith("jitprov.toml: connections.okta.clock_skwe: unknown key")
    assert "did you mean 'clock_skew'" in message


@pytest.mark.parametrize(
    ("addition", "key", "expected"),
    [
        ("clock_skew = true\n", "connections.okta.clock_skew", "expected a whole number, got true"),
        ("clock_skew = -5\n", "connections.okta.clock_skew", "expected a positive whole number"),
        (
            'allow_sha1 = "yes"\n',
            "connections.okta.allow_sha1",
            'expected true or false, got "yes"',
        ),
        ('require_signed = "neither"\n', "connections.okta.require_signed", "expected one of"),
        (
            'decryption_key = "certs/missing.key"\n',
            "connections.okta.decryption_key",
            "file not found",
        ),
        ('jwks = "certs/jwks.json"\n', "connections.okta.jwks", 'only for protocol = "oidc"'),
        ('link_by = "groups"\n', "connections.okta.link_by", "expected a single-valued field"),
        ('link_by = "nickname"\n', "connections.okta.link_by", 'unknown field "nickname"'),
        ('attributes = "email"\n', "connections.okta.attributes", "expected a list of strings"),
    ],
)
def test_bad_values(workspace: Path, addition: str, key: str, expected: str) -> None:
    message = error_of(workspace, BASE + addition)
    assert message.startswith(f"jitprov.toml: {key}: ")
    assert expected in message


def test_link_by_accepts_a_declared_text_field(workspace: Path) -> None:
    config = load_config(write(workspace, BASE + 'link_by = "department"\n'))
    assert config.connection("okta").link_by == "department"


@pytest.mark.parametrize(
    ("field", "expected"),
    [
        ("username", "built-in field"),
        ("when", "keyword of the rules language"),
        ("Dept", "must match [a-z_][a-z0-9_]*"),
    ],
)
def test_bad_field_declarations(workspace: Path, field: str, expected: str) -> None:
    text = BASE.replace('department = "text"', f'{field} = "text"')
    message = error_of(workspace, text)
    assert f"store.fields.{field}" in message
    assert expected in message


def test_field_type_must_be_known(workspace: Path) -> None:
    message = error_of(workspace, BASE.replace('entitlements = "set"', 'entitlements = "list"'))
    assert "store.fields.entitlements: expected one of text, number, bool, set" in message


def test_missing_required_key(workspace: Path) -> None:
    message = error_of(workspace, BASE.replace('audience = "https://sp.example.com/saml"\n', ""))
    assert "connections.okta.audience: missing (required)" in message


def test_saml_needs_a_certificate_or_metadata(workspace: Path) -> None:
    message = error_of(workspace, BASE.replace('certificate = "certs/okta.pem"\n', ""))
    assert "connections.okta.certificate: missing" in message


def test_oidc_needs_jwks(workspace: Path) -> None:
    text = BASE + (
        '\n[connections.google]\nprotocol = "oidc"\nissuer = "https://accounts.google.com"\n'
        'audience = "client"\nrules = "rules/okta.rules"\n'
    )
    assert "connections.google.jwks: missing" in error_of(workspace, text)
    assert "or client_secret_env" in error_of(workspace, text)


def test_client_secret_env_names_a_variable_and_stands_in_for_jwks(workspace: Path) -> None:
    oidc = (
        '\n[connections.google]\nprotocol = "oidc"\nissuer = "https://accounts.google.com"\n'
        'audience = "client"\nrules = "rules/okta.rules"\n'
    )
    config = load_config(write(workspace, BASE + oidc + 'client_secret_env = "GOOGLE_SECRET"\n'))
    google = config.connection("google")
    assert (google.client_secret_env, google.jwks) == ("GOOGLE_SECRET", None)
    bad = BASE + oidc + 'client_secret_env = "not a name"\n'
    assert 'client_secret_env: expected an environment variable name, got "not a name"' in (
        error_of(workspace, bad)
    )
    saml = BASE.replace(
        'rules = "rules/okta.rules"', 'rules = "rules/okta.rules"\nclient_secret_env = "X"'
    )
    assert 'only for protocol = "oidc"' in error_of(workspace, saml)


def test_certificate_list_for_key_rollover(workspace: Path) -> None:
    shutil.copyfile(SAML_DATA / "sp.crt", workspace / "certs" / "next.pem")
    text = BASE.replace(
        'certificate = "certs/okta.pem"', 'certificate = ["certs/okta.pem", "certs/next.pem"]'
    )
    assert len(load_config(write(workspace, text)).connection("okta").certificates) == 2


def test_invalid_toml_is_reported_with_its_position(workspace: Path) -> None:
    message = error_of(workspace, "[store\npath = 1\n")
    assert message.startswith("jitprov.toml: invalid TOML:")
    assert "line 1" in message


def test_store_path_and_url_are_exclusive(workspace: Path) -> None:
    text = BASE.replace('path = "jitprov.db"', 'path = "a.db"\nurl = "postgresql://x@y/z"')
    assert "store: set either path or url, not both" in error_of(workspace, text)


def test_postgres_store_settings_are_read_with_their_defaults(workspace: Path) -> None:
    url = BASE.replace('path = "jitprov.db"', 'url = "postgresql://x@y/z"')
    store = load_config(write(workspace, url)).store
    assert (store.pool, store.pool_timeout, store.statement_timeout) == (10, 5.0, 30.0)
    assert store.migrate == "auto"
    tuned = url.replace(
        "[store]\n",
        '[store]\npool = 3\npool_timeout = 0.5\nstatement_timeout = 0\nmigrate = "manual"\n',
    )
    store = load_config(write(workspace, tuned)).store
    assert (store.pool, store.pool_timeout, store.statement_timeout) == (3, 0.5, 0.0)
    assert store.migrate == "manual"


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("pool = 0", "store.pool: expected a whole number from 1 to 1000, got 0"),
        ("pool = 2.5", "store.pool: expected a whole number, got 2.5"),
        ("pool_timeout = 0", "store.pool_timeout: expected seconds, more than 0"),
        ("statement_timeout = -1", "store.statement_timeout: expected seconds, 0 or more"),
        ('statement_timeout = "30s"', "store.statement_timeout: expected a number of seconds"),
        ("pool_timeout = true", "store.pool_timeout: expected seconds"),
        ('migrate = "sometimes"', "store.migrate: expected one of auto, manual"),
    ],
)
def test_bad_store_settings_name_the_key(workspace: Path, line: str, message: str) -> None:
    url = BASE.replace('path = "jitprov.db"', f'url = "postgresql://x@y/z"\n{line}')
    assert message in error_of(workspace, url)


def test_pool_settings_belong_to_a_postgres_store(workspace: Path) -> None:
    text = BASE.replace('path = "jitprov.db"', 'path = "jitprov.db"\npool = 4')
    assert "store.pool: applies to a PostgreSQL store (url) only" in error_of(workspace, text)


def test_unknown_connection_lists_the_known_ones(workspace: Path) -> None:
    config = load_config(write(workspace, BASE))
    with pytest.raises(ConfigError, match=r"unknown connection 'azure' \(known: okta\)"):
        config.connection("azure")


def test_find_config_walks_up_and_honours_explicit(workspace: Path) -> None:
    write(workspace, BASE)
    nested = workspace / "a" / "b"
    nested.mkdir(parents=True)
    assert find_config(nested) == workspace / "jitprov.toml"
    assert find_config(None, workspace) == (workspace / "jitprov.toml").resolve()
    with pytest.raises(ConfigError, match="no such config file"):
        find_config(None, workspace / "nope.toml")
