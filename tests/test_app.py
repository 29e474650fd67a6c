import threading
from datetime import timedelta

import jwt as pyjwt
import pytest
from forge import ALICE, FAR_FUTURE, forge, tampered

from lesson_code import app as app_module
from lesson_code.app import app
from lesson_code.tokens import SECRET_KEY, create_access_token

CANNOT_VALIDATE = {"detail": "Could not validate credentials"}


def login(client, username, password):
    return client.post("/token", data={"username": username, "password": password})


def me(client, authorization):
    return client.get("/users/me", headers={"Authorization": authorization})


def test_login_returns_a_bearer_token_for_the_user(client):
    response = login(client, "alice", "wonderland")
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"access_token", "token_type"}
    assert body["token_type"] == "bearer"
    claims = pyjwt.decode(body["access_token"], SECRET_KEY, algorithms=["HS256"])
    assert claims["sub"] == "alice"
    assert claims["exp"] - claims["iat"] == 900


def test_the_token_from_login_opens_users_me(client):
    token = login(client, "alice", "wonderland").json()["access_token"]
    response = me(client, f"Bearer {token}")
    assert (response.status_code, response.json()) == (200, ALICE)


def test_wrong_password_and_unknown_user_get_identical_answers(client):
    wrong_password = login(client, "alice", "looking-glass")
    unknown_user = login(client, "mad-hatter", "wonderland")
    for response in (wrong_password, unknown_user):
        assert response.status_code == 401
        assert response.json() == {"detail": "Incorrect username or password"}
        assert response.headers["www-authenticate"] == "Bearer"
    assert wrong_password.content == unknown_user.content
    assert dict(wrong_password.headers) == dict(unknown_user.headers)


def test_a_disabled_user_cannot_log_in(client):
    response = login(client, "bob", "builder")
    assert (response.status_code, response.json()) == (400, {"detail": "Inactive user"})


def test_login_without_a_password_is_a_validation_error(client):
    response = client.post("/token", data={"username": "alice"})
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "password"]


def test_users_me_without_a_token(client):
    response = client.get("/users/me")
    assert (response.status_code, response.json()) == (401, {"detail": "Not authenticated"})
    assert response.headers["www-authenticate"] == "Bearer"


BAD_AUTHORIZATION = {
    "expired": lambda: "Bearer " + create_access_token({"sub": "alice"}, expires_delta=timedelta(minutes=-5)),
    "tampered": lambda: "Bearer " + tampered(create_access_token({"sub": "bob"}), {"sub": "alice", "exp": FAR_FUTURE}),
    "wrong key": lambda: "Bearer " + pyjwt.encode({"sub": "alice", "exp": FAR_FUTURE}, "k" * 40, algorithm="HS256"),
    "alg none": lambda: "Bearer " + forge({"alg": "none"}, {"sub": "alice", "exp": FAR_FUTURE}),
    "HS512": lambda: "Bearer " + forge({"alg": "HS512"}, {"sub": "alice", "exp": FAR_FUTURE}, SECRET_KEY, "HS512"),
    "garbage": lambda: "Bearer garbage",
    "empty token": lambda: "Bearer ",
    "scheme alone": lambda: "bearer",
    "two words": lambda: "Bearer abc def",
    "100 KB": lambda: "Bearer " + "a" * 100_000,
    "nested header": lambda: "Bearer " + forge('{"alg":"HS256","x":' + "[" * 2000 + "]" * 2000 + "}", {"sub": "alice"}),
    "exp null": lambda: "Bearer " + forge({"alg": "HS256"}, {"sub": "alice", "exp": None}, SECRET_KEY),
    "exp 1e999": lambda: "Bearer " + forge({"alg": "HS256"}, '{"sub":"alice","exp":1e999}', SECRET_KEY),
    "sub a number": lambda: "Bearer " + forge({"alg": "HS256"}, {"sub": 1, "exp": FAR_FUTURE}, SECRET_KEY),
    "unknown user": lambda: "Bearer " + create_access_token({"sub": "mad-hatter"}),
}


@pytest.mark.parametrize("authorization", BAD_AUTHORIZATION.values(), ids=BAD_AUTHORIZATION.keys())
def test_every_bad_token_gets_the_same_401(client, authorization):
    response = me(client, authorization())
    assert (response.status_code, response.json()) == (401, CANNOT_VALIDATE)
    assert response.headers["www-authenticate"] == "Bearer"


@pytest.mark.parametrize("authorization", ["Basic YWxpY2U6d29uZGVybGFuZA==", "Token abc", ""])
def test_not_a_bearer_header_is_not_authenticated(client, authorization):
    response = me(client, authorization)
    assert (response.status_code, response.json()) == (401, {"detail": "Not authenticated"})
    assert response.headers["www-authenticate"] == "Bearer"


def test_a_disabled_users_token_is_refused(client):
    response = me(client, "Bearer " + create_access_token({"sub": "bob"}))
    assert (response.status_code, response.json()) == (400, {"detail": "Inactive user"})


def test_a_pyjwt_token_with_the_apps_key_is_accepted(client):
    token = pyjwt.encode({"sub": "alice", "exp": FAR_FUTURE}, SECRET_KEY, algorithm="HS256")
    response = me(client, f"Bearer {token}")
    assert (response.status_code, response.json()) == (200, ALICE)


def test_password_hashing_runs_off_the_event_loop(client, monkeypatch):
    threads = {}
    verify = app_module.password_hash.verify

    def recording_verify(password, hashed):
        threads["hash"] = threading.current_thread()
        return verify(password, hashed)

    async def recording_dependency():
        threads["loop"] = threading.current_thread()

    monkeypatch.setattr(app_module.password_hash, "verify", recording_verify)
    app.dependency_overrides[app_module.oauth2_scheme] = recording_dependency
    try:
        client.get("/users/me")
    finally:
        app.dependency_overrides.clear()
    assert login(client, "alice", "wonderland").status_code == 200
    assert threads["hash"] is not threads["loop"]


def test_the_docs_are_served_without_a_cdn(client):
    page = client.get("/docs")
    assert page.status_code == 200
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    assert "http://testserver/swagger/swagger-ui-bundle.js" in page.text
    assert "cdn.jsdelivr.net" not in page.text
    bundle = client.get("/swagger/swagger-ui-bundle.js")
    assert (bundle.status_code, bundle.headers["content-type"]) == (200, "application/javascript")
    assert len(bundle.content) > 500_000
    css = client.get("/swagger/swagger-ui.css")
    assert (css.status_code, css.headers["content-type"]) == (200, "text/css; charset=utf-8")


def test_the_root_redirects_to_the_docs(client):
    response = client.get("/", follow_redirects=False)
    assert (response.status_code, response.headers["location"]) == (307, "http://testserver/docs")


def test_the_openapi_schema_names_the_password_flow(client):
    schema = client.get("/openapi.json").json()
    assert schema["components"]["securitySchemes"] == {
        "OAuth2PasswordBearer": {"type": "oauth2", "flows": {"password": {"scopes": {}, "tokenUrl": "token"}}}
    }
    assert sorted(schema["paths"]) == ["/token", "/users/me"]
