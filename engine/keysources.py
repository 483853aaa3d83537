"""Fetching every connection's keys now (`jitprov connection refresh`): SAML metadata from
`metadata_url`, OIDC keys from `discovery` or `jwks_uri`. Each is fetched at once, whatever
its freshness, through the same checks as a sign-in's fetch (engine.remote,
engine.saml.fetched, engine.oidc.fetched); a failure leaves the last good copy in place
and is reported."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

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


def _chosen(config: Config, connection_id: str | None) -> list[Connection]:
    """Every connection, or the one named (ConfigError when it does not exist)."""
    if connection_id is not None:
        return [config.connection(connection_id)]
    return list(config.connections.values())


def fetching_connections(config: Config, connection_id: str | None = None) -> list[Connection]:
    """The connections whose keys come from a URL (or the one named; ConfigError when
    it does not exist)."""
    return [
        c
        for c in _chosen(config, connection_id)
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


EXPIRY_WARNING_DAYS = 30


@dataclass(frozen=True, slots=True)
class KeyStatus:
    """Where one connection's keys come from, and what an administrator should know."""

    connection: str
    sources: tuple[str, ...]  # e.g. "certificate certs/okta.pem (valid until …)"
    warnings: tuple[str, ...]  # expired or expiring within EXPIRY_WARNING_DAYS, fetch errors


def key_status(config: Config, now: datetime, connection_id: str | None = None) -> list[KeyStatus]:
    """Each connection's key sources and warnings, from what is on disk and in this
    process (nothing is fetched: `refresh` does that)."""
    return [_status(c, config, now) for c in _chosen(config, connection_id)]


def _status(connection: Connection, config: Config, now: datetime) -> KeyStatus:
    sources: list[str] = []
    warnings: list[str] = []

    def dated(what: str, until: datetime | None) -> str:
        if until is None:
            return what
        if until <= now:
            warnings.append(f"{what} expired at {stamp(until)}")
        elif until - now <= timedelta(days=EXPIRY_WARNING_DAYS):
            days = (until - now).days
            warnings.append(f"{what} expires at {stamp(until)}, in {days} day(s)")
        return f"{what} (until {stamp(until)})"

    def shown(path: object) -> str:
        try:
            return str(Path(str(path)).relative_to(config.root))
        except ValueError:
            return str(path)

    if connection.protocol == "saml2":
        _saml_status(connection, now, sources, warnings, dated, shown)
    else:
        if connection.jwks is not None:
            sources.append(f"jwks {shown(connection.jwks)}")
        if connection.client_secret_env is not None:
            sources.append(f"client secret from ${connection.client_secret_env}")
        for url in (connection.discovery, connection.jwks_uri):
            if url is not None:
                sources.append(_fetched(url, remote(url, connection.cache_dir), warnings))
    return KeyStatus(connection.id, tuple(sources), tuple(warnings))


def _saml_status(
    connection: Connection,
    now: datetime,
    sources: list[str],
    warnings: list[str],
    dated: Callable[[str, datetime | None], str],
    shown: Callable[[object], str],
) -> None:
    from engine.saml.keys import KeyFileError, trusted_file_certs
    from engine.saml.metadata import MetadataError, parse_metadata

    for path in connection.certificates:
        try:
            certs = trusted_file_certs(path)
        except KeyFileError as exc:
            warnings.append(f"certificate {shown(path)}: {exc}")
            continue
        for cert in certs:
            sources.append(dated(f"certificate {shown(path)}", cert.not_after))
    if connection.metadata is not None:
        try:
            idp = parse_metadata(connection.metadata.read_bytes(), connection.issuer)
            sources.append(dated(f"metadata {shown(connection.metadata)}", idp.valid_until))
        except (OSError, MetadataError) as exc:
            warnings.append(f"metadata {shown(connection.metadata)}: {exc}")
    if connection.metadata_url is not None:
        from engine.saml.fetched import metadata_source

        source = metadata_source(connection)
        sources.append(_fetched(connection.metadata_url, source, warnings))
        if source.copy is not None:
            try:
                idp = parse_metadata(source.copy.body, connection.issuer)
                dated(f"metadata from {connection.metadata_url}", idp.valid_until)
            except MetadataError:
                pass


def _fetched(url: str, source: Any, warnings: list[str]) -> str:
    if source.last_error is not None:
        warnings.append(f"the last fetch of {url} failed: {source.last_error}")
    if source.copy is None:
        return f"{url} (not fetched yet)"
    fetched = datetime.fromtimestamp(source.copy.fetched, UTC)
    return f"{url} (last fetched {stamp(fetched)})"


class Refresher:
    """Keeps fetched keys fresh in the background (`jitprov serve`): every `interval`
    seconds, each connection's copy that is missing or goes stale within `ahead`
    seconds is fetched, so that sign-ins find fresh keys and never wait on the IdP for
    them. A failing IdP is asked again no more often than a sign-in would (the
    connection's jwks_min_refresh / refresh_min), and its last good copy keeps serving."""

    def __init__(self, config: Config, *, interval: float = 30.0, ahead: float = 120.0) -> None:
        self.connections = fetching_connections(config)
        self.interval = interval
        self.ahead = ahead
        self.rounds = 0  # completed passes (tests wait on it)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self.connections and self._thread is None:
            self._thread = threading.Thread(target=self._run, name="jitprov-keys", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.is_set():
            for connection in self.connections:
                if self._stop.is_set():
                    return
                self.refresh_if_due(connection)
            self.rounds += 1
            self._stop.wait(self.interval)

    def refresh_if_due(self, connection: Connection) -> None:
        """Fetch the connection's copies that are missing or nearly stale."""
        try:
            if connection.metadata_url is not None:
                from engine.saml.fetched import metadata_source

                source = metadata_source(connection)
                source.document(min_interval=connection.refresh_min, ahead=self.ahead)
                return
            from engine.oidc.fetched import jwks_uri

            interval = connection.jwks_min_refresh
            if connection.discovery is not None:
                discovery = remote(connection.discovery, connection.cache_dir)
                discovery.document(min_interval=interval, ahead=self.ahead)
            source = remote(jwks_uri(connection), connection.cache_dir)
            source.document(min_interval=interval, ahead=self.ahead)
        except (FetchError, TokenRejected):
            pass  # the source keeps its error for status; sign-ins report it as theirs
