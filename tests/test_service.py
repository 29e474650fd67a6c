"""lesson_code/service.py in-process: login, refresh with rotation and reuse detection, logout, revocation.

Every test that touches the store runs twice: on SQLite and on a real PostgreSQL server (the db fixture).
"""

import threading
from datetime import timedelta

import jwt as pyjwt
import pytest
from conftest import argon2_hash
from forge import ALICE, FAR_FUTURE, forge

from lesson_code import passwords, session_store, sessions, store
from lesson_code.hashing import PasswordChecks
from lesson_code.secret_file import get_secret_key
from lesson_code.service import app, current_time
from lesson_code.sessions import INVALID_REFRESH_TOKEN, REFRESH_TOKEN_REUSED, SESSION_ENDED
from lesson_code.settings import SettingsError
from lesson_code.tokens import create_access_token
from tests.utils.hashing import holding_every_ticket

CANNOT_VALIDATE = {"detail": "Could not validate credentials"}
WRONG = {"detail": "Incorrect username or password"}
UNAVAILABLE = {"detail": "The database is unavailable: try again later"}
CAROL = {"username": "carol", "email": "carol@example.com", "full_name": "Carol Hatter", "disabled": False}
NO_STORE = {"cache-control": "no-store", "pragma": "no-cache"}
THREADS = 8
ALICES_PASSWORD = "wonderland"


def login(client, username="alice", password=ALICES_PASSWORD, **fields):
    return client.post("/token", data={"username": username, "password": password, **fields})


def tokens_for(client, username="alice", password=ALICES_PASSWORD):
    response = login(client, username, password)
    assert response.status_code == 200, response.text
    return response.json()


def refresh(client, refresh_token):
    return client.post("/token", data={"grant_type": "refresh_token", "refresh_token": refresh_token})


def me(client, access_token):
    return client.get("/users/me", headers={"Authorization": f"Bearer {access_token}"})


def post_with(client, path, access_token):
    return client.post(path, headers={"Authorization": f"Bearer {access_token}"})


def headers_of(response, names):
    return {name: response.headers.get(name) for name in names}


def assert_refused(response):
    assert (response.status_code, response.json()) == (401, CANNOT_VALIDATE)
    assert response.headers["www-authenticate"] == "Bearer"


def assert_invalid_grant(response, description):
    assert (response.status_code, response.json()) == (
        400,
        {"error": "invalid_grant", "error_description": description},
    )
    assert headers_of(response, NO_STORE) == NO_STORE


def claims_of(token):
    options = {"verify_exp": False, "verify_iat": False}  # some tests move the service's clock on
    return pyjwt.decode(token, get_secret_key(), algorithms=["HS256"], options=options)


def test_login_answers_as_rfc_6749_section_5_1(service, db):
    response = login(service)
    assert response.status_code == 200
    body = response.json()
    assert sorted(body) == ["access_token", "expires_in", "refresh_token", "scope", "token_type"]
    assert (body["token_type"], body["expires_in"], body["scope"]) == ("bearer", 900, "me")
    assert headers_of(response, NO_STORE) == NO_STORE

    access, refresh_claims = claims_of(body["access_token"]), claims_of(body["refresh_token"])
    assert pyjwt.get_unverified_header(body["access_token"]) == {"alg": "HS256", "typ": "JWT"}
    assert sorted(access) == ["exp", "iat", "scope", "sid", "sub"]
    assert (access["sub"], access["scope"], access["exp"] - access["iat"]) == ("alice", "me", 900)
    assert pyjwt.get_unverified_header(body["refresh_token"]) == {"alg": "HS256", "typ": "refresh+jwt"}
    assert sorted(refresh_claims) == ["exp", "iat", "jti", "sid", "sub"]
    assert (refresh_claims["sub"], refresh_claims["sid"]) == ("alice", access["sid"])
    assert refresh_claims["exp"] - refresh_claims["iat"] == 7 * 24 * 3600

    session = session_store.get_session(db.engine, access["sid"])
    assert (session.user_id, session.scope, session.ended_at) == ("alice", "me", None)
    assert session.refresh_jti == refresh_claims["jti"]  # the id only: the token itself is not stored
    assert session.expires_at - session.created_at == timedelta(days=30)
    assert (me(service, body["access_token"]).status_code, me(service, body["access_token"]).json()) == (200, ALICE)


def test_grant_type_password_may_be_given_and_each_login_is_a_session(service):
    first = login(service, grant_type="password", scope="")
    second = login(service, grant_type="password")
    assert (first.status_code, second.status_code) == (200, 200)
    sids = {claims_of(response.json()["access_token"])["sid"] for response in (first, second)}
    assert len(sids) == 2
    assert [me(service, response.json()["access_token"]).json() for response in (first, second)] == [ALICE, ALICE]


def test_the_seeded_demo_users_can_log_in(start_service, db):
    client = start_service(seeded=False)  # the service seeds them itself, with Argon2id
    assert [user.username for user in store.list_users(db.engine)] == ["alice", "bob", "carol"]
    assert store.get_user(db.engine, "alice").hashed_password.startswith("$argon2id$v=19$m=19456,t=2,p=1$")
    assert me(client, tokens_for(client)["access_token"]).json() == ALICE
    assert me(client, tokens_for(client, "carol", "tea-party")["access_token"]).json() == CAROL
    response = login(client, "bob", "builder")
    assert (response.status_code, response.json()) == (401, WRONG)


def test_wrong_password_unknown_user_and_disabled_user_get_the_same_401(service):
    answers = [
        login(service, "alice", "looking-glass"),
        login(service, "mad-hatter", "tea"),
        login(service, "bob", "builder"),
    ]
    for response in answers:
        assert (response.status_code, response.json()) == (401, WRONG)
        assert response.headers["www-authenticate"] == "Bearer"
        assert "access_token" not in response.text
    assert len({response.content for response in answers}) == 1


def test_refresh_rotates_without_hashing_a_password(service, db, monkeypatch):
    first = tokens_for(service)
    hashed = []
    monkeypatch.setattr(passwords.password_hash, "verify", lambda *args: hashed.append(args) or False)

    response = refresh(service, first["refresh_token"])
    assert response.status_code == 200
    second = response.json()
    assert sorted(second) == ["access_token", "expires_in", "refresh_token", "scope", "token_type"]
    assert (second["token_type"], second["expires_in"], second["scope"]) == ("bearer", 900, "me")
    assert headers_of(response, NO_STORE) == NO_STORE
    assert hashed == []
    old, new = claims_of(first["refresh_token"]), claims_of(second["refresh_token"])
    assert (new["sid"], new["sub"]) == (old["sid"], "alice")
    assert new["jti"] != old["jti"]
    assert session_store.get_session(db.engine, new["sid"]).refresh_jti == new["jti"]
    assert claims_of(second["access_token"])["sid"] == old["sid"]
    assert me(service, second["access_token"]).json() == ALICE
    assert me(service, first["access_token"]).json() == ALICE  # same session, still alive

    third = refresh(service, second["refresh_token"])
    assert third.status_code == 200
    assert claims_of(third.json()["refresh_token"])["sid"] == old["sid"]


def test_a_stolen_refresh_token_used_twice_ends_the_session_for_victim_and_thief(service):
    victim = tokens_for(service)
    elsewhere = tokens_for(service)  # alice on another device: not this session
    stolen = victim["refresh_token"]

    victims_turn = refresh(service, victim["refresh_token"])
    assert victims_turn.status_code == 200
    thiefs_turn = refresh(service, stolen)
    assert_invalid_grant(thiefs_turn, REFRESH_TOKEN_REUSED)
    assert "access_token" not in thiefs_turn.text

    assert_refused(me(service, victims_turn.json()["access_token"]))
    assert_refused(me(service, victim["access_token"]))
    assert_invalid_grant(refresh(service, victims_turn.json()["refresh_token"]), SESSION_ENDED)
    assert_invalid_grant(refresh(service, stolen), SESSION_ENDED)
    assert me(service, elsewhere["access_token"]).json() == ALICE


def test_the_thief_refreshing_first_ends_the_session_too(service):
    victim = tokens_for(service)
    thief = refresh(service, victim["refresh_token"])
    assert thief.status_code == 200
    assert_invalid_grant(refresh(service, victim["refresh_token"]), REFRESH_TOKEN_REUSED)
    assert_refused(me(service, thief.json()["access_token"]))
    assert_invalid_grant(refresh(service, thief.json()["refresh_token"]), SESSION_ENDED)


def test_concurrent_refreshes_with_one_token_give_exactly_one_new_pair(service):
    token = tokens_for(service)["refresh_token"]
    barrier = threading.Barrier(THREADS)
    answers = [None] * THREADS

    def run(index):
        barrier.wait(timeout=60)
        answers[index] = refresh(service, token)

    threads = [threading.Thread(target=run, args=(index,)) for index in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert [response.status_code for response in answers].count(200) == 1
    losers = [response.json() for response in answers if response.status_code != 200]
    assert {loser["error"] for loser in losers} == {"invalid_grant"}
    descriptions = {loser["error_description"] for loser in losers}
    assert REFRESH_TOKEN_REUSED in descriptions and descriptions <= {REFRESH_TOKEN_REUSED, SESSION_ENDED}
    winner = next(response.json() for response in answers if response.status_code == 200)
    assert_refused(me(service, winner["access_token"]))  # the reuse ended the session the winner refreshed


def test_logout_ends_this_session_at_once(service):
    mine, other = tokens_for(service), tokens_for(service)
    response = post_with(service, "/logout", mine["access_token"])
    assert (response.status_code, response.content) == (204, b"")
    assert_refused(me(service, mine["access_token"]))
    assert_invalid_grant(refresh(service, mine["refresh_token"]), SESSION_ENDED)
    assert_refused(post_with(service, "/logout", mine["access_token"]))
    assert me(service, other["access_token"]).json() == ALICE


def test_logout_everywhere_ends_every_session_of_the_user(service):
    alices = [tokens_for(service) for _ in range(3)]
    carols = tokens_for(service, "carol", "tea-party")
    response = post_with(service, "/logout/everywhere", alices[0]["access_token"])
    assert (response.status_code, response.content) == (204, b"")
    for tokens in alices:
        assert_refused(me(service, tokens["access_token"]))
        assert_invalid_grant(refresh(service, tokens["refresh_token"]), SESSION_ENDED)
    assert me(service, carols["access_token"]).json() == CAROL
    assert me(service, tokens_for(service)["access_token"]).json() == ALICE  # logging in again works


@pytest.mark.parametrize("kind", ["refresh_token", "access_token"])
@pytest.mark.parametrize("hint", [None, "refresh_token", "access_token", "something_else"])
def test_revoke_ends_the_session_of_either_kind_of_token(service, kind, hint):
    tokens, other = tokens_for(service), tokens_for(service)
    form = {"token": tokens[kind]} | ({"token_type_hint": hint} if hint else {})
    response = service.post("/revoke", data=form)
    assert (response.status_code, response.content) == (200, b"")
    assert_refused(me(service, tokens["access_token"]))
    assert_invalid_grant(refresh(service, tokens["refresh_token"]), SESSION_ENDED)
    assert me(service, other["access_token"]).json() == ALICE
    again = service.post("/revoke", data=form)
    assert (again.status_code, again.content) == (200, b"")


@pytest.mark.parametrize(
    "token",
    ["garbage", "a.b.c", create_access_token({"sub": "alice"}), "x" * 3000],
    ids=["garbage", "dots", "no sid", "long"],
)
def test_revoke_answers_200_whatever_the_token(service, token):
    tokens = tokens_for(service)
    response = service.post("/revoke", data={"token": token})
    assert (response.status_code, response.content) == (200, b"")
    assert me(service, tokens["access_token"]).json() == ALICE


@pytest.mark.parametrize("form", [{"token_type_hint": "refresh_token"}, {"token": ""}], ids=["missing", "empty"])
def test_revoke_without_a_token_is_a_validation_error(service, form):
    response = service.post("/revoke", data=form)
    assert response.status_code == 422
    assert [error["loc"] for error in response.json()["detail"]] == [["body", "token"]]


def test_disabling_a_user_ends_her_sessions(service, db):
    tokens = tokens_for(service)
    assert store.set_disabled(db.engine, "alice", True) == 1
    assert_refused(me(service, tokens["access_token"]))
    assert_invalid_grant(refresh(service, tokens["refresh_token"]), SESSION_ENDED)
    assert (login(service).status_code, login(service).json()) == (401, WRONG)
    store.set_disabled(db.engine, "alice", False)
    assert_refused(me(service, tokens["access_token"]))  # enabling does not bring the session back
    assert me(service, tokens_for(service)["access_token"]).json() == ALICE


def test_changing_the_password_ends_her_sessions(service, db):
    tokens = tokens_for(service)
    assert store.set_password(db.engine, "alice", argon2_hash("through-the-looking-glass")) == 1
    assert_refused(me(service, tokens["access_token"]))
    assert_invalid_grant(refresh(service, tokens["refresh_token"]), SESSION_ENDED)
    assert (login(service).status_code, login(service).json()) == (401, WRONG)
    assert me(service, tokens_for(service, "alice", "through-the-looking-glass")["access_token"]).json() == ALICE


def test_a_refresh_token_sent_as_a_bearer_token_gets_401(service):
    tokens = tokens_for(service)
    assert_refused(me(service, tokens["refresh_token"]))
    assert_refused(post_with(service, "/logout", tokens["refresh_token"]))


def test_an_access_token_is_not_a_refresh_token(service):
    tokens = tokens_for(service)
    access = tokens["access_token"]
    assert_invalid_grant(refresh(service, access), INVALID_REFRESH_TOKEN)
    claims = claims_of(access)
    jti = session_store.new_token_id()
    untyped = forge({"alg": "HS256", "typ": "JWT"}, {**claims, "jti": jti}, get_secret_key())
    assert_invalid_grant(refresh(service, untyped), INVALID_REFRESH_TOKEN)
    assert me(service, access).json() == ALICE  # refused attempts end nothing


BAD_BEARERS = {
    "no sid (notebook 04's kind)": lambda sid: create_access_token({"sub": "alice"}),
    "sid unknown": lambda sid: create_access_token({"sub": "alice", "sid": "no-such-session"}),
    "sid a number": lambda sid: create_access_token({"sub": "alice", "sid": 7}),
    "sub not the session's user": lambda sid: create_access_token({"sub": "carol", "sid": sid}),
    "expired": lambda sid: create_access_token({"sub": "alice", "sid": sid}, expires_delta=timedelta(minutes=-5)),
    "wrong key": lambda sid: pyjwt.encode({"sub": "alice", "sid": sid, "exp": FAR_FUTURE}, "k" * 40),
    "alg none": lambda sid: forge({"alg": "none"}, {"sub": "alice", "sid": sid, "exp": FAR_FUTURE}),
    "garbage": lambda sid: "garbage",
}


@pytest.mark.parametrize("make", BAD_BEARERS.values(), ids=BAD_BEARERS.keys())
def test_every_bad_access_token_gets_the_same_401(service, make):
    sid = claims_of(tokens_for(service)["access_token"])["sid"]
    assert_refused(me(service, make(sid)))
    assert_refused(post_with(service, "/logout", make(sid)))
    assert_refused(post_with(service, "/logout/everywhere", make(sid)))


@pytest.mark.parametrize(
    ("form", "error", "description"),
    [
        (
            {"grant_type": "client_credentials"},
            "unsupported_grant_type",
            "grant_type must be password or refresh_token",
        ),
        ({"grant_type": "authorization_code", "code": "x"}, "unsupported_grant_type", None),
        ({"grant_type": "refresh_token"}, "invalid_request", "The refresh_token grant needs refresh_token"),
        ({"username": "alice"}, "invalid_request", "The password grant needs username and password"),
        ({"grant_type": "password", "password": "x"}, "invalid_request", None),
        ({"grant_type": "refresh_token", "refresh_token": "garbage"}, "invalid_grant", INVALID_REFRESH_TOKEN),
    ],
)
def test_token_endpoint_errors_follow_rfc_6749_section_5_2(service, form, error, description):
    response = service.post("/token", data=form)
    assert response.status_code == 400
    assert response.json()["error"] == error
    if description:
        assert response.json() == {"error": error, "error_description": description}
    assert sorted(response.json()) == ["error", "error_description"]
    assert headers_of(response, NO_STORE) == NO_STORE


def test_refresh_tokens_expire(service):
    tokens = tokens_for(service)
    now = store.utc_now()
    app.dependency_overrides[current_time] = lambda: now + timedelta(days=7, seconds=1)
    assert_invalid_grant(refresh(service, tokens["refresh_token"]), INVALID_REFRESH_TOKEN)
    assert me(service, tokens["access_token"]).json() == ALICE  # the session itself lives on for 30 days
    app.dependency_overrides[current_time] = lambda: now + timedelta(days=6)
    assert refresh(service, tokens["refresh_token"]).status_code == 200


def test_a_session_ends_30_days_after_login_however_often_refreshed(service):
    tokens = tokens_for(service)
    start = store.utc_now()
    for day in (6, 12, 18, 24, 29):
        app.dependency_overrides[current_time] = lambda day=day: start + timedelta(days=day)
        response = refresh(service, tokens["refresh_token"])
        assert response.status_code == 200, (day, response.text)
        tokens = response.json()
        assert me(service, tokens["access_token"]).json() == ALICE
    app.dependency_overrides[current_time] = lambda: start + timedelta(days=30, seconds=1)
    assert_invalid_grant(refresh(service, tokens["refresh_token"]), INVALID_REFRESH_TOKEN)
    assert_refused(me(service, tokens["access_token"]))


def test_lifetimes_come_from_the_settings(start_service):
    client = start_service(access_token_minutes=2, refresh_token_days=1, session_days=1.5)
    first = tokens_for(client)
    assert first["expires_in"] == 120
    access, refresh_claims = claims_of(first["access_token"]), claims_of(first["refresh_token"])
    assert (access["exp"] - access["iat"], refresh_claims["exp"] - refresh_claims["iat"]) == (120, 24 * 3600)
    start = store.utc_now()
    app.dependency_overrides[current_time] = lambda: start + timedelta(hours=23)
    second = refresh(client, first["refresh_token"]).json()
    ends = claims_of(second["refresh_token"])["exp"]
    assert ends - refresh_claims["iat"] in (36 * 3600, 36 * 3600 + 1)  # capped at the session's end, not 23 + 24 h


def test_the_database_going_away_answers_503_and_issues_nothing(service, db):
    tokens = tokens_for(service)
    db.make_unavailable()
    calls = {
        "login": lambda: login(service),
        "refresh": lambda: refresh(service, tokens["refresh_token"]),
        "users/me": lambda: me(service, tokens["access_token"]),
        "logout": lambda: post_with(service, "/logout", tokens["access_token"]),
        "logout everywhere": lambda: post_with(service, "/logout/everywhere", tokens["access_token"]),
        "revoke": lambda: service.post("/revoke", data={"token": tokens["refresh_token"]}),
    }
    for name, call in calls.items():
        response = call()
        assert (response.status_code, response.json()) == (503, UNAVAILABLE), name
        assert response.headers["retry-after"] == "5"
        assert "access_token" not in response.text


def test_a_corrupt_database_stops_the_start_with_its_one_line(start_service, db):
    store.create_schema(db.engine)
    db.make_unavailable()
    with pytest.raises(store.DatabaseUnavailable) as caught:
        start_service(seeded=False)
    assert db.unavailable_message(str(caught.value)), str(caught.value)


def test_the_session_check_never_waits_on_the_network_from_the_event_loop(service, db, monkeypatch):
    """SQLite (WAL): one precompiled SELECT on the loop's own connection. PostgreSQL: in a worker thread."""
    threads = {}
    check = store.active_session_user

    def recording_check(*args):
        threads["check"] = threading.current_thread()
        return check(*args)

    async def recording_dependency():
        threads["loop"] = threading.current_thread()
        return store.utc_now()

    monkeypatch.setattr(store, "active_session_user", recording_check)
    app.dependency_overrides[current_time] = recording_dependency
    assert me(service, tokens_for(service)["access_token"]).json() == ALICE
    if db.kind == "sqlite":
        assert "check" not in threads
    else:
        assert threads["check"] is not threads["loop"]


def test_the_loops_session_check_sees_a_logout_on_the_very_next_request(service):
    pair = tokens_for(service)
    assert me(service, pair["access_token"]).json() == ALICE
    bearer = {"Authorization": f"Bearer {pair['access_token']}"}
    assert service.post("/logout", headers=bearer).status_code == 204
    assert (me(service, pair["access_token"]).status_code, me(service, pair["access_token"]).json()) == (
        401,
        {"detail": "Could not validate credentials"},
    )


def test_login_protections_hold(start_service, tmp_path):
    client = start_service(login_failures_per_account="2/hour", hashing_lock_dir=tmp_path / "hashing")
    for _ in range(2):
        assert login(client, "alice", "guess").json() == WRONG
    throttled = login(client)
    assert throttled.status_code == 429
    assert throttled.json() == {
        "detail": f"Too many failed logins: try again in {throttled.headers['retry-after']} seconds"
    }
    too_large = client.post("/token", data={"username": "carol", "password": "w" * 5000})
    assert (too_large.status_code, too_large.json()) == (413, {"detail": "Request body is larger than 4096 bytes"})
    with holding_every_ticket(tmp_path / "hashing") as held:
        busy = login(client, "carol", "tea-party")
    assert held == passwords.HASHING_LIMITER.total_tokens + 16  # the hashing threads, and MAX_LOGINS_WAITING_TO_HASH
    assert (busy.status_code, busy.json()) == (503, {"detail": "Too many logins at once: try again in 1 second"})
    assert busy.headers["retry-after"] == "1"
    assert login(client, "carol", "tea-party").status_code == 200


def test_the_openapi_schema(service):
    schema = service.get("/openapi.json").json()
    scopes = {"me": "Read your own profile", "admin": "Manage users: list them, disable them"}
    assert schema["components"]["securitySchemes"] == {
        "OAuth2PasswordBearer": {"type": "oauth2", "flows": {"password": {"scopes": scopes, "tokenUrl": "token"}}}
    }
    paths = schema["paths"]
    assert sorted(paths) == [
        "/.well-known/jwks.json",
        "/logout",
        "/logout/everywhere",
        "/revoke",
        "/token",
        "/users",
        "/users/me",
        "/users/{username}/disable",
    ]
    assert sorted(paths["/token"]["post"]["responses"]) == ["200", "400", "401", "413", "422", "429", "503"]
    assert sorted(paths["/users/me"]["get"]["responses"]) == ["200", "401", "403", "413", "503"]
    assert sorted(paths["/users"]["get"]["responses"]) == ["200", "401", "403", "413", "503"]
    assert sorted(paths["/users/{username}/disable"]["post"]["responses"]) == [
        *("200", "401", "403", "404", "409", "413", "422", "503")
    ]
    assert sorted(paths["/logout"]["post"]["responses"]) == ["204", "401", "413", "503"]
    assert sorted(paths["/.well-known/jwks.json"]["get"]["responses"]) == ["200", "404"]
    security = {
        (path, method): operation.get("security") for path, item in paths.items() for method, operation in item.items()
    }
    assert security == {
        ("/token", "post"): None,
        ("/revoke", "post"): None,
        ("/.well-known/jwks.json", "get"): None,
        ("/users/me", "get"): [{"OAuth2PasswordBearer": ["me"]}],
        ("/users", "get"): [{"OAuth2PasswordBearer": ["admin"]}],
        ("/users/{username}/disable", "post"): [{"OAuth2PasswordBearer": ["admin"]}],
        ("/logout", "post"): [{"OAuth2PasswordBearer": []}],
        ("/logout/everywhere", "post"): [{"OAuth2PasswordBearer": []}],
    }
    assert sorted(paths["/revoke"]["post"]["responses"]) == ["200", "413", "422", "503"]
    form = schema["components"]["schemas"]["TokenRequest"]["properties"]
    assert sorted(form) == ["grant_type", "password", "refresh_token", "scope", "username"]


def test_the_docs_and_security_headers_are_app_pys(service):
    page = service.get("/docs")
    assert (page.status_code, "cdn.jsdelivr.net" in page.text) == (200, False)
    assert service.get("/users/me").headers["x-content-type-options"] == "nosniff"


def test_sessions_module_is_what_the_service_issues(service, db):
    tokens = tokens_for(service)
    claims = sessions.decode_refresh_token(tokens["refresh_token"])
    assert sessions.session_of(tokens["refresh_token"]) == claims["sid"] == sessions.session_of(tokens["access_token"])


@pytest.mark.parametrize("path", ["/token", "/revoke"])
def test_a_lone_surrogate_smuggled_by_a_charset_gets_415_not_500(service, path):
    body = b'--XB\r\nContent-Disposition: form-data; name="token"\r\n\r\n\\ud800\r\n--XB--\r\n'
    headers = {"Content-Type": "multipart/form-data; boundary=XB; charset=unicode_escape"}
    response = service.post(path, content=body, headers=headers)
    assert (response.status_code, response.json()) == (
        415,
        {"detail": "Request bodies must be UTF-8, not unicode_escape"},
    )


def live_sessions_of(db, username):
    now = store.utc_now()
    with db.engine.connect() as connection:
        rows = connection.execute(store.sessions.select().where(store.sessions.c.user_id == username)).all()
    return [row.id for row in rows if row.ended_at is None and row.expires_at > now]


@pytest.mark.parametrize("change", ["set-password", "disable"])
def test_a_login_racing_a_password_change_or_a_disable_gets_the_same_401_and_no_session(
    service, db, monkeypatch, change
):
    verify = PasswordChecks.verify

    async def verify_while_an_admin_acts(*args):
        verified = await verify(*args)
        if change == "set-password":
            store.set_password(db.engine, "carol", argon2_hash("a-new-password-for-carol"))
        else:
            store.set_disabled(db.engine, "carol", True)
        return verified

    monkeypatch.setattr(PasswordChecks, "verify", verify_while_an_admin_acts)
    response = login(service, "carol", "tea-party")
    assert (response.status_code, response.json()) == (401, WRONG)
    assert response.headers["www-authenticate"] == "Bearer"
    assert headers_of(response, NO_STORE) == NO_STORE
    assert live_sessions_of(db, "carol") == []
    monkeypatch.setattr(PasswordChecks, "verify", verify)
    assert (login(service, "carol", "tea-party").status_code, login(service, "carol", "tea-party").json()) == (
        401,
        WRONG,
    )
    if change == "set-password":
        assert me(service, tokens_for(service, "carol", "a-new-password-for-carol")["access_token"]).json() == CAROL


def test_the_service_does_not_seed_demo_users_when_told_not_to(start_service, db):
    client = start_service(seeded=False, demo_users="false")
    assert store.list_users(db.engine) == []
    assert (login(client).status_code, login(client).json()) == (401, WRONG)


def test_a_users_logins_beyond_the_cap_end_her_oldest_sessions(start_service):
    client = start_service(max_sessions_per_user=2)
    first, second, third = (tokens_for(client) for _ in range(3))
    assert_refused(me(client, first["access_token"]))
    assert_invalid_grant(refresh(client, first["refresh_token"]), SESSION_ENDED)
    assert [me(client, tokens["access_token"]).json() for tokens in (second, third)] == [ALICE, ALICE]


@pytest.mark.parametrize(
    ("name", "value", "line"),
    [
        ("session_days", 1e7, "SESSION_DAYS is not a valid setting: Input should be less than or equal to 3650"),
        ("access_token_minutes", 1e12, "ACCESS_TOKEN_MINUTES is not a valid setting: "
         "Input should be less than or equal to 1440"),
    ],
)  # fmt: skip
def test_the_service_refuses_to_start_with_an_absurd_setting(start_service, name, value, line):
    with pytest.raises(SettingsError) as caught:
        start_service(**{name: value})
    assert str(caught.value) == line


def test_every_token_endpoint_error_is_not_to_be_stored(start_service, db, tmp_path):
    client = start_service(login_failures_per_account="1/hour", hashing_lock_dir=tmp_path / "hashing")
    wrong = login(client, "alice", "guess")
    throttled = login(client)
    assert [(response.status_code, headers_of(response, NO_STORE)) for response in (wrong, throttled)] == [
        (401, NO_STORE),
        (429, NO_STORE),
    ]
    with holding_every_ticket(tmp_path / "hashing"):
        busy = login(client, "carol", "tea-party")
    assert (busy.status_code, headers_of(busy, NO_STORE)) == (503, NO_STORE)
    tokens = tokens_for(client, "carol", "tea-party")
    db.make_unavailable()
    for response in (login(client, "carol", "tea-party"), refresh(client, tokens["refresh_token"])):
        assert (response.status_code, response.json(), headers_of(response, NO_STORE)) == (503, UNAVAILABLE, NO_STORE)


@pytest.mark.parametrize("db", ["postgresql"], indirect=True)
def test_after_postgresql_restarts_the_next_request_gets_a_fresh_connection_not_503(start_service, db, request):
    """The pool's connections die with the server; each is checked before use (pre-ping) and replaced."""
    client = start_service()
    tokens = tokens_for(client)
    assert me(client, tokens["access_token"]).json() == ALICE
    server = request.getfixturevalue("postgres_server")
    server.stop()
    server.start()
    answers = [me(client, tokens["access_token"]), login(client), refresh(client, tokens["refresh_token"])]
    assert [response.status_code for response in answers] == [200, 200, 200]
    assert answers[0].json() == ALICE
