"""Sessions in SQL, apart from users: a table of its own (login_sessions) on a MetaData of its own.

A session belongs to a user id, kept as text (the sub claim of its tokens: a username, a uuid, any primary key), so
this table works beside whatever users table a project already has; it never joins it and names none of its columns.
Whether the user may still log in is asked of the project's users (sessions.UserDirectory), not here. Every function
takes the engine and the time; needs SQLAlchemy and database.py only.
"""

import enum
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Column, Engine, Index, MetaData, String, Table, bindparam, case, insert, select, update
from sqlalchemy.engine import Connection

from .database import UTCDateTime, create_tables, reading, translated, writing  # relative: see sessions.py

REFRESH_LIFETIME = timedelta(days=7)
SESSION_LIFETIME = timedelta(days=30)
MAX_SESSIONS_PER_USER = 20  # live sessions a user may have; a login beyond them ends the oldest
ENDED_SESSIONS_KEPT = timedelta(days=1)  # then a login deletes them; until then reuse detection still sees them

metadata = MetaData()  # create_schema() creates this table only: a project's own tables are left to the project
login_sessions = Table(
    "login_sessions",
    metadata,
    Column("id", String, primary_key=True),  # the sid claim of the session's tokens
    Column("user_id", String, nullable=False),  # the sub claim: the user's id, as text
    Column("scope", String, nullable=False),  # granted at login
    Column("created_at", UTCDateTime, nullable=False),
    Column("expires_at", UTCDateTime, nullable=False),  # the absolute end, however often it is refreshed
    Column("ended_at", UTCDateTime, nullable=True),
    Column("refresh_jti", String, nullable=False),  # the one refresh token valid now: only its id, never the token
    Column("refresh_expires_at", UTCDateTime, nullable=False),
)
# A user's sessions, live ones (ended_at IS NULL) first: logout everywhere, the clean-up and the cap at login.
Index("ix_login_sessions_user_id_ended_at", login_sessions.c.user_id, login_sessions.c.ended_at)
NOW = bindparam("now", type_=UTCDateTime())
LIVE = (login_sessions.c.ended_at.is_(None), login_sessions.c.expires_at > NOW)  # neither ended nor over
LIVE_SESSION_USER = select(login_sessions.c.user_id).where(login_sessions.c.id == bindparam("sid"), *LIVE)
REFRESH_UNTIL = bindparam("refresh_until", type_=UTCDateTime())
ROTATE_REFRESH = (
    update(login_sessions)
    .where(
        login_sessions.c.id == bindparam("sid"),
        login_sessions.c.refresh_jti == bindparam("presented_jti"),
        *LIVE,
        login_sessions.c.refresh_expires_at > NOW,
    )
    .values(
        refresh_jti=bindparam("new_jti"),
        refresh_expires_at=case(
            (login_sessions.c.expires_at < REFRESH_UNTIL, login_sessions.c.expires_at), else_=REFRESH_UNTIL
        ),
    )
)


class Rotation(enum.Enum):
    ROTATED = "rotated"
    REUSED = "reused"  # a spent refresh token came back: the session has just been ended
    EXPIRED = "expired"
    ENDED = "ended"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class RotationResult:
    outcome: Rotation
    user_id: str | None = None
    scope: str | None = None
    refresh_expires_at: datetime | None = None


@dataclass(frozen=True)
class StoredSession:
    """A row of login_sessions, live or not."""

    id: str
    user_id: str
    scope: str
    created_at: datetime
    expires_at: datetime
    ended_at: datetime | None
    refresh_jti: str
    refresh_expires_at: datetime


def create_schema(engine: Engine) -> None:
    """Create login_sessions and its index when missing (never alters them), then check the database is writable."""
    create_tables(engine, metadata.sorted_tables)


def new_token_id() -> str:
    """A random, URL-safe id of 256 bits, for a session (sid) or a refresh token (jti)."""
    return secrets.token_urlsafe(32)


def end_sessions_of(connection: Connection, user_id: str, now: datetime) -> int:
    """In a transaction of the caller's: end every live session of a user; returns how many there were."""
    mine = login_sessions.c.user_id == user_id
    statement = update(login_sessions).where(mine, login_sessions.c.ended_at.is_(None)).values(ended_at=now)
    return connection.execute(statement).rowcount


def end_user_sessions(engine: Engine, user_id: str, now: datetime) -> int:
    """End every live session of a user (log out everywhere; a password changed, a user disabled); how many ended.

    Call it after the change that ends them has been committed: a login that started its session meanwhile then
    either sees the change when it reads the user again (sessions.log_in does) or has its session ended here.
    """
    with writing(engine) as connection:
        return end_sessions_of(connection, user_id, now)


def _delete_old_sessions(connection: Connection, user_id: str, now: datetime, keep_ended: int) -> None:
    """Delete the user's sessions over for more than ENDED_SESSIONS_KEPT, and the ended ones beyond the newest
    keep_ended: a user has at most keep_ended ended sessions and max_sessions live ones, however often they log in."""
    over_before = now - ENDED_SESSIONS_KEPT
    table = login_sessions
    mine = table.c.user_id == user_id
    connection.execute(table.delete().where(mine, table.c.ended_at < over_before))
    connection.execute(table.delete().where(mine, table.c.ended_at.is_(None), table.c.expires_at < over_before))
    newest_ended = select(table.c.id).where(mine, table.c.ended_at.is_not(None))
    newest_ended = newest_ended.order_by(table.c.ended_at.desc(), table.c.id.desc()).limit(keep_ended)
    kept = newest_ended.subquery()
    connection.execute(table.delete().where(mine, table.c.ended_at.is_not(None), table.c.id.not_in(select(kept.c.id))))


def _end_oldest_sessions(connection: Connection, user_id: str, now: datetime, keep: int) -> None:
    table = login_sessions
    live = (table.c.user_id == user_id, table.c.ended_at.is_(None), table.c.expires_at > now)
    newest_first = select(table.c.id).where(*live).order_by(table.c.created_at.desc(), table.c.id.desc())
    beyond = newest_first.offset(keep).scalar_subquery()
    connection.execute(update(table).where(table.c.id.in_(beyond)).values(ended_at=now))


def start_session(
    engine: Engine,
    user_id: str,
    scope: str,
    now: datetime,
    refresh_lifetime: timedelta = REFRESH_LIFETIME,
    session_lifetime: timedelta = SESSION_LIFETIME,
    *,
    max_sessions: int = MAX_SESSIONS_PER_USER,
) -> tuple[str, str]:
    """Start a session granted scope; returns (sid, refresh_jti) for its tokens to carry.

    Then the user's oldest live sessions beyond max_sessions end, and their sessions over for more than
    ENDED_SESSIONS_KEPT are deleted, and so are the ended ones beyond the newest max_sessions: however often a user
    logs in, at most twice max_sessions rows are kept. Whether the user may log in is the caller's to check.
    """
    sid, refresh_jti = new_token_id(), new_token_id()
    expires_at = now + session_lifetime
    row = {
        "id": sid,
        "user_id": user_id,
        "scope": scope,
        "created_at": now,
        "expires_at": expires_at,
        "ended_at": None,
        "refresh_jti": refresh_jti,
        "refresh_expires_at": min(now + refresh_lifetime, expires_at),
    }
    with writing(engine) as connection:
        connection.execute(insert(login_sessions), row)
        _end_oldest_sessions(connection, user_id, now, max_sessions)
        _delete_old_sessions(connection, user_id, now, max_sessions)
    return sid, refresh_jti


def rotate_refresh(
    engine: Engine,
    sid: str,
    presented_jti: str,
    new_jti: str,
    now: datetime,
    refresh_lifetime: timedelta = REFRESH_LIFETIME,
) -> RotationResult:
    """Spend the session's current refresh id for new_jti (ROTATED); a spent one presented again ends the session
    (REUSED). EXPIRED when the refresh or the session is over, ENDED when it was ended, UNKNOWN when there is none."""
    parameters = {"sid": sid, "presented_jti": presented_jti, "new_jti": new_jti, "now": now}
    after = select(login_sessions).where(login_sessions.c.id == sid)
    with writing(engine) as connection:
        rotated = connection.execute(ROTATE_REFRESH, {**parameters, "refresh_until": now + refresh_lifetime})
        row = connection.execute(after).first()
        if rotated.rowcount == 1:
            return RotationResult(Rotation.ROTATED, row.user_id, row.scope, row.refresh_expires_at)
        if row is None:
            return RotationResult(Rotation.UNKNOWN)
        if row.ended_at is not None:
            return RotationResult(Rotation.ENDED, row.user_id)
        if row.refresh_jti != presented_jti:
            end_live = update(login_sessions).where(login_sessions.c.id == sid, login_sessions.c.ended_at.is_(None))
            connection.execute(end_live.values(ended_at=now))
            return RotationResult(Rotation.REUSED, row.user_id)
        return RotationResult(Rotation.EXPIRED, row.user_id)


def end_session(engine: Engine, sid: str, now: datetime) -> bool:
    """End one session (logout, revocation); False when it was unknown or already over."""
    table = login_sessions
    statement = update(table).where(table.c.id == sid, table.c.ended_at.is_(None)).values(ended_at=now)
    with writing(engine) as connection:
        return connection.execute(statement).rowcount == 1


def get_session(engine: Engine, sid: str) -> StoredSession | None:
    """A session as stored, live or not, or None."""
    with reading(engine) as connection:
        row = connection.execute(select(login_sessions).where(login_sessions.c.id == sid)).first()
    return None if row is None else StoredSession(**row._mapping)


def live_session_user(engine: Engine, sid: str, now: datetime) -> str | None:
    """The user id of a session neither ended nor over, or None: one SELECT by primary key."""
    with translated(engine), engine.connect() as connection:
        return connection.execute(LIVE_SESSION_USER, {"sid": sid, "now": now}).scalar()
