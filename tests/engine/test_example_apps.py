"""examples/apps: the Flask and FastAPI applications, each driven by its own test client
against a real `jitprov serve` (with a service token) on a loopback port.

What a person in the browser sees: signed in and sent to the RelayState page; refused
with the reason; sent to "/" rather than off-site; "temporarily unavailable" when jitprov
is down or its store is; "misconfigured" (502) when jitprov refuses the application's
service token.
"""

from __future__ import annotations

import importlib.util
import sys
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from starlette.testclient import TestClient

if str(Path(__file__).parent) not in sys.path:  # tests/engine is not an importable package
    sys.path.insert(0, str(Path(__file__).parent))
from serve_fixtures import Served, demo_workspace, free_port, fresh_token

APPS = Path(__file__).resolve().parents[2] / "examples" / "apps"
TOKEN = "example-apps-" + uuid.uuid4().hex


def load(name: str) -> ModuleType:
    """An example app's module, loaded from its file (examples/ is not a package)."""
    spec = importlib.util.spec_from_file_location(f"example_{name}", APPS / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


MODULES = {name: load(name) for name in ("flask_app", "fastapi_app")}


def signed_response(sample: str = "okta-sales.toml") -> tuple[str, str]:
    """A base64 SAML response signed by the demo IdP for a new person; their username."""
    username = "p" + uuid.uuid4().hex[:12]
    return fresh_token(sample, person=username), username


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """One `jitprov serve` for the module, requiring the service token TOKEN."""
    config = demo_workspace(tmp_path_factory.mktemp("apps"))
    config.write_text(config.read_text() + '\n[serve]\ntoken_env = "JITPROV_TEST_TOKEN"\n')
    with Served(config, env={"JITPROV_TEST_TOKEN": TOKEN}) as served:
        yield served


@pytest.fixture(scope="module")
def storeless_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """A `jitprov serve` whose SQLite store cannot be opened: every sign-in is an error."""
    config = demo_workspace(tmp_path_factory.mktemp("storeless"))
    missing = 'path = "missing/folder/jitprov.db"'
    config.write_text(config.read_text().replace('path = "jitprov.db"', missing))
    with Served(config) as served:
        yield served


class Browser:
    """One browser (its own cookies) on an example app, through the app's test client."""

    def __init__(self, client: Any) -> None:
        self.client = client

    def post_acs(self, saml_response: str, relay_state: str | None = None) -> Any:
        form = {"SAMLResponse": saml_response}
        if relay_state is not None:
            form["RelayState"] = relay_state
        return self.client.post("/saml/acs", data=form, follow_redirects=False)

    def home(self) -> str:
        response = self.client.get("/")
        assert response.status_code == 200
        return text(response)


Open = Callable[..., Browser]


def text(response: Any) -> str:
    return response.get_data(as_text=True) if hasattr(response, "get_data") else response.text


@pytest.fixture(params=sorted(MODULES))
def browsers(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[Open]:
    """`open(url=..., token=...)`: a new browser on a new instance of the example app,
    configured from the environment as in production (url and token default to the
    server's)."""
    name = request.param
    clients = ExitStack()

    def open_browser(url: str | None = None, token: str | None = TOKEN) -> Browser:
        if url is None:
            url = f"http://127.0.0.1:{request.getfixturevalue('server').port}"
        monkeypatch.setenv("JITPROV_URL", url)
        monkeypatch.setenv("JITPROV_CONNECTION", "okta")
        if token is None:
            monkeypatch.delenv("JITPROV_TOKEN", raising=False)
        else:
            monkeypatch.setenv("JITPROV_TOKEN", token)
        monkeypatch.setenv("FLASK_SECRET_KEY", "test-" + uuid.uuid4().hex)
        monkeypatch.setenv("SESSION_SECRET_KEY", "test-" + uuid.uuid4().hex)
        app = MODULES[name].create_app()
        if name == "flask_app":
            return Browser(app.test_client())
        # Entered, the client runs the app's lifespan (which makes its httpx.AsyncClient).
        return Browser(clients.enter_context(TestClient(app)))

    with clients:
        yield open_browser


def test_a_signed_response_signs_the_person_in_and_goes_to_the_relay_state(
    browsers: Open,
) -> None:
    browser = browsers()
    assert "Not signed in" in browser.home()
    token, username = signed_response()
    response = browser.post_acs(token, "/reports?month=5")
    assert response.status_code == 303, text(response)
    assert response.headers["Location"] == "/reports?month=5"
    home = browser.home()
    assert f"Signed in as {username} ({username}@example.com)" in home
    assert "groups: everyone, sales-emea" in home  # the rules' groups, from jitprov's user


def test_a_replayed_response_is_refused_and_signs_no_one_in(browsers: Open) -> None:
    token, username = signed_response()
    assert browsers().post_acs(token, "/").status_code == 303
    attacker = browsers()  # another browser posting the same captured response
    response = attacker.post_acs(token, "/")
    assert response.status_code == 403
    page = text(response)
    assert "Sign-in refused" in page and "(replay)" in page and "already used" in page
    assert token not in page
    assert "Not signed in" in attacker.home() and username not in attacker.home()


def test_a_refused_sign_in_signs_out_whoever_was_signed_in(browsers: Open) -> None:
    browser = browsers()
    token, username = signed_response()
    assert browser.post_acs(token).status_code == 303
    assert username in browser.home()
    assert browser.post_acs(token).status_code == 403  # the same response again: a replay
    assert "Not signed in" in browser.home()


def test_a_rule_denial_shows_the_rule_s_message(browsers: Open) -> None:
    browser = browsers()
    token, _ = signed_response("okta-contractor.toml")
    response = browser.post_acs(token, "/")
    assert response.status_code == 403
    assert "contractors are not provisioned" in text(response)
    assert "Not signed in" in browser.home()


@pytest.mark.parametrize("relay_state", ["https://evil.example/", "//evil.example/", None])
def test_an_off_site_or_missing_relay_state_goes_home(browsers: Open, relay_state: Any) -> None:
    browser = browsers()
    token, username = signed_response()
    response = browser.post_acs(token, relay_state)
    assert response.status_code == 303
    assert response.headers["Location"] == "/"
    assert username in browser.home()


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("/dashboard", "/dashboard"),
        ("/a/b?c=d#e", "/a/b?c=d#e"),
        ("https://evil.example/", "/"),
        ("//evil.example/x", "/"),
        ("/\\evil.example", "/"),
        ("/\t/evil.example", "/"),
        ("javascript:alert(1)", "/"),
        ("dashboard", "/"),
        ("", "/"),
        (None, "/"),
    ],
)
@pytest.mark.parametrize("name", sorted(MODULES))
def test_only_local_paths_are_redirect_targets(name: str, target: Any, expected: str) -> None:
    assert MODULES[name].local_path(target) == expected


def test_jitprov_unreachable_is_temporarily_unavailable(browsers: Open) -> None:
    browser = browsers(url=f"http://127.0.0.1:{free_port()}")  # nothing listens there
    token, _ = signed_response()
    response = browser.post_acs(token, "/")
    assert response.status_code == 503
    assert "Sign-in temporarily unavailable" in text(response)
    assert "Not signed in" in browser.home()


def test_a_store_error_is_temporarily_unavailable_and_keeps_its_details_in_the_log(
    browsers: Open, storeless_server: Served, caplog: pytest.LogCaptureFixture
) -> None:
    browser = browsers(url=f"http://127.0.0.1:{storeless_server.port}")
    token, _ = signed_response()
    response = browser.post_acs(token, "/")
    assert response.status_code == 503
    page = text(response)
    assert "Sign-in temporarily unavailable" in page
    assert "store" not in page and "missing" not in page  # no internals for the browser
    assert "cannot open the store" in caplog.text
    assert "Not signed in" in browser.home()


@pytest.mark.parametrize("service_token", ["not-the-token", None])
def test_a_refused_service_token_is_a_misconfiguration_not_a_refused_person(
    browsers: Open, service_token: str | None, caplog: pytest.LogCaptureFixture
) -> None:
    """jitprov answers 401 to a wrong or missing service token, as it does to a rejected
    SAML response; the app tells them apart by the body and answers 502 Bad Gateway."""
    browser = browsers(token=service_token)
    token, _ = signed_response()
    response = browser.post_acs(token, "/")
    assert response.status_code == 502
    page = text(response)
    assert "Sign-in is misconfigured" in page and "Sign-in refused" not in page
    assert TOKEN not in page and "not-the-token" not in page
    assert "jitprov refused the request: 401" in caplog.text  # for the developer
    assert "Not signed in" in browser.home()
    # The response was not spent: with the right token it still signs the person in.
    assert browsers().post_acs(token, "/").status_code == 303


def test_a_post_without_saml_response_is_a_bad_request(browsers: Open) -> None:
    response = browsers().client.post("/saml/acs", data={"RelayState": "/"})
    assert response.status_code == 400
    assert "SAMLResponse" in text(response)
