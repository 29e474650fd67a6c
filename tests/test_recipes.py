"""The README's recipes, as a copy-paster follows them: the files each names and the README's own main.py, in an
empty folder where only the recipe's packages can be imported, run under uvicorn. Tokens only (tokens.py and
passwords.py, the key made from the app's own secret); login, refresh and logout with the project's own user model
(the session layer's seven files); and a verifier microservice (tokens.py and jwks_verify.py, against the real
issuer: lesson_code.service signing ES256)."""

import re
import secrets
import subprocess
import uuid

import httpx
import jwt as pyjwt
import pytest
from conftest import serving_the_service
from forge import tampered

from tests.utils.recipes import REPO_ROOT, make_project, python
from tests.utils.uvicorn_process import free_port, stop, wait_until_answering

README = (REPO_ROOT / "README.md").read_text()
TOKENS_ONLY = README[README.index("### Tokens only") : README.index("### A verifier microservice")]
SECTION = README[README.index("### A verifier microservice") : README.index("## Running it in production")]
SESSIONS = README[README.index("### Login, refresh and logout with your own users") : README.index("### A verifier")]
SESSIONS_FILES = {
    f"lesson_code/{name}.py": f"auth/{name}.py"
    for name in ("tokens", "database", "session_store", "sessions", "auth_router", "http_common", "passwords")
}
SESSIONS_PACKAGES = [
    "fastapi",
    "uvicorn",
    "python-multipart",
    "python-jose[cryptography]",
    "sqlmodel",
    "pwdlib[argon2]",
]
TOKENS_FILES = {"lesson_code/tokens.py": "auth/tokens.py", "lesson_code/passwords.py": "auth/passwords.py"}
TOKENS_PACKAGES = ["fastapi", "uvicorn", "python-multipart", "python-jose[cryptography]", "pwdlib[argon2]"]
VERIFIER_FILES = {"lesson_code/tokens.py": "auth/tokens.py", "lesson_code/jwks_verify.py": "auth/jwks_verify.py"}
VERIFIER_PACKAGES = ["fastapi", "uvicorn", "httpx", "python-jose[cryptography]"]
DEFAULT_ISSUER = "http://127.0.0.1:8000"  # the service's JWT_ISSUER when unset: the iss of its tokens
CANNOT_VALIDATE = (401, {"detail": "Could not validate credentials"}, "Bearer")


def the_readmes_main_py(section: str = SECTION) -> str:
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_the_recipes_name_the_files_and_packages_the_tests_use():
    assert all(f"`{source}`" in SECTION for source in VERIFIER_FILES)
    assert 'pip install fastapi uvicorn httpx "python-jose[cryptography]"' in SECTION
    assert all(f"`{source}`" in TOKENS_ONLY for source in TOKENS_FILES)
    assert 'pip install fastapi uvicorn python-multipart "python-jose[cryptography]" "pwdlib[argon2]"' in TOKENS_ONLY
    assert all(f"`{source}`" in SESSIONS for source in SESSIONS_FILES)
    assert "pip install " + " ".join(f'"{name}"' if "[" in name else name for name in SESSIONS_PACKAGES) in SESSIONS


@pytest.fixture
def tokens_project(tmp_path):
    writes = {"auth/__init__.py": "", "main.py": the_readmes_main_py(TOKENS_ONLY)}
    return tmp_path / "project", make_project(tmp_path / "project", TOKENS_FILES, TOKENS_PACKAGES, writes)


def start_uvicorn(folder, environment, log_path):
    """uvicorn main:app in folder on a free port of 127.0.0.1: (process, base URL, the log file, open)."""
    port = free_port()
    log = open(log_path, "wb")  # noqa: SIM115  (closed by the caller, after the process)
    command = python("-m", "uvicorn", "main:app", "--host", "127.0.0.1", "--port", str(port))
    process = subprocess.Popen(command, cwd=folder, env=environment, stdout=log, stderr=subprocess.STDOUT)
    return process, f"http://127.0.0.1:{port}", log


def test_the_tokens_only_recipe_logs_in_and_refuses_bad_tokens(tokens_project, tmp_path):
    folder, environment = tokens_project
    secret = secrets.token_hex(32)
    environment |= {"APP_SECRET": secret, "ALICE_PASSWORD": "a long password for alice"}
    process, base_url, log = start_uvicorn(folder, environment, tmp_path / "uvicorn.out")
    try:
        wait_until_answering(f"{base_url}/openapi.json", process, (tmp_path / "uvicorn.out").read_text)
        form = {"username": "alice", "password": "a long password for alice"}
        login = httpx.post(f"{base_url}/token", data=form, timeout=30)
        assert (login.status_code, login.json()["token_type"]) == (200, "bearer")
        token = login.json()["access_token"]
        assert pyjwt.decode(token, secret, algorithms=["HS256"])["sub"] == "alice"  # signed with the app's secret
        assert whoami(base_url, token) == (200, {"username": "alice"}, None)
        for wrong in ({**form, "password": "guess"}, {**form, "username": "bob"}):
            refused = httpx.post(f"{base_url}/token", data=wrong, timeout=30)
            assert (refused.status_code, refused.json()) == (401, {"detail": "Incorrect username or password"})
        other_secret = pyjwt.encode({"sub": "alice", "exp": 4102444800}, secrets.token_hex(32), algorithm="HS256")
        for bad in (other_secret, tampered(token, {"sub": "carol"}), "garbage"):
            assert whoami(base_url, bad) == CANNOT_VALIDATE
    finally:
        stop(process)
        log.close()
    assert "Traceback" not in (tmp_path / "uvicorn.out").read_text()


@pytest.fixture
def sessions_project(tmp_path):
    writes = {"auth/__init__.py": "", "main.py": the_readmes_main_py(SESSIONS)}
    return tmp_path / "project", make_project(tmp_path / "project", SESSIONS_FILES, SESSIONS_PACKAGES, writes)


def token_request(base_url: str, **form: str) -> httpx.Response:
    return httpx.post(f"{base_url}/token", data=form, timeout=30)


def read_me(base_url: str, token: str) -> tuple:
    response = httpx.get(f"{base_url}/users/me", headers={"Authorization": f"Bearer {token}"}, timeout=10)
    return response.status_code, response.json()


def test_the_sessions_recipe_logs_in_refreshes_and_logs_out_users_of_its_own_model(sessions_project, tmp_path):
    """The second recipe with a user model shaped as the full-stack template's (uuid id, email, is_active): log in,
    a protected route, a refresh, the spent refresh token again (the session ends), logout, bad tokens."""
    folder, environment = sessions_project
    secret = secrets.token_hex(32)
    environment |= {
        "APP_SECRET": secret,
        "DATABASE_URL": f"sqlite:///{tmp_path}/app.db",
        "FIRST_USER_EMAIL": "alice@example.com",
        "FIRST_USER_PASSWORD": "a long password for alice",
    }
    process, base_url, log = start_uvicorn(folder, environment, tmp_path / "uvicorn.out")
    alice = {"username": "alice@example.com", "password": "a long password for alice"}
    try:
        wait_until_answering(f"{base_url}/openapi.json", process, (tmp_path / "uvicorn.out").read_text)
        login = token_request(base_url, **alice)
        assert login.status_code == 200
        assert login.headers["cache-control"] == "no-store"
        body = login.json()
        assert sorted(body) == ["access_token", "expires_in", "refresh_token", "scope", "token_type"]
        assert (body["token_type"], body["expires_in"], body["scope"]) == ("bearer", 900, "me")
        claims = pyjwt.decode(body["access_token"], secret, algorithms=["HS256"])  # signed with the app's secret
        user_id = claims["sub"]
        assert str(uuid.UUID(user_id)) == user_id  # the user's own primary key
        assert (sorted(claims), claims["scope"]) == (["exp", "iat", "scope", "sid", "sub"], "me")
        refresh_claims = pyjwt.decode(body["refresh_token"], secret, algorithms=["HS256"])
        assert pyjwt.get_unverified_header(body["refresh_token"])["typ"] == "refresh+jwt"
        assert (refresh_claims["sub"], refresh_claims["sid"]) == (user_id, claims["sid"])
        me = {"id": user_id, "email": "alice@example.com", "full_name": None}
        assert read_me(base_url, body["access_token"]) == (200, me)

        for wrong in ({**alice, "password": "guess"}, {**alice, "username": "bob@example.com"}):
            refused = token_request(base_url, **wrong)
            assert (refused.status_code, refused.json()) == (401, {"detail": "Incorrect username or password"})

        refreshed = token_request(base_url, grant_type="refresh_token", refresh_token=body["refresh_token"])
        assert refreshed.status_code == 200
        second = refreshed.json()
        assert pyjwt.decode(second["access_token"], secret, algorithms=["HS256"])["sid"] == claims["sid"]
        assert read_me(base_url, second["access_token"]) == (200, me)
        reused = token_request(base_url, grant_type="refresh_token", refresh_token=body["refresh_token"])
        assert (reused.status_code, reused.json()) == (
            400,
            {
                "error": "invalid_grant",
                "error_description": "The refresh token was already used, so its session has been ended: log in again",
            },
        )
        assert read_me(base_url, second["access_token"]) == (401, {"detail": "Could not validate credentials"})

        third = token_request(base_url, **alice).json()
        assert read_me(base_url, third["access_token"]) == (200, me)
        logout = httpx.post(
            f"{base_url}/logout", headers={"Authorization": f"Bearer {third['access_token']}"}, timeout=10
        )
        assert (logout.status_code, logout.content) == (204, b"")
        assert read_me(base_url, third["access_token"]) == (401, {"detail": "Could not validate credentials"})
        after_logout = token_request(base_url, grant_type="refresh_token", refresh_token=third["refresh_token"])
        assert (after_logout.status_code, after_logout.json()["error"]) == (400, "invalid_grant")

        fourth = token_request(base_url, **alice).json()
        other_secret = pyjwt.encode({"sub": user_id, "sid": claims["sid"], "exp": 4102444800}, secrets.token_hex(32))
        for bad in (other_secret, tampered(fourth["access_token"], {"sub": str(uuid.uuid4())}), "garbage"):
            response = httpx.get(f"{base_url}/users/me", headers={"Authorization": f"Bearer {bad}"}, timeout=10)
            assert (response.status_code, response.json()) == (401, {"detail": "Could not validate credentials"})
            assert response.headers["www-authenticate"] == "Bearer"
        assert read_me(base_url, fourth["access_token"]) == (200, me)
    finally:
        stop(process)
        log.close()
    assert "Traceback" not in (tmp_path / "uvicorn.out").read_text()


def test_the_tokens_only_recipe_will_not_start_with_a_weak_secret(tokens_project):
    folder, environment = tokens_project
    environment |= {"APP_SECRET": "mysecretkey123", "ALICE_PASSWORD": "a long password for alice"}
    result = subprocess.run(
        python("-c", "import main"), cwd=folder, env=environment, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 1
    assert result.stderr.splitlines()[-1] == (
        "auth.tokens.SecretKeyError: APP_SECRET holds about 72 bits of randomness; HS256 needs at least 256 "
        '(RFC 7518, section 3.2): make one with: python -c "import secrets; print(secrets.token_hex(32))"'
    )


@pytest.fixture
def verifier_project(tmp_path):
    writes = {"auth/__init__.py": "", "main.py": the_readmes_main_py()}
    return tmp_path / "project", make_project(tmp_path / "project", VERIFIER_FILES, VERIFIER_PACKAGES, writes)


def test_nothing_outside_the_recipe_is_importable_in_its_folder(verifier_project):
    folder, environment = verifier_project
    probe = (
        "import importlib\n"
        "for name in ('lesson_code', 'sqlalchemy', 'pwdlib', 'limits', 'pydantic_settings', 'jwt'):\n"
        "    try:\n"
        "        importlib.import_module(name)\n"
        "        print(name, 'imported')\n"
        "    except ModuleNotFoundError:\n"
        "        print(name, 'missing')\n"
        "import auth.jwks_verify, fastapi, httpx, jose, uvicorn\n"
        "print('recipe imports')\n"
    )
    result = subprocess.run(
        python("-c", probe), cwd=folder, env=environment, capture_output=True, text=True, timeout=60, check=False
    )
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout.splitlines() == [
        "lesson_code missing",
        "sqlalchemy missing",
        "pwdlib missing",
        "limits missing",
        "pydantic_settings missing",
        "jwt missing",
        "recipe imports",
    ]


def whoami(base_url: str, token: str) -> tuple:
    response = httpx.get(f"{base_url}/whoami", headers={"Authorization": f"Bearer {token}"}, timeout=10)
    return response.status_code, response.json(), response.headers.get("www-authenticate")


@pytest.mark.parametrize("db", ["sqlite"], indirect=True)
def test_the_verifier_recipe_accepts_the_issuers_tokens_and_refuses_others(db, tmp_path, verifier_project):
    folder, environment = verifier_project
    with serving_the_service(db.url, jwt_algorithm="ES256", jwt_key_dir=tmp_path / "keys") as issuer_url:
        port = free_port()
        environment |= {"ISSUER": DEFAULT_ISSUER, "JWKS_URL": f"{issuer_url}/.well-known/jwks.json"}
        log = open(tmp_path / "uvicorn.out", "wb")  # noqa: SIM115  (closed below, after the process)
        command = python("-m", "uvicorn", "main:app", "--host", "127.0.0.1", "--port", str(port))
        process = subprocess.Popen(command, cwd=folder, env=environment, stdout=log, stderr=subprocess.STDOUT)
        base_url = f"http://127.0.0.1:{port}"
        try:
            wait_until_answering(f"{base_url}/openapi.json", process, (tmp_path / "uvicorn.out").read_text)
            form = {"username": "alice", "password": "wonderland"}
            alice = httpx.post(f"{issuer_url}/token", data=form, timeout=30).json()
            assert whoami(base_url, alice["access_token"]) == (200, {"username": "alice", "scope": "me"}, None)
            refreshed = httpx.post(
                f"{issuer_url}/token", data={"grant_type": "refresh_token", "refresh_token": alice["refresh_token"]}
            ).json()
            assert whoami(base_url, refreshed["access_token"]) == (200, {"username": "alice", "scope": "me"}, None)
            forged = tampered(refreshed["access_token"], {"sub": "carol", "scope": "me admin"})
            for bad in (forged, "garbage", alice["refresh_token"]):
                assert whoami(base_url, bad) == CANNOT_VALIDATE
            bearer = {"Authorization": f"Bearer {refreshed['access_token']}"}
            assert httpx.post(f"{issuer_url}/logout", headers=bearer).status_code == 204
            assert httpx.get(f"{issuer_url}/users/me", headers=bearer).status_code == 401  # the issuer knows
            assert whoami(base_url, refreshed["access_token"])[0] == 200  # the verifier cannot: until exp
        finally:
            stop(process)
            log.close()
        assert "Traceback" not in (tmp_path / "uvicorn.out").read_text()
