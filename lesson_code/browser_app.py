"""A sign-in page for browsers at GET /app, and the token-mediating backend it needs (RFC 10017, section 6.2).

    browser = BrowserRoutes(get_auth, get_token_auth=get_token_auth)   # the same dependencies as AuthRoutes
    app.include_router(browser.router)     # GET /app, POST /app/session/login, /app/session/refresh, /logout

The page keeps the short-lived access token in its script's memory only and calls the API with it as a Bearer
token, as any API client does. The refresh token never reaches the page's script: the service sets it as a cookie,
__Host-jwt-lesson-refresh (HttpOnly, Secure, SameSite=Strict, Path=/, no Domain), and reads it at the three
/app/session endpoints only, which rotate it as POST /token does (reuse detection in force) and answer with a new
access token. Those endpoints refuse any request that is not from a page of this service's own origin (Origin and
Sec-Fetch-Site, Fetch Metadata), with 403: SameSite does not stop another port of the same host, which is the same
site. The Bearer API (POST /token, /users/me, /docs) reads no cookie, so it needs no such check and is unchanged.

Several tabs refresh one at a time, under a Web Locks API lock the page takes: the second finds the cookie already
rotated by the first (or the first's new access token, told by a BroadcastChannel) and never presents a spent one,
so reuse detection fires only for a real replay. Needs auth_router.py and what it needs.
"""

import base64
import hashlib
from collections.abc import Callable, Coroutine
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Cookie, Depends, HTTPException, Request, Response, status
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.routing import APIRoute
from pydantic import BaseModel, Field

from . import sessions  # relative, as in sessions.py
from .auth_router import (
    Auth,
    OAuthErrorResponse,
    TokenRequest,
    current_time,
    oauth_error,
    password_grant,
    refresh_token_grant,
)
from .http_common import NO_STORE, client_address
from .sessions import MAX_LOGIN_LENGTH, TokenPair
from .tokens import get_unverified_claims

REFRESH_COOKIE = "__Host-jwt-lesson-refresh"  # __Host-: Secure, Path=/ and no Domain, or the browser refuses it
NO_REFRESH_COOKIE = "No session cookie: sign in"
MAX_PASSWORD_LENGTH = 1024  # longer is no password anyone types: refused before it is hashed
MAX_ECHOED = 100  # characters of a refused header quoted back
VARY = "Origin, Sec-Fetch-Site"  # the headers a refusal depends on
CROSS_ORIGIN_SITE = (
    "Cross-origin request refused: Sec-Fetch-Site is {site}, and the session cookie serves this service's own "
    "pages only (same-origin)"
)
CROSS_ORIGIN = "Cross-origin request refused: Origin {origin} is not this service's origin, {own}"
NO_ORIGIN = (
    "Request refused: it has no Origin header, and the session cookie serves this service's own pages only "
    "(browsers send Origin; API clients use POST /token)"
)
STYLE = """
body { font: 16px/1.5 system-ui, sans-serif; max-width: 28rem; margin: 3rem auto; padding: 0 1rem; }
form, section { display: grid; gap: 0.5rem; }
[hidden] { display: none; }
button { justify-self: start; padding: 0.3rem 1rem; }
#status { min-height: 1.5em; color: #555; }
"""
PAGE = f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>JWT lesson service: sign in</title>
<style>{STYLE}</style>
<script src="app/app.js" defer></script>
</head>
<body>
<main>
<h1>JWT lesson service</h1>
<p id="status" role="status" aria-live="polite">Loading…</p>
<form id="sign-in" method="post" hidden>
<label for="username">Username</label>
<input id="username" name="username" autocomplete="username" required>
<label for="password">Password</label>
<input id="password" name="password" type="password" autocomplete="current-password" required>
<button type="submit">Sign in</button>
</form>
<section id="signed-in" hidden>
<p>Signed in as <strong id="full-name"></strong> (<span id="who"></span>)</p>
<button id="check" type="button">Check who I am</button>
<button id="sign-out" type="button">Sign out</button>
</section>
</main>
</body>
</html>
"""
# The page's script. The access token lives in `access`, inside this closure: no storage, no cookie, no global.
SCRIPT = """"use strict";
(() => {
  const LOCK = "jwt-lesson-refresh";
  const channel = new BroadcastChannel("jwt-lesson-session");
  const $ = (id) => document.getElementById(id);
  let access = null;

  function exchange(path, body) {
    const headers = body === undefined ? {} : { "Content-Type": "application/json" };
    const json = body === undefined ? undefined : JSON.stringify(body);
    return fetch(path, { method: "POST", headers, body: json, credentials: "same-origin", cache: "no-store" });
  }

  // One refresh at a time in all of this origin's tabs: the next finds the cookie already rotated, or the
  // new access token already told, and never sends a spent cookie (which would end the session).
  function refresh(stale) {
    return navigator.locks.request(LOCK, async () => {
      if (access !== stale) return access;
      const response = await exchange("app/session/refresh");
      access = response.ok ? (await response.json()).access_token : null;
      if (access) channel.postMessage({ type: "token", token: access });
      return access;
    });
  }

  async function api(path) {
    let token = access || (await refresh(null));
    for (let attempt = 0; token && attempt < 2; attempt += 1) {
      const response = await fetch(path, { headers: { Authorization: `Bearer ${token}` }, cache: "no-store" });
      if (response.status !== 401) return response.ok ? response.json() : null;
      token = await refresh(token);
    }
    return null;
  }

  function signedIn(user) {
    $("full-name").textContent = user.full_name || user.username;
    $("who").textContent = user.username;
    $("status").textContent = "";
    $("sign-in").hidden = true;
    $("signed-in").hidden = false;
  }

  function signedOut(message) {
    access = null;
    $("status").textContent = message;
    $("signed-in").hidden = true;
    $("sign-in").hidden = false;
  }

  async function showWhoIAm() {
    const user = await api("users/me");
    if (user) signedIn(user);
    else signedOut("Not signed in");
  }

  $("sign-in").addEventListener("submit", async (event) => {
    event.preventDefault();
    const fields = { username: $("username").value, password: $("password").value };
    $("password").value = "";
    const response = await exchange("app/session/login", fields);
    const body = await response.json();
    if (!response.ok) {
      $("status").textContent = typeof body.detail === "string" ? body.detail : "Fill in both fields";
      return;
    }
    access = body.access_token;
    channel.postMessage({ type: "token", token: access });
    await showWhoIAm();
  });

  $("check").addEventListener("click", showWhoIAm);

  $("sign-out").addEventListener("click", async () => {
    await navigator.locks.request(LOCK, () => exchange("app/session/logout"));
    channel.postMessage({ type: "signed-out" });
    signedOut("Signed out");
  });

  channel.onmessage = ({ data }) => {
    if (data.type === "signed-out") signedOut("Signed out in another tab");
    if (data.type !== "token") return;
    access = data.token;
    if ($("signed-in").hidden) showWhoIAm();
  };

  showWhoIAm();
})();
"""
STYLE_HASH = base64.b64encode(hashlib.sha256(STYLE.encode()).digest()).decode()
# What the page may load and run: its own script and that one style block, fetch its own origin; nothing else. No
# HTML or script from a string either (Trusted Types, and no policy to make them): the script writes textContent only.
PAGE_POLICY = (
    f"default-src 'none'; script-src 'self'; style-src 'sha256-{STYLE_HASH}'; connect-src 'self'; "
    "form-action 'self'; base-uri 'none'; frame-ancestors 'none'; require-trusted-types-for 'script'; "
    "trusted-types 'none'"
)
PAGE_HEADERS = {
    **NO_STORE,
    "Content-Security-Policy": PAGE_POLICY,
    "Cross-Origin-Opener-Policy": "same-origin",  # a page of another origin that opened this one cannot reach it
    "Cross-Origin-Resource-Policy": "same-origin",  # nor embed the page or its script
}


class SignIn(BaseModel):
    username: str = Field(min_length=1, max_length=MAX_LOGIN_LENGTH, examples=["alice"])
    password: str = Field(min_length=1, max_length=MAX_PASSWORD_LENGTH, examples=["wonderland"])
    scope: str = Field("", max_length=MAX_LOGIN_LENGTH, description="As at POST /token: me when left empty")


class BrowserTokens(BaseModel):
    """What the page gets: an access token for its memory. The refresh token goes in the cookie, never here."""

    access_token: str
    token_type: str = "bearer"
    expires_in: int
    scope: str


def own_origin(request: Request) -> str:
    """The origin the request was sent to, as a browser writes it in Origin: scheme://host[:port]."""
    return f"{request.url.scheme}://{request.url.netloc}".lower()


def cross_origin_refusal(origin: str | None, fetch_site: str | None, own: str) -> str | None:
    """Why a request with these Origin and Sec-Fetch-Site headers may not use the session cookie; None: it may.

    Sec-Fetch-Site, when sent (every current browser does), must be same-origin; Origin must be there and be own.
    A page on another port of the same host is same-site, and SameSite lets the cookie go with its requests.
    """
    if fetch_site is not None and fetch_site != "same-origin":
        return CROSS_ORIGIN_SITE.format(site=fetch_site[:MAX_ECHOED])
    if origin is None:
        return NO_ORIGIN
    if origin.lower() != own:
        return CROSS_ORIGIN.format(origin=origin[:MAX_ECHOED], own=own)
    return None


def same_origin_refusal(request: Request) -> JSONResponse | None:
    """403 for a request that may not use the session cookie, saying why; None for one that may."""
    headers = request.headers
    refusal = cross_origin_refusal(headers.get("origin"), headers.get("sec-fetch-site"), own_origin(request))
    if refusal is None:
        return None
    return JSONResponse({"detail": refusal}, status.HTTP_403_FORBIDDEN, headers={**NO_STORE, "Vary": VARY})


class SameOriginRoute(APIRoute):
    """A route that answers only its own origin's pages: the check comes first, before the body is even parsed, so
    a refused request does nothing at all (a dependency would run after FastAPI read the body)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def checked_first(request: Request) -> Response:
            return same_origin_refusal(request) or await handler(request)

        return checked_first


def set_refresh_cookie(response: Response, refresh_token: str, now: datetime) -> None:
    """The refresh token in its cookie, kept until the token expires: script cannot read it (HttpOnly), it goes over
    HTTPS only (Secure; Chromium counts http://127.0.0.1 and localhost as secure), to this host only (__Host-, no
    Domain), and never with a request another site started (SameSite=Strict)."""
    seconds = max(0, int(get_unverified_claims(refresh_token)["exp"] - now.timestamp()))
    response.set_cookie(
        REFRESH_COOKIE, refresh_token, max_age=seconds, path="/", secure=True, httponly=True, samesite="strict"
    )


def clear_refresh_cookie(response: Response) -> None:
    """Tell the browser to drop the cookie (the same name and attributes, expired)."""
    response.delete_cookie(REFRESH_COOKIE, path="/", secure=True, httponly=True, samesite="strict")


def tokens_answer(pair: TokenPair, now: datetime) -> JSONResponse:
    """The page's answer: the access token in the body, the refresh token in the cookie; kept by no cache."""
    body = BrowserTokens(access_token=pair.access_token, expires_in=pair.expires_in, scope=pair.scope)
    response = JSONResponse(body.model_dump(), headers=NO_STORE)
    set_refresh_cookie(response, pair.refresh_token, now)
    return response


class BrowserRoutes:
    """The page (router) and its session endpoints, with the dependencies AuthRoutes takes: get_auth (every
    request), get_token_auth (sign-in and refresh: the lifetimes and login limits of the settings now), now."""

    def __init__(
        self,
        get_auth: Callable[..., Any],
        *,
        get_token_auth: Callable[..., Any] | None = None,
        now: Callable[..., Any] = current_time,
    ) -> None:
        AuthNow = Annotated[Auth, Depends(get_auth)]
        TokenAuth = Annotated[Auth, Depends(get_token_auth or get_auth)]
        Now = Annotated[datetime, Depends(now)]
        RefreshCookie = Annotated[str | None, Cookie(alias=REFRESH_COOKIE)]
        # Not in the OpenAPI schema: the page's own endpoints, not an API (API clients use POST /token, /docs too).
        self.router = router = APIRouter(include_in_schema=False)
        cookie_routes = APIRouter(
            include_in_schema=False, route_class=SameOriginRoute
        )  # every route reading the cookie

        @router.get("/app")
        async def sign_in_page() -> HTMLResponse:
            return HTMLResponse(PAGE, headers=PAGE_HEADERS)

        @router.get("/app/app.js")
        async def page_script() -> Response:
            return Response(SCRIPT, media_type="text/javascript", headers=PAGE_HEADERS)

        @cookie_routes.post("/app/session/login")
        async def sign_in(
            form: SignIn, auth: TokenAuth, now: Now, client: Annotated[str, Depends(client_address)]
        ) -> Response:
            """Sign in from the page: an access token in the body, the refresh token in the cookie."""
            asked = TokenRequest(username=form.username, password=form.password, scope=form.scope)
            try:
                pair = await password_grant(asked, auth, now, client)
            except OAuthErrorResponse as error:
                return oauth_error(error)
            except HTTPException as error:  # 401, 429, 503: as at POST /token
                error.headers = {**(error.headers or {}), **NO_STORE}
                raise
            return tokens_answer(pair, now)

        @cookie_routes.post("/app/session/refresh")
        async def refresh(auth: TokenAuth, now: Now, cookie: RefreshCookie = None) -> Response:
            """Spend the cookie's refresh token for a new access token and a new cookie; a refused one is cleared."""
            try:
                if not cookie:
                    raise OAuthErrorResponse("invalid_request", NO_REFRESH_COOKIE)
                asked = TokenRequest(grant_type="refresh_token", refresh_token=cookie)
                pair = await refresh_token_grant(asked, auth, now)
            except OAuthErrorResponse as error:
                refused = oauth_error(error)
                clear_refresh_cookie(refused)
                return refused
            return tokens_answer(pair, now)

        @cookie_routes.post("/app/session/logout", status_code=status.HTTP_204_NO_CONTENT, response_class=Response)
        def sign_out(auth: AuthNow, now: Now, cookie: RefreshCookie = None) -> Response:
            """End the cookie's session (its access tokens are refused from now on) and clear the cookie."""
            if cookie:
                sessions.revoke(auth.engine, cookie, now, auth.access_tokens, auth.refresh_key)
            response = Response(status_code=status.HTTP_204_NO_CONTENT, headers=NO_STORE)
            clear_refresh_cookie(response)
            return response

        router.include_router(cookie_routes)
