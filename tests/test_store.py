"""lesson_code/store.py, session_store.py and the logins of sessions.py on SQLite (a file in tmp_path) and on a real
PostgreSQL server, in the same test functions."""

import dataclasses
import os
import re
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, event, func, inspect, select, text, update
from sqlalchemy import exc as sa_exc
from sqlalchemy.pool import QueuePool

from lesson_code import database, session_store, sessions, store
from lesson_code.session_store import Rotation, RotationResult, StoredSession, login_sessions
from lesson_code.settings import Settings
from lesson_code.store import UserPublic
from tests.utils import postgres
from tests.utils.databases import Database
from tests.utils.threads import THREAD_TIMEOUT, in_threads

REPO_ROOT = Path(__file__).resolve().parent.parent
NOW = datetime(2030, 1, 2, 3, 4, 5, 678901, tzinfo=timezone.utc)
ALICE = UserPublic(username="alice", full_name="Alice Liddell", email="alice@example.com", disabled=False, scopes="me")
BOB = UserPublic(username="bob", full_name="Bob the Builder", email="bob@example.com", disabled=True, scopes="me")
CAROL = UserPublic(
    username="carol", full_name="Carol Hatter", email="carol@example.com", disabled=False, scopes="me admin"
)


def fake_hash(password: str) -> str:
    return f"hashed:{password}"


@pytest.fixture
def engine(db: Database) -> Engine:
    """The database with its schema and the demo users."""
    store.create_schema(db.engine)
    store.seed_demo_users(db.engine, fake_hash, now=NOW)
    return db.engine


def session_row(engine: Engine, sid: str) -> StoredSession:
    session = session_store.get_session(engine, sid)
    assert session is not None
    return session


def sessions_of(engine: Engine, user_id: str) -> list[StoredSession]:
    """Every stored session of a user, live or not, oldest first."""
    query = select(login_sessions).where(login_sessions.c.user_id == user_id).order_by(login_sessions.c.created_at)
    with engine.connect() as connection:
        return [StoredSession(**row._mapping) for row in connection.execute(query)]


def live_sessions_of(engine: Engine, user_id: str) -> list[str]:
    """The ids of a user's sessions that have not been ended."""
    return [session.id for session in sessions_of(engine, user_id) if session.ended_at is None]


def account(engine: Engine, username: str) -> sessions.Account:
    """The user as a login that has just checked their password sees them."""
    user = store.get_user(engine, username)
    assert user is not None
    return store.account_of(user)


def log_in(engine: Engine, user: sessions.Account, scope: str = "me", users: sessions.UserDirectory | None = None):
    """sessions.log_in at NOW with the default lifetimes, through store.LessonUsers unless users is given."""
    return sessions.log_in(engine, users or store.LessonUsers(engine), user, scope, NOW, sessions.Lifetimes())


def sid_of(pair: sessions.TokenPair) -> str:
    return sessions.decode_refresh_token(pair.refresh_token, NOW)["sid"]


def test_create_schema_is_idempotent(db: Database) -> None:
    store.create_schema(db.engine)
    store.add_user(db.engine, "dave", "hashed:x", now=NOW)
    store.create_schema(db.engine)

    schema = inspect(db.engine)
    assert sorted(schema.get_table_names()) == ["login_sessions", "users"]
    assert [column["name"] for column in schema.get_columns("users")] == [
        "username",
        "full_name",
        "email",
        "disabled",
        "scopes",
        "hashed_password",
        "created_at",
    ]
    assert [column["name"] for column in schema.get_columns("login_sessions")] == [
        "id",
        "user_id",
        "scope",
        "created_at",
        "expires_at",
        "ended_at",
        "refresh_jti",
        "refresh_expires_at",
    ]
    indexes = schema.get_indexes("login_sessions")
    assert [(index["name"], index["column_names"]) for index in indexes] == [
        ("ix_login_sessions_user_id_ended_at", ["user_id", "ended_at"])
    ]
    assert schema.get_foreign_keys("login_sessions") == []  # a user id as text: it names no users table
    assert [user.username for user in store.list_users(db.engine)] == ["dave"]


OLD_SESSIONS_TABLE = """
CREATE TABLE sessions (
    id VARCHAR NOT NULL PRIMARY KEY,
    username VARCHAR NOT NULL REFERENCES users (username) ON DELETE CASCADE,
    scope VARCHAR NOT NULL,
    created_at TIMESTAMP NOT NULL,
    expires_at TIMESTAMP NOT NULL,
    ended_at TIMESTAMP,
    refresh_jti VARCHAR NOT NULL,
    refresh_expires_at TIMESTAMP NOT NULL
)
"""


def test_create_schema_on_a_database_made_before_the_session_store_was_split_out(db: Database) -> None:
    """A database made when sessions lived in store.py (a sessions table, its username referring to users): the
    users and the old table are kept as they are, login_sessions is created beside it, and logins work."""
    store.users.create(db.engine)  # the users table has not changed
    store.seed_demo_users(db.engine, fake_hash, now=NOW)
    with db.engine.begin() as connection:
        connection.execute(text(OLD_SESSIONS_TABLE))
        connection.execute(text("CREATE INDEX ix_sessions_username_ended_at ON sessions (username, ended_at)"))
        connection.execute(
            text("INSERT INTO sessions VALUES ('old-sid', 'alice', 'me', :now, :now, NULL, 'old-jti', :now)"),
            {"now": NOW.replace(tzinfo=None)},
        )

    store.create_schema(db.engine)
    store.create_schema(db.engine)

    schema = inspect(db.engine)
    assert sorted(schema.get_table_names()) == ["login_sessions", "sessions", "users"]
    assert [column["name"] for column in schema.get_columns("sessions")][:2] == ["id", "username"]  # left alone
    assert [column["name"] for column in schema.get_columns("login_sessions")][:2] == ["id", "user_id"]
    assert sorted(index["name"] for index in schema.get_indexes("sessions")) == ["ix_sessions_username_ended_at"]
    assert [index["name"] for index in schema.get_indexes("login_sessions")] == ["ix_login_sessions_user_id_ended_at"]
    with db.engine.connect() as connection:
        assert connection.execute(text("SELECT id, username FROM sessions")).all() == [("old-sid", "alice")]
    assert store.list_users(db.engine) == [ALICE, BOB, CAROL]
    assert store.active_session_user(db.engine, "old-sid", NOW) is None  # the old table's sessions are not read
    sid = sid_of(log_in(db.engine, account(db.engine, "alice")))
    assert store.active_session_user(db.engine, sid, NOW) == ALICE
    assert store.set_password(db.engine, "alice", "hashed:new", now=NOW) == 1
    assert store.active_session_user(db.engine, sid, NOW) is None


def test_seed_demo_users_once(db: Database) -> None:
    store.create_schema(db.engine)
    hashed = []

    def counting_hash(password: str) -> str:
        hashed.append(password)
        return fake_hash(password)

    assert store.seed_demo_users(db.engine, counting_hash, now=NOW) == ["alice", "bob", "carol"]
    assert store.seed_demo_users(db.engine, counting_hash, now=NOW) == []
    assert hashed == ["wonderland", "builder", "tea-party"]  # nothing hashed when nothing is missing
    assert store.list_users(db.engine) == [ALICE, BOB, CAROL]
    alice = store.get_user(db.engine, "alice")
    assert alice is not None
    assert (alice.hashed_password, alice.created_at) == ("hashed:wonderland", NOW)


def test_two_workers_start_at_once(db: Database) -> None:
    both_hashing = threading.Barrier(2)

    def hash_after_the_other_looked(password: str) -> str:
        if password == "wonderland":  # both workers have found alice missing; a worker that failed is reported
            both_hashing.wait(timeout=THREAD_TIMEOUT / 2)
        return fake_hash(password)

    def start_worker(_: int) -> list[str]:
        engine = store.make_engine(db.url)
        try:
            store.create_schema(engine)
            return store.seed_demo_users(engine, hash_after_the_other_looked, now=NOW)
        finally:
            engine.dispose()

    first, second = in_threads(2, start_worker)
    assert isinstance(first, list) and isinstance(second, list), (first, second)
    assert sorted(first + second) == ["alice", "bob", "carol"]
    assert store.list_users(db.engine) == [ALICE, BOB, CAROL]


def test_a_worker_opening_a_new_sqlite_file_while_another_writes_to_it_waits(tmp_path) -> None:
    path = tmp_path / "lesson.db"
    writer = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    writer.execute("BEGIN IMMEDIATE")  # what the other worker's create_schema does, before WAL mode is on
    writer.execute("CREATE TABLE early (x)")
    engine = store.make_engine(f"sqlite:///{path}")
    done = threading.Timer(0.2, writer.execute, args=("COMMIT",))
    done.start()
    try:
        store.create_schema(engine)  # SQLite refused the switch to WAL at once: "database is locked"
        with engine.connect() as connection:
            assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    finally:
        done.join()
        writer.close()
        engine.dispose()


def test_add_user(engine: Engine) -> None:
    added = store.add_user(
        engine, "dave", "hashed:pw", full_name="Dave", email="dave@example.com", scopes="me me admin", now=NOW
    )
    assert (added.username, added.scopes, added.created_at) == ("dave", "me admin", NOW)
    assert store.get_user(engine, "dave") == store.UserRecord(
        username="dave",
        full_name="Dave",
        email="dave@example.com",
        disabled=False,
        scopes="me admin",
        hashed_password="hashed:pw",
        created_at=NOW,
    )
    assert store.get_user(engine, "nobody") is None
    with pytest.raises(store.UserExists, match=r"^user 'dave' already exists$"):
        store.add_user(engine, "dave", "hashed:other")
    with pytest.raises(store.UserExists, match=r"^user 'alice' already exists$"):
        store.add_user(engine, "alice", "hashed:other")
    with pytest.raises(store.StoreError, match=r"^invalid scope 'b\"ad': use printable ASCII"):
        store.add_user(engine, "erin", "hashed:pw", scopes='me b"ad')
    with pytest.raises(store.StoreError, match=r"^a user needs at least one scope$"):
        store.add_user(engine, "erin", "hashed:pw", scopes=" ")
    with pytest.raises(store.StoreError, match=r"^unknown scope 'root': the API knows me, admin$"):
        store.add_user(engine, "erin", "hashed:pw", scopes="me root")
    assert [user.username for user in store.list_users(engine)] == ["alice", "bob", "carol", "dave"]
    assert store.get_user(engine, "alice").hashed_password == "hashed:wonderland"


def test_disable_and_enable(engine: Engine) -> None:
    first, _ = session_store.start_session(engine, "alice", "me", NOW)
    second, _ = session_store.start_session(engine, "alice", "me", NOW)
    carols, _ = session_store.start_session(engine, "carol", "me", NOW)

    assert store.set_disabled(engine, "alice", True, now=NOW) == 2
    assert store.get_user(engine, "alice").disabled is True
    assert store.active_session_user(engine, first, NOW) is None
    assert session_row(engine, second).ended_at == NOW
    assert store.active_session_user(engine, carols, NOW) == CAROL

    assert store.set_disabled(engine, "alice", False, now=NOW) == 0
    assert store.get_user(engine, "alice").disabled is False
    assert store.active_session_user(engine, first, NOW) is None  # enabling does not bring sessions back
    fresh, _ = session_store.start_session(engine, "alice", "me", NOW)
    assert store.active_session_user(engine, fresh, NOW) == ALICE
    with pytest.raises(store.UnknownUser, match=r"^no user named 'zed'$"):
        store.set_disabled(engine, "zed", True)
    with pytest.raises(store.UnknownUser, match=r"^no user named 'alice\\x00'$"):  # PostgreSQL is not asked
        store.set_disabled(engine, "alice\x00", True)


def test_set_password_ends_sessions(engine: Engine) -> None:
    sid, _ = session_store.start_session(engine, "alice", "me", NOW)
    assert store.set_password(engine, "alice", "hashed:new", now=NOW) == 1
    assert store.get_user(engine, "alice").hashed_password == "hashed:new"
    assert store.active_session_user(engine, sid, NOW) is None
    assert store.set_password(engine, "alice", "hashed:newer", now=NOW) == 0
    with pytest.raises(store.UnknownUser, match=r"^no user named 'zed'$"):
        store.set_password(engine, "zed", "hashed:x")


def test_set_scopes(engine: Engine) -> None:
    sid, _ = session_store.start_session(engine, "alice", "me", NOW)
    assert store.set_scopes(engine, "alice", ["me", "admin"], now=NOW) == 0  # adding a scope ends nothing
    assert store.get_user(engine, "alice").scopes == "me admin"
    assert store.active_session_user(engine, sid, NOW) == ALICE.model_copy(update={"scopes": "me admin"})

    assert store.set_scopes(engine, "alice", "admin me admin", now=NOW) == 0  # the same set, reordered
    assert store.get_user(engine, "alice").scopes == "admin me"
    assert store.set_scopes(engine, "alice", "me", now=NOW) == 1  # taking one away ends the sessions
    assert store.active_session_user(engine, sid, NOW) is None
    assert session_row(engine, sid).ended_at == NOW
    with pytest.raises(store.UnknownUser, match=r"^no user named 'zed'$"):
        store.set_scopes(engine, "zed", "me")
    with pytest.raises(store.StoreError, match=r"^invalid scope 'a\\\\b': use printable ASCII"):
        store.set_scopes(engine, "alice", "a\\b")
    with pytest.raises(store.StoreError, match=r"^unknown scope 'Admin': the API knows me, admin$"):
        store.set_scopes(engine, "alice", "me Admin")
    assert store.get_user(engine, "alice").scopes == "me"
    assert store.normalise_scopes("read me", known={"read": "", "me": ""}) == "read me"


NO_SCOPE_HELD = f"^{re.escape(sessions.NO_SCOPE_HELD)}$"
CHANGED = r"^user '{}' changed while their login was checked$"
SESSION_ENDED = f"^{re.escape(sessions.SESSION_ENDED)}$"


def test_a_login_is_granted_only_scopes_the_user_holds(engine: Engine) -> None:
    with pytest.raises(sessions.InvalidScope, match=NO_SCOPE_HELD):
        log_in(engine, account(engine, "alice"), "me admin")
    assert sessions_of(engine, "alice") == []  # refused before any session was started
    read_before_a_scope_was_taken = dataclasses.replace(account(engine, "alice"), scopes="me admin")
    with pytest.raises(sessions.InvalidScope, match=NO_SCOPE_HELD):
        log_in(engine, read_before_a_scope_was_taken, "me admin")
    [refused] = sessions_of(engine, "alice")
    assert (refused.scope, refused.ended_at) == (
        "me admin",
        NOW,
    )  # started, then ended at once: the user was read again
    store.set_scopes(engine, "alice", "me admin")
    pair = log_in(engine, account(engine, "alice"), "me admin")
    assert pair.scope == session_row(engine, sid_of(pair)).scope == "me admin"
    assert store.active_session_user(engine, sid_of(pair), NOW) == ALICE.model_copy(update={"scopes": "me admin"})


def _attempt(function: Callable, *args: object) -> object:
    try:
        return function(*args)
    except Exception as error:  # returned to the test, which checks which one
        return error


def test_start_session(engine: Engine) -> None:
    sid, jti = session_store.start_session(engine, "carol", "me admin", NOW)
    assert len(sid) == len(jti) == 43 and sid != jti
    assert set(sid + jti) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
    assert session_store.get_session(engine, sid) == StoredSession(
        id=sid,
        user_id="carol",
        scope="me admin",
        created_at=NOW,
        expires_at=NOW + timedelta(days=30),
        ended_at=None,
        refresh_jti=jti,
        refresh_expires_at=NOW + timedelta(days=7),
    )
    assert session_store.get_session(engine, "no-such-session") is None
    assert session_store.live_session_user(engine, sid, NOW) == "carol"
    # An unknown user: see test_sessions_of_an_unknown_or_removed_user_are_refused (no foreign key refuses it here).


def test_times_are_stored_as_utc_and_read_as_aware_utc(engine: Engine) -> None:
    paris = timezone(timedelta(hours=1))
    sid, _ = session_store.start_session(engine, "alice", "me", NOW.astimezone(paris))
    session = session_row(engine, sid)
    assert (session.created_at, session.created_at.tzinfo) == (NOW, timezone.utc)
    assert session.expires_at.tzinfo is timezone.utc
    with engine.connect() as connection:
        stored = connection.execute(text("SELECT created_at FROM login_sessions")).scalar_one()
    if engine.dialect.name == "sqlite":
        assert stored == "2030-01-02 03:04:05.678901"  # UTC, not 04:04 Paris time
    else:
        assert stored == NOW
    with pytest.raises(sa_exc.StatementError, match="naive datetime"):
        session_store.start_session(engine, "alice", "me", NOW.replace(tzinfo=None))


def test_rotation_then_reuse_ends_the_session(engine: Engine) -> None:
    sid, first = session_store.start_session(engine, "alice", "me", NOW)
    later = NOW + timedelta(hours=1)

    assert session_store.rotate_refresh(engine, sid, first, "second", later) == RotationResult(
        Rotation.ROTATED, "alice", "me", later + timedelta(days=7)
    )
    assert session_row(engine, sid).refresh_jti == "second"
    assert store.active_session_user(engine, sid, later) == ALICE

    assert session_store.rotate_refresh(engine, sid, first, "thief", later) == RotationResult(Rotation.REUSED, "alice")
    assert session_row(engine, sid).ended_at == later
    assert store.active_session_user(engine, sid, later) is None
    assert session_store.rotate_refresh(engine, sid, "second", "victim", later) == RotationResult(
        Rotation.ENDED, "alice"
    )
    assert session_store.rotate_refresh(engine, sid, "thief", "again", later) == RotationResult(Rotation.ENDED, "alice")
    assert session_store.rotate_refresh(engine, "no-such-session", first, "x", later) == RotationResult(
        Rotation.UNKNOWN
    )
    assert session_row(engine, sid).refresh_jti == "second"


def test_eight_rotations_at_once_have_one_winner(engine: Engine) -> None:
    sid, jti = session_store.start_session(engine, "alice", "me", NOW)

    results = in_threads(8, lambda index: session_store.rotate_refresh(engine, sid, jti, f"new-{index}", NOW))

    assert all(isinstance(result, RotationResult) for result in results), results
    outcomes = [result.outcome for result in results]
    assert outcomes.count(Rotation.ROTATED) == 1
    assert set(outcomes) - {Rotation.ROTATED} <= {Rotation.REUSED, Rotation.ENDED}
    assert Rotation.REUSED in outcomes  # the first loser finds a spent token: reuse, and the session ends
    winner = outcomes.index(Rotation.ROTATED)
    assert session_row(engine, sid).refresh_jti == f"new-{winner}"
    assert session_row(engine, sid).ended_at == NOW
    assert session_store.rotate_refresh(engine, sid, f"new-{winner}", "next", NOW).outcome is Rotation.ENDED


def test_refresh_token_expiry(engine: Engine) -> None:
    hour = timedelta(hours=1)
    sid, first = session_store.start_session(engine, "alice", "me", NOW, refresh_lifetime=hour)
    assert session_row(engine, sid).refresh_expires_at == NOW + hour

    almost = NOW + hour - timedelta(microseconds=1)
    assert session_store.rotate_refresh(engine, sid, first, "second", almost, refresh_lifetime=hour) == RotationResult(
        Rotation.ROTATED, "alice", "me", almost + hour
    )
    expired = almost + hour
    assert session_store.rotate_refresh(
        engine, sid, "second", "third", expired, refresh_lifetime=hour
    ) == RotationResult(Rotation.EXPIRED, "alice")
    assert session_row(engine, sid).ended_at is None
    assert store.active_session_user(engine, sid, expired) == ALICE  # access tokens live on until the session ends


def test_session_ends_at_its_absolute_end(engine: Engine) -> None:
    sid, jti = session_store.start_session(engine, "alice", "me", NOW, session_lifetime=timedelta(hours=2))
    end = NOW + timedelta(hours=2)
    assert session_row(engine, sid).refresh_expires_at == end  # never later than the session's end

    result = session_store.rotate_refresh(engine, sid, jti, "second", NOW + timedelta(hours=1))
    assert result == RotationResult(Rotation.ROTATED, "alice", "me", end)  # refreshing does not extend it
    assert store.active_session_user(engine, sid, end - timedelta(microseconds=1)) == ALICE
    assert store.active_session_user(engine, sid, end) is None
    assert session_store.rotate_refresh(engine, sid, "second", "third", end) == RotationResult(
        Rotation.EXPIRED, "alice"
    )


def test_end_session(engine: Engine) -> None:
    sid, jti = session_store.start_session(engine, "alice", "me", NOW)
    other, _ = session_store.start_session(engine, "alice", "me", NOW)
    later = NOW + timedelta(minutes=5)

    assert session_store.end_session(engine, sid, later) is True
    assert session_store.end_session(engine, sid, later + timedelta(minutes=1)) is False
    assert session_store.end_session(engine, "no-such-session", later) is False
    assert session_row(engine, sid).ended_at == later
    assert store.active_session_user(engine, sid, later) is None
    assert session_store.rotate_refresh(engine, sid, jti, "next", later) == RotationResult(Rotation.ENDED, "alice")
    assert store.active_session_user(engine, other, later) == ALICE


def test_end_user_sessions(engine: Engine) -> None:
    alices = [session_store.start_session(engine, "alice", "me", NOW)[0] for _ in range(2)]
    carols, _ = session_store.start_session(engine, "carol", "me", NOW)
    session_store.end_session(engine, alices[0], NOW)

    assert store.end_user_sessions(engine, "alice", now=NOW + timedelta(seconds=1)) == 1
    assert [session_row(engine, sid).ended_at for sid in alices] == [NOW, NOW + timedelta(seconds=1)]
    assert store.end_user_sessions(engine, "alice") == 0
    assert store.end_user_sessions(engine, "zed") == 0
    assert store.active_session_user(engine, carols, NOW) == CAROL


def test_active_session_user(engine: Engine) -> None:
    live, _ = session_store.start_session(engine, "carol", "me", NOW)
    short, _ = session_store.start_session(engine, "carol", "me", NOW, session_lifetime=timedelta(minutes=1))
    ended, _ = session_store.start_session(engine, "carol", "me", NOW)
    session_store.end_session(engine, ended, NOW)

    assert store.active_session_user(engine, live, NOW) == CAROL
    assert store.active_session_user(engine, short, NOW + timedelta(seconds=59)) == CAROL
    assert store.active_session_user(engine, short, NOW + timedelta(minutes=1)) is None
    assert store.active_session_user(engine, ended, NOW) is None
    assert store.active_session_user(engine, "no-such-session", NOW) is None
    with engine.begin() as connection:  # disabled behind the store's back: the join still refuses the user
        connection.execute(update(store.users).where(store.users.c.username == "carol").values(disabled=True))
    assert store.active_session_user(engine, live, NOW) is None


def test_requests_reuse_pooled_connections(engine: Engine) -> None:
    sid, jti = session_store.start_session(engine, "alice", "me", NOW)
    opened = []
    event.listen(engine, "connect", lambda *_: opened.append(1))

    results = in_threads(8, lambda _: [store.active_session_user(engine, sid, NOW) for _ in range(20)])
    assert results == [[ALICE] * 20] * 8
    connections_for_eight_threads = len(opened)
    for _ in range(100):
        assert store.active_session_user(engine, sid, NOW) == ALICE
        store.get_user(engine, "alice")
    assert session_store.rotate_refresh(engine, sid, jti, "next", NOW).outcome is Rotation.ROTATED
    assert len(opened) == connections_for_eight_threads <= 8
    pool_size = store.POOL_SIZE if engine.dialect.name == "sqlite" else store.POSTGRESQL_POOL_SIZE
    assert isinstance(engine.pool, QueuePool) and engine.pool.size() == pool_size


def test_database_going_away_during_requests(engine: Engine, db: Database) -> None:
    sid, jti = session_store.start_session(engine, "alice", "me", NOW)
    assert store.active_session_user(engine, sid, NOW) == ALICE

    db.make_unavailable()

    calls = {
        "active_session_user": lambda: store.active_session_user(engine, sid, NOW),
        "rotate_refresh": lambda: session_store.rotate_refresh(engine, sid, jti, "next", NOW),
        "start_session": lambda: session_store.start_session(engine, "alice", "me", NOW),
        "get_user": lambda: store.get_user(engine, "alice"),
        "end_session": lambda: session_store.end_session(engine, sid, NOW),
    }
    for name, call in calls.items():
        with pytest.raises(store.DatabaseUnavailable) as caught:
            call()
        assert db.unavailable_message(str(caught.value)), (name, str(caught.value))
        assert "\n" not in str(caught.value)
        assert isinstance(caught.value.__cause__, sa_exc.DBAPIError)


def test_a_lock_held_too_long_is_unavailable_not_a_hang(engine: Engine, db: Database) -> None:
    sid, jti = session_store.start_session(engine, "alice", "me", NOW)
    impatient = store.make_engine(db.url, lock_timeout=0.2)
    if db.kind == "sqlite":
        holder = sqlite3.connect(impatient.url.database, isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")
        expected = f"SQLite database {impatient.url.database} is locked: another process has held it for too long"
    else:
        holder = create_engine(db.url).raw_connection()
        holder.cursor().execute("SELECT 1 FROM login_sessions WHERE id = %s FOR UPDATE", (sid,))
        folder = impatient.url.query["host"]
        expected = (
            f"database {impatient.url.database!r} on {folder} is unavailable: canceling statement due to lock timeout"
        )
    try:
        assert store.active_session_user(impatient, sid, NOW) == ALICE  # readers are not blocked
        with pytest.raises(store.DatabaseUnavailable) as caught:
            session_store.rotate_refresh(impatient, sid, jti, "next", NOW)
        assert str(caught.value) == expected
    finally:
        holder.rollback()
        holder.close()
    assert session_store.rotate_refresh(impatient, sid, jti, "next", NOW).outcome is Rotation.ROTATED
    impatient.dispose()


def _read_only_start_up(path: Path) -> str:
    """create_schema on a read-only file, in a process that file permissions apply to (root drops its override)."""
    path.chmod(0o444)
    path.parent.chmod(0o555)
    drop = ["setpriv", "--bounding-set=-dac_override,-dac_read_search,-fowner", "--"] if os.geteuid() == 0 else []
    program = (
        "import sys\nfrom lesson_code import store\n"
        "try:\n    store.create_schema(store.make_engine(sys.argv[1]))\n"
        "except store.DatabaseUnavailable as error:\n    print(error)\n"
    )
    try:
        result = subprocess.run(
            [*drop, sys.executable, "-c", program, f"sqlite:///{path}"],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=REPO_ROOT,
            check=False,
        )
    finally:
        path.parent.chmod(0o755)
    assert (result.returncode, result.stderr) == (0, "")
    return result.stdout.strip()


START_UP_CASES = [
    "sqlite: no such folder",
    "sqlite: garbage",
    "sqlite: read-only",
    "postgresql: no server",
    "postgresql: no such database",
]


@pytest.mark.parametrize("case", START_UP_CASES)
def test_start_up_failure_is_one_clear_line(case: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    folder = tmp_path / "db"
    folder.mkdir()
    path = folder / "lesson.db"
    if case == "sqlite: read-only":
        store.create_schema(store.make_engine(f"sqlite:///{path}"))
        message = _read_only_start_up(path)
        assert message == f"SQLite database {path} is read-only: the file and its folder must be writable"
        return
    if case == "sqlite: no such folder":
        missing = tmp_path / "missing"
        url = f"sqlite:///{missing / 'lesson.db'}"
        expected = f"SQLite database {missing / 'lesson.db'}: the folder {missing} does not exist"
    elif case == "sqlite: garbage":
        path.write_bytes(bytes(range(256)) * 64)
        url = f"sqlite:///{path}"
        expected = (
            f"SQLite database {path} is corrupt or not an SQLite file (file is not a database): "
            "restore it or move it away"
        )
    elif case == "postgresql: no server":
        url = f"postgresql://postgres@/lessons?host={folder}"
        expected = (
            f"database 'lessons' on {folder} is unavailable: connection is bad: connection to server on socket "
            f'"{folder}/.s.PGSQL.5432" failed: No such file or directory'
        )
    else:
        server: postgres.PostgresServer = request.getfixturevalue("postgres_server")
        url = server.url("no_such_database")
        expected = (
            f"database 'no_such_database' on {server.folder} is unavailable: connection failed: connection to server "
            f'on socket "{server.folder}/.s.PGSQL.5432" failed: FATAL: database "no_such_database" does not exist'
        )
    engine = store.make_engine(url)
    with pytest.raises(store.DatabaseUnavailable) as caught:
        store.create_schema(engine)
    engine.dispose()
    assert str(caught.value) == expected


def test_the_database_url_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DATABASE_URL", raising=False)
    assert Settings().database_url == f"sqlite:///{REPO_ROOT / 'lesson.db'}"
    monkeypatch.setenv("DATABASE_URL", "postgresql://app@db.internal/lessons")
    assert Settings().database_url == "postgresql://app@db.internal/lessons"
    engine = store.make_engine(Settings().database_url)
    assert engine.url.render_as_string() == "postgresql+psycopg://app@db.internal/lessons"


def test_in_memory_sqlite_is_one_database_for_every_thread() -> None:
    engine = store.make_engine("sqlite://")
    store.create_schema(engine)
    store.seed_demo_users(engine, fake_hash, now=NOW)
    sid, _ = session_store.start_session(engine, "alice", "me", NOW)

    def read_and_write(index: int) -> list[object]:
        seen = [store.active_session_user(engine, sid, NOW) for _ in range(50)]
        session_store.start_session(engine, "alice", "me", NOW + timedelta(seconds=index))
        return seen

    assert in_threads(8, read_and_write) == [[ALICE] * 50] * 8
    assert store.end_user_sessions(engine, "alice", NOW) == 9
    engine.dispose()


def test_postgres_tests_skip_locally_and_fail_in_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match=r"^no server here$"):
        postgres.skip_or_fail("no server here")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match=r"^no server here: CI must run every test$"):
        postgres.skip_or_fail("no server here")


# Review findings: login races, demo users, session clean-up, URLs, file mode, pool


def test_a_login_whose_password_changed_or_user_was_disabled_meanwhile_leaves_no_live_session(engine: Engine) -> None:
    checked = account(engine, "alice")
    store.set_password(engine, "alice", "hashed:new", now=NOW)
    with pytest.raises(sessions.CredentialsChanged, match=CHANGED.format("alice")):
        log_in(engine, checked)
    assert [session.ended_at for session in sessions_of(engine, "alice")] == [NOW]  # started, and ended at once
    assert store.end_user_sessions(engine, "alice", NOW) == 0
    sid = sid_of(log_in(engine, account(engine, "alice")))
    assert store.active_session_user(engine, sid, NOW) == ALICE

    checked = account(engine, "carol")
    store.set_disabled(engine, "carol", True, now=NOW)
    for stale in (checked, account(engine, "carol"), dataclasses.replace(checked, password_hash=None)):
        with pytest.raises(sessions.CredentialsChanged, match=CHANGED.format("carol")):
            log_in(engine, stale)
    assert [session.ended_at for session in sessions_of(engine, "carol")] == [NOW] * 3
    assert store.end_user_sessions(engine, "carol", NOW) == 0


def test_sessions_of_an_unknown_or_removed_user_are_refused(engine: Engine) -> None:
    """No foreign key ties login_sessions to users: the session store takes any user id, and the users are asked."""
    sid, _ = session_store.start_session(engine, "zed", "me", NOW)  # the session store does not know the users
    assert session_row(engine, sid).user_id == "zed"
    assert store.active_session_user(engine, sid, NOW) is None  # the join finds no user
    nobody = sessions.Account(id="nobody", password_hash="hashed:x", scopes="me")
    with pytest.raises(sessions.CredentialsChanged, match=CHANGED.format("nobody")):
        log_in(engine, nobody)
    assert [session.ended_at for session in sessions_of(engine, "nobody")] == [NOW]

    pair = log_in(engine, account(engine, "carol"))
    with engine.begin() as connection:  # removed behind the store's back: its sessions stay in login_sessions
        connection.execute(store.users.delete().where(store.users.c.username == "carol"))
    assert live_sessions_of(engine, "carol") == [sid_of(pair)]
    assert store.active_session_user(engine, sid_of(pair), NOW) is None
    later = NOW + timedelta(minutes=1)
    with pytest.raises(sessions.InvalidGrant, match=SESSION_ENDED):
        sessions.refresh(engine, store.LessonUsers(engine), pair.refresh_token, later, sessions.Lifetimes())
    assert session_row(engine, sid_of(pair)).ended_at == later
    assert sessions.session_account(engine, store.LessonUsers(engine), sid_of(pair), later) is None


@dataclass(frozen=True)
class Change:
    """A change to a user that ends their sessions: the store's function commits it, then ends the sessions."""

    user: str
    scope: str  # what the racing login asks for
    columns: dict[str, object]  # what the function's first transaction writes to users
    apply: Callable[[Engine], int]  # the store's function; how many sessions it ended
    refused: type[Exception]  # what a login that sees the change raises
    message: str


CHANGES = {
    "password": Change(
        "alice",
        "me",
        {"hashed_password": "hashed:new"},
        lambda engine: store.set_password(engine, "alice", "hashed:new", now=NOW),
        sessions.CredentialsChanged,
        CHANGED.format("alice"),
    ),
    "disable": Change(
        "alice",
        "me",
        {"disabled": True},
        lambda engine: store.set_disabled(engine, "alice", True, now=NOW),
        sessions.CredentialsChanged,
        CHANGED.format("alice"),
    ),
    "scope": Change(
        "carol",
        "me admin",
        {"scopes": "me"},
        lambda engine: store.set_scopes(engine, "carol", "me", now=NOW),
        sessions.InvalidScope,
        NO_SCOPE_HELD,
    ),
}


SEEDED = {
    "alice": {"hashed_password": "hashed:wonderland", "disabled": False, "scopes": "me"},
    "carol": {"hashed_password": "hashed:tea-party", "disabled": False, "scopes": "me admin"},
}
RACE_ROUNDS = 10


def _first_transaction(engine: Engine, change: Change) -> None:
    """What the change's function commits before it ends the user's sessions."""
    with engine.begin() as connection:
        connection.execute(update(store.users).where(store.users.c.username == change.user).values(**change.columns))


class ChangingUsers(store.LessonUsers):
    """store.LessonUsers that runs change() once, just before the login reads the user again (its session started)."""

    def __init__(self, engine: Engine, change: Callable[[], object]) -> None:
        super().__init__(engine)
        self.change: Callable[[], object] | None = change

    def by_id(self, user_id: str) -> sessions.Account | None:
        change, self.change = self.change, None
        if change is not None:
            change()
        return super().by_id(user_id)


PLACEMENTS = ["before the login", "committed during the login", "all during the login", "after the login"]


@pytest.mark.parametrize("placement", PLACEMENTS)
@pytest.mark.parametrize("name", list(CHANGES))
def test_a_login_racing_a_change_of_its_user_leaves_no_live_session(engine: Engine, name: str, placement: str) -> None:
    """Wherever the change lands in a login whose password was checked (account read), no session stays live: the
    login reads the user again after starting its session, and the change ends the sessions after committing."""
    change = CHANGES[name]
    checked = account(engine, change.user)
    ended_by_the_change = []

    def whole_change() -> None:
        ended_by_the_change.append(change.apply(engine))

    users = store.LessonUsers(engine)
    if placement == "before the login":
        whole_change()
    elif placement == "committed during the login":  # the function's second transaction has not run yet
        users = ChangingUsers(engine, lambda: _first_transaction(engine, change))
    elif placement == "all during the login":
        users = ChangingUsers(engine, whole_change)
    outcome = _attempt(log_in, engine, checked, change.scope, users)
    if placement == "committed during the login":
        ended_by_the_change.append(store.end_user_sessions(engine, change.user, NOW))  # the second transaction
    elif placement == "after the login":
        assert isinstance(outcome, sessions.TokenPair), outcome
        whole_change()

    if placement != "after the login":
        assert isinstance(outcome, change.refused), outcome
        assert re.search(change.message, str(outcome)), str(outcome)
    # The login ended its own session unless the change found it live and ended it.
    expected = 1 if placement in ("all during the login", "after the login") else 0
    assert ended_by_the_change == [expected]
    assert [session.ended_at for session in sessions_of(engine, change.user)] == [NOW]
    assert live_sessions_of(engine, change.user) == []


def _login_against_change(engine: Engine, change: Change) -> tuple[object, object]:
    checked = account(engine, change.user)
    work = [lambda: log_in(engine, checked, change.scope), lambda: change.apply(engine)]
    login, ended = in_threads(2, lambda index: work[index]())
    with engine.begin() as connection:  # undo the change for the next round: the user as seeded
        undone = {column: SEEDED[change.user][column] for column in change.columns}
        connection.execute(update(store.users).where(store.users.c.username == change.user).values(**undone))
    return login, ended


@pytest.mark.parametrize("name", list(CHANGES))
def test_a_login_and_a_change_in_threads_leave_no_live_session_whichever_runs_first(engine: Engine, name: str) -> None:
    change = CHANGES[name]
    for round_ in range(RACE_ROUNDS):
        login, ended = _login_against_change(engine, change)
        assert isinstance(login, (sessions.TokenPair, change.refused)), (round_, login)
        assert ended in (0, 1), (round_, ended)
        assert live_sessions_of(engine, change.user) == [], (round_, login, ended)


@pytest.mark.parametrize("db", ["postgresql"], indirect=True)  # SQLite: the login would wait for the holder's commit
@pytest.mark.parametrize("name", list(CHANGES))
def test_a_login_inside_a_changes_open_transaction_is_ended_by_its_second_step(engine, db, name) -> None:
    """On PostgreSQL the login waits for no lock (no foreign key, plain reads): during the change's first transaction
    it sees the user as committed and succeeds; the change's second transaction then ends its session."""
    change = CHANGES[name]
    checked = account(engine, change.user)
    with engine.connect() as holder:
        transaction = holder.begin()  # the first transaction of set_password, set_disabled or set_scopes, held open
        if name == "scope":
            holder.execute(select(store.users.c.scopes).where(store.users.c.username == "carol").with_for_update())
        holder.execute(update(store.users).where(store.users.c.username == change.user).values(**change.columns))
        pair = log_in(engine, checked, change.scope)
        transaction.commit()
    assert live_sessions_of(engine, change.user) == [sid_of(pair)]
    assert store.end_user_sessions(engine, change.user, NOW) == 1  # what the function does next
    assert live_sessions_of(engine, change.user) == []


def test_a_disabled_users_session_is_not_refreshed(engine: Engine) -> None:
    users, lifetimes = store.LessonUsers(engine), sessions.Lifetimes()
    pair = log_in(engine, account(engine, "alice"))
    sid, jti = sid_of(pair), session_row(engine, sid_of(pair)).refresh_jti
    other, other_jti = session_store.start_session(engine, "alice", "me", NOW)
    with engine.begin() as connection:  # disabled behind the store's back: its sessions were not ended
        connection.execute(update(store.users).where(store.users.c.username == "alice").values(disabled=True))
    later = NOW + timedelta(minutes=1)
    # The session store does not know the users: it rotates; sessions.refresh asks them and ends the session.
    rotated = session_store.rotate_refresh(engine, other, other_jti, "next", later)
    assert rotated == RotationResult(Rotation.ROTATED, "alice", "me", later + timedelta(days=7))
    with pytest.raises(sessions.InvalidGrant, match=SESSION_ENDED):
        sessions.refresh(engine, users, pair.refresh_token, later, lifetimes)
    ended = session_row(engine, sid)
    assert ended.ended_at == later
    assert ended.refresh_jti != jti  # spent by the rotation that came before the user was read: no token carries it
    with engine.begin() as connection:
        connection.execute(update(store.users).where(store.users.c.username == "alice").values(disabled=False))
    with pytest.raises(sessions.InvalidGrant, match=SESSION_ENDED):
        sessions.refresh(engine, users, pair.refresh_token, later, lifetimes)
    assert store.active_session_user(engine, sid, later) is None


def test_a_session_whose_user_lost_a_scope_of_its_grant_is_not_refreshed(engine: Engine) -> None:
    pair = log_in(engine, account(engine, "carol"), "me admin")
    with engine.begin() as connection:  # taken away behind the store's back: its sessions were not ended
        connection.execute(update(store.users).where(store.users.c.username == "carol").values(scopes="me"))
    later = NOW + timedelta(minutes=1)
    with pytest.raises(sessions.InvalidGrant, match=SESSION_ENDED):
        sessions.refresh(engine, store.LessonUsers(engine), pair.refresh_token, later, sessions.Lifetimes(), "me")
    assert session_row(engine, sid_of(pair)).ended_at == later


def test_a_database_that_has_a_user_is_never_seeded(db: Database) -> None:
    store.create_schema(db.engine)
    store.add_user(db.engine, "dave", "hashed:x", now=NOW)
    assert store.seed_demo_users(db.engine, fake_hash, now=NOW) == []
    assert [user.username for user in store.list_users(db.engine)] == ["dave"]


def test_deleted_demo_users_stay_deleted(engine: Engine) -> None:
    with engine.begin() as connection:
        connection.execute(store.users.delete().where(store.users.c.username == "carol"))
    assert store.seed_demo_users(engine, fake_hash, now=NOW) == []
    assert store.list_users(engine) == [ALICE, BOB]


def _ended(engine: Engine, username: str, start: datetime, end: datetime) -> str:
    sid, _ = session_store.start_session(engine, username, "me", start)
    session_store.end_session(engine, sid, end)
    return sid


def test_a_login_deletes_the_users_sessions_over_for_more_than_a_day(engine: Engine) -> None:
    day, second = timedelta(days=1), timedelta(seconds=1)
    long_ago = NOW - 3 * day
    ended_long_ago = _ended(engine, "alice", long_ago, NOW - day - second)
    ended_recently = _ended(engine, "alice", long_ago, NOW - day + second)
    expired_long_ago, _ = session_store.start_session(
        engine, "alice", "me", long_ago, session_lifetime=2 * day - second
    )
    expired_recently, _ = session_store.start_session(
        engine, "alice", "me", long_ago, session_lifetime=2 * day + second
    )
    carols = _ended(engine, "carol", long_ago, NOW - 2 * day)

    new, _ = session_store.start_session(engine, "alice", "me", NOW)

    assert session_store.get_session(engine, ended_long_ago) is None
    assert session_store.get_session(engine, expired_long_ago) is None
    kept = [ended_recently, expired_recently, carols, new]
    assert [session_row(engine, sid).id for sid in kept] == kept  # reuse detection still sees the recent ones
    with engine.connect() as connection:
        assert connection.scalar(select(func.count()).select_from(login_sessions)) == 4


def test_beyond_the_cap_a_login_ends_the_users_oldest_live_sessions(engine: Engine) -> None:
    assert session_store.MAX_SESSIONS_PER_USER == 20
    over = _ended(engine, "alice", NOW - timedelta(hours=2), NOW - timedelta(hours=1))  # not counted
    carols, _ = session_store.start_session(engine, "carol", "me", NOW)
    alices = [session_store.start_session(engine, "alice", "me", NOW + timedelta(seconds=n))[0] for n in range(21)]
    last = NOW + timedelta(seconds=20)
    assert session_row(engine, alices[0]).ended_at == last
    assert [store.active_session_user(engine, sid, last) for sid in alices[1:]] == [ALICE] * 20
    assert session_row(engine, over).ended_at == NOW - timedelta(hours=1)
    assert store.active_session_user(engine, carols, last) == CAROL

    newest, _ = session_store.start_session(engine, "alice", "me", last + timedelta(seconds=1), max_sessions=2)
    kept = {sid: session_store.get_session(engine, sid) for sid in alices + [newest]}
    assert [sid for sid, session in kept.items() if session and session.ended_at is None] == [alices[-1], newest]


def test_a_login_flood_keeps_at_most_twice_the_cap_of_rows_a_user(engine: Engine) -> None:
    """Every login beyond the cap ends the oldest live session; the ended ones beyond the newest max_sessions are
    deleted at once, not a day later: 200 logins leave 4 rows with max_sessions=2, the 2 live and the 2 ended last."""
    sids = [
        session_store.start_session(engine, "alice", "me", NOW + timedelta(seconds=n), max_sessions=2)[0]
        for n in range(200)
    ]
    with engine.connect() as connection:
        rows = connection.execute(select(login_sessions.c.id, login_sessions.c.ended_at)).all()
    assert sorted(rows, key=lambda row: sids.index(row.id)) == [
        (sids[196], NOW + timedelta(seconds=198)),
        (sids[197], NOW + timedelta(seconds=199)),
        (sids[198], None),
        (sids[199], None),
    ]
    reused = session_store.rotate_refresh(
        engine, sids[0], "spent", session_store.new_token_id(), NOW + timedelta(seconds=200)
    )
    assert reused.outcome is Rotation.UNKNOWN  # deleted: its refresh token is refused all the same


def _per_user_session_statements(engine: Engine, calls: Callable[[], object]) -> list[tuple[str, object]]:
    """The statements on login_sessions that select by user id which calls() runs, with their parameters."""
    seen = []

    def record(_connection, _cursor, statement, parameters, _context, _many):
        if "login_sessions.user_id = " in statement and not statement.startswith("INSERT"):
            seen.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", record)
    try:
        calls()
    finally:
        event.remove(engine, "before_cursor_execute", record)
    return seen


def _query_plan(engine: Engine, statement: str, parameters: object) -> str:
    with engine.begin() as connection:
        if engine.dialect.name == "sqlite":
            rows = connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", parameters).all()
            return " | ".join(row[-1] for row in rows)
        connection.exec_driver_sql("SET LOCAL enable_seqscan = off")  # a tiny table: ask whether the index can serve
        return " | ".join(row[0] for row in connection.exec_driver_sql(f"EXPLAIN {statement}", parameters).all())


def test_the_per_user_session_queries_use_an_index(engine: Engine) -> None:
    assert [index["column_names"] for index in inspect(engine).get_indexes("login_sessions")] == [
        ["user_id", "ended_at"]
    ]
    later = NOW + timedelta(days=2)
    statements = _per_user_session_statements(
        engine,
        lambda: (
            session_store.start_session(engine, "alice", "me", later),
            store.end_user_sessions(engine, "alice", later),
        ),
    )
    assert [statement.split()[0] for statement, _ in statements] == ["UPDATE", "DELETE", "DELETE", "DELETE", "UPDATE"]
    for statement, parameters in statements:
        plan = _query_plan(engine, statement, parameters)
        assert "ix_login_sessions_user_id_ended_at" in plan, (statement, plan)
        assert "SCAN login_sessions" not in plan and "Seq Scan on login_sessions" not in plan, (statement, plan)


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("postgresql://h:notaport/db", "invalid literal for int() with base 10: 'notaport'"),
        ("sqlite:///x.db?timeout=abc", "could not convert string to float: 'abc'"),
        ("nonsense", "Could not parse SQLAlchemy URL from given URL string"),
    ],
)
def test_a_url_that_cannot_be_used_is_one_line(url: str, reason: str) -> None:
    with pytest.raises(store.DatabaseUnavailable) as caught:
        store.make_engine(url)
    assert str(caught.value) == f"DATABASE_URL is not a database URL this code can open: {reason}"


def test_a_new_sqlite_file_and_its_wal_and_shm_are_readable_by_their_owner_only(tmp_path: Path) -> None:
    path = tmp_path / "lesson.db"
    old_umask = os.umask(0o022)
    try:
        engine = store.make_engine(f"sqlite:///{path}")
        store.create_schema(engine)
        store.seed_demo_users(engine, fake_hash, now=NOW)
        with engine.connect() as connection:  # open: the -wal and -shm files exist
            connection.execute(select(store.users.c.username)).all()
            modes = {name: oct(Path(f"{path}{name}").stat().st_mode & 0o777) for name in ("", "-wal", "-shm")}
        engine.dispose()
    finally:
        os.umask(old_umask)
    assert modes == {"": "0o600", "-wal": "0o600", "-shm": "0o600"}


def test_an_existing_sqlite_file_keeps_its_mode(tmp_path: Path) -> None:
    path = tmp_path / "lesson.db"
    path.touch(mode=0o640)
    path.chmod(0o640)
    engine = store.make_engine(f"sqlite:///{path}")
    store.create_schema(engine)
    engine.dispose()
    assert oct(path.stat().st_mode & 0o777) == "0o640"


def test_postgresql_gets_a_smaller_pool_than_sqlite(db: Database) -> None:
    pool = db.engine.pool
    assert isinstance(pool, QueuePool)
    if db.kind == "sqlite":
        assert (pool.size(), pool._max_overflow) == (store.POOL_SIZE, 10) == (40, 10)
    else:
        assert (pool.size(), pool._max_overflow, pool.timeout()) == (10, 10, store.POOL_TIMEOUT_SECONDS) == (10, 10, 10)


@pytest.mark.parametrize("db", ["postgresql"], indirect=True)  # SQLite keeps anyio's 40 threads' worth
def test_waiting_too_long_for_a_pooled_connection_is_unavailable(db: Database, monkeypatch) -> None:
    monkeypatch.setattr(database, "POSTGRESQL_POOL_SIZE", 1)  # make_engine lives in database.py now
    monkeypatch.setattr(database, "POSTGRESQL_MAX_OVERFLOW", 0)
    monkeypatch.setattr(database, "POOL_TIMEOUT_SECONDS", 0.1)
    engine = store.make_engine(db.url)
    store.create_schema(engine)
    store.seed_demo_users(engine, fake_hash, now=NOW)
    sid, _ = session_store.start_session(engine, "alice", "me", NOW)
    prefix = f"database {engine.url.database!r} on {engine.url.query['host']} is unavailable: QueuePool limit of size 1"
    with engine.connect():  # every connection of the pool is taken
        for call in (lambda: store.get_user(engine, "alice"), lambda: store.active_session_user(engine, sid, NOW)):
            with pytest.raises(store.DatabaseUnavailable) as caught:
                call()
            assert str(caught.value).startswith(prefix), str(caught.value)
    assert store.active_session_user(engine, sid, NOW) == ALICE
    engine.dispose()
