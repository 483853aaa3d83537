"""Recorded sign-ins: what `jitprov plan` replays a rules change over.

On every provisioned or denied sign-in of a connection with `record = true` (the
default), the pipeline keeps the identity's validated token as the rules saw it — the
attribute bag after decoding and merging, before any rule ran — with the subject, the
NameID format, the issuer, the authentication context and (OIDC) `email_verified`: all
that the pipeline's steps 3–8 read. One row per identity (connection and subject key),
replaced by its next sign-in, with the time, the outcome, the account and the rules
sha256 of that sign-in. A transient subject (it changes at every sign-in) is kept under
its account instead.

Attributes named in the connection's `redact` are kept only as a keyed hash,
`hmac-sha256:<hex>` (HMAC-SHA256 with a random secret kept in the store), unless the
connection says `record_redacted = true`. A hash tells equal values apart without
showing them; rules that read such an attribute see the hash in a plan (plan says so).
The attribute named by `subject_from` is the identity itself, kept in clear in the
identity link already, so it is recorded in clear as well.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from engine.config import Connection
from engine.token import Token

BAG_VERSION = 1
HASH_PREFIX = "hmac-sha256:"
# One encoder for every bag: json.dumps with options builds a new one per call.
_encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


@dataclass(frozen=True, slots=True)
class Recorded:
    """One row of `recorded_signins`."""

    connection: str
    subject_key: str  # the identity link's key, or account_key() for a transient subject
    subject: str
    user_id: int | None
    outcome: str
    at: str  # ISO 8601, UTC
    rules_sha256: str | None
    bag: str  # JSON: bag_json()


def account_key(user_id: int) -> str:
    """The key a transient subject's sign-ins are recorded under: its account's.
    (No link key starts with "#": links are keyed by subjects, which a config may
    give any text, so the prefix is paired with a character no NameID holds.)"""
    return f"#account\x1f{user_id}"


def hashed(secret: bytes, value: str) -> str:
    """The keyed hash a redacted value is recorded as."""
    return HASH_PREFIX + hmac.new(secret, value.encode("utf-8"), hashlib.sha256).hexdigest()


def hidden_names(conn: Connection) -> frozenset[str]:
    """The attributes recorded as keyed hashes on this connection."""
    if conn.record_redacted or not conn.redact:
        return frozenset()
    return frozenset(conn.redact) - {conn.subject_from or ""}


def bag_json(token: Token, conn: Connection, secret: Callable[[], bytes]) -> str:
    """The JSON recorded for a validated token; `secret()` gives the store's hash key
    (asked for only when an attribute must be hashed)."""
    hide = hidden_names(conn)
    attributes: dict[str, list[str]] = token.attributes
    if hide and not hide.isdisjoint(attributes):
        key = secret()
        attributes = {
            name: [hashed(key, v) for v in values] if name in hide else values
            for name, values in attributes.items()
        }
    bag: dict[str, Any] = {
        "v": BAG_VERSION,
        "kind": token.kind,
        "name_id": token.name_id,
        "name_id_format": token.name_id_format,
        "issuer": token.issuer,
        "authn_context": token.authn_context,
        "email_verified": token.email_verified,
        "attributes": attributes,
    }
    return _encode(bag)


class BagError(ValueError):
    """A recorded bag that cannot be read back (written by a newer jitprov, or damaged)."""


def token_from_bag(text: str) -> Token:
    """The token a recorded bag stands for, as the pipeline's steps 3–8 read it. It has
    no token id (a replay is no question a plan asks) and no expiry."""
    try:
        bag = json.loads(text)
    except ValueError as exc:
        raise BagError(f"not JSON: {exc}") from None
    if not isinstance(bag, dict) or bag.get("v") != BAG_VERSION:
        raise BagError(f"unknown bag version {bag.get('v') if isinstance(bag, dict) else None!r}")
    attributes = bag.get("attributes")
    if not isinstance(attributes, dict) or not all(
        isinstance(values, list) and all(isinstance(v, str) for v in values)
        for values in attributes.values()
    ):
        raise BagError("attributes are not lists of text")
    kind = bag.get("kind")
    if kind not in ("saml", "oidc", "sample"):
        raise BagError(f"unknown token kind {kind!r}")
    return Token(
        kind=kind,
        name_id=_text(bag, "name_id"),
        name_id_format=_text(bag, "name_id_format"),
        issuer=_text(bag, "issuer"),
        authn_context=_text(bag, "authn_context"),
        attributes=attributes,
        token_id=None,
        expires_at=None,
        email_verified=bag.get("email_verified") is True,
    )


def _text(bag: dict[str, Any], name: str) -> str | None:
    value = bag.get(name)
    if value is not None and not isinstance(value, str):
        raise BagError(f"{name} is not text")
    return value
