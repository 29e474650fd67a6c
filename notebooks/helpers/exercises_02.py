"""Notebook 02's exercises: each check reads the answer from the notebook's names (a.bob_token) and returns True, a
sentence saying what is off, or False (the general hint). See helpers/checks.py."""

import re
import time

from helpers.checks import KERNEL_STARTED, exercise

SEED_SECRET_KEY = "mysecretkey123"  # the seed lesson's published secret, printed at the top of the notebook
SEED_AGAIN = (
    "{what} signed with the seed lesson's secret, mysecretkey123: create_access_token is the seed lesson's again "
    "(its cell, at the top, ran after the finished one). Run the cell under 'The finished create_access_token' "
    "again, then your answer."
)
LIFETIMES_IN_MINUTES = {"admin": 5, "editor": 15, "reader": 60}
CLOCK_SLACK_SECONDS = 60


def verified_claims(
    token: str, what: str, fix: str = "make it with create_access_token"
) -> tuple[dict | None, str | None]:
    """The token's claims, verified with the lessons' key whether or not it has expired since it was made (a right
    answer stays right); or None and a sentence saying why it cannot be verified."""
    from jose import jwt
    from jose.exceptions import JOSEError

    from lesson_code.tokens import ALGORITHM, get_signing_key

    options = {"verify_exp": False, "verify_iat": False, "verify_nbf": False}
    try:
        return jwt.decode(token, get_signing_key(), algorithms=[ALGORITHM], options=options), None
    except JOSEError:
        pass
    try:
        jwt.decode(token, SEED_SECRET_KEY, algorithms=[ALGORITHM], options=options)
    except JOSEError:
        return None, f"{what} not signed with get_signing_key(): {fix}."
    return None, SEED_AGAIN.format(what=what)


def issued_in_this_kernel(claims: dict, what: str) -> str | None:
    """A sentence when iat says the token was made in the future, or before this kernel started: the marks of naive
    local times read as UTC (fault 1)."""
    iat = claims["iat"]
    now = time.time()
    if iat > now + CLOCK_SLACK_SECONDS:
        return (
            f"{what} issued {(iat - now) / 3600:.2g} hours in the future: its iat and exp are naive local times, read "
            "as UTC (fault 1). create_access_token takes them from one aware now."
        )
    if iat < KERNEL_STARTED - CLOCK_SLACK_SECONDS:
        return (
            f"{what} issued {(KERNEL_STARTED - iat) / 3600:.2g} hours before this notebook's kernel started: its iat "
            "and exp are naive local times, read as UTC (fault 1). create_access_token takes them from one aware now."
        )
    return None


@exercise(
    "create_access_token takes the claims as a dict, and the lifetime as expires_delta (a timedelta).",
    answers=("bob_token",),
)
def bob_token(a):
    token = a.bob_token
    if not isinstance(token, str):
        return token is not None and "bob_token should be the token itself: the text create_access_token returns."
    claims, problem = verified_claims(token, "this token is")
    if problem:
        return problem
    if claims.get("sub") != "bob":
        return f"the token is for {claims.get('sub')!r}, not 'bob'."
    if claims.get("role") != "admin":
        return "the token has no 'role': 'admin' claim: put it in the dict, next to 'sub'."
    if not isinstance(claims.get("iat"), int | float):
        return "the token has no iat: make it with create_access_token, which adds one."
    problem = issued_in_this_kernel(claims, "the token was")
    if problem:
        return problem
    if claims["exp"] - claims["iat"] != 3600:
        return f"it lasts {claims['exp'] - claims['iat']} seconds, not 3600 (one hour)."
    return True


def setting_source(a) -> str:
    """The source of the last cell run that assigned my_secret, from IPython's input history ('' outside IPython)."""
    history = a.get("In") or []
    assigned = [source for source in history if re.search(r"^\s*my_secret\s*=", source, re.MULTILINE)]
    return assigned[-1] if assigned else ""


@exercise("the secrets module gives random bytes as text: see the candidates weighed above.", answers=("my_secret",))
def my_secret(a):
    from lesson_code.secret_file import get_secret_key
    from lesson_code.tokens import SecretKeyError, check_secret_key, secret_bits

    secret = a.my_secret
    if isinstance(secret, bytes):
        return "my_secret is bytes; an environment variable holds text: token_hex(32) gives 32 random bytes as hex."
    if not isinstance(secret, str):
        return secret is not None and "my_secret should be a string: call a function of the secrets module."
    if re.search(r"\bhashlib\b|\.hexdigest\(|\bsha\d+\(|\bmd5\(", setting_source(a)):
        return (
            "a hash of a phrase looks random, but it is as easy to guess as the phrase: an attacker hashes their "
            "guesses too, and check_secret_key, which sees only the text, cannot tell. Let secrets choose."
        )
    if secret.startswith(("b'", 'b"')):
        return "that is how Python prints bytes, quotes and backslashes included, which a shell mangles: use hex."
    if secret == get_secret_key():
        return "that is the secret this notebook signs with: make a new one."
    try:
        check_secret_key(secret)
    except SecretKeyError:
        half = len(secret) // 2
        if len(secret) > 16 and secret[:half] * 2 == secret:
            return "the second half repeats the first, and a repeat adds no randomness: ask secrets for 32 bytes."
        bits = int(secret_bits(secret))
        if re.fullmatch(r"[0-9a-f]+", secret):
            return f"{len(secret)} hex characters carry {bits} bits: token_hex(n) gives n bytes; ask for 32."
        if re.fullmatch(r"(?=.*[a-z])(?=.*[A-Z])(?=.*[0-9])[A-Za-z0-9_-]+", secret):
            return f"{len(secret)} base64url characters carry {bits} bits: token_urlsafe(n) gives n bytes too."
        return f"typed text holds less randomness than it seems (about {bits} bits here): let secrets choose."
    if not re.fullmatch(r"[0-9a-f]{64,}|[0-9A-F]{64,}|[A-Za-z0-9_-]{43,}", secret):
        return "check_secret_key accepts it, but it was not made by secrets.token_hex or token_urlsafe."
    return True


@exercise(
    "keep the lifetimes in a dict of timedeltas keyed by role; look the role up, or raise.",
    answers=("create_token_for",),
)
def create_token_for(a):
    make = a.create_token_for
    if not callable(make):
        return make is not None and "create_token_for should be a function: def create_token_for(...)."
    for role, minutes in LIFETIMES_IN_MINUTES.items():
        fix = "return what create_access_token returns"
        claims, problem = verified_claims(make("carol", role), "its tokens are", fix)
        if problem:
            return problem
        if claims.get("sub") != "carol" or claims.get("role") != role:
            return f"create_token_for('carol', {role!r}) should say sub 'carol' and role {role!r}."
        if not isinstance(claims.get("iat"), int | float):
            return "its tokens have no iat: build on create_access_token, which adds one."
        problem = issued_in_this_kernel(claims, "its tokens were")
        if problem:
            return problem
        lifetime = (claims["exp"] - claims["iat"]) / 60
        if lifetime != minutes:
            return f"create_token_for('carol', {role!r}) lives {lifetime:g} minutes, not {minutes}."
    try:
        make("carol", "owner")
    except ValueError as error:
        if "owner" not in str(error):
            return "the ValueError should name the role it refuses ('owner'), to help whoever made the typo."
    except NameError:
        raise  # the learner's own: check() says which name is missing
    except Exception as error:
        return f"an unknown role should raise ValueError, not {type(error).__name__}."
    else:
        return "create_token_for('carol', 'owner') gave a token: an unknown role must raise ValueError."
    return True
