"""Logins and sessions against the real app on 127.0.0.1 with a real HTTP client: wrong passwords are throttled and
audited, a password reset, role change or removal ends the user's logins at once (the old cookie is refused for the
page config, uploads and queue calls), sessions end when idle or too old, logouts are audited, and cookies are
Secure over https."""

from __future__ import annotations

import shutil
import time

import httpx
import pytest
from typer.testing import CliRunner

from assistant.app.audit import AuditLog
from assistant.app.cli.main import app as cli
from assistant.app.sessions import LoginThrottle
from assistant.app.ui.main import launch
from assistant.app.ui.services import Services
from ingest.embedding import load_embedder
from ingest.pipeline import Library
from ingest.settings import Settings
from tests.library import CORPUS
from tests.ui.conftest import free_port

ADMIN = "admin-pass-0003"
IDLE_S, MAX_S = 5.0, 15.0


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """The app as `comply serve` runs it, over an empty library, with 5 s idle and 15 s absolute session lifetimes;
    (url, services)."""
    home = tmp_path_factory.mktemp("comply-sessions")
    settings = Settings(home=home, admin_password=ADMIN, session_idle_minutes=IDLE_S / 60,
                        session_max_hours=MAX_S / 3600, login_backoff_s=2.0, login_backoff_max_s=4.0)
    services = Services(settings, Library(settings, embedder=load_embedder(settings)))
    port = free_port()
    demo = launch(settings, "127.0.0.1", port, block=False, services=services)
    yield f"http://127.0.0.1:{port}", services
    demo.close()
    services.library.close()
    shutil.rmtree(home, ignore_errors=True)


@pytest.fixture
def app(served):
    """The served app with a fresh login throttle (each test starts with no wrong password counted)."""
    url, services = served
    s = services.settings
    services.logins.throttle = LoginThrottle(s.login_max_failures, s.login_backoff_s, s.login_backoff_max_s)
    return url, services


def log_in(url: str, name: str, password: str, **headers) -> httpx.Client:
    client = httpx.Client(base_url=url, timeout=60, headers=headers)
    response = client.post("/login", data={"username": name, "password": password})
    assert response.status_code == 200, response.text
    return client


def allowed(client: httpx.Client) -> dict[str, int]:
    """Status of the three kinds of request a session opens: the page config, an upload, a queue call."""
    upload = client.post("/gradio_api/upload", files={"files": ("note.txt", b"Policy text.", "text/plain")})
    call = client.post("/gradio_api/call/library", json={"data": [False]})
    return {"config": client.get("/config").status_code, "upload": upload.status_code, "call": call.status_code}


def comply(home, *args: str) -> None:
    result = CliRunner().invoke(cli, ["--home", str(home), *args], input="new-password-0001\n")
    assert result.exit_code == 0, result.output


def actions(services: Services) -> list[str]:
    return [r["action"] for r in AuditLog.open(services.settings).records()]


@pytest.mark.parametrize("change", [
    ("users", "reset-password", "{name}", "--password-stdin"),
    ("users", "set-role", "{name}", "--role", "viewer"),
    ("users", "remove", "{name}"),
])
def test_a_password_reset_role_change_or_removal_ends_the_users_sessions(app, change):
    url, services = app
    name = f"user{len(services.users.list())}"
    services.users.add(name, "editor", "editor-pass-0001")  # an editor: uploads are theirs to make
    client = log_in(url, name, "editor-pass-0001")
    other = log_in(url, "admin", ADMIN)
    assert allowed(client) == {"config": 200, "upload": 200, "call": 200}

    comply(services.settings.home, *(part.format(name=name) for part in change))  # another process, as an admin would

    assert allowed(client) == {"config": 401, "upload": 401, "call": 401}
    assert allowed(other) == {"config": 200, "upload": 200, "call": 200}  # nobody else's session ends
    ended = AuditLog.open(services.settings).records(action="session.end")[-1]
    assert ended["user"] == name and ended["reason"] in ("password or role changed", "user removed")


def test_wrong_passwords_wait_longer_and_longer_and_are_audited(app):
    url, services = app
    services.users.add("carol", "viewer", "carol-pass-0001")
    statuses, slowest = [], 0.0
    with httpx.Client(base_url=url, timeout=60) as client:
        for _ in range(60):
            sent = time.monotonic()
            statuses.append(client.post("/login", data={"username": "carol", "password": "guess"}).status_code)
            if statuses[-1] == 429:
                slowest = max(slowest, time.monotonic() - sent)
        right = client.post("/login", data={"username": "carol", "password": "carol-pass-0001"})
    assert statuses[:5] == [400] * 5 and statuses.count(400) <= 7 and statuses.count(429) >= 53, statuses
    assert slowest < 0.5  # a refusal is not a delay that holds the server: it answers at once
    assert right.status_code == 429 and "try again in" in right.json()["detail"]
    wait = int(right.headers["Retry-After"])
    assert 1 <= wait <= 4
    time.sleep(wait + 0.2)
    log_in(url, "carol", "carol-pass-0001")
    records = AuditLog.open(services.settings).records()
    assert sum(r["action"] == "login.failed" and r["user"] == "carol" for r in records) == statuses.count(400)
    assert any(r["action"] == "login.locked" and r["user"] == "carol" for r in records)
    assert records[-1]["action"] == "login" and records[-1]["address"] == "127.0.0.1"


def test_wrong_passwords_from_one_address_hold_up_every_name_from_it(app):
    url, services = app
    services.users.add("dave", "viewer", "dave-pass-0001")
    with httpx.Client(base_url=url, timeout=60) as client:
        for i in range(5):  # five different names: no one name reaches the limit, the address does
            assert client.post("/login", data={"username": f"nobody{i}", "password": "x"}).status_code == 400
        assert client.post("/login", data={"username": "dave", "password": "dave-pass-0001"}).status_code == 429


def test_sessions_end_when_idle_or_too_old_and_at_logout(app):
    url, services = app
    started = time.monotonic()
    busy = log_in(url, "admin", ADMIN)
    idle = log_in(url, "admin", ADMIN)
    leaving = log_in(url, "admin", ADMIN)
    assert idle.get("/config").status_code == 200
    idle_since = time.monotonic()
    assert leaving.get("/logout").status_code == 302
    assert leaving.get("/config").status_code == 401
    idle_checked = False
    while time.monotonic() - started < MAX_S - 3:
        assert busy.get("/config").status_code == 200  # used every second: not idle
        if not idle_checked and time.monotonic() - idle_since > IDLE_S + 1:
            assert idle.get("/config").status_code == 401  # unused for longer than IDLE_S
            idle_checked = True
        time.sleep(1)
    assert idle_checked
    time.sleep(3.5)
    assert busy.get("/config").status_code == 401  # older than MAX_S
    reasons = [r["reason"] for r in AuditLog.open(services.settings).records(action="session.end")]
    assert "idle too long" in reasons and "too old" in reasons
    assert "logout" in actions(services)


def test_cookies_are_secure_over_https(app):
    url, _ = app
    for proto, secure in (("https", True), ("http", False)):
        with httpx.Client(base_url=url, timeout=60, headers={"X-Forwarded-Proto": proto}) as client:
            response = client.post("/login", data={"username": "admin", "password": ADMIN})
        cookies = response.headers.get_list("set-cookie")
        assert len(cookies) == 2 and all("httponly" in c.lower() for c in cookies)
        assert ["; secure" in c.lower() for c in cookies] == [True, secure], cookies


def test_an_upload_a_new_user_and_a_login_are_refused_when_the_audit_trail_cannot_record_them(app):
    url, services = app
    services.users.add("erin", "editor", "erin-pass-0001")
    client = log_in(url, "erin", "erin-pass-0001")
    admin = log_in(url, "admin", ADMIN)
    trail = services.settings.audit_path
    before = trail.read_bytes()
    try:
        with open(trail, "ab") as f:
            f.write(b'{"seq":')  # an interrupted write: no record can follow it
        started = admin.post("/gradio_api/call/add_user", json={"data": ["frank", "admin", "frank-pass-0001"]})
        stream = admin.get(f"/gradio_api/call/add_user/{started.json()['event_id']}").text
        assert "event: error" in stream and "Nothing was changed" in stream, stream
        assert services.users.get("frank") is None
        path = client.post("/gradio_api/upload", files={"files": ("gifts.pdf", (CORPUS / "gifts_entertainment_policy.pdf")
                                                                   .read_bytes(), "application/pdf")}).json()[0]
        data = [[{"path": path, "orig_name": "gifts.pdf", "meta": {"_type": "gradio.FileData"}}], "", False]
        started = client.post("/gradio_api/call/upload_documents", json={"data": data})
        stream = client.get(f"/gradio_api/call/upload_documents/{started.json()['event_id']}").text
        assert "event: error" in stream and "audit trail" in stream and "Nothing was changed" in stream, stream
        assert services.library.catalog.documents() == []
        refused = httpx.post(f"{url}/login", data={"username": "erin", "password": "erin-pass-0001"})
        assert refused.status_code == 503 and "audit trail" in refused.json()["detail"]
    finally:
        trail.write_bytes(before)
