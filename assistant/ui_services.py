"""What every tab of the browser app shares: one Library, one Assistant (the model loads once per process), the
user store, the audit trail, the conversation store, the library lock, and the server-side permission check each
handler starts with."""

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import gradio as gr

from assistant.audit import AuditError, AuditLog
from assistant.conversations import ConversationStore
from assistant.pipeline import Assistant
from assistant.sessions import LoginRefused, Logins, LoginThrottle, SessionTable
from assistant.users import PermissionDenied, User, UserStore, require
from ingest.pipeline import Library
from ingest.settings import Settings
from ingest.types import iso_date

ROOT = Path(__file__).resolve().parent.parent


class LibraryLock:
    """Answers and evaluations share the library (`shared()`); index changes and adapter switches take it alone
    (`with lock:`, reentrant in the thread that holds it). Several users are answered at once (the generator batches
    their answers) and an evaluation does not hold up the chat; an upload waits for the answers in progress, and
    answers asked meanwhile wait for the upload."""

    def __init__(self):
        self._cond = threading.Condition()
        self._readers = 0
        self._writer: int | None = None  # the thread holding it alone
        self._depth = 0
        self._waiting_writers = 0

    def acquire_shared(self, blocking: bool = True) -> bool:
        with self._cond:
            if self._writer == threading.get_ident():  # a writer may read what it holds
                self._readers += 1
                return True
            while self._writer is not None or self._waiting_writers:
                if not blocking:
                    return False
                self._cond.wait()
            self._readers += 1
            return True

    def release_shared(self) -> None:
        with self._cond:
            self._readers -= 1
            self._cond.notify_all()

    def shared(self):
        """`with lock.shared():` for answering and evaluating."""
        return _Shared(self)

    def __enter__(self):
        me = threading.get_ident()
        with self._cond:
            if self._writer == me:
                self._depth += 1
                return self
            self._waiting_writers += 1
            while self._writer is not None or self._readers:
                self._cond.wait()
            self._waiting_writers -= 1
            self._writer, self._depth = me, 1
            return self

    def __exit__(self, *exc) -> None:
        with self._cond:
            self._depth -= 1
            if self._depth == 0:
                self._writer = None
                self._cond.notify_all()


class _Shared:
    def __init__(self, lock: LibraryLock):
        self.lock = lock

    def __enter__(self):
        self.lock.acquire_shared()

    def __exit__(self, *exc) -> None:
        self.lock.release_shared()


class Services:
    """The per-process state of the app. Handlers call `authorize(request, permission)` before doing anything."""

    def __init__(self, settings: Settings, library: Library | None = None):
        self.settings = settings
        self.library = library or Library(settings)
        self.users = UserStore(settings.users_path)
        self.audit = AuditLog.open(settings)
        self.conversations = ConversationStore(settings.conversations_path)
        self.sessions = SessionTable(self.users, self.audit, idle_s=settings.session_idle_minutes * 60,
                                     max_s=settings.session_max_hours * 3600)
        self.logins = Logins(self.users, self.audit, LoginThrottle(
            settings.login_max_failures, settings.login_backoff_s, settings.login_backoff_max_s))
        self.session_token = None  # request -> its session token; set by assistant.ui_login when serving
        # Answers and evaluations share the library; index changes and adapter switches take it alone.
        self.lock = LibraryLock()
        self._assistant_lock = threading.Lock()
        self._login_checks = threading.Lock()
        self._assistant: Assistant | None = None

    @property
    def assistant(self) -> Assistant:
        """The shared Assistant, created on first use (and again after an adapter change)."""
        with self._assistant_lock:
            if self._assistant is None:
                self._assistant = Assistant(self.settings, self.library)
            return self._assistant

    def reload_assistant(self) -> None:
        """Forget the loaded Assistant so the next question uses the newly active adapter (answers in progress
        finish with the one they started with)."""
        with self.lock, self._assistant_lock:
            self._assistant = None

    async def authenticate(self, name: str, password: str) -> bool:
        """Gradio's login check (the app serves its own POST /login, assistant/ui_login.py, which also knows the
        address): throttled and audited. The argon2 check (a quarter of a second of CPU) runs in a worker thread, one
        check at a time, so that a burst of logins, even wrong ones, waits for itself and holds up nobody else."""
        def check() -> bool:
            with self._login_checks:
                try:
                    return self.logins.attempt(name, password, "unknown") is not None
                except (LoginRefused, AuditError):
                    return False

        return await asyncio.to_thread(check)

    def authorize(self, request: gr.Request | None, permission: str) -> User:
        """The logged-in user behind `request` if their session is still valid and their role grants `permission`;
        otherwise a gr.Error that the browser shows (and the refusal is written to the audit trail)."""
        name = getattr(request, "username", None) if request is not None else None
        user = self.users.get(name) if name else None
        raw = getattr(request, "request", None)
        if user is not None and self.session_token is not None and raw is not None and \
                self.session_token(raw) not in self.sessions:  # ended since the request was queued
            user = None
        if user is None:
            raise gr.Error("You are not logged in, your login has ended, or your account was changed or removed. "
                           "Log in again.", title="Not allowed")
        try:
            require(user, permission)
        except PermissionDenied as e:
            try:
                self.audit.append(user.name, "access.denied", permission=permission, role=user.role)
            except AuditError:
                pass  # refused either way
            raise gr.Error(f"Permission denied: your role ({user.role}) may not do this; it needs the "
                           f"{e.needed} role.", title="Not allowed") from e
        return user

    def ready(self, action: str) -> None:
        """Check that the audit trail can record `action` before doing it (fail closed); else a gr.Error in words."""
        with audit_shown():
            self.audit.ready(action)

    @contextmanager
    def recorded(self, user: str, action: str, *, failures: bool = False, **data) -> Iterator[dict]:
        """AuditLog.recorded (the action runs only if it can be recorded), with a refusal shown in words."""
        with audit_shown(), self.audit.recorded(user, action, failures=failures, **data) as outcome:
            yield outcome


@contextmanager
def audit_shown() -> Iterator[None]:
    """Show an audit trail that cannot record an action as a gr.Error in plain words (AuditUnavailable says whether
    the action was done)."""
    try:
        yield
    except AuditError as e:
        raise gr.Error(str(e), title="Audit trail", duration=None) from e


def stored_gold_sets(settings: Settings) -> list[Path]:
    """Gold question files shipped with comply (data/gold) and saved under <home>/eval/datasets."""
    found = []
    for folder in (ROOT / "data" / "gold", settings.eval_dir / "datasets"):
        if folder.is_dir():
            found.extend(sorted(p for p in folder.iterdir() if p.suffix in (".jsonl", ".json")))
    return found


def parse_date(text: str | None, what: str = "date") -> str | None:
    """A YYYY-MM-DD date from a text box, or None when empty; anything else is a gr.Error the user sees."""
    try:
        return iso_date(text, what)
    except ValueError as e:
        raise gr.Error(str(e)[0].upper() + str(e)[1:] + ".") from e
