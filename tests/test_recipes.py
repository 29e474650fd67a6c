"""The README's recipe, as a copy-paster follows it: a verifier microservice made of lesson_code/tokens.py,
lesson_code/jwks_verify.py and the README's own main.py, in an empty folder where only the recipe's packages can be
imported, run under uvicorn against the real issuer (lesson_code.service signing ES256)."""

import re
import subprocess

import httpx
import pytest
from conftest import serving_the_service
from forge import tampered

from tests.utils.recipes import REPO_ROOT, make_project, python
from tests.utils.uvicorn_process import free_port, wait_until_answering

README = (REPO_ROOT / "README.md").read_text()
SECTION = README[README.index("## Take the verifier into your service") : README.index("## Running it in production")]
VERIFIER_FILES = {"lesson_code/tokens.py": "auth/tokens.py", "lesson_code/jwks_verify.py": "auth/jwks_verify.py"}
VERIFIER_PACKAGES = ["fastapi", "uvicorn", "httpx", "python-jose[cryptography]"]
DEFAULT_ISSUER = "http://127.0.0.1:8000"  # the service's JWT_ISSUER when unset: the iss of its tokens
CANNOT_VALIDATE = (401, {"detail": "Could not validate credentials"}, "Bearer")


def the_readmes_main_py() -> str:
    return re.search(r"```python\n(.*?)```", SECTION, re.S).group(1)


def test_the_recipe_names_the_files_and_packages_the_test_uses():
    assert all(f"`{source}`" in SECTION for source in VERIFIER_FILES)
    assert 'pip install fastapi uvicorn httpx "python-jose[cryptography]"' in SECTION


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
            process.terminate()
            process.wait(30)
            log.close()
        assert "Traceback" not in (tmp_path / "uvicorn.out").read_text()
