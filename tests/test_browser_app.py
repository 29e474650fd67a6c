"""The sign-in page at /app and its token-mediating backend (lesson_code/browser_app.py), RFC 10017.

Over HTTP (TestClient): the cookie's exact attributes, the origin check's exact answers, rotation and reuse
detection through the cookie, sign-out. In real Chromium (Playwright, Debian's chromium, as tests/test_browser.py):
sign in, reload, a new tab, an access token that expires and is silently refreshed, two tabs refreshing at once,
sign out, storage empty of tokens after each step, a page of another port of 127.0.0.1 (same site, another origin)
whose forged requests are refused, and a script injected into the page that cannot read the refresh token.

Time, in the browser tests, is a clock the test moves (the service's current_time, and tokens.py's datetime): an
access token expires because the clock passed its exp, never because the test slept, so no step depends on speed.
"""

import json
import re
from datetime import datetime, timedelta, timezone

import httpx
import pytest
from conftest import serving_the_service
from forge import ALICE
from test_browser import browser  # noqa: F401  (the fixture: Debian's chromium; skips locally without it, fails in CI)

from lesson_code import browser_app, sessions, tokens
from lesson_code.browser_app import (
    CROSS_ORIGIN,
    CROSS_ORIGIN_SITE,
    NO_ORIGIN,
    NO_REFRESH_COOKIE,
    PAGE,
    PAGE_POLICY,
    REFRESH_COOKIE,
    SCRIPT,
    STYLE_HASH,
)
from lesson_code.service import app, current_time
from lesson_code.sessions import INVALID_REFRESH_TOKEN, REFRESH_TOKEN_REUSED, SESSION_ENDED

OWN = "http://testserver"  # TestClient's origin
SAME_ORIGIN = {"Origin": OWN, "Sec-Fetch-Site": "same-origin"}
ALICE_SIGNS_IN = {"username": "alice", "password": "wonderland"}
NO_STORE = {"cache-control": "no-store", "pragma": "no-cache"}
REFUSAL_HEADERS = {**NO_STORE, "vary": "Origin, Sec-Fetch-Site", "content-type": "application/json"}
CLEARED = f'{REFRESH_COOKIE}=""; expires={{}}; HttpOnly; Max-Age=0; Path=/; SameSite=strict; Secure'
CANNOT_VALIDATE = {"detail": "Could not validate credentials"}
WEEK = 7 * 24 * 3600
SESSION_PATHS = ("/app/session/login", "/app/session/refresh", "/app/session/logout")
sqlite_only = pytest.mark.parametrize("db", ["sqlite"], indirect=True)


def post(client, path: str, cookie: str | None = None, headers: dict | None = None, **kwargs) -> httpx.Response:
    """POST with exactly these headers (the same-origin pair by default) and this refresh cookie: TestClient's own
    cookie jar is emptied first, so no cookie goes unless given."""
    client.cookies.clear()
    sent = dict(SAME_ORIGIN if headers is None else headers)
    if cookie is not None:
        sent["Cookie"] = f"{REFRESH_COOKIE}={cookie}"
    return client.post(path, headers=sent, **kwargs)


def refresh_cookie(response: httpx.Response) -> str:
    """The refresh token the answer's one Set-Cookie header sets."""
    [header] = response.headers.get_list("set-cookie")
    name, _, rest = header.partition("=")
    assert name == REFRESH_COOKIE
    return rest.split(";")[0]


def cleared(response: httpx.Response) -> bool:
    [header] = response.headers.get_list("set-cookie")
    expires = re.search(r"expires=([^;]+);", header)
    return expires is not None and header == CLEARED.format(expires[1])


def me(client, access_token: str) -> tuple[int, dict]:
    response = client.get("/users/me", headers={"Authorization": f"Bearer {access_token}"})
    return response.status_code, response.json()


def sign_in(client) -> tuple[str, str]:
    """Alice signs in through the page's endpoint: (access token, refresh cookie)."""
    response = post(client, "/app/session/login", json=ALICE_SIGNS_IN)
    assert response.status_code == 200, response.text
    return response.json()["access_token"], refresh_cookie(response)


@pytest.fixture
def fixed_now(start_service):
    """The service with its current time fixed on a whole second (so a cookie's Max-Age is exact): (client, now)."""
    client = start_service()
    now = datetime.now(timezone.utc).replace(microsecond=0)
    app.dependency_overrides[current_time] = lambda: now
    return client, now


# HTTP: the page


@sqlite_only
def test_the_page_is_served_with_a_policy_that_allows_only_its_own_script_and_style(service):
    page = service.get("/app")
    script = service.get("/app/app.js")

    assert page.status_code == script.status_code == 200
    assert page.text == PAGE and script.text == SCRIPT
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    assert script.headers["content-type"] == "text/javascript; charset=utf-8"
    for answer in (page, script):
        assert answer.headers.get_list("content-security-policy") == [PAGE_POLICY, "frame-ancestors 'none'"]
        assert answer.headers["cross-origin-opener-policy"] == "same-origin"
        assert answer.headers["cross-origin-resource-policy"] == "same-origin"
        assert answer.headers["x-content-type-options"] == "nosniff"
        assert (answer.headers["cache-control"], answer.headers["pragma"]) == ("no-store", "no-cache")
        assert answer.headers.get("set-cookie") is None
    assert PAGE_POLICY == (
        f"default-src 'none'; script-src 'self'; style-src 'sha256-{STYLE_HASH}'; connect-src 'self'; "
        "form-action 'self'; base-uri 'none'; frame-ancestors 'none'; require-trusted-types-for 'script'; "
        "trusted-types 'none'"
    )
    # Nothing from elsewhere: the one script and every fetch are relative URLs of this service.
    assert re.findall(r'(?:src|href|action)="([^"]*)"', PAGE) == ["app/app.js"]
    assert re.findall(r'(?:fetch|exchange|api)\("([^"]*)"', SCRIPT) == [
        "app/session/refresh",
        "users/me",
        "app/session/login",
        "app/session/logout",
    ]
    assert "<script>" not in PAGE and " style=" not in PAGE and "on" + "click=" not in PAGE
    assert '<label for="username">Username</label>' in PAGE and '<label for="password">Password</label>' in PAGE
    assert ">Sign in</button>" in PAGE and ">Sign out</button>" in PAGE
    for storage in ("localStorage", "sessionStorage", "indexedDB", "document.cookie"):
        assert storage not in SCRIPT


def test_the_page_and_its_session_endpoints_stay_out_of_the_api_schema():
    """They are the page's, not an API: API clients, /docs among them, use POST /token and Bearer tokens."""
    paths = app.openapi()["paths"]
    assert [path for path in paths if path.startswith("/app")] == []
    assert sorted(paths) == [
        "/.well-known/jwks.json",
        "/logout",
        "/logout/everywhere",
        "/revoke",
        "/token",
        "/users",
        "/users/me",
        "/users/{username}/disable",
    ]


# HTTP: sign in, refresh, sign out


@sqlite_only
def test_sign_in_answers_an_access_token_and_sets_the_refresh_token_in_an_exact_cookie(fixed_now):
    client, now = fixed_now
    response = post(client, "/app/session/login", json=ALICE_SIGNS_IN)

    assert response.status_code == 200
    body = response.json()
    assert sorted(body) == ["access_token", "expires_in", "scope", "token_type"]
    assert (body["token_type"], body["expires_in"], body["scope"]) == ("bearer", 900, "me")
    assert {name: response.headers[name] for name in NO_STORE} == NO_STORE
    [header] = response.headers.get_list("set-cookie")
    cookie = refresh_cookie(response)
    assert header == f"{REFRESH_COOKIE}={cookie}; HttpOnly; Max-Age={WEEK}; Path=/; SameSite=strict; Secure"
    assert "domain" not in header.lower()
    claims = sessions.decode_refresh_token(cookie, now)
    assert (claims["sub"], claims["exp"] - claims["iat"]) == ("alice", WEEK)
    assert cookie not in response.text  # the refresh token is in the cookie only
    assert me(client, body["access_token"]) == (200, ALICE)


@sqlite_only
def test_a_refresh_spends_the_cookie_for_a_new_one_and_a_new_access_token(service):
    first_access, first_cookie = sign_in(service)
    response = post(service, "/app/session/refresh", first_cookie)

    assert response.status_code == 200
    assert sorted(response.json()) == ["access_token", "expires_in", "scope", "token_type"]
    assert {name: response.headers[name] for name in NO_STORE} == NO_STORE
    second_cookie = refresh_cookie(response)
    assert second_cookie != first_cookie
    assert me(service, first_access) == (200, ALICE)  # the access token of before lives until its exp
    assert me(service, response.json()["access_token"]) == (200, ALICE)
    assert post(service, "/app/session/refresh", second_cookie).status_code == 200


def test_a_replayed_spent_cookie_ends_the_session_as_reuse_detection_says(service):
    """On SQLite and PostgreSQL: the two-tab design leaves reuse detection whole, for a real replay."""
    first_access, spent = sign_in(service)
    rotated = post(service, "/app/session/refresh", spent)
    assert rotated.status_code == 200
    current, current_access = refresh_cookie(rotated), rotated.json()["access_token"]

    replay = post(service, "/app/session/refresh", spent)
    assert replay.status_code == 400
    assert replay.json() == {"error": "invalid_grant", "error_description": REFRESH_TOKEN_REUSED}
    assert cleared(replay)
    assert {name: replay.headers[name] for name in NO_STORE} == NO_STORE

    after = post(service, "/app/session/refresh", current)
    assert (after.status_code, after.json()) == (400, {"error": "invalid_grant", "error_description": SESSION_ENDED})
    assert cleared(after)
    assert me(service, current_access) == (401, CANNOT_VALIDATE)
    assert me(service, first_access) == (401, CANNOT_VALIDATE)


@sqlite_only
@pytest.mark.parametrize(
    ("cookie", "error"),
    [
        (None, {"error": "invalid_request", "error_description": NO_REFRESH_COOKIE}),
        ("", {"error": "invalid_request", "error_description": NO_REFRESH_COOKIE}),
        ("not-a-token", {"error": "invalid_grant", "error_description": INVALID_REFRESH_TOKEN}),
        ("access", {"error": "invalid_grant", "error_description": INVALID_REFRESH_TOKEN}),
    ],
    ids=["no cookie", "empty cookie", "garbage", "an access token"],
)
def test_a_refresh_without_a_refresh_token_in_the_cookie_is_400_and_clears_it(service, cookie, error):
    access, _ = sign_in(service)
    response = post(service, "/app/session/refresh", access if cookie == "access" else cookie)

    assert (response.status_code, response.json()) == (400, error)
    assert cleared(response)
    assert {name: response.headers[name] for name in NO_STORE} == NO_STORE
    assert me(service, access) == (200, ALICE)  # nothing was ended


@sqlite_only
def test_sign_out_ends_the_session_and_clears_the_cookie(service):
    access, cookie = sign_in(service)
    response = post(service, "/app/session/logout", cookie)

    assert (response.status_code, response.content) == (204, b"")
    assert cleared(response)
    assert {name: response.headers[name] for name in NO_STORE} == NO_STORE
    assert me(service, access) == (401, CANNOT_VALIDATE)
    refused = post(service, "/app/session/refresh", cookie)
    assert (refused.status_code, refused.json()) == (
        400,
        {"error": "invalid_grant", "error_description": SESSION_ENDED},
    )


@sqlite_only
def test_sign_out_without_a_cookie_only_clears_it(service):
    access, _ = sign_in(service)
    response = post(service, "/app/session/logout")

    assert (response.status_code, response.content) == (204, b"")
    assert cleared(response)
    assert me(service, access) == (200, ALICE)


@sqlite_only
@pytest.mark.parametrize(
    ("fields", "status", "detail"),
    [
        ({"username": "alice", "password": "not-her-password"}, 401, "Incorrect username or password"),
        ({"username": "nobody", "password": "wonderland"}, 401, "Incorrect username or password"),
        ({"username": "bob", "password": "builder"}, 401, "Incorrect username or password"),  # disabled
    ],
    ids=["wrong password", "no such user", "disabled user"],
)
def test_a_refused_sign_in_sets_no_cookie(service, fields, status, detail):
    response = post(service, "/app/session/login", json=fields)

    assert (response.status_code, response.json()) == (status, {"detail": detail})
    assert response.headers.get("set-cookie") is None
    assert {name: response.headers[name] for name in NO_STORE} == NO_STORE


@sqlite_only
@pytest.mark.parametrize(
    ("body", "where", "kind"),
    [
        ({"username": "alice"}, ["body", "password"], "missing"),
        ({"username": "", "password": "wonderland"}, ["body", "username"], "string_too_short"),
        ({"username": "alice", "password": "x" * 1025}, ["body", "password"], "string_too_long"),
        ("username=alice&password=wonderland", ["body"], "model_attributes_type"),
    ],
    ids=["no password", "empty username", "password too long", "a form, not JSON"],
)
def test_a_malformed_sign_in_is_422_naming_the_field(service, body, where, kind):
    if isinstance(body, str):
        response = post(
            service, "/app/session/login", content=body, headers={**SAME_ORIGIN, "Content-Type": "text/plain"}
        )
    else:
        response = post(service, "/app/session/login", json=body)

    assert response.status_code == 422
    [problem] = response.json()["detail"]
    assert (problem["loc"], problem["type"]) == (where, kind)
    assert response.headers.get("set-cookie") is None


@sqlite_only
def test_a_scope_the_user_does_not_hold_is_400_invalid_scope_with_no_cookie(service):
    response = post(service, "/app/session/login", json={**ALICE_SIGNS_IN, "scope": "admin"})

    assert response.status_code == 400
    assert response.json() == {"error": "invalid_scope", "error_description": sessions.NO_SCOPE_HELD}
    assert response.headers.get("set-cookie") is None


# HTTP: the origin check

OTHER_PORT = "http://127.0.0.1:8001"
HTTPS_OWN = "https://testserver"
FORGED = [
    ({"Origin": OTHER_PORT, "Sec-Fetch-Site": "same-site"}, CROSS_ORIGIN_SITE.format(site="same-site")),
    ({"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"}, CROSS_ORIGIN_SITE.format(site="cross-site")),
    ({"Sec-Fetch-Site": "none"}, CROSS_ORIGIN_SITE.format(site="none")),
    ({"Origin": OTHER_PORT}, CROSS_ORIGIN.format(origin=OTHER_PORT, own=OWN)),
    ({"Origin": "null"}, CROSS_ORIGIN.format(origin="null", own=OWN)),
    ({"Origin": HTTPS_OWN, "Sec-Fetch-Site": "same-origin"}, CROSS_ORIGIN.format(origin=HTTPS_OWN, own=OWN)),
    ({"Origin": "http://testserver.evil.example"}, CROSS_ORIGIN.format(origin="http://testserver.evil.example", own=OWN)),
    ({}, NO_ORIGIN),
    ({"Sec-Fetch-Site": "same-origin"}, NO_ORIGIN),
    ({"Origin": OWN, "Sec-Fetch-Site": "x" * 500}, CROSS_ORIGIN_SITE.format(site="x" * 100)),
]  # fmt: skip
FORGED_IDS = [
    "another port, same site",
    "another site",
    "typed in the address bar",
    "another port, no Fetch Metadata",
    "an opaque origin",
    "another scheme",
    "a look-alike host",
    "no header at all",
    "Fetch Metadata without Origin",
    "an overlong header, quoted short",
]


@sqlite_only
@pytest.mark.parametrize("path", SESSION_PATHS)
@pytest.mark.parametrize(("headers", "detail"), FORGED, ids=FORGED_IDS)
def test_a_request_not_from_the_services_own_origin_is_403_and_changes_nothing(service, path, headers, detail):
    access, cookie = sign_in(service)
    response = post(service, path, cookie, headers, json=ALICE_SIGNS_IN)

    assert (response.status_code, response.json()) == (403, {"detail": detail})
    assert {name: response.headers[name] for name in REFUSAL_HEADERS} == REFUSAL_HEADERS
    assert response.headers.get("set-cookie") is None
    assert me(service, access) == (200, ALICE)  # not signed out
    assert post(service, "/app/session/refresh", cookie).status_code == 200  # not rotated: the cookie still current


@sqlite_only
@pytest.mark.parametrize(
    ("content", "content_type"),
    [
        ("username=alice&password=wonderland", "application/x-www-form-urlencoded"),  # an auto-submitting form
        ('{"username": "alice", "password": "wonderland"}', "text/plain"),  # a form's text/plain trick
        ("{not json", "application/json"),
    ],
    ids=["form", "text/plain JSON", "malformed JSON"],
)
def test_a_cross_origin_sign_in_is_refused_before_its_body_is_read(service, content, content_type):
    headers = {"Origin": OTHER_PORT, "Sec-Fetch-Site": "same-site", "Content-Type": content_type}
    response = post(service, "/app/session/login", headers=headers, content=content)

    assert (response.status_code, response.json()) == (403, {"detail": CROSS_ORIGIN_SITE.format(site="same-site")})
    assert response.headers.get("set-cookie") is None


@sqlite_only
def test_a_browser_without_fetch_metadata_is_judged_by_origin_alone(service):
    response = post(service, "/app/session/login", headers={"Origin": OWN}, json=ALICE_SIGNS_IN)
    assert response.status_code == 200
    assert post(service, "/app/session/refresh", refresh_cookie(response), {"Origin": OWN}).status_code == 200


def test_the_refusal_is_a_pure_function_of_the_two_headers_and_the_own_origin():
    refusal = browser_app.cross_origin_refusal
    assert refusal("http://127.0.0.1:8000", "same-origin", "http://127.0.0.1:8000") is None
    assert refusal("http://127.0.0.1:8000", None, "http://127.0.0.1:8000") is None
    assert refusal("HTTP://127.0.0.1:8000", None, "http://127.0.0.1:8000") is None
    assert refusal("http://127.0.0.1:8001", "same-site", "http://127.0.0.1:8000") == (
        "Cross-origin request refused: Sec-Fetch-Site is same-site, and the session cookie serves this service's "
        "own pages only (same-origin)"
    )
    assert refusal("http://127.0.0.1:8001", None, "http://127.0.0.1:8000") == (
        "Cross-origin request refused: Origin http://127.0.0.1:8001 is not this service's origin, http://127.0.0.1:8000"
    )


@sqlite_only
def test_bearer_clients_are_unchanged_and_the_api_reads_no_cookie(service):
    """POST /token and the Bearer routes take no notice of Origin, Fetch Metadata or the cookie."""
    cross = {"Origin": OTHER_PORT, "Sec-Fetch-Site": "cross-site"}
    service.cookies.clear()
    login = service.post("/token", data=ALICE_SIGNS_IN, headers=cross)
    assert login.status_code == 200
    assert sorted(login.json()) == ["access_token", "expires_in", "refresh_token", "scope", "token_type"]
    assert login.headers.get("set-cookie") is None
    headers = {**cross, "Authorization": f"Bearer {login.json()['access_token']}"}
    assert (
        service.get("/users/me", headers=headers).status_code,
        service.get("/users/me", headers=headers).json(),
    ) == (
        200,
        ALICE,
    )
    _, cookie = sign_in(service)
    service.cookies.clear()
    by_cookie = service.get("/users/me", headers={**SAME_ORIGIN, "Cookie": f"{REFRESH_COOKIE}={cookie}"})
    assert (by_cookie.status_code, by_cookie.json()) == (401, {"detail": "Not authenticated"})
    renewed = service.post("/token", data={"grant_type": "refresh_token", "refresh_token": cookie})
    assert renewed.status_code == 200  # the same session, from a Bearer client: one rotation, as ever


# In Chromium

STORAGE = """async () => ({
    localStorage: Object.entries(localStorage),
    sessionStorage: Object.entries(sessionStorage),
    indexedDB: (await indexedDB.databases()).map((database) => database.name),
    caches: await caches.keys(),
    cookie: document.cookie,
})"""
EMPTY = {"localStorage": [], "sessionStorage": [], "indexedDB": [], "caches": [], "cookie": ""}
ACCESS_LIFETIME = timedelta(minutes=15)  # the default: the clock is moved past it, nobody waits for it


class Clock:
    """The time the service sees: real time plus what the test moved it on by."""

    def __init__(self) -> None:
        self.ahead = timedelta(0)

    def now(self) -> datetime:
        return datetime.now(timezone.utc) + self.ahead

    def expire_access_tokens(self) -> None:
        self.ahead += ACCESS_LIFETIME + timedelta(seconds=tokens.LEEWAY_SECONDS + 1)


CLOCK = Clock()


class ClockedDatetime(datetime):
    """tokens.py's datetime: it makes and checks access tokens on CLOCK, so they expire when the clock says."""

    @classmethod
    def now(cls, tz=None):
        return datetime.now(tz) + CLOCK.ahead


class Recorder:
    """An ASGI wrapper that keeps what the service was asked and answered: method, path, headers, status."""

    def __init__(self, app) -> None:
        self.app, self.seen = app, []

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        entry = {"method": scope["method"], "path": scope["path"], "status": None}
        entry["headers"] = {name.decode().lower(): value.decode() for name, value in scope["headers"]}
        self.seen.append(entry)

        async def recording_send(message) -> None:
            if message["type"] == "http.response.start":
                entry["status"] = message["status"]
            await send(message)

        await self.app(scope, receive, recording_send)


SERVICE = Recorder(app)


@pytest.fixture(scope="module")
def browser_app_url(tmp_path_factory):
    """service.py under uvicorn on 127.0.0.1 (a thread of this process), on its own SQLite file, the demo users in it
    (conftest.serving_the_service, with SERVICE recording what it is asked)."""
    url = f"sqlite:///{tmp_path_factory.mktemp('browser-app') / 'lesson.db'}"
    with serving_the_service(url, asgi_app=SERVICE) as base_url:
        yield base_url


@pytest.fixture
def clocked(browser_app_url, monkeypatch):
    """The service's time on CLOCK, from now: sessions, refresh tokens and access tokens alike."""
    CLOCK.ahead = timedelta(0)
    monkeypatch.setattr(tokens, "datetime", ClockedDatetime)
    app.dependency_overrides[current_time] = CLOCK.now
    yield browser_app_url
    app.dependency_overrides.pop(current_time, None)


class Traffic:
    """Every answer a browser context gets, in order (Playwright's Response objects)."""

    def __init__(self, context) -> None:
        self.seen = []
        context.on("response", lambda response: self.seen.append(response))

    def paths(self, base_url: str, since: int = 0) -> list[tuple[str, str, int]]:
        return [(r.request.method, r.url.removeprefix(base_url), r.status) for r in self.seen[since:]]

    def access_tokens(self) -> list[str]:
        """The access tokens the pages sent to /users/me, in order."""
        sent = [r.request.all_headers() for r in self.seen if r.url.endswith("/users/me")]
        return [headers["authorization"].removeprefix("Bearer ") for headers in sent]


@pytest.fixture
def context(browser, clocked):  # noqa: F811  (browser: the fixture imported above)
    context = browser.new_context()
    yield context
    context.close()


def signed_in_as(page) -> str:
    page.get_by_role("button", name="Sign out").wait_for()
    return page.locator("#signed-in p").inner_text()


def shows_the_form(page) -> str:
    page.get_by_role("button", name="Sign in").wait_for()
    return page.locator("#status").inner_text()


def sign_in_on(page, base_url: str) -> None:
    """Alice signs in through the form."""
    page.goto(f"{base_url}/app")
    page.get_by_label("Username").fill(ALICE_SIGNS_IN["username"])
    page.get_by_label("Password").fill(ALICE_SIGNS_IN["password"])
    page.get_by_role("button", name="Sign in").click()


def check_who_i_am(page) -> None:
    """Click the button and wait for the page's /users/me that answers 200."""
    with page.expect_response(lambda response: response.url.endswith("/users/me") and response.status == 200):
        page.get_by_role("button", name="Check who I am").click()


def only_cookie(context) -> dict:
    [cookie] = context.cookies()
    return cookie


def api_status(base_url: str, access_token: str) -> int:
    return httpx.get(f"{base_url}/users/me", headers={"Authorization": f"Bearer {access_token}"}).status_code


@pytest.mark.browser
def test_sign_in_reload_new_tab_and_sign_out_keep_no_token_in_any_storage(context, clocked):
    base_url, traffic, page = clocked, Traffic(context), context.new_page()
    sign_in_on(page, base_url)
    assert signed_in_as(page) == "Signed in as Alice Liddell (alice)"
    assert page.evaluate(STORAGE) == EMPTY
    assert traffic.paths(base_url) == [
        ("GET", "/app", 200),
        ("GET", "/app/app.js", 200),
        ("POST", "/app/session/refresh", 400),  # no cookie yet: the form
        ("POST", "/app/session/login", 200),
        ("GET", "/users/me", 200),
    ]
    login = traffic.seen[3]
    cookie = only_cookie(context)
    assert {name: cookie[name] for name in ("name", "domain", "path", "httpOnly", "secure", "sameSite")} == {
        "name": REFRESH_COOKIE,
        "domain": "127.0.0.1",  # a host-only cookie: no Domain attribute
        "path": "/",
        "httpOnly": True,
        "secure": True,
        "sameSite": "Strict",
    }
    header = login.all_headers()["set-cookie"]
    max_age = re.fullmatch(
        rf"{REFRESH_COOKIE}={cookie['value']}; HttpOnly; Max-Age=(\d+); Path=/; SameSite=strict; Secure", header
    )
    assert max_age is not None and int(max_age[1]) in (WEEK - 1, WEEK)  # the token's exp, from a now within a second
    assert sorted(login.json()) == ["access_token", "expires_in", "scope", "token_type"]

    before = len(traffic.seen)
    page.reload()
    assert signed_in_as(page) == "Signed in as Alice Liddell (alice)"
    assert traffic.paths(base_url, before) == [
        ("GET", "/app", 200),
        ("GET", "/app/app.js", 200),
        ("POST", "/app/session/refresh", 200),  # the cookie, exchanged for an access token in memory
        ("GET", "/users/me", 200),
    ]
    assert only_cookie(context)["value"] != cookie["value"]  # rotated
    assert page.evaluate(STORAGE) == EMPTY

    other = context.new_page()
    other.goto(f"{base_url}/app")
    assert signed_in_as(other) == "Signed in as Alice Liddell (alice)"
    assert other.evaluate(STORAGE) == EMPTY and page.evaluate(STORAGE) == EMPTY

    last_access = traffic.access_tokens()[-1]
    assert api_status(base_url, last_access) == 200
    before = len(traffic.seen)
    page.get_by_role("button", name="Sign out").click()
    assert shows_the_form(page) == "Signed out"
    assert shows_the_form(other) == "Signed out in another tab"
    assert traffic.paths(base_url, before) == [("POST", "/app/session/logout", 204)]
    assert context.cookies() == []
    assert api_status(base_url, last_access) == 401  # the session ended on the server
    for tab in (page, other):
        assert tab.evaluate(STORAGE) == EMPTY
    hosts = {response.url.split("/")[2] for response in traffic.seen}
    assert hosts == {base_url.split("/")[2]}


@pytest.mark.browser
def test_an_expired_access_token_is_refreshed_silently_once(context, clocked):
    base_url, traffic, page = clocked, Traffic(context), context.new_page()
    sign_in_on(page, base_url)
    signed_in_as(page)
    first_access, first_cookie = traffic.access_tokens()[-1], only_cookie(context)["value"]

    CLOCK.expire_access_tokens()
    assert api_status(base_url, first_access) == 401  # the server now refuses it
    before = len(traffic.seen)
    check_who_i_am(page)
    check_who_i_am(page)  # a second check: the new token, no refresh

    assert traffic.paths(base_url, before) == [
        ("GET", "/users/me", 401),
        ("POST", "/app/session/refresh", 200),
        ("GET", "/users/me", 200),
        ("GET", "/users/me", 200),
    ]
    assert signed_in_as(page) == "Signed in as Alice Liddell (alice)"
    new_access = traffic.access_tokens()[-1]
    assert new_access != first_access and traffic.access_tokens()[-2] == new_access
    assert only_cookie(context)["value"] != first_cookie
    assert api_status(base_url, new_access) == 200
    assert page.evaluate(STORAGE) == EMPTY


HOLD_THE_LOCK = """() => new Promise((held) => {
    navigator.locks.request("jwt-lesson-refresh", () => new Promise((release) => {
        window.releaseTheLock = release;
        held();
    }));
})"""
BOTH_WAITING = """async () => (await navigator.locks.query()).pending.length === 2"""


@pytest.mark.browser
def test_two_tabs_refreshing_at_once_take_turns_and_the_session_survives(context, clocked):
    base_url, traffic = clocked, Traffic(context)
    first, second = context.new_page(), context.new_page()
    sign_in_on(first, base_url)
    signed_in_as(first)
    second.goto(f"{base_url}/app")
    assert signed_in_as(second) == "Signed in as Alice Liddell (alice)"

    CLOCK.expire_access_tokens()
    first.evaluate(HOLD_THE_LOCK)  # as if a refresh were under way: both tabs' refreshes must queue behind it
    before = len(traffic.seen)
    for tab in (first, second):
        tab.get_by_role("button", name="Check who I am").click()
    first.wait_for_function(BOTH_WAITING)  # both found their token expired (401) and wait for the lock
    assert sorted(traffic.paths(base_url, before)) == [("GET", "/users/me", 401)] * 2
    with (
        first.expect_response(lambda response: response.url.endswith("/users/me") and response.status == 200),
        second.expect_response(lambda response: response.url.endswith("/users/me") and response.status == 200),
    ):
        first.evaluate("() => window.releaseTheLock()")

    refreshes = [r for r in traffic.seen[before:] if r.url.endswith("/app/session/refresh")]
    # The first in line refreshes; the second finds the new token (told by the first) or the cookie already rotated,
    # and either way sends the current cookie: never a spent one, so reuse detection has nothing to catch.
    assert [r.status for r in refreshes] in ([200], [200, 200])
    presented = [r.request.all_headers()["cookie"] for r in refreshes]
    assert len(set(presented)) == len(presented)
    for tab in (first, second):
        assert signed_in_as(tab) == "Signed in as Alice Liddell (alice)"
        assert tab.evaluate(STORAGE) == EMPTY
    *_, one, other = traffic.access_tokens()
    assert api_status(base_url, one) == api_status(base_url, other) == 200  # the session lives
    assert only_cookie(context)["name"] == REFRESH_COOKIE


FETCH_ATTACK = """<!doctype html><title>attacker</title><script>
window.attacks = (async () => {
  const results = [];
  for (const [path, mode] of [["refresh", "no-cors"], ["refresh", "cors"], ["logout", "no-cors"], ["logout", "cors"],
                              ["login", "no-cors"]]) {
    const body = path === "login" ? '{"username": "alice", "password": "wonderland"}' : undefined;
    try {
      const response = await fetch(`VICTIM/app/session/${path}`, { method: "POST", mode, credentials: "include", body });
      results.push([path, mode, response.type, response.status, await response.text()]);
    } catch (error) {
      results.push([path, mode, error.name]);
    }
  }
  return results;
})();
</script>"""
FORM_ATTACK = """<!doctype html><title>attacker</title>
<form method="post" action="VICTIM/app/session/PATH"><input name="username" value="mallory">
<input name="password" value="mallory's"></form><script>document.forms[0].submit()</script>"""


def attacker_site(victim: str):
    """The attacker's pages, to serve on another port of 127.0.0.1: same site as the victim, another origin."""
    from starlette.applications import Starlette
    from starlette.responses import HTMLResponse
    from starlette.routing import Route

    async def fetch_attack(request):
        return HTMLResponse(FETCH_ATTACK.replace("VICTIM", victim))

    async def form_attack(request):
        return HTMLResponse(FORM_ATTACK.replace("VICTIM", victim).replace("PATH", request.path_params["path"]))

    return Starlette(routes=[Route("/fetch", fetch_attack), Route("/form/{path}", form_attack)])


@pytest.mark.browser
def test_a_page_of_another_origin_on_the_same_site_cannot_use_the_cookie(context, clocked):
    from notebooks.helpers.local_server import serve_in_background

    base_url, traffic, victim = clocked, Traffic(context), context.new_page()
    sign_in_on(victim, base_url)
    signed_in_as(victim)
    cookie = only_cookie(context)["value"]
    refused = CROSS_ORIGIN_SITE.format(site="same-site")

    with serve_in_background(attacker_site(base_url)) as attacker_url:
        assert attacker_url.split(":")[:2] == base_url.split(":")[:2] and attacker_url != base_url
        attacker = context.new_page()
        before = len(SERVICE.seen)
        attacker.goto(f"{attacker_url}/fetch")
        assert attacker.evaluate("window.attacks") == [
            ["refresh", "no-cors", "opaque", 0, ""],  # sent, refused, and unreadable anyway
            ["refresh", "cors", "TypeError"],  # no CORS header: not even the refusal is the attacker's to read
            ["logout", "no-cors", "opaque", 0, ""],
            ["logout", "cors", "TypeError"],
            ["login", "no-cors", "opaque", 0, ""],
        ]
        for path in ("refresh", "logout", "login"):
            attacker.goto(f"{attacker_url}/form/{path}")
            attacker.wait_for_url(f"{base_url}/app/session/{path}")
            assert json.loads(attacker.locator("body").inner_text()) == {"detail": refused}
        forged = [entry for entry in SERVICE.seen[before:] if entry["path"].startswith("/app/session/")]
        assert [(entry["method"], entry["path"], entry["status"]) for entry in forged] == [
            ("POST", "/app/session/refresh", 403),
            ("POST", "/app/session/refresh", 403),
            ("POST", "/app/session/logout", 403),
            ("POST", "/app/session/logout", 403),
            ("POST", "/app/session/login", 403),
            ("POST", "/app/session/refresh", 403),
            ("POST", "/app/session/logout", 403),
            ("POST", "/app/session/login", 403),
        ]
        for entry in forged:
            headers = entry["headers"]
            # SameSite=Strict let the cookie go (same site): the origin check is what refused them.
            assert (headers["cookie"], headers["sec-fetch-site"]) == (f"{REFRESH_COOKIE}={cookie}", "same-site")
            assert headers["origin"] == attacker_url
        attacker.close()

    assert only_cookie(context)["value"] == cookie  # neither rotated nor cleared
    CLOCK.expire_access_tokens()
    check_who_i_am(victim)  # the victim's session is alive: its cookie still refreshes
    assert signed_in_as(victim) == "Signed in as Alice Liddell (alice)"
    assert traffic.paths(base_url)[-3:] == [
        ("GET", "/users/me", 401),
        ("POST", "/app/session/refresh", 200),
        ("GET", "/users/me", 200),
    ]


INJECTED = """async () => {
  const response = await fetch("app/session/refresh", { method: "POST" });
  const stolen = { cookie: document.cookie, setCookie: response.headers.get("set-cookie"),
                   headers: [...response.headers.keys()], body: Object.keys(await response.json()).sort() };
  const attempts = {
    innerHTML: () => { document.body.innerHTML += '<img src="x" onerror="window.ran = true">'; },
    policy: () => trustedTypes.createPolicy("mine", { createScriptURL: (url) => url }),
    eval: () => eval("window.ran = true"),
  };
  for (const [name, attempt] of Object.entries(attempts)) {
    try { attempt(); stolen[name] = "done"; } catch (error) { stolen[name] = error.name; }
  }
  stolen.ran = window.ran === true;
  return stolen;
}"""


@pytest.mark.browser
def test_a_script_injected_into_the_page_cannot_read_the_refresh_token(context, clocked):
    base_url, traffic, page = clocked, Traffic(context), context.new_page()
    sign_in_on(page, base_url)
    signed_in_as(page)
    cookie = only_cookie(context)["value"]

    stolen = page.evaluate(INJECTED)
    assert stolen == {
        "cookie": "",  # HttpOnly: not in document.cookie
        "setCookie": None,  # Set-Cookie is never shown to script
        "headers": [  # every header of the answer but Set-Cookie, which no script is shown
            "cache-control",
            "content-length",
            "content-security-policy",
            "content-type",
            "date",
            "pragma",
            "referrer-policy",
            "server",
            "x-content-type-options",
        ],
        "body": ["access_token", "expires_in", "scope", "token_type"],  # an access token, while the page is open
        "innerHTML": "TypeError",  # Trusted Types: no HTML from a string
        "policy": "TypeError",  # nor a policy to make some (trusted-types 'none')
        "eval": "EvalError",  # CSP: no script but /app/app.js, no eval
        "ran": False,
    }
    assert traffic.paths(base_url)[-1] == ("POST", "/app/session/refresh", 200)
    new_cookie = only_cookie(context)["value"]
    assert new_cookie != cookie and new_cookie not in json.dumps(stolen)
    assert page.evaluate(STORAGE) == EMPTY
