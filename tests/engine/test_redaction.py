"""`redact` holds in every message (product.md §1, issue 11): a link or username
conflict, and a rule's `deny` text that quotes a redacted value, show "***" in
`apply --json`, `explain` (text and --json) and the audit row; without `redact`, the
value is shown. Run as a user runs them, in-process through `tui.cli.run`, on SQLite
and PostgreSQL."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

if str(Path(__file__).parent) not in sys.path:  # tests/engine is not an importable package
    sys.path.insert(0, str(Path(__file__).parent))
from provision_fixtures import Bench, sample, workspace

import tui.cli
from engine.result import Result
from tui.cli import run

SECRET = "secret.person@example.com"
TWICE = "twice.person@example.com"
TAKEN = "Taken.Name"
BANNED = "banned.person@example.com"
# Attributes named like the fields, so that `redact` covers both.
RULES = """\
deny "banned.person@example.com may not sign in here" when first(@email) == "banned.person@example.com"
username = first(@username)
email    = first(@email)
"""

# The tests that provision run against SQLite and PostgreSQL (tests/engine/conftest.py).
on_both_stores = pytest.mark.usefixtures("store_backend")


@pytest.fixture(autouse=True)
def _own_commands(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tui.cli, "COMMANDS", ("apply", "explain", "audit"))


class Workspace:
    """okta (no redact) makes the accounts; entra (SAML) and google (OIDC) link by email
    with `redact` as given."""

    def __init__(self, root: Path, capsys: pytest.CaptureFixture[str], redact: list[str]):
        extra: dict[str, Any] = {"link_by": "email"}
        if redact:
            extra["redact"] = redact
        connections = {"okta": {}, "entra": extra, "google": {"protocol": "oidc", **extra}}
        self.root = root
        self.config_path = workspace(root, RULES, connections=connections)
        self.config = str(self.config_path)
        self.capsys = capsys
        self.n = 0

    def run(self, *argv: str) -> tuple[int, str]:
        code = run([*argv, "--config", self.config])
        out, _ = self.capsys.readouterr()
        return code, out

    def token(self, subject: str, username: str, email: str) -> str:
        self.n += 1
        path = self.root / f"token{self.n}.toml"
        path.write_bytes(sample(subject, username=username, email=email))
        return str(path)

    def apply(self, connection: str, subject: str, username: str, email: str) -> dict[str, Any]:
        path = self.token(subject, username, email)
        _, out = self.run("apply", "-c", connection, "--unsigned-samples", "--json", path)
        result: dict[str, Any] = json.loads(out)
        return result

    def outputs(self, connection: str, subject: str, username: str, email: str) -> Outputs:
        """explain, explain --json, apply --json and the audit row read from the store:
        each whole, and the message each shows."""
        path = self.token(subject, username, email)
        args = ("-c", connection, "--unsigned-samples", path)
        _, explained = self.run("explain", *args)
        _, explained_json = self.run("explain", *args, "--json")
        _, applied = self.run("apply", *args, "--json")
        assert json.loads(applied)["outcome"] == "denied", applied
        bench = Bench(self.config_path)
        [latest] = bench.store.audit(limit=1)
        row = bench.rows("SELECT * FROM audit WHERE id = " + str(latest.id))
        bench.close()
        assert latest.outcome == "denied"
        whole = [explained, explained_json, applied, repr(row)]
        messages = [explained.splitlines()[0]]
        messages += [json.loads(explained_json)["message"], json.loads(applied)["message"]]
        messages.append(str(latest.message))
        return whole, messages


Outputs = tuple[list[str], list[str]]


def scenarios(ws: Workspace) -> dict[str, tuple[str, Outputs]]:
    """Each refusal of issue 11: (the value it quotes, its outputs)."""
    assert ws.apply("okta", "o1", "sp", SECRET)["outcome"] == "created"
    assert ws.apply("okta", "o2", "tw1", TWICE)["outcome"] == "created"
    assert ws.apply("okta", "o3", "tw2", TWICE)["outcome"] == "created"
    assert ws.apply("okta", "o4", TAKEN, "taken@example.com")["outcome"] == "created"
    assert ws.apply("entra", "e1", "sp", SECRET)["outcome"] == "linked"
    return {
        "already linked": (SECRET, ws.outputs("entra", "e2", "sp-again", SECRET)),
        "several accounts": (TWICE, ws.outputs("entra", "e3", "tw3", TWICE)),
        "email_verified": (SECRET, ws.outputs("google", "g1", "sp", SECRET)),
        "username taken": (TAKEN, ws.outputs("entra", "e4", TAKEN, "new@example.com")),
        "deny text": (BANNED, ws.outputs("entra", "e5", "banned", BANNED)),
    }


MESSAGES = {
    "already linked": "the account with email {} is already linked to another identity",
    "several accounts": "several accounts have email {}; not linking",
    "email_verified": "not linking to the account with email {}: the token's email_verified",
    "username taken": 'username "{}" is already taken by another account',
    "deny text": "{} may not sign in here",
}


@on_both_stores
def test_redacted_values_are_hidden_in_every_message_and_output(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ws = Workspace(tmp_path, capsys, ["email", "username"])
    for name, (value, (whole, messages)) in scenarios(ws).items():
        for output in whole:
            assert value.lower() not in output.lower(), (name, output)
        for message in messages:
            assert MESSAGES[name].format("***") in message, (name, message)


@on_both_stores
def test_without_redact_the_messages_show_the_values(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ws = Workspace(tmp_path, capsys, [])
    for name, (value, (_, messages)) in scenarios(ws).items():
        for message in messages:
            assert MESSAGES[name].format(value) in message, (name, message)


@on_both_stores
def test_redacting_other_names_leaves_the_message_alone(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ws = Workspace(tmp_path, capsys, ["department"])
    for name, (value, (_, messages)) in scenarios(ws).items():
        assert all(MESSAGES[name].format(value) in m for m in messages), (name, messages)


@on_both_stores
def test_a_redacted_username_is_hidden_in_the_headline_too(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ws = Workspace(tmp_path, capsys, ["email", "username"])
    path = ws.token("e1", TAKEN, SECRET)
    _, explained = ws.run("explain", "-c", "entra", "--unsigned-samples", path)
    _, applied = ws.run("apply", "-c", "entra", "--unsigned-samples", path)
    for output in (explained, applied):
        assert output.splitlines()[0].startswith("created *** (entra, subject e1)"), output
        assert TAKEN not in output and SECRET not in output, output


# -- the replacement itself ---------------------------------------------------------


def test_hide_ignores_case_prefers_longer_values_and_keeps_short_ones_to_whole_words() -> None:
    from engine.result import hide

    assert hide("user JDOE@X.ORG and jdoe@x.org", ["jdoe@x.org"]) == "user *** and ***"
    assert hide("a@b.example, a@b.example.net", ["a@b.example", "a@b.example.net"]) == ("***, ***")
    assert hide("department IT is over the limit", ["IT"]) == "department *** is over the limit"
    assert hide("E-42: badge E-42x", ["E-42"]) == "***: badge E-42x"
    assert hide("nothing here", []) == "nothing here"
    assert hide("no [regex] (here)", ["[regex] (here)"]) == "no ***"


def test_a_result_hides_values_of_redacted_attributes_fields_and_hidden_values() -> None:
    from rules.plan import Plan, SetOp

    plan = Plan(
        fields={"email": "planned@example.com", "badge": 1815},
        set_ops=[SetOp("groups", "add", ("secret-group",), 3, None)],
    )
    result = Result(
        "denied",
        "okta",
        message="mail@example.com planned@example.com 1815 secret-group stored-value",
        attributes={"mail": ["mail@example.com"], "other": ["stored-value"]},
        plan=plan,
        redact=("mail", "email", "badge", "groups"),
        hidden=("stored-value",),
    )
    assert result.message == "*** *** *** *** ***"
    plain = Result("denied", "okta", message="mail@example.com", attributes={"mail": ["x"]})
    assert plain.message == "mail@example.com"
