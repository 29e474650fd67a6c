"""The lesson's API: log in at POST /token, then call GET /users/me with the token as a Bearer header."""

import os
import secrets
from typing import Annotated

import anyio.to_thread
from anyio import CapacityLimiter
from fastapi import Depends, FastAPI, HTTPException, status
from fastapi.security import OAuth2PasswordBearer, OAuth2PasswordRequestForm
from fastapi_swagger import patch_fastapi
from pwdlib import PasswordHash
from pwdlib.hashers.argon2 import Argon2Hasher
from pydantic import BaseModel

from lesson_code.tokens import TokenError, create_access_token, decode_access_token

# Argon2id as OWASP's password storage cheat sheet sets it out: 19 MiB, 2 passes, 1 lane (so one hash, one core).
password_hash = PasswordHash((Argon2Hasher(time_cost=2, memory_cost=19456, parallelism=1),))
# Hashing is slow on purpose: keep a core free for everything else, however many people log in at once.
HASHING_LIMITER = CapacityLimiter(max(1, (os.cpu_count() or 2) // 2))
DUMMY_HASH = password_hash.hash(secrets.token_urlsafe(16))

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
INACTIVE = {status.HTTP_400_BAD_REQUEST: {"model": Message, "description": "Inactive user"}}

app = FastAPI(title="JWT lesson API", docs_url=None, swagger_ui_oauth2_redirect_url=None)
patch_fastapi(app)


def get_user(username: str) -> UserInDB | None:
    if username in users_db:
        return UserInDB(**users_db[username])
    return None


async def authenticate_user(username: str, password: str) -> UserInDB | None:
    user = get_user(username)
    hashed_password = user.hashed_password if user else DUMMY_HASH
    verified = await anyio.to_thread.run_sync(password_hash.verify, password, hashed_password, limiter=HASHING_LIMITER)
    return user if user and verified else None


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


@app.post(
    "/token",
    responses={
        **INACTIVE,
        status.HTTP_401_UNAUTHORIZED: {"model": Message, "description": "Incorrect username or password"},
    },
)
async def login_for_access_token(form_data: Annotated[OAuth2PasswordRequestForm, Depends()]) -> Token:
    user = await authenticate_user(form_data.username, form_data.password)
    if user is None:
        raise HTTPException(
            status_code=status.HTTP_401_UNAUTHORIZED,
            detail="Incorrect username or password",
            headers={"WWW-Authenticate": "Bearer"},
        )
    if user.disabled:
        raise HTTPException(status_code=status.HTTP_400_BAD_REQUEST, detail="Inactive user")
    return Token(access_token=create_access_token({"sub": user.username}), token_type="bearer")


@app.get(
    "/users/me",
    responses={**INACTIVE, status.HTTP_401_UNAUTHORIZED: {"model": Message, "description": "Missing or invalid token"}},
)
async def read_users_me(current_user: Annotated[UserInDB, Depends(get_current_active_user)]) -> User:
    return current_user
