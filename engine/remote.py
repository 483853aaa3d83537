"""Documents fetched from the IdP and kept current: an OIDC connection's JWKS and discovery
document (engine.oidc.fetched; docs/oidc.md, "Keys from the IdP") and a SAML
connection's metadata (engine.saml.fetched; docs/tokens.md, "Metadata from a URL").

Rules, chosen so that an IdP that is slow, down or under attack never turns good keys
into refusals, and forged tokens can never make jitprov hammer the IdP:
- keys are fetched with httpx, with a connect/read timeout (FETCH_TIMEOUT), a size limit
  (MAX_BYTES), no redirects to other schemes, and HTTPS only (plain HTTP only to the
  loopback host, for tests and local IdPs);
- a copy is fresh for the response's `Cache-Control: max-age` (bounded to
  MIN_FRESH..MAX_FRESH; DEFAULT_FRESH without one), or for what the document's own
  `freshness` says (SAML metadata: cacheDuration, validUntil); refreshed copies are asked
  with `If-None-Match` (a 304 keeps the keys);
- a document its `validate` refuses (a metadata signature that does not verify, an
  expired validUntil) is never kept: the last good copy stays;
- a token naming a `kid` the keys lack triggers a refetch at most once per
  `jwks_min_refresh` seconds per URL (default 60), whatever the number of such tokens;
- when a fetch fails, the last good keys keep serving (however old); only with none at
  all is a token `untrusted-signer`, saying why;
- the last good copy is kept in the workspace (`.jitprov/cache/`), so a restart during an
  IdP outage still has keys; it is written atomically.
One `Remote` per URL per process, shared by threads: a lock lets one thread fetch while
others wait (at most the fetch timeout) and then use what it got.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

FETCH_TIMEOUT = 5.0  # seconds, to connect and between reads
MAX_BYTES = 1_048_576
DEFAULT_FRESH = 3600.0
MIN_FRESH, MAX_FRESH = 60.0, 86_400.0
_LOOPBACK = {"localhost", "127.0.0.1", "::1"}
_MAX_AGE = re.compile(r"(?:^|,)\s*max-age\s*=\s*(\d+)", re.IGNORECASE)


class FetchError(Exception):
    """A fetch failed; the message says what and where."""


def check_url(url: str) -> str | None:
    """Why `url` cannot be fetched from (None when it can): https, or http to loopback."""
    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return None
    if parts.scheme == "http" and parts.hostname in _LOOPBACK:
        return None
    return "expected an https:// URL (http:// only to localhost)"


@dataclass(slots=True)
class Copy:
    """The last good document of a URL."""

    body: bytes
    etag: str | None
    fetched: float  # time.time()
    fresh_until: float


Validate = Callable[[bytes], None]  # raises FetchError for a document not to keep
Freshness = Callable[[bytes, float], float]  # (body, header freshness) → seconds fresh


class Remote:
    """One URL's document, cached in memory and in the workspace."""

    def __init__(
        self,
        url: str,
        cache_dir: Path | None,
        *,
        validate: Validate | None = None,
        freshness: Freshness | None = None,
    ) -> None:
        self.url = url
        self._validate = validate
        self._freshness = freshness
        self._file = (
            cache_dir / f"{hashlib.sha256(url.encode()).hexdigest()[:32]}.json"
            if cache_dir is not None
            else None
        )
        self._lock = threading.Lock()
        self.copy: Copy | None = self._read_cache()
        self.last_attempt = 0.0  # time.monotonic() of the last fetch, good or bad
        self.last_forced = 0.0  # ... of the last fetch for a kid the keys lacked
        self.last_error: str | None = None
        self.fetches = 0  # attempts made (for tests and status)

    def document(self, *, min_interval: float, refresh: bool = False, ahead: float = 0.0) -> bytes:
        """The body: the cached copy while it is fresh, else a fetch. `refresh` (a token
        names a kid the keys lack) fetches even a fresh copy, but at most once per
        `min_interval` seconds; an IdP whose last fetch failed is asked again at most as
        often. Meanwhile, and whenever a fetch fails, the last good copy serves however
        old; FetchError when there is none. `ahead`: a copy that goes stale within that
        many seconds counts as stale already (a background refresh)."""
        copy = self.copy
        if copy is not None and not refresh and time.time() + ahead < copy.fresh_until:
            return copy.body
        with self._lock:  # one thread fetches; the others then take what it got
            copy = self.copy
            if copy is not None and not refresh and time.time() + ahead < copy.fresh_until:
                return copy.body
            now = time.monotonic()
            if refresh and self.last_forced and now - self.last_forced < min_interval:
                return self._last_good()
            failing = self.last_error is not None and now - self.last_attempt < min_interval
            if failing and not refresh:
                return self._last_good()
            if refresh:
                self.last_forced = now
            try:
                self._fetch()
            except FetchError as exc:
                self.last_error = str(exc)
            return self._last_good()

    def _last_good(self) -> bytes:
        if self.copy is None:
            raise FetchError(self.last_error or f"{self.url}: not fetched yet")
        return self.copy.body

    def _fetch(self) -> None:
        import httpx

        self.last_attempt = time.monotonic()
        self.fetches += 1
        headers = {"Accept": "application/json"}
        if self.copy is not None and self.copy.etag:
            headers["If-None-Match"] = self.copy.etag
        try:
            with (
                httpx.Client(timeout=FETCH_TIMEOUT, follow_redirects=False) as client,
                client.stream("GET", self.url, headers=headers) as response,
            ):
                if response.status_code == 304 and self.copy is not None:
                    fresh = self._fresh(self.copy.body, _freshness(response.headers))
                    self.copy.fresh_until = time.time() + fresh
                    self.last_error = None
                    return
                if response.status_code != 200:
                    raise FetchError(f"{self.url}: HTTP {response.status_code}")
                body = bytearray()
                for chunk in response.iter_bytes():
                    body += chunk
                    if len(body) > MAX_BYTES:
                        raise FetchError(f"{self.url}: larger than {MAX_BYTES} bytes")
                fresh = _freshness(response.headers)
                etag = response.headers.get("etag")
        except httpx.HTTPError as exc:
            raise FetchError(f"{self.url}: {type(exc).__name__}: {exc}") from None
        document = bytes(body)
        self._check(document)
        now = time.time()
        self.copy = Copy(document, etag, now, now + self._fresh(document, fresh))
        self.last_error = None
        self._write_cache()

    def _check(self, document: bytes) -> None:
        """FetchError unless the document may be kept (JSON by default)."""
        if self._validate is not None:
            self._validate(document)
            return
        try:
            json.loads(document)
        except ValueError as exc:
            raise FetchError(f"{self.url}: not JSON: {exc}") from None

    def _fresh(self, document: bytes, header_seconds: float) -> float:
        return (
            header_seconds if self._freshness is None else self._freshness(document, header_seconds)
        )

    def _read_cache(self) -> Copy | None:
        if self._file is None:
            return None
        try:
            data = json.loads(self._file.read_text(encoding="utf-8"))
            if data.get("url") != self.url:
                return None
            body = data["body"].encode("utf-8")
            self._check(body)  # the workspace's copy is checked like a fetched one
            # Stale at once: it serves while the IdP answers nothing better.
            return Copy(body, data.get("etag"), float(data["fetched"]), 0.0)
        except (OSError, ValueError, KeyError, TypeError, AttributeError, FetchError):
            return None

    def _write_cache(self) -> None:
        if self._file is None or self.copy is None:
            return
        record = {
            "url": self.url,
            "etag": self.copy.etag,
            "fetched": self.copy.fetched,
            "body": self.copy.body.decode("utf-8", errors="replace"),
        }
        try:
            self._file.parent.mkdir(parents=True, exist_ok=True)
            handle, temporary = tempfile.mkstemp(dir=self._file.parent, suffix=".tmp")
            with os.fdopen(handle, "w", encoding="utf-8") as out:
                json.dump(record, out)
            os.replace(temporary, self._file)
        except OSError:
            pass  # the in-memory copy still serves; the next good fetch tries again


def post_form(url: str, headers: dict[str, str], body: str) -> tuple[int, bytes]:
    """POST a form to `url` (a token endpoint): the status and the body, read with the
    limits of a fetch (FETCH_TIMEOUT, at most MAX_BYTES, no redirects); FetchError when
    no answer comes or it is too large."""
    import httpx  # on use: most commands never fetch

    problem = check_url(url)
    if problem is not None:
        raise FetchError(f"{url}: {problem}")
    try:
        with (
            httpx.Client(timeout=FETCH_TIMEOUT, follow_redirects=False) as client,
            client.stream("POST", url, headers=headers, content=body.encode("utf-8")) as response,
        ):
            answer = bytearray()
            for chunk in response.iter_bytes():
                answer += chunk
                if len(answer) > MAX_BYTES:
                    raise FetchError(f"{url}: larger than {MAX_BYTES} bytes")
            return response.status_code, bytes(answer)
    except httpx.HTTPError as exc:
        raise FetchError(f"{url}: {type(exc).__name__}: {exc}") from None


def _freshness(headers: Any) -> float:
    match = _MAX_AGE.search(headers.get("cache-control", ""))
    seconds = float(match.group(1)) if match else DEFAULT_FRESH
    return min(max(seconds, MIN_FRESH), MAX_FRESH)


_REMOTES: dict[tuple[object, ...], Remote] = {}
_REMOTES_LOCK = threading.Lock()


def remote(
    url: str,
    cache_dir: Path | None,
    *,
    validate: Validate | None = None,
    freshness: Freshness | None = None,
    key: tuple[object, ...] = (),
) -> Remote:
    """The process's one Remote for `url` and `key` (what its `validate` depends on);
    bounded by the URLs and settings the config names."""
    index = (url, str(cache_dir) if cache_dir is not None else None, *key)
    with _REMOTES_LOCK:
        found = _REMOTES.get(index)
        if found is None:
            found = Remote(url, cache_dir, validate=validate, freshness=freshness)
            _REMOTES[index] = found
        return found


def forget() -> None:
    """Drop every Remote (tests)."""
    with _REMOTES_LOCK:
        _REMOTES.clear()
