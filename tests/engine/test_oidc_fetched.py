"""Keys from the IdP (`jwks_uri`, `discovery`), against a real HTTP server on loopback:
rotation, unknown-kid floods, an IdP that is down or slow, the workspace's last good copy,
ETags, and the discovery document's issuer."""

from __future__ import annotations

import dataclasses
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

if str(Path(__file__).parent) not in sys.path:  # tests/engine is not an importable package
    sys.path.insert(0, str(Path(__file__).parent))
from http_fixtures import FakeIdp, fake_idp
from oidc_fixtures import ISSUER, check, claims, connection, public_jwk, refused, rsa_key, sign

from engine import remote
from engine.config import ConfigError, Connection, load_config


class Idp:
    """The fake IdP's OIDC side: its keys and discovery document, served by FakeIdp."""

    def __init__(self, server: FakeIdp) -> None:
        self.server = server
        self.stall, self.release, self.hits = server.stall, server.release, server.hits
        self._keys: list[dict[str, Any]] = []
        self._issuer = ISSUER
        server.content_type = "application/json"
        self.keys = [public_jwk(rsa_key("k1"), use="sig")]

    @property
    def down(self) -> bool:
        return self.server.down

    @down.setter
    def down(self, down: bool) -> None:
        self.server.down = down

    @property
    def not_modified(self) -> int:
        return self.server.not_modified

    @property
    def keys(self) -> list[dict[str, Any]]:
        return self._keys

    @keys.setter
    def keys(self, keys: list[dict[str, Any]]) -> None:
        self._keys = keys
        self.server.documents["/jwks"] = json.dumps({"keys": keys}).encode()
        self._publish()

    @property
    def issuer(self) -> str:
        return self._issuer

    @issuer.setter
    def issuer(self, issuer: str) -> None:
        self._issuer = issuer
        self._publish()

    def _publish(self) -> None:
        document = {"issuer": self._issuer, "jwks_uri": self.jwks_url}
        self.server.documents[DISCOVERY] = json.dumps(document).encode()

    @property
    def jwks_url(self) -> str:
        return self.server.url("/jwks")

    @property
    def discovery_url(self) -> str:
        return self.server.url(DISCOVERY)


DISCOVERY = "/.well-known/openid-configuration"


@pytest.fixture
def idp() -> Iterator[Idp]:
    remote.forget()
    with fake_idp() as server:
        yield Idp(server)
    remote.forget()


def fetching(tmp_path: Path, **keys: Any) -> Connection:
    conn = connection(tmp_path / "rules", cache_dir=tmp_path / "cache", **keys)
    return dataclasses.replace(conn, jwks=None)


def stale(conn: Connection) -> remote.Remote:
    """The connection's JWKS copy, made stale and its last attempt long ago."""
    assert conn.jwks_uri is not None
    source = remote.remote(conn.jwks_uri, conn.cache_dir)
    assert source.copy is not None
    source.copy.fresh_until = 0.0
    source.last_attempt -= 3600
    source.last_forced -= 3600
    return source


def test_keys_are_fetched_once_while_fresh(idp: Idp, tmp_path: Path) -> None:
    conn = fetching(tmp_path, jwks_uri=idp.jwks_url)
    for n in range(5):
        assert check(sign(claims(sub=f"u{n}"), rsa_key("k1")), conn).name_id == f"u{n}"
    assert idp.hits["/jwks"] == 1


def test_a_rotated_key_validates_after_one_refetch(idp: Idp, tmp_path: Path) -> None:
    conn = fetching(tmp_path, jwks_uri=idp.jwks_url)
    assert check(sign(claims(), rsa_key("k1")), conn)
    idp.keys = [public_jwk(rsa_key("k2"), use="sig")]  # the IdP rotates
    assert check(sign(claims(), rsa_key("k2")), conn).name_id == "user-1"
    assert idp.hits["/jwks"] == 2
    # The old key is gone from the set; its tokens are refused without another fetch.
    assert refused(sign(claims(), rsa_key("k1")), conn).reason == "untrusted-signer"
    assert idp.hits["/jwks"] == 2


def test_a_flood_of_unknown_kids_fetches_at_most_once_per_interval(
    idp: Idp, tmp_path: Path
) -> None:
    conn = fetching(tmp_path, jwks_uri=idp.jwks_url, jwks_min_refresh=60.0)
    assert check(sign(claims(), rsa_key("k1")), conn)
    for n in range(50):
        forged = sign(claims(), rsa_key("k1"), kid=f"forged-{n}")
        assert refused(forged, conn).reason == "untrusted-signer"
    assert idp.hits["/jwks"] == 2  # the first fetch and one refetch, not 51
    stale(conn)  # the interval has passed
    assert refused(sign(claims(), rsa_key("k1"), kid="forged-x"), conn).reason
    assert idp.hits["/jwks"] == 3


def test_an_idp_that_is_down_leaves_the_cached_keys_working(idp: Idp, tmp_path: Path) -> None:
    conn = fetching(tmp_path, jwks_uri=idp.jwks_url)
    assert check(sign(claims(), rsa_key("k1")), conn)
    idp.down = True
    source = stale(conn)
    assert check(sign(claims(sub="later"), rsa_key("k1")), conn).name_id == "later"
    assert idp.hits["/jwks"] == 2 and "HTTP 503" in (source.last_error or "")
    assert check(sign(claims(sub="again"), rsa_key("k1")), conn)  # no retry within the interval
    assert idp.hits["/jwks"] == 2


def test_a_restart_during_an_outage_has_the_workspace_s_last_good_copy(
    idp: Idp, tmp_path: Path
) -> None:
    conn = fetching(tmp_path, jwks_uri=idp.jwks_url)
    assert check(sign(claims(), rsa_key("k1")), conn)
    assert list((tmp_path / "cache").glob("*.json"))
    idp.down = True
    remote.forget()  # a new process
    assert check(sign(claims(sub="after-restart"), rsa_key("k1")), conn)


def test_no_keys_at_all_is_untrusted_signer_saying_why(idp: Idp, tmp_path: Path) -> None:
    idp.down = True
    problem = refused(sign(claims(), rsa_key("k1")), fetching(tmp_path, jwks_uri=idp.jwks_url))
    assert problem.reason == "untrusted-signer"
    assert "cannot fetch the connection's signing keys" in problem.message
    assert "HTTP 503" in problem.message


def test_a_slow_idp_costs_a_sign_in_the_timeout_at_most(
    idp: Idp, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(remote, "FETCH_TIMEOUT", 0.2)
    conn = fetching(tmp_path, jwks_uri=idp.jwks_url)
    idp.stall.set()
    problem = refused(sign(claims(), rsa_key("k1")), conn)
    assert problem.reason == "untrusted-signer" and "Timeout" in problem.message
    idp.stall.clear()
    idp.release.set()
    stale_source = remote.remote(idp.jwks_url, conn.cache_dir)
    stale_source.last_attempt -= 3600
    assert check(sign(claims(), rsa_key("k1")), conn)  # once it answers again
    idp.release.clear()
    idp.stall.set()  # slow again: the cached keys serve, after one bounded try
    stale(conn)
    assert check(sign(claims(sub="while-slow"), rsa_key("k1")), conn).name_id == "while-slow"


def test_a_stale_copy_is_revalidated_with_its_etag(idp: Idp, tmp_path: Path) -> None:
    conn = fetching(tmp_path, jwks_uri=idp.jwks_url)
    assert check(sign(claims(), rsa_key("k1")), conn)
    stale(conn)
    assert check(sign(claims(sub="b"), rsa_key("k1")), conn)
    assert idp.not_modified == 1


def test_discovery_gives_the_jwks(idp: Idp, tmp_path: Path) -> None:
    conn = fetching(tmp_path, discovery=idp.discovery_url)
    assert check(sign(claims(), rsa_key("k1")), conn).name_id == "user-1"
    assert idp.hits["/.well-known/openid-configuration"] == 1 and idp.hits["/jwks"] == 1


def test_a_discovery_document_for_another_issuer_is_refused(idp: Idp, tmp_path: Path) -> None:
    idp.issuer = "https://evil.example/"
    problem = refused(
        sign(claims(), rsa_key("k1")), fetching(tmp_path, discovery=idp.discovery_url)
    )
    assert problem.reason == "untrusted-signer"
    assert "names issuer 'https://evil.example/'" in problem.message
    assert idp.hits["/jwks"] == 0


BASE = """
[store]
path = "jitprov.db"

[connections.idp]
protocol = "oidc"
issuer = "https://idp.example/"
audience = "client-123"
rules = "idp.rules"
"""


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ('jwks_uri = "http://idp.example/jwks"\n', "expected an https:// URL"),
        ('discovery = "ftp://idp.example/x"\n', "expected an https:// URL"),
        (
            'jwks_uri = "https://idp.example/jwks"\ndiscovery = "https://idp.example/d"\n',
            "set either jwks_uri or discovery",
        ),
        (
            'jwks_uri = "https://idp.example/jwks"\njwks_min_refresh = 0\n',
            "expected seconds from 1 to 86400",
        ),
        ("", "a jwks_uri or discovery URL"),
    ],
)
def test_fetch_settings_are_checked(tmp_path: Path, extra: str, message: str) -> None:
    (tmp_path / "idp.rules").write_text("username = subject\n")
    (tmp_path / "jitprov.toml").write_text(BASE + extra)
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "jitprov.toml")
    assert message in str(info.value)


def test_the_config_reads_fetch_settings(tmp_path: Path) -> None:
    (tmp_path / "idp.rules").write_text("username = subject\n")
    text = BASE + 'discovery = "https://idp.example/.well-known/openid-configuration"\n'
    (tmp_path / "jitprov.toml").write_text(text + "jwks_min_refresh = 300\n")
    conn = load_config(tmp_path / "jitprov.toml").connection("idp")
    assert conn.discovery and conn.jwks_uri is None and conn.jwks_min_refresh == 300.0
    assert conn.cache_dir is not None and conn.cache_dir.parts[-2:] == (".jitprov", "cache")


def test_connection_refresh_fetches_the_keys_now(
    idp: Idp, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tui.cli import run

    (tmp_path / "idp.rules").write_text("username = subject\n")
    text = BASE.replace('issuer = "https://idp.example/"', f'issuer = "{ISSUER}"')
    config = tmp_path / "jitprov.toml"
    config.write_text(text + f'discovery = "{idp.discovery_url}"\n')
    assert run(["connection", "refresh", "--config", str(config)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(
        f"idp: ok: {idp.discovery_url}: 1 signing key(s) from {idp.jwks_url} (k1)"
    )
    idp.down = True
    assert run(["connection", "refresh", "idp", "--json", "--config", str(config)]) == 1
    [report] = json.loads(capsys.readouterr().out)
    assert report["ok"] is False and "HTTP 503" in report["detail"]


def _wait_for(condition: Any, what: str) -> None:
    import time

    deadline = time.monotonic() + 30
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)  # polling the condition


def test_the_background_refresher_fetches_ahead_of_staleness(idp: Idp, tmp_path: Path) -> None:
    from engine.keysources import Refresher

    (tmp_path / "idp.rules").write_text("username = subject\n")
    text = BASE.replace('issuer = "https://idp.example/"', f'issuer = "{ISSUER}"')
    (tmp_path / "jitprov.toml").write_text(text + f'jwks_uri = "{idp.jwks_url}"\n')
    config = load_config(tmp_path / "jitprov.toml")
    quiet = Refresher(config, interval=0.01, ahead=0.0)  # a fresh copy is left alone
    quiet.start()
    _wait_for(lambda: quiet.rounds >= 3, "three rounds")
    quiet.stop()
    assert idp.hits["/jwks"] == 1  # the first round fetched the missing copy, no more
    eager = Refresher(config, interval=0.01, ahead=7200.0)  # max-age is 3600: always due
    eager.start()
    _wait_for(lambda: idp.hits["/jwks"] >= 3, "two more fetches")
    eager.stop()
    conn = config.connection("idp")
    assert check(sign(claims(), rsa_key("k1")), conn).name_id == "user-1"
