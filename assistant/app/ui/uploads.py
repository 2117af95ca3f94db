"""Uploads to the app's server: only a user whose role may add documents can send a file, each user holds at most
`upload_quota_mb` of uploads at a time, and an upload is deleted once it is ingested (the Documents tab) or, at the
latest, `upload_max_age_minutes` after it arrived.

Gradio stores a file as soon as it arrives (POST /gradio_api/upload), before any handler or permission check runs,
so the check is an ASGI middleware in front of that route: it finds the session as Gradio does (its access-token
cookie in the app's token table) and answers 401/403/411/413 before a byte of the body is read."""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
from pathlib import Path

from gradio.utils import get_upload_folder
from starlette.requests import Request
from starlette.responses import PlainTextResponse

from assistant.app.audit import AuditError
from assistant.app.users import allowed

MB = 1024 * 1024


class UploadTracker:
    """The uploads held on the server: path -> (user, bytes, arrival time); and the sweep that deletes old ones."""

    def __init__(self, folder: Path, max_age_s: float):
        self.folder, self.max_age_s = folder, max_age_s
        self._held: dict[str, tuple[str, int, float]] = {}
        self._lock = threading.Lock()

    def add(self, user: str, paths: list[str]) -> None:
        now = time.time()
        with self._lock:
            for path in paths:
                try:
                    self._held[path] = (user, os.path.getsize(path), now)
                except OSError:
                    continue

    def held_bytes(self, user: str) -> int:
        """Bytes of `user`'s uploads still on disk."""
        with self._lock:
            return sum(size for path, (who, size, _) in self._held.items() if who == user and os.path.exists(path))

    def sweep(self) -> int:
        """Delete every file in the upload folder older than the age limit (also those from before a restart) and
        forget uploads that are gone; returns the files deleted."""
        cutoff, deleted = time.time() - self.max_age_s, 0
        if self.folder.is_dir():
            for entry in self.folder.rglob("*"):
                try:
                    if entry.is_file() and not entry.is_symlink() and entry.stat().st_mtime < cutoff:
                        entry.unlink()
                        deleted += 1
                except OSError:
                    continue
            for entry in sorted(self.folder.rglob("*"), reverse=True):  # emptied folders, deepest first
                if entry.is_dir() and not any(entry.iterdir()):
                    shutil.rmtree(entry, ignore_errors=True)
        with self._lock:
            self._held = {p: v for p, v in self._held.items() if os.path.exists(p)}
        return deleted


def remove_uploads(paths: list[str], folder: Path) -> None:
    """Delete uploaded files (and their emptied folders) once they are ingested; never anything outside `folder`."""
    root = folder.resolve()
    for path in map(Path, paths):
        resolved = path.resolve()
        if not resolved.is_relative_to(root) or resolved == root:
            continue
        resolved.unlink(missing_ok=True)
        if resolved.parent != root and not any(resolved.parent.iterdir()):
            resolved.parent.rmdir()


class UploadGuard:
    """ASGI middleware (FastAPI `middleware=[Middleware(UploadGuard, services=...)]`) guarding Gradio's upload route."""

    def __init__(self, app, services):
        self.app, self.services = app, services
        settings = services.settings
        self.quota = int(settings.upload_quota_mb * MB)
        self.tracker = UploadTracker(Path(get_upload_folder()), settings.upload_max_age_minutes * 60)
        threading.Thread(target=self._sweep_forever, daemon=True, name="comply-upload-sweep").start()

    def _sweep_forever(self) -> None:
        while True:
            time.sleep(min(60.0, self.tracker.max_age_s / 4))
            self.tracker.sweep()

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or not scope["path"].rstrip("/").endswith("/upload"):
            await self.app(scope, receive, send)
            return
        user, refusal = self._check(scope)
        if refusal is not None:
            await refusal(scope, receive, send)
            return
        self.tracker.sweep()
        held = self.tracker.held_bytes(user)
        size = int(Request(scope).headers.get("content-length") or 0)
        if held + size > self.quota:
            await _refuse(413, f"Upload refused: {user} already holds {held / MB:.1f} MB of files not yet added and "
                               f"this upload is {size / MB:.1f} MB; the limit is {self.quota / MB:g} MB a user "
                               "(upload_quota_mb). Add or clear the files chosen so far first.")(scope, receive, send)
            return
        body: list[bytes] = []
        status = [0]

        async def capture(message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            elif message["type"] == "http.response.body":
                body.append(message.get("body", b""))
            await send(message)

        await self.app(scope, receive, capture)
        if status[0] == 200:
            try:
                self.tracker.add(user, [str(p) for p in json.loads(b"".join(body))])
            except (ValueError, TypeError):
                pass

    def _check(self, scope) -> tuple[str | None, object | None]:
        """(user name, None) for a user who may upload, else (None, the refusal to send)."""
        request = Request(scope)
        if request.headers.get("content-length") is None:
            return None, _refuse(411, "Upload refused: the request must say its length (Content-Length).")
        app = scope.get("app")
        tokens = getattr(app, "tokens", {}) or {}
        cookie_id = getattr(app, "cookie_id", "")
        name = None
        for cookie in (f"access-token-{cookie_id}", f"access-token-unsecure-{cookie_id}"):
            token = request.cookies.get(cookie)
            if token and tokens.get(token):
                name = tokens.get(token)
                break
        user = self.services.users.get(name) if name else None
        if user is None:
            return None, _refuse(401, "Upload refused: log in first.")
        if not allowed(user.role, "documents.write"):
            try:
                self.services.audit.append(user.name, "access.denied", permission="documents.write", role=user.role)
            except AuditError:
                pass  # refused either way
            return None, _refuse(403, f"Upload refused: your role ({user.role}) may not add documents; it needs the "
                                      "editor role.")
        return user.name, None


def _refuse(status: int, message: str):
    return PlainTextResponse(message, status_code=status)
