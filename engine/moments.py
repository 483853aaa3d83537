"""Moments at the edges of time: UTC conversion and arithmetic that never overflow.

A token may say `NotOnOrAfter="9999-12-31T23:59:59Z"` and `--at` may name the last hours
of 9999-12-31 west of Greenwich: Python's datetime cannot go past year 9999 or before
year 1. `utc` clamps a moment to the first or last representable instant (the clock an
operator gives is then judged like any far-off time); `shifted` says when a token's
date plus or minus the clock skew leaves the years 1–9999, which product.md §2 makes
`expired` (an end) or `not-yet-valid` (a start), never an internal error.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

LATEST = datetime.max.replace(tzinfo=UTC)
EARLIEST = datetime.min.replace(tzinfo=UTC)


def utc(moment: datetime) -> datetime:
    """`moment` in UTC (a naive one is taken as UTC), clamped to what datetime holds."""
    offset = moment.utcoffset()
    if offset is None:
        return moment.replace(tzinfo=UTC)
    try:
        return moment.astimezone(UTC)
    except OverflowError:
        return LATEST if offset < timedelta(0) else EARLIEST  # west of UTC is later


def shifted(moment: datetime, delta: timedelta) -> datetime | None:
    """`moment + delta`, or None when that leaves the years 1–9999."""
    try:
        return moment + delta
    except OverflowError:
        return None


def stamp(moment: datetime) -> str:
    """ISO 8601 UTC to the second with Z, the year always four digits (`0001-…`)."""
    at = utc(moment)
    return (
        f"{at.year:04d}-{at.month:02d}-{at.day:02d}T{at.hour:02d}:{at.minute:02d}:{at.second:02d}Z"
    )


_AGE = re.compile(r"(\d{1,6})([dhw])")
_UNITS = {"d": "days", "h": "hours", "w": "weeks"}


def since(text: str, now: datetime) -> datetime:
    """A moment given as an age before `now` (`90d`, `12h`, `2w`) or as an ISO 8601 date
    or time (UTC when it names no offset); ValueError says what was expected. An age
    reaching before year 1 is the earliest moment."""
    spelled = text.strip()
    age = _AGE.fullmatch(spelled)
    if age:
        try:
            return now - timedelta(**{_UNITS[age.group(2)]: int(age.group(1))})
        except OverflowError:
            return EARLIEST
    try:
        moment = datetime.fromisoformat(spelled[:-1] + "Z" if spelled.endswith("z") else spelled)
    except ValueError:
        raise ValueError(
            "expected an age such as 90d, 12h or 2w, or an ISO 8601 date or time such as"
            f" 2026-11-01 or 2026-11-01T08:00:00Z, got {text!r}"
        ) from None
    return utc(moment)
