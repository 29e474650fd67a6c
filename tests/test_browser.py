"""/docs in a real browser: Swagger UI, served by the app itself, logs in, calls a protected route, keeps nothing.

Notebook 04's app (app.py): alice calls /users/me. The finished service (service.py): a user authorizes with the
scopes ticked in the Authorize dialog, and GET /users, which needs admin, answers 403 or 200 accordingly."""

import json
import os
import shutil
from urllib.parse import parse_qs

import pytest
from conftest import serving_the_service
from forge import EVERY_USER

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# The flags that keep Chromium from reaching out to the network: this test talks to 127.0.0.1 only.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

pytestmark = pytest.mark.browser
LIST_USERS = "#operations-default-list_users_users_get"
NEEDS_ADMIN = {"detail": "Not enough permissions: this needs the scope admin"}


@pytest.fixture(scope="module")
def browser():
    if not os.path.exists(CHROMIUM):
        reason = f"Chromium not found at {CHROMIUM}: install Debian's chromium package to run the browser test"
        if os.environ.get("CI"):
            pytest.fail(f"{reason}. In CI this test must run.", pytrace=False)
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def test_docs_authorize_and_call_users_me(browser, live_server):
    page = browser.new_page()
    requests = []
    page.on("request", lambda request: requests.append(request.url))

    page.goto(f"{live_server}/docs")
    page.get_by_role("button", name="Authorize").first.click()
    page.locator("#oauth_username").fill("alice")
    page.locator("#oauth_password").fill("wonderland")
    with page.expect_response(lambda response: response.url.endswith("/token")) as login:
        page.locator(".auth-btn-wrapper button.authorize").click()
    token = login.value.json()["access_token"]
    page.locator(".auth-btn-wrapper button", has_text="Logout").wait_for()
    page.locator(".auth-btn-wrapper button.btn-done").click()

    page.locator("#operations-default-read_users_me_users_me_get .opblock-summary").click()
    page.locator("#operations-default-read_users_me_users_me_get button.execute").click()
    response = page.locator("#operations-default-read_users_me_users_me_get .live-responses-table .response")
    response.first.wait_for()
    status = response.locator(".response-col_status").first.inner_text().strip()
    body = response.locator(".response-col_description pre").first.inner_text()

    assert status == "200"
    assert json.loads(body) == {
        "username": "alice",
        "email": "alice@example.com",
        "full_name": "Alice Liddell",
        "disabled": False,
    }
    assert {url.split("/", 3)[2] for url in requests} == {live_server.split("/")[2]}
    stored = page.evaluate("JSON.stringify(Object.entries(window.localStorage))")
    assert "wonderland" not in stored
    assert token not in stored


@pytest.fixture(scope="module")
def service_url(tmp_path_factory):
    """service.py under uvicorn on 127.0.0.1, its users and sessions in a new SQLite file."""
    with serving_the_service(f"sqlite:///{tmp_path_factory.mktemp('browser') / 'lesson.db'}") as base_url:
        yield base_url


def authorize(page, username: str, password: str, scopes: list[str]) -> dict:
    """Log in through the Authorize dialog with the scopes ticked; the /token request's form and its answer."""
    page.get_by_role("button", name="Authorize").first.click()
    page.locator("#oauth_username").fill(username)
    page.locator("#oauth_password").fill(password)
    for scope in scopes:
        page.locator(f"label[for='{scope}-password-checkbox-OAuth2PasswordBearer']").click()
        assert page.locator(f"#{scope}-password-checkbox-OAuth2PasswordBearer").is_checked()
    with page.expect_response(lambda response: response.url.endswith("/token")) as login:
        page.locator(".auth-btn-wrapper button.authorize").click()
    page.locator(".auth-btn-wrapper button", has_text="Logout").wait_for()
    page.locator(".auth-btn-wrapper button.btn-done").click()
    return {"form": login.value.request.post_data, "status": login.value.status, "body": login.value.json()}


@pytest.mark.parametrize(
    ("username", "password", "scopes", "status", "body"),
    [
        ("alice", "wonderland", ["me"], 403, NEEDS_ADMIN),
        ("carol", "tea-party", ["me"], 403, NEEDS_ADMIN),
        ("carol", "tea-party", ["me", "admin"], 200, EVERY_USER),
    ],
    ids=["alice with me", "carol with me", "carol with me admin"],
)
def test_docs_authorize_with_chosen_scopes_and_call_an_admin_route(
    browser, service_url, username, password, scopes, status, body
):
    page = browser.new_page()
    requests = []
    page.on("request", lambda request: requests.append(request.url))
    page.goto(f"{service_url}/docs")

    login = authorize(page, username, password, scopes)
    assert parse_qs(login["form"])["scope"] == [" ".join(scopes)]
    assert (login["status"], login["body"]["scope"]) == (200, " ".join(scopes))

    page.locator(f"{LIST_USERS} .opblock-summary").click()
    with page.expect_response(lambda response: response.url.endswith("/users")) as call:
        page.locator(f"{LIST_USERS} button.execute").click()
    answer = page.locator(f"{LIST_USERS} .live-responses-table .response")
    answer.first.wait_for()
    shown_status = answer.locator(".response-col_status").first.inner_text().strip()
    shown_body = answer.locator(".response-col_description pre").first.inner_text()

    assert (shown_status, json.loads(shown_body)) == (str(status), body)
    assert call.value.request.headers["authorization"] == f"Bearer {login['body']['access_token']}"
    expected_challenge = 'Bearer error="insufficient_scope", scope="admin"' if status == 403 else None
    assert call.value.headers.get("www-authenticate") == expected_challenge
    assert {url.split("/", 3)[2] for url in requests} == {service_url.split("/")[2]}
    stored = page.evaluate("JSON.stringify(Object.entries(window.localStorage))")
    assert password not in stored
    assert login["body"]["access_token"] not in stored
    assert login["body"]["refresh_token"] not in stored
