"""`jitprov serve`: SAML POST binding and id_token deliveries answered with the result."""

from __future__ import annotations

import base64
import json
import shutil
import sys
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from engine.config import load_config
from engine.saml.mint import mint
from engine.sample import parse_sample_text
from engine.serve import ProvisioningServer

if str(Path(__file__).parent) not in sys.path:  # tests/engine is not an importable package
    sys.path.insert(0, str(Path(__file__).parent))
import provision_fixtures

DEMO = Path(__file__).resolve().parents[2] / "examples" / "demo"


@pytest.fixture
def server(tmp_path: Path, store_backend: str) -> Iterator[str]:
    """The demo workspace served over HTTP, on SQLite or on PostgreSQL (each request
    thread with its own connection)."""
    shutil.copytree(DEMO, tmp_path / "demo", ignore=shutil.ignore_patterns("*.db*"))
    if provision_fixtures.NEW_DATABASE is not None:  # the PostgreSQL variant
        config = tmp_path / "demo" / "jitprov.toml"
        url = provision_fixtures.NEW_DATABASE()
        config.write_text(config.read_text().replace('path = "jitprov.db"', f'url = "{url}"'))
    httpd = ProvisioningServer(
        ("127.0.0.1", 0), load_config(tmp_path / "demo" / "jitprov.toml"), quiet=True
    )
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def post(url: str, body: bytes, content_type: str) -> tuple[int, Any]:
    request = urllib.request.Request(url, body, {"Content-Type": content_type}, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def form(**fields: str) -> bytes:
    return urllib.parse.urlencode(fields).encode()


def test_a_signed_response_is_provisioned_and_a_replay_refused(server: str) -> None:
    config = load_config(DEMO / "jitprov.toml")
    sample = parse_sample_text((DEMO / "samples" / "okta-sales.toml").read_text())
    fresh = mint(
        sample,
        config.connection("okta"),
        key_pem=(DEMO / "certs" / "idp-test.key").read_bytes(),
        cert_pem=(DEMO / "certs" / "idp-test.crt").read_bytes(),
        encoding="base64",
    ).decode()
    url = f"{server}/acs/okta"
    form_type = "application/x-www-form-urlencoded"
    status, result = post(url, form(SAMLResponse=fresh, RelayState="/home"), form_type)
    assert (status, result["outcome"]) == (200, "created"), result
    assert result["user"]["username"] == "grace.hopper"
    status, result = post(url, form(SAMLResponse=fresh), form_type)
    assert (status, result["reason"]) == (401, "replay")
    token = base64.b64encode((DEMO / "samples" / "okta-engineer.xml").read_bytes()).decode()
    # The demo's tokens were minted for 2024-05-01: at the real clock they are expired.
    status, result = post(url, form(SAMLResponse=token), "application/x-www-form-urlencoded")
    assert (status, result["outcome"], result["reason"]) == (401, "rejected", "expired")
    assert result["subject"] == "Ada.Lovelace@example.com"
    assert set(result) == {
        "outcome",
        "connection",
        "subject",
        "user",
        "changes",
        "reason",
        "message",
        "sso",
        "trace",
    }


def test_routing_and_bad_requests(server: str) -> None:
    form_type = "application/x-www-form-urlencoded"
    assert post(f"{server}/acs/nope", form(SAMLResponse="x"), form_type)[0] == 404
    assert post(f"{server}/elsewhere", b"", form_type)[0] == 404
    status, body = post(f"{server}/oidc/okta", form(id_token="x"), form_type)
    assert status == 404 and "POST to /acs/okta" in body["error"]
    status, body = post(f"{server}/acs/okta", form(RelayState="x"), form_type)
    assert status == 400 and "SAMLResponse" in body["error"]
    status, body = post(f"{server}/acs/okta", b"{", "application/json")
    assert status == 400
    status, body = post(f"{server}/acs/okta", form(SAMLResponse="not a token"), form_type)
    assert (status, body["outcome"], body["reason"]) == (401, "rejected", "malformed")
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(f"{server}/acs/okta", timeout=10)
    assert info.value.code == 405
    with urllib.request.urlopen(f"{server}/healthz", timeout=10) as response:
        assert json.loads(response.read()) == {"status": "ok"}


def test_a_lone_surrogate_or_deep_json_is_an_answer_not_a_dropped_connection(
    server: str,
) -> None:
    """A JSON body's `"\\ud800"` dropped the connection (UnicodeEncodeError), and 20,000
    `[` a RecursionError: now a rejected result with an audit row, and a 400."""
    status, body = post(f"{server}/acs/okta", b'{"SAMLResponse": "\\ud800"}', "application/json")
    assert (status, body["outcome"], body["reason"]) == (401, "rejected", "malformed")
    status, body = post(f"{server}/acs/okta", b"[" * 20_000, "application/json")
    assert status == 400 and "nested too deeply" in body["error"]
