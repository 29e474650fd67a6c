"""The lesson's app as `make bench` serves it: plus one unprotected copy of /users/me, and the variants it compares.

BENCH_VARIANT picks how login hashes passwords:
    lesson     as lesson_code/passwords.py does: worker threads, at most half the cores at once
    unlimited  worker threads with no limit of our own (anyio's default pool of 40)
    on-loop    right inside the async route, as FastAPI's tutorial does: every login stalls the server
"""

import os

from anyio import CapacityLimiter

from lesson_code import app as lesson
from lesson_code import passwords
from lesson_code.app import User, app, get_user

VARIANT = os.environ.get("BENCH_VARIANT", "lesson")


async def authenticate_on_the_loop(username: str, password: str, max_waiting: int):
    user = get_user(username)
    verified = passwords.password_hash.verify(password, user.hashed_password if user else passwords.dummy_hash())
    return user if user and verified and not user.disabled else None


if VARIANT == "unlimited":
    passwords.HASHING_LIMITER = CapacityLimiter(40)
elif VARIANT == "on-loop":
    lesson.authenticate_user = authenticate_on_the_loop
elif VARIANT != "lesson":
    raise SystemExit(f"BENCH_VARIANT must be lesson, unlimited or on-loop, not {VARIANT!r}")


@app.get("/bench/unprotected-me")
async def read_alice_unprotected() -> User:
    return get_user("alice")
