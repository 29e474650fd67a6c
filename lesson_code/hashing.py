"""Password checks for the finished service: a cap on Argon2 hashes at once that holds for the whole machine, however
many worker processes share it, a bounded queue, and a fair share of it for each client address.

Argon2 is slow on purpose (about 40 ms of one core a check), so it runs in worker threads, never on the event loop,
and at most `threads` at once on this machine: passwords.HASHING_LIMITER's half of the cores, one at least. With
several uvicorn workers (or several services) on one machine, each process would keep its own count; instead they
take turns through flock(2) locks on small files of one folder (HASHING_LOCK_DIR, by default a folder of your own
in the temporary directory), which the kernel releases when a process dies.

A login first takes a ticket, without waiting: there are `threads + max_waiting` on the machine, so at most
max_waiting logins wait, each for well under a second; with none left it is answered 503 at once. One client address
holds at most `per_client` tickets of a process, so a flood from one address cannot take the queue others need.
Without flock (Windows), the same rules hold within the one process.
"""

import os
import queue
import tempfile
from collections import Counter
from pathlib import Path
from threading import Lock

import anyio.to_thread
from anyio import CapacityLimiter

from lesson_code.keys import KeyStoreError, open_private_dir
from lesson_code.passwords import HASHING_LIMITER, HashingQueueFull, password_hash

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None

LOCK_DIR_ENV_VAR = "HASHING_LOCK_DIR"
BUSY_RETRY_SECONDS = HashingQueueFull.retry_after


class HashingBusy(HashingQueueFull):
    """No ticket for this login: the machine's queue is full, or (per_client) this address already holds its share."""

    def __init__(self, per_client: bool) -> None:
        super().__init__()
        self.per_client = per_client


def default_lock_dir() -> Path:
    """HASHING_LOCK_DIR, else lesson_code-hashing-<your user id> in the temporary directory."""
    user = os.getuid() if hasattr(os, "getuid") else "user"
    return Path(os.environ.get(LOCK_DIR_ENV_VAR) or Path(tempfile.gettempdir()) / f"lesson_code-hashing-{user}")


def _open_lock_files(folder: Path, prefix: str, count: int) -> list[int]:
    flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0)
    descriptors = []
    try:
        for index in range(count):
            descriptors.append(os.open(folder / f"{prefix}-{index}", flags, 0o600))
    except OSError as error:
        for descriptor in descriptors:
            os.close(descriptor)
        raise KeyStoreError(f"{folder / f'{prefix}-{len(descriptors)}'} cannot be opened ({error.strerror})") from None
    return descriptors


class PasswordChecks:
    """verify(password, hash, client) under the machine-wide cap; close() when the app stops."""

    def __init__(
        self, max_waiting: int, per_client: int, threads: int | None = None, lock_dir: Path | None = None
    ) -> None:
        self.threads = threads or HASHING_LIMITER.total_tokens
        self.tickets_on_machine = self.threads + max_waiting
        self.per_client = per_client
        self.limiter = CapacityLimiter(self.threads)  # this process's threads: never more than the machine's cap
        self.in_flight: Counter[str] = Counter()
        self.tickets_held = 0
        self.shared = fcntl is not None
        self._slots: queue.SimpleQueue[int] = queue.SimpleQueue()
        self._free_tickets: list[int] = []
        self._descriptors: list[int] = []
        self._lock = Lock()
        if self.shared:
            folder = open_private_dir(lock_dir or default_lock_dir(), LOCK_DIR_ENV_VAR, "who may hash")
            self._free_tickets = _open_lock_files(folder, "ticket", self.tickets_on_machine)
            slots = _open_lock_files(folder, "slot", self.threads)
            self._descriptors = [*self._free_tickets, *slots]
            for descriptor in slots:
                self._slots.put(descriptor)

    def _take_ticket(self) -> int | None:
        """A ticket's descriptor, locked for this login; None when every ticket of the machine is taken."""
        if not self.shared:
            return -1 if self.tickets_held < self.tickets_on_machine else None
        for descriptor in list(self._free_tickets):
            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)  # never waits: the event loop runs this
            except BlockingIOError:
                continue
            self._free_tickets.remove(descriptor)
            return descriptor
        return None

    def _give_back(self, descriptor: int) -> None:
        if self.shared:
            fcntl.flock(descriptor, fcntl.LOCK_UN)
            self._free_tickets.append(descriptor)

    def _verify_in_slot(self, password: str, hashed_password: str) -> bool:
        """In a worker thread: wait for one of the machine's hashing slots, then hash."""
        if not self.shared:
            return password_hash.verify(password, hashed_password)
        slot = self._slots.get_nowait()  # self.limiter lets in no more threads than there are slots
        try:
            fcntl.flock(slot, fcntl.LOCK_EX)  # waits while another process hashes in this slot
            try:
                return password_hash.verify(password, hashed_password)
            finally:
                fcntl.flock(slot, fcntl.LOCK_UN)
        finally:
            self._slots.put(slot)

    async def verify(self, password: str, hashed_password: str, client: str) -> bool:
        """Whether password matches hashed_password; HashingBusy, at once, when this login cannot have a ticket."""
        if self.in_flight[client] >= self.per_client:
            raise HashingBusy(per_client=True)
        ticket = self._take_ticket()
        if ticket is None:
            raise HashingBusy(per_client=False)
        self.in_flight[client] += 1
        self.tickets_held += 1
        try:
            return await anyio.to_thread.run_sync(self._verify_in_slot, password, hashed_password, limiter=self.limiter)
        finally:
            self.tickets_held -= 1
            self.in_flight[client] -= 1
            if not self.in_flight[client]:
                del self.in_flight[client]
            self._give_back(ticket)

    def close(self) -> None:
        for descriptor in self._descriptors:
            os.close(descriptor)
        self._descriptors = []
