"""The app's login and logout routes and its session table, put in front of Gradio's own.

Gradio keeps logins in `app.tokens` (token -> user name) and reads it on every request that needs a login (the page
config, uploads, file downloads, queue and API calls). That mapping becomes comply's SessionTable, which checks each
session against the user store and its lifetimes; and POST /login and GET /logout are comply's, so that a login knows
the client's address (throttling), is audited, and sets its cookies Secure when served over https."""

from __future__ import annotations

import asyncio
import math
import secrets
import threading

from fastapi import Request
from fastapi.responses import JSONResponse, RedirectResponse
from starlette.routing import Route

from assistant.app.audit import AuditError
from assistant.app.sessions import LoginRefused, Logins, SessionTable
from ingest.settings import Settings

LOGIN_HELP = ("After {n} wrong passwords for a user, or from one address, the next login waits a while (longer after "
              "each further wrong one).")


class LoginRoutes:
    """POST /login and GET /logout of one Gradio app, using its cookie names."""

    def __init__(self, app, logins: Logins, sessions: SessionTable, settings: Settings):
        self.app, self.logins, self.sessions, self.settings = app, logins, sessions, settings
        self._checks = threading.Lock()  # argon2 checks one at a time: a burst waits for itself, not the server
        self.cookies = (f"access-token-{app.cookie_id}", f"access-token-unsecure-{app.cookie_id}")

    def install(self) -> None:
        """Make the session table Gradio's token store and put these routes before Gradio's."""
        self.app.tokens = self.sessions
        routes = [Route(path, self.login, methods=["POST"]) for path in ("/login", "/login/")]
        routes += [Route(path, self.logout, methods=["GET"]) for path in ("/logout", "/logout/")]
        self.app.router.routes[0:0] = routes

    def token(self, request: Request) -> str | None:
        """The session token a request carries, if any."""
        return request.cookies.get(self.cookies[0]) or request.cookies.get(self.cookies[1])

    async def login(self, request: Request):
        """Check the form's user name and password; on success start a session and set its cookies."""
        form = await request.form()
        name, password = str(form.get("username") or "").strip(), str(form.get("password") or "")
        address = request.client.host if request.client else "unknown"
        try:
            self.logins.refuse_if_throttled(name, address)  # at once, before waiting for the one-at-a-time check
            user = await asyncio.to_thread(self._check, name, password, address)
        except LoginRefused as e:
            headers = {"Retry-After": str(max(1, math.ceil(e.retry_after_s)))} if e.retry_after_s else {}
            return JSONResponse({"detail": str(e)}, status_code=429 if e.retry_after_s else 503, headers=headers)
        except AuditError as e:
            return JSONResponse({"detail": str(e)}, status_code=503)
        if user is None:
            return JSONResponse({"detail": "Incorrect credentials."}, status_code=400)
        token = secrets.token_urlsafe(32)
        self.sessions.open(token, user, address)
        response = JSONResponse({"success": True})
        secure = self.settings.secure_cookies or _https(request)
        response.set_cookie(self.cookies[0], token, httponly=True, samesite="none", secure=True)
        response.set_cookie(self.cookies[1], token, httponly=True, samesite="lax", secure=secure)
        return response

    def _check(self, name: str, password: str, address: str):
        with self._checks:
            return self.logins.attempt(name, password, address)

    async def logout(self, request: Request):
        """End this browser's session (audited) and go back to the login page."""
        token = self.token(request)
        session = self.sessions.close(token) if token else None
        if session is not None:
            try:
                await asyncio.to_thread(self.logins.audit.append, session.user, "logout", address=session.address)
            except AuditError:
                pass  # the session is over either way
        response = RedirectResponse(url=str(request.base_url), status_code=302)
        for cookie in self.cookies:
            response.delete_cookie(cookie, path="/")
        return response


def _https(request: Request) -> bool:
    """Whether the browser reached the app over https (directly, or through a proxy that says so)."""
    forwarded = request.headers.get("x-forwarded-proto", "").split(",")[0].strip().lower()
    return request.url.scheme == "https" or forwarded == "https"
