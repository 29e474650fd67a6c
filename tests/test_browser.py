"""/docs in a real browser: Swagger UI, served by the app itself, logs in as alice, calls /users/me, keeps nothing."""

import json
import os
import shutil

import pytest

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
