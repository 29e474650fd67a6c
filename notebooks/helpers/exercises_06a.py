"""Notebook 06a's exercise: each check reads the answer from the notebook's names (a.get_me) and returns True, a
sentence saying what is off, or False (the general hint). See helpers/checks.py."""

from datetime import timedelta

from helpers.checks import exercise


def _expired_access(wallet: dict) -> str:
    """An access token of the wallet's session that expired five minutes ago: what a client holds after a pause."""
    from lesson_code.sessions import decode_refresh_token
    from lesson_code.tokens import create_access_token

    sid = decode_refresh_token(wallet["refresh_token"])["sid"]
    return create_access_token({"sub": "alice", "sid": sid}, expires_delta=timedelta(minutes=-5))


@exercise(
    "call /users/me; only on a 401, and only with a refresh token in the wallet, refresh at POST /token, keep what a "
    "successful refresh gives, and call /users/me once more.",
    answers=("get_me",),
)
def get_me(a):
    import httpx

    get_me, http, log_in_as = a.get_me, a.http, a.log_in_as
    if get_me is None:
        return False
    if not callable(get_me):
        return "get_me should be a function: def get_me(wallet: dict) -> int: ..."
    calls = []  # the requests to /users/me made through http while the check runs

    def count(request) -> None:
        if request.url.path == "/users/me":
            calls.append(request)

    http.event_hooks["request"].append(count)
    try:
        wallet = log_in_as()
        unchanged = dict(wallet)
        status = get_me(wallet)
        if isinstance(status, httpx.Response):
            return "get_me should return the status code, response.status_code, not the response."
        if status != 200:
            return f"with a valid access token get_me should return 200, the status of /users/me, not {status!r}."
        if wallet != unchanged:
            return "get_me refreshed although /users/me answered 200: refresh only after a 401."
        for _ in range(2):
            wallet["access_token"] = expired = _expired_access(wallet)
            spent = wallet["refresh_token"]
            status = get_me(wallet)
            if wallet.get("refresh_token") == spent:
                return "after a 401 and a refresh, the wallet still holds the spent refresh token: keep the new one."
            if wallet.get("access_token") == expired:
                return "keep the new access token in the wallet too, so that the next call does not start with a 401."
            if status != 200:
                return "after refreshing, call /users/me again with the new access token, and return that status."
        try:
            status = get_me({"access_token": "not-a-token"})
        except KeyError:
            status = "KeyError"
        if status != 401:
            return f"with no refresh token in the wallet, get_me should return the 401 as it is, not {status!r}."
        ended = log_in_as()
        http.post("/revoke", data={"token": ended["refresh_token"]})
        ended["access_token"] = _expired_access(ended)
        kept = dict(ended)
        calls.clear()
        try:
            status = get_me(ended)
        except KeyError:
            return "a refused refresh answers 400 with an error, not tokens: look at its status code before its tokens."
        if "error" in ended or len(calls) > 1:
            return (
                "when the refresh was refused (400 invalid_grant), your get_me wrote the error into the wallet and "
                "called /users/me again: a 400 means the session is over, so there is nothing more to try. Look at "
                "the refresh's status code, and stop there."
            )
        if ended != kept:
            return "a refused refresh gives no tokens: leave the wallet as it was."
        if status != 401:
            return f"when the refresh is refused (400 invalid_grant), return the 401, not {status!r}: log in again."
        return True
    finally:
        http.event_hooks["request"].remove(count)
