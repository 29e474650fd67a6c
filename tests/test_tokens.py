import multiprocessing
import os
import stat
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import jwt as pyjwt
import pytest
from forge import FAR_FUTURE, forge, tampered

from lesson_code import tokens
from lesson_code.tokens import (
    SecretKeyError,
    TokenError,
    check_secret_key,
    create_access_token,
    decode_access_token,
    expires_at,
    get_unverified_claims,
    get_unverified_header,
    load_secret_key,
    time_left,
)

KEY = tokens.SECRET_KEY
OTHER_KEY = "another-key-that-is-long-enough-0123456789"


def verified_by_pyjwt(token: str) -> dict:
    return pyjwt.decode(token, KEY, algorithms=["HS256"], leeway=30)  # a zero lifetime is expired at once


def test_default_lifetime_is_15_minutes_from_now():
    before = int(time.time())
    claims = verified_by_pyjwt(create_access_token({"sub": "alice"}))
    after = int(time.time())
    assert set(claims) == {"sub", "iat", "exp"}
    assert claims["sub"] == "alice"
    assert before <= claims["iat"] <= after
    assert claims["exp"] - claims["iat"] == 900


@pytest.mark.parametrize(
    ("expires_delta", "seconds"),
    [(timedelta(minutes=30), 1800), (timedelta(hours=1), 3600), (timedelta(seconds=90), 90), (timedelta(0), 0)],
)
def test_expires_delta_is_honoured_to_the_second(expires_delta, seconds):
    claims = verified_by_pyjwt(create_access_token({"sub": "alice"}, expires_delta=expires_delta))
    assert claims["exp"] - claims["iat"] == seconds


def test_header_is_hs256_jwt():
    assert get_unverified_header(create_access_token({"sub": "alice"})) == {"alg": "HS256", "typ": "JWT"}


def test_the_callers_dict_is_left_unchanged_and_extra_claims_kept():
    data = {"sub": "alice", "role": "admin"}
    claims = verified_by_pyjwt(create_access_token(data, expires_delta=timedelta(minutes=5)))
    assert data == {"sub": "alice", "role": "admin"}
    assert claims["role"] == "admin"


@pytest.mark.skipif(not hasattr(time, "tzset"), reason="time.tzset() is POSIX only")
@pytest.mark.parametrize("zone", ["Asia/Tokyo", "America/Los_Angeles"])
def test_times_are_utc_whatever_the_local_time_zone(monkeypatch, zone):
    # datetime.now() without a zone would be read as UTC: 9 hours off in Tokyo, 8 in Los Angeles.
    monkeypatch.setenv("TZ", zone)
    time.tzset()
    try:
        claims = verified_by_pyjwt(create_access_token({"sub": "alice"}))
    finally:
        monkeypatch.undo()
        time.tzset()
    assert abs(claims["iat"] - time.time()) < 5
    assert claims["exp"] - claims["iat"] == 900


def test_decode_returns_the_claims():
    token = create_access_token({"sub": "alice", "role": "admin"}, expires_delta=timedelta(minutes=5))
    assert decode_access_token(token) == verified_by_pyjwt(token)


def test_pyjwt_tokens_are_accepted():
    token = pyjwt.encode({"sub": "bob", "exp": FAR_FUTURE}, KEY, algorithm="HS256")
    assert decode_access_token(token) == {"sub": "bob", "exp": FAR_FUTURE}


def test_expired_but_within_the_leeway_is_accepted():
    token = create_access_token({"sub": "alice"}, expires_delta=timedelta(seconds=-10))
    assert decode_access_token(token)["sub"] == "alice"


NESTED = '{"alg":"HS256","x":' + "[" * 5000 + "]" * 5000 + "}"
DEEPER_THAN_ANY_PYTHON_PARSES = 100_000  # 3.11 gives up near 1,000 levels, 3.13 near 10,000
BAD_TOKENS = {
    "expired": (lambda: create_access_token({"sub": "a"}, expires_delta=timedelta(minutes=-1)), "token has expired"),
    "tampered payload": (
        lambda: tampered(create_access_token({"sub": "a"}), {"sub": "admin", "exp": FAR_FUTURE}),
        "Signature verification failed",
    ),
    "wrong key": (
        lambda: pyjwt.encode({"sub": "a", "exp": FAR_FUTURE}, OTHER_KEY, algorithm="HS256"),
        "Signature verification failed",
    ),
    "alg none": (
        lambda: forge({"alg": "none", "typ": "JWT"}, {"sub": "a", "exp": FAR_FUTURE}),
        "algorithm 'none' is not allowed, only 'HS256'",
    ),
    "alg None": (
        lambda: forge({"alg": "None"}, {"sub": "a", "exp": FAR_FUTURE}),
        "algorithm 'None' is not allowed, only 'HS256'",
    ),
    "no alg": (
        lambda: forge({"typ": "JWT"}, {"sub": "a", "exp": FAR_FUTURE}, KEY),
        "algorithm None is not allowed, only 'HS256'",
    ),
    "HS512 with the same key": (
        lambda: forge({"alg": "HS512"}, {"sub": "a", "exp": FAR_FUTURE}, KEY, alg="HS512"),
        "algorithm 'HS512' is not allowed, only 'HS256'",
    ),
    "RS256 header": (
        lambda: forge({"alg": "RS256"}, {"sub": "a", "exp": FAR_FUTURE}, KEY),
        "algorithm 'RS256' is not allowed, only 'HS256'",
    ),
    "missing sub": (
        lambda: forge({"alg": "HS256"}, {"exp": FAR_FUTURE}, KEY),
        'missing required key "sub" among claims',
    ),
    "missing exp": (lambda: forge({"alg": "HS256"}, {"sub": "a"}, KEY), 'missing required key "exp" among claims'),
    "sub not text": (lambda: forge({"alg": "HS256"}, {"sub": 7, "exp": FAR_FUTURE}, KEY), "Subject must be a string"),
    "exp null": (
        lambda: forge({"alg": "HS256"}, {"sub": "a", "exp": None}, KEY),
        "exp, iat and nbf must be numbers of seconds",
    ),
    "exp 1e999": (
        lambda: forge({"alg": "HS256"}, '{"sub":"a","exp":1e999}', KEY),
        "exp, iat and nbf must be numbers of seconds",
    ),
    "exp text": (
        lambda: forge({"alg": "HS256"}, {"sub": "a", "exp": "soon"}, KEY),
        "Expiration Time claim (exp) must be an integer",
    ),
    "payload not JSON": (
        lambda: forge({"alg": "HS256"}, "not json", KEY),
        "Invalid payload string: Expecting value: line 1 column 1 (char 0)",
    ),
    "payload a list": (lambda: forge({"alg": "HS256"}, "[1]", KEY), "Invalid payload string: must be a json object"),
    "header nested deep": (lambda: forge(NESTED, {"sub": "a"}, KEY), "token is longer than 4096 characters"),
    "header not JSON": (
        lambda: forge("not json", {"sub": "a"}, KEY),
        "header is not readable: Error decoding token headers",
    ),
    "bad base64": (lambda: "abc.def.ghi", "header is not readable: Error decoding token headers"),
    "garbage": (lambda: "garbage", "a token is three base64url parts joined by dots"),
    "two parts": (lambda: "abc.def", "a token is three base64url parts joined by dots"),
    "four parts": (lambda: "a.b.c.d", "a token is three base64url parts joined by dots"),
    "not ASCII": (lambda: "é.e30.x", "a token is three base64url parts joined by dots"),
    "empty": (lambda: "", "a token is three base64url parts joined by dots"),
    "Bearer prefix left on": (
        lambda: "Bearer " + create_access_token({"sub": "a"}),
        "a token is three base64url parts joined by dots",
    ),
    "over-long": (lambda: "a" * 3000 + "." + "b" * 3000 + ".c", "token is longer than 4096 characters"),
    "None": (lambda: None, "a token is text, not NoneType"),
    "bytes": (lambda: b"a.b.c", "a token is text, not bytes"),
}


@pytest.mark.parametrize(("make", "message"), BAD_TOKENS.values(), ids=BAD_TOKENS.keys())
def test_every_bad_token_raises_token_error_with_its_reason(make, message):
    with pytest.raises(TokenError) as caught:
        decode_access_token(make())
    assert type(caught.value) is TokenError
    assert str(caught.value) == message


def nested(depth: int) -> str:
    return '{"x":' + "[" * depth + "]" * depth + "}"


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (
            lambda: forge(nested(DEEPER_THAN_ANY_PYTHON_PARSES), {"sub": "a"}),
            "header is not readable: Error decoding token headers",
        ),
        (lambda: forge({"alg": "HS256"}, nested(DEEPER_THAN_ANY_PYTHON_PARSES), KEY), "JSON nested too deeply"),
    ],
    ids=["header", "signed payload"],
)
def test_json_nested_past_the_recursion_limit_is_a_token_error(monkeypatch, make, message):
    monkeypatch.setattr(tokens, "MAX_TOKEN_LENGTH", 10**6)  # past the length cap, to reach the parser
    with pytest.raises(TokenError) as caught:
        decode_access_token(make())
    assert str(caught.value) == message


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
    assert expires_at({"sub": "a"}) is None


@pytest.mark.parametrize("exp", [None, "soon", 1e999, 10**30])
def test_expires_at_refuses_what_is_not_a_time(exp):
    with pytest.raises(TokenError, match="^exp is not a time: "):
        expires_at({"exp": exp})


def test_time_left_counts_down_and_goes_negative():
    left = time_left(get_unverified_claims(create_access_token({"sub": "a"}, expires_delta=timedelta(minutes=10))))
    assert timedelta(minutes=9, seconds=55) < left <= timedelta(minutes=10)
    gone = time_left(get_unverified_claims(create_access_token({"sub": "a"}, expires_delta=timedelta(hours=-2))))
    assert -timedelta(hours=2, seconds=5) < gone <= -timedelta(hours=2) + timedelta(seconds=1)
    assert time_left({}) is None


HOW = 'make one with: python -c "import secrets; print(secrets.token_hex(32))"'


SHORT = "HS256 needs at least 32 random bytes (RFC 7518, section 3.2)"
PUBLISHED = f"JWT_SECRET_KEY is a secret published in a tutorial, so anyone can forge tokens: {HOW}"
WEAK_SECRETS = {
    "empty": ("", f"JWT_SECRET_KEY is 0 bytes; {SHORT}: {HOW}"),
    "seed lesson's": ("mysecretkey123", f"JWT_SECRET_KEY is 14 bytes; {SHORT}: {HOW}"),
    "your-secret-key": ("your-secret-key", f"JWT_SECRET_KEY is 15 bytes; {SHORT}: {HOW}"),
    "changethis": ("changethis", f"JWT_SECRET_KEY is 10 bytes; {SHORT}: {HOW}"),
    "31 bytes": ("x" * 31, f"JWT_SECRET_KEY is 31 bytes; {SHORT}: {HOW}"),
    "FastAPI tutorial's": ("09d25e094faa6ca2556c818166b7a9563b93f7099f6f0f4caa6cf63b88e8d3e7", PUBLISHED),
    "RFC 7515's example key": (
        "AyM1SysPpbyDfgZld3umj1qzKObwVMkoqQ-EstJQLr_T-1qS0gZH75aKtMN3Yj0iPS4hcgUuTwjAzZr1Z9CAow",
        PUBLISHED,
    ),
}


@pytest.mark.parametrize(("secret", "message"), WEAK_SECRETS.values(), ids=WEAK_SECRETS.keys())
def test_weak_secrets_are_refused_with_how_to_make_one(monkeypatch, tmp_path, secret, message):
    monkeypatch.setenv("JWT_SECRET_KEY", secret)
    with pytest.raises(SecretKeyError) as caught:
        load_secret_key(tmp_path / "secret")
    assert str(caught.value) == message
    assert not (tmp_path / "secret").exists()


def test_a_good_secret_from_the_environment_is_used(monkeypatch, tmp_path):
    monkeypatch.setenv("JWT_SECRET_KEY", "k" * 32)
    assert load_secret_key(tmp_path / "secret") == "k" * 32
    assert check_secret_key("é" * 16) == "é" * 16  # 32 bytes in UTF-8


def test_without_environment_a_secret_file_is_made_once_and_reused(monkeypatch, tmp_path):
    monkeypatch.delenv("JWT_SECRET_KEY")
    path = tmp_path / ".jwt_secret"
    first = load_secret_key(path)
    assert len(bytes.fromhex(first)) == 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_secret_key(path) == first
    assert os.listdir(tmp_path) == [".jwt_secret"]


def test_a_tampered_secret_file_is_refused_naming_the_file(monkeypatch, tmp_path):
    monkeypatch.delenv("JWT_SECRET_KEY")
    path = tmp_path / ".jwt_secret"
    path.write_text("short\n")
    with pytest.raises(SecretKeyError, match=f"^{path} is 5 bytes; "):
        load_secret_key(path)


def test_an_unwritable_folder_says_to_set_the_variable(monkeypatch, tmp_path):
    monkeypatch.delenv("JWT_SECRET_KEY")
    path = tmp_path / "missing-folder" / ".jwt_secret"
    with pytest.raises(SecretKeyError, match=r"^cannot keep a secret in .*; set JWT_SECRET_KEY instead$"):
        load_secret_key(path)


@pytest.mark.parametrize("secret", ["changethis", WEAK_SECRETS["FastAPI tutorial's"][0]])
def test_the_app_refuses_to_start_with_a_weak_secret(secret):
    env = {**os.environ, "JWT_SECRET_KEY": secret, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    result = subprocess.run([sys.executable, "-c", "import lesson_code.app"], env=env, capture_output=True, text=True)
    assert result.returncode == 1
    assert result.stderr.splitlines()[-1].startswith("lesson_code.tokens.SecretKeyError: JWT_SECRET_KEY is ")


def _first_start(barrier, path, results):
    del os.environ["JWT_SECRET_KEY"]  # inherited so that importing this module made no file
    barrier.wait()
    results.put(load_secret_key(path))


def test_concurrent_first_starts_agree_on_one_secret(tmp_path):
    context = multiprocessing.get_context("spawn")
    workers = 6
    for round_number in range(5):
        path = tmp_path / f"secret-{round_number}"
        barrier, results = context.Barrier(workers), context.Queue()
        processes = [context.Process(target=_first_start, args=(barrier, path, results)) for _ in range(workers)]
        for process in processes:
            process.start()
        secrets_seen = {results.get(timeout=60) for _ in processes}
        for process in processes:
            process.join(timeout=60)
        assert [process.exitcode for process in processes] == [0] * workers
        assert secrets_seen == {path.read_text().strip()}
    assert sorted(os.listdir(tmp_path)) == [f"secret-{n}" for n in range(5)]
