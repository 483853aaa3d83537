"""Fetching every connection's keys now (`jitprov connection refresh`): SAML metadata from
`metadata_url`, OIDC keys from `discovery` or `jwks_uri`. Each is fetched at once, whatever
its freshness, through the same checks as a sign-in's fetch (engine.remote,
engine.saml.fetched, engine.oidc.fetched); a failure leaves the last good copy in place
and is reported."""

from __future__ import annotations

from dataclasses import dataclass

from engine.config import Config, Connection
from engine.moments import stamp
from engine.remote import FetchError, remote
from engine.token import TokenRejected


@dataclass(frozen=True, slots=True)
class Refreshed:
    """What one connection's refresh found."""

    connection: str
    url: str
    ok: bool
    detail: str  # what is trusted now, or why the fetch failed


def fetching_connections(config: Config, connection_id: str | None = None) -> list[Connection]:
    """The connections whose keys come from a URL (or the one named; ConfigError when
    it does not exist)."""
    chosen = (
        [config.connection(connection_id)]
        if connection_id is not None
        else list(config.connections.values())
    )
    return [
        c
        for c in chosen
        if c.metadata_url is not None or c.jwks_uri is not None or c.discovery is not None
    ]


def refresh(config: Config, connection_id: str | None = None) -> list[Refreshed]:
    """Fetch the keys of every fetching connection (or the one named) now."""
    return [_refresh(c) for c in fetching_connections(config, connection_id)]


def _refresh(connection: Connection) -> Refreshed:
    if connection.metadata_url is not None:
        return _saml(connection)
    return _oidc(connection)


def _saml(connection: Connection) -> Refreshed:
    from engine.saml.fetched import fetched_certs, metadata_source

    assert connection.metadata_url is not None
    source = metadata_source(connection)
    try:
        source.document(min_interval=0.0, refresh=True)
        certs, valid_until = fetched_certs(connection)
    except FetchError as exc:
        return Refreshed(connection.id, connection.metadata_url, False, str(exc))
    until = f", valid until {stamp(valid_until)}" if valid_until is not None else ""
    kept = "" if source.last_error is None else f"; kept the last good copy: {source.last_error}"
    detail = f"{len(certs)} signing certificate(s) for {connection.issuer}{until}{kept}"
    return Refreshed(connection.id, connection.metadata_url, source.last_error is None, detail)


def _oidc(connection: Connection) -> Refreshed:
    from engine.oidc.fetched import fetched_keys, jwks_uri

    url = connection.discovery or connection.jwks_uri
    assert url is not None
    try:
        if connection.discovery is not None:
            remote(connection.discovery, connection.cache_dir).document(
                min_interval=0.0, refresh=True
            )
        source = remote(jwks_uri(connection), connection.cache_dir)
        source.document(min_interval=0.0, refresh=True)
        keys = fetched_keys(connection, None)
    except (FetchError, TokenRejected) as exc:
        message = exc.message if isinstance(exc, TokenRejected) else str(exc)
        return Refreshed(connection.id, url, False, message)
    kids = ", ".join(sorted(k.kid for k in keys if k.kid)) or "no kid"
    kept = "" if source.last_error is None else f"; kept the last good copy: {source.last_error}"
    detail = f"{len(keys)} signing key(s) from {source.url} ({kids}){kept}"
    return Refreshed(connection.id, url, source.last_error is None, detail)
