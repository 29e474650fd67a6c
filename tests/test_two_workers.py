"""The service under uvicorn: two workers share sessions through the database, a restart keeps them, a bad database
stops the start with one line."""

import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import jwt
import pytest
from forge import ALICE

from lesson_code import store
from tests.utils.databases import Database
from tests.utils.uvicorn_process import child_environment, free_port, served_by, uvicorn_process

APP = "lesson_code.service:app"
ROUNDS = 20
READERS = 40
ROTATION_SECONDS = 30  # a new key signs 10 s after it is made (keys.PUBLISH_AHEAD_SECONDS): room for a slow machine
CANNOT_VALIDATE = {"detail": "Could not validate credentials"}


def fresh(method: str, url: str, **kwargs) -> httpx.Response:
    """One request on a connection of its own, so that either worker may take it."""
    with httpx.Client(timeout=30) as client:
        return client.request(method, url, **kwargs)


def bearer(tokens: dict) -> dict:
    return {"Authorization": f"Bearer {tokens['access_token']}"}


def log_in(base_url: str) -> dict:
    response = fresh("POST", f"{base_url}/token", data={"username": "alice", "password": "wonderland"})
    assert response.status_code == 200, response.text
    return response.json()


def refreshed(base_url: str, tokens: dict) -> dict:
    form = {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]}
    response = fresh("POST", f"{base_url}/token", data=form)
    assert response.status_code == 200, response.text
    return response.json()


def test_two_workers_share_sessions_and_a_restart_keeps_them(db: Database, tmp_path):
    env = child_environment(DATABASE_URL=db.url)
    first_run, second_run = tmp_path / "first", tmp_path / "second"
    first_run.mkdir()
    second_run.mkdir()

    with uvicorn_process(APP, env, first_run, workers=2) as base_url:
        tokens = log_in(base_url)
        for _ in range(ROUNDS):
            tokens = refreshed(base_url, tokens)
            assert fresh("GET", f"{base_url}/users/me", headers=bearer(tokens)).json() == ALICE
        with ThreadPoolExecutor(8) as pool:
            readers = list(
                pool.map(lambda _: fresh("GET", f"{base_url}/users/me", headers=bearer(tokens)), range(READERS))
            )
        assert [(response.status_code, response.json()) for response in readers] == [(200, ALICE)] * READERS

        assert fresh("POST", f"{base_url}/logout", headers=bearer(tokens)).status_code == 204
        with ThreadPoolExecutor(8) as pool:
            after = list(
                pool.map(lambda _: fresh("GET", f"{base_url}/users/me", headers=bearer(tokens)), range(READERS))
            )
        assert [(response.status_code, response.json()) for response in after] == [(401, CANNOT_VALIDATE)] * READERS

        kept = log_in(base_url)

    pids = {pid for pid, _ in served_by(first_run / "access.log")}
    assert len(pids) == 2, served_by(first_run / "access.log")

    with uvicorn_process(APP, env, second_run, workers=1) as base_url:
        assert fresh("GET", f"{base_url}/users/me", headers=bearer(kept)).json() == ALICE
        kept = refreshed(base_url, kept)
        assert fresh("GET", f"{base_url}/users/me", headers=bearer(kept)).json() == ALICE
        answer = fresh("GET", f"{base_url}/users/me", headers=bearer(tokens))
        assert (answer.status_code, answer.json()) == (401, CANNOT_VALIDATE)  # logged out before the restart


def test_a_database_that_cannot_be_used_stops_uvicorn_with_one_line(db: Database, tmp_path):
    store.create_schema(db.engine)
    db.make_unavailable()
    command = [sys.executable, "-m", "uvicorn", APP, "--host", "127.0.0.1", "--port", str(free_port())]
    result = subprocess.run(
        command, env=child_environment(DATABASE_URL=db.url), capture_output=True, text=True, timeout=120, check=False
    )
    lines = result.stderr.splitlines()
    assert result.returncode == 3, result.stderr
    assert "Traceback" not in result.stderr
    assert lines[-2].startswith("ERROR:    ") and db.unavailable_message(lines[-2].removeprefix("ERROR:    ")), lines
    assert lines[-1] == "ERROR:    Application startup failed. Exiting."


def kid_of(tokens: dict) -> str:
    return jwt.get_unverified_header(tokens["access_token"])["kid"]


@pytest.mark.parametrize("db", ["sqlite"], indirect=True)
def test_every_worker_signs_with_a_rotated_key_within_seconds_and_still_accepts_the_old_one(db: Database, tmp_path):
    key_dir = tmp_path / "keys"
    env = child_environment(  # alice logs in non-stop until both workers sign with the new key: no limit stops her
        DATABASE_URL=db.url,
        JWT_ALGORITHM="ES256",
        JWT_KEY_DIR=str(key_dir),
        MAX_SESSIONS_PER_USER="1000",
        LOGIN_ATTEMPTS_PER_CLIENT="100000/minute",
        LOGIN_ATTEMPTS_PER_ACCOUNT="100000/minute",
    )
    with uvicorn_process(APP, env, tmp_path, workers=2) as base_url:
        before = log_in(base_url)
        [first_kid] = [path.stem for path in key_dir.glob("*.json")]
        assert kid_of(before) == first_kid
        rotation = subprocess.run(
            [sys.executable, "-m", "lesson_code", "keys", "rotate"],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        assert rotation.returncode == 0, rotation.stderr
        second_kid = rotation.stdout.split()[2]
        assert sorted(path.stem for path in key_dir.glob("*.json")) == sorted([first_kid, second_kid])

        logins_before = len(served_by(tmp_path / "access.log"))
        deadline, streak = time.monotonic() + ROTATION_SECONDS, []
        while len(streak) < ROUNDS:
            assert time.monotonic() < deadline, "a worker still signs with the retired key"
            tokens = log_in(base_url)
            streak = streak + [tokens] if kid_of(tokens) == second_kid else []
        answered = {
            pid for pid, request in served_by(tmp_path / "access.log")[logins_before:] if request == "POST /token"
        }
        assert len(answered) == 2, "both workers logged someone in after the rotation"

        with ThreadPoolExecutor(8) as pool:
            old = list(pool.map(lambda _: fresh("GET", f"{base_url}/users/me", headers=bearer(before)), range(READERS)))
            sets = list(pool.map(lambda _: fresh("GET", f"{base_url}/.well-known/jwks.json"), range(READERS)))
        assert [(response.status_code, response.json()) for response in old] == [(200, ALICE)] * READERS
        assert {tuple(key["kid"] for key in response.json()["keys"]) for response in sets} == {(first_kid, second_kid)}
