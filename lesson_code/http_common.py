"""The HTTP pieces every app here shares: error bodies and their OpenAPI descriptions, the 401 and 403 answers of a
bearer-token API, headers no cache or browser may ignore, a cap on request bodies, and a hardened FastAPI app.

FastAPI only (and fastapi-swagger, through offline_docs.py, for /docs without internet): copy it with any app.
"""

import sys
from collections.abc import Callable

from fastapi import FastAPI, HTTPException, Request, status
from fastapi.security import SecurityScopes
from pydantic import BaseModel
from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.types import Message as ASGIMessage

# RFC 6749 section 5.1: no cache may keep a response that holds a token.
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "frame-ancestors 'none'",
    "Referrer-Policy": "no-referrer",
}


class Message(BaseModel):
    detail: str


RETRY_AFTER = {"Retry-After": {"description": "Whole seconds to wait", "schema": {"type": "integer"}}}
BODY_TOO_LARGE_RESPONSE = {
    status.HTTP_413_CONTENT_TOO_LARGE: {"model": Message, "description": "Request body larger than the limit"}
}
INSUFFICIENT_SCOPE_RESPONSE = {
    status.HTTP_403_FORBIDDEN: {
        "model": Message,
        "description": "A valid token without the scope this route needs (RFC 6750, section 3.1)",
        "headers": {
            "WWW-Authenticate": {
                "description": 'Bearer error="insufficient_scope", scope="<the scope needed>"',
                "schema": {"type": "string"},
            }
        },
    }
}


def credentials_exception() -> HTTPException:
    """The one answer to every token that is refused, whatever the reason: no oracle for an attacker."""
    return HTTPException(
        status_code=status.HTTP_401_UNAUTHORIZED,
        detail="Could not validate credentials",
        headers={"WWW-Authenticate": "Bearer"},
    )


def insufficient_scope(security_scopes: SecurityScopes) -> HTTPException:
    """403 for a valid token without the scopes a route needs: a 401 would tell the client to log in again."""
    return HTTPException(
        status_code=status.HTTP_403_FORBIDDEN,
        detail=f"Not enough permissions: this needs the scope {security_scopes.scope_str}",
        headers={"WWW-Authenticate": f'Bearer error="insufficient_scope", scope="{security_scopes.scope_str}"'},
    )


def client_address(request: Request) -> str:
    """The client's address as uvicorn reports it (behind a trusted proxy, the one X-Forwarded-For names)."""
    return request.client.host if request.client else "unknown"


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
    """Answers 413 for a body over max_bytes(): at once from Content-Length, else as soon as the count passes it.

    A body in another charset than UTF-8 gets 415: decoded as, say, unicode_escape, a form field can hold text that
    no database, hash or JSON answer can encode. max_bytes is called for each request (a setting, read once).
    """

    def __init__(self, app: ASGIApp, max_bytes: Callable[[], int]) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        max_bytes = self.max_bytes()
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

        async def counting_receive() -> ASGIMessage:
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

        async def send_with_headers(message: ASGIMessage) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *self.headers]
            await send(message)

        await self.app(scope, receive, send_with_headers)


class StartupFailureInOneLine:
    """uvicorn prints what a failed start-up reports: for the errors named (a bad database, secret or setting, each
    with a message of one line), that line instead of a traceback."""

    def __init__(self, app: ASGIApp, errors: tuple[type[BaseException], ...]) -> None:
        self.app = app
        self.errors = errors

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "lifespan":
            await self.app(scope, receive, send)
            return

        async def send_one_line(message: ASGIMessage) -> None:
            error = sys.exc_info()[1]
            if message["type"] == "lifespan.startup.failed" and isinstance(error, self.errors):
                message = {**message, "message": str(error)}
            await send(message)

        await self.app(scope, receive, send_one_line)


def hardened_app(
    title: str, lifespan, max_body_bytes: Callable[[], int], one_line_errors: tuple[type[BaseException], ...]
) -> FastAPI:
    """An app with the body cap, the security headers, start-up failures in one line, and /docs served offline."""
    made = FastAPI(title=title, lifespan=lifespan, docs_url=None, redoc_url=None)
    made.add_middleware(LimitRequestBody, max_bytes=max_body_bytes)
    made.add_middleware(SecurityHeaders, headers=SECURITY_HEADERS)
    made.add_middleware(StartupFailureInOneLine, errors=one_line_errors)
    from .offline_docs import add_offline_docs  # here: the pieces above need no fastapi-swagger

    add_offline_docs(made)
    return made
