"""Users and sessions in SQL: SQLModel declares the tables, SQLAlchemy Core runs the queries of every request.

SQLite in a file by default (lesson.db next to lesson_code/), any SQLAlchemy URL otherwise (PostgreSQL through
psycopg 3). Every function takes the engine, and make_engine the URL: nothing here reads the environment.
"""

import enum
import os
import re
import secrets
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import anyio.to_thread
from sqlalchemy import DateTime, Engine, Index, bindparam, case, create_engine, event, func, insert, select, update
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects import sqlite
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.pool import QueuePool
from sqlalchemy.schema import CreateIndex, CreateTable
from sqlalchemy.types import TypeDecorator
from sqlmodel import Field, SQLModel

from lesson_code.scopes import SCOPE_TOKEN, SCOPES  # the store refuses any other scope

DATABASE_URL_ENV_VAR = "DATABASE_URL"  # named in errors: the setting an operator changes
REFRESH_LIFETIME = timedelta(days=7)
SESSION_LIFETIME = timedelta(days=30)
DEFAULT_SCOPES = "me"
POOL_SIZE = 40  # SQLite: as many connections as FastAPI has worker threads (anyio's default), none opened per request
# PostgreSQL: at most 10 + 10 connections a process, so two workers, the CLI and psql stay well inside PostgreSQL's
# default max_connections (100); a request that waits POOL_TIMEOUT_SECONDS for a connection is answered 503.
POSTGRESQL_POOL_SIZE = 10
POSTGRESQL_MAX_OVERFLOW = 10
POOL_TIMEOUT_SECONDS = 10
LOCK_TIMEOUT_SECONDS = 5.0  # how long a query waits for a lock before the request is answered 503
CONNECT_TIMEOUT_SECONDS = 5
WAL_RETRY_SECONDS = 0.01
SCHEMA_LOCK_ID = 710_062_026  # any number: PostgreSQL workers take turns creating the schema and seeding
MAX_SESSIONS_PER_USER = 20  # live sessions a user may have; a login beyond them ends the oldest
ENDED_SESSIONS_KEPT = timedelta(days=1)  # then a login deletes them; until then reuse detection still sees them
# What a username may be: the store refuses any other, and a login naming another is refused before any work.
USERNAME = re.compile(r"[A-Za-z0-9._@-]{1,64}")
USERNAME_RULE = "1 to 64 characters: ASCII letters, digits and . _ - @"
DEMO_USERS = (
    {"username": "alice", "password": "wonderland", "full_name": "Alice Liddell", "email": "alice@example.com"},
    {"username": "bob", "password": "builder", "full_name": "Bob the Builder", "email": "bob@example.com",
     "disabled": True},
    {"username": "carol", "password": "tea-party", "full_name": "Carol Hatter", "email": "carol@example.com",
     "scopes": "me admin"},
)  # fmt: skip


class StoreError(Exception):
    """A request the store refuses; str() is one line for a person to read."""


class DatabaseUnavailable(StoreError):
    """The database cannot be opened, written or reached: at start-up, or during a request (answer 503)."""


class UserExists(StoreError):
    pass


class UnknownUser(StoreError):
    pass


class ScopeNotHeld(StoreError):
    """A session was to be granted a scope the user does not hold (now): it is not started."""


class CredentialsChanged(StoreError):
    """The password a login checked was replaced (or the user disabled) before its session started: none is."""


class UserDisabled(CredentialsChanged):
    pass


class UTCDateTime(TypeDecorator):
    """Aware UTC datetimes in and out, on every database (SQLite keeps no time zone: it stores UTC, read as UTC)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: pass an aware one, such as datetime.now(timezone.utc)")
        value = value.astimezone(timezone.utc)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


def utc_now() -> datetime:
    """The current time, aware, in UTC."""
    return datetime.now(timezone.utc)


class UserBase(SQLModel):
    username: str = Field(primary_key=True)
    full_name: str | None = None
    email: str | None = None
    disabled: bool = False
    scopes: str = DEFAULT_SCOPES  # space-separated, as in a token's scope claim


class UserRecord(UserBase, table=True):
    __tablename__ = "users"

    hashed_password: str
    created_at: datetime = Field(default_factory=utc_now, sa_type=UTCDateTime)


class UserPublic(UserBase):
    pass


class SessionRecord(SQLModel, table=True):
    __tablename__ = "sessions"

    id: str = Field(primary_key=True)  # the sid claim of the session's tokens
    username: str = Field(foreign_key="users.username", ondelete="CASCADE")
    scope: str  # granted at login
    created_at: datetime = Field(sa_type=UTCDateTime)
    expires_at: datetime = Field(sa_type=UTCDateTime)  # the absolute end, however often it is refreshed
    ended_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    refresh_jti: str  # the one refresh token valid now; only its id is kept, never the token
    refresh_expires_at: datetime = Field(sa_type=UTCDateTime)


class Rotation(enum.Enum):
    ROTATED = "rotated"
    REUSED = "reused"  # a spent refresh token came back: the session has just been ended
    EXPIRED = "expired"
    ENDED = "ended"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class RotationResult:
    outcome: Rotation
    username: str | None = None
    scope: str | None = None
    refresh_expires_at: datetime | None = None


users = UserRecord.__table__
sessions = SessionRecord.__table__
# A user's sessions, live ones (ended_at IS NULL) first: logout everywhere, the clean-up and the cap at login.
Index("ix_sessions_username_ended_at", sessions.c.username, sessions.c.ended_at)
NOW = bindparam("now", type_=UTCDateTime())
LIVE_SESSION = (sessions.c.ended_at.is_(None), sessions.c.expires_at > NOW)
PUBLIC_COLUMNS = [users.c[name] for name in UserPublic.model_fields]
ACTIVE_SESSION_USER = (
    select(*PUBLIC_COLUMNS)
    .join(sessions, sessions.c.username == users.c.username)
    .where(sessions.c.id == bindparam("sid"), *LIVE_SESSION, users.c.disabled.is_(False))
)
# The same SELECT in SQLite's own SQL, compiled once: SessionCheck runs it on the event loop with sqlite3 alone.
ACTIVE_SESSION_USER_SQLITE = str(ACTIVE_SESSION_USER.compile(dialect=sqlite.dialect(paramstyle="named")))
LOOP_BUSY_TIMEOUT_MS = 100  # a WAL reader waits for no writer; this bounds the rare wait (recovery) on the loop
HAS_A_USER = select(users.c.username).limit(1)
USER_AT_LOGIN = select(users.c.scopes, users.c.disabled, users.c.hashed_password).where(
    users.c.username == bindparam("username")
)
REFRESH_UNTIL = bindparam("refresh_until", type_=UTCDateTime())
ROTATE_REFRESH = (
    update(sessions)
    .where(
        sessions.c.id == bindparam("sid"),
        sessions.c.refresh_jti == bindparam("presented_jti"),
        *LIVE_SESSION,
        sessions.c.refresh_expires_at > NOW,
        select(users.c.username).where(users.c.username == sessions.c.username, users.c.disabled.is_(False)).exists(),
    )
    .values(
        refresh_jti=bindparam("new_jti"),
        refresh_expires_at=case((sessions.c.expires_at < REFRESH_UNTIL, sessions.c.expires_at), else_=REFRESH_UNTIL),
    )
)
SESSION_AFTER_ROTATION = (
    select(
        sessions.c.username,
        sessions.c.scope,
        sessions.c.refresh_jti,
        sessions.c.refresh_expires_at,
        sessions.c.ended_at,
        users.c.disabled,
    )
    .join(users, users.c.username == sessions.c.username)
    .where(sessions.c.id == bindparam("sid"))
)


def _sqlite_pragmas(dbapi_connection: sqlite3.Connection, _record: Any) -> None:
    _use_wal(dbapi_connection)
    dbapi_connection.execute("PRAGMA synchronous=NORMAL")
    dbapi_connection.execute("PRAGMA foreign_keys=ON")


def _use_wal(dbapi_connection: sqlite3.Connection) -> None:
    """Switch to WAL mode, retried for LOCK_TIMEOUT_SECONDS: while another connection writes to a new file, SQLite
    answers "database is locked" at once, without waiting (two workers starting together on a new database)."""
    deadline = time.monotonic() + LOCK_TIMEOUT_SECONDS
    while True:
        try:
            dbapi_connection.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as error:
            if "locked" not in str(error) or time.monotonic() > deadline:
                raise
            time.sleep(WAL_RETRY_SECONDS)


def _create_private_file(path: str) -> None:
    """Make a missing SQLite file readable by its owner only (its -wal and -shm files take its mode): it holds the
    password hashes. An existing file is left as it is; a missing folder is reported by the first connection."""
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except OSError:
        pass


def _create_engine(url: str, pool_size: int | None, lock_timeout: float) -> Engine:
    parsed = make_url(url)
    if parsed.drivername in ("postgres", "postgresql"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        connect_args = {"timeout": lock_timeout, "check_same_thread": False}
        if parsed.database in (None, "", ":memory:"):  # one connection is the whole database: threads take turns
            engine = create_engine(parsed, connect_args=connect_args, poolclass=QueuePool, pool_size=1, max_overflow=0)
        else:
            engine = create_engine(parsed, connect_args=connect_args, pool_size=pool_size or POOL_SIZE)
            if not parsed.query.get("uri"):
                _create_private_file(parsed.database)
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    connect_args = {}
    if backend == "postgresql":
        timeout_ms = int(lock_timeout * 1000)
        connect_args = {"connect_timeout": CONNECT_TIMEOUT_SECONDS, "options": f"-c lock_timeout={timeout_ms}"}
    return create_engine(
        parsed,
        connect_args=connect_args,
        pool_size=pool_size or POSTGRESQL_POOL_SIZE,
        max_overflow=POSTGRESQL_MAX_OVERFLOW,
        pool_timeout=POOL_TIMEOUT_SECONDS,
        pool_pre_ping=True,  # a connection the server dropped (a restart, a failover) is replaced, not a 503
    )


def make_engine(url: str, pool_size: int | None = None, lock_timeout: float = LOCK_TIMEOUT_SECONDS) -> Engine:
    """An engine with a pool of kept-open connections (POOL_SIZE on SQLite, POSTGRESQL_POOL_SIZE otherwise, unless
    pool_size is given); SQLite in WAL mode with foreign keys and a busy timeout, its file made 0600.

    DatabaseUnavailable, in one line, for a URL that cannot be parsed or names a driver or argument that cannot be used.
    """
    try:
        return _create_engine(url, pool_size, lock_timeout)
    except (sa_exc.ArgumentError, ImportError, ValueError, TypeError) as error:
        reason = " ".join(str(error).split()) or type(error).__name__
        raise DatabaseUnavailable(
            f"{DATABASE_URL_ENV_VAR} is not a database URL this code can open: {reason}"
        ) from None


def describe_failure(engine: Engine, error: BaseException) -> str:
    """One line saying what is wrong with the database and where."""
    url = engine.url
    cause = error.orig if isinstance(error, sa_exc.DBAPIError) else error
    message = " ".join(str(cause).split("\n")[0].split()) or type(cause).__name__
    if url.get_backend_name() != "sqlite":
        where = url.host or url.query.get("host") or "localhost"
        return f"database {url.database!r} on {where} is unavailable: {message}"
    path = Path(url.database or ":memory:")
    if "unable to open database file" in message and not path.parent.is_dir():
        return f"SQLite database {path}: the folder {path.parent} does not exist"
    if "unable to open database file" in message:
        return f"SQLite database {path} cannot be opened: the file and its folder must be readable and writable"
    if "not a database" in message or "malformed" in message:
        return f"SQLite database {path} is corrupt or not an SQLite file ({message}): restore it or move it away"
    if "readonly" in message:
        return f"SQLite database {path} is read-only: the file and its folder must be writable"
    if "locked" in message:
        return f"SQLite database {path} is locked: another process has held it for too long"
    return f"SQLite database {path} failed: {message}"


@contextmanager
def _translated(engine: Engine) -> Iterator[None]:
    try:
        yield
    except sa_exc.IntegrityError:
        raise
    except (sa_exc.DBAPIError, sa_exc.TimeoutError) as error:
        raise DatabaseUnavailable(describe_failure(engine, error)) from error


@contextmanager
def _reading(engine: Engine) -> Iterator[Connection]:
    with _translated(engine), engine.connect() as connection:
        yield connection


@contextmanager
def _writing(engine: Engine) -> Iterator[Connection]:
    """A transaction that holds the write lock from its start on SQLite, so writers queue instead of failing."""
    with _translated(engine), engine.begin() as connection:
        if connection.dialect.name == "sqlite":
            connection.exec_driver_sql("BEGIN IMMEDIATE")
        yield connection


def create_schema(engine: Engine) -> None:
    """Create missing tables and indexes (never alters existing ones), then check the database can be written."""
    with _writing(engine) as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(select(func.pg_advisory_xact_lock(SCHEMA_LOCK_ID)))
        for table in SQLModel.metadata.sorted_tables:
            connection.execute(CreateTable(table, if_not_exists=True))
            for index in table.indexes:
                connection.execute(CreateIndex(index, if_not_exists=True))
        connection.execute(sessions.delete().where(sessions.c.id == ""))  # any write fails on a read-only database


def seed_demo_users(engine: Engine, hash_password: Callable[[str], str], now: datetime | None = None) -> list[str]:
    """Add the demo users (alice, bob, carol) to a database that has no user at all, and return their names; a
    database with any user is left alone. Safe when several workers start at once: one of them adds the users."""
    with _reading(engine) as connection:
        if connection.scalar(HAS_A_USER) is not None:
            return []
    demo_users = [
        UserRecord(
            **{name: value for name, value in user.items() if name != "password"},
            hashed_password=hash_password(user["password"]),
            created_at=now or utc_now(),
        ).model_dump()
        for user in DEMO_USERS
    ]
    with _writing(engine) as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(select(func.pg_advisory_xact_lock(SCHEMA_LOCK_ID)))
        if connection.scalar(HAS_A_USER) is not None:  # another worker was first
            return []
        connection.execute(insert(users), demo_users)
    return [user["username"] for user in demo_users]


def is_username(text: str) -> bool:
    """Whether text follows the username rule (USERNAME_RULE)."""
    return USERNAME.fullmatch(text) is not None


def normalise_scopes(scopes: str | Iterable[str], known: Mapping[str, str] | None = None) -> str:
    """Scopes as one space-separated string, each once, in the order given; refuses a malformed or unknown scope."""
    known = SCOPES if known is None else known
    names = scopes.split() if isinstance(scopes, str) else [name for scope in scopes for name in scope.split()]
    for name in names:
        if not SCOPE_TOKEN.fullmatch(name):
            raise StoreError(f"invalid scope {name!r}: use printable ASCII without spaces, quotes or backslashes")
        if name not in known:
            raise StoreError(f"unknown scope {name!r}: the API knows {', '.join(known)}")
    if not names:
        raise StoreError("a user needs at least one scope")
    return " ".join(dict.fromkeys(names))


def get_user(engine: Engine, username: str) -> UserRecord | None:
    """The user with the password hash (for logging in), or None."""
    if "\x00" in username:  # no name holds one, and PostgreSQL refuses to be asked
        return None
    with _reading(engine) as connection:
        row = connection.execute(select(users).where(users.c.username == username)).first()
    return None if row is None else UserRecord.model_validate(row._mapping)


def list_users(engine: Engine) -> list[UserPublic]:
    """Every user, by name, without password hashes."""
    with _reading(engine) as connection:
        rows = connection.execute(select(*PUBLIC_COLUMNS).order_by(users.c.username))
        return [UserPublic.model_validate(row._mapping) for row in rows]


def add_user(
    engine: Engine,
    username: str,
    hashed_password: str,
    *,
    full_name: str | None = None,
    email: str | None = None,
    scopes: str | Iterable[str] = DEFAULT_SCOPES,
    disabled: bool = False,
    now: datetime | None = None,
) -> UserRecord:
    """Add a user; UserExists when the name is taken, StoreError when it breaks the username rule."""
    if not is_username(username):
        raise StoreError(f"a username is {USERNAME_RULE}, not {username!r}")
    user = UserRecord(
        username=username,
        hashed_password=hashed_password,
        full_name=full_name,
        email=email,
        scopes=normalise_scopes(scopes),
        disabled=disabled,
        created_at=now or utc_now(),
    )
    try:
        with _writing(engine) as connection:
            connection.execute(insert(users), user.model_dump())
    except sa_exc.IntegrityError:
        raise UserExists(f"user {username!r} already exists") from None
    return user


def _end_sessions_of(connection: Connection, username: str, now: datetime) -> int:
    statement = update(sessions).where(sessions.c.username == username, sessions.c.ended_at.is_(None))
    return connection.execute(statement.values(ended_at=now)).rowcount


def _delete_old_sessions(connection: Connection, username: str, now: datetime, keep_ended: int) -> None:
    """Delete the user's sessions over for more than ENDED_SESSIONS_KEPT, and the ended ones beyond the newest
    keep_ended: a user has at most keep_ended ended sessions and max_sessions live ones, however often they log in."""
    over_before = now - ENDED_SESSIONS_KEPT
    mine = sessions.c.username == username
    connection.execute(sessions.delete().where(mine, sessions.c.ended_at < over_before))
    connection.execute(
        sessions.delete().where(mine, sessions.c.ended_at.is_(None), sessions.c.expires_at < over_before)
    )
    newest_ended = select(sessions.c.id).where(mine, sessions.c.ended_at.is_not(None))
    newest_ended = newest_ended.order_by(sessions.c.ended_at.desc(), sessions.c.id.desc()).limit(keep_ended)
    kept = newest_ended.subquery()
    connection.execute(
        sessions.delete().where(mine, sessions.c.ended_at.is_not(None), sessions.c.id.not_in(select(kept.c.id)))
    )


def _end_oldest_sessions(connection: Connection, username: str, now: datetime, keep: int) -> None:
    live = (sessions.c.username == username, sessions.c.ended_at.is_(None), sessions.c.expires_at > now)
    newest_first = select(sessions.c.id).where(*live).order_by(sessions.c.created_at.desc(), sessions.c.id.desc())
    beyond = newest_first.offset(keep).scalar_subquery()
    connection.execute(update(sessions).where(sessions.c.id.in_(beyond)).values(ended_at=now))


def _update_user(connection: Connection, username: str, **values: Any) -> None:
    statement = update(users).where(users.c.username == username).values(**values)
    if "\x00" in username or connection.execute(statement).rowcount != 1:  # PostgreSQL refuses a NUL
        raise UnknownUser(f"no user named {username!r}")


def set_disabled(engine: Engine, username: str, disabled: bool, now: datetime | None = None) -> int:
    """Disable (ending every session of the user) or enable a user; returns the number of sessions ended."""
    with _writing(engine) as connection:
        _update_user(connection, username, disabled=disabled)
        return _end_sessions_of(connection, username, now or utc_now()) if disabled else 0


def set_password(engine: Engine, username: str, hashed_password: str, now: datetime | None = None) -> int:
    """Store a new password hash and end every session of the user; returns the number of sessions ended."""
    with _writing(engine) as connection:
        _update_user(connection, username, hashed_password=hashed_password)
        return _end_sessions_of(connection, username, now or utc_now())


def set_scopes(engine: Engine, username: str, scopes: str | Iterable[str], now: datetime | None = None) -> int:
    """Replace a user's scopes; taking one away ends every session of the user. Returns the number ended."""
    new_scopes = normalise_scopes(scopes)
    with _writing(engine) as connection:
        query = select(users.c.scopes).where(users.c.username == username).with_for_update()
        old_scopes = connection.scalar(query)
        if old_scopes is None:
            raise UnknownUser(f"no user named {username!r}")
        _update_user(connection, username, scopes=new_scopes)
        if set(old_scopes.split()) <= set(new_scopes.split()):
            return 0
        return _end_sessions_of(connection, username, now or utc_now())


def end_user_sessions(engine: Engine, username: str, now: datetime | None = None) -> int:
    """End every live session of a user (log out everywhere); returns how many there were."""
    with _writing(engine) as connection:
        return _end_sessions_of(connection, username, now or utc_now())


def new_token_id() -> str:
    """A random, URL-safe id of 256 bits, for a session (sid) or a refresh token (jti)."""
    return secrets.token_urlsafe(32)


def start_session(
    engine: Engine,
    username: str,
    scope: str,
    now: datetime,
    refresh_lifetime: timedelta = REFRESH_LIFETIME,
    session_lifetime: timedelta = SESSION_LIFETIME,
    *,
    verified_hash: str | None = None,
    max_sessions: int = MAX_SESSIONS_PER_USER,
) -> tuple[str, str]:
    """Start a session at login with the scope granted; returns (sid, refresh_jti) for the tokens to carry.

    The user is read under a lock that set_scopes, set_password and set_disabled wait for, so a change made while the
    password was being checked is not missed: ScopeNotHeld when the user does not hold every scope granted,
    UserDisabled when disabled, CredentialsChanged when the password hash is no longer verified_hash (the one the
    login checked). Then the oldest live sessions beyond max_sessions end, and the user's sessions over for more than
    ENDED_SESSIONS_KEPT are deleted, and so are the ended ones beyond the newest max_sessions: however often a user
    logs in, at most twice max_sessions rows are kept.
    """
    sid, refresh_jti = new_token_id(), new_token_id()
    expires_at = now + session_lifetime
    row = {
        "id": sid,
        "username": username,
        "scope": scope,
        "created_at": now,
        "expires_at": expires_at,
        "ended_at": None,
        "refresh_jti": refresh_jti,
        "refresh_expires_at": min(now + refresh_lifetime, expires_at),
    }
    try:
        with _writing(engine) as connection:
            user = connection.execute(USER_AT_LOGIN.with_for_update(read=True), {"username": username}).first()
            if user is None:
                raise UnknownUser(f"no user named {username!r}")
            if user.disabled:
                raise UserDisabled(f"user {username!r} is disabled")
            if verified_hash is not None and user.hashed_password != verified_hash:
                raise CredentialsChanged(f"the password of {username!r} changed while the login checked it")
            if not set(scope.split()) <= set(user.scopes.split()):
                raise ScopeNotHeld(f"user {username!r} does not hold every scope of {scope!r}")
            connection.execute(insert(sessions), row)
            _end_oldest_sessions(connection, username, now, max_sessions)
            _delete_old_sessions(connection, username, now, max_sessions)
    except sa_exc.IntegrityError:
        raise UnknownUser(f"no user named {username!r}") from None
    return sid, refresh_jti


def rotate_refresh(
    engine: Engine,
    sid: str,
    presented_jti: str,
    new_jti: str,
    now: datetime,
    refresh_lifetime: timedelta = REFRESH_LIFETIME,
) -> RotationResult:
    """Spend the session's current refresh id for new_jti; a spent one presented again ends the session (REUSED), and
    so does any refresh of a disabled user's session (ENDED)."""
    parameters = {"sid": sid, "presented_jti": presented_jti, "new_jti": new_jti, "now": now}
    with _writing(engine) as connection:
        rotated = connection.execute(ROTATE_REFRESH, {**parameters, "refresh_until": now + refresh_lifetime})
        row = connection.execute(SESSION_AFTER_ROTATION, {"sid": sid}).first()
        if rotated.rowcount == 1:
            return RotationResult(Rotation.ROTATED, row.username, row.scope, row.refresh_expires_at)
        if row is None:
            return RotationResult(Rotation.UNKNOWN)
        if row.ended_at is not None:
            return RotationResult(Rotation.ENDED, row.username)
        if row.disabled or row.refresh_jti != presented_jti:
            connection.execute(
                update(sessions).where(sessions.c.id == sid, sessions.c.ended_at.is_(None)).values(ended_at=now)
            )
            return RotationResult(Rotation.ENDED if row.disabled else Rotation.REUSED, row.username)
        return RotationResult(Rotation.EXPIRED, row.username)


def end_session(engine: Engine, sid: str, now: datetime) -> bool:
    """End one session (logout, revocation); False when it was unknown or already over."""
    statement = update(sessions).where(sessions.c.id == sid, sessions.c.ended_at.is_(None)).values(ended_at=now)
    with _writing(engine) as connection:
        return connection.execute(statement).rowcount == 1


def get_session(engine: Engine, sid: str) -> SessionRecord | None:
    """A session as stored, live or not, or None."""
    with _reading(engine) as connection:
        row = connection.execute(select(sessions).where(sessions.c.id == sid)).first()
    return None if row is None else SessionRecord.model_validate(row._mapping)


def active_session_user(engine: Engine, sid: str, now: datetime) -> UserPublic | None:
    """The user of a live session who is not disabled, or None: one SELECT, run for every protected request."""
    try:  # what _reading() does, written out: this runs on every request
        with engine.connect() as connection:
            row = connection.execute(ACTIVE_SESSION_USER, {"sid": sid, "now": now}).first()
    except (sa_exc.DBAPIError, sa_exc.TimeoutError) as error:
        raise DatabaseUnavailable(describe_failure(engine, error)) from error
    return None if row is None else UserPublic(**row._mapping)


class SessionCheck:
    """active_session_user() for async code: on the event loop for SQLite in WAL mode, in a worker thread otherwise.

    A WAL reader never waits for a writer, so one precompiled SELECT on a connection the loop keeps (about 15 us)
    costs less than the hop to a worker thread (100 us and more under load). A network database keeps its round trip
    in the thread pool.
    """

    def __init__(self, engine: Engine) -> None:
        self.engine, self.connection = engine, None
        if engine.dialect.name != "sqlite":
            return
        with _translated(engine):
            pooled = engine.raw_connection()  # with the pragmas every connection gets
        if pooled.driver_connection.execute("PRAGMA journal_mode").fetchone()[0] != "wal":  # :memory:, or no WAL
            pooled.close()  # back to the pool
            return
        connection = pooled.driver_connection
        pooled.detach()  # the loop's own from now on: the pool never hands it to a thread
        connection.execute(f"PRAGMA busy_timeout={LOOP_BUSY_TIMEOUT_MS}")
        # As the Core path binds it: SQLite's own text for a UTC time, not sqlite3's deprecated datetime adapter.
        self.bind_now = UTCDateTime().dialect_impl(engine.dialect).bind_processor(engine.dialect)
        self.connection = connection

    async def __call__(self, sid: str, now: datetime) -> UserPublic | None:
        if self.connection is None:
            return await anyio.to_thread.run_sync(active_session_user, self.engine, sid, now)
        try:  # fetchall() ends the statement, so no read transaction stays open between requests
            cursor = self.connection.execute(ACTIVE_SESSION_USER_SQLITE, {"sid": sid, "now": self.bind_now(now)})
            rows = cursor.fetchall()
        except sqlite3.Error as error:
            raise DatabaseUnavailable(describe_failure(self.engine, error)) from error
        if not rows:
            return None
        return UserPublic(**dict(zip((column[0] for column in cursor.description), rows[0], strict=True)))

    def close(self) -> None:
        if self.connection is not None:
            self.connection.close()
