"""Notebook 06b's exercise: each check reads the answer from the notebook's names (a.active_sessions) and returns
True, a sentence saying what is off, or False (the general hint). See helpers/checks.py."""

from datetime import timedelta

from helpers.checks import exercise

# Sessions the check makes for a user of its own: live and recent, live but idle (no refresh for 8 days: its refresh
# token has expired, the session has not), logged out, and past their end (31 days old). Each wrong way of counting
# gives a number of its own.
LIVE, IDLE, ENDED, EXPIRED = 1, 2, 3, 2
MISTAKES = {
    LIVE + IDLE + ENDED + EXPIRED: "that counts every session of the user, also the logged-out ones and those past "
    "their end: keep the live ones only.",
    LIVE + IDLE + ENDED: "that counts sessions that were logged out: logout sets a session's ended_at.",
    LIVE + IDLE + EXPIRED: "that counts sessions past their end (30 days after login): keep those whose end is still "
    "ahead.",
    LIVE: "refresh_expires_at is when the session's current refresh token runs out, not the session: a session not "
    "refreshed for 7 days is still live until its own end, 30 days after login.",
    LIVE + ENDED: "refresh_expires_at is when the session's current refresh token runs out, not the session; and "
    "logged-out sessions are counted too.",
    0: "no session counted at all: Python's `is None` is never SQL (on a column it is simply False, before any query "
    "runs); use the column's method shown above.",
}


def _make_sessions(session_store, engine, username: str, now) -> None:
    for _ in range(LIVE):
        session_store.start_session(engine, username, "me", now)
    for _ in range(IDLE):
        session_store.start_session(engine, username, "me", now - timedelta(days=8))
    for _ in range(ENDED):
        sid, _ = session_store.start_session(engine, username, "me", now)
        session_store.end_session(engine, sid, now)
    for _ in range(EXPIRED):
        session_store.start_session(engine, username, "me", now - timedelta(days=31))


@exercise(
    "count, as in the cells above, the rows of the sessions table that belong to that user and are neither logged "
    "out nor past their end.",
    answers=("active_sessions",),
)
def active_sessions(a):
    from lesson_code import session_store, store

    active_sessions, engine = a.active_sessions, a.engine
    if active_sessions is None:
        return False
    if not callable(active_sessions):
        return "active_sessions should be a function: def active_sessions(username: str) -> int: ..."
    suffix = session_store.new_token_id()[:8]
    hare, dormouse = f"march-hare-{suffix}", f"dormouse-{suffix}"
    now = store.utc_now()
    for name in (hare, dormouse):
        store.add_user(engine, name, "not-a-password-hash")
    _make_sessions(session_store, engine, hare, now)
    session_store.start_session(engine, dormouse, "me", now)
    try:
        nobody, counted, one = (active_sessions(name) for name in (f"nobody-{suffix}", hare, dormouse))
    except Exception as error:
        if "naive" in str(error):
            return "compare with an aware time, store.utc_now(), not datetime.now()."
        raise
    if not all(isinstance(number, int) and not isinstance(number, bool) for number in (nobody, counted, one)):
        return f"active_sessions should return a number (an int), not {type(counted).__name__}: count the rows."
    if nobody != 0:
        return "a user with no session gets a count above 0: keep only the rows whose user_id is the username."
    if counted in MISTAKES:
        return MISTAKES[counted]
    if (counted, one) != (LIVE + IDLE, 1):
        return (
            f"a user with {LIVE + IDLE} live sessions ({ENDED} logged out, {EXPIRED} past their end) got {counted}, "
            f"and one with a single live session {one}."
        )
    return True
