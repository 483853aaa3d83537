"""`jitprov test --update`: rewrite the `[expect]` of a failing case from its result.

Through tomlkit, so the rest of the file — other tables, key order, comments, blank
lines — stays as written; only the values of `[expect]` change. What is written:
`outcome`; `reason` when the outcome is rejected (removed otherwise); `message_has`
only when the case had one (kept while it is still a part of the message, else the
whole message); `[expect.user]`'s listed fields with their values after the run — or,
when it lists none and an account exists after a successful outcome, the fields the
rules set.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import tomlkit
from tomlkit.items import Table

from engine.cases.model import Value
from engine.cases.verdict import Actual
from engine.result import SUCCESS


def update_case(path: Path, actual: Actual) -> None:
    """Rewrite `path`'s `[expect]` from `actual`; raises OSError or a tomlkit error."""
    text = path.read_text(encoding="utf-8")
    document = tomlkit.parse(text)
    expect = document.get("expect")
    if not isinstance(expect, Table):
        expect = tomlkit.table()
        document["expect"] = expect
    expect["outcome"] = actual.outcome
    _set_or_drop(expect, "reason", actual.reason if actual.outcome == "rejected" else None)
    if "message_has" in expect:
        old = expect["message_has"]
        message = actual.message
        keep = isinstance(old, str) and message is not None and str(old) in message
        _set_or_drop(expect, "message_has", str(old) if keep else message)
    _update_user(expect, actual)
    path.write_text(tomlkit.dumps(document), encoding="utf-8")


def _update_user(expect: Table, actual: Actual) -> None:
    table = expect.get("user")
    listed = list(table.keys()) if isinstance(table, Table) else []
    if actual.user is None:
        if "user" in expect:
            del expect["user"]
        return
    if not listed:
        if actual.outcome not in SUCCESS:
            return
        listed = [name for name in actual.assigned if name in actual.user]
        if not listed:
            return
        table = tomlkit.table()
        expect["user"] = table
    assert isinstance(table, Table)
    for name in listed:
        if name in actual.user:
            table[name] = _toml(actual.user[name])


def _set_or_drop(table: Table, key: str, value: str | None) -> None:
    if value is None:
        if key in table:
            del table[key]
    else:
        table[key] = value


def _toml(value: Value) -> Any:
    """A stored value as TOML: sets as sorted lists, no value as ""."""
    if value is None:
        return ""
    if isinstance(value, tuple):
        return list(value)
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    return value
