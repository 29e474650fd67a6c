import os
import secrets

# Every test process signs with a fresh random key, set before lesson_code.tokens is imported,
# so the suite never writes a .jwt_secret file into the checkout.
os.environ["JWT_SECRET_KEY"] = secrets.token_hex(32)

import pytest


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
