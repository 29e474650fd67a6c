"""Login limits: failed logins, and every login attempt, counted in moving windows (the limits library), in this
process's memory or in Redis; and the 429 answers that say how long to wait. The limits are given by the caller (an
object with the five attributes of LoginLimits: the app's settings, say)."""

import math
import time
from typing import Protocol
from urllib.parse import parse_qs, urlsplit

from fastapi import HTTPException, status
from limits import RateLimitItem, parse
from limits.aio.strategies import MovingWindowRateLimiter
from limits.errors import ConfigurationError
from limits.storage import storage_from_string

REDIS_TIMEOUT_SECONDS = 1.0  # a login whose limits Redis does not answer within it gets 503


class LoginLimits(Protocol):
    """The limits LoginThrottle counts against, each a rate of the limits library ("20/hour")."""

    login_failures_per_account: str
    login_failures_per_client: str
    login_failures_per_account_and_client: str
    login_attempts_per_client: str
    login_attempts_per_account: str


class LimitsUnavailable(Exception):
    """The login limits' storage cannot be reached or used; str() says which, in one line."""


class LoginThrottle:
    """Counts logins in moving windows: failed ones per account, per client address and per pair of both; every
    password-grant attempt, whatever its outcome, per client and per account.

    The counts live where LOGIN_LIMITS_STORAGE_URL says: this process's memory, or Redis, shared by every worker and
    machine. A storage that cannot be reached raises limits.errors.StorageError: the caller refuses the login.
    """

    def __init__(self, storage_url: str) -> None:
        # coredis waits for ever by default: a Redis that hangs (frozen, or a network that drops packets) would hold
        # every login. The URL may set its own (?stream_timeout=...&connect_timeout=...).
        query = parse_qs(urlsplit(storage_url).query)
        timeouts = {name: REDIS_TIMEOUT_SECONDS for name in ("stream_timeout", "connect_timeout") if name not in query}
        try:
            self.storage = storage_from_string(storage_url, wrap_exceptions=True, **timeouts)
        except ConfigurationError as error:
            raise LimitsUnavailable(f"LOGIN_LIMITS_STORAGE_URL {storage_url!r} cannot be used: {error}") from None
        self.storage_url = storage_url
        self.limiter = MovingWindowRateLimiter(self.storage)

    @property
    def shared(self) -> bool:
        """Whether the counts are shared between processes (Redis), not kept in this one's memory."""
        return not self.storage_url.startswith("async+memory:")

    async def check(self) -> None:
        """LimitsUnavailable, in one line, when the storage does not answer (at start-up: fail early)."""
        try:
            answered = await self.storage.check()
        except Exception as error:  # whatever the client library raises, the operator reads one line
            answered, why = False, " ".join(str(error).split()) or type(error).__name__
        else:
            why = "it did not answer"
        if not answered:
            raise LimitsUnavailable(f"LOGIN_LIMITS_STORAGE_URL {self.storage_url!r} cannot be reached: {why}")

    @staticmethod
    def _limits(settings: LoginLimits, username: str, client: str) -> list[tuple[RateLimitItem, tuple[str, ...]]]:
        return [
            (parse(settings.login_failures_per_account), ("account", username)),
            (parse(settings.login_failures_per_client), ("client", client)),
            (parse(settings.login_failures_per_account_and_client), ("pair", client, username)),
        ]

    @staticmethod
    def _attempt_limits(
        settings: LoginLimits, username: str, client: str
    ) -> list[tuple[RateLimitItem, tuple[str, ...]]]:
        return [
            (parse(settings.login_attempts_per_client), ("attempts-client", client)),
            (parse(settings.login_attempts_per_account), ("attempts-account", username)),
        ]

    async def _wait(self, limit: RateLimitItem, keys: tuple[str, ...]) -> int:
        window = await self.limiter.get_window_stats(limit, *keys)
        return max(1, math.ceil(window.reset_time - time.time()))

    async def seconds_to_wait(self, settings: LoginLimits, username: str, client: str) -> int:
        """0 when one more failure is allowed, else the whole seconds until every full window has a free slot."""
        waits = [0]
        for limit, keys in self._limits(settings, username, client):
            if not await self.limiter.test(limit, *keys):
                waits.append(await self._wait(limit, keys))
        return max(waits)

    async def record_failure(self, settings: LoginLimits, username: str, client: str) -> None:
        for limit, keys in self._limits(settings, username, client):
            await self.limiter.hit(limit, *keys)

    async def record_attempt(self, settings: LoginLimits, username: str, client: str) -> int:
        """Count one password-grant attempt: 0 when the client's and the account's limits allow it, else the whole
        seconds until they do (an attempt over a limit is not counted in it)."""
        for limit, keys in self._attempt_limits(settings, username, client):
            if not await self.limiter.hit(limit, *keys):
                return await self._wait(limit, keys)
        return 0


def too_many_failed_logins(wait: int) -> HTTPException:
    return HTTPException(
        status_code=status.HTTP_429_TOO_MANY_REQUESTS,
        detail=f"Too many failed logins: try again in {wait} seconds",
        headers={"Retry-After": str(wait)},
    )


def too_many_logins(wait: int) -> HTTPException:
    return HTTPException(
        status_code=status.HTTP_429_TOO_MANY_REQUESTS,
        detail=f"Too many logins: try again in {wait} seconds",
        headers={"Retry-After": str(wait)},
    )
