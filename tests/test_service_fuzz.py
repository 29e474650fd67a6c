"""schemathesis over service.py's OpenAPI schema: whatever the request, no 5xx, and every answer as documented."""

import pytest
import schemathesis
from conftest import argon2_hash
from hypothesis import HealthCheck, settings

from lesson_code import sessions, store
from lesson_code.service import app
from lesson_code.settings import get_settings
from tests.utils.databases import Database

schema = schemathesis.openapi.from_asgi("/openapi.json", app)
signed_in_schema = schemathesis.openapi.from_asgi("/openapi.json", app)


@pytest.fixture
def on_a_seeded_database(db: Database, monkeypatch):
    """The service's lifespan (which schemathesis starts) opens db's database, the demo users in it."""
    store.create_schema(db.engine)
    store.seed_demo_users(db.engine, argon2_hash)
    monkeypatch.setenv("DATABASE_URL", db.url)
    get_settings.cache_clear()
    yield db
    get_settings.cache_clear()


@signed_in_schema.auth(refresh_interval=None)
class AliceInANewSession:
    def get(self, case, context):
        engine = store.make_engine(get_settings().database_url, pool_size=1)
        try:
            return sessions.log_in(engine, "alice", "me", store.utc_now(), sessions.Lifetimes()).access_token
        finally:
            engine.dispose()

    def set(self, case, data, context):
        case.headers = {**(case.headers or {}), "Authorization": f"Bearer {data}"}


@schema.parametrize()
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_schema_fuzz_no_5xx_and_responses_match_the_schema(case, on_a_seeded_database):
    case.call_and_validate()


@signed_in_schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_schema_fuzz_signed_in_as_alice(case, on_a_seeded_database):
    case.call_and_validate()
