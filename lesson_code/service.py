"""The finished service: users and sessions in SQL, refresh tokens that rotate, logout and revocation that work, and
scopes that say what a token may do (403 insufficient_scope when it may not, RFC 6750 section 3.1).

Wiring only: the auth routes come from auth_router.py (sessions.py and session_store.py under it), the lessons' users
from store.py, the login limits from protection.py, the machine-wide password checks from hashing.py, the HTTP
hardening from http_common.py. Serve it with `python -m lesson_code serve` or `uvicorn lesson_code.service:app`.
"""

import logging
from contextlib import asynccontextmanager, closing
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Annotated

import anyio.to_thread
from fastapi import Depends, FastAPI, HTTPException, Path, Request, Response, Security, status
from fastapi.responses import JSONResponse
from limits.errors import StorageError
from pydantic import BaseModel
from sqlalchemy import Engine

from lesson_code import sessions, store
from lesson_code.auth_router import (
    SESSION_RESPONSES,
    Auth,
    AuthRoutes,
    current_time,
    database_unavailable,
)
from lesson_code.browser_app import BrowserRoutes
from lesson_code.hashing import BUSY_RETRY_SECONDS, HashingBusy, PasswordChecks
from lesson_code.http_common import INSUFFICIENT_SCOPE_RESPONSE, NO_STORE, Message, hardened_app
from lesson_code.key_store import key_source_for
from lesson_code.keys import JWKS_MAX_AGE_SECONDS, KeyStoreError, SignedAccessTokens
from lesson_code.passwords import dummy_hash, password_hash
from lesson_code.protection import LimitsUnavailable, LoginThrottle, too_many_failed_logins, too_many_logins
from lesson_code.sessions import AccessTokens, Account, Lifetimes
from lesson_code.settings import Settings, SettingsError, checked_settings, get_settings
from lesson_code.store import SCOPES, DatabaseUnavailable, StoreError, UnknownUser, UserPublic
from lesson_code.tokens import SecretKeyError, get_signing_key

LIMITS_UNAVAILABLE = "Logins are paused: the login limits cannot be checked (try again later)"
LIMITS_RETRY_SECONDS = 5
HASHING_QUEUE_FULL = f"Too many logins at once: try again in {BUSY_RETRY_SECONDS} second"
CLIENT_HASHING_FULL = f"Too many logins at once from your address: try again in {BUSY_RETRY_SECONDS} second"
SCOPED_RESPONSES = {**SESSION_RESPONSES, **INSUFFICIENT_SCOPE_RESPONSE}
DISABLE_RESPONSES = {
    **SCOPED_RESPONSES,
    status.HTTP_404_NOT_FOUND: {"model": Message, "description": "No such user"},
    status.HTTP_409_CONFLICT: {"model": Message, "description": "An admin cannot disable themself"},
}
NO_PUBLIC_KEYS = "This service signs with HS256, a shared secret: it has no public key to publish (JWT_ALGORITHM)"
JWKS_RESPONSES = {status.HTTP_404_NOT_FOUND: {"model": Message, "description": "HS256: no public key to publish"}}
USER_NOT_FOUND = "No such user"
CANNOT_DISABLE_YOURSELF = "You cannot disable yourself: ask another admin"
logger = logging.getLogger(__name__)
# A bad database, secret, setting, key folder or limits storage stops start-up with its one line, not a traceback.
ONE_LINE_ERRORS = (StoreError, SecretKeyError, SettingsError, KeyStoreError, LimitsUnavailable)


class User(BaseModel):
    """What /users/me answers: the user, without scopes or password hash."""

    username: str
    email: str | None = None
    full_name: str | None = None
    disabled: bool | None = None


class JsonWebKeySet(BaseModel):
    """RFC 7517 section 5: the public keys that verify this service's access tokens, each named by its kid."""

    keys: list[dict[str, str]]


class DisabledUser(BaseModel):
    username: str
    sessions_ended: int


def hashing_busy(error: HashingBusy) -> HTTPException:
    if error.per_client:
        code, detail = status.HTTP_429_TOO_MANY_REQUESTS, CLIENT_HASHING_FULL
    else:
        code, detail = status.HTTP_503_SERVICE_UNAVAILABLE, HASHING_QUEUE_FULL
    return HTTPException(status_code=code, detail=detail, headers={"Retry-After": str(BUSY_RETRY_SECONDS)})


@dataclass(frozen=True)
class QueuedPasswordCheck:
    """Passwords checked through the machine-wide queue (hashing.py): 503 when it is full, 429 for an address
    holding its share of it."""

    checks: PasswordChecks

    async def __call__(self, password: str, password_hash: str | None, client: str) -> bool:
        try:
            return await self.checks.verify(password, password_hash or dummy_hash(), client)
        except HashingBusy as error:
            raise hashing_busy(error) from None


@dataclass(frozen=True)
class ThrottledLogins:
    """The login limits of protection.py with these settings: too many failed logins (429), then too many logins
    whatever their outcome, from this address or for this account (429, counted)."""

    throttle: LoginThrottle
    settings: Settings

    async def admit(self, login: str, client: str) -> None:
        wait = await self.throttle.seconds_to_wait(self.settings, login, client)
        if wait:
            raise too_many_failed_logins(wait)
        wait = await self.throttle.record_attempt(self.settings, login, client)
        if wait:
            raise too_many_logins(wait)

    async def failed(self, login: str, client: str) -> None:
        await self.throttle.record_failure(self.settings, login, client)


@dataclass(frozen=True)
class LessonSessionAccounts:
    """store.SessionCheck's one SELECT (session live, user not disabled) as the session layer's account lookup."""

    check: store.SessionCheck

    async def __call__(self, sid: str, now: datetime) -> Account | None:
        user = await self.check(sid, now)
        return None if user is None else store.account_of(user)


def access_tokens_for(settings: Settings) -> AccessTokens | SignedAccessTokens:
    """HS256 with the secret, or for JWT_ALGORITHM=ES256 or RS256 the newest key (made if none) of the database's
    table signing_keys, shared by every instance, when DATABASE_URL is a database server, else of the key folder."""
    if settings.jwt_algorithm == "HS256":
        return sessions.HS256
    source = key_source_for(settings)
    source.ring()
    longest = timedelta(minutes=settings.access_token_minutes)
    return SignedAccessTokens(source, settings.jwt_issuer, settings.jwt_audience, longest)


@asynccontextmanager
async def lifespan(app: FastAPI):
    get_signing_key()  # the secret checked now: a weak one stops the start, never a 500 later
    settings = checked_settings()
    access_tokens = await anyio.to_thread.run_sync(access_tokens_for, settings)
    engine = store.make_engine(settings.database_url)
    try:
        await anyio.to_thread.run_sync(store.create_schema, engine)
        if settings.demo_users:
            await anyio.to_thread.run_sync(store.seed_demo_users, engine, password_hash.hash)
        throttle = LoginThrottle(settings.login_limits_storage_url)
        await throttle.check()
        checks = PasswordChecks(settings.max_logins_waiting_to_hash, settings.max_logins_hashing_per_client)
        with closing(store.SessionCheck(engine)) as session_check, closing(checks):
            auth = Auth(
                engine=engine,
                users=store.LessonUsers(engine),
                check_password=QueuedPasswordCheck(checks),
                access_tokens=access_tokens,
                session_account=LessonSessionAccounts(session_check),
            )
            yield {"engine": engine, "auth": auth, "login_throttle": throttle, "access_tokens": access_tokens}
    finally:
        engine.dispose()


async def get_auth(request: Request) -> Auth:
    """What the auth routes need for every protected request: the pieces the lifespan made."""
    return request.state.auth


def get_token_auth(request: Request, settings: Annotated[Settings, Depends(get_settings)]) -> Auth:
    """What POST /token needs besides: the lifetimes, the session cap and the login limits of the settings now."""
    lifetimes = Lifetimes(
        access=timedelta(minutes=settings.access_token_minutes),
        refresh=timedelta(days=settings.refresh_token_days),
        session=timedelta(days=settings.session_days),
    )
    return replace(
        request.state.auth,
        lifetimes=lifetimes,
        max_sessions=settings.max_sessions_per_user,
        login_limits=ThrottledLogins(request.state.login_throttle, settings),
    )


async def get_engine(request: Request) -> Engine:
    return request.state.engine


DatabaseEngine = Annotated[Engine, Depends(get_engine)]
Now = Annotated[datetime, Depends(current_time)]
auth_routes = AuthRoutes(get_auth, get_token_auth=get_token_auth, token_url="token", scopes=SCOPES, now=current_time)
app = hardened_app("JWT lesson service", lifespan, lambda: get_settings().request_body_max_bytes, ONE_LINE_ERRORS)
app.include_router(auth_routes.router)
app.include_router(BrowserRoutes(get_auth, get_token_auth=get_token_auth, now=current_time).router)


@app.exception_handler(DatabaseUnavailable)
async def log_database_unavailable(request: Request, error: DatabaseUnavailable) -> JSONResponse:
    logger.error("%s %s: %s", request.method, request.url.path, error)
    return await database_unavailable(request, error)


@app.exception_handler(StorageError)
async def limits_unavailable(request: Request, error: StorageError) -> JSONResponse:
    """Fail closed: a login the limits cannot count could be one guess of millions."""
    logger.error("%s %s: the login limits' storage failed: %s", request.method, request.url.path, error.storage_error)
    headers = {"Retry-After": str(LIMITS_RETRY_SECONDS), **NO_STORE}
    return JSONResponse({"detail": LIMITS_UNAVAILABLE}, status.HTTP_503_SERVICE_UNAVAILABLE, headers=headers)


@app.get("/users/me", responses=SCOPED_RESPONSES)
async def read_users_me(account: Annotated[Account, Security(auth_routes.current_account, scopes=["me"])]) -> User:
    return account.user


@app.get("/users", responses=SCOPED_RESPONSES)
def list_users(
    admin: Annotated[Account, Security(auth_routes.current_account, scopes=["admin"])], engine: DatabaseEngine
) -> list[UserPublic]:
    """Every user, without password hashes."""
    return store.list_users(engine)


@app.post("/users/{username}/disable", responses=DISABLE_RESPONSES)
def disable_user(
    username: Annotated[str, Path(description="The user to disable", examples=["bob"])],
    admin: Annotated[Account, Security(auth_routes.current_account, scopes=["admin"])],
    engine: DatabaseEngine,
    now: Now,
) -> DisabledUser:
    """Stop a user logging in and end every session of theirs: their tokens are refused on the next request."""
    if username == admin.id:
        raise HTTPException(status_code=status.HTTP_409_CONFLICT, detail=CANNOT_DISABLE_YOURSELF)
    try:
        ended = store.set_disabled(engine, username, True, now)
    except UnknownUser:
        raise HTTPException(status_code=status.HTTP_404_NOT_FOUND, detail=USER_NOT_FOUND) from None
    return DisabledUser(username=username, sessions_ended=ended)


async def get_access_tokens(request: Request) -> AccessTokens | SignedAccessTokens:
    return request.state.access_tokens


@app.get("/.well-known/jwks.json", responses=JWKS_RESPONSES)
def json_web_key_set(
    access_tokens: Annotated[AccessTokens | SignedAccessTokens, Depends(get_access_tokens)], response: Response
) -> JsonWebKeySet:
    """The public keys of ES256 or RS256 access tokens (RFC 7517), for other services to verify them with."""
    if not isinstance(access_tokens, SignedAccessTokens):
        raise HTTPException(status_code=status.HTTP_404_NOT_FOUND, detail=NO_PUBLIC_KEYS)
    response.headers["Cache-Control"] = f"public, max-age={JWKS_MAX_AGE_SECONDS}"
    return JsonWebKeySet.model_validate(access_tokens.jwks())
