"""Per-file caches: keys are read once per file, connections taking turns never evict
each other's, and a changed file is read again (engine.filecache)."""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from engine.config import Config, Connection, load_config
from engine.filecache import FileCache
from engine.intake import read_token
from engine.oidc import keys as oidc_keys
from engine.provision import CompiledRulesLike, Provisioner, load_rules
from engine.saml import keys as saml_keys

if str(Path(__file__).parent) not in sys.path:  # tests/engine is not an importable package
    sys.path.insert(0, str(Path(__file__).parent))
from oidc_fixtures import AUDIENCE, ISSUER, NOW, claims, public_jwk, rsa_key, sign, write_jwks
from oidc_fixtures import connection as oidc_connection
from saml_fixtures import IDP_CERT, IDP_KEY, LATER, OTHER_CERT, OTHER_KEY, make_token
from saml_fixtures import connection as saml_connection


def _counting(monkeypatch: pytest.MonkeyPatch, module: Any, name: str) -> list[tuple[Any, ...]]:
    """Record each call of `module.name` (the file reader behind a cache)."""
    calls: list[tuple[Any, ...]] = []
    real: Callable[..., Any] = getattr(module, name)

    def counted(*args: Any) -> Any:
        calls.append(args)
        return real(*args)

    monkeypatch.setattr(module, name, counted)
    return calls


def _touch(path: Path) -> None:
    """Make the file look changed even on a coarse-grained clock."""
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 2_000_000_000))


# --- OIDC: JWKS files ------------------------------------------------------------------


def test_two_oidc_connections_taking_turns_never_reload_their_jwks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    loads = _counting(monkeypatch, oidc_keys, "read_jwks")
    first = oidc_connection(write_jwks(tmp_path, public_jwk(rsa_key("a")), name="a.json"))
    second = oidc_connection(
        write_jwks(tmp_path, public_jwk(rsa_key("b")), name="b.json"), id="second"
    )
    tokens = {first.id: sign(claims(), rsa_key("a")), second.id: sign(claims(), rsa_key("b"))}
    for _ in range(20):
        for conn in (first, second):
            assert read_token(tokens[conn.id], conn, now=NOW).name_id == "user-1"
    assert sorted(str(args[0]) for args in loads) == [str(first.jwks), str(second.jwks)]


def test_more_jwks_files_than_any_small_cache_each_load_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    loads = _counting(monkeypatch, oidc_keys, "read_jwks")
    jwk = public_jwk(rsa_key("a"))
    paths = [write_jwks(tmp_path, jwk, name=f"{n}.json") for n in range(300)]
    for _ in range(2):
        for path in paths:
            assert oidc_keys.load_jwks(path)
    assert len(loads) == len(paths)


def test_a_changed_jwks_file_is_read_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    loads = _counting(monkeypatch, oidc_keys, "read_jwks")
    path = write_jwks(tmp_path, public_jwk(rsa_key("a")))
    conn = oidc_connection(path)
    read_token(sign(claims(), rsa_key("a")), conn, now=NOW)
    path.write_text(json.dumps({"keys": [public_jwk(rsa_key("b"))]}), encoding="utf-8")
    _touch(path)
    assert read_token(sign(claims(), rsa_key("b")), conn, now=NOW).name_id == "user-1"
    read_token(sign(claims(), rsa_key("b")), conn, now=NOW)
    assert len(loads) == 2


# --- SAML: certificate files -----------------------------------------------------------


@pytest.fixture
def two_saml_connections(tmp_path: Path) -> list[tuple[Connection, bytes]]:
    """Two connections, each trusting its own copy of a different IdP certificate, and a
    base64 token for each."""
    found = []
    for name, key, cert in (("first", IDP_KEY, IDP_CERT), ("second", OTHER_KEY, OTHER_CERT)):
        copy = tmp_path / f"{name}.crt"
        shutil.copyfile(cert, copy)
        conn = saml_connection(id=name, certificates=(copy,))
        found.append((conn, make_token("base64", key=key, cert=cert)))
    return found


def test_two_saml_connections_taking_turns_never_reload_their_certificates(
    two_saml_connections: list[tuple[Connection, bytes]], monkeypatch: pytest.MonkeyPatch
) -> None:
    loads = _counting(monkeypatch, saml_keys, "read_certs")
    for _ in range(10):
        for conn, token in two_saml_connections:
            assert read_token(token, conn, now=LATER).name_id == "jdoe@example.com"
    assert sorted(str(args[0]) for args in loads) == sorted(
        str(conn.certificates[0]) for conn, _ in two_saml_connections
    )


def test_a_changed_certificate_file_is_read_again(
    two_saml_connections: list[tuple[Connection, bytes]], monkeypatch: pytest.MonkeyPatch
) -> None:
    loads = _counting(monkeypatch, saml_keys, "read_certs")
    (conn, token), (_, other_token) = two_saml_connections
    read_token(token, conn, now=LATER)
    cert = conn.certificates[0]
    cert.write_bytes(OTHER_CERT.read_bytes())  # the IdP rotated its key
    _touch(cert)
    assert read_token(other_token, conn, now=LATER).name_id == "jdoe@example.com"
    read_token(other_token, conn, now=LATER)
    assert len(loads) == 2


def test_a_file_cache_keeps_one_entry_per_file(tmp_path: Path) -> None:
    cache: FileCache[bytes] = FileCache(limit=3)
    paths = [tmp_path / f"{n}.txt" for n in range(4)]
    for path in paths:
        path.write_bytes(path.name.encode())
    for _ in range(3):
        for path in paths[:3]:
            assert cache.get(path, path, path.read_bytes) == path.name.encode()
    assert len(cache) == 3
    paths[0].write_bytes(b"changed")
    _touch(paths[0])
    assert cache.get(paths[0], paths[0], paths[0].read_bytes) == b"changed"
    assert len(cache) == 3  # replaced its own entry
    cache.get(paths[3], paths[3], paths[3].read_bytes)  # past the limit: the oldest goes
    assert len(cache) == 3


# --- compiled rules --------------------------------------------------------------------


def test_a_provisioner_compiles_each_connections_rules_once(tmp_path: Path) -> None:
    write_jwks(tmp_path, public_jwk(rsa_key("a")))
    (tmp_path / "r.rules").write_text("username = subject\n", encoding="utf-8")
    sections = "".join(
        f'[connections.{name}]\nprotocol = "oidc"\nissuer = "{ISSUER}"\n'
        f'audience = "{AUDIENCE}"\njwks = "jwks.json"\nrules = "r.rules"\n'
        for name in ("first", "second")
    )
    (tmp_path / "jitprov.toml").write_text(
        f'[store]\npath = "jitprov.db"\n{sections}', encoding="utf-8"
    )
    config = load_config(tmp_path / "jitprov.toml")
    loaded: list[str] = []

    def loader(conn: Connection, config: Config) -> CompiledRulesLike:
        loaded.append(conn.id)
        return load_rules(conn, config)

    provisioner = Provisioner(config, rules_loader=loader)
    token = sign(claims(), rsa_key("a"))
    try:
        for _ in range(5):
            for name in ("first", "second"):
                result = provisioner.apply(name, token, now=NOW, dry_run=True)
                assert result.outcome == "created", result.message
    finally:
        provisioner.close()
    assert sorted(loaded) == ["first", "second"]
