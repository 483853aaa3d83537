"""`--at` far from now (issue 11): one parser for `apply`, `explain`, a batch line's
`"at"` and `mint`; a moment a datetime cannot hold in UTC is clamped to the nearest
instant it can, so the engine answers with a time-window outcome (expired, not yet
valid) instead of "internal error: OverflowError"."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from engine.moments import EARLIEST, LATEST
from tui.cli import CommandError, parse_time, run

DEMO = Path(__file__).resolve().parents[2] / "examples" / "demo"
LAST_MOMENT = "9999-12-31T23:59:59-14:00"  # 10000-01-01T13:59:59Z
FIRST_MOMENT = "0001-01-01T00:00:00+14:00"  # 0000-12-31T10:00:00Z


@pytest.fixture
def demo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "demo"
    shutil.copytree(DEMO, root, ignore=shutil.ignore_patterns("jitprov.db*"))
    monkeypatch.chdir(root)
    return root


def jitprov(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = run(list(argv))
    out, err = capsys.readouterr()
    assert "internal error" not in err and "Traceback" not in err
    return code, out, err


# -- the parser -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-05-01T12:00:00Z", datetime(2024, 5, 1, 12, tzinfo=UTC)),
        ("2024-05-01T12:00:00z", datetime(2024, 5, 1, 12, tzinfo=UTC)),
        (" 2024-05-01T14:00:00+02:00 ", datetime(2024, 5, 1, 12, tzinfo=UTC)),
        ("9999-12-31T23:59:59Z", datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)),
        ("9999-12-31T09:59:59-14:00", datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)),
        (LAST_MOMENT, LATEST),
        ("9999-12-31T23:59:59.999999-00:01", LATEST),
        (FIRST_MOMENT, EARLIEST),
        ("0001-01-01T00:00:00+00:00:01", EARLIEST),
        ("0001-01-01T00:00:00Z", EARLIEST),
    ],
)
def test_at_far_from_now_is_clamped_to_what_utc_can_hold(text: str, expected: datetime) -> None:
    moment = parse_time(text)
    assert moment == expected and moment.tzinfo is UTC


def test_the_clamped_instants_are_datetimes_limits() -> None:
    assert datetime.max.replace(tzinfo=UTC) == LATEST
    assert datetime.min.replace(tzinfo=UTC) == EARLIEST


def test_a_time_without_a_zone_is_an_error_or_utc_when_asked() -> None:
    with pytest.raises(CommandError, match="give a time zone"):
        parse_time("2024-05-01T12:00:00")
    assert parse_time("2024-05-01T12:00:00", naive_utc=True) == datetime(2024, 5, 1, 12, tzinfo=UTC)


@pytest.mark.parametrize(
    "text", ["", "now", "10000-01-01T00:00:00Z", "2024-13-01T00:00:00Z", "2024-05-01T12:00+24:00"]
)
def test_text_that_is_no_time_is_a_usage_error(text: str) -> None:
    with pytest.raises(CommandError, match="expected an ISO 8601 time"):
        parse_time(text)


def test_the_offset_a_time_had_does_not_change_the_instant() -> None:
    east = parse_time("2024-05-01T14:00:00+02:00")
    assert east == datetime(2024, 5, 1, 14, tzinfo=timezone(timedelta(hours=2)))


# -- end to end -----------------------------------------------------------------------


def test_apply_at_the_last_moment_west_of_utc_is_expired(
    demo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = jitprov(
        capsys, "apply", "-c", "okta", "samples/okta-engineer.xml", "--at", LAST_MOMENT, "--json"
    )
    result = json.loads(out)
    assert (code, result["outcome"], result["reason"]) == (3, "rejected", "expired")
    assert "9999-12-31T23:59:59" in result["message"]


def test_apply_at_the_first_moment_east_of_utc_is_not_yet_valid(
    demo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = jitprov(
        capsys, "apply", "-c", "okta", "samples/okta-engineer.xml", "--at", FIRST_MOMENT, "--json"
    )
    result = json.loads(out)
    assert (code, result["outcome"], result["reason"]) == (3, "rejected", "not-yet-valid")


@pytest.mark.parametrize(
    ("at", "reason"), [(LAST_MOMENT, "expired"), (FIRST_MOMENT, "not-yet-valid")]
)
def test_explain_at_far_moments_exits_as_apply_would(
    demo: Path, capsys: pytest.CaptureFixture[str], at: str, reason: str
) -> None:
    code, out, _ = jitprov(
        capsys, "explain", "-c", "okta", "samples/okta-engineer.xml", "--at", at, "--json"
    )
    assert (code, json.loads(out)["reason"]) == (3, reason)


def test_a_batch_lines_at_is_clamped_too(demo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    token = (demo / "samples" / "okta-engineer.xml").read_text()
    lines = [{"token": token, "at": LAST_MOMENT}, {"token": token, "at": FIRST_MOMENT}]
    batch = demo / "far.jsonl"
    batch.write_text("".join(json.dumps(line) + "\n" for line in lines))
    code, out, _ = jitprov(capsys, "apply", "-c", "okta", "--batch", str(batch), "--json")
    results = [json.loads(line) for line in out.splitlines()]
    assert code == 0
    assert [r["reason"] for r in results] == ["expired", "not-yet-valid"]


def test_mint_too_late_for_its_validity_is_a_usage_error(
    demo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = jitprov(
        capsys, "mint", "samples/okta-engineer.toml", "-c", "okta", "--at", LAST_MOMENT
    )
    assert code == 1 and out == ""
    assert err == (
        "jitprov: error: --at: too late for a token valid for 5 minutes "
        "(the latest start is 9999-12-31T23:54:59Z)\n"
    )


def test_mint_at_the_latest_start_and_without_a_zone(
    demo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = jitprov(
        capsys, "mint", "samples/okta-engineer.toml", "-c", "okta", "--at", "9999-12-31T23:54:59Z"
    )
    assert code == 0 and 'IssueInstant="9999-12-31T23:54:59Z"' in out
    code, out, _ = jitprov(
        capsys, "mint", "samples/okta-engineer.toml", "-c", "okta", "--at", "2024-05-01T12:00:00"
    )
    assert code == 0 and 'IssueInstant="2024-05-01T12:00:00Z"' in out
