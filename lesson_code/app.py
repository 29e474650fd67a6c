"""The lesson's API: log in at POST /token, then call GET /users/me with the token as a Bearer header."""

import os
import secrets
from contextlib import asynccontextmanager
from typing import Annotated

import anyio.to_thread
from anyio import CapacityLimiter
from fastapi import Depends, FastAPI, HTTPException, Request, Response, status
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.security import OAuth2PasswordBearer, OAuth2PasswordRequestForm
from fastapi.staticfiles import StaticFiles
from pwdlib import PasswordHash
from pwdlib.hashers.argon2 import Argon2Hasher
from pydantic import BaseModel

from lesson_code.protection import LimitRequestBody, LoginThrottle, SecurityHeaders
from lesson_code.settings import Settings, get_settings
from lesson_code.tokens import TokenError, create_access_token, decode_access_token, get_secret_key

# Argon2id as OWASP's password storage cheat sheet sets it out: 19 MiB, 2 passes, 1 lane (so one hash, one core).
password_hash = PasswordHash((Argon2Hasher(time_cost=2, memory_cost=19456, parallelism=1),))
# Hashing is slow on purpose: keep a core free for everything else, however many people log in at once.
HASHING_LIMITER = CapacityLimiter(max(1, (os.cpu_count() or 2) // 2))
DUMMY_HASH = password_hash.hash(secrets.token_urlsafe(16))
HASHING_BUSY_RETRY_SECONDS = 1
# RFC 6749 section 5.1: no cache may keep a response that holds a token.
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "frame-ancestors 'none'",
    "Referrer-Policy": "no-referrer",
}
# Swagger UI's files come with the fastapi-swagger package; relative URLs never name the host the request named.
SWAGGER_FILES = StaticFiles(packages=[("fastapi_swagger", "resources")])
SWAGGER_UI_PARAMETERS = {"persistAuthorization": False, "tryItOutEnabled": True, "displayRequestDuration": True}

users_db = {
    "alice": {
        "username": "alice",
        "full_name": "Alice Liddell",
        "email": "alice@example.com",
        "hashed_password": "$argon2id$v=19$m=19456,t=2,p=1$okvVnhuHKImYiOe0dEynJA$jnYdBirnLnI8d5cFCor4/QEMq2baP+Nhp7ix6yHWibQ",
        "disabled": False,
    },
    "bob": {
        "username": "bob",
        "full_name": "Bob the Builder",
        "email": "bob@example.com",
        "hashed_password": "$argon2id$v=19$m=19456,t=2,p=1$SEUYa6P1mZh3dW25wZXUeA$Cs1rZwpBoGOzruzREUl3s/f/0dobgLTXOKt9uv1Qkwc",
        "disabled": True,
    },
}


class Token(BaseModel):
    access_token: str
    token_type: str


class Message(BaseModel):
    detail: str


class User(BaseModel):
    username: str
    email: str | None = None
    full_name: str | None = None
    disabled: bool | None = None


class UserInDB(User):
    hashed_password: str


oauth2_scheme = OAuth2PasswordBearer(tokenUrl="token")
RETRY_AFTER = {"Retry-After": {"description": "Whole seconds to wait", "schema": {"type": "integer"}}}
BODY_TOO_LARGE_RESPONSE = {
    status.HTTP_413_CONTENT_TOO_LARGE: {"model": Message, "description": "Request body larger than the limit"}
}
LOGIN_RESPONSES = {
    status.HTTP_400_BAD_REQUEST: {"model": Message, "description": "Body that cannot be parsed"},
    status.HTTP_401_UNAUTHORIZED: {"model": Message, "description": "Incorrect username or password"},
    **BODY_TOO_LARGE_RESPONSE,
    status.HTTP_429_TOO_MANY_REQUESTS: {
        "model": Message,
        "description": "Too many failed logins",
        "headers": RETRY_AFTER,
    },
    status.HTTP_503_SERVICE_UNAVAILABLE: {
        "model": Message,
        "description": "Too many logins waiting for password hashing",
        "headers": RETRY_AFTER,
    },
}
USERS_ME_RESPONSES = {
    status.HTTP_400_BAD_REQUEST: {"model": Message, "description": "Inactive user"},
    status.HTTP_401_UNAUTHORIZED: {"model": Message, "description": "Missing or invalid token"},
    **BODY_TOO_LARGE_RESPONSE,
}


@asynccontextmanager
async def lifespan(app: FastAPI):
    get_secret_key()
    yield {"login_throttle": LoginThrottle(get_settings().login_limits_storage_url)}


app = FastAPI(title="JWT lesson API", lifespan=lifespan, docs_url=None, redoc_url=None)
app.add_middleware(LimitRequestBody)
app.add_middleware(SecurityHeaders, headers=SECURITY_HEADERS)
app.mount("/swagger", SWAGGER_FILES, name="swagger")


def get_user(username: str) -> UserInDB | None:
    if username in users_db:
        return UserInDB(**users_db[username])
    return None


def hashing_queue_full(max_waiting: int) -> bool:
    hashing = HASHING_LIMITER.statistics()
    return hashing.borrowed_tokens >= hashing.total_tokens and hashing.tasks_waiting >= max_waiting


async def verify_password(password: str, hashed_password: str, max_waiting: int) -> bool:
    if hashing_queue_full(max_waiting):
        raise HTTPException(
            status_code=status.HTTP_503_SERVICE_UNAVAILABLE,
            detail=f"Too many logins at once: try again in {HASHING_BUSY_RETRY_SECONDS} second",
            headers={"Retry-After": str(HASHING_BUSY_RETRY_SECONDS)},
        )
    return await anyio.to_thread.run_sync(password_hash.verify, password, hashed_password, limiter=HASHING_LIMITER)


async def authenticate_user(username: str, password: str, max_waiting: int) -> UserInDB | None:
    user = get_user(username)
    verified = await verify_password(password, user.hashed_password if user else DUMMY_HASH, max_waiting)
    return user if user and verified and not user.disabled else None


def get_login_throttle(request: Request) -> LoginThrottle:
    return request.state.login_throttle


def client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


async def get_current_user(token: Annotated[str, Depends(oauth2_scheme)]) -> UserInDB:
    credentials_exception = HTTPException(
        status_code=status.HTTP_401_UNAUTHORIZED,
        detail="Could not validate credentials",
        headers={"WWW-Authenticate": "Bearer"},
    )
    try:
        claims = decode_access_token(token)
    except TokenError:
        raise credentials_exception from None
    user = get_user(claims["sub"])
    if user is None:
        raise credentials_exception
    return user


async def get_current_active_user(current_user: Annotated[UserInDB, Depends(get_current_user)]) -> UserInDB:
    if current_user.disabled:
        raise HTTPException(status_code=status.HTTP_400_BAD_REQUEST, detail="Inactive user")
    return current_user


@app.get("/", include_in_schema=False)
async def redirect_to_docs() -> RedirectResponse:
    return RedirectResponse("docs")


@app.get("/docs", include_in_schema=False)
async def swagger_ui_html() -> HTMLResponse:
    return get_swagger_ui_html(
        openapi_url="openapi.json",
        title=f"{app.title} - Swagger UI",
        swagger_js_url="swagger/swagger-ui-bundle.js",
        swagger_css_url="swagger/swagger-ui.css",
        swagger_favicon_url="swagger/favicon-32x32.png",
        swagger_ui_parameters=SWAGGER_UI_PARAMETERS,
    )


@app.post("/token", responses=LOGIN_RESPONSES)
async def login_for_access_token(
    form_data: Annotated[OAuth2PasswordRequestForm, Depends()],
    client: Annotated[str, Depends(client_address)],
    throttle: Annotated[LoginThrottle, Depends(get_login_throttle)],
    settings: Annotated[Settings, Depends(get_settings)],
    response: Response,
) -> Token:
    wait = await throttle.seconds_to_wait(settings, form_data.username, client)
    if wait:
        raise HTTPException(
            status_code=status.HTTP_429_TOO_MANY_REQUESTS,
            detail=f"Too many failed logins: try again in {wait} seconds",
            headers={"Retry-After": str(wait)},
        )
    user = await authenticate_user(form_data.username, form_data.password, settings.max_logins_waiting_to_hash)
    if user is None:
        await throttle.record_failure(settings, form_data.username, client)
        raise HTTPException(
            status_code=status.HTTP_401_UNAUTHORIZED,
            detail="Incorrect username or password",
            headers={"WWW-Authenticate": "Bearer"},
        )
    response.headers.update(NO_STORE)
    return Token(access_token=create_access_token({"sub": user.username}), token_type="bearer")


@app.get("/users/me", responses=USERS_ME_RESPONSES)
async def read_users_me(current_user: Annotated[UserInDB, Depends(get_current_active_user)]) -> User:
    return current_user
