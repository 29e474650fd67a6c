"""The finished service: users and sessions in SQL, refresh tokens that rotate, logout and revocation that work, and
scopes that say what a token may do (403 insufficient_scope when it may not, RFC 6750 section 3.1).

Notebook 04's app (app.py) keeps its users in a dict; this one is made of the same pieces (http_common.py,
protection.py, tokens.py) and adds the store (store.py), the session flows (sessions.py) and the machine-wide
password checks (hashing.py). Serve it with `python -m lesson_code serve` or `uvicorn lesson_code.service:app`.
"""

import logging
from contextlib import asynccontextmanager, closing
from datetime import datetime, timedelta
from functools import partial
from typing import Annotated

import anyio.to_thread
from fastapi import Depends, FastAPI, Form, HTTPException, Path, Request, Response, Security, status
from fastapi.responses import JSONResponse
from fastapi.security import OAuth2PasswordBearer, SecurityScopes
from limits.errors import StorageError
from pydantic import BaseModel, Field
from sqlalchemy import Engine

from lesson_code import sessions, store
from lesson_code.hashing import BUSY_RETRY_SECONDS, HashingBusy, PasswordChecks
from lesson_code.http_common import (
    BODY_TOO_LARGE_RESPONSE,
    INSUFFICIENT_SCOPE_RESPONSE,
    NO_STORE,
    RETRY_AFTER,
    Message,
    client_address,
    credentials_exception,
    hardened_app,
    insufficient_scope,
)
from lesson_code.keys import JWKS_MAX_AGE_SECONDS, KeySource, KeyStoreError, SignedAccessTokens, key_dir_path
from lesson_code.passwords import dummy_hash, password_hash
from lesson_code.protection import LimitsUnavailable, LoginThrottle, too_many_failed_logins, too_many_logins
from lesson_code.sessions import AccessTokens, InvalidGrant, InvalidScope, Lifetimes, TokenPair
from lesson_code.settings import Settings, SettingsError, checked_settings, get_settings
from lesson_code.store import (
    SCOPES,
    CredentialsChanged,
    DatabaseUnavailable,
    StoreError,
    UnknownUser,
    UserPublic,
    UserRecord,
)
from lesson_code.tokens import SecretKeyError, TokenError, get_signing_key

DATABASE_UNAVAILABLE = "The database is unavailable: try again later"
DATABASE_RETRY_SECONDS = 5
LIMITS_UNAVAILABLE = "Logins are paused: the login limits cannot be checked (try again later)"
LIMITS_RETRY_SECONDS = 5
HASHING_QUEUE_FULL = f"Too many logins at once: try again in {BUSY_RETRY_SECONDS} second"
CLIENT_HASHING_FULL = f"Too many logins at once from your address: try again in {BUSY_RETRY_SECONDS} second"
INCORRECT_LOGIN = "Incorrect username or password"
UNAVAILABLE_RESPONSE = {
    status.HTTP_503_SERVICE_UNAVAILABLE: {
        "model": Message,
        "description": "The database is unavailable",
        "headers": RETRY_AFTER,
    }
}
SESSION_RESPONSES = {
    status.HTTP_401_UNAUTHORIZED: {"model": Message, "description": "Missing or invalid token, or its session ended"},
    **BODY_TOO_LARGE_RESPONSE,
    **UNAVAILABLE_RESPONSE,
}
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
oauth2_scheme = OAuth2PasswordBearer(tokenUrl="token", scopes=SCOPES)
logger = logging.getLogger(__name__)
# A bad database, secret, setting, key folder or limits storage stops start-up with its one line, not a traceback.
ONE_LINE_ERRORS = (StoreError, SecretKeyError, SettingsError, KeyStoreError, LimitsUnavailable)


class User(BaseModel):
    """What /users/me answers: the user, without scopes or password hash."""

    username: str
    email: str | None = None
    full_name: str | None = None
    disabled: bool | None = None


class OAuthError(BaseModel):
    """An error answer of the token and revocation endpoints, as RFC 6749 section 5.2 spells it."""

    error: str
    error_description: str


class TokenRequest(BaseModel):
    grant_type: str | None = Field(None, description="password (the default) or refresh_token")
    username: str | None = Field(None, description="For the password grant")
    password: str | None = Field(None, description="For the password grant", json_schema_extra={"format": "password"})
    refresh_token: str | None = Field(None, description="For the refresh_token grant")
    scope: str = Field(
        "",
        description="Scopes asked for, space-separated: me (the default), admin. A login is granted those the user "
        "holds; a refresh, any of those its session was granted (all of them when left empty).",
    )


class RevocationRequest(BaseModel):
    token: str = Field(min_length=1, description="A refresh or an access token")
    token_type_hint: str | None = Field(None, description="refresh_token or access_token; may be left out")


class JsonWebKeySet(BaseModel):
    """RFC 7517 section 5: the public keys that verify this service's access tokens, each named by its kid."""

    keys: list[dict[str, str]]


class DisabledUser(BaseModel):
    username: str
    sessions_ended: int


class OAuthErrorResponse(Exception):
    def __init__(self, error: str, description: str) -> None:
        self.error, self.description = error, description


TOKEN_RESPONSES = {
    status.HTTP_401_UNAUTHORIZED: {"model": Message, "description": "Incorrect username or password"},
    **BODY_TOO_LARGE_RESPONSE,
    status.HTTP_400_BAD_REQUEST: {
        "model": OAuthError | Message,
        "description": "A refused refresh token, a scope that cannot be granted, a grant type other than password or "
        "refresh_token, a missing field (RFC 6749, section 5.2), or a body that cannot be parsed",
    },
    status.HTTP_429_TOO_MANY_REQUESTS: {
        "model": Message,
        "description": "Too many failed logins, too many logins, or too many at once from this address",
        "headers": RETRY_AFTER,
    },
    status.HTTP_503_SERVICE_UNAVAILABLE: {
        "model": Message,
        "description": "Too many logins waiting for password hashing, or the database or the login limits are "
        "unavailable",
        "headers": RETRY_AFTER,
    },
}

REVOKE_RESPONSES = {
    status.HTTP_200_OK: {"description": "Whatever the token was: its session, if any, has ended (RFC 7009)"},
    **BODY_TOO_LARGE_RESPONSE,
    **UNAVAILABLE_RESPONSE,
}


def access_tokens_for(settings: Settings) -> AccessTokens | SignedAccessTokens:
    """HS256 with the secret, or the key directory's newest key for JWT_ALGORITHM=ES256 or RS256 (made if none)."""
    if settings.jwt_algorithm == "HS256":
        return sessions.HS256
    source = KeySource(key_dir_path(), settings.jwt_algorithm)
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
            yield {
                "engine": engine,
                "session_check": session_check,
                "login_throttle": throttle,
                "password_checks": checks,
                "access_tokens": access_tokens,
            }
    finally:
        engine.dispose()


app = hardened_app("JWT lesson service", lifespan, lambda: get_settings().request_body_max_bytes, ONE_LINE_ERRORS)


@app.exception_handler(DatabaseUnavailable)
async def database_unavailable(request: Request, error: DatabaseUnavailable) -> JSONResponse:
    logger.error("%s %s: %s", request.method, request.url.path, error)
    headers = {"Retry-After": str(DATABASE_RETRY_SECONDS), **NO_STORE}  # /token's 503 too: nothing to be kept
    return JSONResponse({"detail": DATABASE_UNAVAILABLE}, status.HTTP_503_SERVICE_UNAVAILABLE, headers=headers)


@app.exception_handler(StorageError)
async def limits_unavailable(request: Request, error: StorageError) -> JSONResponse:
    """Fail closed: a login the limits cannot count could be one guess of millions."""
    logger.error("%s %s: the login limits' storage failed: %s", request.method, request.url.path, error.storage_error)
    headers = {"Retry-After": str(LIMITS_RETRY_SECONDS), **NO_STORE}
    return JSONResponse({"detail": LIMITS_UNAVAILABLE}, status.HTTP_503_SERVICE_UNAVAILABLE, headers=headers)


@app.exception_handler(OAuthErrorResponse)
async def oauth_error(request: Request, error: OAuthErrorResponse) -> JSONResponse:
    body = OAuthError(error=error.error, error_description=error.description)
    return JSONResponse(body.model_dump(), status.HTTP_400_BAD_REQUEST, headers=NO_STORE)


async def get_engine(request: Request) -> Engine:
    return request.state.engine


async def current_time() -> datetime:
    return store.utc_now()


async def get_lifetimes(settings: Annotated[Settings, Depends(get_settings)]) -> Lifetimes:
    return Lifetimes(
        access=timedelta(minutes=settings.access_token_minutes),
        refresh=timedelta(days=settings.refresh_token_days),
        session=timedelta(days=settings.session_days),
    )


DatabaseEngine = Annotated[Engine, Depends(get_engine)]
Now = Annotated[datetime, Depends(current_time)]


async def get_access_tokens(request: Request) -> AccessTokens | SignedAccessTokens:
    return request.state.access_tokens


AccessTokenFormat = Annotated[AccessTokens | SignedAccessTokens, Depends(get_access_tokens)]


async def get_access_claims(token: Annotated[str, Depends(oauth2_scheme)], access_tokens: AccessTokenFormat) -> dict:
    try:
        return sessions.decode_session_access_token(token, access_tokens)
    except TokenError:
        raise credentials_exception() from None


AccessClaims = Annotated[dict, Depends(get_access_claims)]


async def get_current_user(
    security_scopes: SecurityScopes, claims: AccessClaims, request: Request, now: Now
) -> UserPublic:
    user = await request.state.session_check(claims["sid"], now)
    if user is None or user.username != claims["sub"]:
        raise credentials_exception()
    granted = set(sessions.scopes_of(claims)) & set(user.scopes.split())  # carried by the token and held still
    if not set(security_scopes.scopes) <= granted:
        raise insufficient_scope(security_scopes)
    return user


CurrentUser = Annotated[UserPublic, Depends(get_current_user)]


async def get_login_throttle(request: Request) -> LoginThrottle:
    return request.state.login_throttle


async def get_password_checks(request: Request) -> PasswordChecks:
    return request.state.password_checks


def incorrect_login() -> HTTPException:
    return HTTPException(
        status_code=status.HTTP_401_UNAUTHORIZED, detail=INCORRECT_LOGIN, headers={"WWW-Authenticate": "Bearer"}
    )


def hashing_busy(error: HashingBusy) -> HTTPException:
    if error.per_client:
        code, detail = status.HTTP_429_TOO_MANY_REQUESTS, CLIENT_HASHING_FULL
    else:
        code, detail = status.HTTP_503_SERVICE_UNAVAILABLE, HASHING_QUEUE_FULL
    return HTTPException(status_code=code, detail=detail, headers={"Retry-After": str(BUSY_RETRY_SECONDS)})


async def authenticate_user(
    engine: Engine, username: str, password: str, checks: PasswordChecks, client: str
) -> UserRecord | None:
    user = await anyio.to_thread.run_sync(store.get_user, engine, username)
    try:
        verified = await checks.verify(password, user.hashed_password if user else dummy_hash(), client)
    except HashingBusy as error:
        raise hashing_busy(error) from None
    return user if user and verified and not user.disabled else None


async def password_grant(
    form: TokenRequest,
    engine: Engine,
    now: datetime,
    lifetimes: Lifetimes,
    settings: Settings,
    throttle: LoginThrottle,
    checks: PasswordChecks,
    client: str,
    access_tokens: AccessTokens | SignedAccessTokens,
) -> TokenPair:
    """Log in. In this order, each refusal before any later work: a username no user can have (401, as a wrong
    password, counted nowhere); too many failed logins (429); too many logins, whatever their outcome, from this
    address or for this account (429, counted); no ticket to hash (503, or 429 for this address's share); then the
    password is checked, and a failure is counted."""
    if form.username is None or form.password is None:
        raise OAuthErrorResponse("invalid_request", "The password grant needs username and password")
    if not store.is_username(form.username):
        raise incorrect_login()
    wait = await throttle.seconds_to_wait(settings, form.username, client)
    if wait:
        raise too_many_failed_logins(wait)
    wait = await throttle.record_attempt(settings, form.username, client)
    if wait:
        raise too_many_logins(wait)
    user = await authenticate_user(engine, form.username, form.password, checks, client)
    if user is not None:
        try:
            scope = sessions.grant_scope(form.scope, user.scopes)
            log_in = partial(
                sessions.log_in,
                verified_hash=user.hashed_password,  # a password changed or a user disabled meanwhile: no session
                max_sessions=settings.max_sessions_per_user,
                access_tokens=access_tokens,
            )
            return await anyio.to_thread.run_sync(log_in, engine, user.username, scope, now, lifetimes)
        except InvalidScope as error:
            raise OAuthErrorResponse("invalid_scope", str(error)) from None
        except CredentialsChanged:
            pass
    await throttle.record_failure(settings, form.username, client)
    raise incorrect_login()


async def refresh_token_grant(
    form: TokenRequest,
    engine: Engine,
    now: datetime,
    lifetimes: Lifetimes,
    access_tokens: AccessTokens | SignedAccessTokens,
) -> TokenPair:
    if form.refresh_token is None:
        raise OAuthErrorResponse("invalid_request", "The refresh_token grant needs refresh_token")
    refresh = partial(sessions.refresh, access_tokens=access_tokens)
    try:
        return await anyio.to_thread.run_sync(refresh, engine, form.refresh_token, now, lifetimes, form.scope)
    except InvalidGrant as error:
        raise OAuthErrorResponse("invalid_grant", str(error)) from None
    except InvalidScope as error:
        raise OAuthErrorResponse("invalid_scope", str(error)) from None


@app.post("/token", responses=TOKEN_RESPONSES)
async def issue_tokens(
    form: Annotated[TokenRequest, Form()],
    engine: DatabaseEngine,
    now: Now,
    lifetimes: Annotated[Lifetimes, Depends(get_lifetimes)],
    settings: Annotated[Settings, Depends(get_settings)],
    throttle: Annotated[LoginThrottle, Depends(get_login_throttle)],
    checks: Annotated[PasswordChecks, Depends(get_password_checks)],
    client: Annotated[str, Depends(client_address)],
    access_tokens: AccessTokenFormat,
    response: Response,
) -> TokenPair:
    """Log in (grant_type=password, the default) or refresh (grant_type=refresh_token): RFC 6749, sections 4.3 and 6."""
    try:
        if form.grant_type in (None, "password"):
            tokens = await password_grant(
                form, engine, now, lifetimes, settings, throttle, checks, client, access_tokens
            )
        elif form.grant_type == "refresh_token":
            tokens = await refresh_token_grant(form, engine, now, lifetimes, access_tokens)
        else:
            raise OAuthErrorResponse("unsupported_grant_type", "grant_type must be password or refresh_token")
    except HTTPException as error:  # 401, 429, and 503 for a full hashing queue: not to be kept either
        error.headers = {**(error.headers or {}), **NO_STORE}
        raise
    response.headers.update(NO_STORE)
    return tokens


@app.get("/users/me", responses=SCOPED_RESPONSES)
async def read_users_me(current_user: Annotated[UserPublic, Security(get_current_user, scopes=["me"])]) -> User:
    return current_user


@app.get("/users", responses=SCOPED_RESPONSES)
def list_users(
    admin: Annotated[UserPublic, Security(get_current_user, scopes=["admin"])], engine: DatabaseEngine
) -> list[UserPublic]:
    """Every user, without password hashes."""
    return store.list_users(engine)


@app.post("/users/{username}/disable", responses=DISABLE_RESPONSES)
def disable_user(
    username: Annotated[str, Path(description="The user to disable", examples=["bob"])],
    admin: Annotated[UserPublic, Security(get_current_user, scopes=["admin"])],
    engine: DatabaseEngine,
    now: Now,
) -> DisabledUser:
    """Stop a user logging in and end every session of theirs: their tokens are refused on the next request."""
    if username == admin.username:
        raise HTTPException(status_code=status.HTTP_409_CONFLICT, detail=CANNOT_DISABLE_YOURSELF)
    try:
        ended = store.set_disabled(engine, username, True, now)
    except UnknownUser:
        raise HTTPException(status_code=status.HTTP_404_NOT_FOUND, detail=USER_NOT_FOUND) from None
    return DisabledUser(username=username, sessions_ended=ended)


@app.post("/logout", status_code=status.HTTP_204_NO_CONTENT, responses=SESSION_RESPONSES)
def log_out(claims: AccessClaims, current_user: CurrentUser, engine: DatabaseEngine, now: Now) -> None:
    """End this session: its access and refresh tokens are refused from now on."""
    store.end_session(engine, claims["sid"], now)


@app.post("/logout/everywhere", status_code=status.HTTP_204_NO_CONTENT, responses=SESSION_RESPONSES)
def log_out_everywhere(current_user: CurrentUser, engine: DatabaseEngine, now: Now) -> None:
    """End every session of the user, on every device."""
    store.end_user_sessions(engine, current_user.username, now)


@app.post("/revoke", response_class=Response, responses=REVOKE_RESPONSES)
def revoke(
    form: Annotated[RevocationRequest, Form()], engine: DatabaseEngine, now: Now, access_tokens: AccessTokenFormat
) -> Response:
    """RFC 7009: end the session of a refresh or access token; the same answer whether the token was valid or not."""
    sessions.revoke(engine, form.token, now, access_tokens)
    return Response(status_code=status.HTTP_200_OK)


@app.get("/.well-known/jwks.json", responses=JWKS_RESPONSES)
def json_web_key_set(access_tokens: AccessTokenFormat, response: Response) -> JsonWebKeySet:
    """The public keys of ES256 or RS256 access tokens (RFC 7517), for other services to verify them with."""
    if not isinstance(access_tokens, SignedAccessTokens):
        raise HTTPException(status_code=status.HTTP_404_NOT_FOUND, detail=NO_PUBLIC_KEYS)
    response.headers["Cache-Control"] = f"public, max-age={JWKS_MAX_AGE_SECONDS}"
    return JsonWebKeySet.model_validate(access_tokens.jwks())
