"""Writing a connection back into jitprov.toml: comments and layout kept, validated
with the config loader before anything is written."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from engine.config import ConfigError
from engine.config_edit import connection_problems, edit_connection_text, save_connection

CONFIG = """\
# top comment
[store]
path = "jitprov.db"   # the store

# Okta, aligned keys
[connections.okta]
protocol       = "saml2"          # saml2 | oidc
issuer         = "http://www.okta.com/exk1"
certificate    = "idp.pem"
audience       = "https://sp.example.com/saml"
rules          = "okta.rules"
mode           = "create-and-update"
redact         = ["employee_id"]

# the next connection
[connections.other]
protocol = "saml2"
issuer = "http://other/"
certificate = "idp.pem"
audience = "https://sp.example.com/saml"
rules = "okta.rules"
"""


@pytest.fixture
def config_path(tmp_path: Path) -> Path:
    # A real certificate: the loader checks that the file holds one.
    shutil.copyfile(
        Path(__file__).resolve().parent / "data" / "saml" / "idp.crt", tmp_path / "idp.pem"
    )
    (tmp_path / "okta.rules").write_text("username = subject\n")
    path = tmp_path / "jitprov.toml"
    path.write_text(CONFIG)
    return path


def test_changing_a_value_keeps_its_padding_and_comment() -> None:
    text = edit_connection_text(CONFIG, "okta", {"protocol": "saml2", "mode": "create-only"})
    assert 'mode           = "create-only"' in text
    assert 'protocol       = "saml2"          # saml2 | oidc' in text
    assert text.replace('"create-only"', '"create-and-update"') == CONFIG


def test_a_new_key_goes_after_the_last_key_aligned() -> None:
    text = edit_connection_text(CONFIG, "okta", {"on_error": "continue"})
    lines = text.splitlines()
    at = lines.index('on_error       = "continue"')
    assert lines[at - 1].startswith("redact")
    assert lines[at + 1] == "" and lines[at + 2] == "# the next connection"


def test_none_removes_a_key_and_unknown_connections_are_appended() -> None:
    text = edit_connection_text(CONFIG, "okta", {"redact": None})
    assert "redact" not in text
    text = edit_connection_text(
        CONFIG, "google", {"protocol": "oidc", "issuer": "https://accounts.google.com"}
    )
    assert text.startswith(CONFIG)
    assert text.endswith(
        '[connections.google]\nprotocol = "oidc"\nissuer = "https://accounts.google.com"\n'
    )


def test_save_validates_before_writing(config_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        save_connection(config_path, "okta", {"mode": "create"})
    assert caught.value.key == "connections.okta.mode"
    assert config_path.read_text() == CONFIG


def test_save_writes_and_returns_the_new_config(config_path: Path) -> None:
    config = save_connection(config_path, "okta", {"mode": "update-only", "clock_skew": 30})
    assert config.connections["okta"].mode == "update-only"
    assert config.connections["okta"].clock_skew == 30
    text = config_path.read_text()
    assert "# top comment" in text and "# Okta, aligned keys" in text
    assert 'mode           = "update-only"' in text


def test_save_refuses_a_missing_file_reference(config_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        save_connection(config_path, "okta", {"rules": "missing.rules"})
    assert caught.value.key == "connections.okta.rules"
    assert "file not found" in caught.value.detail


# -- every problem at once ----------------------------------------------------------------


def _workspace(tmp_path: Path) -> Path:
    from engine.saml.keys import generate_test_idp

    _, cert = generate_test_idp(tmp_path, "problems IdP")
    (tmp_path / "okta.rules").write_text("username = subject\n")
    path = tmp_path / "jitprov.toml"
    path.write_text(CONFIG.replace("idp.pem", cert.name))
    return path


def test_problems_lists_every_wrong_key_in_the_loaders_order(tmp_path: Path) -> None:
    path = _workspace(tmp_path)
    before = path.read_text()
    values = {"protocol": "saml2", "clock_skew": "soon", "certificate": "gone.pem"}
    problems = connection_problems(path, "acme", values)
    assert [key for key, _ in problems] == [
        "issuer",
        "audience",
        "rules",
        "clock_skew",
        "certificate",
    ]
    assert dict(problems)["certificate"].startswith("file not found: gone.pem")
    assert path.read_text() == before  # nothing written


def test_problems_of_a_valid_edit_is_empty_and_matches_save(tmp_path: Path) -> None:
    path = _workspace(tmp_path)
    assert connection_problems(path, "okta", {"mode": "create-only"}) == []
    values = {"mode": "sometimes"}
    (key, message), *rest = connection_problems(path, "okta", values)
    with pytest.raises(ConfigError) as caught:
        save_connection(path, "okta", values)
    assert (key, message, rest) == ("mode", caught.value.detail, [])


def test_problems_stops_at_a_problem_elsewhere_in_the_file(tmp_path: Path) -> None:
    path = _workspace(tmp_path)
    path.write_text(path.read_text() + "\n[store.fields]\nage = 'number-ish'\n")
    problems = connection_problems(path, "okta", {"mode": "create-only"})
    assert len(problems) == 1 and problems[0][0] is None
