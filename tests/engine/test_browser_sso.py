"""A person signs in through a real browser: headless Chromium (Debian's, driven by
Selenium through its chromedriver) goes application → `/login` → the test IdP's login
page → `/acs` or `/callback` → the application's page "Signed in as …", for SAML
SP-initiated, SAML IdP-initiated and OIDC; the store then holds the account, its link,
the audit row and no pending request. Skipped, saying why, where there is no browser
(.ci/run installs chromium, chromium-driver and xmlsec1)."""

from __future__ import annotations

import shutil
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
if CHROMIUM is None or DRIVER is None:
    pytest.skip(
        "no Chromium and chromedriver (Debian: apt-get install chromium chromium-driver)",
        allow_module_level=True,
    )
if shutil.which("xmlsec1") is None:
    pytest.skip(
        "the SAML test IdP (pysaml2) signs with xmlsec1: apt-get install xmlsec1",
        allow_module_level=True,
    )
webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed")

from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support import expected_conditions as ec  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

from examples.sso.stack import Stack, running  # noqa: E402

pytestmark = pytest.mark.slow
WAIT = 30  # seconds for a page to reach a state: a bound, not a pause


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    with running(tmp_path / "sso") as started:
        yield started


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[object]:
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'chromium'}",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(DRIVER))
    driver.set_page_load_timeout(WAIT)
    try:
        yield driver
    finally:
        driver.quit()


def sign_in_at_idp(driver: object, username: str) -> None:
    """The IdP's login page (SAML or OIDC): fill it in and submit."""
    wait = WebDriverWait(driver, WAIT)
    wait.until(ec.presence_of_element_located((By.ID, "username"))).send_keys(username)
    driver.find_element(By.ID, "password").send_keys(username)  # type: ignore[attr-defined]
    driver.find_element(By.CSS_SELECTOR, "button[type=submit], input[type=submit]").click()  # type: ignore[attr-defined]


def signed_in_as(driver: object, stack: Stack) -> str:
    """Wait for the application's page to say who is signed in; the username shown."""
    wait = WebDriverWait(driver, WAIT)
    wait.until(ec.text_to_be_present_in_element((By.ID, "message"), "Signed in as"))
    assert driver.current_url.startswith(stack.app_url)  # type: ignore[attr-defined]
    assert "jitprov_ref" not in driver.current_url  # type: ignore[attr-defined]
    return str(driver.find_element(By.ID, "username").text)  # type: ignore[attr-defined]


def store_rows(stack: Stack, sql: str) -> list[tuple]:
    with sqlite3.connect(stack.store) as db:
        return db.execute(sql).fetchall()


def assert_provisioned(stack: Stack, connection: str, username: str, subject: str) -> None:
    users = store_rows(stack, "SELECT id, username, email FROM users")
    assert [(u, e) for _, u, e in users] == [(username, f"{username}@example.com")]
    user_id = users[0][0]
    links = store_rows(stack, "SELECT connection, subject, user_id FROM identity_links")
    assert links == [(connection, subject, user_id)]
    audit = store_rows(stack, "SELECT connection, outcome, user_id FROM audit")
    assert audit == [(connection, "created", user_id)]
    assert store_rows(stack, "SELECT count(*) FROM pending_requests") == [(0,)]
    picked = store_rows(stack, "SELECT picked_at IS NOT NULL, result FROM handoffs")
    assert picked == [(1, "")]  # handed to the application once, then blanked


def test_saml_sp_initiated(stack: Stack, browser: object) -> None:
    browser.get(stack.app_url + "/")  # type: ignore[attr-defined]
    browser.find_element(By.ID, "sso-saml").click()  # type: ignore[attr-defined]
    assert browser.current_url.startswith(stack.saml_idp_url)  # type: ignore[attr-defined]
    sign_in_at_idp(browser, "alice")
    assert signed_in_as(browser, stack) == "alice"
    groups = browser.find_element(By.ID, "groups").text  # type: ignore[attr-defined]
    assert groups == "engineering, everyone, staff"
    assert_provisioned(stack, "saml", "alice", "alice-0001")


def test_saml_idp_initiated(stack: Stack, browser: object) -> None:
    browser.get(stack.idp_initiated_url(f"{stack.app_url}/sso/return"))  # type: ignore[attr-defined]
    sign_in_at_idp(browser, "bob")
    assert signed_in_as(browser, stack) == "bob"
    assert_provisioned(stack, "saml", "bob", "bob-0002")


def test_oidc_authorization_code_flow(stack: Stack, browser: object) -> None:
    browser.get(stack.app_url + "/")  # type: ignore[attr-defined]
    browser.find_element(By.ID, "sso-oidc").click()  # type: ignore[attr-defined]
    assert browser.current_url.startswith(stack.oidc_url)  # type: ignore[attr-defined]
    sign_in_at_idp(browser, "alice")
    assert signed_in_as(browser, stack) == "alice"
    assert_provisioned(stack, "oidc", "alice", "alice-0001")


def test_an_idp_initiated_relay_state_outside_the_allowlist_is_refused(
    stack: Stack, browser: object
) -> None:
    browser.get(stack.idp_initiated_url("https://evil.example/"))  # type: ignore[attr-defined]
    sign_in_at_idp(browser, "bob")
    wait = WebDriverWait(browser, WAIT)
    wait.until(ec.text_to_be_present_in_element((By.ID, "message"), "wrong-return-url"))
    assert browser.current_url == f"{stack.app_url}/sso/error?error=wrong-return-url"  # type: ignore[attr-defined]
    assert store_rows(stack, "SELECT count(*) FROM users") == [(0,)]
    assert store_rows(stack, "SELECT outcome, reason FROM audit") == [
        ("rejected", "wrong-return-url")
    ]
