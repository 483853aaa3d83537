"""`jitprov connection import-metadata FILE [--id ID]`: add a saml2 connection from IdP
metadata (engine.saml.workspace does the work; the TUI calls the same function)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from engine.config import REQUIRE_SIGNED
from tui.cli import EXIT_OK, EXIT_USAGE, CommandError, Workspace, print_json


def register(subparsers: Any, common: argparse.ArgumentParser) -> None:
    parser = subparsers.add_parser(
        "connection",
        parents=[common],
        help="manage connections",
        description="Manage the workspace's connections.",
    )
    actions = parser.add_subparsers(dest="connection_command", metavar="ACTION")
    parser.set_defaults(run=_missing_action)
    imp = actions.add_parser(
        "import-metadata",
        parents=[common],
        help="add a saml2 connection from IdP metadata XML",
        description="Add [connections.ID] from IdP metadata: issuer = the entity ID, the "
        "signing certificates written under certs/, a starter rules file.",
    )
    imp.add_argument("file", metavar="FILE", help="the IdP's metadata XML")
    imp.add_argument(
        "--id",
        dest="conn_id",
        metavar="ID",
        help="the connection id (default: derived from the entity ID)",
    )
    imp.add_argument(
        "--entity", metavar="ENTITY_ID", help="which IdP, when the metadata describes several"
    )
    imp.add_argument(
        "--audience",
        metavar="SP_ENTITY_ID",
        help="the SP entity ID the IdP sends tokens to (required unless the config sets"
        " [sp] entity_id; never taken from another connection)",
    )
    imp.add_argument("--recipient", metavar="ACS_URL", help="the SP's ACS URL, checked when set")
    imp.add_argument(
        "--require-signed",
        choices=REQUIRE_SIGNED,
        help='where a signature must be (default "either": the Response or the Assertion)',
    )
    imp.add_argument(
        "--decryption-key",
        metavar="PATH",
        help="the SP's private key for encrypted assertions (relative to the config)",
    )
    imp.add_argument(
        "--metadata-url",
        metavar="URL",
        help="fetch the metadata from this URL from now on, instead of copying its"
        " certificates (needs --metadata-certificate or --metadata-unsigned)",
    )
    trust = imp.add_mutually_exclusive_group()
    trust.add_argument(
        "--metadata-certificate",
        metavar="PATH",
        help="the certificate the fetched metadata is signed with",
    )
    trust.add_argument(
        "--metadata-unsigned",
        action="store_true",
        help="accept the fetched metadata unsigned (metadata_signed = false)",
    )
    imp.set_defaults(run=run_import)
    ref = actions.add_parser(
        "refresh",
        parents=[common],
        help="fetch the keys of connections with metadata_url, discovery or jwks_uri now",
        description="Fetch now, whatever their freshness, the IdP metadata (metadata_url)"
        " and OIDC keys (discovery, jwks_uri) of every such connection, or of CONN, with"
        " every check a sign-in's fetch makes. A failure keeps the last good copy and is"
        " reported; exit 1 when any fetch failed.",
    )
    ref.add_argument("conn_id", nargs="?", metavar="CONN", help="only this connection")
    ref.set_defaults(run=run_refresh)
    spm = actions.add_parser(
        "sp-metadata",
        parents=[common],
        help="print this SP's SAML metadata for a connection (for the IdP's administrator)",
        description="The SP metadata of saml2 connection CONN: entityID = its audience, the"
        " HTTP-POST AssertionConsumerService at its recipient, the signing and encryption"
        " certificates (sp_certificate, sp_encryption_certificate), WantAssertionsSigned"
        " from require_signed, the NameID formats; valid against the SAML 2.0 metadata"
        " schema. `jitprov serve` publishes it at GET /metadata/CONN.",
    )
    spm.add_argument("conn_id", metavar="CONN", help="the connection")
    spm.set_defaults(run=run_sp_metadata)
    status = actions.add_parser(
        "status",
        parents=[common],
        help="where each connection's keys come from, their expiry, the last fetch",
        description="For each connection (or CONN): its key sources (certificates, metadata,"
        " metadata_url, jwks, discovery, jwks_uri, client secret) with their expiry dates"
        " and last fetch, and a warning for anything expired, expiring within 30 days, or"
        " whose last fetch failed. Nothing is fetched (refresh does that); exit 0 either"
        " way.",
    )
    status.add_argument("conn_id", nargs="?", metavar="CONN", help="only this connection")
    status.set_defaults(run=run_status)


def _missing_action(args: argparse.Namespace, ws: Workspace) -> int:
    raise CommandError(
        "connection needs an action: import-metadata FILE [--id ID], sp-metadata CONN,"
        " refresh [CONN] or status [CONN]"
    )


def run_sp_metadata(args: argparse.Namespace, ws: Workspace) -> int:
    from engine.saml.sp_metadata import SpMetadataError, sp_metadata

    try:
        document = sp_metadata(ws.config.connection(args.conn_id))
    except SpMetadataError as exc:
        raise CommandError(str(exc)) from None
    if args.json:
        print_json({"connection": args.conn_id, "metadata": document.decode("utf-8")})
    else:
        sys.stdout.write(document.decode("utf-8"))
    return EXIT_OK


def run_status(args: argparse.Namespace, ws: Workspace) -> int:
    from datetime import UTC, datetime

    from engine.keysources import key_status

    found = key_status(ws.config, datetime.now(UTC), args.conn_id)
    if args.json:
        print_json(
            [
                {
                    "connection": s.connection,
                    "sources": list(s.sources),
                    "warnings": list(s.warnings),
                }
                for s in found
            ]
        )
        return EXIT_OK
    for s in found:
        print(s.connection)
        for source in s.sources:
            print(f"  {source}")
        for warning in s.warnings:
            print(f"  warning: {warning}")
    return EXIT_OK


def run_refresh(args: argparse.Namespace, ws: Workspace) -> int:
    from engine.keysources import fetching_connections, refresh

    config = ws.config
    if not fetching_connections(config, args.conn_id):
        which = f"connection {args.conn_id!r} does" if args.conn_id else "no connection does"
        raise CommandError(f"{which} not fetch its keys (metadata_url, discovery, jwks_uri)")
    results = refresh(config, args.conn_id)
    if args.json:
        print_json(
            [
                {"connection": r.connection, "url": r.url, "ok": r.ok, "detail": r.detail}
                for r in results
            ]
        )
    else:
        for r in results:
            print(f"{r.connection}: {'ok' if r.ok else 'error'}: {r.url}: {r.detail}")
    return EXIT_OK if all(r.ok for r in results) else EXIT_USAGE


def run_import(args: argparse.Namespace, ws: Workspace) -> int:
    config_path = ws.config.path
    # On use: the SAML stack (lxml, xmlsec) is slow to import and other commands skip it.
    from engine.saml.metadata import MetadataError
    from engine.saml.workspace import import_metadata

    if args.metadata_url is None and (args.metadata_certificate or args.metadata_unsigned):
        raise CommandError("--metadata-certificate and --metadata-unsigned go with --metadata-url")
    if args.metadata_url is not None and not (args.metadata_certificate or args.metadata_unsigned):
        raise CommandError(
            "--metadata-url needs --metadata-certificate PATH (the certificate the metadata"
            " is signed with), or --metadata-unsigned to accept it unsigned"
        )
    try:
        done = import_metadata(
            config_path,
            Path(args.file),
            connection_id=args.conn_id,
            entity=args.entity,
            audience=args.audience,
            recipient=args.recipient,
            require_signed=args.require_signed,
            decryption_key=args.decryption_key,
            metadata_url=args.metadata_url,
            metadata_certificate=args.metadata_certificate,
        )
    except MetadataError as exc:
        raise CommandError(f"{args.file}: {exc}") from None
    if args.json:
        print_json(
            {
                "connection": done.connection_id,
                "issuer": done.entity_id,
                "certificates": [str(p.relative_to(config_path.parent)) for p in done.certificates],
                "rules": str(done.rules.relative_to(config_path.parent)),
                "audience": done.audience,
                "sso_url": done.sso_url,
                "warnings": list(done.warnings),
            }
        )
        return EXIT_OK
    print(f"added [connections.{done.connection_id}] to {config_path.name}")
    print(f"  issuer       {done.entity_id}")
    for cert in done.certificates:
        print(f"  certificate  {cert.relative_to(config_path.parent)}")
    if args.metadata_url is not None:
        print(f"  metadata     {args.metadata_url} (fetched and kept current)")
    made = " (created)" if done.rules_created else ""
    print(f"  rules        {done.rules.relative_to(config_path.parent)}{made}")
    print(f"  audience     {done.audience}")
    if done.sso_url:
        print(f"  IdP sign-in  {done.sso_url}")
    for warning in done.warnings:
        print(f"jitprov: warning: {warning}", file=sys.stderr)
    return EXIT_OK
