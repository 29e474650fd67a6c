"""The app's limits, read once from environment variables (FastAPI's "Settings and Environment Variables" pattern)."""

from functools import lru_cache

from limits import parse
from pydantic import Field, field_validator
from pydantic_settings import BaseSettings


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
    login_limits_storage_url: str = Field(
        "async+memory://",
        description="Where failed logins are counted, as a URL of the limits library: async+memory:// in this "
        "process, async+redis://host:6379 to share the counts between machines.",
    )
    max_logins_waiting_to_hash: int = Field(
        16,
        ge=0,
        description="Logins allowed to wait for a password-hashing thread; one more is answered 503 at once. "
        "16 hashes of about 40 ms each keep the wait under a second.",
    )
    request_body_max_bytes: int = Field(
        4096,
        ge=0,
        description="Largest request body accepted; a larger one is answered 413 before it is read.",
    )

    @field_validator("login_failures_per_account", "login_failures_per_client", "login_failures_per_account_and_client")
    @classmethod
    def check_rate(cls, value: str) -> str:
        parse(value)
        return value

    @field_validator("login_limits_storage_url")
    @classmethod
    def check_storage(cls, value: str) -> str:
        if not value.startswith("async+"):
            raise ValueError(f"the app counts from async code: write async+{value}")
        return value


@lru_cache
def get_settings() -> Settings:
    return Settings()
