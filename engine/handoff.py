"""Handing a browser sign-in to the application (docs/sso.md): the result object is kept
in the store under the sha256 of a one-time reference (`jitprov_ref`, 256 random bits),
which the browser carries to the return URL; the application redeems it at
`POST /pickup`, with the service token, once and within HANDOFF_LIFETIME.

The store never holds the reference itself, so reading the store gives no way to pick a
sign-in up; the result is blanked when it is picked up and rows are forgotten a while
after they expire (engine.store.reads.HANDOFF_KEPT).
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
from datetime import datetime, timedelta
from typing import Any

from engine.moments import stamp
from engine.result import Result
from engine.store import Handoff, Store

HANDOFF_LIFETIME = timedelta(seconds=60)
_REF = re.compile(r"[A-Za-z0-9_-]{20,128}\Z")


class PickupRefused(Exception):
    """A reference that gives nothing: why (`reason`, a product reason code), and the
    connection of the sign-in it named when it named one."""

    def __init__(self, reason: str, message: str, connection: str | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.connection = connection


def ref_hash(ref: str) -> str:
    return hashlib.sha256(ref.encode("ascii")).hexdigest()


def hand_off(store: Store, result: Result, now: datetime) -> str:
    """Keep `result` for the application; the reference that picks it up."""
    ref = secrets.token_urlsafe(32)
    record = Handoff(
        ref_hash(ref),
        result.connection,
        json.dumps(result.to_json(), ensure_ascii=False),
        now + HANDOFF_LIFETIME,
    )
    store.add_handoff(record, now)
    return ref


def pick_up(store: Store, ref: str, now: datetime) -> dict[str, Any]:
    """The result object `ref` names, once: PickupRefused (`malformed`, `wrong-request`
    for an unknown reference, `replay` for one picked up already, `expired`)."""
    if not _REF.match(ref):
        raise PickupRefused("malformed", "jitprov_ref is not a reference jitprov gives")
    found = store.take_handoff(ref_hash(ref), now)
    if found is None:
        raise PickupRefused("wrong-request", "no sign-in has this jitprov_ref")
    if found.picked_at is not None:
        raise PickupRefused(
            "replay",
            f"this jitprov_ref was picked up already, at {stamp(found.picked_at)}",
            found.connection,
        )
    if now >= found.expires_at:
        seconds = int(HANDOFF_LIFETIME.total_seconds())
        raise PickupRefused(
            "expired",
            f"this jitprov_ref expired at {stamp(found.expires_at)} (a sign-in is picked up"
            f" within {seconds} s)",
            found.connection,
        )
    data: dict[str, Any] = json.loads(found.result)
    return data
