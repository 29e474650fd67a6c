"""The lessons' users in SQL, and the one query that checks a session and its user together.

SQLModel declares the users table, SQLAlchemy Core runs the queries of every request. Sessions are kept by
session_store.py, in a table of its own; LessonUsers is how the session layer (sessions.py) reaches these users.
SQLite in a file by default (lesson.db next to lesson_code/), any SQLAlchemy URL otherwise (PostgreSQL through
psycopg 3). Every function takes the engine, and make_engine the URL: nothing here reads the environment.
"""

import re
import sqlite3
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import Any

import anyio.to_thread
from sqlalchemy import Engine, bindparam, insert, select, update
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects import sqlite
from sqlalchemy.engine import Connection
from sqlmodel import Field, SQLModel

from lesson_code import session_store
from lesson_code.database import (  # noqa: F401  (the store's names for them, as before the split)
    DATABASE_URL_ENV_VAR,
    LOCK_TIMEOUT_SECONDS,
    POOL_SIZE,
    POOL_TIMEOUT_SECONDS,
    POSTGRESQL_MAX_OVERFLOW,
    POSTGRESQL_POOL_SIZE,
    DatabaseUnavailable,
    StoreError,
    UTCDateTime,
    create_tables,
    describe_failure,
    lock_schema,
    make_engine,
    reading,
    translated,
    utc_now,
    writing,
)
from lesson_code.scopes import SCOPE_TOKEN, SCOPES  # the store refuses any other scope
from lesson_code.session_store import login_sessions
from lesson_code.sessions import Account, UserDirectory

DEFAULT_SCOPES = "me"
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


class UserExists(StoreError):
    pass


class UnknownUser(StoreError):
    pass


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


users = UserRecord.__table__
sessions = login_sessions  # session_store's table: a session's user_id is the username of these users
PUBLIC_COLUMNS = [users.c[name] for name in UserPublic.model_fields]
# One SELECT for every protected request: the session live, and its user not disabled.
ACTIVE_SESSION_USER = (
    select(*PUBLIC_COLUMNS)
    .join(sessions, sessions.c.user_id == users.c.username)
    .where(sessions.c.id == bindparam("sid"), *session_store.LIVE, users.c.disabled.is_(False))
)
# The same SELECT in SQLite's own SQL, compiled once: SessionCheck runs it on the event loop with sqlite3 alone.
ACTIVE_SESSION_USER_SQLITE = str(ACTIVE_SESSION_USER.compile(dialect=sqlite.dialect(paramstyle="named")))
LOOP_BUSY_TIMEOUT_MS = 100  # a WAL reader waits for no writer; this bounds the rare wait (recovery) on the loop
HAS_A_USER = select(users.c.username).limit(1)


def create_schema(engine: Engine) -> None:
    """Create the missing tables (users, then login_sessions) and indexes, never altering existing ones; then check
    that the database can be written."""
    create_tables(engine, [users])
    session_store.create_schema(engine)


def seed_demo_users(engine: Engine, hash_password: Callable[[str], str], now: datetime | None = None) -> list[str]:
    """Add the demo users (alice, bob, carol) to a database that has no user at all, and return their names; a
    database with any user is left alone. Safe when several workers start at once: one of them adds the users."""
    with reading(engine) as connection:
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
    with writing(engine) as connection:
        lock_schema(connection)
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
    with reading(engine) as connection:
        row = connection.execute(select(users).where(users.c.username == username)).first()
    return None if row is None else UserRecord.model_validate(row._mapping)


def list_users(engine: Engine) -> list[UserPublic]:
    """Every user, by name, without password hashes."""
    with reading(engine) as connection:
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
        with writing(engine) as connection:
            connection.execute(insert(users), user.model_dump())
    except sa_exc.IntegrityError:
        raise UserExists(f"user {username!r} already exists") from None
    return user


def _update_user(connection: Connection, username: str, **values: Any) -> None:
    statement = update(users).where(users.c.username == username).values(**values)
    if "\x00" in username or connection.execute(statement).rowcount != 1:  # PostgreSQL refuses a NUL
        raise UnknownUser(f"no user named {username!r}")


def set_disabled(engine: Engine, username: str, disabled: bool, now: datetime | None = None) -> int:
    """Disable (ending every session of the user) or enable a user; returns the number of sessions ended."""
    with writing(engine) as connection:
        _update_user(connection, username, disabled=disabled)
    return end_user_sessions(engine, username, now) if disabled else 0  # after the change is committed


def set_password(engine: Engine, username: str, hashed_password: str, now: datetime | None = None) -> int:
    """Store a new password hash and end every session of the user; returns the number of sessions ended."""
    with writing(engine) as connection:
        _update_user(connection, username, hashed_password=hashed_password)
    return end_user_sessions(engine, username, now)  # after the change is committed


def set_scopes(engine: Engine, username: str, scopes: str | Iterable[str], now: datetime | None = None) -> int:
    """Replace a user's scopes; taking one away ends every session of the user. Returns the number ended."""
    new_scopes = normalise_scopes(scopes)
    with writing(engine) as connection:
        query = select(users.c.scopes).where(users.c.username == username).with_for_update()
        old_scopes = connection.scalar(query)
        if old_scopes is None:
            raise UnknownUser(f"no user named {username!r}")
        _update_user(connection, username, scopes=new_scopes)
    if set(old_scopes.split()) <= set(new_scopes.split()):
        return 0
    return end_user_sessions(engine, username, now)  # after the change is committed


def end_user_sessions(engine: Engine, username: str, now: datetime | None = None) -> int:
    """End every live session of a user (log out everywhere); returns how many there were."""
    return session_store.end_user_sessions(engine, username, now or utc_now())


def account_of(user: UserRecord | UserPublic) -> Account:
    """A lesson user as the session layer sees one: the username is the id (the tokens' sub)."""
    hashed = user.hashed_password if isinstance(user, UserRecord) else None
    public = user if isinstance(user, UserPublic) else UserPublic.model_validate(user, from_attributes=True)
    return Account(id=user.username, password_hash=hashed, is_active=not user.disabled, scopes=user.scopes, user=public)


class LessonUsers(UserDirectory):
    """The session layer's way to these users (sessions.UserDirectory): a login is a username, and so is an id."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def is_login(self, text: str) -> bool:
        return is_username(text)

    def by_login(self, login: str) -> Account | None:
        user = get_user(self.engine, login)
        return None if user is None else account_of(user)

    def by_id(self, user_id: str) -> Account | None:
        return self.by_login(user_id)  # the username is the id


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
        with translated(engine):
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
