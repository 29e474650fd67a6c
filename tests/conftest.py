import os
import secrets
import tempfile

import pytest

from lesson_code.tokens import get_secret_key

# Importing lesson_code reads nothing: the secret is read on first use. Every test process signs with a fresh random
# key, and a secret file could only be made in a folder that does not exist, so the suite never writes .jwt_secret
# into the checkout. Set before any test module is imported: even one that signs at import time finds them.
os.environ["JWT_SECRET_KEY"] = secrets.token_hex(32)
os.environ["JWT_SECRET_FILE"] = os.path.join(tempfile.gettempdir(), f"no-such-folder-{os.getpid()}", ".jwt_secret")


@pytest.fixture(autouse=True)
def _secret_read_afresh():
    """Each test reads the secret from its own environment, not one an earlier test cached."""
    get_secret_key.cache_clear()
    yield
    get_secret_key.cache_clear()


@pytest.fixture
def secret_key() -> str:
    """The secret the lesson's code signs with in this test."""
    return get_secret_key()


@pytest.fixture(scope="module")
def live_server():
    """The lesson's app under uvicorn on 127.0.0.1, in a background thread, stopped after the module's tests."""
    from lesson_code.app import app
    from notebooks.helpers.local_server import serve_in_background

    with serve_in_background(app) as base_url:
        yield base_url


@pytest.fixture(scope="module")
def client():
    """The lesson's app, called in-process."""
    from fastapi.testclient import TestClient

    from lesson_code.app import app

    with TestClient(app) as client:
        yield client
