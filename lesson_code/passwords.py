"""Password hashing for the app: Argon2id, in worker threads, a few at a time, never on the event loop."""

import os
import secrets

import anyio.to_thread
from anyio import CapacityLimiter
from fastapi import HTTPException, status
from pwdlib import PasswordHash
from pwdlib.hashers.argon2 import Argon2Hasher

# Argon2id as OWASP's password storage cheat sheet sets it out: 19 MiB, 2 passes, 1 lane (so one hash, one core).
password_hash = PasswordHash((Argon2Hasher(time_cost=2, memory_cost=19456, parallelism=1),))
# Hashing is slow on purpose: keep a core free for everything else, however many people log in at once.
HASHING_LIMITER = CapacityLimiter(max(1, (os.cpu_count() or 2) // 2))
DUMMY_HASH = password_hash.hash(secrets.token_urlsafe(16))
HASHING_BUSY_RETRY_SECONDS = 1


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
