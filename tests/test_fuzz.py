"""Hostile input, generated: hypothesis properties for tokens.py and the app, schemathesis over the OpenAPI schema."""

import string
from datetime import timedelta

import schemathesis
from forge import forge
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lesson_code.app import app
from lesson_code.secret_file import get_secret_key
from lesson_code.tokens import TokenError, create_access_token, decode_access_token

# Claims python-jose checks by itself when present; the rest are the caller's own.
REGISTERED = {"exp", "iat", "nbf", "sub", "aud", "iss", "jti", "at_hash"}
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=10,
)
extra_claims = st.dictionaries(st.text(max_size=10).filter(lambda key: key not in REGISTERED), json_values, max_size=5)
any_claims = st.dictionaries(st.sampled_from(sorted(REGISTERED)) | st.text(max_size=5), json_values, max_size=6)
base64url_text = st.text(alphabet=string.ascii_letters + string.digits + "-_", max_size=60)
token_like = st.one_of(
    st.text(max_size=300),
    st.lists(base64url_text, min_size=1, max_size=5).map(".".join),
    st.builds(lambda header, claims: forge(header, claims), any_claims, any_claims),
    st.builds(lambda header, claims: forge(header, claims, get_secret_key()), any_claims, any_claims),
    st.builds(lambda claims: forge({"alg": "HS256"}, claims, get_secret_key()), any_claims),
)
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(subject=st.text(), claims=extra_claims, minutes=st.integers(min_value=1, max_value=60 * 24 * 365))
def test_round_trip_keeps_every_claim(subject, claims, minutes):
    decoded = decode_access_token(
        create_access_token({**claims, "sub": subject}, expires_delta=timedelta(minutes=minutes))
    )
    assert decoded.pop("exp") - decoded.pop("iat") == minutes * 60
    assert decoded == {**claims, "sub": subject}


@FUZZ
@given(token=token_like)
def test_decode_raises_only_token_error_for_any_text(token):
    try:
        claims = decode_access_token(token)
    except TokenError as error:
        assert str(error)
    else:
        assert isinstance(claims["sub"], str)


header_values = st.one_of(
    st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=255), max_size=300),
    token_like.map(lambda token: f"Bearer {token}"),
).filter(lambda value: all(32 <= ord(char) < 256 for char in value))  # what an HTTP header can carry


@FUZZ
@given(authorization=header_values)
def test_the_app_answers_any_authorization_header_with_200_400_or_401(client, authorization):
    response = client.get("/users/me", headers={"Authorization": authorization.encode("latin-1")})
    assert response.status_code in (200, 400, 401), response.text
    if response.status_code == 401:
        assert response.headers["www-authenticate"] == "Bearer"
    if response.status_code == 400:
        assert response.json() == {"detail": "Inactive user"}


schema = schemathesis.openapi.from_asgi("/openapi.json", app)
signed_in_schema = schemathesis.openapi.from_asgi("/openapi.json", app)


@signed_in_schema.auth()
class AliceToken:
    def get(self, case, context):
        return create_access_token({"sub": "alice"})

    def set(self, case, data, context):
        case.headers = {**(case.headers or {}), "Authorization": f"Bearer {data}"}


@schema.parametrize()
@settings(max_examples=100, deadline=None)
def test_schema_fuzz_no_5xx_and_responses_match_the_schema(case):
    case.call_and_validate()


@signed_in_schema.parametrize()
@settings(max_examples=50, deadline=None)
def test_schema_fuzz_signed_in_as_alice(case):
    case.call_and_validate()
