import contextlib
import functools
import os
import secrets
import tempfile
from collections.abc import Iterator

import pytest

from lesson_code import passwords
from lesson_code.secret_file import get_secret_key
from lesson_code.settings import get_settings
from tests.utils.databases import Database, db  # noqa: F401  (the fixture: SQLite, then PostgreSQL)
from tests.utils.postgres import postgres_server  # noqa: F401  (the fixture, used through db)

# Importing lesson_code reads nothing: the secret is read on first use. Every test process signs with a fresh random
# key, and a secret file could only be made in a folder that does not exist, so the suite never writes .jwt_secret
# into the checkout. Set before any test module is imported: even one that signs at import time finds them.
os.environ["JWT_SECRET_KEY"] = secrets.token_hex(32)
os.environ["JWT_SECRET_FILE"] = os.path.join(tempfile.gettempdir(), f"no-such-folder-{os.getpid()}", ".jwt_secret")


@pytest.fixture(autouse=True)
def _secret_and_settings_read_afresh():
    """Each test reads the secret and the settings from its own environment, not ones an earlier test cached."""
    get_secret_key.cache_clear()
    get_settings.cache_clear()
    yield
    get_secret_key.cache_clear()
    get_settings.cache_clear()


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


@functools.cache
def argon2_hash(password: str) -> str:
    """A real Argon2id hash, made once per password for the whole run."""
    from lesson_code.passwords import password_hash

    return password_hash.hash(password)


@pytest.fixture
def start_service(db: Database, monkeypatch):  # noqa: F811  (db: the fixture imported above)
    """Start lesson_code.service on the db fixture's database, settings given as keyword arguments; its TestClient.

    The demo users are seeded beforehand with cached hashes (the service would hash them itself) unless seeded=False.
    """
    from fastapi.testclient import TestClient

    from lesson_code import store
    from lesson_code.service import app
    from lesson_code.settings import get_settings

    clients = []

    def start(seeded: bool = True, **settings) -> TestClient:
        if seeded:
            store.create_schema(db.engine)
            store.seed_demo_users(db.engine, argon2_hash)
        monkeypatch.setenv("DATABASE_URL", db.url)
        for name, value in settings.items():
            monkeypatch.setenv(name.upper(), str(value))
        get_settings.cache_clear()
        client = TestClient(app)
        entered = client.__enter__()
        clients.append(client)
        return entered

    yield start
    app.dependency_overrides.clear()
    for client in clients:
        client.__exit__(None, None, None)
    get_settings.cache_clear()


@contextlib.contextmanager
def serving_the_service(database_url: str, *, asgi_app=None, **settings) -> Iterator[str]:
    """lesson_code.service under uvicorn on 127.0.0.1 (a thread of this process), on database_url with the demo users
    seeded (cached hashes) and settings as keyword arguments; yields its base URL, stops it afterwards. asgi_app: what
    to serve instead of the service's app (the app wrapped, say, to record what it is asked)."""
    from lesson_code import store
    from lesson_code.service import app
    from lesson_code.settings import get_settings
    from notebooks.helpers.local_server import serve_in_background

    engine = store.make_engine(database_url, pool_size=1)
    try:
        store.create_schema(engine)
        store.seed_demo_users(engine, argon2_hash)
    finally:
        engine.dispose()
    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.setenv("DATABASE_URL", database_url)
        for name, value in settings.items():
            monkeypatch.setenv(name.upper(), str(value))
        get_settings.cache_clear()
        try:
            with serve_in_background(app if asgi_app is None else asgi_app) as base_url:
                yield base_url
        finally:
            get_settings.cache_clear()


@pytest.fixture
def service_server(db: Database) -> Iterator[str]:  # noqa: F811  (db: the fixture imported above)
    """lesson_code.service under uvicorn on 127.0.0.1, on SQLite and then on PostgreSQL: its base URL."""
    with serving_the_service(db.url) as base_url:
        yield base_url


@pytest.fixture
def service(start_service):
    """lesson_code.service with its default settings, on SQLite and then on PostgreSQL."""
    return start_service()


@pytest.fixture
def hashed(monkeypatch):
    """The hashes password_hash.verify was asked to check, in order."""
    calls = []
    verify = passwords.password_hash.verify

    def recording_verify(password, hashed_password):
        calls.append(hashed_password)
        return verify(password, hashed_password)

    monkeypatch.setattr(passwords.password_hash, "verify", recording_verify)
    return calls
