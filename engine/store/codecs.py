"""Column codecs both SQL stores share: JSON for the audit row's columns, and audit rows
read back."""

from __future__ import annotations

import json
from json.encoder import c_make_encoder, encode_basestring  # type: ignore[attr-defined]
from typing import Any

from engine.store.base import AuditRow

_JSON = json.JSONEncoder(ensure_ascii=False, default=str)
# The C encoder behind _JSON, made once: JSONEncoder.encode builds a new one per call,
# which is most of the cost of encoding an audit row's small `changes` object.
_ENCODE = (
    None
    if c_make_encoder is None
    else c_make_encoder(None, str, encode_basestring, None, ": ", ", ", False, False, True)
)


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


def json_or_text(text: object) -> object:
    """A JSON column's value; text that is not JSON (written by hand) as it is."""
    if text is None:
        return None
    try:
        return json.loads(str(text))
    except ValueError:
        return text
