"""A bounded load test on loopback: thousands of requests from concurrent clients, valid and invalid tokens mixed."""

import asyncio
import itertools
from collections import Counter
from datetime import timedelta

import httpx
import jwt as pyjwt
from forge import ALICE, FAR_FUTURE, hostile_tokens

from lesson_code.secret_file import get_secret_key
from lesson_code.tokens import create_access_token

REQUESTS = 3000
CLIENTS = 16
LOGINS = 48  # each: alice with her password, and a guess at an account that does not exist
PAIR_LIMIT = 20  # failed logins per (account, client address) an hour, by default


def token_mix() -> list[tuple[str, bool]]:
    valid = [create_access_token({"sub": "alice"}, expires_delta=timedelta(minutes=m)) for m in (1, 5, 15, 60)]
    valid.append(pyjwt.encode({"sub": "alice", "exp": FAR_FUTURE}, get_secret_key(), algorithm="HS256"))
    hostile = hostile_tokens(get_secret_key())
    invalid = [
        hostile[name][0] for name in ("expired", "tampered payload", "wrong key", "alg none", "HS512 with the same key")
    ]
    invalid += [create_access_token({"sub": "mad-hatter"}), "garbage", "a" * 5000]
    return [(token, True) for token in valid] + [(token, False) for token in invalid]


async def hammer(base_url: str) -> Counter:
    mix = itertools.cycle(token_mix())
    plan = [next(mix) for _ in range(REQUESTS)]
    outcomes = Counter()

    async def client(share: list[tuple[str, bool]]) -> None:
        async with httpx.AsyncClient(base_url=base_url, timeout=30) as http:
            for token, valid in share:
                try:
                    response = await http.get("/users/me", headers={"Authorization": f"Bearer {token}"})
                except httpx.HTTPError as error:
                    outcomes[f"transport error: {type(error).__name__}"] += 1
                    continue
                if valid:
                    outcomes[
                        "valid accepted" if (response.status_code, response.json()) == (200, ALICE) else "valid refused"
                    ] += 1
                else:
                    refused = response.status_code == 401 and response.headers["www-authenticate"] == "Bearer"
                    outcomes["invalid refused" if refused else f"invalid answered {response.status_code}"] += 1

    await asyncio.wait_for(asyncio.gather(*(client(plan[n::CLIENTS]) for n in range(CLIENTS))), timeout=120)
    return outcomes


async def log_in(http: httpx.AsyncClient, username: str, password: str) -> str:
    response = await http.post("/token", data={"username": username, "password": password})
    if response.status_code == 200:
        right = response.headers["cache-control"] == "no-store" and set(response.json()) == {
            "access_token",
            "token_type",
        }
        return "login accepted" if right else "login answered 200 wrongly"
    if (response.status_code, response.json()) == (401, {"detail": "Incorrect username or password"}):
        return "wrong password refused"
    if response.status_code == 429 and 3590 <= int(response.headers["retry-after"]) <= 3600:
        return "wrong password throttled"
    return f"login answered {response.status_code}"


async def login_storm(base_url: str) -> Counter:
    attempts = [("alice", "wonderland"), ("mad-hatter", "tea")] * LOGINS

    async def client(share: list[tuple[str, str]]) -> list[str]:
        async with httpx.AsyncClient(base_url=base_url, timeout=30) as http:
            return [await log_in(http, *attempt) for attempt in share]

    shares = await asyncio.gather(*(client(attempts[n::CLIENTS]) for n in range(CLIENTS)))
    return Counter(outcome for share in shares for outcome in share)


def test_a_guesser_on_the_same_address_is_throttled_while_alice_logs_in(live_server):
    outcomes = asyncio.run(asyncio.wait_for(login_storm(live_server), timeout=120))
    refused = outcomes["wrong password refused"]
    assert PAIR_LIMIT <= refused < PAIR_LIMIT + CLIENTS  # failures are counted once hashed: a few may be in flight
    assert outcomes == Counter(
        {"login accepted": LOGINS, "wrong password refused": refused, "wrong password throttled": LOGINS - refused}
    )


def test_thousands_of_mixed_requests_get_exactly_the_right_answers(live_server):
    outcomes = asyncio.run(hammer(live_server))
    expected_valid = sum(valid for _, valid in itertools.islice(itertools.cycle(token_mix()), REQUESTS))
    assert outcomes == Counter({"valid accepted": expected_valid, "invalid refused": REQUESTS - expected_valid})
