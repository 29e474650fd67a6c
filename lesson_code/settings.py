"""The app's limits, read once from environment variables (FastAPI's "Settings and Environment Variables" pattern)."""

import os
from functools import lru_cache
from pathlib import Path
from typing import Literal

from limits import parse
from pydantic import Field, SecretStr, ValidationError, ValidationInfo, field_validator
from pydantic_settings import BaseSettings

from lesson_code.tokens import ACCESS_TOKEN_EXPIRE_MINUTES, MAX_SECRET_LENGTH, MIN_SECRET_BITS, secret_bits
from lesson_code.tokens import ENV_VAR as SECRET_ENV_VAR

HOW_TO_MAKE_AN_ENCRYPTION_KEY = 'make one with: python -c "import secrets; print(secrets.token_hex(32))"'
DEFAULT_DATABASE_FILE = Path(__file__).resolve().parent.parent / "lesson.db"  # at the repository's root, git-ignored


class SettingsError(ValueError):
    """A setting from the environment is refused; str() is one line that names it."""


class Settings(BaseSettings):
    login_failures_per_account: str = Field(
        "100/hour",
        description="Failed logins allowed per username, from all addresses together, in a moving window. "
        "OWASP ASVS V2.2.1 allows at most 100 an hour.",
    )
    login_failures_per_client: str = Field(
        "300/hour",
        description="Failed logins allowed per client address, for all usernames together: caps password spraying. "
        "300 leaves ten typos each to a class of 30 behind one NAT address.",
    )
    login_failures_per_account_and_client: str = Field(
        "20/hour",
        description="Failed logins allowed per (username, client address) pair. Lower than the per-account limit, "
        "so one address cannot lock an account out for everyone: that takes five addresses at once.",
    )
    login_attempts_per_client: str = Field(
        "60/minute",
        description="Logins allowed per client address, whatever their outcome, in a moving window: one address "
        "cannot spend the hashing capacity, nor start sessions without end, with a valid password either. 60 a "
        "minute leaves two each to a class of 30 behind one NAT address.",
    )
    login_attempts_per_account: str = Field(
        "30/minute",
        description="Logins allowed per username, whatever their outcome, from all addresses together.",
    )
    login_limits_storage_url: str = Field(
        "async+memory://",
        description="Where logins are counted, as a URL of the limits library: async+memory:// in this process "
        "(one worker only), async+redis://host:6379 to share the counts between workers and machines.",
    )
    max_logins_waiting_to_hash: int = Field(
        16,
        ge=0,
        description="Logins allowed to wait for a password-hashing thread, on this machine, all worker processes "
        "together; one more is answered 503 at once. 16 hashes of about 40 ms each keep the wait under a second.",
    )
    max_logins_hashing_per_client: int = Field(
        2,
        ge=1,
        description="Logins from one client address hashing or waiting to at once, per worker process; one more is "
        "answered 429 at once, so a flood from one address leaves the queue to the others.",
    )
    request_body_max_bytes: int = Field(
        4096,
        ge=0,
        description="Largest request body accepted; a larger one is answered 413 before it is read.",
    )
    database_url: str = Field(
        f"sqlite:///{DEFAULT_DATABASE_FILE}",
        description="Where users and sessions are kept, as an SQLAlchemy URL: sqlite:///path/lesson.db, or "
        "postgresql://user@host/name (psycopg 3). Unset: SQLite in lesson.db at the repository's root.",
    )
    access_token_minutes: float = Field(
        ACCESS_TOKEN_EXPIRE_MINUTES,
        gt=0,
        le=24 * 60,
        description="How long an access token is accepted, from 1/60 (a second) to 1440 (a day). Short, because it "
        "is checked by signature and session only: a stolen one works until then unless its session is ended.",
    )
    refresh_token_days: float = Field(
        7,
        gt=0,
        le=365,
        description="How long a refresh token can be used, up to 365 days and no longer than SESSION_DAYS; each "
        "refresh gives a new one (and spends the old one).",
    )
    session_days: float = Field(
        30,
        gt=0,
        le=3650,
        description="A session ends this long after its login however often it is refreshed: then log in again. "
        "Up to 3650 days.",
    )
    max_sessions_per_user: int = Field(
        20,
        ge=1,
        description="Live sessions one user may have (devices, browsers); a login beyond them ends the oldest.",
    )
    jwt_algorithm: Literal["HS256", "ES256", "RS256"] = Field(
        "HS256",
        description="How the service signs access tokens: HS256 with the secret (notebooks 01 to 07), or with the "
        "newest private key of the key folder JWT_KEY_DIR, publishing the public keys at /.well-known/jwks.json "
        "(notebook 08). ES256 or RS256 is the algorithm of the first key made and of `keys rotate`'s new keys. "
        "Refresh tokens, read by this service alone, stay HS256.",
    )
    jwt_key_encryption_key: SecretStr = Field(
        SecretStr(""),
        description="With JWT_ALGORITHM ES256 or RS256 and DATABASE_URL naming a database server (PostgreSQL), the "
        "signing keys are kept in its table signing_keys, shared by every instance, their private halves encrypted "
        "(AES-256-GCM) with a key derived from this: at least 256 bits of randomness, not JWT_SECRET_KEY, the same "
        'for every instance and kept as secret as the keys. Make one with: python -c "import secrets; '
        'print(secrets.token_hex(32))". Not needed with SQLite, whose keys stay in the folder JWT_KEY_DIR.',
    )
    jwt_issuer: str = Field(
        "http://127.0.0.1:8000",
        min_length=1,
        description="The iss claim of ES256 and RS256 access tokens: the issuer's base URL. A resource server "
        "accepts only tokens naming it, and fetches its keys from JWKS_URL.",
    )
    jwt_audience: str = Field(
        "jwt-lesson-api",
        min_length=1,
        description="The aud claim of ES256 and RS256 access tokens: the API they are for. Every verifier checks it.",
    )
    jwks_url: str = Field(
        "",
        description="Where a resource server fetches the issuer's public keys. Empty: JWT_ISSUER followed by "
        "/.well-known/jwks.json.",
    )
    jwks_refetch_seconds: float = Field(
        5,
        ge=0,
        le=3600,
        description="A resource server refetches the key set for a kid it does not know at most this often, so "
        "tokens naming made-up kids cannot make it hammer the issuer. Keep it under the time the issuer publishes "
        "a new key before signing with it (10 s for lesson_code's issuer), or a rotation gives some requests 401.",
    )
    demo_users: bool = Field(
        True,
        description="Add the demo users alice, bob and carol, whose passwords are published (carol is an admin), "
        "when the database has no user yet: turn off for any real deployment.",
    )

    @field_validator(
        "login_failures_per_account",
        "login_failures_per_client",
        "login_failures_per_account_and_client",
        "login_attempts_per_client",
        "login_attempts_per_account",
    )
    @classmethod
    def check_rate(cls, value: str) -> str:
        parse(value)
        return value

    @field_validator("access_token_minutes")
    @classmethod
    def check_at_least_a_second(cls, value: float) -> float:
        if value < 1 / 60:
            raise ValueError("must be at least 1/60 (a second)")
        return value

    @field_validator("session_days")
    @classmethod
    def check_session_outlives_refresh(cls, value: float, info: ValidationInfo) -> float:
        refresh_days = info.data.get("refresh_token_days")
        if refresh_days is not None and value < refresh_days:
            raise ValueError(
                f"must be at least REFRESH_TOKEN_DAYS ({refresh_days}): a refresh token cannot outlive its session"
            )
        return value

    @field_validator("jwt_key_encryption_key")
    @classmethod
    def check_encryption_key(cls, value: SecretStr) -> SecretStr:
        secret = value.get_secret_value()
        if not secret:
            return value  # required only where the keys are in the database: key_store.KeyEncryption says so
        if len(secret) > MAX_SECRET_LENGTH:
            raise ValueError(f"over {MAX_SECRET_LENGTH} characters: {HOW_TO_MAKE_AN_ENCRYPTION_KEY}")
        bits = secret_bits(secret)
        if bits < MIN_SECRET_BITS:
            raise ValueError(
                f"it holds about {int(bits)} bits of randomness, at least {MIN_SECRET_BITS} are needed: "
                f"{HOW_TO_MAKE_AN_ENCRYPTION_KEY}"
            )
        if secret == os.environ.get(SECRET_ENV_VAR):
            raise ValueError(
                f"it is {SECRET_ENV_VAR}: give the keys a key of their own ({HOW_TO_MAKE_AN_ENCRYPTION_KEY})"
            )
        return value

    @field_validator("login_limits_storage_url")
    @classmethod
    def check_storage(cls, value: str) -> str:
        if not value.startswith("async+"):
            raise ValueError(f"the app counts from async code: write async+{value}")
        return value

    @property
    def jwks_location(self) -> str:
        """JWKS_URL, or the issuer's /.well-known/jwks.json."""
        return self.jwks_url or self.jwt_issuer.rstrip("/") + "/.well-known/jwks.json"


@lru_cache
def get_settings() -> Settings:
    return Settings()


def checked_settings() -> Settings:
    """get_settings(), or SettingsError naming the first setting refused, in one line."""
    try:
        return get_settings()
    except ValidationError as error:
        problem = error.errors()[0]
        name = "_".join(str(part) for part in problem["loc"]).upper()
        raise SettingsError(f"{name} is not a valid setting: {problem['msg']}") from None
