"""A bounded load test on loopback: thousands of requests from concurrent clients, valid and invalid tokens mixed."""

import asyncio
import itertools
from collections import Counter
from datetime import timedelta

import httpx
import jwt as pyjwt
from forge import ALICE, FAR_FUTURE, forge, tampered

from lesson_code.tokens import SECRET_KEY, create_access_token

REQUESTS = 3000
CLIENTS = 16


def token_mix() -> list[tuple[str, bool]]:
    valid = [create_access_token({"sub": "alice"}, expires_delta=timedelta(minutes=m)) for m in (1, 5, 15, 60)]
    valid.append(pyjwt.encode({"sub": "alice", "exp": FAR_FUTURE}, SECRET_KEY, algorithm="HS256"))
    invalid = [
        create_access_token({"sub": "alice"}, expires_delta=timedelta(minutes=-5)),
        tampered(valid[0], {"sub": "alice", "exp": FAR_FUTURE}),
        pyjwt.encode(
            {"sub": "alice", "exp": FAR_FUTURE}, "a-key-that-is-not-the-servers-0123456789", algorithm="HS256"
        ),
        forge({"alg": "none"}, {"sub": "alice", "exp": FAR_FUTURE}),
        forge({"alg": "HS512"}, {"sub": "alice", "exp": FAR_FUTURE}, SECRET_KEY, "HS512"),
        create_access_token({"sub": "mad-hatter"}),
        "garbage",
        "a" * 5000,
    ]
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


def test_thousands_of_mixed_requests_get_exactly_the_right_answers(live_server):
    outcomes = asyncio.run(hammer(live_server))
    expected_valid = sum(valid for _, valid in itertools.islice(itertools.cycle(token_mix()), REQUESTS))
    assert outcomes == Counter({"valid accepted": expected_valid, "invalid refused": REQUESTS - expected_valid})
