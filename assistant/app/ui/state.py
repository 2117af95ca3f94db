"""Bounded server-side state of the browser app: Gradio's per-session state is dropped when nothing uses it any more.

Gradio keeps a `SessionState` for every session that ever ran an event: a copy of the configuration of every block
of the app (about 0.4 MB for comply's) plus the session's `gr.State` values. It drops the values of a closed tab an
hour later but keeps the `SessionState` itself until 10,000 sessions exist (`state_session_capacity`, LRU), and a
call through the HTTP API (`POST /gradio_api/call/...`) is a session of its own that is never closed. So the server
grew by about 0.44 MB per API answer (221 MB over 500, docs/benchmarks.md) and by the same per browser tab opened.

`HeartbeatWatch` (ASGI middleware) sees which sessions have a browser attached: the page keeps
`GET /gradio_api/heartbeat/<session>` open for as long as the tab is. `StateSweeper` drops, every `every_s`:
- a session with a tab attached: never;
- a session with an event queued or running: never;
- a session whose tab has gone (it had a heartbeat): `keep_closed_s` after the tab went and after its last event;
- a session that never had a tab (an API call): `keep_unattached_s` after its last event (its result is read from
  the queue's messages, not from this state).
Dropping runs the states' delete callbacks (as Gradio's own expiry does) and forgets the session's queue bookkeeping
once its messages were read. The same thread gives the C heap's free memory back to the system every 10 s
(`release_free_memory`). A tab that comes back after its state was dropped starts from the components' defaults:
the chat keeps its history in the page, so what it loses is the "open a cited source" list of the last answer.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import logging
import re
import threading
import time
from collections.abc import Callable

_log = logging.getLogger(__name__)
_HEARTBEAT = re.compile(r"/heartbeat/([^/]+)/?$")
TRIM_EVERY_S = 10.0


def _malloc_trim() -> Callable[[int], int] | None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return libc.malloc_trim  # glibc only
    except (OSError, AttributeError):
        return None


_TRIM = _malloc_trim()


def release_free_memory() -> bool:
    """Hand the C heap's free pages back to the system (glibc's malloc_trim; False where there is none). Each answer
    allocates and frees a few hundred MB in several threads' arenas; glibc keeps most of it, so the server's RSS
    swung by 200-250 MB between answers that hold nothing (measured: docs/benchmarks.md). A trim takes about 30 ms
    (ctypes releases the GIL meanwhile)."""
    if _TRIM is None:
        return False
    _TRIM(0)
    return True


class HeartbeatWatch:
    """ASGI middleware that records which sessions have a heartbeat connection open and when the last one ended."""

    def __init__(self, app, watcher: Heartbeats):
        self.app, self.watcher = app, watcher

    async def __call__(self, scope, receive, send) -> None:
        if self.watcher.loop is None:
            self.watcher.loop = asyncio.get_running_loop()  # the server's loop: sweeps run on it, as Gradio's own do
        match = _HEARTBEAT.search(scope.get("path", "")) if scope["type"] == "http" else None
        if match is None:
            await self.app(scope, receive, send)
            return
        session = match.group(1)
        self.watcher.opened(session)
        try:
            await self.app(scope, receive, send)
        finally:
            self.watcher.closed(session)


class Heartbeats:
    """Open heartbeat connections per session and when each session's last one closed (thread-safe)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self._open: dict[str, int] = {}
        self._closed_at: dict[str, float] = {}
        self._lock = threading.Lock()
        self.clock = clock
        self.loop: asyncio.AbstractEventLoop | None = None

    def opened(self, session: str) -> None:
        with self._lock:
            self._open[session] = self._open.get(session, 0) + 1
            self._closed_at.pop(session, None)

    def closed(self, session: str) -> None:
        with self._lock:
            left = self._open.get(session, 1) - 1
            if left > 0:
                self._open[session] = left
            else:
                self._open.pop(session, None)
                self._closed_at[session] = self.clock()

    def attached(self, session: str) -> bool:
        with self._lock:
            return session in self._open

    def closed_since(self, session: str) -> float | None:
        """When the session's tab went (None: it never had one, or has one now)."""
        with self._lock:
            return self._closed_at.get(session)

    def forget(self, session: str) -> None:
        with self._lock:
            self._closed_at.pop(session, None)


class StateSweeper:
    """Drops Gradio session state nothing uses any more (see the module's docstring for the rules)."""

    def __init__(self, blocks, heartbeats: Heartbeats, *, keep_closed_s: float, keep_unattached_s: float = 60.0,
                 every_s: float = 30.0):
        self.blocks, self.heartbeats = blocks, heartbeats
        self.keep_closed_s, self.keep_unattached_s, self.every_s = keep_closed_s, keep_unattached_s, every_s
        self._stop = threading.Event()
        self.dropped = 0

    def start(self) -> StateSweeper:
        threading.Thread(target=self._run, daemon=True, name="comply-state-sweep").start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        next_sweep = time.monotonic() + self.every_s
        while not self._stop.wait(min(self.every_s, TRIM_EVERY_S)):
            try:
                if time.monotonic() >= next_sweep:
                    next_sweep = time.monotonic() + self.every_s
                    self.sweep_on_loop()
                release_free_memory()
            except Exception:  # noqa: BLE001 - a failed sweep must not end the thread; the next one tries again
                _log.exception("dropping unused session state failed")

    def sweep_on_loop(self, timeout_s: float = 30.0) -> int:
        """`sweep()` run on the server's event loop, where Gradio changes the same tables (nothing to do before the
        server has served a request)."""
        loop = self.heartbeats.loop
        if loop is None or loop.is_closed():
            return 0

        async def sweep() -> int:
            return self.sweep()

        return asyncio.run_coroutine_threadsafe(sweep(), loop).result(timeout_s)

    def sweep(self) -> int:
        """Drop every session state that is due; returns how many were dropped."""
        holder = getattr(self.blocks, "state_holder", None)
        queue = getattr(self.blocks, "_queue", None)
        if holder is None or queue is None:
            return 0
        now_wall, now = time.time(), self.heartbeats.clock()
        dropped = 0
        for session in list(holder.session_data):
            if self.heartbeats.attached(session) or self._busy(queue, session):
                continue
            last_used = holder.time_last_used.get(session)
            idle = now_wall - last_used.timestamp() if last_used is not None else float("inf")
            closed_at = self.heartbeats.closed_since(session)
            if closed_at is not None:
                due = idle >= self.keep_closed_s and now - closed_at >= self.keep_closed_s
            else:
                due = idle >= self.keep_unattached_s
            if due:
                self._drop(holder, queue, session)
                dropped += 1
        self.dropped += dropped
        return dropped

    @staticmethod
    def _busy(queue, session: str) -> bool:
        """An event of the session is queued or running."""
        ids = queue.pending_event_ids_session.get(session) or ()
        return any(i in queue.event_ids_to_events for i in list(ids))

    def _drop(self, holder, queue, session: str) -> None:
        holder.delete_state(session)  # the gr.State delete callbacks, as Gradio's expiry runs them
        with holder.lock:
            holder.session_data.pop(session, None)
            holder.time_last_used.pop(session, None)
        messages = queue.pending_messages_per_session.get(session)
        if messages is not None and messages.empty():  # read to the end (an unread result stays for its reader)
            queue.pending_messages_per_session.pop(session, None)
            queue.pending_event_ids_session.pop(session, None)
        elif messages is None:
            queue.pending_event_ids_session.pop(session, None)
        self.heartbeats.forget(session)
