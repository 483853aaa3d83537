"""The keys of an OIDC connection's `jwks_uri` or `discovery` (engine.remote does the
fetching and caching): the JWKS as signing keys, refetched for a `kid` it lacks at most
once per `jwks_min_refresh`, and the discovery document's `issuer` checked against the
connection's. Every failure with no good keys left is `untrusted-signer`."""

from __future__ import annotations

import json
import threading
from typing import Any

from engine.config import Connection
from engine.oidc.keys import JwkEntry, jwks_entries
from engine.remote import FetchError, Remote, check_url, remote
from engine.token import TokenRejected

_PARSED: dict[int, tuple[bytes, tuple[JwkEntry, ...]]] = {}  # id(Remote) → last parse
_PARSED_LOCK = threading.Lock()


def fetched_keys(connection: Connection, missing_kid: str | None) -> tuple[JwkEntry, ...]:
    """The fetched signing keys; with `missing_kid` (a kid the other keys lack), a
    refetch first unless one was made within `jwks_min_refresh`."""
    try:
        source = remote(jwks_uri(connection), connection.cache_dir)
        interval = connection.jwks_min_refresh
        before = source.fetches
        entries = _entries(source, source.document(min_interval=interval))
        missing = missing_kid is not None and not any(e.kid == missing_kid for e in entries)
        if missing and source.fetches == before:  # (a copy fetched just now is current)
            entries = _entries(source, source.document(min_interval=interval, refresh=True))
    except FetchError as exc:
        raise TokenRejected(
            "untrusted-signer", f"cannot fetch the connection's signing keys: {exc}"
        ) from None
    return entries


def jwks_uri(connection: Connection) -> str:
    """The JWKS URL: `jwks_uri`, or the `jwks_uri` of the discovery document."""
    if connection.jwks_uri is not None:
        return connection.jwks_uri
    return discovered(connection, "jwks_uri")


def discovered(connection: Connection, name: str) -> str:
    """An endpoint URL the discovery document names (`jwks_uri`, `authorization_endpoint`,
    `token_endpoint`); the document's `issuer` must be the connection's (it is fetched
    and cached like keys). FetchError when it has no usable URL of that name."""
    if connection.discovery is None:
        raise FetchError(f"connection {connection.id!r} has neither {name} nor discovery")
    source = remote(connection.discovery, connection.cache_dir)
    body = source.document(min_interval=connection.jwks_min_refresh)
    try:
        document: Any = json.loads(body)
    except ValueError:
        document = None
    if not isinstance(document, dict):
        raise FetchError(f"{connection.discovery}: not a JSON object")
    if document.get("issuer") != connection.issuer:
        raise TokenRejected(
            "untrusted-signer",
            f"the discovery document at {connection.discovery} names issuer"
            f" {document.get('issuer')!r}, not the connection's {connection.issuer!r}",
        )
    uri = document.get(name)
    if not isinstance(uri, str) or check_url(uri) is not None:
        raise FetchError(f"{connection.discovery}: no usable {name} ({uri!r})")
    return uri


def _entries(source: Remote, body: bytes) -> tuple[JwkEntry, ...]:
    with _PARSED_LOCK:
        cached = _PARSED.get(id(source))
        if cached is not None and cached[0] is body:
            return cached[1]
    try:
        entries = jwks_entries(json.loads(body))
    except ValueError:
        entries = None
    if entries is None:
        raise FetchError(f'{source.url}: not a JWKS (a JSON object with a "keys" list)')
    with _PARSED_LOCK:
        _PARSED[id(source)] = (body, entries)
    return entries
