"""What guards the app from being worn down: login limits, a cap on request bodies, security headers."""

import math
import time
from urllib.parse import parse_qs, urlsplit

from fastapi import HTTPException, status
from limits import RateLimitItem, parse
from limits.aio.strategies import MovingWindowRateLimiter
from limits.errors import ConfigurationError
from limits.storage import storage_from_string
from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from lesson_code.settings import Settings, get_settings

REDIS_TIMEOUT_SECONDS = 1.0  # a login whose limits Redis does not answer within it gets 503


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
    def _limits(settings: Settings, username: str, client: str) -> list[tuple[RateLimitItem, tuple[str, ...]]]:
        return [
            (parse(settings.login_failures_per_account), ("account", username)),
            (parse(settings.login_failures_per_client), ("client", client)),
            (parse(settings.login_failures_per_account_and_client), ("pair", client, username)),
        ]

    @staticmethod
    def _attempt_limits(settings: Settings, username: str, client: str) -> list[tuple[RateLimitItem, tuple[str, ...]]]:
        return [
            (parse(settings.login_attempts_per_client), ("attempts-client", client)),
            (parse(settings.login_attempts_per_account), ("attempts-account", username)),
        ]

    async def _wait(self, limit: RateLimitItem, keys: tuple[str, ...]) -> int:
        window = await self.limiter.get_window_stats(limit, *keys)
        return max(1, math.ceil(window.reset_time - time.time()))

    async def seconds_to_wait(self, settings: Settings, username: str, client: str) -> int:
        """0 when one more failure is allowed, else the whole seconds until every full window has a free slot."""
        waits = [0]
        for limit, keys in self._limits(settings, username, client):
            if not await self.limiter.test(limit, *keys):
                waits.append(await self._wait(limit, keys))
        return max(waits)

    async def record_failure(self, settings: Settings, username: str, client: str) -> None:
        for limit, keys in self._limits(settings, username, client):
            await self.limiter.hit(limit, *keys)

    async def record_attempt(self, settings: Settings, username: str, client: str) -> int:
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


def body_too_large(max_bytes: int) -> HTTPException:
    return HTTPException(
        status_code=status.HTTP_413_CONTENT_TOO_LARGE, detail=f"Request body is larger than {max_bytes} bytes"
    )


def declared_charset(content_type: str) -> str | None:
    """The charset parameter of a Content-Type header, lower-cased, or None."""
    for parameter in content_type.split(";")[1:]:
        name, _, value = parameter.partition("=")
        if name.strip().lower() == "charset":
            return value.strip().strip('"').lower()
    return None


class LimitRequestBody:
    """Answers 413 for a body over the limit: at once from Content-Length, else as soon as the count passes it.

    A body in another charset than UTF-8 gets 415: decoded as, say, unicode_escape, a form field can hold text that
    no database, hash or JSON answer can encode.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        max_bytes = get_settings().request_body_max_bytes
        headers = Headers(scope=scope)
        charset = declared_charset(headers.get("content-type", ""))
        if charset not in (None, "utf-8", "utf8"):
            detail = f"Request bodies must be UTF-8, not {charset[:40]}"
            await JSONResponse({"detail": detail}, status.HTTP_415_UNSUPPORTED_MEDIA_TYPE)(scope, receive, send)
            return
        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > max_bytes:
            error = body_too_large(max_bytes)
            await JSONResponse({"detail": error.detail}, error.status_code)(scope, receive, send)
            return
        received = 0

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > max_bytes:
                raise body_too_large(max_bytes)
            return message

        await self.app(scope, counting_receive, send)


class SecurityHeaders:
    """Adds the same headers to every response."""

    def __init__(self, app: ASGIApp, headers: dict[str, str]) -> None:
        self.app = app
        self.headers = [(name.lower().encode(), value.encode()) for name, value in headers.items()]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *self.headers]
            await send(message)

        await self.app(scope, receive, send_with_headers)
