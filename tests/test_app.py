import threading
from datetime import timedelta

import jwt as pyjwt
import pytest
from forge import ALICE, FAR_FUTURE, HOSTILE_NAMES, hostile_tokens, tampered

from lesson_code import app as app_module
from lesson_code import passwords, secret_file
from lesson_code.app import app
from lesson_code.secret_file import get_secret_key
from lesson_code.tokens import create_access_token

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
    assert (response.headers["cache-control"], response.headers["pragma"]) == ("no-store", "no-cache")
    claims = pyjwt.decode(body["access_token"], get_secret_key(), algorithms=["HS256"])
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


def test_a_disabled_user_gets_the_same_answer_as_a_wrong_password_after_the_same_work(client, hashed):
    right_password = login(client, "bob", "builder")
    wrong_password = login(client, "bob", "not-builder")
    for response in (right_password, wrong_password):
        assert (response.status_code, response.json()) == (401, {"detail": "Incorrect username or password"})
        assert response.headers["www-authenticate"] == "Bearer"
    assert right_password.content == wrong_password.content
    assert dict(right_password.headers) == dict(wrong_password.headers)
    assert hashed == [app_module.users_db["bob"]["hashed_password"]] * 2


def test_login_without_a_password_is_a_validation_error(client):
    response = client.post("/token", data={"username": "alice"})
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "password"]


def test_users_me_without_a_token(client):
    response = client.get("/users/me")
    assert (response.status_code, response.json()) == (401, {"detail": "Not authenticated"})
    assert response.headers["www-authenticate"] == "Bearer"


# Hostile tokens are in forge.hostile_tokens; these are what only a real request can carry.
BAD_AUTHORIZATION = {
    "expired": lambda: "Bearer " + create_access_token({"sub": "alice"}, expires_delta=timedelta(minutes=-5)),
    "tampered": lambda: "Bearer " + tampered(create_access_token({"sub": "bob"}), {"sub": "alice", "exp": FAR_FUTURE}),
    "empty token": lambda: "Bearer ",
    "scheme alone": lambda: "bearer",
    "two words": lambda: "Bearer abc def",
    "100 KB": lambda: "Bearer " + "a" * 100_000,
    "unknown user": lambda: "Bearer " + create_access_token({"sub": "mad-hatter"}),
}


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_every_hostile_token_gets_the_same_401(client, secret_key, name):
    token, _ = hostile_tokens(secret_key)[name]
    response = client.get("/users/me", headers={"Authorization": b"Bearer " + token.encode()})
    assert (response.status_code, response.json()) == (401, CANNOT_VALIDATE)
    assert response.headers["www-authenticate"] == "Bearer"


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
    token = pyjwt.encode({"sub": "alice", "exp": FAR_FUTURE}, get_secret_key(), algorithm="HS256")
    response = me(client, f"Bearer {token}")
    assert (response.status_code, response.json()) == (200, ALICE)


def test_password_hashing_runs_off_the_event_loop(client, monkeypatch):
    threads = {}
    verify = passwords.password_hash.verify

    def recording_verify(password, hashed):
        threads["hash"] = threading.current_thread()
        return verify(password, hashed)

    async def recording_dependency():
        threads["loop"] = threading.current_thread()

    monkeypatch.setattr(passwords.password_hash, "verify", recording_verify)
    app.dependency_overrides[app_module.oauth2_scheme] = recording_dependency
    try:
        client.get("/users/me")
    finally:
        app.dependency_overrides.clear()
    assert login(client, "alice", "wonderland").status_code == 200
    assert threads["hash"] is not threads["loop"]


SECURITY_HEADERS = {
    "x-content-type-options": "nosniff",
    "content-security-policy": "frame-ancestors 'none'",
    "referrer-policy": "no-referrer",
}


@pytest.mark.parametrize("path", ["/users/me", "/docs", "/swagger/swagger-ui.css", "/openapi.json", "/nowhere"])
def test_every_answer_carries_the_security_headers(client, path):
    response = client.get(path)
    assert {name: response.headers.get(name) for name in SECURITY_HEADERS} == SECURITY_HEADERS


def test_the_docs_are_served_without_a_cdn(client):
    page = client.get("/docs")
    assert page.status_code == 200
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    assert '<script src="swagger/swagger-ui-bundle.js"></script>' in page.text
    assert '<link type="text/css" rel="stylesheet" href="swagger/swagger-ui.css">' in page.text
    assert "url: 'openapi.json'" in page.text
    assert "cdn.jsdelivr.net" not in page.text
    bundle = client.get("/swagger/swagger-ui-bundle.js")
    assert (bundle.status_code, bundle.headers["content-type"]) == (200, "text/javascript; charset=utf-8")
    assert len(bundle.content) > 500_000
    css = client.get("/swagger/swagger-ui.css")
    assert (css.status_code, css.headers["content-type"]) == (200, "text/css; charset=utf-8")
    icon = client.get("/swagger/favicon-32x32.png")
    assert (icon.status_code, icon.headers["content-type"]) == (200, "image/png")


def test_the_docs_never_name_the_host_the_request_named(client):
    page = client.get("/docs", headers={"Host": "evil.example"})
    assert page.status_code == 200
    assert "evil.example" not in page.text
    assert "://" not in page.text


def test_the_docs_do_not_keep_the_login_in_local_storage(client):
    page = client.get("/docs")
    assert '"persistAuthorization": false,' in page.text


def test_redoc_is_switched_off(client):
    response = client.get("/redoc")
    assert (response.status_code, response.json()) == (404, {"detail": "Not Found"})


def test_the_root_redirects_to_the_docs_by_a_relative_url(client):
    response = client.get("/", follow_redirects=False, headers={"Host": "evil.example"})
    assert (response.status_code, response.headers["location"]) == (307, "docs")


def test_the_openapi_schema_names_the_password_flow(client):
    schema = client.get("/openapi.json").json()
    assert schema["components"]["securitySchemes"] == {
        "OAuth2PasswordBearer": {"type": "oauth2", "flows": {"password": {"scopes": {}, "tokenUrl": "token"}}}
    }
    assert sorted(schema["paths"]) == ["/token", "/users/me"]


def test_the_openapi_schema_documents_every_answer(client):
    paths = client.get("/openapi.json").json()["paths"]
    assert sorted(paths["/token"]["post"]["responses"]) == ["200", "400", "401", "413", "422", "429", "503"]
    assert sorted(paths["/users/me"]["get"]["responses"]) == ["200", "400", "401", "413"]
    for code in ("429", "503"):
        assert set(paths["/token"]["post"]["responses"][code]["headers"]) == {"Retry-After"}


def test_the_app_refuses_to_start_with_a_weak_secret(monkeypatch):
    from fastapi.testclient import TestClient

    from lesson_code import tokens

    monkeypatch.setenv("JWT_SECRET_KEY", "a" * 32)
    secret_file.get_secret_key.cache_clear()
    try:
        with pytest.raises(tokens.SecretKeyError, match="JWT_SECRET_KEY"), TestClient(app):
            pass
    finally:
        monkeypatch.undo()
        secret_file.get_secret_key.cache_clear()
    assert secret_file.get_secret_key()


def multipart(fields: dict[str, bytes], charset: str) -> tuple[bytes, dict[str, str]]:
    parts = [
        b'--XB\r\nContent-Disposition: form-data; name="%s"\r\n\r\n%s\r\n' % (k.encode(), v) for k, v in fields.items()
    ]
    return b"".join(parts) + b"--XB--\r\n", {"Content-Type": f"multipart/form-data; boundary=XB; charset={charset}"}


@pytest.mark.parametrize(
    ("fields", "charset"),
    [
        ({"username": b"\\ud800", "password": b"x"}, "unicode_escape"),
        ({"username": b"alice", "password": b"\\ud800"}, "unicode_escape"),
        ({"username": b"+2AA-", "password": b"x"}, "utf-7"),
    ],
)
def test_a_body_in_another_charset_than_utf8_gets_415_not_500(client, fields, charset):
    body, headers = multipart(fields, charset)
    response = client.post("/token", content=body, headers=headers)
    assert (response.status_code, response.json()) == (415, {"detail": f"Request bodies must be UTF-8, not {charset}"})
    assert response.headers["x-content-type-options"] == "nosniff"


def test_a_utf8_multipart_login_still_works(client):
    body, headers = multipart({"username": b"alice", "password": b"wonderland"}, "UTF-8")
    assert client.post("/token", content=body, headers=headers).status_code == 200
