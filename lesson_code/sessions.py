"""Sessions: a login starts one, refresh tokens rotate inside it, logout and revocation end it.

An access token carries its session's id (sid) and lives minutes; a refresh token, typed refresh+jwt so that one
kind never passes for the other (RFC 8725, sections 3.11 and 3.12), carries the id (jti) of the one refresh the
session allows next. The store keeps that id, never the token. Every function takes the engine and the time.

Scopes: a login is granted the scopes asked for that the user holds (me when none is asked for), the session keeps
that grant, and each access token carries a scope claim, space-separated (RFC 9068, RFC 8693). A refresh may ask for
fewer scopes than the session was granted, never more (RFC 6749, section 6).
"""

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from functools import partial
from typing import NamedTuple

from jose import jwt
from pydantic import BaseModel
from sqlalchemy import Engine

from lesson_code import store
from lesson_code.store import Rotation
from lesson_code.tokens import (
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


class InvalidGrant(Exception):
    """A refresh token was refused (RFC 6749, section 5.2, invalid_grant); str() says why, for the client."""


class InvalidScope(Exception):
    """The scope asked for cannot be granted (RFC 6749, section 5.2, invalid_scope); str() says why."""


@dataclass(frozen=True)
class Lifetimes:
    access: timedelta = timedelta(minutes=ACCESS_TOKEN_EXPIRE_MINUTES)
    refresh: timedelta = store.REFRESH_LIFETIME
    session: timedelta = store.SESSION_LIFETIME


class AccessTokens(NamedTuple):
    """How access tokens are made and read: HS256 with the secret (tokens.py) unless another pair is given, such as
    keys.SignedAccessTokens (ES256, notebook 08)."""

    create: Callable[[dict, timedelta | None], str] = create_access_token
    decode: Callable[[str], dict] = decode_access_token


HS256 = AccessTokens()


class TokenPair(BaseModel):
    """A successful token response, as RFC 6749 section 5.1 spells it."""

    access_token: str
    token_type: str = "bearer"
    expires_in: int
    refresh_token: str
    scope: str  # what the access token grants, space-separated (RFC 6749, sections 3.3 and 5.1)


def create_refresh_token(username: str, sid: str, jti: str, now: datetime, expires_at: datetime) -> str:
    """A signed refresh token, typed refresh+jwt, for the refresh id jti of session sid."""
    claims = {"sub": username, "sid": sid, "jti": jti, "iat": now, "exp": expires_at}
    return jwt.encode(claims, get_signing_key(), algorithm=ALGORITHM, headers={"typ": REFRESH_TOKEN_TYPE})


def _check_refresh_type(header: dict) -> None:
    if header.get("typ") != REFRESH_TOKEN_TYPE:
        raise TokenError(f"typ must be {REFRESH_TOKEN_TYPE!r}, not {header.get('typ')!r}")


# tokens.HEADER_CHECKS holds an access token's own typ rule (check_type): a refresh token takes its own instead.
REFRESH_HEADER_CHECKS = (*(rule for rule in HEADER_CHECKS if rule is not check_type), _check_refresh_type)


def _require_text(claims: dict, *names: str) -> None:
    for name in names:
        if not isinstance(claims.get(name), str) or not claims[name]:
            raise TokenError(f"{name} must be a non-empty string")


def decode_refresh_token(token: str, now: datetime | None = None) -> dict:
    """The claims of a refresh token this service signed and that has not expired; raise TokenError otherwise."""
    header = get_unverified_header(token)
    for rule in REFRESH_HEADER_CHECKS:
        rule(header)
    check_signature_spelling(token)
    claims = verify_signature_and_read(token, get_signing_key())
    seconds = (now or datetime.now(timezone.utc)).timestamp()
    for rule in CLAIM_CHECKS:
        rule(claims, seconds)
    _require_text(claims, "sid", "jti")
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
    username: str,
    sid: str,
    jti: str,
    now: datetime,
    refresh_until: datetime,
    lifetimes: Lifetimes,
    scope: str,
    access_tokens: AccessTokens,
) -> TokenPair:
    claims = {"sub": username, "sid": sid, "scope": scope}
    return TokenPair(
        access_token=access_tokens.create(claims, lifetimes.access),
        expires_in=max(1, round(lifetimes.access.total_seconds())),
        refresh_token=create_refresh_token(username, sid, jti, now, refresh_until),
        scope=scope,
    )


def log_in(
    engine: Engine,
    username: str,
    scope: str,
    now: datetime,
    lifetimes: Lifetimes,
    *,
    verified_hash: str | None = None,
    max_sessions: int = store.MAX_SESSIONS_PER_USER,
    access_tokens: AccessTokens = HS256,
) -> TokenPair:
    """Start a session granted scope for a user whose password was checked; its first access and refresh tokens.

    InvalidScope when the user no longer holds every scope of it (one was taken away during the login);
    store.CredentialsChanged when the password hash is no longer verified_hash, the one checked, or the user was
    disabled meanwhile: answer as to a wrong password. Beyond max_sessions live sessions, the user's oldest end.
    """
    try:
        sid, jti = store.start_session(
            engine,
            username,
            scope,
            now,
            lifetimes.refresh,
            lifetimes.session,
            verified_hash=verified_hash,
            max_sessions=max_sessions,
        )
    except store.ScopeNotHeld:
        raise InvalidScope(NO_SCOPE_HELD) from None
    refresh_until = min(now + lifetimes.refresh, now + lifetimes.session)
    return _issue(username, sid, jti, now, refresh_until, lifetimes, scope, access_tokens)


def _refuse_wider_scope(engine: Engine, claims: dict, asked: list[str], now: datetime) -> None:
    session = store.get_session(engine, claims["sid"])
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
    refresh_token: str,
    now: datetime,
    lifetimes: Lifetimes,
    scope: str = "",
    access_tokens: AccessTokens = HS256,
) -> TokenPair:
    """Spend a refresh token for new tokens in the same session; a spent one presented again ends the session.

    scope may ask for fewer scopes than the session was granted (the new access token carries only those), never
    more (InvalidScope); left empty, the new access token carries the session's whole grant.
    """
    try:
        claims = decode_refresh_token(refresh_token, now)
    except TokenError:
        raise InvalidGrant(INVALID_REFRESH_TOKEN) from None
    asked = list(dict.fromkeys(scope.split()))
    if asked:
        _refuse_wider_scope(engine, claims, asked, now)
    sid, new_jti = claims["sid"], store.new_token_id()
    result = store.rotate_refresh(engine, sid, claims["jti"], new_jti, now, lifetimes.refresh)
    if result.outcome is Rotation.REUSED:
        raise InvalidGrant(REFRESH_TOKEN_REUSED)
    if result.outcome is Rotation.ENDED:
        raise InvalidGrant(SESSION_ENDED)
    if result.outcome is not Rotation.ROTATED:
        raise InvalidGrant(INVALID_REFRESH_TOKEN)
    if not set(asked) <= set(result.scope.split()):
        raise InvalidScope(SCOPE_NOT_GRANTED)
    granted = " ".join(asked) if asked else result.scope
    return _issue(result.username, sid, new_jti, now, result.refresh_expires_at, lifetimes, granted, access_tokens)


def session_of(token: str, access_tokens: AccessTokens = HS256) -> str | None:
    """The session id a valid refresh or access token names, or None."""
    for decode in (decode_refresh_token, partial(decode_session_access_token, access_tokens=access_tokens)):
        try:
            return decode(token)["sid"]
        except TokenError:
            continue
    return None


def revoke(engine: Engine, token: str, now: datetime, access_tokens: AccessTokens = HS256) -> bool:
    """End the session of a refresh or access token (RFC 7009); False when the token named no live session."""
    sid = session_of(token, access_tokens)
    return sid is not None and store.end_session(engine, sid, now)
