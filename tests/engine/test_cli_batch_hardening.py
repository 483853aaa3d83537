"""`apply --batch` never stops on one bad item (issue 11).

Each item that cannot be read — a JSONL line that is not a JSON object, has no string
`token`, a bad `at`, a value that cannot be encoded, nesting too deep, bytes that are
not UTF-8, a line too long to hold a token within max_token_bytes; a folder entry that
is not a readable regular file — is its own `rejected` result (reason `malformed`, or
`too-large`) naming its line or file, audited like any rejected token, and the batch
goes on in input order. Exit codes stay those of product.md §3: 0 unless a token ended
in `error`, 4 when one did. Run against SQLite and PostgreSQL (tests/engine/conftest.py).
"""

from __future__ import annotations

import io
import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest

if str(Path(__file__).parent) not in sys.path:  # tests/engine is not an importable package
    sys.path.insert(0, str(Path(__file__).parent))
from provision_fixtures import person, workspace

import tui.cli
from engine.provision import Provisioner
from tui.cli import run
from tui.commands.apply import LINE_OVERHEAD, _lines

pytestmark = pytest.mark.usefixtures("store_backend")

APPLY_KEYS = ["outcome", "connection", "subject", "user", "changes", "reason"]
APPLY_KEYS += ["message", "sso", "trace"]
RULES = "username = first(@uid)\nemail = first(@email)\n"
DEEP = '{"token": ' + "[" * 20000 + "]" * 20000 + "}"
SURROGATE = '{"token": "\\ud800"}'


@pytest.fixture(autouse=True)
def _own_commands(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tui.cli, "COMMANDS", ("apply", "audit"))


class Batch:
    def __init__(self, root: Path, capsys: pytest.CaptureFixture[str], **kw: Any) -> None:
        self.root = root
        self.config = str(workspace(root, RULES, **kw))
        self.capsys = capsys

    def jsonl(self, *lines: str | bytes) -> Path:
        path = self.root / "tokens.jsonl"
        path.write_bytes(
            b"".join((x if isinstance(x, bytes) else x.encode()) + b"\n" for x in lines)
        )
        return path

    def run(self, *argv: str) -> tuple[int, str, str]:
        code = run([*argv, "--config", self.config])
        out, err = self.capsys.readouterr()
        return code, out, err

    def apply(self, source: Path, *extra: str) -> tuple[int, list[dict[str, Any]]]:
        code, out, err = self.run(
            "apply", "-c", "okta", "--unsigned-samples", "--json", "--batch", str(source), *extra
        )
        assert err == "", err
        results = [json.loads(line) for line in out.splitlines()]
        assert all(list(r) == APPLY_KEYS for r in results)
        return code, results

    def audit(self) -> list[dict[str, Any]]:
        _, out, _ = self.run("audit", "--json")
        rows: list[dict[str, Any]] = json.loads(out)
        return rows[::-1]  # oldest first


@pytest.fixture
def batch(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Batch:
    return Batch(tmp_path, capsys)


def good(uid: str) -> str:
    return json.dumps({"token": person(uid).decode()})


def test_batch_goes_on_after_a_deeply_nested_line(batch: Batch) -> None:
    code, results = batch.apply(batch.jsonl(good("ann"), DEEP, good("bob")))
    assert code == 0
    assert [r["outcome"] for r in results] == ["created", "rejected", "created"]
    bad = results[1]
    assert (bad["reason"], bad["message"]) == ("malformed", "line 2: JSON nested too deeply")
    assert (bad["subject"], bad["user"], bad["sso"]) == (None, None, "stop")
    audit = batch.audit()
    assert [(a["outcome"], a["reason"]) for a in audit] == [
        ("created", None),
        ("rejected", "malformed"),
        ("created", None),
    ]
    assert audit[1]["message"] == "line 2: JSON nested too deeply"


def test_batch_goes_on_after_a_lone_surrogate_token(batch: Batch) -> None:
    code, results = batch.apply(batch.jsonl(SURROGATE, good("ann")))
    assert code == 0
    assert [r["outcome"] for r in results] == ["rejected", "created"]
    assert results[0]["reason"] == "malformed"
    assert results[0]["message"].startswith("line 1: token: holds a lone surrogate")
    assert [a["outcome"] for a in batch.audit()] == ["rejected", "created"]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (b"not json", "not JSON: Expecting value at column 1"),
        (b'["token"]', 'expected {"token": "<the token text>"}'),
        (b'"just a string"', 'expected {"token": "<the token text>"}'),
        (b'{"tok": "x"}', 'expected {"token": "<the token text>"}'),
        (b'{"token": 5}', 'expected {"token": "<the token text>"}'),
        (b'{"token": 1' + b"1" * 5000 + b"}", 'expected {"token": "<the token text>"}'),
        (b'{"token": "x", "at": "yesterday"}', '"at": expected an ISO 8601 time'),
        (b'{"token": "x", "at": "2024-05-01T12:00:00"}', '"at": give a time zone'),
        (b'{"token": "x", "at": 1714564800}', "at: expected a string"),
        (b'{"token": "x", "nonce": ["n"]}', "nonce: expected a string"),
        (b'{"token": "x", "request_id": "\\udfff"}', "request_id: holds a lone surrogate"),
        (b'{"token": "caf\xe9"}', "not UTF-8 (byte 0xe9 at byte 15)"),
        (b'{"token": "x"} trailing', "not JSON: Extra data at column 16"),
        (DEEP.encode(), "JSON nested too deeply"),
        (b"{" * 5000, "not JSON"),
    ],
)
def test_every_kind_of_bad_line_is_its_own_malformed_result(
    batch: Batch, line: bytes, message: str
) -> None:
    source = batch.jsonl(good("ann"), b"", line, good("bob"))
    code, results = batch.apply(source)
    assert code == 0
    assert [r["outcome"] for r in results] == ["created", "rejected", "created"]
    assert results[1]["reason"] == "malformed"
    assert results[1]["message"].startswith(f"line 3: {message}"), results[1]["message"]


def test_a_lines_unknown_keys_and_numbers_are_ignored(batch: Batch) -> None:
    # A 5,000-digit number is never converted (Python's int/str limit would refuse it).
    token = json.dumps(person("ann").decode())
    line = f'{{"token": {token}, "rank": 1.5, "big": {"9" * 5000}, "more": [{{}}]}}'
    code, results = batch.apply(batch.jsonl(line))
    assert (code, [r["outcome"] for r in results]) == (0, ["created"])


def test_an_over_long_line_is_too_large_and_the_batch_goes_on(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    batch = Batch(tmp_path, capsys, connections={"okta": {"max_token_bytes": 1000}})
    limit = 6 * 1000 + LINE_OVERHEAD
    huge = json.dumps({"token": "x" * (limit + 10)})
    at_limit = json.dumps({"token": "\x01" * 1000})  # 6,000 characters of JSON: still read
    code, results = batch.apply(batch.jsonl(huge, at_limit, good("ann")))
    assert code == 0
    assert [(r["outcome"], r["reason"]) for r in results] == [
        ("rejected", "too-large"),
        ("rejected", "malformed"),  # read, then refused by intake
        ("created", None),
    ]
    assert results[0]["message"] == (
        f"line 1: longer than {limit} bytes, the most a token within max_token_bytes "
        "(1000) can take as a JSON line: not read"
    )


def test_an_over_long_line_is_never_held_whole() -> None:
    longest = []

    class Watched(io.BytesIO):
        def readline(self, size: int | None = -1) -> bytes:
            line = super().readline(size)
            longest.append(len(line))
            return line

    data = Watched(b"short\r\n" + b"y" * 100_000 + b"\nlast")
    assert list(_lines(data, 50)) == [(1, b"short"), (2, None), (3, b"last")]
    assert max(longest) <= 64 * 1024


def test_results_stay_in_input_order_and_exit_4_only_for_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    batch = Batch(tmp_path, capsys, store="gone/jitprov.db")
    code, results = batch.apply(batch.jsonl(DEEP, good("ann"), SURROGATE))
    assert code == 4
    assert [r["outcome"] for r in results] == ["rejected", "error", "rejected"]
    assert "the audit row could not be written" in results[0]["message"]


def test_dry_run_bad_items_write_no_audit_row(batch: Batch) -> None:
    code, results = batch.apply(batch.jsonl(DEEP, good("ann")), "--dry-run")
    assert (code, [r["outcome"] for r in results]) == (0, ["rejected", "created"])
    assert "dry run" not in results[0]["message"]
    assert not (batch.root / "jitprov.db").exists() or batch.audit() == []


def test_a_bug_on_one_token_is_its_error_and_the_batch_goes_on(
    batch: Batch, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = Provisioner.apply

    def flaky(self: Provisioner, connection: str, raw: bytes, **kw: Any) -> Any:
        if b"bob" in raw:
            raise OverflowError("date value out of range")
        return real(self, connection, raw, **kw)

    monkeypatch.setattr(Provisioner, "apply", flaky)
    code, results = batch.apply(batch.jsonl(good("ann"), good("bob"), good("cy")))
    assert code == 4
    assert [r["outcome"] for r in results] == ["created", "error", "created"]
    assert results[1]["message"] == (
        "line 2: internal error: OverflowError: date value out of range "
        "(set JITPROV_DEBUG=1 to see the traceback); the audit row was written"
    )
    assert [a["outcome"] for a in batch.audit()] == ["created", "error", "created"]
    monkeypatch.setenv("JITPROV_DEBUG", "1")
    with pytest.raises(OverflowError):
        run(
            [
                "apply",
                "-c",
                "okta",
                "--unsigned-samples",
                "--batch",
                str(batch.root / "tokens.jsonl"),
                "--config",
                batch.config,
            ]
        )


# -- a folder ---------------------------------------------------------------------------


def test_batch_dir_entries_that_cannot_be_read_are_their_own_results(
    batch: Batch,
) -> None:
    folder = batch.root / "batch"
    (folder / "d-folder").mkdir(parents=True)
    (folder / "a.toml").write_bytes(person("ann"))
    os.mkfifo(folder / "b-fifo")  # opening it must not wait for a writer
    (folder / "c-link").symlink_to(folder / "missing")
    name = os.fsdecode(b"e-\xff.toml")
    (folder / name).write_bytes(person("eve"))
    (folder / "f-huge.toml").write_bytes(b"#" * 1_048_577 + person("fay"))
    (folder / "g.toml").write_bytes(person("gus"))
    code, results = batch.apply(folder)
    assert code == 0
    assert [(r["outcome"], r["reason"]) for r in results] == [
        ("created", None),
        ("rejected", "malformed"),
        ("rejected", "malformed"),
        ("created", None),
        ("rejected", "too-large"),
        ("created", None),
    ]
    assert results[1]["message"] == "b-fifo: not a regular file"
    assert results[2]["message"] == "c-link: cannot read: No such file or directory"
    size = 1_048_577 + len(person("fay"))
    assert results[4]["message"] == (
        f"f-huge.toml: expected at most 1048576 bytes (max_token_bytes), found {size}"
    )
    assert [a["outcome"] for a in batch.audit()] == [r["outcome"] for r in results]


def test_a_file_name_that_is_not_utf8_is_shown_escaped(batch: Batch) -> None:
    folder = batch.root / "batch"
    folder.mkdir()
    (folder / os.fsdecode(b"x-\xff")).write_bytes(b"neither a token nor a sample")
    code, out, err = batch.run("apply", "-c", "okta", "--unsigned-samples", "--batch", str(folder))
    assert (code, err) == (0, "")
    assert out.startswith("x-\\xff: rejected [malformed]")


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file whatever its mode")
def test_a_file_without_read_permission_is_its_own_result(batch: Batch) -> None:
    folder = batch.root / "batch"
    folder.mkdir()
    (folder / "a.toml").write_bytes(person("ann"))
    (folder / "b.toml").write_bytes(person("bob"))
    (folder / "a.toml").chmod(0)
    code, results = batch.apply(folder)
    assert code == 0
    assert [r["outcome"] for r in results] == ["rejected", "created"]
    assert results[0]["message"] == "a.toml: cannot read: Permission denied"
