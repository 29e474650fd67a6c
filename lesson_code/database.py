"""The database plumbing under the store and the session store: engines, one-line failures, UTC datetimes.

make_engine takes the URL (SQLite in a file, or PostgreSQL through psycopg 3, or any SQLAlchemy URL); nothing here
reads the environment. reading() and writing() wrap a connection so that a database failure is DatabaseUnavailable
with one line saying what is wrong (answer 503), and writing() takes SQLite's write lock at its start, so writers
queue instead of failing. Needs SQLAlchemy only.
"""

import os
import sqlite3
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from sqlalchemy import DateTime, Engine, Table, create_engine, event, false, func, select
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.pool import QueuePool
from sqlalchemy.schema import CreateIndex, CreateTable
from sqlalchemy.types import TypeDecorator

DATABASE_URL_ENV_VAR = "DATABASE_URL"  # named in errors: the setting an operator changes
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


class StoreError(Exception):
    """A request the store refuses; str() is one line for a person to read."""


class DatabaseUnavailable(StoreError):
    """The database cannot be opened, written or reached: at start-up, or during a request (answer 503)."""


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
def translated(engine: Engine) -> Iterator[None]:
    """Database failures inside as DatabaseUnavailable with one line saying what is wrong (IntegrityError passes)."""
    try:
        yield
    except sa_exc.IntegrityError:
        raise
    except (sa_exc.DBAPIError, sa_exc.TimeoutError) as error:
        raise DatabaseUnavailable(describe_failure(engine, error)) from error


@contextmanager
def reading(engine: Engine) -> Iterator[Connection]:
    """A connection for reads; DatabaseUnavailable, in one line, when the database fails."""
    with translated(engine), engine.connect() as connection:
        yield connection


@contextmanager
def writing(engine: Engine) -> Iterator[Connection]:
    """A transaction that holds the write lock from its start on SQLite, so writers queue instead of failing."""
    with translated(engine), engine.begin() as connection:
        if connection.dialect.name == "sqlite":
            connection.exec_driver_sql("BEGIN IMMEDIATE")
        yield connection


def lock_schema(connection: Connection) -> None:
    """On PostgreSQL, wait for the other workers creating the schema or seeding (until this transaction ends)."""
    if connection.dialect.name == "postgresql":
        connection.execute(select(func.pg_advisory_xact_lock(SCHEMA_LOCK_ID)))


def create_tables(engine: Engine, tables: Iterable[Table]) -> None:
    """Create the missing tables and their indexes (never alters existing ones), workers taking turns, then check
    that the database can be written (a read-only one fails here, at start-up, not on the first login)."""
    tables = list(tables)
    with writing(engine) as connection:
        lock_schema(connection)
        for table in tables:
            connection.execute(CreateTable(table, if_not_exists=True))
            for index in table.indexes:
                connection.execute(CreateIndex(index, if_not_exists=True))
        connection.execute(tables[0].delete().where(false()))  # any write fails on a read-only database
