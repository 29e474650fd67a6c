"""Sessions: a login starts one, refresh tokens rotate inside it, logout and revocation end it.

An access token carries its session's id (sid) and lives minutes; a refresh token, typed refresh+jwt so that one
kind never passes for the other (RFC 8725, sections 3.11 and 3.12), carries the id (jti) of the one refresh the
session allows next. The session store (session_store.py) keeps that id, never the token. Every function takes the
engine and the time.

Users are the project's own: the session layer reaches them through a UserDirectory (look one up by login name or
by id, as an Account: id, password hash, active or not, scopes held), so any users table plugs in; store.LessonUsers
is the lessons' own.

Scopes: a login is granted the scopes asked for that the user holds (me when none is asked for), the session keeps
that grant, and each access token carries a scope claim, space-separated (RFC 9068, RFC 8693). A refresh may ask for
fewer scopes than the session was granted, never more (RFC 6749, section 6).
"""

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from functools import partial
from typing import Any, NamedTuple

from jose import jwt
from jose.backends.base import Key
from pydantic import BaseModel
from sqlalchemy import Engine

# Relative imports: copied into a package of any name, these files find each other (the README's recipes).
from . import session_store
from .session_store import Rotation
from .tokens import (
    ACCESS_TOKEN_EXPIRE_MINUTES,
    ALGORITHM,
    CLAIM_CHECKS,
    HEADER_CHECKS,
    TokenError,
    check_signature_spelling,
    check_type,
    create_access_token,
    decode_access_token,
    get_signing_key,
    get_unverified_header,
    verify_signature_and_read,
)

REFRESH_TOKEN_TYPE = "refresh+jwt"
INVALID_REFRESH_TOKEN = "The refresh token is invalid or has expired"
SESSION_ENDED = "The session has ended: log in again"
REFRESH_TOKEN_REUSED = "The refresh token was already used, so its session has been ended: log in again"
DEFAULT_SCOPE = "me"  # what a login that asks for no scope is granted, if the user holds it
NO_SCOPE_HELD = "The user holds none of the scopes asked for"
SCOPE_NOT_GRANTED = "A refresh may ask only for scopes its session was granted at login"
MAX_LOGIN_LENGTH = 254  # the longest email address (RFC 5321 and its errata), and so the longest login name


@dataclass(frozen=True)
class Account:
    """A user as the session layer sees one; a UserDirectory makes it from the project's own user."""

    id: str  # the sub claim of the user's tokens: the primary key as text (a username, a uuid, a number)
    password_hash: str | None  # what a login verifies; None from a lookup that did not read it
    is_active: bool = True  # False: no login, no refresh, and every request of theirs is refused
    scopes: str = DEFAULT_SCOPE  # the scopes held now, space-separated
    user: Any = None  # the project's own user object: what the current-user dependency hands to routes


class UserDirectory(ABC):
    """How the session layer reaches a project's users: subclass it with the two lookups (store.LessonUsers is the
    lessons' own). They are called in a worker thread and may query a database.

    When a user is disabled, changes password or loses a scope, commit that change, then end their sessions
    (session_store.end_user_sessions): a login racing with the change then either sees it or has its session ended.
    """

    def is_login(self, text: str) -> bool:
        """Whether text could be a login name at all (checked before any lookup, count or hash): by default 1 to
        254 characters, none of them a space or a control character (a username or an email address)."""
        return 0 < len(text) <= MAX_LOGIN_LENGTH and text.isprintable() and not any(c.isspace() for c in text)

    @abstractmethod
    def by_login(self, login: str) -> Account | None:
        """The account a login name (a username, an email address) names, with its password hash; or None."""

    @abstractmethod
    def by_id(self, user_id: str) -> Account | None:
        """The account of a user id (the tokens' sub), as stored now, with its password hash; or None."""


class CredentialsChanged(Exception):
    """The password a login checked was replaced, or its user disabled or removed, before its session started:
    the session is ended at once; answer as to a wrong password."""


class InvalidGrant(Exception):
    """A refresh token was refused (RFC 6749, section 5.2, invalid_grant); str() says why, for the client."""


class InvalidScope(Exception):
    """The scope asked for cannot be granted (RFC 6749, section 5.2, invalid_scope); str() says why."""


@dataclass(frozen=True)
class Lifetimes:
    access: timedelta = timedelta(minutes=ACCESS_TOKEN_EXPIRE_MINUTES)
    refresh: timedelta = session_store.REFRESH_LIFETIME
    session: timedelta = session_store.SESSION_LIFETIME


class AccessTokens(NamedTuple):
    """How access tokens are made and read: HS256 with the secret (tokens.py) unless another pair is given, such as
    keys.SignedAccessTokens (ES256, notebook 08)."""

    create: Callable[[dict, timedelta | None], str] = create_access_token
    decode: Callable[[str], dict] = decode_access_token

    def __repr__(self) -> str:  # as code, in printed signatures: not <function ... at 0x7f...>
        def name(function: Callable) -> str:
            function = getattr(function, "func", function)  # a functools.partial: the function it calls
            return getattr(function, "__qualname__", type(function).__name__)

        return f"AccessTokens(create={name(self.create)}, decode={name(self.decode)})"


HS256 = AccessTokens()  # with the lessons' secret (tokens.get_signing_key)


def hs256_access_tokens(key: Key) -> AccessTokens:
    """HS256 access tokens signed and verified with key (tokens.hmac_key of your own secret)."""
    return AccessTokens(partial(create_access_token, key=key), partial(decode_access_token, key=key))


class TokenPair(BaseModel):
    """A successful token response, as RFC 6749 section 5.1 spells it."""

    access_token: str
    token_type: str = "bearer"
    expires_in: int
    refresh_token: str
    scope: str  # what the access token grants, space-separated (RFC 6749, sections 3.3 and 5.1)


def create_refresh_token(
    user_id: str, sid: str, jti: str, now: datetime, expires_at: datetime, key: Key | None = None
) -> str:
    """A refresh token, typed refresh+jwt, for the refresh id jti of session sid, signed HS256 with key (by default,
    the lessons' secret): only this service reads it, so it stays HS256 whatever signs the access tokens."""
    claims = {"sub": user_id, "sid": sid, "jti": jti, "iat": now, "exp": expires_at}
    return jwt.encode(claims, key or get_signing_key(), algorithm=ALGORITHM, headers={"typ": REFRESH_TOKEN_TYPE})


def _check_refresh_type(header: dict) -> None:
    if header.get("typ") != REFRESH_TOKEN_TYPE:
        raise TokenError(f"typ must be {REFRESH_TOKEN_TYPE!r}, not {header.get('typ')!r}")


# tokens.HEADER_CHECKS holds an access token's own typ rule (check_type): a refresh token takes its own instead.
REFRESH_HEADER_CHECKS = (*(rule for rule in HEADER_CHECKS if rule is not check_type), _check_refresh_type)


def _require_text(claims: dict, *names: str) -> None:
    for name in names:
        if not isinstance(claims.get(name), str) or not claims[name]:
            raise TokenError(f"{name} must be a non-empty string")


def decode_refresh_token(token: str, now: datetime | None = None, key: Key | None = None) -> dict:
    """The claims of a refresh token signed with key (by default, the lessons' secret) that has not expired; raise
    TokenError otherwise."""
    header = get_unverified_header(token)
    for rule in REFRESH_HEADER_CHECKS:
        rule(header)
    check_signature_spelling(token)
    claims = verify_signature_and_read(token, key or get_signing_key())
    seconds = (now or datetime.now(timezone.utc)).timestamp()
    for rule in CLAIM_CHECKS:
        rule(claims, seconds)
    _require_text(claims, "sub", "sid", "jti")
    return claims


def decode_session_access_token(token: str, access_tokens: AccessTokens = HS256) -> dict:
    """The claims of a valid access token that names its session (sid); raise TokenError otherwise."""
    claims = access_tokens.decode(token)
    _require_text(claims, "sid")
    if not isinstance(claims.get("scope", ""), str):
        raise TokenError("scope must be a string")
    return claims


def scopes_of(claims: dict) -> list[str]:
    """The scopes an access token's claims grant (its scope claim, space-separated); none without one."""
    return claims.get("scope", "").split()


def grant_scope(asked: str, held: str) -> str:
    """What a login is granted: the scopes asked for that the user holds (me when none is asked for); InvalidScope
    when it holds none of them. Those it does not hold are left out, as RFC 6749 section 3.3 allows."""
    held_names = held.split()
    granted = [name for name in dict.fromkeys(asked.split() or [DEFAULT_SCOPE]) if name in held_names]
    if not granted:
        raise InvalidScope(NO_SCOPE_HELD)
    return " ".join(granted)


def _issue(
    user_id: str,
    sid: str,
    jti: str,
    now: datetime,
    refresh_until: datetime,
    lifetimes: Lifetimes,
    scope: str,
    access_tokens: AccessTokens,
    refresh_key: Key | None,
) -> TokenPair:
    claims = {"sub": user_id, "sid": sid, "scope": scope}
    return TokenPair(
        access_token=access_tokens.create(claims, lifetimes.access),
        expires_in=max(1, round(lifetimes.access.total_seconds())),
        refresh_token=create_refresh_token(user_id, sid, jti, now, refresh_until, refresh_key),
        scope=scope,
    )


def holds(account: Account, scope: str) -> bool:
    """Whether the account holds every scope of scope (space-separated)."""
    return set(scope.split()) <= set(account.scopes.split())


def log_in(
    engine: Engine,
    users: UserDirectory,
    account: Account,
    scope: str,
    now: datetime,
    lifetimes: Lifetimes,
    *,
    max_sessions: int = session_store.MAX_SESSIONS_PER_USER,
    access_tokens: AccessTokens = HS256,
    refresh_key: Key | None = None,
) -> TokenPair:
    """Start a session granted scope for an account whose password was checked; its first access and refresh tokens.

    The user is read again once the session is stored, and the session ended if they changed meanwhile:
    CredentialsChanged when the password hash is no longer the one checked (account.password_hash) or the user was
    disabled or removed (answer as to a wrong password); InvalidScope when they do not hold every scope of it (one
    was taken away during the login). Beyond max_sessions live sessions, the user's oldest end.
    """
    if not holds(account, scope):
        raise InvalidScope(NO_SCOPE_HELD)
    sid, jti = session_store.start_session(
        engine, account.id, scope, now, lifetimes.refresh, lifetimes.session, max_sessions=max_sessions
    )
    now_stored = users.by_id(account.id)
    if now_stored is None or not now_stored.is_active or now_stored.password_hash != account.password_hash:
        session_store.end_session(engine, sid, now)
        raise CredentialsChanged(f"user {account.id!r} changed while their login was checked")
    if not holds(now_stored, scope):
        session_store.end_session(engine, sid, now)
        raise InvalidScope(NO_SCOPE_HELD)
    refresh_until = min(now + lifetimes.refresh, now + lifetimes.session)
    return _issue(account.id, sid, jti, now, refresh_until, lifetimes, scope, access_tokens, refresh_key)


def _refuse_wider_scope(engine: Engine, claims: dict, asked: list[str], now: datetime) -> None:
    session = session_store.get_session(engine, claims["sid"])
    current = (
        session is not None
        and session.ended_at is None
        and session.refresh_jti == claims["jti"]
        and now < min(session.expires_at, session.refresh_expires_at)
    )
    if current and not set(asked) <= set(session.scope.split()):
        raise InvalidScope(SCOPE_NOT_GRANTED)  # before rotating: the refresh token is not spent


def refresh(
    engine: Engine,
    users: UserDirectory,
    refresh_token: str,
    now: datetime,
    lifetimes: Lifetimes,
    scope: str = "",
    access_tokens: AccessTokens = HS256,
    refresh_key: Key | None = None,
) -> TokenPair:
    """Spend a refresh token for new tokens in the same session; a spent one presented again ends the session, and
    so does a refresh for a user now disabled, removed, or without a scope of the session's grant.

    scope may ask for fewer scopes than the session was granted (the new access token carries only those), never
    more (InvalidScope); left empty, the new access token carries the session's whole grant.
    """
    try:
        claims = decode_refresh_token(refresh_token, now, refresh_key)
    except TokenError:
        raise InvalidGrant(INVALID_REFRESH_TOKEN) from None
    asked = list(dict.fromkeys(scope.split()))
    if asked:
        _refuse_wider_scope(engine, claims, asked, now)
    sid, new_jti = claims["sid"], session_store.new_token_id()
    result = session_store.rotate_refresh(engine, sid, claims["jti"], new_jti, now, lifetimes.refresh)
    if result.outcome is Rotation.REUSED:
        raise InvalidGrant(REFRESH_TOKEN_REUSED)
    if result.outcome is Rotation.ENDED:
        raise InvalidGrant(SESSION_ENDED)
    if result.outcome is not Rotation.ROTATED:
        raise InvalidGrant(INVALID_REFRESH_TOKEN)
    account = users.by_id(result.user_id)
    if account is None or not account.is_active or not holds(account, result.scope):
        session_store.end_session(engine, sid, now)
        raise InvalidGrant(SESSION_ENDED)
    if not set(asked) <= set(result.scope.split()):
        raise InvalidScope(SCOPE_NOT_GRANTED)
    granted = " ".join(asked) if asked else result.scope
    until = result.refresh_expires_at
    return _issue(result.user_id, sid, new_jti, now, until, lifetimes, granted, access_tokens, refresh_key)


def session_account(engine: Engine, users: UserDirectory, sid: str, now: datetime) -> Account | None:
    """The account of a live session whose user is active, or None: what every protected request asks (two
    lookups by primary key; store.SessionCheck does it in one SELECT for the lessons' own users)."""
    user_id = session_store.live_session_user(engine, sid, now)
    account = None if user_id is None else users.by_id(user_id)
    return account if account is not None and account.is_active else None


def session_of(token: str, access_tokens: AccessTokens = HS256, refresh_key: Key | None = None) -> str | None:
    """The session id a valid refresh or access token names, or None."""
    decoders = (
        partial(decode_refresh_token, key=refresh_key),
        partial(decode_session_access_token, access_tokens=access_tokens),
    )
    for decode in decoders:
        try:
            return decode(token)["sid"]
        except TokenError:
            continue
    return None


def revoke(
    engine: Engine, token: str, now: datetime, access_tokens: AccessTokens = HS256, refresh_key: Key | None = None
) -> bool:
    """End the session of a refresh or access token (RFC 7009); False when the token named no live session."""
    sid = session_of(token, access_tokens, refresh_key)
    return sid is not None and session_store.end_session(engine, sid, now)
