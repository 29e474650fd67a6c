"""The lesson's API: log in at POST /token, then call GET /users/me with the token as a Bearer header."""

from contextlib import asynccontextmanager
from typing import Annotated

from fastapi import Depends, FastAPI, HTTPException, Request, Response, status
from fastapi.security import OAuth2PasswordBearer, OAuth2PasswordRequestForm
from pydantic import BaseModel

from lesson_code.http_common import (
    BODY_TOO_LARGE_RESPONSE,
    NO_STORE,
    RETRY_AFTER,
    SECURITY_HEADERS,
    LimitRequestBody,
    Message,
    SecurityHeaders,
    client_address,
)
from lesson_code.offline_docs import add_offline_docs
from lesson_code.passwords import HashingQueueFull, dummy_hash, verify_password
from lesson_code.protection import LoginThrottle, too_many_failed_logins
from lesson_code.settings import Settings, get_settings
from lesson_code.tokens import TokenError, create_access_token, decode_access_token, get_signing_key

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


class User(BaseModel):
    username: str
    email: str | None = None
    full_name: str | None = None
    disabled: bool | None = None


class UserInDB(User):
    hashed_password: str


oauth2_scheme = OAuth2PasswordBearer(tokenUrl="token")
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
    get_signing_key()
    yield {"login_throttle": LoginThrottle(get_settings().login_limits_storage_url)}


app = FastAPI(title="JWT lesson API", lifespan=lifespan, docs_url=None, redoc_url=None)
app.add_middleware(LimitRequestBody, max_bytes=lambda: get_settings().request_body_max_bytes)
app.add_middleware(SecurityHeaders, headers=SECURITY_HEADERS)
add_offline_docs(app)


def get_user(username: str) -> UserInDB | None:
    if username in users_db:
        return UserInDB(**users_db[username])
    return None


async def authenticate_user(username: str, password: str, max_waiting: int) -> UserInDB | None:
    user = get_user(username)
    try:
        verified = await verify_password(password, user.hashed_password if user else dummy_hash(), max_waiting)
    except HashingQueueFull as busy:
        raise HTTPException(
            status_code=status.HTTP_503_SERVICE_UNAVAILABLE,
            detail=str(busy),
            headers={"Retry-After": str(busy.retry_after)},
        ) from None
    return user if user and verified and not user.disabled else None


def get_login_throttle(request: Request) -> LoginThrottle:
    return request.state.login_throttle


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
        raise too_many_failed_logins(wait)
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
