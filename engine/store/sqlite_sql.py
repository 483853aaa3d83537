"""The SQLite store's statements and column codecs: SQL text built once per shape,
JSON for the audit row's columns, audit rows read back, the search clause."""

from __future__ import annotations

import functools
import json
from json.encoder import c_make_encoder, encode_basestring  # type: ignore[attr-defined]
from typing import Any

from engine.store.base import AuditRow
from engine.store.schema import set_table

_JSON = json.JSONEncoder(ensure_ascii=False, default=str)
# The C encoder behind _JSON, made once: JSONEncoder.encode builds a new one per call,
# which is most of the cost of encoding an audit row's small `changes` object.
_ENCODE = (
    None
    if c_make_encoder is None
    else c_make_encoder(None, str, encode_basestring, None, ": ", ", ", False, False, True)
)


@functools.lru_cache(maxsize=128)
def update_sql(columns: tuple[str, ...]) -> str:
    """The UPDATE for one set of changed columns (few distinct sets: built once each)."""
    assignments = ", ".join(f"[{n}] = ?" for n in columns)
    return f"UPDATE users SET {assignments}, updated_at = ? WHERE id = ?"


@functools.lru_cache(maxsize=256)
def member_sql(template: str, set_field: str) -> str:
    """A statement on a set field's member table (built once per table)."""
    return template.format(set_table(set_field))


def encoded(value: object) -> str:
    """JSON text for a column: a value is encoded, text given already encoded is kept."""
    if isinstance(value, str):
        return value
    if _ENCODE is not None and isinstance(value, dict | list):
        return "".join(_ENCODE(value, 0))
    return _JSON.encode(value)


SELECT_AUDIT = (
    "SELECT id, at, connection, subject, token_id, outcome, reason, message, user_id,"
    " changes, trace, rules_sha256 FROM audit"
)


def audit_row_from(r: tuple[Any, ...]) -> AuditRow:
    """An `audit` row read with SELECT_AUDIT, its JSON columns decoded."""
    return AuditRow(
        id=r[0],
        at=r[1],
        connection=r[2],
        subject=r[3],
        token_id=r[4],
        outcome=r[5],
        reason=r[6],
        message=r[7],
        user_id=r[8],
        changes=json_or_text(r[9]),
        trace=json_or_text(r[10]),
        rules_sha256=r[11],
    )


def contains(query: str, columns: list[str]) -> tuple[str, list[object]]:
    """A WHERE clause: any of `columns` contains `query`, compared casefolded."""
    needle = query.strip().casefold()
    if not needle or not columns:
        return "", []
    tests = " OR ".join(f"instr(jitprov_casefold({c}), ?) > 0" for c in columns)
    return f" WHERE ({tests})", [needle] * len(columns)


def casefold_sql(value: object) -> str | None:
    """The `jitprov_casefold` SQL function (Unicode casefold, which SQLite lacks)."""
    return None if value is None else str(value).casefold()


def json_or_text(text: object) -> object:
    """A JSON column's value; text that is not JSON (written by hand) as it is."""
    if text is None:
        return None
    try:
        return json.loads(str(text))
    except ValueError:
        return text
