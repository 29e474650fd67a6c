"""Login protections: failed-login limits (429), a bounded hashing queue (503), a cap on request bodies (413)."""

import re
import time
from types import SimpleNamespace

import httpx
import limits.aio.storage.memory
import pytest
from fastapi.testclient import TestClient

from lesson_code import app as app_module
from lesson_code import passwords, protection
from lesson_code.app import app, client_address
from lesson_code.settings import Settings, get_settings

WRONG = {"detail": "Incorrect username or password"}
TOO_LARGE = {"detail": "Request body is larger than 4096 bytes"}
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


class Clock:
    """Stands in for time.time() where the limits are counted, so a test can move an hour on at once."""

    def __init__(self) -> None:
        self.now = time.time()

    def time(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch):
    clock = Clock()
    monkeypatch.setattr(limits.aio.storage.memory, "time", clock)
    monkeypatch.setattr(protection, "time", clock)
    return clock


@pytest.fixture
def limited(clock):
    """Start the app with these settings and a fresh count; then log in as if from an address."""
    clients = []

    def start(**values):
        settings = Settings(**values)
        app.dependency_overrides[get_settings] = lambda: settings
        client = TestClient(app)
        clients.append(client.__enter__())

        def login(username, password, address="192.0.2.1"):
            app.dependency_overrides[client_address] = lambda: address
            return client.post("/token", data={"username": username, "password": password})

        return login

    yield start
    app.dependency_overrides.clear()
    for client in clients:
        client.__exit__(None, None, None)


def assert_throttled(response, seconds):
    retry_after = int(response.headers["retry-after"])
    assert response.status_code == 429
    assert seconds - 1 <= retry_after <= seconds
    assert response.json() == {"detail": f"Too many failed logins: try again in {retry_after} seconds"}
    assert "access_token" not in response.text


def test_the_account_limit_answers_429_before_hashing_whatever_the_password(limited, hashed):
    login = limited(login_failures_per_account="3/hour")
    for address in ("192.0.2.1", "192.0.2.2", "192.0.2.3"):
        assert login("alice", "guess", address).json() == WRONG
    hashed.clear()
    right, wrong = login("alice", "wonderland", "192.0.2.4"), login("alice", "guess", "192.0.2.4")
    assert_throttled(right, 3600)
    assert_throttled(wrong, 3600)
    assert right.content == wrong.content
    assert hashed == []
    assert login("mad-hatter", "tea", "192.0.2.4").json() == WRONG


def test_unknown_users_are_counted_like_real_ones(limited):
    login = limited(login_failures_per_account="2/hour")
    for _ in range(2):
        assert login("mad-hatter", "tea").status_code == 401
    assert_throttled(login("mad-hatter", "tea"), 3600)


def test_the_client_limit_counts_every_username_from_one_address(limited):
    login = limited(login_failures_per_client="3/hour")
    for username in ("alice", "bob", "mad-hatter"):
        assert login(username, "guess", "198.51.100.7").status_code == 401
    assert_throttled(login("alice", "wonderland", "198.51.100.7"), 3600)
    assert login("alice", "wonderland", "198.51.100.8").status_code == 200


def test_one_address_cannot_lock_the_account_out_for_everyone(limited):
    login = limited(login_failures_per_account_and_client="2/hour")
    for _ in range(2):
        assert login("alice", "guess", "203.0.113.66").status_code == 401
    assert_throttled(login("alice", "wonderland", "203.0.113.66"), 3600)
    assert login("alice", "wonderland", "192.0.2.10").status_code == 200


def test_successful_logins_are_not_counted(limited):
    login = limited(login_failures_per_account="2/minute", login_failures_per_account_and_client="2/minute")
    assert [login("alice", "wonderland").status_code for _ in range(4)] == [200] * 4


def test_the_window_moves_on_and_retry_after_says_when(limited, clock):
    login = limited(login_failures_per_account="2/hour")
    assert login("alice", "guess").status_code == 401
    clock.now += 1200
    assert login("alice", "guess").status_code == 401
    clock.now += 600
    assert_throttled(login("alice", "wonderland"), 1800)
    clock.now += 1801
    assert login("alice", "wonderland").status_code == 200
    assert login("alice", "guess").status_code == 401
    assert_throttled(login("alice", "wonderland"), 1200)


def test_the_default_limits_are_no_looser_than_asvs(monkeypatch):
    for name in (
        "LOGIN_FAILURES_PER_ACCOUNT",
        "LOGIN_FAILURES_PER_CLIENT",
        "LOGIN_FAILURES_PER_ACCOUNT_AND_CLIENT",
        "MAX_LOGINS_WAITING_TO_HASH",
        "REQUEST_BODY_MAX_BYTES",
    ):
        monkeypatch.delenv(name, raising=False)
    settings = Settings()
    assert settings.login_failures_per_account == "100/hour"
    assert settings.login_failures_per_client == "300/hour"
    assert settings.login_failures_per_account_and_client == "20/hour"
    assert (settings.max_logins_waiting_to_hash, settings.request_body_max_bytes) == (16, 4096)


def test_settings_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("LOGIN_FAILURES_PER_ACCOUNT", "10 per minute")
    monkeypatch.setenv("REQUEST_BODY_MAX_BYTES", "1024")
    settings = Settings()
    assert (settings.login_failures_per_account, settings.request_body_max_bytes) == ("10 per minute", 1024)


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("LOGIN_FAILURES_PER_CLIENT", "lots", "couldn't parse rate limit string 'lots'"),
        ("LOGIN_LIMITS_STORAGE_URL", "redis://cache:6379", "the app counts from async code: write async+redis://"),
        ("REQUEST_BODY_MAX_BYTES", "-1", "Input should be greater than or equal to 0"),
    ],
)
def test_a_bad_setting_is_refused_with_a_message(monkeypatch, name, value, message):
    monkeypatch.setenv(name, value)
    with pytest.raises(ValueError, match=re.escape(message)):
        Settings()


def busy_limiter(waiting):
    statistics = SimpleNamespace(borrowed_tokens=1, total_tokens=1, tasks_waiting=waiting)
    return SimpleNamespace(statistics=lambda: statistics)


def test_a_full_hashing_queue_answers_503_at_once(limited, hashed, monkeypatch):
    login = limited(max_logins_waiting_to_hash=4)
    idle_limiter = passwords.HASHING_LIMITER
    monkeypatch.setattr(passwords, "HASHING_LIMITER", busy_limiter(waiting=4))
    for password in ("wonderland", "guess"):
        response = login("alice", password)
        assert (response.status_code, response.json()) == (
            503,
            {"detail": "Too many logins at once: try again in 1 second"},
        )
        assert response.headers["retry-after"] == "1"
    assert hashed == []
    monkeypatch.setattr(passwords, "HASHING_LIMITER", idle_limiter)
    assert login("alice", "guess").json() == WRONG


def test_a_login_may_wait_while_the_queue_has_room(monkeypatch):
    monkeypatch.setattr(passwords, "HASHING_LIMITER", busy_limiter(waiting=3))
    assert not passwords.hashing_queue_full(4)
    assert passwords.hashing_queue_full(3)


@pytest.fixture
def handler_calls(monkeypatch):
    """Logins that reached the route's own code."""
    calls = []
    authenticate = app_module.authenticate_user

    async def recording_authenticate(*args):
        calls.append(args[0])
        return await authenticate(*args)

    monkeypatch.setattr(app_module, "authenticate_user", recording_authenticate)
    return calls


def test_a_body_at_the_limit_is_read(client, handler_calls):
    body = "username=alice&password=" + "w" * (4096 - len("username=alice&password="))
    response = client.post("/token", content=body, headers=FORM)
    assert (response.status_code, response.json(), handler_calls) == (401, WRONG, ["alice"])


def test_a_declared_length_over_the_limit_is_refused_unread(client, handler_calls):
    response = client.post("/token", data={"username": "alice", "password": "w" * 5000})
    assert (response.status_code, response.json(), handler_calls) == (413, TOO_LARGE, [])


def chunks(count, size=1000):
    for _ in range(count):
        yield b"a" * size


def test_a_streamed_body_is_refused_once_it_passes_the_limit(client, handler_calls):
    response = client.post("/token", content=chunks(10), headers=FORM)
    assert "content-length" not in response.request.headers
    assert (response.status_code, response.json(), handler_calls) == (413, TOO_LARGE, [])


def test_a_chunked_body_is_refused_over_http(live_server, handler_calls):
    response = httpx.post(f"{live_server}/token", content=chunks(100), headers=FORM, timeout=30)
    assert response.request.headers["transfer-encoding"] == "chunked"
    assert (response.status_code, response.json(), handler_calls) == (413, TOO_LARGE, [])


def test_a_declared_length_over_the_limit_is_refused_over_http(live_server, handler_calls):
    response = httpx.post(f"{live_server}/token", content=b"a" * 5000, headers=FORM)
    assert (response.status_code, response.json(), handler_calls) == (413, TOO_LARGE, [])
