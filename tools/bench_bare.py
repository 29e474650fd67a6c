"""A bare FastAPI app as `make bench` serves it: the floor the protected routes are measured against.

One handler per protected route, answering the same JSON with the same response model and nothing else: no
middleware, no dependency, no database. Served by the same uvicorn, with the same logging, as the apps it is compared
with, so that what separates them is what protection costs (bench.py, section protection and resource).
"""

from datetime import datetime, timezone

from fastapi import FastAPI
from pydantic import BaseModel


class User(BaseModel):  # service.py's User, the answer of /users/me
    username: str
    email: str | None = None
    full_name: str | None = None
    disabled: bool | None = None


class Profile(BaseModel):  # resource_server.py's Profile, the answer of /profile
    username: str
    scopes: list[str]
    token_expires_at: datetime


ALICE = User(username="alice", full_name="Alice Liddell", email="alice@example.com", disabled=False)
ALICES_PROFILE = Profile(username="alice", scopes=["me"], token_expires_at=datetime(2030, 1, 1, tzinfo=timezone.utc))
app = FastAPI()


@app.get("/bench/bare-me")
async def read_alice() -> User:
    return ALICE


@app.get("/bench/bare-profile")
async def read_alices_profile() -> Profile:
    return ALICES_PROFILE
