"""Races for the tests: the same work in several threads, released at one moment."""

import threading
from collections.abc import Callable

THREAD_TIMEOUT = 60


def in_threads(count: int, work: Callable[[int], object]) -> list[object]:
    """Run work(0) ... work(count - 1) in threads released at the same moment; their results, or their exceptions."""
    barrier = threading.Barrier(count)
    results: list[object] = [None] * count

    def run(index: int) -> None:
        barrier.wait(timeout=THREAD_TIMEOUT)
        try:
            results[index] = work(index)
        except Exception as error:  # reported to the test, which expects none
            results[index] = error

    threads = [threading.Thread(target=run, args=(index,)) for index in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=THREAD_TIMEOUT)
    assert not any(thread.is_alive() for thread in threads)
    return results
