"""The service's logins under a flood (issue 16): every password-grant attempt is limited whatever its outcome, per
client address and per account; a full hashing queue is counted too; one address cannot take the queue others need;
the cap on hashes holds for the whole machine, across processes; a username no user can have costs nothing."""

import subprocess
import sys
import textwrap
import threading
from collections import Counter
from pathlib import Path

import anyio
import httpx
import pytest
from conftest import argon2_hash, serving_the_service
from limits.aio.strategies import MovingWindowRateLimiter
from sqlalchemy import func, select

from lesson_code import hashing, session_store, store
from lesson_code.hashing import HashingBusy, PasswordChecks
from lesson_code.http_common import client_address
from lesson_code.service import app
from tests.utils.hashing import holding_every_ticket

WRONG = {"detail": "Incorrect username or password"}
QUEUE_FULL = {"detail": "Too many logins at once: try again in 1 second"}
ADDRESS_FULL = {"detail": "Too many logins at once from your address: try again in 1 second"}


ALICES_PASSWORD = "wonderland"


def from_address(client, address: str, username="alice", password=ALICES_PASSWORD):
    app.dependency_overrides[client_address] = lambda: address
    return client.post("/token", data={"username": username, "password": password})


TOO_MANY = (429, "Too many logins", "no-store")


def summary(response) -> tuple:
    """Status, what the answer says before any colon ("tokens" for tokens), and Cache-Control."""
    body = response.json()
    return response.status_code, body.get("detail", "").split(":")[0] or "tokens", response.headers["cache-control"]


def test_a_valid_password_flood_from_one_address_is_limited_and_others_still_log_in(start_service, db):
    client = start_service(login_attempts_per_client="5/minute")
    answers = [summary(from_address(client, "198.51.100.7")) for _ in range(8)]
    assert answers == [(200, "tokens", "no-store")] * 5 + [TOO_MANY] * 3
    throttled = from_address(client, "198.51.100.7")
    assert throttled.json() == {"detail": f"Too many logins: try again in {throttled.headers['retry-after']} seconds"}
    assert summary(from_address(client, "203.0.113.5", "carol", "tea-party")) == (200, "tokens", "no-store")


def test_one_account_is_limited_from_every_address_together(start_service):
    client = start_service(login_attempts_per_account="3/minute")
    answers = [summary(from_address(client, f"198.51.100.{n}")) for n in range(1, 6)]
    assert answers == [(200, "tokens", "no-store")] * 3 + [TOO_MANY] * 2
    assert summary(from_address(client, "198.51.100.9", "carol", "tea-party")) == (200, "tokens", "no-store")


def test_wrong_passwords_count_as_attempts_too(start_service):
    client = start_service(login_attempts_per_client="3/minute")
    answers = [summary(from_address(client, "198.51.100.7", password="guess")) for _ in range(3)]
    assert answers == [(401, "Incorrect username or password", "no-store")] * 3
    assert summary(from_address(client, "198.51.100.7")) == TOO_MANY


def test_logins_answered_503_for_a_full_queue_are_counted(start_service, tmp_path, hashed):
    client = start_service(login_attempts_per_client="2/minute", hashing_lock_dir=tmp_path / "hashing")
    with holding_every_ticket(tmp_path / "hashing"):
        busy = [from_address(client, "198.51.100.7") for _ in range(2)]
    assert [(response.status_code, response.json()) for response in busy] == [(503, QUEUE_FULL)] * 2
    assert summary(from_address(client, "198.51.100.7")) == TOO_MANY
    assert hashed == []


def test_a_username_no_user_can_have_costs_no_hash_and_no_count(start_service, hashed, monkeypatch):
    counted = []
    hit = MovingWindowRateLimiter.hit

    async def recording_hit(self, item, *identifiers, cost=1):
        counted.append(identifiers)
        return await hit(self, item, *identifiers, cost=cost)

    monkeypatch.setattr(MovingWindowRateLimiter, "hit", recording_hit)
    client = start_service(login_failures_per_account_and_client="1/hour")
    for name in ("a" * 4000, "alice\x00", "al ice", "élodie", "a" * 65, "alice\n"):
        response = from_address(client, "198.51.100.7", username=name)
        assert (response.status_code, response.json()) == (401, WRONG)
        assert (response.headers["www-authenticate"], response.headers["cache-control"]) == ("Bearer", "no-store")
    assert (hashed, counted) == ([], [])
    assert summary(from_address(client, "198.51.100.7")) == (200, "tokens", "no-store")
    assert hashed == [argon2_hash("wonderland")]


@pytest.fixture
def slow_hash(monkeypatch):
    """password_hash.verify blocked until release() (or 10 s), so logins stay in flight."""
    gate = threading.Event()
    verify = hashing.password_hash.verify

    def blocked_verify(password, hashed_password):
        gate.wait(10)
        return verify(password, hashed_password)

    monkeypatch.setattr(hashing.password_hash, "verify", blocked_verify)
    yield gate.set
    gate.set()


def test_one_address_holds_at_most_its_share_of_the_queue(tmp_path, slow_hash):
    async def main():
        checks = PasswordChecks(max_waiting=4, per_client=2, threads=1, lock_dir=tmp_path)
        results = {}

        async def log_in(name, client):
            try:
                results[name] = await checks.verify("wonderland", argon2_hash("wonderland"), client)
            except HashingBusy as error:
                results[name] = "busy for this address" if error.per_client else "queue full"

        async with anyio.create_task_group() as group:
            for name in ("flood 1", "flood 2"):
                group.start_soon(log_in, name, "198.51.100.7")
            await anyio.sleep(0.2)  # both in flight (one hashing, one waiting): the gate holds them
            await log_in("flood 3", "198.51.100.7")
            group.start_soon(log_in, "carol", "203.0.113.5")
            await anyio.sleep(0.2)
            assert checks.in_flight == {"198.51.100.7": 2, "203.0.113.5": 1}
            slow_hash()
        checks.close()
        assert checks.in_flight == {}
        return results

    assert anyio.run(main) == {"flood 3": "busy for this address", "flood 1": True, "flood 2": True, "carol": True}


def test_the_service_answers_429_when_an_address_has_its_share_in_flight(start_service, monkeypatch):
    client = start_service()

    async def busy_for_this_address(self, password, hashed_password, client):
        raise HashingBusy(per_client=True)

    monkeypatch.setattr(PasswordChecks, "verify", busy_for_this_address)
    response = from_address(client, "198.51.100.7")
    assert (response.status_code, response.json()) == (429, ADDRESS_FULL)
    assert (response.headers["retry-after"], response.headers["cache-control"]) == ("1", "no-store")


HOLDER = textwrap.dedent(
    """
    import fcntl, os, sys
    descriptors = [os.open(path, os.O_RDWR) for path in sys.argv[1:]]
    for descriptor in descriptors:
        fcntl.flock(descriptor, fcntl.LOCK_EX)
    print("held", flush=True)
    sys.stdin.read()  # until the test closes our standard input
    """
)


def held_by_another_process(*paths: Path) -> subprocess.Popen:
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, *map(str, paths)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert holder.stdout.readline() == "held\n"
    return holder


def test_the_hashing_slot_is_the_machines_a_hash_waits_while_another_process_hashes(tmp_path):
    checks = PasswordChecks(max_waiting=4, per_client=2, threads=1, lock_dir=tmp_path)
    holder = held_by_another_process(tmp_path / "slot-0")
    finished = threading.Event()
    results = []

    def log_in():
        results.append(anyio.run(checks.verify, "wonderland", argon2_hash("wonderland"), "198.51.100.7"))
        finished.set()

    thread = threading.Thread(target=log_in)
    thread.start()
    try:
        assert not finished.wait(0.5)  # the other process holds the machine's only slot: no hash here meanwhile
        assert checks.tickets_held == 1
    finally:
        holder.stdin.close()
        holder.wait(10)
    assert finished.wait(10)
    thread.join(10)
    checks.close()
    assert results == [True]


def test_the_queue_is_the_machines_no_ticket_left_in_another_process_is_503_at_once(tmp_path):
    checks = PasswordChecks(max_waiting=2, per_client=2, threads=1, lock_dir=tmp_path)
    tickets = sorted(tmp_path.glob("ticket-*"))
    assert [path.name for path in tickets] == ["ticket-0", "ticket-1", "ticket-2"]  # 1 hashing + 2 waiting
    holder = held_by_another_process(*tickets)
    try:
        with pytest.raises(HashingBusy) as busy:
            anyio.run(checks.verify, "wonderland", argon2_hash("wonderland"), "198.51.100.7")
        assert busy.value.per_client is False
    finally:
        holder.stdin.close()
        holder.wait(10)
    assert anyio.run(checks.verify, "wonderland", argon2_hash("wonderland"), "198.51.100.7") is True
    checks.close()


def test_a_lock_folder_someone_else_could_control_stops_start_up_in_one_line(tmp_path):
    target = tmp_path / "real"
    target.mkdir()
    (tmp_path / "link").symlink_to(target)
    with pytest.raises(hashing.KeyStoreError) as refused:
        PasswordChecks(max_waiting=2, per_client=2, lock_dir=tmp_path / "link")
    assert str(refused.value) == (
        f"{tmp_path / 'link'} is a symbolic link, so someone else may have chosen who may hash; point "
        "HASHING_LOCK_DIR at a folder"
    )
    target.chmod(0o755)
    with pytest.raises(hashing.KeyStoreError) as refused:
        PasswordChecks(max_waiting=2, per_client=2, lock_dir=target)
    assert str(refused.value) == (
        f"{target} can be read or changed by other users (mode 0755); run: chmod 700 {target}"
    )


async def flood_and_carol(base_url: str, flood_logins: int) -> tuple[Counter, list[int]]:
    """32 connections log in as alice (right password) from 127.0.0.1 while carol logs in 5 times from 127.0.0.2."""
    flood, carols = Counter(), []
    todo = iter(range(flood_logins))

    async def flooder(http: httpx.AsyncClient) -> None:
        for _ in todo:
            response = await http.post("/token", data={"username": "alice", "password": ALICES_PASSWORD})
            flood[response.status_code, response.json().get("detail", "tokens").split(":")[0]] += 1

    async def carol() -> None:
        transport = httpx.AsyncHTTPTransport(local_address="127.0.0.2")
        async with httpx.AsyncClient(base_url=base_url, transport=transport, timeout=10) as http:
            for _ in range(5):
                response = await http.post("/token", data={"username": "carol", "password": "tea-party"})
                carols.append(response.status_code)
                await anyio.sleep(0.05)

    async with httpx.AsyncClient(base_url=base_url, timeout=30) as http, anyio.create_task_group() as group:
        for _ in range(32):
            group.start_soon(flooder, http)
        group.start_soon(carol)
    return flood, carols


def test_a_valid_account_flooding_from_one_address_starves_no_one(db):
    """The review's flood, bounded: 32 connections logging in as alice with her right password. She gets at most
    LOGIN_ATTEMPTS_PER_ACCOUNT (30) sessions' worth of 200s, the rest 429 at once (no 503: her address holds at most
    2 places of the queue), carol from another address logs in every time, and alice's rows stay bounded."""
    with serving_the_service(db.url) as base_url:
        flood, carols = anyio.run(flood_and_carol, base_url, 300)
    successes = flood.pop((200, "tokens"), 0)
    assert 1 <= successes <= 30
    assert set(flood) <= {(429, "Too many logins"), (429, "Too many logins at once from your address")}
    assert sum(flood.values()) == 300 - successes
    assert carols == [200] * 5
    with db.engine.connect() as connection:
        rows = connection.scalar(select(func.count()).where(store.sessions.c.user_id == "alice"))
    assert rows <= 2 * session_store.MAX_SESSIONS_PER_USER
