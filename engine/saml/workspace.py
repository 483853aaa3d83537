"""Add a saml2 connection to a workspace from IdP metadata (`connection import-metadata`).

The config is edited through `engine.config_edit.save_connection` (tomlkit: comments
and layout stay; the whole new config is validated before it atomically replaces the
old one); certificates go to `certs/` as PEM files; a starter rules file is created
when missing. Nothing is written unless the metadata is valid; on any failure the files
this import created are removed again. Every failure is a MetadataError.
"""

from __future__ import annotations

import base64
import re
import textwrap
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

import tomlkit
from tomlkit.exceptions import TOMLKitError

from engine.config import DEFAULT_AUDIENCE, ConfigError
from engine.config_edit import save_connection
from engine.keysources import EXPIRY_WARNING_DAYS
from engine.moments import stamp
from engine.saml.metadata import MetadataError, parse_metadata

STARTER_RULES = "# Rules for this connection: how its tokens become accounts (docs/rules.md).\nusername = subject\n"
_ID = re.compile(r"\A[A-Za-z0-9_-]+\Z")


@dataclass(frozen=True, slots=True)
class Imported:
    """What an import added."""

    connection_id: str
    entity_id: str
    certificates: tuple[Path, ...]
    rules: Path
    rules_created: bool
    audience: str
    sso_url: str | None
    warnings: tuple[str, ...] = ()  # e.g. the metadata's validUntil has passed


# IdP services whose entity IDs name their host: the id an administrator would use.
_VENDORS = (
    (("okta.com", "oktapreview.com", "okta-emea.com", "okta-gov.com"), "okta"),
    (("sts.windows.net", "microsoftonline.com", "microsoftonline.us"), "entra"),
    (("onelogin.com",), "onelogin"),
    (("google.com",), "google"),
    (("auth0.com",), "auth0"),
    (("pingone.com", "pingone.eu", "pingone.asia", "pingidentity.com"), "ping"),
    (("jumpcloud.com",), "jumpcloud"),
    (("duosecurity.com",), "duo"),
)
# First labels that name a role, not the organisation (`idp.university.example`).
_GENERIC = frozenset(
    {"idp", "sso", "login", "auth", "www", "saml", "sts", "signin", "identity", "id", "fed"}
)


def slug(entity_id: str) -> str:
    """A short connection id from an entity ID: the IdP service's name for the
    well-known ones (`http://www.okta.com/exk1…` → `okta`,
    `https://sts.windows.net/<tenant>/` → `entra`), else the first label of the host
    that names the organisation (`https://idp.university.example/idp/shibboleth` →
    `university`), else the entity ID made into letters, digits and dashes."""
    text = entity_id.strip().lower()
    host = _host(text)
    if host:
        for suffixes, name in _VENDORS:
            if any(host == s or host.endswith("." + s) for s in suffixes):
                return name
        labels = [label for label in host.split(".") if label]
        named = [label for label in labels[:-1] if label not in _GENERIC] or labels[:1]
        short = re.sub(r"[^a-z0-9]+", "-", named[0]).strip("-")
        if short:
            return short[:48]
    text = re.sub(r"\A[a-z][a-z0-9+.-]*:(//)?", "", text)
    text = re.sub(r"[^a-z0-9]+", "-", text).strip("-")
    return text[:48].strip("-") or "idp"


def _host(entity_id: str) -> str | None:
    """The host an entity ID names: a URL's, or a dotted name inside a URN."""
    parts = urlsplit(entity_id)
    if parts.scheme in ("http", "https") and parts.hostname:
        if re.fullmatch(r"[0-9.]+|.*:.*", parts.hostname):  # an address names no one
            return None
        return parts.hostname
    for piece in entity_id.split(":")[1:]:
        if "." in piece and re.fullmatch(r"[a-z0-9.-]+", piece):
            return piece
    return None


def free_id(wanted: str, taken: Iterable[str]) -> str:
    """`wanted`, or `wanted-2`, `wanted-3`… when a connection has it already."""
    used = set(taken)
    if wanted not in used:
        return wanted
    number = 2
    while f"{wanted}-{number}" in used:
        number += 1
    return f"{wanted}-{number}"


def pem(der: bytes) -> str:
    """One certificate as PEM text."""
    body = "\n".join(textwrap.wrap(base64.b64encode(der).decode(), 64))
    return f"-----BEGIN CERTIFICATE-----\n{body}\n-----END CERTIFICATE-----\n"


def import_metadata(
    config_path: Path,
    metadata_path: Path,
    *,
    connection_id: str | None = None,
    entity: str | None = None,
    audience: str | None = None,
    recipient: str | None = None,
    require_signed: str | None = None,
    decryption_key: str | None = None,
    metadata_url: str | None = None,
    metadata_certificate: str | None = None,
    now: datetime | None = None,
) -> Imported:
    """Add `[connections.ID]` from the metadata; raises MetadataError (config untouched).

    Nothing is taken from another connection: the audience (the SP entity ID) is
    `audience`, else the config's `[sp] entity_id`, else jitprov's default SP entity ID
    (`urn:jitprov:sp`, with a warning); `recipient`,
    `require_signed` and `decryption_key` (a path relative to the config) are written
    when given (the defaults of docs/config.md apply otherwise). With `metadata_url`
    the connection fetches its metadata from there (signed with `metadata_certificate`,
    or unsigned when that is None) and no certificate file is written: a rollover that
    drops a key then drops it here too."""
    try:
        data = metadata_path.read_bytes()
    except OSError as exc:
        raise MetadataError(f"{metadata_path}: cannot read: {exc.strerror or exc}") from None
    idp = parse_metadata(data, entity)
    warnings = _validity_warnings(idp.valid_until, now or datetime.now(UTC))
    try:
        doc = tomlkit.parse(config_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, TOMLKitError) as exc:
        raise MetadataError(f"{config_path.name}: cannot read the config: {exc}") from None
    connections = doc.get("connections") or {}
    conn_id = connection_id or free_id(slug(idp.entity_id), connections)
    if not _ID.match(conn_id):
        raise MetadataError(f"connection id {conn_id!r}: use letters, digits, '-' and '_'")
    if conn_id in connections:
        raise MetadataError(f"connection {conn_id!r} already exists in {config_path.name}")
    if audience is None:
        sp = doc.get("sp")
        default = sp.get("entity_id") if isinstance(sp, dict) else None
        if isinstance(default, str) and default:
            audience = default
        else:
            audience = DEFAULT_AUDIENCE
            warnings += (
                f"audience {DEFAULT_AUDIENCE!r} is jitprov's default SP entity ID: give"
                " --audience SP_ENTITY_ID (the entity ID this IdP sends its tokens to), or"
                " set [sp] entity_id in the config, before going live",
            )
    root = config_path.parent
    names = (
        []
        if metadata_url is not None
        else [f"certs/{conn_id}.pem"]
        if len(idp.signing_certs) == 1
        else [f"certs/{conn_id}-{n}.pem" for n in range(1, len(idp.signing_certs) + 1)]
    )
    created: list[Path] = []
    try:
        for name, der in zip(names, idp.signing_certs, strict=False):
            target = root / name
            if target.exists():
                if target.read_text(encoding="utf-8", errors="replace") != pem(der):
                    raise MetadataError(f"{name} exists with another certificate; use --id")
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(pem(der), encoding="utf-8")
            created.append(target)
        rules_name = f"rules/{conn_id}.rules"
        rules = root / rules_name
        rules_created = not rules.exists()
        if rules_created:
            rules.parent.mkdir(parents=True, exist_ok=True)
            rules.write_text(STARTER_RULES, encoding="utf-8")
            created.append(rules)
        values: dict[str, object] = {"protocol": "saml2", "issuer": idp.entity_id}
        if metadata_url is not None:
            values["metadata_url"] = metadata_url
            if metadata_certificate is not None:
                values["metadata_certificate"] = metadata_certificate
            else:
                values["metadata_signed"] = False
        else:
            values["certificate"] = names[0] if len(names) == 1 else names
        values.update(audience=audience, rules=rules_name)
        optional = {
            "recipient": recipient,
            "require_signed": require_signed,
            "decryption_key": decryption_key,
        }
        values.update({k: v for k, v in optional.items() if v is not None})
        try:  # the shared editor: layout kept, whole config validated, atomic write
            save_connection(config_path, conn_id, values)
        except ConfigError as exc:
            raise MetadataError(f"the config would be invalid: {exc}") from None
    except BaseException:
        for path in created:
            path.unlink(missing_ok=True)
        raise
    return Imported(
        conn_id,
        idp.entity_id,
        tuple(root / n for n in names),
        rules,
        rules_created,
        audience,
        idp.sso_url,
        warnings,
    )


def _validity_warnings(valid_until: datetime | None, now: datetime) -> tuple[str, ...]:
    """What an administrator should hear about the metadata's validUntil."""
    if valid_until is None:
        return ()
    when = stamp(valid_until)
    if valid_until <= now:
        return (
            f"the metadata expired at {when} (its validUntil): the IdP may have rotated"
            " its keys since; get a current copy from the IdP and check the certificate",
        )
    if valid_until - now <= timedelta(days=EXPIRY_WARNING_DAYS):
        return (f"the metadata expires at {when} (its validUntil): get a current copy soon",)
    return ()
