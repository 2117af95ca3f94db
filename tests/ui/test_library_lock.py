"""The lock the app's handlers share: answers and evaluations at once, library changes alone."""

from __future__ import annotations

import threading
import time

from assistant.app.services import LibraryLock


def test_readers_share_and_a_writer_waits_for_them_then_blocks_new_readers():
    lock = LibraryLock()
    events: list[str] = []
    inside = threading.Barrier(3)

    def reader(name: str) -> None:
        with lock.shared():
            inside.wait(timeout=5)  # all three readers are inside together, or this times out
            events.append(f"{name} read")

    readers = [threading.Thread(target=reader, args=(f"r{i}",)) for i in range(3)]
    for t in readers:
        t.start()
    for t in readers:
        t.join(timeout=10)
    assert sorted(events) == ["r0 read", "r1 read", "r2 read"]

    release = threading.Event()
    writer_in = threading.Event()
    lock.acquire_shared()

    def writer() -> None:
        with lock:
            writer_in.set()
            release.wait(timeout=5)

    w = threading.Thread(target=writer)
    w.start()
    time.sleep(0.2)
    assert not writer_in.is_set()  # an answer in progress finishes first
    assert not lock.acquire_shared(blocking=False)  # a new answer waits behind the waiting change
    lock.release_shared()
    assert writer_in.wait(timeout=5)
    assert not lock.acquire_shared(blocking=False)
    release.set()
    w.join(timeout=5)
    assert lock.acquire_shared(blocking=False)
    lock.release_shared()


def test_the_writer_may_reenter_and_read():
    lock = LibraryLock()
    with lock:
        with lock:  # e.g. an adapter switch that reloads the assistant
            assert lock.acquire_shared(blocking=False)
            lock.release_shared()
    assert lock.acquire_shared(blocking=False)
