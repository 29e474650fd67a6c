"""Create and verify short-lived JWT access tokens (HS256) with python-jose.

Standard library and python-jose only: copy this file into a service as it is.
The secret comes from JWT_SECRET_KEY; without it, one is generated once and kept in .jwt_secret.
"""

import hashlib
import os
import re
import secrets
from datetime import datetime, timedelta, timezone
from pathlib import Path

from jose import jwt
from jose.exceptions import ExpiredSignatureError, JOSEError

ALGORITHM = "HS256"
ACCESS_TOKEN_EXPIRE_MINUTES = 15
LEEWAY_SECONDS = 30
MAX_TOKEN_LENGTH = 4096
TOKEN_SHAPE = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")
MIN_SECRET_BYTES = 32
ENV_VAR = "JWT_SECRET_KEY"
SECRET_FILE = Path(".jwt_secret")
# SHA-256 of secrets printed in public tutorials (FastAPI's, RFC 7515's example key): long, yet known to all.
PUBLISHED_SECRETS_SHA256 = frozenset(
    {
        "570dad43de1af4c925f92c16a68a50936da42b7dd6fdeb24850507a1199aac89",
        "8b1b17a9740c068accab5c3d0d652c8e3cc13206e70bb73b42ea41d4c2de3c12",
    }
)
HOW_TO_MAKE_ONE = 'make one with: python -c "import secrets; print(secrets.token_hex(32))"'


class SecretKeyError(RuntimeError):
    """The secret is unusable; the message says how to make a good one."""


class TokenError(Exception):
    """A token was refused; str(error) says why."""


def check_secret_key(secret: str, source: str = ENV_VAR) -> str:
    size = len(secret.encode())
    if size < MIN_SECRET_BYTES:
        raise SecretKeyError(
            f"{source} is {size} bytes; HS256 needs at least {MIN_SECRET_BYTES} random bytes "
            f"(RFC 7518, section 3.2): {HOW_TO_MAKE_ONE}"
        )
    if hashlib.sha256(secret.encode()).hexdigest() in PUBLISHED_SECRETS_SHA256:
        raise SecretKeyError(
            f"{source} is a secret published in a tutorial, so anyone can forge tokens: {HOW_TO_MAKE_ONE}"
        )
    return secret


def load_secret_key(secret_file: Path = SECRET_FILE) -> str:
    if ENV_VAR in os.environ:
        return check_secret_key(os.environ[ENV_VAR])
    try:
        if not secret_file.exists():
            _create_secret_file(secret_file)
        return check_secret_key(secret_file.read_text().strip(), source=str(secret_file))
    except OSError as error:
        raise SecretKeyError(f"cannot keep a secret in {secret_file} ({error}); set {ENV_VAR} instead") from None


def _create_secret_file(secret_file: Path) -> None:
    draft = secret_file.with_name(f"{secret_file.name}.{os.getpid()}.{secrets.token_hex(4)}")
    descriptor = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as file:
        file.write(secrets.token_hex(MIN_SECRET_BYTES) + "\n")
    try:
        os.link(draft, secret_file)
    except FileExistsError:
        pass
    finally:
        draft.unlink()


SECRET_KEY = load_secret_key()


def create_access_token(data: dict, expires_delta: timedelta | None = None) -> str:
    if expires_delta is None:
        expires_delta = timedelta(minutes=ACCESS_TOKEN_EXPIRE_MINUTES)
    now = datetime.now(timezone.utc)
    to_encode = data.copy()
    to_encode.update({"iat": now, "exp": now + expires_delta})
    return jwt.encode(to_encode, SECRET_KEY, algorithm=ALGORITHM)


def _check_shape(token: str) -> None:
    if not isinstance(token, str):
        raise TokenError(f"a token is text, not {type(token).__name__}")
    if len(token) > MAX_TOKEN_LENGTH:
        raise TokenError(f"token is longer than {MAX_TOKEN_LENGTH} characters")
    if not TOKEN_SHAPE.fullmatch(token):
        raise TokenError("a token is three base64url parts joined by dots")


def get_unverified_header(token: str) -> dict:
    _check_shape(token)
    try:
        return jwt.get_unverified_header(token)
    except (JOSEError, RecursionError) as error:
        raise TokenError(f"header is not readable: {_reason(error)}") from None


def get_unverified_claims(token: str) -> dict:
    _check_shape(token)
    try:
        return jwt.get_unverified_claims(token)
    except (JOSEError, RecursionError) as error:
        raise TokenError(f"payload is not readable: {_reason(error)}") from None


def _reason(error: Exception) -> str:
    if isinstance(error, RecursionError):
        return "JSON nested too deeply"
    return str(error).rstrip(".")


def decode_access_token(token: str) -> dict:
    algorithm = get_unverified_header(token).get("alg")
    if algorithm != ALGORITHM:
        raise TokenError(f"algorithm {algorithm!r} is not allowed, only {ALGORITHM!r}")
    try:
        return jwt.decode(
            token,
            SECRET_KEY,
            algorithms=[ALGORITHM],
            options={"require_exp": True, "require_sub": True, "leeway": LEEWAY_SECONDS},
        )
    except ExpiredSignatureError:
        raise TokenError("token has expired") from None
    except (JOSEError, RecursionError) as error:
        raise TokenError(_reason(error)) from None
    except (TypeError, ValueError, OverflowError):
        raise TokenError("exp, iat and nbf must be numbers of seconds") from None


def expires_at(claims: dict) -> datetime | None:
    if "exp" not in claims:
        return None
    try:
        return datetime.fromtimestamp(claims["exp"], tz=timezone.utc)
    except (TypeError, ValueError, OverflowError, OSError):
        raise TokenError(f"exp is not a time: {claims['exp']!r}") from None


def time_left(claims: dict) -> timedelta | None:
    expiry = expires_at(claims)
    return None if expiry is None else expiry - datetime.now(timezone.utc)
