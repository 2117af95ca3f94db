"""Logins and sessions of the app: wrong passwords slow down (per user name and per address), every login, logout,
refusal and ended session is audited, and a session is checked on every request against the user store (removed,
password reset, role changed) and against its idle and absolute lifetimes. Nothing here knows about Gradio."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterator, MutableMapping
from dataclasses import dataclass

from assistant.app.audit import AuditError, AuditLog
from assistant.app.users import User, UserStore
from ingest.types import ComplyError

_FORGET_S = 24 * 3600  # failures older than this no longer count
_MAX_TRACKED = 100_000  # names and addresses remembered at most (random names must not fill the memory)


class LoginRefused(ComplyError):
    """A login that is not even checked: too many wrong passwords lately, or the audit trail cannot record it."""

    def __init__(self, message: str, retry_after_s: float | None = None):
        self.retry_after_s = retry_after_s
        super().__init__(message)


class LoginThrottle:
    """Counts wrong passwords per key (`user:NAME`, `address:IP`). After `max_failures` in a row, attempts for that
    key are refused for `base_s`, doubled by each further wrong password, up to `max_s`; refusing costs nothing, so a
    burst of attempts holds up neither the server nor anyone else's login."""

    def __init__(self, max_failures: int = 5, base_s: float = 1.0, max_s: float = 900.0,
                 clock: Callable[[], float] = time.monotonic):
        self.max_failures, self.base_s, self.max_s, self.clock = max_failures, base_s, max_s, clock
        self._failures: dict[str, tuple[int, float]] = {}  # key -> (wrong passwords in a row, time of the last)
        self._lock = threading.Lock()

    def wait_s(self, *keys: str) -> float:
        """Seconds until an attempt for all `keys` may be checked (0: now)."""
        now = self.clock()
        with self._lock:
            return max((self._until(key) - now for key in keys), default=0.0) if keys else 0.0

    def failed(self, *keys: str) -> float:
        """Count a wrong password for each key; the wait it starts (0 below the threshold)."""
        now = self.clock()
        with self._lock:
            if len(self._failures) > _MAX_TRACKED:
                self._failures = {k: v for k, v in self._failures.items() if now - v[1] < _FORGET_S}
            for key in keys:
                count, last = self._failures.get(key, (0, now))
                self._failures[key] = (1 if now - last > _FORGET_S else count + 1, now)
            return max(self._until(key) - now for key in keys)

    def succeeded(self, key: str) -> None:
        """A right password: forget that key's wrong ones (a user's, not an address's, which may be shared)."""
        with self._lock:
            self._failures.pop(key, None)

    def _until(self, key: str) -> float:
        count, last = self._failures.get(key, (0, 0.0))
        if count < self.max_failures:
            return 0.0
        return last + min(self.max_s, self.base_s * 2 ** (count - self.max_failures))


@dataclass
class Session:
    """One login: who, from where, with which session epoch of the user, when it began and was last used."""

    user: str
    epoch: str
    address: str
    started: float
    seen: float


class SessionTable(MutableMapping[str, str]):
    """The app's login tokens, token -> user name (the mapping Gradio reads on every request as `app.tokens`).
    Looking a token up checks its session: the user still exists with the same session epoch (a password reset,
    role change or removal ends their logins, from any process) and it is within its idle and absolute lifetimes.
    A session found ended is dropped, and the end audited."""

    def __init__(self, users: UserStore, audit: AuditLog, *, idle_s: float, max_s: float,
                 clock: Callable[[], float] = time.time):
        self.users, self.audit, self.idle_s, self.max_s, self.clock = users, audit, idle_s, max_s, clock
        self._sessions: dict[str, Session] = {}
        self._lock = threading.Lock()

    def open(self, token: str, user: User, address: str) -> None:
        """Start a session for a user who has just given the right password."""
        now = self.clock()
        with self._lock:
            self._sessions[token] = Session(user.name, user.session_epoch, address, now, now)

    def close(self, token: str) -> Session | None:
        """End a session (logout); the session it was, if any."""
        with self._lock:
            return self._sessions.pop(token, None)

    def __getitem__(self, token: str) -> str:
        with self._lock:
            session = self._sessions.get(token)
        if session is None:
            raise KeyError(token)
        now = self.clock()
        epoch = self.users.session_epoch(session.user)
        reason = ("user removed" if epoch is None else
                  "password or role changed" if epoch != session.epoch else
                  "too old" if now - session.started > self.max_s else
                  "idle too long" if now - session.seen > self.idle_s else None)
        if reason is not None:
            if self.close(token) is not None:
                self._record_end(session, reason)
            raise KeyError(token)
        session.seen = now
        return session.user

    def __setitem__(self, token: str, name: str) -> None:
        # Gradio's own login route (shadowed by assistant/app/ui/login.py) would land here: a session like any other.
        user = self.users.get(name)
        if user is not None:
            self.open(token, user, "unknown")

    def __delitem__(self, token: str) -> None:
        if self.close(token) is None:
            raise KeyError(token)

    def __iter__(self) -> Iterator[str]:
        with self._lock:
            return iter(list(self._sessions))

    def __len__(self) -> int:
        return len(self._sessions)

    def _record_end(self, session: Session, reason: str) -> None:
        try:
            self.audit.append(session.user, "session.end", reason=reason, address=session.address)
        except AuditError:
            pass  # the session is refused either way; a trail that cannot be written refuses the next action too


class Logins:
    """Checks a login attempt: throttled per user name and per address, audited (`login`, `login.failed`,
    `login.locked`), and refused outright when the audit trail cannot record it."""

    def __init__(self, users: UserStore, audit: AuditLog, throttle: LoginThrottle):
        self.users, self.audit, self.throttle = users, audit, throttle

    def refuse_if_throttled(self, name: str, address: str) -> None:
        """Raise LoginRefused (saying how long to wait) while this user name or address must wait; costs nothing."""
        wait = self.throttle.wait_s(*_keys(name, address))
        if wait > 0:
            raise LoginRefused(f"Too many wrong passwords for this user or from this address: try again in "
                               f"{max(1, math.ceil(wait))} s.", wait)  # rounded up: a client told 1 s for 1.4 s would be refused again

    def attempt(self, name: str, password: str, address: str) -> User | None:
        """The user when `password` is right; None when not; LoginRefused when the attempt is not checked at all."""
        name = (name or "").strip()
        keys = _keys(name, address)
        self.refuse_if_throttled(name, address)
        try:
            self.audit.ready("login")
        except AuditError as e:
            raise LoginRefused(str(e)) from e
        user = self.users.authenticate(name, password)
        if user is None:
            locked = self.throttle.failed(*keys)
            self.audit.append(name[:64] or "-", "login.failed", address=address)
            if locked > 0:
                self.audit.append(name[:64] or "-", "login.locked", address=address, seconds=round(locked, 1))
            return None
        self.throttle.succeeded(keys[0])
        self.audit.append(user.name, "login", address=address)
        return user


def _keys(name: str, address: str) -> tuple[str, str]:
    return f"user:{(name or '').strip().lower()}", f"address:{address}"
