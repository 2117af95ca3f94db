"""The real app on a free port, over a temp home with the sample corpus ingested (all but one PDF, which the
tests upload), with an editor and a viewer; and a real headless Chromium to drive it."""

from __future__ import annotations

import shutil
import socket

import pytest
from playwright.sync_api import expect

from assistant.app.ui.main import launch
from assistant.app.ui.services import Services
from ingest.embedding import load_embedder
from ingest.pipeline import Library
from ingest.settings import Settings
from tests.library import CORPUS, ROOT

UPLOADED_PDF = CORPUS / "gifts_entertainment_policy.pdf"  # left out of the home; the editor uploads it
ARTIFACTS = ROOT / "tests" / "artifacts"
CHROMIUM = "/usr/bin/chromium"
UPLOAD_QUOTA_MB = 2  # small, so that tests/ui/test_uploads.py reaches it with small files
PASSWORDS = {"admin": "admin-pass-0001", "editor": "editor-pass-0001", "viewer": "viewer-pass-0001"}


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def app_settings(tmp_path_factory) -> Settings:
    """A fresh home with every sample document but UPLOADED_PDF ingested, and a known admin password."""
    home = tmp_path_factory.mktemp("comply-ui")
    settings = Settings(home=home, admin_password=PASSWORDS["admin"], upload_quota_mb=UPLOAD_QUOTA_MB)
    library = Library(settings, embedder=load_embedder(settings))
    files = [p for p in sorted(CORPUS.iterdir()) if p.is_file() and p != UPLOADED_PDF]
    report = library.ingest(files)
    assert not report.failed, report.to_dict()
    library.close()
    yield settings
    shutil.rmtree(home, ignore_errors=True)


@pytest.fixture(scope="session")
def app_served(app_settings):
    """The app served by `assistant.app.ui.main.launch` (as `comply serve` does) in this process: (its URL, the Gradio app)."""
    services = Services(app_settings, Library(app_settings, embedder=load_embedder(app_settings)))
    port = free_port()
    demo = launch(app_settings, "127.0.0.1", port, block=False, services=services)
    for role in ("editor", "viewer"):
        services.users.add(role, role, PASSWORDS[role])
    yield f"http://127.0.0.1:{port}", demo
    demo.close()
    services.library.close()


@pytest.fixture(scope="session")
def app_url(app_served) -> str:
    return app_served[0]


@pytest.fixture(scope="session")
def browser():
    """Debian's Chromium, headless, driven by Playwright."""
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=["--headless", "--no-sandbox", "--disable-gpu"])
        yield chromium
        chromium.close()


def log_in(browser, url: str, user: str):
    """A new browser context logged in as `user` through the login form; returns (context, page)."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.goto(url)
    page.get_by_label("username").fill(user)
    page.get_by_label("password").fill(PASSWORDS[user])
    page.get_by_role("button", name="Login").click()
    page.get_by_text(f"Logged in as {user}").wait_for(timeout=60_000)
    return context, page


def screenshot(page, name: str) -> None:
    """Save a full-page screenshot to tests/artifacts/<name>.png."""
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def no_error_badges(page) -> None:
    """Nothing on the page shows Gradio's error state: no error toast, no red 'Error' badge on a component."""
    expect(page.locator(".toast-body.error")).to_have_count(0)
    expect(page.get_by_text("Error", exact=True)).to_have_count(0)
