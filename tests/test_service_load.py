"""A bounded load test of lesson_code/service.py on loopback, on SQLite and on PostgreSQL: concurrent clients log in,
refresh, call every protected route with good, bad and under-scoped tokens, and log out. No 5xx, every answer exact."""

import asyncio
import itertools
from collections import Counter
from datetime import timedelta

import httpx
import jwt as pyjwt
import pytest
from conftest import serving_the_service
from forge import ALICE, CAROL, EVERY_USER, tampered

from lesson_code.secret_file import get_secret_key
from lesson_code.tokens import create_access_token

CLIENTS = 16
REQUESTS = 1600  # the mixed calls, shared among the clients
REFRESH_EVERY = 25  # each client refreshes its own session after this many of its calls
CANNOT_VALIDATE = (401, {"detail": "Could not validate credentials"}, "Bearer")


def forbidden(scope: str) -> tuple:
    detail = {"detail": f"Not enough permissions: this needs the scope {scope}"}
    return 403, detail, f'Bearer error="insufficient_scope", scope="{scope}"'


def log_in(base_url: str, username: str, password: str, scope: str) -> dict:
    response = httpx.post(f"{base_url}/token", data={"username": username, "password": password, "scope": scope})
    assert response.status_code == 200, response.text
    return response.json()


def the_calls(base_url: str) -> dict[str, tuple[str, str, str | None, tuple]]:
    """name -> (method, path, bearer token or None, the exact (status, body, WWW-Authenticate) expected)."""
    alice = log_in(base_url, "alice", "wonderland", "me")["access_token"]
    carol = log_in(base_url, "carol", "tea-party", "me admin")["access_token"]
    carol_admin_only = log_in(base_url, "carol", "tea-party", "admin")["access_token"]
    claims = pyjwt.decode(alice, get_secret_key(), algorithms=["HS256"])
    expired = create_access_token({"sub": "alice", "sid": claims["sid"], "scope": "me"}, timedelta(minutes=-5))
    return {
        "alice reads herself": ("GET", "/users/me", alice, (200, ALICE, None)),
        "carol reads herself": ("GET", "/users/me", carol, (200, CAROL, None)),
        "carol lists the users": ("GET", "/users", carol, (200, EVERY_USER, None)),
        "carol disables bob again": (
            "POST",
            "/users/bob/disable",
            carol,
            (200, {"username": "bob", "sessions_ended": 0}, None),
        ),
        "carol disables herself": (
            "POST",
            "/users/carol/disable",
            carol,
            (409, {"detail": "You cannot disable yourself: ask another admin"}, None),
        ),
        "carol disables nobody": ("POST", "/users/nobody/disable", carol, (404, {"detail": "No such user"}, None)),
        "alice lists the users": ("GET", "/users", alice, forbidden("admin")),
        "alice disables bob": ("POST", "/users/bob/disable", alice, forbidden("admin")),
        "admin-only carol reads herself": ("GET", "/users/me", carol_admin_only, forbidden("me")),
        "no token": ("GET", "/users", None, (401, {"detail": "Not authenticated"}, "Bearer")),
        "garbage": ("GET", "/users", "garbage", CANNOT_VALIDATE),
        "expired": ("GET", "/users/me", expired, CANNOT_VALIDATE),
        "scope claim edited": ("GET", "/users", tampered(alice, {**claims, "scope": "me admin"}), CANNOT_VALIDATE),
    }


async def one_client(base_url: str, calls: dict, plan: list[str]) -> Counter:
    """Log in as alice, make the planned calls (refreshing now and then), log out: a Counter of right and wrong."""
    outcomes = Counter()
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as http:

        async def expect(name: str, method: str, path: str, token: str | None, expected: tuple, **kwargs) -> None:
            headers = {} if token is None else {"Authorization": f"Bearer {token}"}
            try:
                response = await http.request(method, path, headers=headers, **kwargs)
            except httpx.HTTPError as error:
                outcomes[f"{name}: transport error {type(error).__name__}"] += 1
                return
            if response.status_code >= 500:
                outcomes[f"{name}: answered {response.status_code}"] += 1
                return
            body = response.json() if response.content else None
            got = (response.status_code, body, response.headers.get("www-authenticate"))
            outcomes[f"{name}: right" if got == expected else f"{name}: wrong {got[0]}"] += 1

        login = {"username": "alice", "password": "wonderland"}
        tokens = await http.post("/token", data=login)
        outcomes["log in: right" if tokens.status_code == 200 else f"log in: wrong {tokens.status_code}"] += 1
        tokens = tokens.json()
        for count, name in enumerate(plan, start=1):
            await expect(name, *calls[name])
            if count % REFRESH_EVERY == 0:
                form = {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]}
                response = await http.post("/token", data=form)
                right = response.status_code == 200 and response.json()["scope"] == "me"
                outcomes["refresh: right" if right else f"refresh: wrong {response.status_code}"] += 1
                tokens = response.json() if right else tokens
                await expect("own session", "GET", "/users/me", tokens["access_token"], (200, ALICE, None))
        await expect("log out", "POST", "/logout", tokens["access_token"], (204, None, None))
        await expect("after logging out", "GET", "/users/me", tokens["access_token"], CANNOT_VALIDATE)
    return outcomes


async def hammer(base_url: str, calls: dict) -> Counter:
    plan = list(itertools.islice(itertools.cycle(calls), REQUESTS))
    shares = [plan[n::CLIENTS] for n in range(CLIENTS)]
    results = await asyncio.gather(*(one_client(base_url, calls, share) for share in shares))
    return sum(results, Counter())


@pytest.fixture
def service_server(db):
    """The service, its 16 clients all on 127.0.0.1 standing for 16 addresses: each may have its login in flight at
    once (an address's share of the hashing queue is 2 by default; test_login_floods tests that share)."""
    with serving_the_service(db.url, max_logins_hashing_per_client=CLIENTS) as base_url:
        yield base_url


def test_every_route_under_load_answers_exactly_and_never_5xx(service_server):
    calls = the_calls(service_server)
    outcomes = asyncio.run(asyncio.wait_for(hammer(service_server, calls), timeout=300))

    plan = Counter(itertools.islice(itertools.cycle(calls), REQUESTS))
    refreshes = sum(len(range(n, REQUESTS, CLIENTS)) // REFRESH_EVERY for n in range(CLIENTS))
    expected = Counter({f"{name}: right": count for name, count in plan.items()})
    expected.update(
        {
            "log in: right": CLIENTS,
            "refresh: right": refreshes,
            "own session: right": refreshes,
            "log out: right": CLIENTS,
            "after logging out: right": CLIENTS,
        }
    )
    assert outcomes == expected
