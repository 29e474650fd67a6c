"""A resource server: a second API that checks the issuer's access tokens with its public keys, and can mint none.

It holds no private key, no secret and no database. On first need it fetches the issuer's JWK Set (JWKS_URL) with
httpx, directly (never through a proxy the environment names), keeps it as long as the issuer's Cache-Control max-age
says, and verifies each bearer token with the one key its kid names (jwks_verify.py), for JWT_ISSUER and
JWT_AUDIENCE. A kid it does not know makes it fetch the set again, at most once every JWKS_REFETCH_SECONDS, so tokens
naming made-up kids cannot make it hammer the issuer. When the issuer is down, the keys it has keep working; before
it has any, it answers 503 with Retry-After (a 401 would send the client to log in again, which cannot help).

What it cannot see: a logout, a revoked session, a disabled user or a scope taken away, which only the issuer's
database knows. An access token stays valid here until its exp: that is why access tokens live minutes, not days.

Serve it with `python -m lesson_code serve-resource` or `uvicorn lesson_code.resource_server:app --port 8001`.
"""

import logging
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Annotated

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
from lesson_code.jwks_verify import (
    JwksCache,
    JwksUrlError,
    KeysUnavailable,
    check_jwks_url,
    granted_scopes,
    jwks_client,
    verify_access_token,
)
from lesson_code.scopes import SCOPES
from lesson_code.settings import Settings, SettingsError, checked_settings, get_settings
from lesson_code.tokens import TokenError, expires_at

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


def checked_jwks_url(settings: Settings) -> str:
    """JWKS_URL (or the issuer's), if keys fetched from it cannot be swapped on the way; SettingsError otherwise."""
    try:
        return check_jwks_url(settings.jwks_location)
    except JwksUrlError as error:
        raise SettingsError(str(error)) from None


def point_login_at(app: FastAPI, issuer: str) -> None:
    """The OpenAPI schema names the issuer's /token as where tokens come from."""
    oauth2_scheme.model.flows.password.tokenUrl = f"{issuer.rstrip('/')}/token"
    app.openapi_schema = None


@asynccontextmanager
async def lifespan(app: FastAPI):
    settings = checked_settings()
    url = checked_jwks_url(settings)
    point_login_at(app, settings.jwt_issuer)
    async with jwks_client() as client:  # directly: never through a proxy the environment names
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
