"""A resource server: a second API that checks the issuer's access tokens with its public keys, and can mint none.

It holds no private key, no secret and no database. On first need it fetches the issuer's JWK Set (JWKS_URL) with
httpx, directly (never through a proxy the environment names), keeps it as long as the issuer's Cache-Control max-age
says, and verifies each bearer token with the one key its kid names (keys.decode_signed_token), for JWT_ISSUER and
JWT_AUDIENCE. A kid it does not know makes it fetch the set again, at most once every JWKS_REFETCH_SECONDS, so tokens
naming made-up kids cannot make it hammer the issuer. When the issuer is down, the keys it has keep working; before
it has any, it answers 503 with Retry-After (a 401 would send the client to log in again, which cannot help).

What it cannot see: a logout, a revoked session, a disabled user or a scope taken away, which only the issuer's
database knows. An access token stays valid here until its exp: that is why access tokens live minutes, not days.

Serve it with `python -m lesson_code serve-resource` or `uvicorn lesson_code.resource_server:app --port 8001`.
"""

import ipaddress
import json
import logging
import math
import re
import time
from collections.abc import Callable, Mapping
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Annotated
from urllib.parse import urlsplit

import anyio
import httpx
from fastapi import Depends, FastAPI, Request, Security, status
from fastapi.responses import JSONResponse
from fastapi.security import OAuth2PasswordBearer, SecurityScopes
from pydantic import BaseModel

from lesson_code.http_common import (
    BODY_TOO_LARGE_RESPONSE,
    INSUFFICIENT_SCOPE_RESPONSE,
    NO_STORE,
    RETRY_AFTER,
    Message,
    credentials_exception,
    hardened_app,
    insufficient_scope,
)
from lesson_code.keys import decode_signed_token, usable_keys
from lesson_code.scopes import SCOPES
from lesson_code.settings import Settings, SettingsError, checked_settings, get_settings
from lesson_code.tokens import TokenError, expires_at, get_unverified_header

MAX_JWKS_BYTES = 64 * 1024
FETCH_SECONDS = 3.0  # the whole fetch, connection to last byte: a request waiting for keys waits no longer
FETCH_TIMEOUT = httpx.Timeout(FETCH_SECONDS, connect=2.0)
DEFAULT_CACHE_SECONDS = 300  # an issuer that sends no max-age
MAX_CACHE_SECONDS = 3600  # a key the issuer withdraws stops working here within the hour, whatever its max-age said
MAX_AGE = re.compile(r"(?:^|,)\s*max-age\s*=\s*\"?(\d+)", re.IGNORECASE)
KEYS_UNAVAILABLE = "The issuer's keys cannot be fetched: try again later"
PROTECTED_RESPONSES = {
    status.HTTP_401_UNAUTHORIZED: {"model": Message, "description": "Missing or invalid token"},
    **INSUFFICIENT_SCOPE_RESPONSE,
    **BODY_TOO_LARGE_RESPONSE,
    status.HTTP_503_SERVICE_UNAVAILABLE: {
        "model": Message,
        "description": "No key has been fetched from the issuer yet, and it cannot be reached",
        "headers": RETRY_AFTER,
    },
}
# Swagger UI's Authorize logs in at the issuer's /token: this service has none. The lifespan sets the real URL.
oauth2_scheme = OAuth2PasswordBearer(tokenUrl=f"{Settings.model_fields['jwt_issuer'].default}/token", scopes=SCOPES)
logger = logging.getLogger(__name__)


class Profile(BaseModel):
    """What this service learned from a token: who it was issued to, what it may do, and until when."""

    username: str
    scopes: list[str]
    token_expires_at: datetime


class Health(BaseModel):
    status: str


class KeysUnavailable(Exception):
    """No key of the issuer is known yet and none can be fetched now; retry_after: whole seconds to wait."""

    def __init__(self, retry_after: int) -> None:
        self.retry_after = retry_after


class FetchFailed(Exception):
    """The JWK Set could not be fetched or read; str() says why, in one line."""


def check_jwks_url(url: str) -> str:
    """url if keys fetched from it cannot be swapped on the way: https, or http to this machine; else SettingsError."""
    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return url
    if parts.scheme == "http" and parts.hostname:
        try:
            loopback = parts.hostname == "localhost" or ipaddress.ip_address(parts.hostname).is_loopback
        except ValueError:
            loopback = False
        if loopback:
            return url
    raise SettingsError(f"JWKS_URL is not a valid setting: {url!r} must be https:// (or http:// to this machine)")


def cache_seconds(cache_control: str, refetch_seconds: float) -> float:
    """How long a fetched key set stays fresh: its max-age (no-store and no-cache: 0), within the refetch interval
    and MAX_CACHE_SECONDS."""
    if re.search(r"no-store|no-cache", cache_control, re.IGNORECASE):
        seconds = 0.0
    else:
        found = MAX_AGE.search(cache_control)
        seconds = float(found.group(1)) if found else DEFAULT_CACHE_SECONDS
    return min(max(seconds, refetch_seconds), MAX_CACHE_SECONDS)


async def read_jwks(client: httpx.AsyncClient, url: str) -> tuple[dict[str, dict], str]:
    """The usable keys of the JWK Set at url, by kid, and its Cache-Control; FetchFailed for anything else."""
    headers = {"Accept": "application/json", "Accept-Encoding": "identity"}  # no gzip bomb to unpack
    async with client.stream("GET", url, headers=headers) as response:
        if response.status_code != status.HTTP_200_OK:
            raise FetchFailed(f"the issuer answered {response.status_code}")
        if response.headers.get("content-encoding", "identity").lower() != "identity":
            raise FetchFailed("the issuer answered a compressed key set")
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > MAX_JWKS_BYTES:
            raise FetchFailed(f"the key set is over {MAX_JWKS_BYTES} bytes")
        body = bytearray()
        async for chunk in response.aiter_bytes():  # no Content-Encoding: the bytes as sent
            body += chunk
            if len(body) > MAX_JWKS_BYTES:
                raise FetchFailed(f"the key set is over {MAX_JWKS_BYTES} bytes")
    try:
        document = json.loads(body)
    except (ValueError, RecursionError):
        raise FetchFailed("the key set is not JSON") from None
    keys = usable_keys(document)
    if not keys:
        raise FetchFailed("the key set holds no usable signing key")
    return keys, response.headers.get("cache-control", "")


class JwksCache:
    """The issuer's public keys by kid: fetched on first need, again once stale or for a kid not among them, but
    never more than once every refetch_seconds; concurrent requests share one fetch. A failed fetch keeps the keys."""

    def __init__(
        self,
        url: str,
        client: httpx.AsyncClient,
        refetch_seconds: float,
        clock: Callable[[], float] = time.monotonic,
        fetch_seconds: float = FETCH_SECONDS,
    ) -> None:
        self.url, self.client, self.refetch_seconds = url, client, refetch_seconds
        self.clock, self.fetch_seconds = clock, fetch_seconds
        self._lock = anyio.Lock()
        self._keys: dict[str, dict] | None = None
        self._fresh_until = -math.inf
        self._attempted_at = -math.inf
        self._attempts = 0

    @property
    def keys(self) -> Mapping[str, dict]:
        """The keys held now, by kid: public members only."""
        return self._keys or {}

    async def keys_for(self, kid: str) -> Mapping[str, dict]:
        """The keys to verify a token naming kid with; KeysUnavailable when none was ever fetched."""
        if self._should_fetch(kid):
            attempts = self._attempts
            async with self._lock:
                if attempts == self._attempts and self._should_fetch(kid):  # else: another request just fetched
                    with anyio.CancelScope(shield=True):  # a client that hangs up cancels no one else's fetch
                        await self._fetch()
        elif self._lock.locked() and (self._keys is None or kid not in self._keys):
            async with self._lock:  # a fetch is under way: wait for the keys it brings, not the ones held before
                pass
        if self._keys is None:
            raise KeysUnavailable(self._seconds_to_next_fetch())
        return self._keys

    def _should_fetch(self, kid: str) -> bool:
        now = self.clock()
        if now - self._attempted_at < self.refetch_seconds:
            return False
        return self._keys is None or now >= self._fresh_until or kid not in self._keys

    def _seconds_to_next_fetch(self) -> int:
        return max(1, math.ceil(self._attempted_at + self.refetch_seconds - self.clock()))

    async def _fetch(self) -> None:
        self._attempts += 1
        self._attempted_at = self.clock()
        try:
            with anyio.fail_after(self.fetch_seconds):
                keys, cache_control = await read_jwks(self.client, self.url)
        except (FetchFailed, httpx.HTTPError, TimeoutError) as error:
            reason = str(error) or type(error).__name__
            logger.warning("Fetching the issuer's keys from %s failed (%s); %d kept", self.url, reason, len(self.keys))
            return
        self._keys = keys
        self._fresh_until = self.clock() + cache_seconds(cache_control, self.refetch_seconds)


def granted_scopes(claims: dict) -> list[str]:
    """The scopes the token's scope claim grants (space-separated); none without one; TokenError if not a string."""
    scope = claims.get("scope", "")
    if not isinstance(scope, str):
        raise TokenError("scope must be a string")
    return scope.split()


async def verify_access_token(token: str, cache: JwksCache, issuer: str, audience: str) -> dict:
    """The claims of a valid access token of the issuer, checked with the key its kid names; TokenError if not."""
    kid = get_unverified_header(token).get("kid")
    keys = await cache.keys_for(kid) if isinstance(kid, str) else {}  # no string kid, no key: no fetch either
    claims = decode_signed_token(token, keys, issuer, audience)
    granted_scopes(claims)
    expires_at(claims)  # an exp past the year 9999 is not a time: refused here, not a 500 later
    return claims


def point_login_at(app: FastAPI, issuer: str) -> None:
    """The OpenAPI schema names the issuer's /token as where tokens come from."""
    oauth2_scheme.model.flows.password.tokenUrl = f"{issuer.rstrip('/')}/token"
    app.openapi_schema = None


@asynccontextmanager
async def lifespan(app: FastAPI):
    settings = checked_settings()
    url = check_jwks_url(settings.jwks_location)
    point_login_at(app, settings.jwt_issuer)
    # trust_env=False: no HTTP_PROXY, ALL_PROXY or .netrc from the environment. A proxy would answer the key fetch
    # itself, with keys of its choosing: "https or this machine" holds only on a direct connection.
    async with httpx.AsyncClient(timeout=FETCH_TIMEOUT, follow_redirects=False, trust_env=False) as client:
        yield {"jwks_cache": JwksCache(url, client, settings.jwks_refetch_seconds)}  # nothing fetched before needed


app = hardened_app(
    "JWT lesson resource server", lifespan, lambda: get_settings().request_body_max_bytes, (SettingsError,)
)


@app.exception_handler(KeysUnavailable)
async def keys_unavailable(request: Request, error: KeysUnavailable) -> JSONResponse:
    headers = {"Retry-After": str(error.retry_after), **NO_STORE}
    return JSONResponse({"detail": KEYS_UNAVAILABLE}, status.HTTP_503_SERVICE_UNAVAILABLE, headers=headers)


async def get_jwks_cache(request: Request) -> JwksCache:
    return request.state.jwks_cache


async def current_settings() -> Settings:
    return get_settings()  # cached; as an async dependency it runs on the event loop, not in a worker thread


async def get_access_claims(
    token: Annotated[str, Depends(oauth2_scheme)],
    cache: Annotated[JwksCache, Depends(get_jwks_cache)],
    settings: Annotated[Settings, Depends(current_settings)],
) -> dict:
    try:
        return await verify_access_token(token, cache, settings.jwt_issuer, settings.jwt_audience)
    except TokenError:
        raise credentials_exception() from None


async def get_profile(security_scopes: SecurityScopes, claims: Annotated[dict, Depends(get_access_claims)]) -> Profile:
    scopes = granted_scopes(claims)
    if not set(security_scopes.scopes) <= set(scopes):
        raise insufficient_scope(security_scopes)
    return Profile(username=claims["sub"], scopes=scopes, token_expires_at=expires_at(claims))


@app.get("/health")
async def health() -> Health:
    """Unprotected: the service is up (it says nothing about the issuer)."""
    return Health(status="ok")


@app.get("/profile", responses=PROTECTED_RESPONSES)
async def read_profile(profile: Annotated[Profile, Security(get_profile, scopes=["me"])]) -> Profile:
    """Who the token was issued to, its scopes and when it expires: read from the token alone, checked with the
    issuer's public key."""
    return profile
