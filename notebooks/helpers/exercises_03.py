"""Notebook 03's exercises: each check reads the answer from the notebook's names (a.minutes_left) and returns True, a
sentence saying what is off, or False (the general hint). See helpers/checks.py.

The tokens are made here, with lesson_code's functions (the notebook's own are the same code); the learner's answer
is judged by what it does with them. TokenError is the notebook's class, the one the learner's answer catches."""

import base64
import hashlib
import hmac
import json
import string
from datetime import datetime, timedelta, timezone

from helpers.checks import exercise

YEAR_2100 = 4_102_444_800
BASE64URL = string.ascii_uppercase + string.ascii_lowercase + string.digits + "-_"
HS256 = {"alg": "HS256", "typ": "JWT"}


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def hand_made(header: dict, claims: dict, secret: str = "") -> str:
    signing_input = f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(claims).encode())}"
    signature = hmac.new(secret.encode(), signing_input.encode(), hashlib.sha256).digest() if secret else b""
    return f"{signing_input}.{b64url(signature)}"


def signed(claims: dict, algorithm: str = "HS256") -> str:
    """claims signed by python-jose with the lessons' key object, its times as given (aware datetimes)."""
    from jose import jwt

    from lesson_code.tokens import get_signing_key

    return jwt.encode(claims, get_signing_key(), algorithm=algorithm)


@exercise(
    "read the token's exp without verifying, as in 'When does it expire?', and turn the time left into whole minutes.",
    answers=("minutes_left",),
)
def minutes_left(a):
    from lesson_code.tokens import create_access_token

    answer_function = a.minutes_left
    if not callable(answer_function):
        return answer_function is not None and "minutes_left should be a function: def minutes_left(token): ..."
    now = datetime.now(timezone.utc)
    samples = [
        (minutes, create_access_token({"sub": "carol"}, expires_delta=timedelta(minutes=minutes)))
        for minutes in (42, 5, 90, -3)
    ]
    older = signed({"sub": "carol", "iat": now - timedelta(minutes=20), "exp": now + timedelta(minutes=22)})
    samples.append((22, older))
    for minutes, sample in samples:
        which = "an expired token" if minutes < 0 else f"a token with {minutes} minutes left"
        try:
            answer = answer_function(sample)
        except NameError:
            raise  # the learner's own: check() says which name is missing
        except Exception as error:
            return (
                f"minutes_left raised {type(error).__name__} ({error}) for {which}: read it with "
                "get_unverified_claims, which does not verify, so expired tokens work too."
            )
        if isinstance(answer, timedelta):
            return "minutes_left returns a timedelta: divide it by timedelta(minutes=1), then round it."
        if sample is older and answer == 42:
            return (
                "for a token issued 20 minutes ago that has 22 minutes left, minutes_left gave 42: that is its "
                "lifetime, exp - iat. The time left runs from now to exp."
            )
        if minutes > 0 and answer == minutes - 1:
            return f"minutes_left gave {answer} for {which}: int() and // cut 41.99 down to 41; round."
        if isinstance(answer, float):
            return f"minutes_left returned {answer!r}, a float: round(x), with no second argument, gives an int."
        if minutes < 0 and answer != minutes:
            return (
                f"for a token that expired 3 minutes ago, minutes_left gave {answer!r}, not -3: divide the whole "
                "timedelta by timedelta(minutes=1) and round it (.seconds and // go wrong below zero)."
            )
        if answer != minutes:
            return f"minutes_left gave {answer!r} for {which}: read its exp."
    return True


@exercise(
    "decode_access_token accepts a token or raises TokenError ('Every way it fails'): turn that into True or False.",
    answers=("is_valid",),
)
def is_valid(a):
    from jose import jwt

    from lesson_code.tokens import create_access_token

    answer_function, token_error = a.is_valid, a.TokenError
    if not callable(answer_function):
        return answer_function is not None and "is_valid should be a function: def is_valid(token): ..."
    fresh = create_access_token({"sub": "alice"})
    header, _, signature = fresh.split(".")
    admin_payload = b64url(json.dumps({"sub": "admin", "exp": YEAR_2100}).encode())
    alice = {"sub": "alice", "exp": YEAR_2100}
    tokens = {
        "a tampered token": f"{header}.{admin_payload}.{signature}",
        "an alg: none token": hand_made({"alg": "none", "typ": "JWT"}, {"sub": "admin", "exp": YEAR_2100}),
        "a token signed with another key": hand_made(HS256, alice, "someone-elses-secret-that-is-long-enough-0123"),
        "a token whose header says HS512": jwt.encode(alice, signed_key(), algorithm="HS512"),
        "another spelling of a genuine token": fresh[:-1] + BASE64URL[BASE64URL.index(fresh[-1]) ^ 1],
        "an expired token": create_access_token({"sub": "alice"}, expires_delta=timedelta(hours=-1)),
        '"garbage"': "garbage",
    }
    answer = answer_function(fresh)
    if isinstance(answer, dict):
        return "is_valid returns the claims: return True once decode_access_token has accepted the token."
    if answer is not True:
        return f"is_valid gives {answer!r} for a fresh, genuine token: it should be True."
    for name, bad in tokens.items():
        try:
            answer = answer_function(bad)
        except token_error:
            return (
                f"is_valid lets TokenError escape for {name}: decode_access_token raises TokenError (not "
                "JWTError or ExpiredSignatureError), so catch TokenError and return False."
            )
        except NameError:
            raise  # the learner's own: check() says which name is missing
        except Exception as error:
            return f"is_valid raises {type(error).__name__} for {name}: call decode_access_token and catch TokenError."
        if answer is True and name in ("a token whose header says HS512", "another spelling of a genuine token"):
            return f"is_valid accepts {name}, as python-jose alone does: call decode_access_token instead."
        if answer is True and name != "an expired token":
            return (
                f"is_valid accepts {name}: get_unverified_claims checks no signature. Ask decode_access_token, "
                "which verifies."
            )
        if answer is not False:
            return f"is_valid gives {answer!r} for {name}: it should be False."
    return True


def signed_key():
    from lesson_code.tokens import get_signing_key

    return get_signing_key()


@exercise(
    "verify first, as decode_access_token does; then apply the new rule to the claims it returns.",
    answers=("decode_issued_after",),
)
def decode_issued_after(a):
    from lesson_code.secret_file import get_secret_key
    from lesson_code.tokens import create_access_token, decode_access_token

    answer_function, token_error = a.decode_issued_after, a.TokenError
    if not callable(answer_function):
        return answer_function is not None and "decode_issued_after should be a function: def decode_issued_after(...)."
    now = datetime.now(timezone.utc)
    changed = now - timedelta(minutes=10)
    old = signed({"sub": "bob", "iat": now - timedelta(minutes=20), "exp": now + timedelta(minutes=10)})
    new = create_access_token({"sub": "bob"})
    header, _, signature = old.split(".")
    younger = b64url(json.dumps({"sub": "bob", "iat": int(now.timestamp()), "exp": YEAR_2100}).encode())
    must_refuse = {
        "the old token with its payload changed to say it was issued now": (f"{header}.{younger}.{signature}", changed),
        "bob's old token, issued 20 minutes ago": (old, changed),
        "a token with no iat": (hand_made(HS256, {"sub": "bob", "exp": YEAR_2100}, get_secret_key()), changed),
        "a token issued after the change but expired": (
            create_access_token({"sub": "bob"}, timedelta(minutes=-5)),
            changed,
        ),
    }
    for name, (token, when) in {
        "a new token": (new, changed),
        "the old token, had the change been 30 minutes ago": (old, now - timedelta(minutes=30)),
    }.items():
        try:
            answer = answer_function(token, when)
        except TypeError as error:
            if "datetime" not in str(error):
                return f"decode_issued_after raised TypeError for {name}: {error}"
            return "iat is seconds since 1970 and password_changed a datetime: compare iat with password_changed.timestamp()."
        except token_error as error:
            return (
                f"decode_issued_after refuses {name} ('{error}'): refuse only a token issued BEFORE password_changed."
            )
        if answer != decode_access_token(token):
            return f"decode_issued_after should return the claims of {name}, got {answer!r}."
    for name, (token, when) in must_refuse.items():
        try:
            answer = answer_function(token, when)
        except token_error:
            continue
        except KeyError:
            return f'{name} raised KeyError: test whether "iat" is in the claims, and raise TokenError if not.'
        except NameError:
            raise  # the learner's own: check() says which name is missing
        except Exception as error:
            return f"{name} raised {type(error).__name__}: raise TokenError, the one exception callers catch."
        if answer is None or answer is False:
            return f"decode_issued_after returned {answer!r} for {name}: raise TokenError instead of returning."
        if name.startswith("the old token with"):
            return (
                f"decode_issued_after accepts {name}: verify with decode_access_token, then read iat from its claims."
            )
        if name.startswith("bob's old"):
            return f"decode_issued_after accepts {name}: compare its iat (not exp) with password_changed."
        return f"decode_issued_after accepts {name}: start with decode_access_token."
    return True
