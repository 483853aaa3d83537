"""`jitprov apply`, `explain`, `users` and `audit` as a user runs them: JSON shapes and
exit codes (product.md §3), in-process through `tui.cli.run`."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path
from typing import Any

import pytest

if str(Path(__file__).parent) not in sys.path:  # tests/engine is not an importable package
    sys.path.insert(0, str(Path(__file__).parent))
from provision_fixtures import person, sample, workspace

import tui.cli
from tui.cli import run

# Only the commands under test: another command's module must not break these tests.
OWN_COMMANDS = ("apply", "explain", "users", "audit")

APPLY_KEYS = [
    "outcome",
    "connection",
    "subject",
    "user",
    "changes",
    "reason",
    "message",
    "sso",
    "trace",
]
RULES = """\
deny "contractors are not provisioned" when "contractor" in @type
username     = first(@uid)
email        = first(@email)
department   = first(@department)
groups       = @groups
rule "engineers" when "eng" in @groups {
    roles += "developer"
}
"""


class Cli:
    def __init__(self, root: Path, capsys: pytest.CaptureFixture[str], **kw: Any) -> None:
        self.root = root
        self.config = str(workspace(root, kw.pop("rules", RULES), **kw))
        self.capsys = capsys
        self.n = 0

    def token(self, data: bytes) -> str:
        self.n += 1
        path = self.root / f"token{self.n}.toml"
        path.write_bytes(data)
        return str(path)

    def run(self, *argv: str) -> tuple[int, str, str]:
        code = run([*argv, "--config", self.config])
        out, err = self.capsys.readouterr()
        return code, out, err

    def json(self, *argv: str) -> tuple[int, Any]:
        code, out, _ = self.run(*argv, "--json")
        return code, json.loads(out)

    def apply(self, data: bytes, *extra: str) -> tuple[int, Any]:
        return self.json("apply", "-c", "okta", "--unsigned-samples", *extra, self.token(data))


# Every test here runs against SQLite and against PostgreSQL (tests/engine/conftest.py).
pytestmark = pytest.mark.usefixtures("store_backend")


@pytest.fixture(autouse=True)
def _own_commands(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tui.cli, "COMMANDS", OWN_COMMANDS)


@pytest.fixture
def cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Cli:
    return Cli(tmp_path, capsys)


def test_apply_json_has_the_same_keys_for_every_outcome(cli: Cli) -> None:
    code, created = cli.apply(person("jdoe", groups=["eng"], token_id="t1"))
    assert code == 0 and list(created) == APPLY_KEYS
    assert created["outcome"] == "created" and created["sso"] == "continue"
    user = created["user"]
    assert (
        user["username"] == "jdoe" and user["groups"] == ["eng"] and user["roles"] == ["developer"]
    )
    assert user["links"] == [{"connection": "okta", "subject": "jdoe-subject"}]
    assert set(user) >= {"id", "email", "created_at", "updated_at"}
    assert {"field": "roles", "line": 7, "rule": "engineers"} in created["trace"]
    assert created["changes"]["roles"] == {"added": ["developer"], "removed": []}
    code, replay = cli.apply(person("jdoe", token_id="t1"))
    assert (code, list(replay), replay["reason"]) == (3, APPLY_KEYS, "replay")
    code, denied = cli.apply(person("c", type="contractor"))
    assert (code, denied["outcome"], denied["user"]) == (2, "denied", None)
    assert denied["message"] == "contractors are not provisioned" and denied["sso"] == "stop"
    code, unsigned = cli.json("apply", "-c", "okta", cli.token(person("x")))
    assert (code, unsigned["outcome"], unsigned["reason"]) == (3, "rejected", "unsigned")
    assert unsigned["subject"] is None and list(unsigned) == APPLY_KEYS


def test_apply_human_output_is_a_line_and_the_changes(cli: Cli) -> None:
    code, out, _ = cli.run(
        "apply", "-c", "okta", "--unsigned-samples", cli.token(person("jdoe", department="Ops"))
    )
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == "created jdoe (okta, subject jdoe-subject)"
    assert "  department: (none) → Ops" in lines


def test_apply_reads_stdin(cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(person("jdoe"))))
    code, result = cli.json("apply", "-c", "okta", "--unsigned-samples", "-")
    assert (code, result["outcome"]) == (0, "created")


def test_usage_and_config_errors_exit_1(cli: Cli) -> None:
    code, _, err = cli.run("apply", "-c", "okta", str(cli.root / "missing.toml"))
    assert code == 1 and "no such token file" in err
    code, _, err = cli.run("apply", "-c", "nope", cli.token(person("x")))
    assert code == 1 and "unknown connection" in err
    code, _, err = cli.run(
        "apply", "-c", "okta", "--at", "2024-05-01T12:00:00", cli.token(person("x"))
    )
    assert code == 1 and "time zone" in err
    code, _, err = cli.run("apply", "-c", "okta")
    assert code == 1 and "missing TOKEN" in err


def test_rules_with_errors_are_a_config_error_with_rendered_diagnostics(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cli = Cli(tmp_path, capsys, rules="username = lower(@uid\n")
    code, out, err = cli.run("apply", "-c", "okta", "--unsigned-samples", cli.token(person("x")))
    assert code == 1 and out == ""
    assert "rules/okta.rules:1:" in err and "error[" in err


def test_at_accepts_z_and_offsets(cli: Cli) -> None:
    for at in ("2024-05-01T12:00:00Z", "2024-05-01T14:00:00+02:00"):
        code, _ = cli.apply(person("jdoe"), "--at", at)
        assert code == 0
    code, out, _ = cli.run("users", "show", "jdoe", "--json")
    assert json.loads(out)["created_at"] == "2024-05-01T12:00:00Z"


def test_store_error_exits_4_even_with_on_error_continue(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cli = Cli(
        tmp_path, capsys, store="gone/jitprov.db", connections={"okta": {"on_error": "continue"}}
    )
    code, result = cli.apply(person("jdoe"))
    assert (code, result["outcome"], result["sso"]) == (4, "error", "continue")
    assert list(result) == APPLY_KEYS and "store error" in result["message"]


def test_dry_run_writes_nothing(cli: Cli) -> None:
    code, result = cli.apply(person("jdoe"), "--dry-run")
    assert (code, result["outcome"]) == (0, "created")
    assert result["user"]["id"] is None
    assert not (cli.root / "jitprov.db").exists()


# -- batch --------------------------------------------------------------------------


def test_batch_dir_in_name_order_one_json_line_each(cli: Cli) -> None:
    folder = cli.root / "batch"
    (folder / "nested").mkdir(parents=True)
    (folder / "nested" / "ignored.toml").write_bytes(person("nested"))
    (folder / "b.toml").write_bytes(person("bob"))
    (folder / "a.toml").write_bytes(person("ann"))
    (folder / "c.toml").write_bytes(person("carl", type="contractor"))
    code, out, err = cli.run(
        "apply", "-c", "okta", "--unsigned-samples", "--batch", str(folder), "--json"
    )
    assert code == 0 and err == ""
    lines = [json.loads(line) for line in out.splitlines()]
    assert [r["outcome"] for r in lines] == ["created", "created", "denied"]
    assert [r["subject"] for r in lines] == ["ann-subject", "bob-subject", "carl-subject"]
    assert all(list(r) == APPLY_KEYS for r in lines)


def test_batch_jsonl_with_per_line_options_and_bad_lines(cli: Cli) -> None:
    path = cli.root / "tokens.jsonl"
    lines = [
        json.dumps({"token": person("ann").decode(), "at": "2024-01-01T00:00:00Z"}),
        "",
        "not json",
        json.dumps({"token": person("bob").decode(), "request_id": "r1", "nonce": "n1"}),
        json.dumps({"tok": "x"}),
    ]
    path.write_text("\n".join(lines) + "\n")
    code, out, _ = cli.run(
        "apply", "-c", "okta", "--unsigned-samples", "--batch", str(path), "--json"
    )
    results = [json.loads(line) for line in out.splitlines()]
    assert code == 0
    assert [r["outcome"] for r in results] == ["created", "rejected", "created", "rejected"]
    assert results[1]["reason"] == "malformed" and results[1]["message"].startswith("line 3: ")
    code, out, _ = cli.run("users", "show", "ANN", "--json")
    assert json.loads(out)["created_at"] == "2024-01-01T00:00:00Z"


def test_batch_with_a_store_error_exits_4(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cli = Cli(tmp_path, capsys, store="gone/jitprov.db")
    folder = tmp_path / "batch"
    folder.mkdir()
    (folder / "a.toml").write_bytes(person("ann"))
    code, out, _ = cli.run("apply", "-c", "okta", "--unsigned-samples", "--batch", str(folder))
    assert code == 4 and "error" in out


# -- explain ------------------------------------------------------------------------


def test_explain_json_is_apply_plus_attributes_and_skipped(cli: Cli) -> None:
    code, result = cli.json(
        "explain", "-c", "okta", "--unsigned-samples", cli.token(person("jdoe"))
    )
    assert code == 0
    assert list(result) == [*APPLY_KEYS, "attributes", "skipped"]
    assert result["attributes"] == {"uid": ["jdoe"], "email": ["jdoe@example.com"]}
    assert result["skipped"] == [
        {"rule": "engineers", "line": 6, "reason": result["skipped"][0]["reason"]}
    ]
    assert not (cli.root / "jitprov.db").exists()


def test_explain_for_people_shows_plan_trace_skipped_and_diff(cli: Cli) -> None:
    cli.apply(person("jdoe", department="Sales"))
    code, out, _ = cli.run(
        "explain", "-c", "okta", "--unsigned-samples", cli.token(person("jdoe", department="Ops"))
    )
    assert code == 0
    assert "updated jdoe" in out and "dry run" in out
    assert "department" in out and "← line 4" in out
    assert '"engineers" (line 6)' in out
    assert "department: Sales → Ops" in out
    code, _, _ = cli.run(
        "explain", "-c", "okta", "--unsigned-samples", cli.token(person("c", type="contractor"))
    )
    assert code == 2


def test_redacted_fields_and_attributes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cli = Cli(tmp_path, capsys, connections={"okta": {"redact": ["department"]}})
    code, result = cli.apply(person("jdoe", department="Secret"))
    assert code == 0
    assert result["changes"]["department"] == [None, "***"]
    assert result["user"]["department"] == "***"  # product.md §1: redact holds in --json
    _, shown = cli.json("users", "show", "jdoe")
    assert shown["department"] == "Secret"  # the account itself is stored and listed in clear
    _, rows = cli.json("audit")
    assert rows[0]["changes"]["department"] == [None, "***"]
    _, explained = cli.json(
        "explain", "-c", "okta", "--unsigned-samples", cli.token(person("jdoe", department="X"))
    )
    assert explained["attributes"]["department"] == ["***"]
    assert "Secret" not in json.dumps(explained) and '"X"' not in json.dumps(explained["changes"])


# -- users and audit ----------------------------------------------------------------


def test_users_list_and_show(cli: Cli) -> None:
    code, users = cli.json("users")
    assert (code, users) == (0, [])
    cli.apply(person("jdoe", groups=["b", "a"]))
    cli.apply(person("ann"))
    code, users = cli.json("users", "list")
    assert [u["username"] for u in users] == ["jdoe", "ann"]
    code, shown = cli.json("users", "show", "JDOE")
    assert code == 0 and shown == users[0] and shown["groups"] == ["a", "b"]
    code, _, err = cli.run("users", "show", "nobody")
    assert code == 1 and "no user named 'nobody'" in err
    code, out, _ = cli.run("users")
    assert "jdoe" in out and "ann" in out


def test_audit_newest_first_with_limit_and_user(cli: Cli) -> None:
    cli.apply(person("jdoe"))
    cli.apply(person("ann"))
    cli.apply(person("jdoe", department="X"))
    code, rows = cli.json("audit")
    assert code == 0 and [r["outcome"] for r in rows] == ["updated", "created", "created"]
    assert list(rows[0]) == [
        "id", "at", "connection", "subject", "token_id", "outcome", "reason", "message",
        "user_id", "changes", "trace", "rules_sha256",
    ]  # fmt: skip
    _, limited = cli.json("audit", "--limit", "1")
    assert len(limited) == 1 and limited[0]["id"] == rows[0]["id"]
    _, mine = cli.json("audit", "--user", "JDoe")
    assert [r["outcome"] for r in mine] == ["updated", "created"]
    code, _, _ = cli.run("audit", "--user", "nobody")
    assert code == 1
    code, out, _ = cli.run("audit")
    assert code == 0 and "updated" in out


def test_sample_helper_is_a_valid_sample() -> None:
    assert b'subject = "s"' in sample("s", uid="u")


def test_users_and_audit_on_a_corrupt_store_exit_4(cli: Cli, store_backend: str) -> None:
    if store_backend != "sqlite":
        pytest.skip("about a corrupt SQLite file")
    (cli.root / "jitprov.db").write_bytes(b"garbage, not a database" * 50)
    for argv in (("users",), ("users", "show", "x"), ("audit",)):
        code, out, err = cli.run(*argv)
        assert code == 4 and out == "" and "store error" in err and "not a database" in err


def test_a_field_colliding_with_a_store_column_is_a_config_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cli = Cli(tmp_path, capsys, fields={"created_at": "text"})
    code, _, err = cli.run("apply", "-c", "okta", "--unsigned-samples", cli.token(person("x")))
    assert code == 1 and "jitprov.toml" in err and "created_at" in err
    code, _, err = cli.run("users")
    assert code == 1 and "created_at" in err


def test_apply_on_a_corrupt_store_exits_4_and_leaves_the_file_alone(
    cli: Cli, store_backend: str
) -> None:
    if store_backend != "sqlite":
        pytest.skip("about a corrupt SQLite file")
    garbage = b"not a database at all" * 100
    (cli.root / "jitprov.db").write_bytes(garbage)
    code, result = cli.apply(person("jdoe"))
    assert (code, result["outcome"], result["user"]) == (4, "error", None)
    assert "not a database" in result["message"]
    assert (cli.root / "jitprov.db").read_bytes() == garbage
