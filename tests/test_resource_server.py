"""lesson_code/resource_server.py: a service with no key, secret or database of its own checks the issuer's ES256
access tokens with the public keys it fetches from the issuer's JWK Set, through a rotation and with the issuer down.

The issuer is real (keys.KeySource on a key directory, keys.SignedAccessTokens); most tests serve its JWK Set through
httpx.MockTransport and count the fetches, with a clock the test moves; one serves it over HTTP on 127.0.0.1.
"""

import json
import os
from collections.abc import AsyncIterator
from contextlib import ExitStack
from datetime import datetime, timedelta, timezone

import anyio
import httpx
import jwt as pyjwt
import pytest
from conftest import serving_the_service
from fastapi.testclient import TestClient
from forge import forge, nested, tampered
from jose import jwt as jose_jwt

from lesson_code import jwks_verify, keys
from lesson_code.jwks_verify import (
    DEFAULT_CACHE_SECONDS,
    MAX_CACHE_SECONDS,
    MAX_JWKS_BYTES,
    JwksCache,
    JwksUrlError,
    cache_seconds,
    check_jwks_url,
)
from lesson_code.keys import SignedAccessTokens
from lesson_code.resource_server import KEYS_UNAVAILABLE, app, get_jwks_cache
from lesson_code.settings import Settings, SettingsError, get_settings
from lesson_code.tokens import create_access_token
from notebooks.helpers.local_server import serve_in_background
from tests.utils.fake_proxy import fake_proxy
from tests.utils.jwks_issuer import AUDIENCE, ISSUER, JWKS_PATH, LONGEST_TOKEN, MAX_AGE, JwksIssuer, private_jwks
from tests.utils.uvicorn_process import uvicorn_process

JWKS_URL = ISSUER + JWKS_PATH
REFETCH_SECONDS = 5
CANNOT_VALIDATE = {"detail": "Could not validate credentials"}
NOT_AUTHENTICATED = {"detail": "Not authenticated"}
NEEDS_ME = {"detail": "Not enough permissions: this needs the scope me"}
INSUFFICIENT_SCOPE = 'Bearer error="insufficient_scope", scope="me"'
DEFAULT_ISSUER = Settings.model_fields["jwt_issuer"].default
DEFAULT_AUDIENCE = Settings.model_fields["jwt_audience"].default


class Clock:
    """time.monotonic for the cache, moved by the test."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def issuer(tmp_path, monkeypatch) -> JwksIssuer:
    monkeypatch.setenv("JWT_ISSUER", ISSUER)
    monkeypatch.setenv("JWT_AUDIENCE", AUDIENCE)
    monkeypatch.delenv("JWKS_URL", raising=False)
    monkeypatch.setenv("JWKS_REFETCH_SECONDS", str(REFETCH_SECONDS))
    get_settings.cache_clear()
    return JwksIssuer(tmp_path / "keys")


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def cache(issuer, clock) -> JwksCache:
    return JwksCache(JWKS_URL, httpx.AsyncClient(transport=issuer.transport()), REFETCH_SECONDS, clock=clock)


@pytest.fixture
def client(cache):
    """The resource server in-process, fetching from the issuer through its MockTransport."""
    app.dependency_overrides[get_jwks_cache] = lambda: cache
    try:
        with TestClient(app) as client:
            yield client
    finally:
        app.dependency_overrides.clear()


def call(client, token=None):
    headers = {} if token is None else {"Authorization": f"Bearer {token}"}
    return client.get("/profile", headers=headers)


def answer(response):
    return response.status_code, response.json(), response.headers.get("www-authenticate")


def profile(token: str, scopes=("me",)) -> dict:
    exp = pyjwt.decode(token, options={"verify_signature": False})["exp"]
    when = datetime.fromtimestamp(exp, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {"username": "alice", "scopes": list(scopes), "token_expires_at": when}


def claims(**changes) -> dict:
    now = int(datetime.now(timezone.utc).timestamp())
    return {"sub": "alice", "scope": "me", "iss": ISSUER, "aud": AUDIENCE, "iat": now, "exp": now + 600, **changes}


def es256(issuer: JwksIssuer, payload: dict, **header) -> str:
    """Signed with the issuer's own signing key, with any header."""
    return jose_jwt.encode(payload, issuer.signing_key().jwk, algorithm="ES256", headers=header)


def other_tokens(issuer: JwksIssuer, issuer_name: str = ISSUER, audience: str = AUDIENCE) -> SignedAccessTokens:
    return SignedAccessTokens(issuer.source, issuer_name, audience, LONGEST_TOKEN)


def signed_with_public_key(issuer: JwksIssuer) -> str:
    """Algorithm confusion: HS256 named in the header, the issuer's public JWK (as published) the HMAC secret."""
    key = issuer.signing_key()
    return forge({"alg": "HS256", "typ": "JWT", "kid": key.kid}, claims(), json.dumps(key.public_jwk()))


BAD_TOKENS = {
    "garbage": lambda issuer: "not-a-token",
    "HS256 from tokens.create_access_token": lambda issuer: create_access_token({"sub": "alice", "scope": "me"}),
    "wrong iss": lambda issuer: other_tokens(issuer, issuer_name="https://other.example").create(
        {"sub": "alice", "scope": "me"}
    ),
    "wrong aud": lambda issuer: other_tokens(issuer, audience="another-api").create({"sub": "alice", "scope": "me"}),
    "expired": lambda issuer: issuer.token(expires_delta=timedelta(minutes=-5)),
    "missing kid": lambda issuer: es256(issuer, claims()),
    "non-string kid": lambda issuer: es256(issuer, claims(), kid=7),
    "HS256 signed with the public key": signed_with_public_key,
    "alg none with the kid": lambda issuer: forge({"alg": "none", "kid": issuer.signing_key().kid}, claims()),
    "tampered sub": lambda issuer: tampered(issuer.token(), claims(sub="carol")),
    "scope not a string": lambda issuer: issuer.tokens.create({"sub": "alice", "scope": ["me"]}),
    "no sub": lambda issuer: issuer.tokens.create({"scope": "me"}),
    "typ of another kind": lambda issuer: es256(issuer, claims(), kid=issuer.signing_key().kid, typ="refresh+jwt"),
}


def test_a_valid_token_gives_what_the_token_says(client, issuer):
    token = issuer.token()
    response = call(client, token)
    assert (response.status_code, response.json()) == (200, profile(token))
    assert call(client, issuer.token()).status_code == 200
    assert issuer.fetches == 1  # kept, not fetched per request


def test_every_scope_of_the_token_is_listed(client, issuer):
    token = issuer.token(scope="me admin")
    assert (call(client, token).status_code, call(client, token).json()) == (200, profile(token, ["me", "admin"]))


def test_start_up_fetches_nothing_and_health_needs_no_issuer(client, issuer):
    issuer.down = True
    response = client.get("/health")
    assert (response.status_code, response.json()) == (200, {"status": "ok"})
    assert response.headers["x-content-type-options"] == "nosniff"
    assert issuer.fetches == 0


def test_no_token(client, issuer):
    assert answer(call(client)) == (401, NOT_AUTHENTICATED, "Bearer")
    assert issuer.fetches == 0


@pytest.mark.parametrize("name", BAD_TOKENS)
def test_bad_tokens_are_401(client, issuer, name):
    assert call(client, issuer.token()).status_code == 200
    assert answer(call(client, BAD_TOKENS[name](issuer))) == (401, CANNOT_VALIDATE, "Bearer")


@pytest.mark.parametrize("name", ["garbage", "HS256 from tokens.create_access_token", "missing kid", "non-string kid"])
def test_a_token_naming_no_key_is_refused_without_a_fetch_even_with_the_issuer_down(client, issuer, name):
    issuer.down = True
    assert answer(call(client, BAD_TOKENS[name](issuer))) == (401, CANNOT_VALIDATE, "Bearer")
    assert issuer.fetches == 0


def test_a_token_without_the_scope_is_403_insufficient_scope(client, issuer):
    for scope in ("admin", ""):
        assert answer(call(client, issuer.token(scope=scope))) == (403, NEEDS_ME, INSUFFICIENT_SCOPE)


def test_unknown_kids_refetch_at_most_once_per_interval(client, issuer, clock, tmp_path):
    stranger = JwksIssuer(tmp_path / "stranger")
    assert call(client, issuer.token()).status_code == 200
    assert issuer.fetches == 1
    clock.advance(REFETCH_SECONDS)
    for _ in range(20):
        assert answer(call(client, stranger.token())) == (401, CANNOT_VALIDATE, "Bearer")
    assert issuer.fetches == 2
    clock.advance(REFETCH_SECONDS - 0.1)
    assert call(client, stranger.token()).status_code == 401
    assert issuer.fetches == 2
    clock.advance(0.1)
    assert call(client, stranger.token()).status_code == 401
    assert issuer.fetches == 3


def test_an_unknown_kid_first_fetches_once(client, issuer, tmp_path):
    stranger = JwksIssuer(tmp_path / "stranger")
    for _ in range(5):
        assert answer(call(client, stranger.token())) == (401, CANNOT_VALIDATE, "Bearer")
    assert issuer.fetches == 1
    assert call(client, issuer.token()).status_code == 200
    assert issuer.fetches == 1


def concurrently(cache: JwksCache, kids: list[str], head_start: float = 0) -> list[object]:
    """keys_for each kid at once (the first head_start seconds before the others): the keys, or KeysUnavailable's
    retry_after."""
    results = []

    async def one(kid: str) -> None:
        try:
            results.append(sorted(await cache.keys_for(kid)))
        except jwks_verify.KeysUnavailable as error:
            results.append(error.retry_after)

    async def main() -> None:
        async with anyio.create_task_group() as group:
            group.start_soon(one, kids[0])
            if head_start:
                await anyio.sleep(head_start)
            for kid in kids[1:]:
                group.start_soon(one, kid)

    anyio.run(main)
    return results


def slow(issuer: JwksIssuer, seconds: float = 0.05) -> httpx.AsyncClient:
    async def handler(request: httpx.Request) -> httpx.Response:
        await anyio.sleep(seconds)
        return issuer.jwks_response(request)

    return httpx.AsyncClient(transport=httpx.MockTransport(handler))


def test_concurrent_requests_share_one_fetch(issuer):
    cache = JwksCache(JWKS_URL, slow(issuer), refetch_seconds=0)  # no interval: only the lock makes them share
    kid = issuer.signing_key().kid
    assert concurrently(cache, [kid] * 10) == [[kid]] * 10
    assert issuer.fetches == 1
    assert concurrently(cache, [f"unknown-{n}" for n in range(10)]) == [[kid]] * 10
    assert issuer.fetches == 2


def test_concurrent_requests_share_one_failed_fetch(issuer):
    issuer.down = True
    cache = JwksCache(JWKS_URL, slow(issuer), refetch_seconds=REFETCH_SECONDS)
    assert concurrently(cache, ["any"] * 10) == [REFETCH_SECONDS] * 10
    assert issuer.fetches == 1


def test_keys_are_refetched_once_max_age_has_passed(client, issuer, clock):
    assert call(client, issuer.token()).status_code == 200
    clock.advance(MAX_AGE - 1)
    assert call(client, issuer.token()).status_code == 200
    assert issuer.fetches == 1
    clock.advance(1)
    assert call(client, issuer.token()).status_code == 200
    assert issuer.fetches == 2


@pytest.mark.parametrize(
    ("cache_control", "seconds"),
    [
        ("public, max-age=300", 300),
        ('max-age="60"', 60),
        ("Max-Age=1", REFETCH_SECONDS),  # never more often than the refetch interval
        ("no-store", REFETCH_SECONDS),
        ("no-cache, max-age=600", REFETCH_SECONDS),
        ("s-maxage=900, public", DEFAULT_CACHE_SECONDS),
        ("", DEFAULT_CACHE_SECONDS),
        ("max-age=31536000", MAX_CACHE_SECONDS),
    ],
)
def test_how_long_a_key_set_stays_fresh(cache_control, seconds):
    assert cache_seconds(cache_control, REFETCH_SECONDS) == seconds


def test_a_new_key_is_published_before_it_signs(client, issuer):
    before = issuer.token()
    old_kid = issuer.signing_key().kid
    new_kid = issuer.rotate().kid
    assert pyjwt.get_unverified_header(issuer.token())["kid"] == old_kid  # for keys.PUBLISH_AHEAD_SECONDS
    assert [key["kid"] for key in issuer.tokens.jwks()["keys"]] == [old_kid, new_kid]
    assert (call(client, before).status_code, issuer.fetches) == (200, 1)


def test_a_rotation_logs_no_one_out(client, issuer, clock):
    before = issuer.token()
    assert call(client, before).status_code == 200  # the last fetch before the rotation
    old_kid = issuer.signing_key().kid
    new_kid = issuer.rotate(ago=timedelta(seconds=keys.PUBLISH_AHEAD_SECONDS)).kid
    clock.advance(keys.PUBLISH_AHEAD_SECONDS)  # the first token naming the new key comes this long after it
    after = issuer.token()
    assert pyjwt.get_unverified_header(after)["kid"] == new_kid != old_kid
    for token in (after, before, after, before):
        assert (call(client, token).status_code, call(client, token).json()) == (200, profile(token))
    assert issuer.fetches == 2


def test_with_the_issuer_down_cached_keys_keep_working(client, issuer, clock, tmp_path):
    token = issuer.token()
    assert call(client, token).status_code == 200
    issuer.down = True
    clock.advance(MAX_AGE)  # stale: the next request tries to refetch, fails, keeps the keys
    assert (call(client, token).status_code, call(client, token).json()) == (200, profile(token))
    assert issuer.fetches == 2
    clock.advance(REFETCH_SECONDS)
    assert answer(call(client, JwksIssuer(tmp_path / "stranger").token())) == (401, CANNOT_VALIDATE, "Bearer")
    assert issuer.fetches == 3
    assert call(client, token).status_code == 200


def test_with_the_issuer_down_from_the_start_503_says_when_to_retry(client, issuer, clock):
    issuer.down = True
    unavailable = (503, {"detail": KEYS_UNAVAILABLE})
    response = call(client, issuer.token())
    assert (response.status_code, response.json()) == unavailable
    assert (response.headers["retry-after"], response.headers["cache-control"]) == (str(REFETCH_SECONDS), "no-store")
    clock.advance(2)
    response = call(client, issuer.token())
    assert (response.status_code, response.json(), response.headers["retry-after"]) == (*unavailable, "3")
    assert issuer.fetches == 1  # no fetch per request while it is down
    issuer.down = False
    clock.advance(3)
    token = issuer.token()
    assert (call(client, token).status_code, call(client, token).json()) == (200, profile(token))
    assert issuer.fetches == 2


async def endless_body() -> AsyncIterator[bytes]:
    while True:
        yield b" " * 1024


BAD_ANSWERS = {
    "500": lambda request: httpx.Response(500, text="Internal Server Error"),
    "404": lambda request: httpx.Response(404, json={"detail": "Not Found"}),
    "not JSON": lambda request: httpx.Response(200, text="<html>hello</html>"),
    "not UTF-8": lambda request: httpx.Response(200, content=b'{"keys": ["\xff"]}'),
    "a list": lambda request: httpx.Response(200, json=[]),
    "keys not a list": lambda request: httpx.Response(200, json={"keys": "all of them"}),
    "no keys": lambda request: httpx.Response(200, json={"keys": []}),
    "keys of no use": lambda request: httpx.Response(200, json={"keys": [{"kty": "oct", "k": "c2VjcmV0", "kid": "a"}]}),
    "nested too deeply": lambda request: httpx.Response(200, content=nested(30_000).encode()),
    "too large, said": lambda request: httpx.Response(200, content=b" " * (MAX_JWKS_BYTES + 1)),
    "too large, unsaid": lambda request: httpx.Response(200, content=endless_body()),
    "compressed": lambda request: httpx.Response(200, content=b"\x1f\x8b", headers={"Content-Encoding": "gzip"}),
    "a redirect": lambda request: httpx.Response(302, headers={"Location": "https://elsewhere.example/jwks.json"}),
    "read error": lambda request: (_ for _ in ()).throw(httpx.ReadError("connection reset", request=request)),
}


@pytest.mark.parametrize("name", BAD_ANSWERS)
def test_a_bad_answer_before_any_key_is_503(client, issuer, name):
    issuer.answer = BAD_ANSWERS[name]
    response = call(client, issuer.token())
    assert (response.status_code, response.json()) == (503, {"detail": KEYS_UNAVAILABLE})
    assert issuer.fetches == 1


@pytest.mark.parametrize("name", BAD_ANSWERS)
def test_a_bad_answer_after_a_good_one_keeps_the_keys(client, issuer, clock, name):
    assert call(client, issuer.token()).status_code == 200
    issuer.answer = BAD_ANSWERS[name]
    clock.advance(MAX_AGE)
    token = issuer.token()
    assert (call(client, token).status_code, call(client, token).json()) == (200, profile(token))
    assert issuer.fetches == 2


def test_a_fetch_that_hangs_is_given_up(issuer, clock):
    cache = JwksCache(JWKS_URL, slow(issuer, seconds=30), REFETCH_SECONDS, clock=clock, fetch_seconds=0.2)
    assert concurrently(cache, ["any"]) == [REFETCH_SECONDS]


def test_a_published_private_member_is_never_used_nor_shown(client, issuer, cache):
    issuer.answer = private_jwks(issuer)
    private_d = issuer.signing_key().jwk["d"]
    token = issuer.token()
    response = call(client, token)
    assert (response.status_code, response.json()) == (200, profile(token))
    public = {name: value for name, value in issuer.signing_key().public_jwk().items() if name != "use"}
    assert dict(cache.keys) == {public["kid"]: public}
    for path in ("/profile", "/openapi.json", "/health"):
        assert private_d not in client.get(path, headers={"Authorization": f"Bearer {token}"}).text


def test_the_docs_log_in_at_the_issuer(client):
    schemes = client.get("/openapi.json").json()["components"]["securitySchemes"]
    assert schemes["OAuth2PasswordBearer"]["flows"]["password"]["tokenUrl"] == f"{ISSUER}/token"
    assert client.get("/docs").status_code == 200


@pytest.mark.parametrize(
    "url",
    [
        "https://issuer.example/.well-known/jwks.json",
        "http://127.0.0.1:8000/.well-known/jwks.json",
        "http://localhost:8000/.well-known/jwks.json",
        "http://[::1]:8000/.well-known/jwks.json",
    ],
)
def test_keys_are_fetched_over_https_or_from_this_machine(url):
    assert check_jwks_url(url) == url


@pytest.mark.parametrize(
    "url", ["http://issuer.example/.well-known/jwks.json", "http://10.0.0.1/jwks.json", "file:///etc/passwd", "jwks"]
)
def test_a_jwks_url_anyone_on_the_way_could_answer_stops_start_up(url, monkeypatch):
    monkeypatch.setenv("JWKS_URL", url)
    get_settings.cache_clear()
    message = f"JWKS_URL is not a valid setting: {url!r} must be https:// (or http:// to this machine)"
    with pytest.raises(SettingsError) as raised, TestClient(app):
        pass
    assert str(raised.value) == message
    with pytest.raises(JwksUrlError) as refused:  # the verifier alone says the same, in its own error
        check_jwks_url(url)
    assert str(refused.value) == message


def test_over_http_with_no_secret_and_no_database(issuer, tmp_path):
    """The real thing: the resource server under uvicorn, in a process given no secret and an unreachable database,
    fetches the keys from an issuer on 127.0.0.1, keeps them when the issuer stops, and answers 401 for a kid it
    then cannot fetch."""
    token = issuer.token()
    stranger = JwksIssuer(tmp_path / "stranger").token()
    environment = {name: value for name, value in os.environ.items() if not name.startswith(("JWT_", "JWKS_"))}
    environment |= {
        "JWT_SECRET_FILE": str(tmp_path / "no-such-folder" / ".jwt_secret"),
        "DATABASE_URL": "postgresql://nobody@127.0.0.1:9/nothing",
        "JWT_ISSUER": ISSUER,
        "JWT_AUDIENCE": AUDIENCE,
        "JWKS_REFETCH_SECONDS": "0",
    }
    with ExitStack() as issuer_running:
        issuer_url = issuer_running.enter_context(serve_in_background(issuer.asgi_app()))
        environment["JWKS_URL"] = issuer_url + JWKS_PATH
        with uvicorn_process("lesson_code.resource_server:app", environment, tmp_path) as base_url:
            assert httpx.get(f"{base_url}/health").json() == {"status": "ok"}
            assert issuer.fetches == 0
            response = httpx.get(f"{base_url}/profile", headers={"Authorization": f"Bearer {token}"})
            assert (response.status_code, response.json()) == (200, profile(token))
            assert issuer.fetches == 1
            issuer_running.close()
            response = httpx.get(f"{base_url}/profile", headers={"Authorization": f"Bearer {token}"})
            assert (response.status_code, response.json()) == (200, profile(token))
            response = httpx.get(f"{base_url}/profile", headers={"Authorization": f"Bearer {stranger}"})
            assert answer(response) == (401, CANNOT_VALIDATE, "Bearer")
            assert issuer.fetches == 1


PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy")


def test_the_keys_are_fetched_directly_whatever_proxy_the_environment_names(issuer, tmp_path):
    """A proxy named in HTTP_PROXY or ALL_PROXY (as containers and company networks set them) could answer the plain
    http fetch from 127.0.0.1 with keys of its own: the resource server never asks it. The attacker's token, signed
    with the key the proxy would publish, is refused; the issuer's token is accepted; the proxy saw no request."""
    attacker = JwksIssuer(tmp_path / "attacker")
    forged = attacker.tokens.create({"sub": "carol", "scope": "me admin"})
    environment = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("JWT_", "JWKS_")) and name.lower() not in ("no_proxy", *PROXY_VARIABLES)
    }
    environment |= {"JWT_ISSUER": ISSUER, "JWT_AUDIENCE": AUDIENCE, "JWKS_REFETCH_SECONDS": "0"}
    with ExitStack() as running:
        proxy = running.enter_context(fake_proxy(attacker.tokens.jwks()))
        environment |= dict.fromkeys(PROXY_VARIABLES, proxy.url)
        environment["JWKS_URL"] = running.enter_context(serve_in_background(issuer.asgi_app())) + JWKS_PATH
        base_url = running.enter_context(uvicorn_process("lesson_code.resource_server:app", environment, tmp_path))
        response = httpx.get(f"{base_url}/profile", headers={"Authorization": f"Bearer {forged}"})
        assert answer(response) == (401, CANNOT_VALIDATE, "Bearer")
        token = issuer.token()
        response = httpx.get(f"{base_url}/profile", headers={"Authorization": f"Bearer {token}"})
        assert (response.status_code, response.json()) == (200, profile(token))
        assert (proxy.requests, issuer.fetches) == ([], 1)


def test_with_the_real_issuer_alices_login_reaches_the_resource_server(tmp_path, monkeypatch):
    """lesson_code.service signing ES256 under uvicorn (SQLite): alice logs in there, and the resource server fetches
    its JWK Set over HTTP and accepts her access token; carol's admin-only token is 403 here too. Logout cannot reach
    the resource server: the token keeps working until its exp."""
    database = f"sqlite:///{tmp_path / 'lesson.db'}"
    with serving_the_service(database, jwt_algorithm="ES256", jwt_key_dir=tmp_path / "keys") as issuer_url:
        monkeypatch.setenv("JWKS_URL", issuer_url + JWKS_PATH)
        monkeypatch.setenv("JWT_ISSUER", DEFAULT_ISSUER)
        monkeypatch.setenv("JWT_AUDIENCE", DEFAULT_AUDIENCE)
        get_settings.cache_clear()
        alice = httpx.post(f"{issuer_url}/token", data={"username": "alice", "password": "wonderland"}).json()
        carol = httpx.post(
            f"{issuer_url}/token", data={"username": "carol", "password": "tea-party", "scope": "admin"}
        ).json()
        with TestClient(app) as client:
            token = alice["access_token"]
            response = call(client, token)
            assert (response.status_code, response.json()) == (200, profile(token))
            assert answer(call(client, carol["access_token"])) == (403, NEEDS_ME, INSUFFICIENT_SCOPE)
            bearer = {"Authorization": f"Bearer {token}"}
            assert httpx.post(f"{issuer_url}/logout", headers=bearer).status_code == 204
            assert httpx.get(f"{issuer_url}/users/me", headers=bearer).status_code == 401
            assert (call(client, token).status_code, call(client, token).json()) == (200, profile(token))


def test_requests_during_a_fetch_for_an_unknown_kid_wait_for_its_keys(issuer, clock):
    cache = JwksCache(JWKS_URL, slow(issuer), refetch_seconds=REFETCH_SECONDS, clock=clock)
    old_kid = issuer.signing_key().kid
    assert concurrently(cache, [old_kid]) == [[old_kid]]
    new_kid = issuer.rotate(ago=timedelta(seconds=keys.PUBLISH_AHEAD_SECONDS)).kid
    clock.advance(keys.PUBLISH_AHEAD_SECONDS)
    assert concurrently(cache, [new_kid] * 10, head_start=0.02) == [sorted([old_kid, new_kid])] * 10
    assert issuer.fetches == 2


def test_requests_during_the_first_fetch_wait_for_it_instead_of_503(issuer, clock):
    cache = JwksCache(JWKS_URL, slow(issuer), refetch_seconds=REFETCH_SECONDS, clock=clock)
    kid = issuer.signing_key().kid
    assert concurrently(cache, [kid] * 10, head_start=0.02) == [[kid]] * 10
    assert issuer.fetches == 1


def test_a_signed_token_whose_exp_is_past_the_year_9999_is_401_not_500(client, issuer):
    token = es256(issuer, claims(exp=253402300800), kid=issuer.signing_key().kid)
    assert answer(call(client, token)) == (401, CANNOT_VALIDATE, "Bearer")
