"""Add a saml2 connection to a workspace from IdP metadata (`connection import-metadata`).

The config is edited with tomlkit so its comments and layout stay; certificates go to
`certs/` as PEM files; a starter rules file is created when missing. Nothing is written
unless the metadata is valid, and the new config is validated (engine.config) before it
replaces the old one; on failure the files this import created are removed again.
"""

from __future__ import annotations

import base64
import os
import re
import textwrap
from dataclasses import dataclass
from pathlib import Path

import tomlkit
from tomlkit.exceptions import TOMLKitError

from engine.config import ConfigError, parse_config
from engine.saml.metadata import MetadataError, parse_metadata

DEFAULT_AUDIENCE = "urn:jitprov:sp"
STARTER_RULES = "# Rules for this connection (see rules-language.md).\nusername = subject\n"
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


def slug(entity_id: str) -> str:
    """A connection id from an entity ID: `https://app.onelogin.com/saml/metadata/383123`
    → `app-onelogin-com-saml-metadata-383123` (letters, digits, dashes; at most 48)."""
    text = re.sub(r"\A[a-z][a-z0-9+.-]*:(//)?", "", entity_id.strip().lower())
    text = re.sub(r"[^a-z0-9]+", "-", text).strip("-")
    return text[:48].strip("-") or "idp"


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
) -> Imported:
    """Add `[connections.ID]` from the metadata; raises MetadataError or ConfigError."""
    try:
        data = metadata_path.read_bytes()
    except OSError as exc:
        raise MetadataError(f"{metadata_path}: cannot read: {exc.strerror or exc}") from None
    idp = parse_metadata(data, entity)
    text = config_path.read_text(encoding="utf-8")
    try:
        doc = tomlkit.parse(text)
    except TOMLKitError as exc:
        raise ConfigError(config_path.name, None, f"invalid TOML: {exc}") from None
    conn_id = connection_id or slug(idp.entity_id)
    if not _ID.match(conn_id):
        raise MetadataError(f"connection id {conn_id!r}: use letters, digits, '-' and '_'")
    connections = doc.get("connections")
    if connections is None:
        connections = tomlkit.table(is_super_table=True)
        doc["connections"] = connections
    if conn_id in connections:
        raise MetadataError(f"connection {conn_id!r} already exists in {config_path.name}")
    if audience is None:
        existing = [c.get("audience") for c in connections.values() if isinstance(c, dict)]
        audience = next((a for a in existing if isinstance(a, str) and a), DEFAULT_AUDIENCE)
    root = config_path.parent
    names = (
        [f"certs/{conn_id}.pem"]
        if len(idp.signing_certs) == 1
        else [f"certs/{conn_id}-{n}.pem" for n in range(1, len(idp.signing_certs) + 1)]
    )
    created: list[Path] = []
    try:
        for name, der in zip(names, idp.signing_certs, strict=True):
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
        table = tomlkit.table()
        table.add(tomlkit.comment(f"imported from {metadata_path.name}"))
        if idp.sso_url:
            table.add(tomlkit.comment(f"IdP sign-in URL: {idp.sso_url}"))
        table.add("protocol", "saml2")
        table.add("issuer", idp.entity_id)
        table.add("certificate", names[0] if len(names) == 1 else names)
        table.add("audience", audience)
        table.add("rules", rules_name)
        connections.add(conn_id, table)
        new_text = tomlkit.dumps(doc)
        parse_config(new_text, config_path)  # the whole config must still be valid
        temp = config_path.with_name(config_path.name + ".tmp")
        temp.write_text(new_text, encoding="utf-8")
        os.replace(temp, config_path)
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
    )
