"""Stand in for other processes of the machine: hold every login ticket of a hashing lock folder, as a flood would."""

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def holding_every_ticket(lock_dir: Path) -> Iterator[int]:
    """flock every ticket-N file of lock_dir (made by a running service's PasswordChecks) until the block ends;
    yields how many. Each is held through an open file of its own, as another process would hold it."""
    descriptors = [os.open(path, os.O_RDWR) for path in sorted(lock_dir.glob("ticket-*"))]
    try:
        for descriptor in descriptors:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        yield len(descriptors)
    finally:
        for descriptor in descriptors:
            os.close(descriptor)
