"""schemathesis over service.py's OpenAPI schema: whatever the request, no 5xx, and every answer as documented:
anonymous, signed in as alice (scope me: the admin routes answer 403), and as carol (me admin: they answer)."""

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
admin_schema = schemathesis.openapi.from_asgi("/openapi.json", app)


@pytest.fixture
def on_a_seeded_database(db: Database, monkeypatch):
    """The service's lifespan (which schemathesis starts) opens db's database, the demo users in it."""
    store.create_schema(db.engine)
    store.seed_demo_users(db.engine, argon2_hash)
    monkeypatch.setenv("DATABASE_URL", db.url)
    get_settings.cache_clear()
    yield db
    get_settings.cache_clear()


def access_token_in_a_new_session(username: str, scope: str) -> str:
    engine = store.make_engine(get_settings().database_url, pool_size=1)
    try:
        users = store.LessonUsers(engine)
        account = users.by_login(username)
        return sessions.log_in(engine, users, account, scope, store.utc_now(), sessions.Lifetimes()).access_token
    finally:
        engine.dispose()


class BearerInANewSession:
    username, scope = "alice", "me"

    def get(self, case, context):
        return access_token_in_a_new_session(self.username, self.scope)

    def set(self, case, data, context):
        case.headers = {**(case.headers or {}), "Authorization": f"Bearer {data}"}


@signed_in_schema.auth(refresh_interval=None)
class AliceInANewSession(BearerInANewSession):
    username, scope = "alice", "me"


@admin_schema.auth(refresh_interval=None)
class CarolInANewSession(BearerInANewSession):
    username, scope = "carol", "me admin"


@schema.parametrize()
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_schema_fuzz_no_5xx_and_responses_match_the_schema(case, on_a_seeded_database):
    case.call_and_validate()


@signed_in_schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_schema_fuzz_signed_in_as_alice(case, on_a_seeded_database):
    case.call_and_validate()


@admin_schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_schema_fuzz_signed_in_as_carol_an_admin(case, on_a_seeded_database):
    case.call_and_validate()
