"""`jitprov mint SAMPLE.toml`: a signed SAML Response from a sample, for testing.

Issuer, audience and recipient come from the connection; the workspace's test IdP key
pair (`certs/idp-test.key`, `certs/idp-test.crt`, made by `jitprov init`) signs by
default. The token is printed on stdout.
"""

from __future__ import annotations

import argparse
from datetime import datetime
from pathlib import Path
from typing import Any

from engine.config import Config, Connection
from engine.moments import LATEST, stamp
from engine.sample import parse_sample_text
from engine.token import TokenRejected
from tui.cli import EXIT_OK, CommandError, Workspace, parse_time


def register(subparsers: Any, common: argparse.ArgumentParser) -> None:
    parser = subparsers.add_parser(
        "mint",
        parents=[common],
        help="a signed SAML response from a sample, for testing",
        description="Build a signed SAML 2.0 Response from a sample (TOML), valid for five "
        "minutes from --at; issuer, audience and recipient from the connection.",
    )
    parser.add_argument(
        "sample", metavar="SAMPLE.toml", help="a sample: TOML with subject and [attributes]"
    )
    parser.add_argument(
        "-c", "--connection", metavar="CONN", help="the connection (default: the only one)"
    )
    parser.add_argument("--key", metavar="K", help="signing key PEM (default certs/idp-test.key)")
    parser.add_argument("--cert", metavar="C", help="signing cert PEM (default certs/idp-test.crt)")
    parser.add_argument(
        "--sign",
        choices=("assertion", "response", "both"),
        default="assertion",
        help="what to sign (default: assertion)",
    )
    parser.add_argument(
        "--encrypt-for", metavar="CERT", help="encrypt the Assertion for this SP certificate (PEM)"
    )
    parser.add_argument(
        "--cipher",
        choices=("aes256-cbc", "aes256-gcm"),
        default="aes256-cbc",
        help="content encryption with --encrypt-for (default: aes256-cbc)",
    )
    parser.add_argument(
        "--encoding",
        choices=("xml", "base64", "deflate"),
        default="xml",
        help="xml, base64 (POST binding) or deflate (redirect binding)",
    )
    parser.add_argument(
        "--at",
        metavar="TIME",
        help="ISO 8601 start of validity, e.g. 2024-05-01T12:00:00Z (default: now)",
    )
    parser.set_defaults(run=run, needs_config=True)


def parse_at(text: str) -> datetime:
    """`--at`: ISO 8601; a time without an offset is UTC; in UTC, clamped to what a
    datetime can hold (tui.cli.parse_time)."""
    return parse_time(text, naive_utc=True)


def pick_connection(config: Config, name: str | None) -> Connection:
    """`-c`, or the only connection; it must be a saml2 one."""
    if name is not None:
        conn = config.connection(name)
    elif len(config.connections) == 1:
        conn = next(iter(config.connections.values()))
    else:
        known = ", ".join(sorted(config.connections)) or "none"
        raise CommandError(
            f"mint needs -c CONN when there is not exactly one connection (known: {known})"
        )
    if conn.protocol != "saml2":
        raise CommandError(f"connection {conn.id!r} is {conn.protocol}; mint makes SAML responses")
    return conn


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise CommandError(f"{what} {path}: cannot read: {exc.strerror or exc}") from None


def run(args: argparse.Namespace, ws: Workspace) -> int:
    config = ws.config
    conn = pick_connection(config, args.connection)
    if (args.key is None) != (args.cert is None):
        raise CommandError("--key and --cert go together")
    certs = config.root / "certs"
    key_path = Path(args.key) if args.key else certs / "idp-test.key"
    cert_path = Path(args.cert) if args.cert else certs / "idp-test.crt"
    if args.key is None and not key_path.is_file():
        raise CommandError(
            f"no test IdP key at {key_path} (run `jitprov init`, or pass --key K --cert C)"
        )
    sample_text = _read(Path(args.sample), "sample").decode("utf-8", errors="replace")
    try:
        sample = parse_sample_text(sample_text)
    except TokenRejected as exc:
        raise CommandError(f"{args.sample}: {exc.message}") from None
    encrypt_for = _read(Path(args.encrypt_for), "--encrypt-for") if args.encrypt_for else None
    from engine.saml.mint import VALIDITY, MintError, mint  # on use: slow to import

    at = parse_at(args.at) if args.at else None
    if at is not None and at > LATEST - VALIDITY:
        latest = stamp(LATEST - VALIDITY)
        raise CommandError(
            f"--at: too late for a token valid for {VALIDITY.seconds // 60} minutes "
            f"(the latest start is {latest})"
        )
    try:
        token = mint(
            sample,
            conn,
            key_pem=_read(key_path, "key"),
            cert_pem=_read(cert_path, "certificate"),
            signing=args.sign,
            encrypt_for=encrypt_for,
            cipher=args.cipher,
            encoding=args.encoding,
            at=at,
        )
    except MintError as exc:
        raise CommandError(f"cannot sign or encrypt the token: {exc}") from None
    print(token.decode("utf-8"))
    return EXIT_OK
