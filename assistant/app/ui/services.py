"""What every tab of the browser app and the REST API share: the actions' state (assistant/app/services.py: one Library,
one Assistant (the model loads once per process), the user store, the audit trail, the conversation store, the
library lock), the logins and sessions, and the server-side permission check each handler starts with."""

import asyncio
import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import gradio as gr

from assistant.app import services
from assistant.app.audit import AuditError
from assistant.app.sessions import LoginRefused, Logins, LoginThrottle, SessionTable
from assistant.app.users import PermissionDenied, User
from ingest.pipeline import Library
from ingest.settings import Settings
from ingest.types import iso_date

ROOT = Path(__file__).resolve().parents[3]
log = logging.getLogger(__name__)


class Services(services.Services):
    """The per-process state of the app and the API (assistant/app/services.py) with their logins and sessions. Handlers
    call `authorize(request, permission)` before doing anything."""

    def __init__(self, settings: Settings, library: Library | None = None):
        super().__init__(settings, library or Library(settings))
        self.sessions = SessionTable(self.users, self.audit, idle_s=settings.session_idle_minutes * 60,
                                     max_s=settings.session_max_hours * 3600)
        self.logins = Logins(self.users, self.audit, LoginThrottle(
            settings.login_max_failures, settings.login_backoff_s, settings.login_backoff_max_s))
        self.session_token = None  # request -> its session token; set by assistant.app.ui.login when serving
        self._login_checks = threading.Lock()

    async def authenticate(self, name: str, password: str) -> bool:
        """Gradio's login check (the app serves its own POST /login, assistant/app/ui/login.py, which also knows the
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
        if user is None:  # a refusal is one log line, not a traceback (print_exception)
            log.info("refused '%s': no valid login (%s)", permission, name or "anonymous")
            raise gr.Error("You are not logged in, your login has ended, or your account was changed or removed. "
                           "Log in again.", title="Not allowed", print_exception=False)
        try:
            self.permit(user, permission)
        except PermissionDenied as e:
            log.info("refused: %s", e)
            raise gr.Error(f"Permission denied: your role ({user.role}) may not do this; it needs the "
                           f"{e.needed} role.", title="Not allowed", print_exception=False) from e
        return user

    def ready(self, action: str) -> None:
        """Check that the audit trail can record `action` before doing it (fail closed); else a gr.Error in words."""
        with audit_shown():
            self.audit.ready(action)


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
        raise gr.Error(str(e)[0].upper() + str(e)[1:] + ".", print_exception=False) from e


def refused(message: str, outputs: int) -> tuple:
    """A request a handler does not carry out (nothing chosen, a bad value), said in its first output, a status line,
    with the other `outputs - 1` unchanged: an error would mark every output with a red badge until reload."""
    message = message[:1].upper() + message[1:] + ("" if message.endswith((".", "?", "!")) else ".")
    log.info("not done: %s", message)
    return f"⚠ {message}", *(gr.update(),) * (outputs - 1)


def when_cell(iso: str | None) -> str:
    """An ISO timestamp as a table shows it: "2026-12-06 19:05:00" (empty when there is none)."""
    return (iso or "").replace("T", " ")[:19]


def model_state_cell(active: bool, error: str | None) -> str:
    """A registered model's state in a table: active, damaged (with why) or nothing."""
    return "active" if active else ("DAMAGED: " + error if error else "")
