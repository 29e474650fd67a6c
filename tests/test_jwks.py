"""lesson_code/service.py signing with keys (JWT_ALGORITHM=ES256, and RS256): the JWK Set it publishes, its tokens
checked by PyJWT (PyJWKClient over real HTTP), PyJWT's tokens made with our key accepted, and a rotation played out.

On SQLite only: the key directory, not the database, is what these tests are about.
"""

import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx
import jwt as pyjwt
import pytest
from conftest import serving_the_service

from lesson_code import keys
from lesson_code.keys import KeyStoreError
from lesson_code.tokens import create_access_token, decode_access_token
from tests.forge import ALICE
from tests.utils.keys_forge import hmac_signed, public_key_der

pytestmark = pytest.mark.parametrize("db", ["sqlite"], indirect=True)

JWKS_PATH = "/.well-known/jwks.json"
DEFAULT_ISSUER = "http://127.0.0.1:8000"
DEFAULT_AUDIENCE = "jwt-lesson-api"
CACHE_CONTROL = "public, max-age=5"
NO_PUBLIC_KEYS = {
    "detail": "This service signs with HS256, a shared secret: it has no public key to publish (JWT_ALGORITHM)"
}
CANNOT_VALIDATE = {"detail": "Could not validate credentials"}
ALICES_PASSWORD = "wonderland"
PRIVATE_MEMBERS = ("d", "p", "q", "dp", "dq", "qi", "oth", "k", "r", "t")  # RFC 7518 sections 6.2.2, 6.3.2, 6.4
EC_PUBLIC_MEMBERS = {"kty", "crv", "x", "y", "kid", "alg", "use"}
RSA_PUBLIC_MEMBERS = {"kty", "n", "e", "kid", "alg", "use"}
LONGEST = timedelta(minutes=15)  # ACCESS_TOKEN_MINUTES' default
CHECK_WITHIN_SECONDS = 5.0  # the service looks at its key directory every second: generous for a loaded machine


@pytest.fixture
def key_dir(tmp_path: Path) -> Path:
    return tmp_path / "keys"


@pytest.fixture
def es256_service(start_service, key_dir):
    return start_service(jwt_algorithm="ES256", jwt_key_dir=key_dir)


def login(client, username="alice", password=ALICES_PASSWORD):
    response = client.post("/token", data={"username": username, "password": password})
    assert response.status_code == 200, response.text
    return response.json()


def refresh(client, refresh_token):
    response = client.post("/token", data={"grant_type": "refresh_token", "refresh_token": refresh_token})
    assert response.status_code == 200, response.text
    return response.json()


def me(client, access_token):
    return client.get("/users/me", headers={"Authorization": f"Bearer {access_token}"})


def assert_refused(response):
    assert (response.status_code, response.json()) == (401, CANNOT_VALIDATE)
    assert response.headers["www-authenticate"] == "Bearer"


def assert_public_only(jwks: dict) -> None:
    """No key of the set holds a private member (RFC 7518 section 6): whoever reads it could sign as the issuer."""
    for key in jwks["keys"]:
        leaked = sorted(set(key) & set(PRIVATE_MEMBERS))
        assert not leaked, f"key {key.get('kid')!r} publishes private members {leaked}"


def kid_of(token: str) -> str:
    return pyjwt.get_unverified_header(token)["kid"]


def key_files(key_dir: Path) -> list[str]:
    return sorted(path.stem for path in key_dir.glob("*.json"))


def jwks_once_it_holds(client, kids: list[str]) -> dict:
    """GET the JWKS until it lists exactly kids (the service re-reads its key directory once a second)."""
    deadline = time.monotonic() + CHECK_WITHIN_SECONDS
    while True:
        response = client.get(JWKS_PATH)
        assert response.status_code == 200, response.text
        body = response.json()
        if [key["kid"] for key in body["keys"]] == kids or time.monotonic() > deadline:
            return body
        time.sleep(0.05)


def verified_by_pyjwt(token: str, public_jwk: dict, issuer: str = DEFAULT_ISSUER) -> dict:
    key = pyjwt.PyJWK(public_jwk).key
    return pyjwt.decode(token, key, algorithms=[public_jwk["alg"]], audience=DEFAULT_AUDIENCE, issuer=issuer)


# The published key set


def test_the_jwks_publishes_the_signing_keys_public_members_only(es256_service, key_dir):
    response = es256_service.get(JWKS_PATH)
    ring = keys.load_keys(key_dir)
    signing = ring.signing
    assert response.status_code == 200
    assert response.headers["cache-control"] == CACHE_CONTROL
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {
        "keys": [
            {
                "kty": "EC",
                "crv": "P-256",
                "x": signing.jwk["x"],
                "y": signing.jwk["y"],
                "kid": signing.kid,
                "alg": "ES256",
                "use": "sig",
            }
        ]
    }
    assert [set(key) for key in response.json()["keys"]] == [EC_PUBLIC_MEMBERS]
    assert_public_only(response.json())
    assert key_files(key_dir) == [signing.kid]
    assert signing.kid == keys.thumbprint(response.json()["keys"][0])


def test_the_private_member_check_fails_on_a_key_set_that_leaks_one(es256_service, key_dir):
    signing = keys.load_keys(key_dir).signing
    with pytest.raises(AssertionError, match=r"publishes private members \['d'\]"):
        assert_public_only({"keys": [signing.jwk]})
    for member in PRIVATE_MEMBERS:
        with pytest.raises(AssertionError):
            assert_public_only({"keys": [{**signing.public_jwk(), member: "AAAA"}]})


def test_an_hs256_service_has_no_key_set_to_publish(start_service, key_dir):
    client = start_service(jwt_key_dir=key_dir)
    response = client.get(JWKS_PATH)
    assert (response.status_code, response.json()) == (404, NO_PUBLIC_KEYS)
    assert "public" not in response.headers.get("cache-control", "")
    assert not key_dir.exists()  # HS256 makes no key
    assert pyjwt.get_unverified_header(login(client)["access_token"]) == {"alg": "HS256", "typ": "JWT"}


def test_a_bad_key_directory_stops_start_up_in_one_line(start_service, tmp_path, key_dir):
    (tmp_path / "elsewhere").mkdir(0o700)
    key_dir.symlink_to(tmp_path / "elsewhere")
    with pytest.raises(KeyStoreError) as caught:
        start_service(jwt_algorithm="ES256", jwt_key_dir=key_dir)
    assert str(caught.value) == (
        f"{key_dir} is a symbolic link, so someone else may have chosen the keys; point JWT_KEY_DIR at a folder"
    )


# Tokens of an ES256 service


def test_login_gives_an_es256_token_naming_a_published_key_for_our_issuer_and_audience(es256_service):
    tokens = login(es256_service)
    jwks = es256_service.get(JWKS_PATH).json()
    header = pyjwt.get_unverified_header(tokens["access_token"])
    assert header == {"alg": "ES256", "typ": "JWT", "kid": jwks["keys"][0]["kid"]}
    claims = verified_by_pyjwt(tokens["access_token"], jwks["keys"][0])
    assert {name: claims[name] for name in ("sub", "scope", "iss", "aud")} == {
        "sub": "alice",
        "scope": "me",
        "iss": DEFAULT_ISSUER,
        "aud": DEFAULT_AUDIENCE,
    }
    assert isinstance(claims["sid"], str) and claims["sid"]
    assert (claims["exp"] - claims["iat"], tokens["expires_in"]) == (900, 900)
    response = me(es256_service, tokens["access_token"])
    assert (response.status_code, response.json()) == (200, ALICE)
    refresh_header = pyjwt.get_unverified_header(tokens["refresh_token"])
    assert refresh_header == {"alg": "HS256", "typ": "refresh+jwt"}  # read by this service alone: stays HS256


def test_refresh_gives_an_es256_token_of_the_same_session(es256_service):
    first = login(es256_service)
    second = refresh(es256_service, first["refresh_token"])
    jwks = es256_service.get(JWKS_PATH).json()
    before, after = (verified_by_pyjwt(pair["access_token"], jwks["keys"][0]) for pair in (first, second))
    assert kid_of(second["access_token"]) == kid_of(first["access_token"]) == jwks["keys"][0]["kid"]
    assert (after["sid"], after["iss"], after["aud"]) == (before["sid"], DEFAULT_ISSUER, DEFAULT_AUDIENCE)
    response = me(es256_service, second["access_token"])
    assert (response.status_code, response.json()) == (200, ALICE)


def test_revoking_an_es256_access_token_ends_its_session(es256_service):
    tokens = login(es256_service)
    response = es256_service.post("/revoke", data={"token": tokens["access_token"]})
    assert (response.status_code, response.content) == (200, b"")
    assert_refused(me(es256_service, tokens["access_token"]))
    response = es256_service.post(
        "/token", data={"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]}
    )
    assert (response.status_code, response.json()["error"]) == (400, "invalid_grant")


def test_issuer_and_audience_come_from_the_settings(start_service, key_dir):
    client = start_service(
        jwt_algorithm="ES256", jwt_key_dir=key_dir, jwt_issuer="https://id.example", jwt_audience="orders"
    )
    token = login(client)["access_token"]
    claims = pyjwt.decode(
        token,
        pyjwt.PyJWK(client.get(JWKS_PATH).json()["keys"][0]).key,
        algorithms=["ES256"],
        audience="orders",
        issuer="https://id.example",
    )
    assert (claims["iss"], claims["aud"]) == ("https://id.example", "orders")
    assert me(client, token).status_code == 200


def test_an_hs256_token_is_refused_by_an_es256_service(es256_service, key_dir):
    claims = pyjwt.decode(login(es256_service)["access_token"], options={"verify_signature": False})
    hs256 = create_access_token({"sub": "alice", "sid": claims["sid"], "scope": "me"})
    assert decode_access_token(hs256)["sid"] == claims["sid"]  # valid under HS256, with the service's own secret
    assert_refused(me(es256_service, hs256))

    signing = keys.load_keys(key_dir).signing
    confused = hmac_signed(public_key_der(signing), {"alg": "HS256", "typ": "JWT", "kid": signing.kid}, claims)
    assert_refused(me(es256_service, confused))  # CVE-2024-33663: the public key as an HMAC secret


def test_an_es256_token_is_refused_by_an_hs256_service(start_service, key_dir, es256_service):
    es256_token = login(es256_service)["access_token"]
    hs256_service = start_service(jwt_algorithm="HS256")
    assert_refused(me(hs256_service, es256_token))


# PyJWT, a client no one here wrote, over real HTTP


def test_pyjwkclient_verifies_our_tokens_and_we_accept_pyjwts_made_with_our_key(db, key_dir):
    with serving_the_service(db.url, jwt_algorithm="ES256", jwt_key_dir=key_dir) as base_url:
        response = httpx.post(f"{base_url}/token", data={"username": "alice", "password": ALICES_PASSWORD})
        assert response.status_code == 200, response.text
        tokens = response.json()
        client = pyjwt.PyJWKClient(f"{base_url}{JWKS_PATH}", cache_keys=False)
        signing_key = client.get_signing_key_from_jwt(tokens["access_token"])
        claims = pyjwt.decode(
            tokens["access_token"],
            signing_key.key,
            algorithms=["ES256"],
            audience=DEFAULT_AUDIENCE,
            issuer=DEFAULT_ISSUER,
        )
        assert (signing_key.key_id, claims["sub"], claims["scope"]) == (kid_of(tokens["access_token"]), "alice", "me")

        our_key = keys.load_keys(key_dir).signing  # the private JWK, read from its key file
        now = int(time.time())
        made_by_pyjwt = pyjwt.encode(
            {**{name: claims[name] for name in ("sub", "sid", "scope", "iss", "aud")}, "iat": now, "exp": now + 60},
            pyjwt.PyJWK(our_key.jwk).key,
            algorithm="ES256",
            headers={"kid": our_key.kid},
        )
        bearer = {"Authorization": f"Bearer {made_by_pyjwt}"}
        response = httpx.get(f"{base_url}/users/me", headers=bearer)
        assert (response.status_code, response.json()) == (200, ALICE)

        for changes in ({"aud": "another-api"}, {"iss": "https://evil.example"}):
            wrong = pyjwt.encode(
                {**claims, **changes}, pyjwt.PyJWK(our_key.jwk).key, algorithm="ES256", headers={"kid": our_key.kid}
            )
            response = httpx.get(f"{base_url}/users/me", headers={"Authorization": f"Bearer {wrong}"})
            assert (response.status_code, response.json()) == (401, CANNOT_VALIDATE), changes


# A rotation played out


def test_a_rotation_publishes_the_new_key_before_it_signs_and_logs_no_one_out(es256_service, key_dir, monkeypatch):
    monkeypatch.setattr(keys, "PUBLISH_AHEAD_SECONDS", 3600)  # however slow this machine, the new key waits
    before = login(es256_service)
    old_kid = kid_of(before["access_token"])
    new_key = keys.rotate(key_dir, "ES256", datetime.now(timezone.utc))  # what `keys rotate` does

    jwks = jwks_once_it_holds(es256_service, [old_kid, new_key.kid])
    assert [key["kid"] for key in jwks["keys"]] == [old_kid, new_key.kid]
    assert jwks["keys"][1] == new_key.public_jwk()
    assert_public_only(jwks)
    assert kid_of(login(es256_service)["access_token"]) == old_kid  # published, not signing yet

    # It signs PUBLISH_AHEAD_SECONDS (10) after it was made: rather than wait that long, the test makes it now.
    monkeypatch.setattr(keys, "PUBLISH_AHEAD_SECONDS", 0)
    response = me(es256_service, before["access_token"])
    assert (response.status_code, response.json()) == (200, ALICE)
    after = login(es256_service)
    assert kid_of(after["access_token"]) == new_key.kid
    assert verified_by_pyjwt(after["access_token"], jwks["keys"][1])["sub"] == "alice"
    assert me(es256_service, after["access_token"]).status_code == 200
    refreshed = refresh(es256_service, before["refresh_token"])
    assert kid_of(refreshed["access_token"]) == new_key.kid
    assert me(es256_service, refreshed["access_token"]).status_code == 200


def test_a_retired_key_leaves_the_jwks_once_no_token_of_it_can_be_valid(start_service, key_dir):
    now = datetime.now(timezone.utc)
    first = keys.rotate(key_dir, "ES256", now - timedelta(hours=1))
    client = start_service(jwt_algorithm="ES256", jwt_key_dir=key_dir)
    old_token = login(client)["access_token"]
    assert kid_of(old_token) == first.kid
    # A rotation dated as signing for longer than a token's lifetime and the leeway: the first key is prunable at
    # once, which saves waiting 15 minutes and 40 seconds for what the unit tests check at the exact boundary.
    made = now - LONGEST - timedelta(seconds=keys.LEEWAY_SECONDS + keys.PUBLISH_AHEAD_SECONDS + 1)
    second = keys.rotate(key_dir, "ES256", made)

    jwks = jwks_once_it_holds(client, [second.kid])
    assert jwks == {"keys": [second.public_jwk()]}
    assert_refused(me(client, old_token))
    assert kid_of(login(client)["access_token"]) == second.kid
    assert key_files(key_dir) == sorted([first.kid, second.kid])  # unpublished, not yet deleted: `keys prune` does
    assert [key.kid for key in keys.prune(key_dir, datetime.now(timezone.utc), LONGEST)] == [first.kid]
    assert key_files(key_dir) == [second.kid]
    assert client.get(JWKS_PATH).json() == {"keys": [second.public_jwk()]}


# RS256


def test_an_rs256_service_works_end_to_end(start_service, key_dir):
    client = start_service(jwt_algorithm="RS256", jwt_key_dir=key_dir)
    response = client.get(JWKS_PATH)
    assert (response.status_code, response.headers["cache-control"]) == (200, CACHE_CONTROL)
    (published,) = response.json()["keys"]
    assert set(published) == RSA_PUBLIC_MEMBERS
    assert (published["kty"], published["alg"], published["e"], published["use"]) == ("RSA", "RS256", "AQAB", "sig")
    assert_public_only(response.json())
    signing = keys.load_keys(key_dir).signing
    assert (published, len(pyjwt.PyJWK(published).key.public_numbers().n.to_bytes(256, "big"))) == (
        signing.public_jwk(),
        256,
    )

    tokens = login(client)
    assert pyjwt.get_unverified_header(tokens["access_token"]) == {"alg": "RS256", "typ": "JWT", "kid": signing.kid}
    assert verified_by_pyjwt(tokens["access_token"], published)["sub"] == "alice"
    response = me(client, tokens["access_token"])
    assert (response.status_code, response.json()) == (200, ALICE)
    refreshed = refresh(client, tokens["refresh_token"])
    assert verified_by_pyjwt(refreshed["access_token"], published)["sub"] == "alice"
    assert me(client, refreshed["access_token"]).status_code == 200
