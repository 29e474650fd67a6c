"""Login, refresh, logout and revocation as routes to include: an APIRouter factory, and the current-user dependency.

    routes = AuthRoutes(get_auth)          # get_auth: a dependency that returns an Auth
    app.include_router(routes.router)      # POST /token (both grants), /logout, /logout/everywhere, /revoke
    CurrentUser = Annotated[MyUser, Security(routes.current_user, scopes=["me"])]

Everything the routes need (the engine, the project's users, how tokens are signed, the lifetimes, how passwords
are checked, login limits) comes from that one dependency, so the app decides where it lives (its lifespan, its
settings) and tests override it as any dependency. Needs fastapi, SQLAlchemy and python-jose, with sessions.py,
session_store.py, database.py, tokens.py and http_common.py beside it.
"""

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from typing import Annotated, Any, Protocol

import anyio.to_thread
from fastapi import APIRouter, Depends, Form, HTTPException, Request, Response, status
from fastapi.responses import JSONResponse
from fastapi.security import OAuth2PasswordBearer, SecurityScopes
from jose.backends.base import Key
from pydantic import BaseModel, Field
from sqlalchemy import Engine

from . import session_store, sessions  # relative, as in sessions.py
from .database import DatabaseUnavailable, utc_now
from .http_common import (
    BODY_TOO_LARGE_RESPONSE,
    NO_STORE,
    RETRY_AFTER,
    Message,
    client_address,
    credentials_exception,
    insufficient_scope,
)
from .sessions import (
    AccessTokens,
    Account,
    CredentialsChanged,
    InvalidGrant,
    InvalidScope,
    Lifetimes,
    TokenPair,
    UserDirectory,
)
from .tokens import TokenError

INCORRECT_LOGIN = "Incorrect username or password"
DATABASE_UNAVAILABLE = "The database is unavailable: try again later"
DATABASE_RETRY_SECONDS = 5
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


class PasswordCheck(Protocol):
    async def __call__(self, password: str, password_hash: str | None, client: str) -> bool:
        """Whether password matches password_hash; None: no such user, and the check must take as long anyway.
        May raise HTTPException to refuse (429, 503: too many logins hashing)."""


class LoginLimits(Protocol):
    """Login limits: admit() raises HTTPException (429) before any lookup or hash; failed() counts a failure."""

    async def admit(self, login: str, client: str) -> None: ...

    async def failed(self, login: str, client: str) -> None: ...


class NoLoginLimits:
    """No limit at all: for tests and for a service whose proxy limits logins. Real services want one."""

    async def admit(self, login: str, client: str) -> None:
        return None

    async def failed(self, login: str, client: str) -> None:
        return None


@dataclass(frozen=True)
class ThreadedPasswordCheck:
    """verify(password, hash) in a worker thread (a hash is slow on purpose: never on the event loop), with
    dummy_hash() checked for an unknown user, so that a login takes as long whether the user exists or not."""

    verify: Callable[[str, str], bool]
    dummy_hash: Callable[[], str]

    async def __call__(self, password: str, password_hash: str | None, client: str) -> bool:
        return await anyio.to_thread.run_sync(self.verify, password, password_hash or self.dummy_hash())


@dataclass(frozen=True)
class Auth:
    """What the auth routes need; an app's get_auth dependency returns one."""

    engine: Engine  # where session_store's table lives
    users: UserDirectory  # the project's users
    check_password: PasswordCheck
    access_tokens: AccessTokens = sessions.HS256  # or sessions.hs256_access_tokens(key), keys.SignedAccessTokens
    refresh_key: Key | None = None  # HS256 refresh tokens; None: the lessons' secret
    lifetimes: Lifetimes = field(default_factory=Lifetimes)
    max_sessions: int = session_store.MAX_SESSIONS_PER_USER
    login_limits: LoginLimits = field(default_factory=NoLoginLimits)
    # The account of a live session, for every protected request; None: sessions.session_account in a thread.
    session_account: Callable[[str, datetime], Awaitable[Account | None]] | None = None


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
        description="Scopes asked for, space-separated (me, the default, when empty). A login is granted those the "
        "user holds; a refresh, any of those its session was granted (all of them when left empty).",
    )


class RevocationRequest(BaseModel):
    token: str = Field(min_length=1, description="A refresh or an access token")
    token_type_hint: str | None = Field(None, description="refresh_token or access_token; may be left out")


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


async def database_unavailable(request: Request, error: DatabaseUnavailable) -> JSONResponse:
    """The exception handler to add for DatabaseUnavailable: 503 with Retry-After, never a 500."""
    headers = {"Retry-After": str(DATABASE_RETRY_SECONDS), **NO_STORE}  # /token's 503 too: nothing to be kept
    return JSONResponse({"detail": DATABASE_UNAVAILABLE}, status.HTTP_503_SERVICE_UNAVAILABLE, headers=headers)


def incorrect_login() -> HTTPException:
    return HTTPException(
        status_code=status.HTTP_401_UNAUTHORIZED, detail=INCORRECT_LOGIN, headers={"WWW-Authenticate": "Bearer"}
    )


def oauth_error(error: OAuthErrorResponse) -> JSONResponse:
    body = OAuthError(error=error.error, error_description=error.description)
    return JSONResponse(body.model_dump(), status.HTTP_400_BAD_REQUEST, headers=NO_STORE)


async def password_grant(form: TokenRequest, auth: Auth, now: datetime, client: str) -> TokenPair:
    """Log in. In this order, each refusal before any later work: a login no user can have (401, as a wrong
    password, counted nowhere); the login limits (429); then the password is checked (PasswordCheck may refuse with
    429 or 503), and a failure is counted."""
    if form.username is None or form.password is None:
        raise OAuthErrorResponse("invalid_request", "The password grant needs username and password")
    if not auth.users.is_login(form.username):
        raise incorrect_login()
    await auth.login_limits.admit(form.username, client)
    account = await anyio.to_thread.run_sync(auth.users.by_login, form.username)
    verified = await auth.check_password(form.password, account.password_hash if account else None, client)
    if account is not None and verified and account.is_active:
        try:
            scope = sessions.grant_scope(form.scope, account.scopes)
            log_in = partial(
                sessions.log_in,
                max_sessions=auth.max_sessions,
                access_tokens=auth.access_tokens,
                refresh_key=auth.refresh_key,
            )
            return await anyio.to_thread.run_sync(log_in, auth.engine, auth.users, account, scope, now, auth.lifetimes)
        except InvalidScope as error:
            raise OAuthErrorResponse("invalid_scope", str(error)) from None
        except CredentialsChanged:  # a password changed or a user disabled during the check: no session
            pass
    await auth.login_limits.failed(form.username, client)
    raise incorrect_login()


async def refresh_token_grant(form: TokenRequest, auth: Auth, now: datetime) -> TokenPair:
    if form.refresh_token is None:
        raise OAuthErrorResponse("invalid_request", "The refresh_token grant needs refresh_token")
    refresh = partial(sessions.refresh, access_tokens=auth.access_tokens, refresh_key=auth.refresh_key)
    try:
        return await anyio.to_thread.run_sync(
            refresh, auth.engine, auth.users, form.refresh_token, now, auth.lifetimes, form.scope
        )
    except InvalidGrant as error:
        raise OAuthErrorResponse("invalid_grant", str(error)) from None
    except InvalidScope as error:
        raise OAuthErrorResponse("invalid_scope", str(error)) from None


async def current_time() -> datetime:
    return utc_now()


class AuthRoutes:
    """The auth routes (router) and the dependencies a project's own routes use: current_account (the Account),
    current_user (its user object), access_claims (the access token's claims). Each takes FastAPI's Security
    scopes: Security(routes.current_user, scopes=["admin"]) answers 403 insufficient_scope when the token or the
    user lacks one.

    get_auth: a dependency returning the Auth, run for every protected request: make it async (FastAPI runs a
    plain def dependency in a worker thread, a hop that costs more than the token check), and cheap;
    get_token_auth: the one POST /token uses (by default get_auth), which may read settings on each login;
    token_url and scopes: what OpenAPI (and /docs) say of the login; now: a dependency giving the time.
    """

    def __init__(
        self,
        get_auth: Callable[..., Any],
        *,
        get_token_auth: Callable[..., Any] | None = None,
        token_url: str = "token",  # noqa: S107  (the login route's path, not a secret)
        scopes: dict[str, str] | None = None,
        now: Callable[..., Any] = current_time,
    ) -> None:
        self.scheme = scheme = OAuth2PasswordBearer(tokenUrl=token_url, scopes=scopes or {})
        AuthNow = Annotated[Auth, Depends(get_auth)]
        TokenAuth = Annotated[Auth, Depends(get_token_auth or get_auth)]
        Now = Annotated[datetime, Depends(now)]

        async def access_claims(token: Annotated[str, Depends(scheme)], auth: AuthNow) -> dict:
            """The claims of a valid access token that names a session; 401 otherwise."""
            try:
                return sessions.decode_session_access_token(token, auth.access_tokens)
            except TokenError:
                raise credentials_exception() from None

        Claims = Annotated[dict, Depends(access_claims)]

        # current_account decodes the token itself rather than depend on access_claims: each dependency FastAPI
        # solves costs about as much as the token check, and this one runs for every protected request.
        async def current_account(
            security_scopes: SecurityScopes, token: Annotated[str, Depends(scheme)], auth: AuthNow, now: Now
        ) -> Account:
            """The account of the token's live session, its user active: 401 otherwise; 403 insufficient_scope
            when the token does not carry, or the user no longer holds, a scope the route asks for."""
            try:
                claims = sessions.decode_session_access_token(token, auth.access_tokens)
            except TokenError:
                raise credentials_exception() from None
            if auth.session_account is None:
                lookup = partial(sessions.session_account, auth.engine, auth.users)
                account = await anyio.to_thread.run_sync(lookup, claims["sid"], now)
            else:
                account = await auth.session_account(claims["sid"], now)
            if account is None or account.id != claims["sub"]:
                raise credentials_exception()
            granted = set(sessions.scopes_of(claims)) & set(account.scopes.split())  # carried and still held
            if not set(security_scopes.scopes) <= granted:
                raise insufficient_scope(security_scopes)
            return account

        CurrentAccount = Annotated[Account, Depends(current_account)]

        async def current_user(account: CurrentAccount) -> Any:
            """The project's own user object of the current account (Account.user)."""
            return account.user

        self.access_claims, self.current_account, self.current_user = access_claims, current_account, current_user
        self.router = router = APIRouter()

        @router.post("/token", responses=TOKEN_RESPONSES)
        async def issue_tokens(
            form: Annotated[TokenRequest, Form()],
            auth: TokenAuth,
            now: Now,
            client: Annotated[str, Depends(client_address)],
            response: Response,
        ) -> TokenPair:
            """Log in (grant_type=password, the default) or refresh (grant_type=refresh_token): RFC 6749, sections
            4.3 and 6."""
            try:
                if form.grant_type in (None, "password"):
                    tokens = await password_grant(form, auth, now, client)
                elif form.grant_type == "refresh_token":
                    tokens = await refresh_token_grant(form, auth, now)
                else:
                    raise OAuthErrorResponse("unsupported_grant_type", "grant_type must be password or refresh_token")
            except OAuthErrorResponse as error:
                return oauth_error(error)
            except HTTPException as error:  # 401, 429, and 503 for a full hashing queue: not to be kept either
                error.headers = {**(error.headers or {}), **NO_STORE}
                raise
            response.headers.update(NO_STORE)
            return tokens

        @router.post("/logout", status_code=status.HTTP_204_NO_CONTENT, responses=SESSION_RESPONSES)
        def log_out(claims: Claims, account: CurrentAccount, auth: AuthNow, now: Now) -> None:
            """End this session: its access and refresh tokens are refused from now on."""
            session_store.end_session(auth.engine, claims["sid"], now)

        @router.post("/logout/everywhere", status_code=status.HTTP_204_NO_CONTENT, responses=SESSION_RESPONSES)
        def log_out_everywhere(account: CurrentAccount, auth: AuthNow, now: Now) -> None:
            """End every session of the user, on every device."""
            session_store.end_user_sessions(auth.engine, account.id, now)

        @router.post("/revoke", response_class=Response, responses=REVOKE_RESPONSES)
        def revoke(form: Annotated[RevocationRequest, Form()], auth: AuthNow, now: Now) -> Response:
            """RFC 7009: end the session of a refresh or access token; the same answer whether it was valid or not."""
            sessions.revoke(auth.engine, form.token, now, auth.access_tokens, auth.refresh_key)
            return Response(status_code=status.HTTP_200_OK)
