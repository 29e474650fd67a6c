"""A stand-in issuer for the resource server's tests: real ES256 keys in a key directory (keys.KeySource), tokens from
keys.SignedAccessTokens, and its JWK Set served to an httpx.MockTransport or over HTTP, counting the fetches.

Set `down` to refuse connections, or `answer` to a function of the request giving the response to send instead.
"""

import json
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from lesson_code import keys

ISSUER = "https://issuer.example"
AUDIENCE = "jwt-lesson-api"
JWKS_PATH = "/.well-known/jwks.json"
MAX_AGE = 300
LONGEST_TOKEN = timedelta(minutes=15)
FIRST_KEY_AGE = timedelta(hours=1)


class JwksIssuer:
    def __init__(self, directory: Path, issuer: str = ISSUER, audience: str = AUDIENCE) -> None:
        keys.rotate(directory, "ES256", datetime.now(timezone.utc) - FIRST_KEY_AGE)  # the key signing for a while
        self.source = keys.KeySource(directory, "ES256", check_every=0)
        self.tokens = keys.SignedAccessTokens(self.source, issuer, audience, LONGEST_TOKEN)
        self.directory = directory
        self.fetches = 0
        self.down = False
        self.answer: Callable[[httpx.Request], httpx.Response] | None = None
        self.cache_control = f"public, max-age={MAX_AGE}"

    def token(self, sub: str = "alice", scope: str = "me", expires_delta: timedelta | None = None) -> str:
        return self.tokens.create({"sub": sub, "scope": scope}, expires_delta)

    def rotate(self, ago: timedelta = timedelta(0)) -> keys.SigningKey:
        """A new key, made ago: it signs once keys.PUBLISH_AHEAD_SECONDS have passed since."""
        return keys.rotate(self.directory, "ES256", datetime.now(timezone.utc) - ago)

    def signing_key(self) -> keys.SigningKey:
        return self.source.ring().signing

    def jwks_response(self, request: httpx.Request) -> httpx.Response:
        """What the issuer's GET /.well-known/jwks.json answers (MockTransport's handler calls it)."""
        self.fetches += 1
        if self.down:
            raise httpx.ConnectError("Connection refused", request=request)
        if self.answer is not None:
            return self.answer(request)
        if request.url.path != JWKS_PATH:
            return httpx.Response(404, json={"detail": "Not Found"})
        return httpx.Response(200, json=self.tokens.jwks(), headers={"Cache-Control": self.cache_control})

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.jwks_response)

    def asgi_app(self) -> Starlette:
        """The same answers over HTTP, for uvicorn."""

        async def jwks(request: Request) -> Response:
            answer = self.jwks_response(httpx.Request("GET", str(request.url)))
            return Response(answer.content, answer.status_code, headers=dict(answer.headers))

        return Starlette(routes=[Route(JWKS_PATH, jwks)])


def private_jwks(issuer: JwksIssuer) -> Callable[[httpx.Request], httpx.Response]:
    """An answer publishing every key whole, private member d included: the mistake a JWKS must never make."""

    def answer(request: httpx.Request) -> httpx.Response:
        whole = [key.jwk for key in issuer.source.ring().keys]
        return httpx.Response(200, content=json.dumps({"keys": whole}), headers={"Content-Type": "application/json"})

    return answer
