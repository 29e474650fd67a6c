"""Scopes in lesson_code/service.py: what a login and a refresh are granted, which route needs which scope, 401 for a
bad token and 403 insufficient_scope for a good one without the scope, and sessions ended when a scope is taken away.

Every test runs on SQLite and on a real PostgreSQL server (the db fixture).
"""

from datetime import timedelta

import jwt as pyjwt
import pytest
from conftest import argon2_hash
from forge import ALICE, CAROL, EVERY_USER, FAR_FUTURE, OTHER_KEY, forge, tampered
from sqlalchemy import update

from lesson_code import store
from lesson_code.cli import main as cli
from lesson_code.hashing import PasswordChecks
from lesson_code.secret_file import get_secret_key
from lesson_code.service import CANNOT_DISABLE_YOURSELF, USER_NOT_FOUND
from lesson_code.sessions import NO_SCOPE_HELD, REFRESH_TOKEN_REUSED, SCOPE_NOT_GRANTED, SESSION_ENDED
from lesson_code.store import SCOPES
from lesson_code.tokens import create_access_token

CANNOT_VALIDATE = {"detail": "Could not validate credentials"}
NOT_AUTHENTICATED = {"detail": "Not authenticated"}
WRONG = {"detail": "Incorrect username or password"}
UNAVAILABLE = {"detail": "The database is unavailable: try again later"}
NO_STORE = {"cache-control": "no-store", "pragma": "no-cache"}
PASSWORDS = {"alice": "wonderland", "bob": "builder", "carol": "tea-party", "dave": "daisy, daisy"}


def login(client, username="alice", scope=None, password=None):
    form = {"username": username, "password": password or PASSWORDS[username]}
    return client.post("/token", data=form | ({} if scope is None else {"scope": scope}))


def tokens_for(client, username="alice", scope=None):
    response = login(client, username, scope)
    assert response.status_code == 200, response.text
    return response.json()


def refresh(client, refresh_token, scope=None):
    form = {"grant_type": "refresh_token", "refresh_token": refresh_token}
    return client.post("/token", data=form | ({} if scope is None else {"scope": scope}))


def call(client, route, access_token=None):
    method, path = route.split(" ")
    headers = {} if access_token is None else {"Authorization": f"Bearer {access_token}"}
    return client.request(method, path, headers=headers)


def claims_of(token):
    return pyjwt.decode(token, get_secret_key(), algorithms=["HS256"])


def answer(response):
    return response.status_code, response.json(), response.headers.get("www-authenticate")


def refused(route_scope=None):
    """The answer to a bad token (no route_scope) or to a good token without route_scope."""
    if route_scope is None:
        return 401, CANNOT_VALIDATE, "Bearer"
    detail = {"detail": f"Not enough permissions: this needs the scope {route_scope}"}
    return 403, detail, f'Bearer error="insufficient_scope", scope="{route_scope}"'


def assert_oauth_error(response, error, description):
    assert (response.status_code, response.json()) == (400, {"error": error, "error_description": description})
    assert {name: response.headers.get(name) for name in NO_STORE} == NO_STORE


def live_sessions(db, username):
    with db.engine.connect() as connection:
        rows = connection.execute(
            store.sessions.select().where(store.sessions.c.user_id == username, store.sessions.c.ended_at.is_(None))
        )
        return [row.scope for row in rows]


# Each route with no token, a bad token, a token without its scope, and one with it

ROUTES = {
    "GET /users/me": ("me", "admin", ALICE),
    "GET /users": ("admin", "me", EVERY_USER),
    "POST /users/bob/disable": ("admin", "me", {"username": "bob", "sessions_ended": 0}),
}


@pytest.mark.parametrize("route", ROUTES)
def test_each_route_answers_no_token_bad_token_wrong_scope_and_right_scope(service, route):
    needed, other, body = ROUTES[route]
    holder = "alice" if needed == "me" else "carol"
    with_scope = tokens_for(service, holder, needed)["access_token"]
    without_scope = tokens_for(service, "carol", other)["access_token"]
    sid = claims_of(with_scope)["sid"]
    bad_tokens = {
        "garbage": "garbage",
        "expired": create_access_token(
            {"sub": holder, "sid": sid, "scope": needed}, expires_delta=timedelta(minutes=-5)
        ),
        "wrong key": pyjwt.encode({"sub": holder, "sid": sid, "scope": needed, "exp": FAR_FUTURE}, OTHER_KEY),
        "alg none": forge({"alg": "none"}, {"sub": holder, "sid": sid, "scope": needed, "exp": FAR_FUTURE}),
        "refresh token": tokens_for(service, holder, needed)["refresh_token"],
    }

    assert answer(call(service, route)) == (401, NOT_AUTHENTICATED, "Bearer")
    for name, token in bad_tokens.items():
        assert answer(call(service, route, token)) == refused(), name
    assert answer(call(service, route, without_scope)) == refused(needed)
    response = call(service, route, with_scope)
    assert (response.status_code, response.json()) == (200, body)
    assert "www-authenticate" not in response.headers


@pytest.mark.parametrize("route", ROUTES)
def test_a_token_whose_scope_claim_was_edited_is_refused_by_its_signature(service, route):
    token = tokens_for(service, "alice")["access_token"]
    claims = claims_of(token)
    raised = tampered(token, {**claims, "scope": "me admin"})
    assert pyjwt.decode(raised, options={"verify_signature": False})["scope"] == "me admin"
    assert answer(call(service, route, raised)) == refused()
    assert answer(call(service, "GET /users", token)) == refused("admin")  # the genuine token: still only me


@pytest.mark.parametrize("claim", [["me", "admin"], 7, None], ids=["a list", "a number", "null"])
def test_a_scope_claim_that_is_not_a_string_is_a_bad_token(service, claim):
    sid = claims_of(tokens_for(service, "carol", "me admin")["access_token"])["sid"]
    token = create_access_token({"sub": "carol", "sid": sid, "scope": claim})
    assert answer(call(service, "GET /users/me", token)) == refused()


def test_a_token_with_no_scope_claim_grants_nothing(service):
    sid = claims_of(tokens_for(service, "carol", "me admin")["access_token"])["sid"]
    token = create_access_token({"sub": "carol", "sid": sid})  # issue 10's kind: signed, in a live session
    assert answer(call(service, "GET /users/me", token)) == refused("me")
    assert answer(call(service, "GET /users", token)) == refused("admin")
    assert call(service, "POST /logout", token).status_code == 204


def test_logout_logout_everywhere_and_revoke_need_no_scope(service):
    admin_only = tokens_for(service, "carol", "admin")
    assert answer(call(service, "GET /users/me", admin_only["access_token"])) == refused("me")
    assert call(service, "POST /logout", admin_only["access_token"]).status_code == 204
    assert answer(call(service, "GET /users", admin_only["access_token"])) == refused()

    again = tokens_for(service, "carol", "admin")
    assert call(service, "POST /logout/everywhere", again["access_token"]).status_code == 204
    assert answer(call(service, "GET /users", again["access_token"])) == refused()

    third = tokens_for(service, "carol", "admin")
    revoked = service.post("/revoke", data={"token": third["access_token"]})
    assert (revoked.status_code, revoked.content) == (200, b"")
    assert answer(call(service, "GET /users", third["access_token"])) == refused()


# Login


@pytest.mark.parametrize(
    ("username", "asked", "granted"),
    [
        ("alice", None, "me"),
        ("alice", "", "me"),
        ("alice", "me", "me"),
        ("alice", "me admin", "me"),  # admin is not hers: left out, and the answer's scope says so
        ("alice", "admin me root", "me"),
        ("carol", None, "me"),
        ("carol", "admin", "admin"),
        ("carol", "admin me", "admin me"),
        ("carol", "me  me\tadmin", "me admin"),
    ],
)
def test_login_grants_the_scopes_asked_for_that_the_user_holds(service, db, username, asked, granted):
    response = login(service, username, asked)
    assert response.status_code == 200
    body = response.json()
    assert body["scope"] == granted
    assert claims_of(body["access_token"])["scope"] == granted
    assert live_sessions(db, username) == [granted]


@pytest.mark.parametrize("asked", ["admin", "root", "admin root", "ME", 'me"'])
def test_login_asking_only_for_scopes_not_held_is_invalid_scope(service, db, asked):
    response = login(service, "alice", asked)
    assert_oauth_error(response, "invalid_scope", NO_SCOPE_HELD)
    assert "access_token" not in response.text
    assert live_sessions(db, "alice") == []


def test_a_user_without_me_must_ask_for_a_scope(service, db):
    store.add_user(db.engine, "dave", argon2_hash(PASSWORDS["dave"]), scopes="admin")
    assert_oauth_error(login(service, "dave"), "invalid_scope", NO_SCOPE_HELD)
    assert tokens_for(service, "dave", "admin")["scope"] == "admin"


def test_the_password_is_checked_before_the_scope(service):
    for response in (login(service, "alice", "admin", password="guess"), login(service, "bob", "me")):
        assert (response.status_code, response.json()) == (401, WRONG)


def test_a_scope_taken_away_while_the_password_is_checked_is_not_granted(service, db, monkeypatch):
    verify = PasswordChecks.verify

    async def verify_while_an_admin_takes_admin_away(*args):
        verified = await verify(*args)
        store.set_scopes(db.engine, "carol", "me")
        return verified

    monkeypatch.setattr(PasswordChecks, "verify", verify_while_an_admin_takes_admin_away)
    assert_oauth_error(login(service, "carol", "admin"), "invalid_scope", NO_SCOPE_HELD)
    assert live_sessions(db, "carol") == []
    monkeypatch.setattr(PasswordChecks, "verify", verify)
    assert tokens_for(service, "carol", "me admin")["scope"] == "me"


# Refresh


def test_a_refresh_may_ask_for_fewer_scopes_and_the_session_keeps_its_grant(service, db):
    first = tokens_for(service, "carol", "me admin")
    narrowed = refresh(service, first["refresh_token"], "me")
    assert narrowed.status_code == 200
    assert (narrowed.json()["scope"], claims_of(narrowed.json()["access_token"])["scope"]) == ("me", "me")
    assert answer(call(service, "GET /users", narrowed.json()["access_token"])) == refused("admin")
    assert call(service, "GET /users/me", narrowed.json()["access_token"]).json() == CAROL
    assert live_sessions(db, "carol") == ["me admin"]

    widened_again = refresh(service, narrowed.json()["refresh_token"], "admin")  # within the grant at login
    assert (widened_again.status_code, widened_again.json()["scope"]) == (200, "admin")
    whole = refresh(service, widened_again.json()["refresh_token"])
    assert (whole.status_code, whole.json()["scope"]) == (200, "me admin")
    assert call(service, "GET /users", whole.json()["access_token"]).json() == EVERY_USER


@pytest.mark.parametrize(("granted", "asked"), [("me", "admin"), ("me", "me admin"), ("admin", "me"), ("me", "root")])
def test_a_refresh_asking_for_more_than_the_session_was_granted_is_invalid_scope(service, granted, asked):
    tokens = tokens_for(service, "carol", granted)
    assert_oauth_error(refresh(service, tokens["refresh_token"], asked), "invalid_scope", SCOPE_NOT_GRANTED)
    again = refresh(service, tokens["refresh_token"])  # the refused refresh did not spend the refresh token
    assert (again.status_code, again.json()["scope"]) == (200, granted)


def test_a_replayed_refresh_token_asking_for_more_still_ends_the_session(service):
    tokens = tokens_for(service, "carol", "me")
    renewed = refresh(service, tokens["refresh_token"]).json()
    assert_oauth_error(refresh(service, tokens["refresh_token"], "admin"), "invalid_grant", REFRESH_TOKEN_REUSED)
    assert answer(call(service, "GET /users/me", renewed["access_token"])) == refused()


# Taking scopes away, adding them


def test_taking_a_scope_away_ends_the_users_sessions(service, db):
    admin = tokens_for(service, "carol", "me admin")
    profile_only = tokens_for(service, "carol", "me")
    alices = tokens_for(service, "alice")
    assert store.set_scopes(db.engine, "carol", "me") == 2

    for tokens in (admin, profile_only):
        assert answer(call(service, "GET /users", tokens["access_token"])) == refused()
        assert answer(call(service, "GET /users/me", tokens["access_token"])) == refused()
        assert_oauth_error(refresh(service, tokens["refresh_token"]), "invalid_grant", SESSION_ENDED)
    assert call(service, "GET /users/me", alices["access_token"]).json() == ALICE
    assert_oauth_error(login(service, "carol", "admin"), "invalid_scope", NO_SCOPE_HELD)
    assert tokens_for(service, "carol", "me admin")["scope"] == "me"


def test_the_command_line_taking_admin_away_ends_carols_sessions(service, db, monkeypatch, capsys):
    tokens = tokens_for(service, "carol", "admin")
    monkeypatch.setenv("DATABASE_URL", db.url)
    assert cli(["users", "scopes", "carol", "me"]) == 0
    assert capsys.readouterr().out == "Scopes of carol: me (took away admin and ended 1 session)\n"
    assert answer(call(service, "GET /users", tokens["access_token"])) == refused()


def test_adding_a_scope_ends_nothing_and_a_new_login_may_ask_for_it(service, db):
    before = tokens_for(service, "alice")
    assert store.set_scopes(db.engine, "alice", "me admin") == 0
    assert call(service, "GET /users/me", before["access_token"]).json() == ALICE
    assert answer(call(service, "GET /users", before["access_token"])) == refused("admin")  # not in this token
    assert refresh(service, before["refresh_token"], "admin").json()["error"] == "invalid_scope"  # nor its session
    after = tokens_for(service, "alice", "me admin")
    assert call(service, "GET /users", after["access_token"]).status_code == 200


def test_a_scope_the_user_no_longer_holds_is_refused_even_if_the_session_lives(service, db):
    """Only by editing the database behind the store's back can a session outlive a scope; the check holds anyway."""
    tokens = tokens_for(service, "carol", "me admin")
    with db.engine.begin() as connection:
        connection.execute(update(store.users).where(store.users.c.username == "carol").values(scopes="me"))
    assert answer(call(service, "GET /users", tokens["access_token"])) == refused("admin")
    assert call(service, "GET /users/me", tokens["access_token"]).json() == CAROL


# Disabling a user


def test_an_admin_disables_a_user_and_ends_her_sessions(service, db):
    admin = tokens_for(service, "carol", "admin")["access_token"]
    alices = [tokens_for(service, "alice") for _ in range(2)]
    response = call(service, "POST /users/alice/disable", admin)
    assert (response.status_code, response.json()) == (200, {"username": "alice", "sessions_ended": 2})
    for tokens in alices:
        assert answer(call(service, "GET /users/me", tokens["access_token"])) == refused()
        assert_oauth_error(refresh(service, tokens["refresh_token"]), "invalid_grant", SESSION_ENDED)
    assert (login(service, "alice").status_code, login(service, "alice").json()) == (401, WRONG)
    assert store.get_user(db.engine, "alice").disabled is True
    again = call(service, "POST /users/alice/disable", admin)
    assert (again.status_code, again.json()) == (200, {"username": "alice", "sessions_ended": 0})


def test_an_admin_cannot_disable_themself(service, db):
    admin = tokens_for(service, "carol", "admin")["access_token"]
    response = call(service, "POST /users/carol/disable", admin)
    assert answer(response) == (409, {"detail": CANNOT_DISABLE_YOURSELF}, None)
    assert store.get_user(db.engine, "carol").disabled is False
    assert call(service, "GET /users", admin).status_code == 200


@pytest.mark.parametrize("name", ["zed", "Carol", "%00", "carol%00", "%C3%A9"])
def test_disabling_an_unknown_user_is_404(service, db, name):
    admin = tokens_for(service, "carol", "admin")["access_token"]
    assert answer(call(service, f"POST /users/{name}/disable", admin)) == (404, {"detail": USER_NOT_FOUND}, None)
    assert [user.username for user in store.list_users(db.engine) if user.disabled] == ["bob"]


def test_one_admin_disables_another(service, db):
    store.add_user(db.engine, "dave", argon2_hash(PASSWORDS["dave"]), scopes="me admin")
    carols = tokens_for(service, "carol", "admin")["access_token"]
    daves = tokens_for(service, "dave", "admin")["access_token"]
    response = call(service, "POST /users/carol/disable", daves)
    assert (response.status_code, response.json()) == (200, {"username": "carol", "sessions_ended": 1})
    assert answer(call(service, "POST /users/dave/disable", carols)) == refused()


def test_the_admin_routes_answer_503_when_the_database_goes_away(service, db):
    admin = tokens_for(service, "carol", "admin")["access_token"]
    db.make_unavailable()
    for route in ("GET /users", "POST /users/alice/disable"):
        response = call(service, route, admin)
        assert (response.status_code, response.json()) == (503, UNAVAILABLE), route
        assert response.headers["retry-after"] == "5"


def test_the_scopes_are_declared_once_for_docs_store_and_tokens(service):
    schema = service.get("/openapi.json").json()
    assert schema["components"]["securitySchemes"]["OAuth2PasswordBearer"]["flows"]["password"]["scopes"] == SCOPES
    assert SCOPES == {"me": "Read your own profile", "admin": "Manage users: list them, disable them"}
    forbidden = schema["paths"]["/users"]["get"]["responses"]["403"]
    assert sorted(forbidden["headers"]) == ["WWW-Authenticate"]
