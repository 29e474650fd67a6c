import json
import secrets
import time
from datetime import datetime, timedelta, timezone

import jose.jws
import jose.jwt
import jwt as pyjwt
import pytest
from forge import (
    DEEPER_THAN_ANY_PYTHON_PARSES,
    FAR_FUTURE,
    HOSTILE_NAMES,
    OTHER_KEY,
    forge,
    hostile_tokens,
    nested,
    respelled,
)
from jose import jwk

from lesson_code import tokens
from lesson_code.secret_file import get_secret_key
from lesson_code.tokens import (
    TokenError,
    create_access_token,
    decode_access_token,
    expires_at,
    get_unverified_claims,
    get_unverified_header,
    time_left,
)

# python-jose alone accepts these; the lesson's code refuses them (RFC 7515, 7519, 7797 and 8725).
STRICTER_THAN_PYTHON_JOSE = {
    "crit",
    "crit empty",
    "crit null",
    "b64 false",
    "b64 'true'",
    "kid a number",
    "kid a list",
    "signature respelled (1)",
    "signature respelled (2)",
    "signature respelled (3)",
    "exp a numeric string",
    "iat a numeric string",
    "nbf a numeric string",
    "nbf false",
    "iat in the future",
}
# PyJWT refuses every hostile token except these: RFC 7519's NumericDate is a JSON number, RFC 7797's b64 a boolean.
PYJWT_ACCEPTS = {
    "exp a numeric string",
    "iat a numeric string",
    "nbf a numeric string",
    "nbf false",
    "b64 'true'",
    "typ of a refresh token",  # PyJWT leaves typ to the caller: jwt.decode(..., options) has no rule for it
}


def verified_by_pyjwt(token: str, key: str) -> dict:
    return pyjwt.decode(token, key, algorithms=["HS256"], leeway=30)  # a zero lifetime is expired at once


def test_default_lifetime_is_15_minutes_from_now(secret_key):
    before = int(time.time())
    claims = verified_by_pyjwt(create_access_token({"sub": "alice"}), secret_key)
    after = int(time.time())
    assert set(claims) == {"sub", "iat", "exp"}
    assert claims["sub"] == "alice"
    assert before <= claims["iat"] <= after
    assert claims["exp"] - claims["iat"] == 900


@pytest.mark.parametrize(
    ("expires_delta", "seconds"),
    [(timedelta(minutes=30), 1800), (timedelta(hours=1), 3600), (timedelta(seconds=90), 90), (timedelta(0), 0)],
)
def test_expires_delta_is_honoured_to_the_second(secret_key, expires_delta, seconds):
    claims = verified_by_pyjwt(create_access_token({"sub": "alice"}, expires_delta=expires_delta), secret_key)
    assert claims["exp"] - claims["iat"] == seconds


def test_header_is_hs256_jwt():
    assert get_unverified_header(create_access_token({"sub": "alice"})) == {"alg": "HS256", "typ": "JWT"}


def test_the_callers_dict_is_left_unchanged_and_extra_claims_kept(secret_key):
    data = {"sub": "alice", "role": "admin"}
    claims = verified_by_pyjwt(create_access_token(data, expires_delta=timedelta(minutes=5)), secret_key)
    assert data == {"sub": "alice", "role": "admin"}
    assert claims["role"] == "admin"


@pytest.mark.skipif(not hasattr(time, "tzset"), reason="time.tzset() is POSIX only")
@pytest.mark.parametrize("zone", ["Asia/Tokyo", "America/Los_Angeles"])
def test_times_are_utc_whatever_the_local_time_zone(monkeypatch, secret_key, zone):
    # datetime.now() without a zone would be read as UTC: 9 hours off in Tokyo, 8 in Los Angeles.
    monkeypatch.setenv("TZ", zone)
    time.tzset()
    try:
        claims = verified_by_pyjwt(create_access_token({"sub": "alice"}), secret_key)
    finally:
        monkeypatch.undo()
        time.tzset()
    assert abs(claims["iat"] - time.time()) < 5
    assert claims["exp"] - claims["iat"] == 900


def test_decode_returns_the_claims(secret_key):
    token = create_access_token({"sub": "alice", "role": "admin"}, expires_delta=timedelta(minutes=5))
    assert decode_access_token(token) == verified_by_pyjwt(token, secret_key)


def test_pyjwt_tokens_are_accepted(secret_key):
    token = pyjwt.encode({"sub": "bob", "exp": FAR_FUTURE}, secret_key, algorithm="HS256")
    assert decode_access_token(token) == {"sub": "bob", "exp": FAR_FUTURE}


def test_expired_but_within_the_leeway_is_accepted():
    token = create_access_token({"sub": "alice"}, expires_delta=timedelta(seconds=-10))
    assert decode_access_token(token)["sub"] == "alice"


ALLOWED = {
    "kid text": lambda now: ({"alg": "HS256", "kid": "key-1"}, {}),
    "b64 true": lambda now: ({"alg": "HS256", "b64": True}, {}),
    "iat within the leeway": lambda now: ({"alg": "HS256"}, {"iat": now + 10}),
    "nbf within the leeway": lambda now: ({"alg": "HS256"}, {"nbf": now + 10}),
    "fractional seconds": lambda now: ({"alg": "HS256"}, {"exp": FAR_FUTURE + 0.5, "iat": 1.5, "nbf": 0}),
}


@pytest.mark.parametrize("make", ALLOWED.values(), ids=ALLOWED.keys())
def test_what_the_rfcs_allow_is_accepted(secret_key, make):
    header, claims = make(int(time.time()))
    payload = {"sub": "alice", "exp": FAR_FUTURE, **claims}
    assert decode_access_token(forge(header, payload, secret_key)) == payload


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_every_hostile_token_raises_token_error_with_its_reason(secret_key, name):
    token, message = hostile_tokens(secret_key)[name]
    with pytest.raises(TokenError) as caught:
        decode_access_token(token)
    assert type(caught.value) is TokenError
    assert str(caught.value) == message


@pytest.mark.parametrize("name", sorted(STRICTER_THAN_PYTHON_JOSE))
def test_python_jose_alone_accepts_what_the_lesson_refuses(secret_key, name):
    token, _ = hostile_tokens(secret_key)[name]
    assert jose.jwt.decode(token, secret_key, algorithms=["HS256"], options={"leeway": 30})["sub"] == "alice"


@pytest.mark.parametrize("name", [name for name in HOSTILE_NAMES if name not in PYJWT_ACCEPTS])
def test_pyjwt_refuses_them_too(secret_key, name):
    token, _ = hostile_tokens(secret_key)[name]
    with pytest.raises(pyjwt.PyJWTError):
        pyjwt.decode(token, secret_key, algorithms=["HS256"], leeway=30, options={"require": ["exp", "sub"]})


def test_only_the_canonical_spelling_of_a_signature_is_accepted(secret_key):
    token = create_access_token({"sub": "alice"})
    spellings = [token] + [respelled(token, flip) for flip in (1, 2, 3)]
    assert {jose.jwt.decode(spelling, secret_key, algorithms=["HS256"])["sub"] for spelling in spellings} == {"alice"}
    assert [spelling for spelling in spellings if _accepted(spelling)] == [token]


def _accepted(token: str) -> bool:
    try:
        decode_access_token(token)
    except TokenError:
        return False
    return True


@pytest.mark.parametrize(("token", "kind"), [(None, "NoneType"), (b"a.b.c", "bytes"), (["a.b.c"], "list")])
def test_a_token_that_is_not_text_is_refused(token, kind):
    with pytest.raises(TokenError, match=f"^a token is text, not {kind}$"):
        decode_access_token(token)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (
            lambda key: forge(nested(DEEPER_THAN_ANY_PYTHON_PARSES), {"sub": "a"}),
            "header is not readable: Error decoding token headers",
        ),
        (lambda key: forge({"alg": "HS256"}, nested(DEEPER_THAN_ANY_PYTHON_PARSES), key), "JSON nested too deeply"),
    ],
    ids=["header", "signed payload"],
)
def test_json_nested_past_the_recursion_limit_is_a_token_error(monkeypatch, secret_key, make, message):
    monkeypatch.setattr(tokens, "MAX_TOKEN_LENGTH", 10**6)  # past the length cap, to reach the parser
    with pytest.raises(TokenError) as caught:
        decode_access_token(make(secret_key))
    assert str(caught.value) == message


def test_a_lone_surrogate_in_the_header_is_only_text():
    token = forge('{"alg":"HS256","typ":"JWT","x":"\\ud800"}', {"sub": "a", "exp": FAR_FUTURE}, get_secret_key())
    assert get_unverified_header(token) == {"alg": "HS256", "typ": "JWT", "x": "\ud800"}
    assert decode_access_token(token) == {"sub": "a", "exp": FAR_FUTURE}


def test_python_jose_is_given_a_key_object_never_the_string(monkeypatch):
    keys = []

    def spy(original):
        def call(token, key, *args, **kwargs):
            keys.append(key)
            return original(token, key, *args, **kwargs)

        return call

    monkeypatch.setattr(jose.jwt, "encode", spy(jose.jwt.encode))
    monkeypatch.setattr(jose.jws, "verify", spy(jose.jws.verify))  # decode_access_token verifies with jws.verify
    decode_access_token(create_access_token({"sub": "alice"}))
    assert len(keys) == 2
    assert all(isinstance(key, jwk.get_key("HS256")) for key in keys)


JSON_LOOKING_SECRETS = {
    "a JSON list": lambda: json.dumps(["x", secrets.token_hex(32)]),
    "a quoted string": lambda: json.dumps(secrets.token_hex(32)),
    "a JSON object": lambda: json.dumps({"k": secrets.token_hex(32)}),
}


@pytest.mark.parametrize("make_secret", JSON_LOOKING_SECRETS.values(), ids=JSON_LOOKING_SECRETS.keys())
def test_a_secret_that_looks_like_json_is_still_one_hmac_secret(monkeypatch, make_secret):
    secret = make_secret()
    monkeypatch.setenv("JWT_SECRET_KEY", secret)
    get_secret_key.cache_clear()
    inner = json.loads(secret)
    inner = inner[0] if isinstance(inner, list) else inner["k"] if isinstance(inner, dict) else inner
    ours = create_access_token({"sub": "alice"})
    assert verified_by_pyjwt(ours, secret)["sub"] == "alice"  # signed with the whole string
    assert decode_access_token(ours)["sub"] == "alice"
    with pytest.raises(TokenError, match="^Signature verification failed$"):
        decode_access_token(forge({"alg": "HS256"}, {"sub": "mallory", "exp": FAR_FUTURE}, inner))


def test_unverified_helpers_read_without_the_key():
    token = pyjwt.encode({"sub": "carol", "exp": FAR_FUTURE}, OTHER_KEY, algorithm="HS256")
    assert get_unverified_header(token) == {"alg": "HS256", "typ": "JWT"}
    assert get_unverified_claims(token) == {"sub": "carol", "exp": FAR_FUTURE}


@pytest.mark.parametrize("helper", [get_unverified_header, get_unverified_claims])
def test_unverified_helpers_refuse_garbage(helper):
    with pytest.raises(TokenError, match="^a token is three base64url parts joined by dots$"):
        helper("garbage")


def test_expires_at_is_an_aware_utc_datetime():
    assert expires_at({"exp": FAR_FUTURE}) == datetime(2100, 1, 1, tzinfo=timezone.utc)
    assert expires_at({"exp": 1.5}) == datetime(1970, 1, 1, 0, 0, 1, 500000, tzinfo=timezone.utc)
    assert expires_at({"sub": "a"}) is None


@pytest.mark.parametrize("exp", [None, "soon", "4102444800", True, 1e999, float("nan"), 10**30])
def test_expires_at_refuses_what_is_not_a_time(exp):
    with pytest.raises(TokenError) as caught:
        expires_at({"exp": exp})
    assert str(caught.value) == f"exp is not a time: {exp!r}"


def test_time_left_counts_down_and_goes_negative():
    left = time_left(get_unverified_claims(create_access_token({"sub": "a"}, expires_delta=timedelta(minutes=10))))
    assert timedelta(minutes=9, seconds=55) < left <= timedelta(minutes=10)
    gone = time_left(get_unverified_claims(create_access_token({"sub": "a"}, expires_delta=timedelta(hours=-2))))
    assert -timedelta(hours=2, seconds=5) < gone <= -timedelta(hours=2) + timedelta(seconds=1)
    assert time_left({}) is None
