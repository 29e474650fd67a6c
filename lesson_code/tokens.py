"""Create and verify short-lived JWT access tokens (HS256) with python-jose.

Standard library and python-jose only: copy this file into a service as it is, and give the functions your key,
made once at start-up from your own secret: key = hmac_key(settings.secret) refuses a weak one there and then.
Given no key, they sign with the lessons' secret (secret_file.py: JWT_SECRET_KEY, else the file JWT_SECRET_FILE,
by default .jwt_secret at the repository's root), read on first use. Nothing is read at import.
"""

import base64
import binascii
import functools
import hashlib
import json
import math
import re
import string
from datetime import datetime, timedelta, timezone

from jose import jwk, jws, jwt
from jose.backends.base import Key
from jose.exceptions import JOSEError, JWKError

ALGORITHM = "HS256"
ACCESS_TOKEN_EXPIRE_MINUTES = 15
LEEWAY_SECONDS = 30
MAX_TOKEN_LENGTH = 4096
TOKEN_SHAPE = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")
NUMERIC_DATES = ("exp", "iat", "nbf")
# RFC 8725 section 3.11: a token of another kind (a refresh token, say) names another typ and is refused here.
ACCESS_TOKEN_TYPE = "JWT"

ENV_VAR = "JWT_SECRET_KEY"
MAX_SECRET_LENGTH = 1024
MIN_SECRET_BITS = 256
HOW_TO_MAKE_ONE = 'make one with: python -c "import secrets; print(secrets.token_hex(32))"'
# The smallest of these holding every character of a secret gives its bits per character: log2(size).
ALPHABETS = (
    (string.digits, 10),
    ("0123456789abcdef", 16),
    ("0123456789ABCDEF", 16),
    (string.ascii_lowercase, 26),
    (string.ascii_uppercase, 26),
    (string.ascii_lowercase + string.digits, 36),
    (string.ascii_uppercase + string.digits, 36),
    (string.ascii_letters + string.digits + "-_", 64),  # base64url
    (string.ascii_letters + string.digits + "+/=", 64),  # base64 and its padding
)
ANY_TEXT_BITS = math.log2(95)  # printable ASCII, and the most any other character is counted
REPEAT_LENGTH = 8  # a stretch this long seen earlier in the secret adds nothing
WORD_BITS = 11  # a word picked at random from a 2048-word list
DIGIT_BITS = math.log2(10)
WORD = re.compile(r"[a-z]+|[A-Z][a-z]*|[A-Z]+")
NUMBER = re.compile(r"[0-9]+")
# SHA-256 of secrets printed in public tutorials (FastAPI's, RFC 7515's example key): long, yet known to all.
PUBLISHED_SECRETS_SHA256 = frozenset(
    {
        "570dad43de1af4c925f92c16a68a50936da42b7dd6fdeb24850507a1199aac89",
        "8b1b17a9740c068accab5c3d0d652c8e3cc13206e70bb73b42ea41d4c2de3c12",
    }
)


class SecretKeyError(RuntimeError):
    """The secret is unusable; the message says how to make a good one."""


class TokenError(Exception):
    """A token was refused; str(error) says why."""


def secret_bits(secret: str) -> float:
    """An honest estimate of the randomness in a secret, in bits: the lower of its reading as characters and as words."""
    estimates = [_character_bits(secret)]
    if _reads_as_words(secret):
        estimates.append(_word_bits(secret))
    return min(estimates)


def _bits_per_character(secret: str) -> float:
    for characters, size in ALPHABETS:
        if set(secret) <= set(characters):
            return math.log2(size)
    return ANY_TEXT_BITS


def _repeated(secret: str) -> set[int]:
    positions = set()
    for start in range(1, len(secret) - REPEAT_LENGTH + 1):
        if secret.find(secret[start : start + REPEAT_LENGTH], 0, start + REPEAT_LENGTH - 1) != -1:
            positions.update(range(start, start + REPEAT_LENGTH))
    return positions


def _character_bits(secret: str) -> float:
    return _bits_per_character(secret) * (len(secret) - len(_repeated(secret)))


def _parts(secret: str) -> list[str]:
    return [part for part in re.split(r"[^A-Za-z0-9]+", secret) if part]


def _reads_as_words(secret: str) -> bool:
    parts = _parts(secret)
    words = [part for part in parts if WORD.fullmatch(part)]
    numbers = [part for part in parts if NUMBER.fullmatch(part)]
    return len(parts) >= 2 and len(words) + len(numbers) == len(parts) and len(words) >= len(numbers)


def _word_bits(secret: str) -> float:
    return sum(WORD_BITS if WORD.fullmatch(part) else DIGIT_BITS * len(part) for part in _parts(secret))


def check_secret_key(secret: str, source: str = ENV_VAR) -> str:
    """Return the secret if it can sign HS256 tokens safely; raise SecretKeyError saying why not."""
    if not isinstance(secret, str):
        raise SecretKeyError(f"{source} is {type(secret).__name__}, not text: {HOW_TO_MAKE_ONE}")
    if not secret:
        raise SecretKeyError(f"{source} is empty: {HOW_TO_MAKE_ONE}")
    if len(secret) > MAX_SECRET_LENGTH:
        raise SecretKeyError(
            f"{source} is over {MAX_SECRET_LENGTH} characters, too long for a secret: {HOW_TO_MAKE_ONE}"
        )
    try:
        raw = secret.encode()
    except UnicodeEncodeError:
        raise SecretKeyError(f"{source} is not UTF-8 text: {HOW_TO_MAKE_ONE}") from None
    if hashlib.sha256(raw).hexdigest() in PUBLISHED_SECRETS_SHA256:
        raise SecretKeyError(
            f"{source} is a secret published in a tutorial, so anyone can forge tokens: {HOW_TO_MAKE_ONE}"
        )
    bits = secret_bits(secret)
    if bits < MIN_SECRET_BITS:
        raise SecretKeyError(
            f"{source} holds about {int(bits)} bits of randomness; HS256 needs at least {MIN_SECRET_BITS} "
            f"(RFC 7518, section 3.2): {HOW_TO_MAKE_ONE}"
        )
    try:
        jwk.construct(secret, ALGORITHM)
    except JWKError:
        raise SecretKeyError(
            f"{source} is a public key or certificate, not an HMAC secret: {HOW_TO_MAKE_ONE}"
        ) from None
    return secret


@functools.lru_cache(maxsize=4)
def hmac_key(secret: str, source: str = ENV_VAR) -> Key:
    """The secret, checked (SecretKeyError naming source when it is weak), as the HMAC key object python-jose signs
    and verifies with: never the raw string, which python-jose would read as a JSON key set when verifying."""
    return jwk.construct(check_secret_key(secret, source), ALGORITHM)


def get_signing_key() -> Key:
    """The key of the lessons' secret (secret_file.py), for the functions given no key of their own."""
    from lesson_code.secret_file import get_secret_key  # here, not at import: given keys, no secret file is needed

    return hmac_key(get_secret_key())


def create_access_token(data: dict, expires_delta: timedelta | None = None, key: Key | None = None) -> str:
    """A token holding data, iat and exp (15 minutes from now unless expires_delta says otherwise), signed with key
    (from hmac_key; by default, the lessons' secret).

    ValueError for data whose sub is missing or not a string: decode_access_token would refuse every such token.
    """
    if not isinstance(data.get("sub"), str):
        raise ValueError(f"sub must be a string, not {type(data.get('sub')).__name__}: the token would be refused")
    if expires_delta is None:
        expires_delta = timedelta(minutes=ACCESS_TOKEN_EXPIRE_MINUTES)
    now = datetime.now(timezone.utc)
    to_encode = data.copy()
    to_encode.update({"iat": now, "exp": now + expires_delta})
    return jwt.encode(to_encode, get_signing_key() if key is None else key, algorithm=ALGORITHM)


def check_shape(token: str) -> None:
    """TokenError unless token is text of at most MAX_TOKEN_LENGTH characters, three base64url parts."""
    if not isinstance(token, str):
        raise TokenError(f"a token is text, not {type(token).__name__}")
    if len(token) > MAX_TOKEN_LENGTH:
        raise TokenError(f"token is longer than {MAX_TOKEN_LENGTH} characters")
    if not TOKEN_SHAPE.fullmatch(token):
        raise TokenError("a token is three base64url parts joined by dots")


def _readable_header(token: str) -> dict | None:
    """The header of a well-formed token, decoded as python-jose decodes it, without decoding the rest; None when
    any part would not decode (python-jose then reads it, and says what is wrong in its own words)."""
    header, payload, signature = token.split(".")  # check_shape saw exactly three parts
    if 1 in (len(header) % 4, len(payload) % 4, len(signature) % 4):  # no base64 text is 4n + 1 characters long
        return None
    try:
        read = json.loads(base64.urlsafe_b64decode(header + "=" * (-len(header) % 4)).decode("utf-8"))
    except (ValueError, RecursionError):
        return None
    return read if isinstance(read, dict) else None


def get_unverified_header(token: str) -> dict:
    """The token's header, read WITHOUT checking the signature: for display, and for the header rules."""
    check_shape(token)
    header = _readable_header(token)  # once per request: python-jose's own reading decodes the whole token
    if header is not None:
        return header
    try:
        return jwt.get_unverified_header(token)
    except (JOSEError, RecursionError) as error:
        raise TokenError(f"header is not readable: {error_reason(error)}") from None


def get_unverified_claims(token: str) -> dict:
    """The token's claims, read WITHOUT checking the signature: for display only."""
    check_shape(token)
    try:
        return jwt.get_unverified_claims(token)
    except (JOSEError, RecursionError) as error:
        raise TokenError(f"payload is not readable: {error_reason(error)}") from None


def error_reason(error: Exception) -> str:
    """What python-jose's error (or a RecursionError) says, as one line for a TokenError."""
    if isinstance(error, RecursionError):
        return "JSON nested too deeply"
    return str(error).rstrip(".")


def check_algorithm(header: dict) -> None:
    algorithm = header.get("alg")
    if algorithm != ALGORITHM:
        raise TokenError(f"algorithm {algorithm!r} is not allowed, only {ALGORITHM!r}")


def check_type(header: dict) -> None:
    if header.get("typ", ACCESS_TOKEN_TYPE) != ACCESS_TOKEN_TYPE:
        raise TokenError(f"typ {header['typ']!r} is not an access token's ({ACCESS_TOKEN_TYPE!r})")


def check_no_critical_extensions(header: dict) -> None:
    if "crit" in header:
        raise TokenError("header names critical extensions (crit), which are not supported")


def check_payload_encoded(header: dict) -> None:
    if header.get("b64", True) is not True:
        raise TokenError("unencoded payloads (b64 other than true) are not supported")


def check_key_id(header: dict) -> None:
    if "kid" in header and not isinstance(header["kid"], str):
        raise TokenError("kid must be a string")


def check_signature_spelling(token: str) -> None:
    signature = token.rpartition(".")[2]
    try:
        raw = base64.urlsafe_b64decode(signature + "=" * (-len(signature) % 4))
    except (binascii.Error, ValueError):
        raw = None
    if raw is None or base64.urlsafe_b64encode(raw).rstrip(b"=").decode() != signature:
        raise TokenError("signature is not canonical base64url")


def check_registered_claims(claims: dict, require_sub: bool = True, verify_aud: bool = True) -> None:
    """The claim rules python-jose's jwt.decode applies besides the times, in its order and words: sub present
    (when required) and a string; no aud, since these tokens name none (verify_aud=False: the caller checks it);
    a jti a string; no at_hash, which belongs to OpenID Connect ID tokens."""
    if require_sub and "sub" not in claims:
        raise TokenError('missing required key "sub" among claims')
    if verify_aud and "aud" in claims:
        named = [claims["aud"]] if isinstance(claims["aud"], str) else claims["aud"]
        valid = isinstance(named, list) and all(isinstance(name, str) for name in named)
        raise TokenError("Invalid audience" if valid else "Invalid claim format in token")
    if "sub" in claims and not isinstance(claims["sub"], str):
        raise TokenError("Subject must be a string")
    if "jti" in claims and not isinstance(claims["jti"], str):
        raise TokenError("JWT ID must be a string")
    if "at_hash" in claims:
        raise TokenError("No access_token provided to compare against at_hash claim")


def verify_signature_and_read(
    token: str, key: Key, algorithm: str = ALGORITHM, require_sub: bool = True, verify_aud: bool = True
) -> dict:
    """The claims of a token whose signature key verifies with algorithm (HS256 unless told), checked by
    check_registered_claims; TokenError if not. No time rule is applied here: CLAIM_CHECKS are, by each decoder.

    python-jose's jws.verify checks the signature; reading the claims here, not with jwt.decode, spares the two
    more decodings of the whole token that jwt.decode makes (it reads the header again after verifying).
    """
    try:
        payload = jws.verify(token, key, [algorithm])
    except (JOSEError, RecursionError) as error:
        raise TokenError(error_reason(error)) from None
    except (TypeError, ValueError, OverflowError):
        raise TokenError("claims are not readable") from None
    try:
        claims = json.loads(payload.decode("utf-8"))
    except RecursionError as error:
        raise TokenError(error_reason(error)) from None
    except ValueError as error:
        raise TokenError(f"Invalid payload string: {error}") from None
    if not isinstance(claims, dict):
        raise TokenError("Invalid payload string: must be a json object")
    check_registered_claims(claims, require_sub, verify_aud)
    return claims


def numeric_date(claims: dict, name: str) -> float | None:
    """The claim name as seconds since the epoch (None when absent); TokenError unless a finite JSON number."""
    if name not in claims:
        return None
    value = claims[name]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise TokenError("exp, iat and nbf must be numbers of seconds")
    return value


def check_exp_present(claims: dict, now: float) -> None:
    if "exp" not in claims:
        raise TokenError('missing required key "exp" among claims')


def check_numeric_dates(claims: dict, now: float) -> None:
    for name in NUMERIC_DATES:
        numeric_date(claims, name)


def check_not_expired(claims: dict, now: float) -> None:
    if claims["exp"] < now - LEEWAY_SECONDS:
        raise TokenError("token has expired")


def check_not_before(claims: dict, now: float) -> None:
    if "nbf" in claims and claims["nbf"] > now + LEEWAY_SECONDS:
        raise TokenError("token is not valid yet (nbf)")


def check_issued_in_the_past(claims: dict, now: float) -> None:
    if "iat" in claims and claims["iat"] > now + LEEWAY_SECONDS:
        raise TokenError("token was issued in the future (iat)")


# The rules, each raising TokenError or returning None: public, so that every kind of token (refresh tokens in
# sessions.py, ES256 and RS256 tokens in jwks_verify.py) is checked by the same code.
HEADER_CHECKS = (
    check_algorithm,
    check_type,
    check_no_critical_extensions,
    check_payload_encoded,
    check_key_id,
)
CLAIM_CHECKS = (
    check_exp_present,
    check_numeric_dates,
    check_not_expired,
    check_not_before,
    check_issued_in_the_past,
)


def decode_access_token(token: str, key: Key | None = None) -> dict:
    """The claims of a token signed with key (by default, the lessons' secret) that is still valid; raise TokenError
    saying why not."""
    header = get_unverified_header(token)
    for rule in HEADER_CHECKS:
        rule(header)
    check_signature_spelling(token)
    claims = verify_signature_and_read(token, get_signing_key() if key is None else key)
    now = datetime.now(timezone.utc).timestamp()
    for rule in CLAIM_CHECKS:
        rule(claims, now)
    return claims


def expires_at(claims: dict) -> datetime | None:
    """When the claims' exp says the token expires, as an aware UTC datetime; None without exp."""
    if "exp" not in claims:
        return None
    try:
        return datetime.fromtimestamp(numeric_date(claims, "exp"), tz=timezone.utc)
    except (TokenError, ValueError, OverflowError, OSError):
        raise TokenError(f"exp is not a time: {claims['exp']!r}") from None


def time_left(claims: dict) -> timedelta | None:
    """How long until the claims' exp (negative once expired); None without exp."""
    expiry = expires_at(claims)
    return None if expiry is None else expiry - datetime.now(timezone.utc)
