"""A real OAuth2 client that no one here wrote, Authlib's, logs in with the password grant and refreshes by itself."""

import time
import warnings

import httpx
import pytest
from authlib.deprecate import AuthlibDeprecationWarning
from conftest import serving_the_service
from forge import ALICE

from lesson_code.sessions import REFRESH_TOKEN_REUSED, SESSION_ENDED
from tests.utils.databases import Database

with warnings.catch_warnings():  # Authlib would rather use httpx2, a fork of httpx; the lessons use httpx
    warnings.simplefilter("ignore", AuthlibDeprecationWarning)
    from authlib.integrations.httpx_client import OAuth2Client, OAuthError

ACCESS_SECONDS = 2


@pytest.fixture
def live_service(db: Database):
    """The service under uvicorn on 127.0.0.1 (a thread of this process), its access tokens living 2 seconds."""
    with serving_the_service(db.url, access_token_minutes=ACCESS_SECONDS / 60) as base_url:
        yield base_url


def test_authlib_logs_in_and_refreshes_by_itself(live_service):
    updates = []

    def update_token(token, refresh_token=None, access_token=None):
        updates.append((dict(token), refresh_token))

    client = OAuth2Client(
        client_id="lesson-client",
        token_endpoint=f"{live_service}/token",
        token_endpoint_auth_method="none",  # a public client (RFC 6749, section 2.1)
        update_token=update_token,
        leeway=0,
        timeout=30,
    )
    with client:
        first = dict(client.fetch_token(username="alice", password="wonderland"))
        assert (first["token_type"], first["expires_in"]) == ("bearer", ACCESS_SECONDS)
        assert sorted(first) == ["access_token", "expires_at", "expires_in", "refresh_token", "scope", "token_type"]
        assert client.get(f"{live_service}/users/me").json() == ALICE
        assert updates == []

        time.sleep(max(0.0, first["expires_at"] - time.time()) + 0.1)  # at most 2.1 s: the access token expires
        response = client.get(f"{live_service}/users/me")

        assert response.json() == ALICE
        assert len(updates) == 1
        renewed, spent = updates[0]
        assert spent == first["refresh_token"]
        assert renewed["refresh_token"] != first["refresh_token"]
        assert response.request.headers["authorization"] == f"Bearer {renewed['access_token']}"

        replay = httpx.post(
            f"{live_service}/token", data={"grant_type": "refresh_token", "refresh_token": first["refresh_token"]}
        )
        assert (replay.status_code, replay.json()) == (
            400,
            {"error": "invalid_grant", "error_description": REFRESH_TOKEN_REUSED},
        )
        assert client.get(f"{live_service}/users/me").status_code == 401  # the replay ended the client's session
        with pytest.raises(OAuthError) as refused:
            client.refresh_token()
        assert (refused.value.error, refused.value.description) == ("invalid_grant", SESSION_ENDED)
