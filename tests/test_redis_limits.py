"""Login limits counted in Redis (LOGIN_LIMITS_STORAGE_URL=async+redis://...): the same answers as in memory, counts
shared by every instance and worker, logins paused (503) while Redis is down, and a start-up refused without it."""

import logging
import re
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from conftest import argon2_hash, serving_the_service
from forge import ALICE

from lesson_code import store
from lesson_code.protection import LimitsUnavailable
from tests.utils.redis_server import redis, redis_server  # noqa: F401  (the fixtures)
from tests.utils.uvicorn_process import (
    REPO_ROOT,
    child_environment,
    free_port,
    served_by,
    stop,
    uvicorn_process,
    wait_until_answering,
)

APP = "lesson_code.service:app"
WRONG = {"detail": "Incorrect username or password"}
ALICES_PASSWORD = "wonderland"
PAUSED = {"detail": "Logins are paused: the login limits cannot be checked (try again later)"}
ENOUGH_TO_SEE_BOTH_WORKERS = 100  # requests, each on a new connection, before giving up on the second worker
REFUSED_AFTER_THE_LIMIT = 5  # at least this many answers after the limit is reached, all refused

# The database plays no part in the limits: SQLite alone, as in test_two_workers.py.
sqlite_only = pytest.mark.parametrize("db", ["sqlite"], indirect=True)


def login(client, username="alice", password=ALICES_PASSWORD):
    return client.post("/token", data={"username": username, "password": password})


def assert_too_many(response, prefix: str, seconds: int, since: float | None) -> None:
    """429 with Retry-After N and the body saying the same N: N at most the window, and no less than what is left of
    it since `since` (time.monotonic() before the first counted login; None: a few seconds ago)."""
    assert response.status_code == 429, response.text
    retry_after = int(response.headers["retry-after"])
    elapsed = 5 if since is None else time.monotonic() - since
    assert seconds - elapsed - 1 <= retry_after <= seconds, (retry_after, elapsed)
    assert response.json() == {"detail": f"{prefix}: try again in {retry_after} seconds"}
    assert response.headers["cache-control"] == "no-store"
    assert "access_token" not in response.text


def assert_too_many_failed(response, seconds: int = 3600, since: float | None = None) -> None:
    assert_too_many(response, "Too many failed logins", seconds, since)


def assert_too_many_logins(response, seconds: int = 60, since: float | None = None) -> None:
    assert_too_many(response, "Too many logins", seconds, since)


def assert_wrong(response) -> None:
    assert (response.status_code, response.json()) == (401, WRONG)


# --- In-process: the service's TestClient with its storage in Redis ---------------------------------------------


@sqlite_only
@pytest.mark.parametrize("storage", ["memory", "redis"])
def test_redis_counts_failed_logins_exactly_as_memory_does(start_service, redis, storage):  # noqa: F811
    url = redis.url if storage == "redis" else "async+memory://"
    client = start_service(login_limits_storage_url=url, login_failures_per_account_and_client="3/hour")
    for _ in range(3):
        assert_wrong(login(client, password="guess"))
    assert_too_many_failed(login(client))  # the right password too
    assert_too_many_failed(login(client, password="guess"))
    assert login(client, "carol", "tea-party").status_code == 200  # another account from the same client
    keys = redis.keys()
    if storage == "memory":
        assert keys == []
    else:
        pair = "LIMITS:LIMITER/pair/testclient/alice/3/1/hour"
        assert pair in keys, keys
        assert redis.command("LLEN", pair) == 3  # the three failures; the refused logins are not counted


@sqlite_only
def test_a_second_instance_sees_the_failures_counted_in_redis(start_service, redis):  # noqa: F811
    settings = {"login_limits_storage_url": redis.url, "login_failures_per_account_and_client": "3/hour"}
    first = start_service(**settings)
    for _ in range(3):
        assert_wrong(login(first, password="guess"))
    second = start_service(**settings)  # another app start, with its own event loop and Redis connections
    assert_too_many_failed(login(second))
    assert_too_many_failed(login(first))
    assert login(second, "carol", "tea-party").status_code == 200


@sqlite_only
def test_instances_counting_in_memory_each_count_alone(start_service, redis):  # noqa: F811
    """The contrast: what Redis is for."""
    settings = {"login_limits_storage_url": "async+memory://", "login_failures_per_account_and_client": "3/hour"}
    first = start_service(**settings)
    for _ in range(3):
        assert_wrong(login(first, password="guess"))
    second = start_service(**settings)
    assert login(second).status_code == 200
    assert_too_many_failed(login(first))


@sqlite_only
def test_a_database_number_in_the_url_keeps_the_counts_there(start_service, redis):  # noqa: F811
    client = start_service(login_limits_storage_url=f"{redis.url}/5", login_failures_per_account_and_client="2/hour")
    for _ in range(2):
        assert_wrong(login(client, password="guess"))
    assert_too_many_failed(login(client))
    assert redis.keys() == []
    assert "LIMITS:LIMITER/pair/testclient/alice/2/1/hour" in redis.keys(db=5)


@sqlite_only
def test_redis_down_after_start_up_pauses_logins_but_not_calls_with_a_token(
    start_service,
    redis,  # noqa: F811
    hashed,
    caplog,
):
    caplog.set_level(logging.ERROR, logger="lesson_code.service")
    client = start_service(login_limits_storage_url=redis.url)
    answer = login(client)
    assert answer.status_code == 200, answer.text
    tokens = answer.json()
    bearer = {"Authorization": f"Bearer {tokens['access_token']}"}

    redis.stop()
    hashed.clear()
    for username, password in (("alice", ALICES_PASSWORD), ("alice", "guess"), ("mad-hatter", "tea")):
        paused = login(client, username, password)
        assert (paused.status_code, paused.json()) == (503, PAUSED)
        assert (paused.headers["retry-after"], paused.headers["cache-control"]) == ("5", "no-store")
        assert "access_token" not in paused.text
    assert hashed == []  # refused before any password was checked
    logged = [record.getMessage() for record in caplog.records if record.name == "lesson_code.service"]
    assert len(logged) == 3, logged
    assert all(
        message.startswith("POST /token: the login limits' storage failed: ") and "Connect call failed" in message
        for message in logged
    ), logged
    me = client.get("/users/me", headers=bearer)
    assert (me.status_code, me.json()) == (200, ALICE)  # a token is checked without the limits
    refreshed = client.post("/token", data={"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]})
    assert refreshed.status_code == 200, refreshed.text  # so is a refresh: it checks no password

    redis.start()
    again = login(client)
    assert again.status_code == 200, again.text
    assert client.get("/users/me", headers={"Authorization": f"Bearer {again.json()['access_token']}"}).json() == ALICE


@sqlite_only
def test_redis_down_at_start_up_stops_the_service_with_one_line(start_service, redis):  # noqa: F811
    redis.stop()
    with pytest.raises(LimitsUnavailable) as caught:
        start_service(login_limits_storage_url=redis.url)
    assert str(caught.value) == f"LOGIN_LIMITS_STORAGE_URL {redis.url!r} cannot be reached: it did not answer"


HUNG_LOGIN_TIMEOUT = 6  # seconds the test waits for an answer from the service while Redis hangs


def post_login(base_url: str, timeout: float = 30) -> httpx.Response:
    with httpx.Client(timeout=timeout) as client:
        return client.post(f"{base_url}/token", data={"username": "alice", "password": ALICES_PASSWORD})


@sqlite_only
def test_a_redis_that_hangs_pauses_logins_when_the_url_sets_timeouts(db, redis):  # noqa: F811
    """A frozen Redis (or a network dropping packets) answers nothing: with coredis's stream_timeout and
    connect_timeout in the URL, a login gets 503 in seconds, and logins work again once Redis answers."""
    url = f"{redis.url}?stream_timeout=1&connect_timeout=1"
    with serving_the_service(db.url, login_limits_storage_url=url) as base_url:
        assert post_login(base_url).status_code == 200
        redis.pause()
        try:
            started = time.monotonic()
            paused = post_login(base_url, timeout=HUNG_LOGIN_TIMEOUT)
            waited = time.monotonic() - started
        finally:
            redis.resume()
        assert (paused.status_code, paused.json(), paused.headers["retry-after"]) == (503, PAUSED, "5")
        assert waited < HUNG_LOGIN_TIMEOUT
        assert post_login(base_url).status_code == 200


@sqlite_only
def test_a_redis_that_hangs_pauses_logins_with_the_default_url(db, redis):  # noqa: F811
    """Without timeouts in the URL, LoginThrottle sets REDIS_TIMEOUT_SECONDS: coredis alone would wait for ever."""
    with serving_the_service(db.url, login_limits_storage_url=redis.url) as base_url:
        assert post_login(base_url).status_code == 200
        redis.pause()
        try:
            paused = post_login(base_url, timeout=HUNG_LOGIN_TIMEOUT)
        finally:
            redis.resume()
        assert (paused.status_code, paused.json(), paused.headers["retry-after"]) == (503, PAUSED, "5")


# --- Child processes: uvicorn and `python -m lesson_code serve`, with two workers -------------------------------------


def fresh_login(base_url: str, password: str, username: str = "alice") -> httpx.Response:
    """One login on a connection of its own, so that either worker may take it."""
    with httpx.Client(timeout=30) as client:
        return client.post(f"{base_url}/token", data={"username": username, "password": password})


def seeded_environment(tmp_path: Path, **settings: str) -> dict[str, str]:
    """A child's environment: the demo users in SQLite in tmp_path (cached hashes), its own hashing locks."""
    path = tmp_path / "lesson.db"
    engine = store.make_engine(f"sqlite:///{path}")
    try:
        store.create_schema(engine)
        store.seed_demo_users(engine, argon2_hash)
    finally:
        engine.dispose()
    return child_environment(DATABASE_URL=f"sqlite:///{path}", HASHING_LOCK_DIR=str(tmp_path / "hashing"), **settings)


def wait_for_both_workers(base_url: str, access_log: Path, timeout: float = 60) -> None:
    """Ask for /openapi.json, a new connection each time, until both workers have answered (the limits untouched)."""
    deadline = time.monotonic() + timeout
    while len({pid for pid, _ in served_by(access_log)}) < 2:
        assert time.monotonic() < deadline, f"the second worker did not answer within {timeout} s"
        with httpx.Client(timeout=30) as client:
            assert client.get(f"{base_url}/openapi.json").status_code == 200


def logins_until_both_workers_answered(base_url: str, access_log: Path, password: str, limit: int) -> tuple:
    """Log in until both workers have answered a login and at least REFUSED_AFTER_THE_LIMIT answers came after
    `limit` were let through; (the answers, the pid that gave each)."""
    wait_for_both_workers(base_url, access_log)
    answers, pids = [], []
    while len(set(pids)) < 2 or len(answers) < limit + REFUSED_AFTER_THE_LIMIT:
        assert len(answers) < ENOUGH_TO_SEE_BOTH_WORKERS, f"one worker answered every login: {pids}"
        answers.append(fresh_login(base_url, password))
        pids = [pid for pid, request in served_by(access_log) if request == "POST /token"]
        assert len(pids) == len(answers), served_by(access_log)
    return answers, pids


def test_two_uvicorn_workers_share_the_failed_login_counts_in_redis(redis, tmp_path):  # noqa: F811
    env = seeded_environment(
        tmp_path, LOGIN_LIMITS_STORAGE_URL=redis.url, LOGIN_FAILURES_PER_ACCOUNT_AND_CLIENT="5/hour"
    )
    with uvicorn_process(APP, env, tmp_path, workers=2) as base_url:
        started = time.monotonic()
        answers, pids = logins_until_both_workers_answered(base_url, tmp_path / "access.log", "guess", limit=5)
        right = fresh_login(base_url, ALICES_PASSWORD)
    assert len(set(pids)) == 2
    assert [answer.status_code for answer in answers] == [401] * 5 + [429] * (len(answers) - 5), pids
    for answer in answers[:5]:
        assert_wrong(answer)
    for answer in [*answers[5:], right]:
        assert_too_many_failed(answer, since=started)
    assert redis.command("LLEN", "LIMITS:LIMITER/pair/127.0.0.1/alice/5/1/hour") == 5


def test_two_uvicorn_workers_share_the_attempt_counts_in_redis(redis, tmp_path):  # noqa: F811
    env = seeded_environment(tmp_path, LOGIN_LIMITS_STORAGE_URL=redis.url, LOGIN_ATTEMPTS_PER_CLIENT="4/minute")
    with uvicorn_process(APP, env, tmp_path, workers=2) as base_url:
        started = time.monotonic()
        answers, pids = logins_until_both_workers_answered(base_url, tmp_path / "access.log", ALICES_PASSWORD, limit=4)
    assert len(set(pids)) == 2
    assert [answer.status_code for answer in answers] == [200] * 4 + [429] * (len(answers) - 4), pids
    assert all(answer.json()["token_type"] == "bearer" for answer in answers[:4])
    for answer in answers[4:]:
        assert_too_many_logins(answer, since=started)
    assert redis.command("LLEN", "LIMITS:LIMITER/attempts-client/127.0.0.1/4/1/minute") == 4


def test_serve_with_two_workers_counts_logins_in_redis(redis, tmp_path):  # noqa: F811
    env = seeded_environment(
        tmp_path, LOGIN_LIMITS_STORAGE_URL=redis.url, LOGIN_FAILURES_PER_ACCOUNT_AND_CLIENT="5/hour"
    )
    port = free_port()
    command = [sys.executable, "-m", "lesson_code", "serve", "--workers", "2", "--port", str(port)]
    with open(tmp_path / "serve.out", "wb") as output:
        server = subprocess.Popen(command, env=env, cwd=REPO_ROOT, stdout=output, stderr=subprocess.STDOUT)
        try:
            base_url = f"http://127.0.0.1:{port}"
            wait_until_answering(f"{base_url}/openapi.json", server, lambda: (tmp_path / "serve.out").read_text())
            deadline = time.monotonic() + 60
            while (tmp_path / "serve.out").read_text().count("Application startup complete.") < 2:
                assert time.monotonic() < deadline, (tmp_path / "serve.out").read_text()
                time.sleep(0.05)
            started = time.monotonic()
            answers = [fresh_login(base_url, "guess") for _ in range(5 + REFUSED_AFTER_THE_LIMIT)]
            answers.append(fresh_login(base_url, ALICES_PASSWORD))
        finally:
            stop(server)
    printed = (tmp_path / "serve.out").read_text(errors="replace")
    assert len(set(re.findall(r"Started server process \[(\d+)\]", printed))) == 2, printed
    assert "Traceback" not in printed
    assert [answer.status_code for answer in answers] == [401] * 5 + [429] * (len(answers) - 5)
    for answer in answers[:5]:
        assert_wrong(answer)
    for answer in answers[5:]:
        assert_too_many_failed(answer, since=started)


def test_serve_refuses_two_workers_counting_in_memory_in_one_line(tmp_path):
    env = child_environment(
        DATABASE_URL=f"sqlite:///{tmp_path / 'lesson.db'}",
        HASHING_LOCK_DIR=str(tmp_path / "hashing"),
        LOGIN_LIMITS_STORAGE_URL="async+memory://",
    )
    command = [sys.executable, "-m", "lesson_code", "serve", "--workers", "2", "--port", str(free_port())]
    result = subprocess.run(command, env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=60, check=False)
    assert (result.returncode, result.stdout, result.stderr) == (
        2,
        "",
        "error: --workers 2 with LOGIN_LIMITS_STORAGE_URL=async+memory://: each worker would count logins on its "
        "own (2 times the limits); set LOGIN_LIMITS_STORAGE_URL=async+redis://HOST:6379, or serve one worker\n",
    )


def test_redis_down_stops_uvicorn_at_start_up_with_one_line(redis, tmp_path):  # noqa: F811
    redis.stop()
    env = seeded_environment(tmp_path, LOGIN_LIMITS_STORAGE_URL=redis.url)
    command = [sys.executable, "-m", "uvicorn", APP, "--host", "127.0.0.1", "--port", str(free_port())]
    result = subprocess.run(command, env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=60, check=False)
    lines = result.stderr.splitlines()
    assert result.returncode == 3, result.stderr
    assert "Traceback" not in result.stderr
    assert lines[-2:] == [
        f"ERROR:    LOGIN_LIMITS_STORAGE_URL {redis.url!r} cannot be reached: it did not answer",
        "ERROR:    Application startup failed. Exiting.",
    ]
