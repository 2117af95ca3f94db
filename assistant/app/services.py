"""What the audited actions (assistant/app/actions.py, assistant/app/actions_admin.py) work on, whichever door they came
through: the library, the assistant, the user store, the audit trail, the conversation store and the library lock.
The browser app and the REST API share one per server (assistant/app/ui/services.py adds logins and sessions); each
`comply` command makes its own, acting as `cli:<OS user>` with the admin role (`cli_user`)."""

from __future__ import annotations

import threading
from functools import cached_property

from assistant.app.audit import AuditError, AuditLog
from assistant.app.conversations import ConversationStore
from assistant.app.tokens import TokenStore
from assistant.app.users import PermissionDenied, User, UserStore, allowed
from assistant.pipeline import Assistant
from ingest.pipeline import Library
from ingest.settings import Settings


class LibraryLock:
    """Answers and evaluations share the library (`shared()`); index changes and adapter switches take it alone
    (`with lock:`, reentrant in the thread that holds it). Several users are answered at once (the generator batches
    their answers) and an evaluation does not hold up the chat; an upload waits for the answers in progress, and
    answers asked meanwhile wait for the upload. It orders the threads of one process; between processes (a `comply
    ingest` beside the server) the library's own file lock, `<home>/library.lock`, orders the writers."""

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
    """The state of one process that the actions use. The library, stores and assistant are opened on first use, so
    a command opens only what its action needs (and nothing before the audit trail said it can record it)."""

    def __init__(self, settings: Settings, library: Library | None = None, *, adapter: str | None = None):
        self.settings = settings
        if library is not None:
            self.library = library
        self.adapter = adapter  # None: the registry's active adapter
        # Answers and evaluations share the library; index changes and adapter switches take it alone.
        self.lock = LibraryLock()
        self._assistant_lock = threading.Lock()
        self._assistant: Assistant | None = None

    @cached_property
    def library(self) -> Library:
        """The document library (catalog, Chroma, BM25), opened on first use."""
        return Library(self.settings)

    @cached_property
    def users(self) -> UserStore:
        """The user store."""
        return UserStore(self.settings.users_path)

    @cached_property
    def tokens(self) -> TokenStore:
        """The API token store."""
        return TokenStore(self.settings.tokens_path)

    @cached_property
    def audit(self) -> AuditLog:
        """The audit trail."""
        return AuditLog.open(self.settings)

    @cached_property
    def conversations(self) -> ConversationStore:
        """The users' conversation store."""
        return ConversationStore(self.settings.conversations_path)

    @property
    def assistant(self) -> Assistant:
        """The shared Assistant, created on first use (and again after an adapter change)."""
        with self._assistant_lock:
            if self._assistant is None:
                self._assistant = Assistant(self.settings, self.library, adapter=self.adapter)
            return self._assistant

    def reload_assistant(self) -> None:
        """Forget the loaded Assistant so the next question uses the newly active adapter (answers in progress
        finish with the one they started with)."""
        with self.lock, self._assistant_lock:
            self._assistant = None

    def permit(self, user: User, permission: str, **context) -> None:
        """Raise PermissionDenied unless `user`'s role grants `permission`; a refusal is recorded as `access.denied`
        (and is a refusal even when the trail cannot record it)."""
        if allowed(user.role, permission):
            return
        try:
            self.audit.append(user.name, "access.denied", permission=permission, role=user.role, **context)
        except AuditError:
            pass  # refused either way
        raise PermissionDenied(user.name, user.role, permission)

    def close(self) -> None:
        """Close the library if this process opened it."""
        if "library" in self.__dict__:
            self.library.close()


def cli_user(name: str) -> User:
    """The user a `comply` command acts as: `cli:<OS user>` with the admin role (whoever can run comply on the home
    can read and change all of it anyway); not a user of the store, so nobody can log in as it."""
    return User(name=name, role="admin", created="")
