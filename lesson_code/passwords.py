"""Password hashing for the app: Argon2id, in worker threads, a few at a time, never on the event loop.

pwdlib and anyio only; nothing is hashed at import (the dummy hash is made on first use).
"""

import functools
import os
import secrets

import anyio.to_thread
from anyio import CapacityLimiter
from pwdlib import PasswordHash
from pwdlib.hashers.argon2 import Argon2Hasher

# Argon2id as OWASP's password storage cheat sheet sets it out: 19 MiB, 2 passes, 1 lane (so one hash, one core).
password_hash = PasswordHash((Argon2Hasher(time_cost=2, memory_cost=19456, parallelism=1),))
# Hashing is slow on purpose: keep a core free for everything else, however many people log in at once.
HASHING_LIMITER = CapacityLimiter(max(1, (os.cpu_count() or 2) // 2))
HASHING_BUSY_RETRY_SECONDS = 1


class HashingQueueFull(Exception):
    """Too many logins already wait to be hashed: refuse this one at once (an app answers 503 with Retry-After)."""

    retry_after = HASHING_BUSY_RETRY_SECONDS

    def __str__(self) -> str:
        return f"Too many logins at once: try again in {self.retry_after} second"


def hashing_queue_full(max_waiting: int) -> bool:
    hashing = HASHING_LIMITER.statistics()
    return hashing.borrowed_tokens >= hashing.total_tokens and hashing.tasks_waiting >= max_waiting


async def verify_password(password: str, hashed_password: str, max_waiting: int) -> bool:
    if hashing_queue_full(max_waiting):
        raise HashingQueueFull()
    return await anyio.to_thread.run_sync(password_hash.verify, password, hashed_password, limiter=HASHING_LIMITER)


@functools.cache
def dummy_hash() -> str:
    """The hash of a random password thrown away at once: what a login naming no user is checked against."""
    return password_hash.hash(secrets.token_urlsafe(16))
