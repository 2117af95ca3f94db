"""What every tab of the browser app shares: one Library, one Assistant (the model loads once per process), the
user store, the audit trail, the model lock, and the server-side permission check each handler starts with."""

import asyncio
import threading
from pathlib import Path

import gradio as gr

from assistant.audit import AuditLog
from assistant.pipeline import Assistant
from assistant.users import PermissionDenied, User, UserStore, require
from ingest.pipeline import Library
from ingest.settings import Settings
from ingest.types import iso_date

ROOT = Path(__file__).resolve().parent.parent


class Services:
    """The per-process state of the app. Handlers call `authorize(request, permission)` before doing anything."""

    def __init__(self, settings: Settings, library: Library | None = None):
        self.settings = settings
        self.library = library or Library(settings)
        self.users = UserStore(settings.users_path)
        self.audit = AuditLog(settings.audit_path)
        # Generation, evaluation and index changes take turns: one model instance, one set of indexes.
        self.lock = threading.RLock()
        self._login_checks = threading.Lock()
        self._assistant: Assistant | None = None

    @property
    def assistant(self) -> Assistant:
        """The shared Assistant, created on first use (and again after an adapter change)."""
        with self.lock:
            if self._assistant is None:
                self._assistant = Assistant(self.settings, self.library)
            return self._assistant

    def reload_assistant(self) -> None:
        """Forget the loaded Assistant so the next question uses the newly active adapter."""
        with self.lock:
            self._assistant = None

    async def authenticate(self, name: str, password: str) -> bool:
        """Gradio's login check: the name and password match a stored user. Gradio runs it on the event loop that
        serves every request; the argon2 check (a quarter of a second of CPU) runs in a worker thread, one check at
        a time, so that a burst of logins, even wrong ones, waits for itself and does not hold up anyone else."""
        def check() -> bool:
            with self._login_checks:
                return self.users.authenticate(name, password) is not None

        return await asyncio.to_thread(check)

    def authorize(self, request: gr.Request | None, permission: str) -> User:
        """The logged-in user behind `request` if their role grants `permission`; otherwise a gr.Error that the
        browser shows (and the refusal is written to the audit trail)."""
        name = getattr(request, "username", None) if request is not None else None
        user = self.users.get(name) if name else None
        if user is None:
            raise gr.Error("You are not logged in, or your account was removed. Log in again.", title="Not allowed")
        try:
            require(user, permission)
        except PermissionDenied as e:
            self.audit.append(user.name, "access.denied", permission=permission, role=user.role)
            raise gr.Error(f"Permission denied: your role ({user.role}) may not do this; it needs the "
                           f"{e.needed} role.", title="Not allowed") from e
        return user


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
