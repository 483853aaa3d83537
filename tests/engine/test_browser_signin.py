"""A person's browser through `serve`, at the HTTP level: a SAML response posted by the
IdP's form goes on to the application with a one-time `jitprov_ref` (SP-initiated: to
the request's return URL; IdP-initiated: to an allowed RelayState), the application
picks the result up once with the service token, and every refusal is a clear answer,
an audit row and no account change."""

from __future__ import annotations

import base64
import hashlib
import sqlite3
import sys
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from lxml import etree
from starlette.testclient import TestClient

if str(Path(__file__).parent) not in sys.path:  # tests/engine is not an importable package
    sys.path.insert(0, str(Path(__file__).parent))
from sso_fixtures import APP, response, workspace

from engine.config import load_config
from engine.service import create_app

TOKEN = "s3rvice-t0ken"
ERRORS = "https://app.example.com/sso-error"
BROWSER = {"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"}
APPLICATION = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def root(tmp_path: Path) -> Path:
    workspace(tmp_path, f'error_url = "{ERRORS}"\n')
    return tmp_path


@pytest.fixture(params=[False, True], ids=["event-loop", "pipeline-threads"])
def client(root: Path, request: pytest.FixtureRequest) -> Iterator[TestClient]:
    """serve's two ways of running sign-ins: on the event loop (a SQLite store's
    default) and in pipeline threads (a PostgreSQL store's)."""
    app = create_app(load_config(root / "jitprov.toml"), token=TOKEN, threads=request.param)
    with TestClient(app, base_url="https://testserver", follow_redirects=False) as c:
        yield c


def start(client: TestClient, return_to: str = f"{APP}home") -> str:
    """GET /login as a browser: the recorded request's ID."""
    answer = client.get("/login/idp", params={"return_to": return_to}, headers=BROWSER)
    assert answer.status_code == 303, answer.text
    query = parse_qs(urlsplit(answer.headers["location"]).query)
    xml = zlib.decompress(base64.b64decode(query["SAMLRequest"][0]), -15)
    return str(etree.fromstring(xml).get("ID"))


def post(client: TestClient, token: bytes, relay: str | None = None) -> tuple[int, dict[str, str]]:
    """The IdP's form, submitted by the browser: the status and the answer's headers."""
    form = {"SAMLResponse": base64.b64encode(token).decode()}
    if relay is not None:
        form["RelayState"] = relay
    answer = client.post("/acs/idp", data=form, headers=BROWSER)
    assert answer.headers["cache-control"] == "no-store"
    return answer.status_code, dict(answer.headers)


def ref_of(location: str, where: str) -> str:
    assert location.startswith(where) and location[len(where)] in "?&", location
    return parse_qs(urlsplit(location).query)["jitprov_ref"][0]


def pickup(client: TestClient, ref: str, headers: dict[str, str] = APPLICATION) -> tuple[int, dict]:
    answer = client.post("/pickup", data={"jitprov_ref": ref}, headers=headers)
    assert answer.headers.get("cache-control") == "no-store" or answer.status_code == 401
    return answer.status_code, answer.json()


def rows(root: Path, sql: str) -> list[tuple]:
    with sqlite3.connect(root / "jitprov.db") as db:
        return db.execute(sql).fetchall()


def test_sp_initiated_goes_to_the_return_url_and_is_picked_up_once(
    client: TestClient, root: Path
) -> None:
    request_id = start(client)
    status, headers = post(client, response("_a1", request_id))
    assert status == 303
    ref = ref_of(headers["location"], f"{APP}home")
    assert headers["referrer-policy"] == "no-referrer"
    assert "SAMLResponse" not in headers["location"] and "jdoe" not in headers["location"]
    code, result = pickup(client, ref)
    assert code == 200 and result["outcome"] == "created"
    assert result["user"]["username"] == "jdoe@example.com"
    assert rows(root, "SELECT count(*) FROM pending_requests") == [(0,)]
    # Once: the second pickup is refused and audited; the store keeps only the hash.
    code, again = pickup(client, ref)
    assert (code, again["reason"]) == (410, "replay")
    assert rows(root, "SELECT outcome, reason FROM audit ORDER BY id DESC LIMIT 1") == [
        ("rejected", "replay")
    ]
    hashed = hashlib.sha256(ref.encode()).hexdigest()
    assert rows(root, "SELECT ref_hash, result FROM handoffs") == [(hashed, "")]


def test_a_replayed_unknown_or_expired_request_goes_to_the_error_url(
    client: TestClient, root: Path
) -> None:
    request_id = start(client)
    assert post(client, response("_a1", request_id))[0] == 303
    users = rows(root, "SELECT id, username, updated_at FROM users")
    # A second response to the answered request, one to a request never made, and one
    # to a request that expired: each refused, audited, the account as it was.
    status, headers = post(client, response("_a2", request_id))
    assert (status, headers["location"]) == (303, f"{ERRORS}?error=wrong-request")
    status, headers = post(client, response("_a3", "_jitprov-forged"))
    assert (status, headers["location"]) == (303, f"{ERRORS}?error=wrong-request")
    late = start(client)
    with sqlite3.connect(root / "jitprov.db") as db:
        db.execute("UPDATE pending_requests SET expires_at = '2001-01-01T00:00:00Z'")
    status, headers = post(client, response("_a4", late))
    assert (status, headers["location"]) == (303, f"{ERRORS}?error=wrong-request")
    assert rows(root, "SELECT id, username, updated_at FROM users") == users
    audit = rows(root, "SELECT outcome, reason FROM audit ORDER BY id")
    assert audit == [("created", None)] + [("rejected", "wrong-request")] * 3


def test_idp_initiated_goes_to_an_allowed_relay_state_only(client: TestClient, root: Path) -> None:
    status, headers = post(client, response("_u1"), relay=f"{APP}reports?month=5")
    assert status == 303
    ref = ref_of(headers["location"], f"{APP}reports?month=5")
    assert pickup(client, ref)[1]["outcome"] == "created"
    # Without RelayState: the first of return_urls.
    status, headers = post(client, response("_u2"))
    assert status == 303 and ref_of(headers["location"], APP)
    # Outside the allowlist: refused before anything is written (no open redirect).
    before = rows(root, "SELECT id, username, updated_at FROM users")
    for relay in ("https://evil.example/", "https://app.example.com.evil.example/", "/x"):
        status, headers = post(client, response(f"_u-{relay}"), relay=relay)
        assert (status, headers["location"]) == (303, f"{ERRORS}?error=wrong-return-url")
    assert rows(root, "SELECT id, username, updated_at FROM users") == before
    reasons = rows(root, "SELECT reason FROM audit WHERE outcome = 'rejected'")
    assert reasons == [("wrong-return-url",)] * 3


def test_without_an_error_url_a_refusal_is_a_plain_page(tmp_path: Path) -> None:
    app = create_app(load_config(workspace(tmp_path)), token=TOKEN)
    with TestClient(app, follow_redirects=False) as client:
        answer = client.post(
            "/acs/idp",
            data={"SAMLResponse": base64.b64encode(b"<not-a-response/>").decode()},
            headers=BROWSER,
        )
    assert answer.status_code == 401 and answer.headers["cache-control"] == "no-store"
    assert answer.headers["content-type"].startswith("text/html")
    assert "Sign-in refused" in answer.text and "reason: malformed" in answer.text
    assert "not-a-response" not in answer.text  # no details of the token


def test_pickup_needs_the_service_token_and_expires(client: TestClient, root: Path) -> None:
    _, headers = post(client, response("_p1"), relay=f"{APP}x")
    ref = ref_of(headers["location"], f"{APP}x")
    code, body = pickup(client, ref, headers={})
    assert code == 401 and "outcome" not in body
    code, body = pickup(client, ref, headers={"Authorization": "Bearer wrong"})
    assert code == 401
    assert pickup(client, ref)[0] == 200  # the refused tries did not use it up
    _, headers = post(client, response("_p2"), relay=f"{APP}x")
    late = ref_of(headers["location"], f"{APP}x")
    with sqlite3.connect(root / "jitprov.db") as db:
        db.execute("UPDATE handoffs SET expires_at = '2001-01-01T00:00:00Z'")
    code, body = pickup(client, late)
    assert (code, body["reason"]) == (410, "expired")
    code, body = pickup(client, "A" * 43)
    assert (code, body["reason"]) == (404, "wrong-request")
    code, body = pickup(client, "not a ref")
    assert (code, body["reason"]) == (400, "malformed")
    audit = rows(root, "SELECT reason, message FROM audit WHERE outcome = 'rejected'")
    assert [r for r, _ in audit] == ["expired", "wrong-request", "malformed"]
    assert all(m.startswith("pickup: ") and late not in m for _, m in audit)


def test_the_application_still_gets_json_and_needs_its_token(client: TestClient) -> None:
    form = {"SAMLResponse": base64.b64encode(response("_j1")).decode()}
    assert client.post("/acs/idp", data=form).status_code == 401  # no token, not a browser
    answer = client.post("/acs/idp", data=form, headers={**APPLICATION, **BROWSER})
    assert answer.status_code == 200 and answer.json()["outcome"] == "created"


def test_login_refusals_for_a_browser(client: TestClient, root: Path) -> None:
    answer = client.get(
        "/login/idp", params={"return_to": "https://evil.example/"}, headers=BROWSER
    )
    assert answer.status_code == 303
    assert answer.headers["location"] == f"{ERRORS}?error=wrong-return-url"
    assert rows(root, "SELECT count(*) FROM pending_requests") == [(0,)]
    assert rows(root, "SELECT connection, outcome, reason FROM audit") == [
        ("idp", "rejected", "wrong-return-url")
    ]
    api = client.get("/login/idp", params={"return_to": "https://evil.example/"})
    assert api.status_code == 400 and "return_urls" in api.json()["error"]


def test_a_flood_of_sign_ins_is_bounded(
    client: TestClient, root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Anyone may start a sign-in: past MAX_PENDING open ones per connection a new one
    is refused (503) and nothing more is stored; expired ones are forgotten."""
    from engine.store import reads

    monkeypatch.setattr(reads, "MAX_PENDING", 2)
    start(client)
    start(client)
    answer = client.get("/login/idp", params={"return_to": f"{APP}home"})
    assert answer.status_code == 503 and "try again in a few minutes" in answer.json()["error"]
    assert answer.headers["cache-control"] == "no-store"
    assert rows(root, "SELECT count(*) FROM pending_requests") == [(2,)]
    with sqlite3.connect(root / "jitprov.db") as db:  # long expired: forgotten on the next
        db.execute("UPDATE pending_requests SET expires_at = '2001-01-01T00:00:00Z'")
    start(client)
    assert rows(root, "SELECT count(*) FROM pending_requests") == [(1,)]


def test_the_answer_must_come_to_the_browser_that_asked(client: TestClient, root: Path) -> None:
    """Login CSRF: an attacker starts a sign-in, completes it with their own account and
    has a victim's browser post the response. /login set a sign-in cookie in the
    attacker's browser; the victim's browser has another, or none: refused."""
    request_id = start(client)
    assert client.cookies.get("jitprov_signin")
    victim_cookies = {"jitprov_signin": "v" * 43}
    form = {"SAMLResponse": base64.b64encode(response("_c1", request_id)).decode()}
    client.cookies.clear()
    answer = client.post("/acs/idp", data=form, headers=BROWSER, cookies=victim_cookies)
    assert (answer.status_code, answer.headers["location"]) == (
        303,
        f"{ERRORS}?error=wrong-request",
    )
    other = start(client)
    client.cookies.clear()  # a browser that sends no cookie at all
    form = {"SAMLResponse": base64.b64encode(response("_c2", other)).decode()}
    answer = client.post("/acs/idp", data=form, headers=BROWSER)
    assert answer.headers["location"] == f"{ERRORS}?error=wrong-request"
    messages = rows(root, "SELECT message FROM audit WHERE reason = 'wrong-request'")
    assert all("started in another browser" in m for (m,) in messages) and len(messages) == 2
    assert rows(root, "SELECT count(*) FROM users") == [(0,)]


def test_a_browser_sign_in_on_a_postgresql_store(
    tmp_path: Path, new_database: Callable[[], str]
) -> None:
    """The same flow where several servers share a PostgreSQL store: the request, the
    hand-off and the pickup all go through it (serve's pipeline threads)."""
    workspace(tmp_path, f'error_url = "{ERRORS}"\n', store=f'url = "{new_database()}"')
    app = create_app(load_config(tmp_path / "jitprov.toml"), token=TOKEN)
    with TestClient(app, base_url="https://testserver", follow_redirects=False) as client:
        request_id = start(client)
        status, headers = post(client, response("_pg1", request_id))
        assert status == 303
        ref = ref_of(headers["location"], f"{APP}home")
        code, result = pickup(client, ref)
        assert (code, result["outcome"]) == (200, "created")
        assert pickup(client, ref)[1]["reason"] == "replay"
        status, headers = post(client, response("_pg2", request_id))  # its request is used
        assert headers["location"] == f"{ERRORS}?error=wrong-request"
