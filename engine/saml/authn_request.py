"""SP-initiated SAML: the AuthnRequest this SP sends (HTTP-Redirect binding), and the
check that a response answers one of them (docs/sso.md).

A request's ID starts with REQUEST_PREFIX, and it is recorded in the store
(`pending_requests`: connection, ID, expiry, return URL) until its answer arrives: a
signed response whose InResponseTo carries that prefix must answer a recorded request of
its connection, once, before the request expires (else `wrong-request`). Responses
answering requests jitprov did not make (an application's own) are left to the other
checks, as before. The redirect is signed (RSA-SHA256 over the query string, by xmlsec)
when the connection has `sp_key`.
"""

from __future__ import annotations

import base64
import hmac
import secrets
import zlib
from datetime import datetime, timedelta
from pathlib import Path
from urllib.parse import quote, urlencode, urlsplit

import xmlsec
from lxml import etree

from engine.config import Connection
from engine.filecache import FileCache
from engine.moments import stamp
from engine.saml.xml import SAML, SAMLP
from engine.store import PendingRequest, Store
from engine.token import Token, TokenRejected

REQUEST_PREFIX = "_jitprov-"
REQUEST_LIFETIME = timedelta(minutes=10)  # a person has this long at the IdP
_POST = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST"
_RSA_SHA256 = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"


class LoginError(Exception):
    """A sign-in cannot be started; the message says why. `reason` is the reason code of
    a refusal that is the request's fault (a return URL outside the allowlist), audited
    as such; None for the connection's own (no IdP URL, no recipient)."""

    def __init__(self, message: str, reason: str | None = None) -> None:
        super().__init__(message)
        self.reason = reason


def sso_url(connection: Connection) -> str:
    """Where the IdP takes requests: `sso_url`, else its metadata's (a file or fetched)."""
    if connection.sso_url is not None:
        return connection.sso_url
    from engine.saml.metadata import MetadataError, parse_metadata

    try:
        if connection.metadata is not None:
            found = parse_metadata(connection.metadata.read_bytes(), connection.issuer)
            if found.sso_redirect:
                return found.sso_redirect
        if connection.metadata_url is not None:
            from engine.remote import FetchError
            from engine.saml.fetched import metadata_source

            body = metadata_source(connection).document(min_interval=connection.refresh_min)
            found = parse_metadata(body, connection.issuer)
            if found.sso_redirect:
                return found.sso_redirect
    except (OSError, MetadataError, FetchError) as exc:
        raise LoginError(f"connection {connection.id!r}: no IdP sign-in URL: {exc}") from None
    raise LoginError(
        f"connection {connection.id!r} has no sso_url (the IdP's SingleSignOnService for"
        " HTTP-Redirect), and its metadata names none"
    )


def allowed_return(connection: Connection, return_to: str | None) -> str | None:
    """`return_to` when the connection's `return_urls` allow it (it starts with one of
    them); LoginError otherwise — never an open redirect."""
    if return_to is None:
        return None
    parts = urlsplit(return_to)
    if parts.scheme not in ("https", "http") or not parts.netloc:
        raise LoginError(
            f"return_to {return_to!r} is not an absolute http(s) URL", "wrong-return-url"
        )
    if any(c <= " " or c in "\\\x7f" for c in return_to) or not any(
        _under(return_to, prefix) for prefix in connection.return_urls
    ):
        raise LoginError(
            f"return_to {return_to!r} is not under any of connection {connection.id!r}'s"
            " return_urls",
            "wrong-return-url",
        )
    return return_to


def _under(url: str, prefix: str) -> bool:
    """`url` starts with `prefix` at a boundary: `https://app.example` allows
    `https://app.example/home` but not `https://app.example.evil/` or
    `https://app.example@evil/`."""
    if not url.startswith(prefix):
        return False
    if len(url) == len(prefix) or prefix.endswith(("/", "?", "#", "&", "=")):
        return True
    return url[len(prefix)] in "/?#"


def start_login(
    connection: Connection,
    store: Store,
    *,
    now: datetime,
    return_to: str | None = None,
    force_authn: bool = False,
    browser: str | None = None,
) -> str:
    """Record a new request and give the URL that takes the browser to the IdP;
    `browser` is the hash of the asking browser's sign-in cookie (see `check_browser`)."""
    if connection.protocol != "saml2":
        raise LoginError(f"connection {connection.id!r} is {connection.protocol}, not saml2")
    return_to = allowed_return(connection, return_to)
    target = sso_url(connection)
    request_id = REQUEST_PREFIX + secrets.token_hex(16)
    xml = authn_request(connection, request_id, target, now, force_authn=force_authn)
    store.add_pending(
        PendingRequest(
            connection.id, request_id, now + REQUEST_LIFETIME, return_to, browser=browser
        ),
        now,
    )
    return redirect_url(connection, target, xml)


def authn_request(
    connection: Connection, request_id: str, destination: str, now: datetime, *, force_authn: bool
) -> bytes:
    """The AuthnRequest XML: this SP (issuer = audience) asking for a response posted to
    its ACS URL (`recipient`)."""
    if not connection.recipient:
        raise LoginError(f"connection {connection.id!r} has no recipient (this SP's ACS URL)")
    saml, samlp = SAML.strip("{}"), SAMLP.strip("{}")
    root = etree.Element(f"{SAMLP}AuthnRequest", nsmap={"samlp": samlp, "saml": saml})
    root.set("ID", request_id)
    root.set("Version", "2.0")
    root.set("IssueInstant", stamp(now))
    root.set("Destination", destination)
    root.set("ProtocolBinding", _POST)
    root.set("AssertionConsumerServiceURL", connection.recipient)
    if force_authn:
        root.set("ForceAuthn", "true")
    etree.SubElement(root, f"{SAML}Issuer").text = connection.audience
    policy = etree.SubElement(root, f"{SAMLP}NameIDPolicy", AllowCreate="true")
    if connection.name_id_format is not None:
        policy.set("Format", connection.name_id_format)
    return etree.tostring(root)


# The SP signing key, parsed once per key file (until it changes). The key is shared
# between threads: the context's key setter copies it (holding the GIL).
_SIGNING_KEYS: FileCache[xmlsec.Key] = FileCache()


def _signing_key(path: Path) -> xmlsec.Key:
    def read() -> xmlsec.Key:
        return xmlsec.Key.from_file(str(path), xmlsec.constants.KeyDataFormatPem)

    try:
        return _SIGNING_KEYS.get(str(path), path, read)
    except OSError:  # unreadable: xmlsec says so, as it always has
        return read()


def redirect_url(connection: Connection, destination: str, xml: bytes) -> str:
    """The HTTP-Redirect binding: DEFLATE, base64, and a signature over the query when
    the connection has `sp_key` (SAML bindings §3.4.4.1)."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    deflated = compressor.compress(xml) + compressor.flush()
    query = "SAMLRequest=" + quote(base64.b64encode(deflated).decode("ascii"), safe="")
    if connection.sp_key is not None:
        query += "&SigAlg=" + quote(_RSA_SHA256, safe="")
        ctx = xmlsec.SignatureContext()
        ctx.key = _signing_key(connection.sp_key)
        signature = ctx.sign_binary(query.encode("ascii"), xmlsec.constants.TransformRsaSha256)
        query += "&" + urlencode({"Signature": base64.b64encode(signature).decode("ascii")})
    separator = "&" if "?" in destination else "?"
    return destination + separator + query


def answered(
    connection: Connection,
    token: Token,
    store: Store,
    now: datetime,
    browser: str | None = None,
) -> str | None:
    """For a response to one of jitprov's requests: the request, taken (single use) —
    its return URL; TokenRejected (`wrong-request`) when it is unknown, already answered
    or expired, or (with `browser`, a browser's post) was asked by another browser. None
    for any other token."""
    answer = token.in_response_to
    if answer is None or not answer.startswith(REQUEST_PREFIX):
        return None
    pending = store.take_pending(connection.id, answer)
    if pending is None:
        raise TokenRejected(
            "wrong-request",
            f'InResponseTo "{answer}" answers no open request of connection'
            f" {connection.id!r}: unknown, or already answered",
        )
    if now >= pending.expires_at:
        raise TokenRejected(
            "wrong-request",
            f'the request "{answer}" expired at {stamp(pending.expires_at)}'
            " (a sign-in must come back within 10 minutes)",
        )
    check_browser(pending, browser)
    return pending.return_to


def check_browser(pending: PendingRequest, browser: str | None) -> None:
    """The answer comes to the browser that asked (login CSRF: an attacker's own sign-in
    completed in a victim's browser would sign the victim in as the attacker).
    `browser` is the hash of the sign-in cookie the answering browser sent ("" for
    none); None when no browser answers (an application posts the response)."""
    if browser is None or pending.browser is None:
        return
    if not hmac.compare_digest(pending.browser, browser):
        raise TokenRejected(
            "wrong-request",
            "the sign-in was started in another browser (its sign-in cookie is missing or"
            " different): start it again from the application",
        )
