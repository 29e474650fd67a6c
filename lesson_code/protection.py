"""What guards the app from being worn down: failed-login limits, a cap on request bodies, security headers."""

import math
import time

from fastapi import HTTPException, status
from limits import RateLimitItem, parse
from limits.aio.strategies import MovingWindowRateLimiter
from limits.storage import storage_from_string
from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from lesson_code.settings import Settings, get_settings


class LoginThrottle:
    """Counts failed logins per account, per client address and per pair of both, each in a moving window."""

    def __init__(self, storage_url: str) -> None:
        self.limiter = MovingWindowRateLimiter(storage_from_string(storage_url))

    @staticmethod
    def _limits(settings: Settings, username: str, client: str) -> list[tuple[RateLimitItem, tuple[str, ...]]]:
        return [
            (parse(settings.login_failures_per_account), ("account", username)),
            (parse(settings.login_failures_per_client), ("client", client)),
            (parse(settings.login_failures_per_account_and_client), ("pair", client, username)),
        ]

    async def seconds_to_wait(self, settings: Settings, username: str, client: str) -> int:
        """0 when one more failure is allowed, else the whole seconds until every full window has a free slot."""
        waits = [0]
        for limit, keys in self._limits(settings, username, client):
            if not await self.limiter.test(limit, *keys):
                window = await self.limiter.get_window_stats(limit, *keys)
                waits.append(max(1, math.ceil(window.reset_time - time.time())))
        return max(waits)

    async def record_failure(self, settings: Settings, username: str, client: str) -> None:
        for limit, keys in self._limits(settings, username, client):
            await self.limiter.hit(limit, *keys)


def too_many_failed_logins(wait: int) -> HTTPException:
    return HTTPException(
        status_code=status.HTTP_429_TOO_MANY_REQUESTS,
        detail=f"Too many failed logins: try again in {wait} seconds",
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
