"""Notebook 04's exercises: each check reads the answer from the notebook's names (a.bob_login) and returns True, a
sentence saying what is off, or False (the general hint). See helpers/checks.py."""

import warnings
from urllib.parse import parse_qsl

from helpers.checks import exercise

WANTED = (200, {"greeting": "Hello, Alice Liddell"})


@exercise(
    "log in as in 'Running it for real', on the real server, with bob's name and password.",
    answers=("bob_login",),
)
def bob_login(a):
    login, base_url = a.bob_login, a.base_url
    if login is None:
        return False
    if isinstance(login, dict):
        return "bob_login holds .json() of the answer: keep the response itself, what http.post returns."
    if login.request.url.host == "testserver":
        return "that answer came from the in-process client (http://testserver): log in on the real server, with http."
    if (login.request.method, str(login.request.url)) != ("POST", f"{base_url}/token"):
        return f"that was {login.request.method} {login.request.url}, not POST {base_url}/token."
    if login.status_code == 422:
        return "the server found no username and password: send them as a form, data={...}, not json={...}."
    sent = dict(parse_qsl(login.request.content.decode()))
    if sent != {"username": "bob", "password": "builder"}:
        return f"you sent {sent}: log in as bob, with his real password, builder."
    return (login.status_code, login.json()) == (401, {"detail": "Incorrect username or password"})


@exercise(
    "shape it like read_users_me: a parameter that depends on the right dependency, and a dict back.",
    answers=("greeting_app",),
)
def greeting_app(a):
    from fastapi import FastAPI

    from lesson_code.tokens import create_access_token

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        from fastapi.testclient import TestClient

    new_app, get_current_active_user, user_model = a.greeting_app, a.get_current_active_user, a.User
    if new_app is None:
        return False
    if not isinstance(new_app, FastAPI):
        return "greeting_app should be a new app: greeting_app = FastAPI(), then your route on it."
    if new_app is a.get("app"):
        return (
            "greeting_app is the notebook's app, with your route added to it: the task asks for a new, small app, "
            "greeting_app = FastAPI(), with that one route."
        )

    def greet(authorization=None):
        headers = {"Authorization": authorization} if authorization else {}
        response = TestClient(new_app, raise_server_exceptions=False).get("/users/me/greeting", headers=headers)
        is_json = response.headers.get("content-type") == "application/json"
        return response.status_code, response.json() if is_json else response.text

    if "/users/me/greeting" not in [route.path for route in new_app.routes]:
        return "greeting_app has no route at /users/me/greeting: decorate your function with @greeting_app.get(...)."
    alice = greet(f"Bearer {create_access_token({'sub': 'alice'})}")
    if alice[0] == 422:
        return "the route asks for something the request does not hold: take the user from a dependency, nothing else."
    if alice != WANTED:
        return f"with alice's token the route answered {alice}, not {WANTED}."
    if greet()[0] != 401:
        return f"without any token the route answered {greet()}: it must depend on get_current_active_user."
    if greet("Bearer garbage") != (401, {"detail": "Could not validate credentials"}):
        return f"with a garbage token the route answered {greet('Bearer garbage')}: let get_current_user check tokens."
    if greet(f"Bearer {create_access_token({'sub': 'bob'})}")[0] == 200:
        return "bob's account is disabled, yet his token got a greeting: depend on get_current_active_user."
    new_app.dependency_overrides[get_current_active_user] = lambda: user_model(username="dodo", full_name="The Dodo")
    try:
        dodo = greet()
    finally:
        new_app.dependency_overrides.clear()
    if dodo != (200, {"greeting": "Hello, The Dodo"}):
        return f"for another user, the Dodo, the route answered {dodo}: build the greeting from the user you are given."
    return greet() == (401, {"detail": "Not authenticated"}) and greet(
        f"Bearer {create_access_token({'sub': 'bob'})}"
    ) == (400, {"detail": "Inactive user"})
