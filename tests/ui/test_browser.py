"""The app in a real browser: an editor uploads a PDF and asks a question, opens the cited page; a viewer can ask,
but the server itself refuses their upload and audit export (called directly with the viewer's session)."""

from __future__ import annotations

import json
import re
import time

import pytest
from playwright.sync_api import expect

from assistant.audit import AuditLog
from assistant.ui_chat import STREAM_CURSOR
from ingest.catalog import Catalog
from tests.ui.conftest import UPLOADED_PDF, log_in, screenshot

pytestmark = pytest.mark.browser

QUESTION = "What is the minimum password length?"  # the base model answers it from information_security_policy.pdf
ANSWER_TIMEOUT_MS = 180_000


def call_endpoint(page, url: str, api_name: str, data: list) -> tuple[str, dict]:
    """Call a Gradio endpoint directly (POST /gradio_api/call/<name>, then read its event stream) with the
    page's session cookie, as a script would; returns the last event's name and payload."""
    started = page.request.post(f"{url}/gradio_api/call/{api_name}", data={"data": data})
    assert started.ok, started.text()
    stream = page.request.get(f"{url}/gradio_api/call/{api_name}/{started.json()['event_id']}").text()
    events = re.findall(r"event: (\w+)\ndata: (.*)", stream)
    assert events, stream
    name, payload = events[-1]
    return name, json.loads(payload)


def ask(page, question: str) -> list[str]:
    """Ask in the chat; return the successive texts of the conversation seen until the sources appear."""
    page.locator("#question textarea").fill(question)
    page.locator("#ask").click()
    seen: list[str] = []
    deadline = time.monotonic() + ANSWER_TIMEOUT_MS / 1000
    while time.monotonic() < deadline:
        text = page.locator("#chat").inner_text()
        if not seen or seen[-1] != text:
            seen.append(text)
        if page.locator("#sources .source-card").count():
            return seen
        page.wait_for_timeout(100)
    raise AssertionError(f"no answer with sources within {ANSWER_TIMEOUT_MS / 1000:.0f}s; saw {seen[-1:]}")


def test_editor_uploads_a_pdf_and_sees_it_in_the_library(app_url, browser, app_settings):
    context, page = log_in(browser, app_url, "editor")
    page.get_by_role("tab", name="Documents").click()
    library = page.locator("#library")
    expect(library).to_contain_text("Data Retention Policy")
    expect(library).not_to_contain_text("Gifts and Entertainment Policy")

    page.locator("#upload-files input[type=file]").set_input_files(str(UPLOADED_PDF))
    # Gradio shows the name as stem + extension in two spans; depending on layout the text between them is a break
    stem, ext = UPLOADED_PDF.stem, UPLOADED_PDF.suffix
    expect(page.locator("#upload-files")).to_contain_text(re.compile(rf"{re.escape(stem)}\s*{re.escape(ext)}"))
    page.locator("#upload-button").click()
    result = page.locator("#documents-result")
    expect(result).to_contain_text(f"{UPLOADED_PDF.name}: added", timeout=120_000)
    expect(library).to_contain_text("Gifts and Entertainment Policy")
    screenshot(page, "editor-uploaded")

    record = AuditLog(app_settings.audit_path).records(action="document.upload")[-1]
    assert (record["user"], record["file"], record["ok"]) == ("editor", UPLOADED_PDF.name, True)
    catalog = Catalog(app_settings.catalog_path)
    assert catalog.get("gifts-and-entertainment-policy").status == "active"

    # Delete it again, leaving "Only this version" empty: all versions go.
    page.get_by_role("tab", name="Delete a document").click()
    page.locator("#delete-doc input").click()
    page.get_by_role("option", name=re.compile("Gifts and Entertainment Policy")).click()
    page.locator("#delete-confirm input").check()
    page.locator("#delete-button").click()
    expect(result).to_contain_text("Deleted gifts-and-entertainment-policy@v1", timeout=60_000)
    expect(library).not_to_contain_text("Gifts and Entertainment Policy")
    assert catalog.versions("gifts-and-entertainment-policy")[0].status == "deleted"
    catalog.close()
    context.close()


def test_editor_sees_a_streamed_answer_with_citations_and_opens_the_cited_page(app_url, browser, app_settings):
    context, page = log_in(browser, app_url, "editor")
    seen = ask(page, QUESTION)
    streamed = [text for text in seen if STREAM_CURSOR.strip() in text]
    assert streamed, "the answer was not streamed: " + repr(seen[-3:])
    assert all("Draft, not yet checked" in text for text in streamed), streamed[-1]  # unchecked text is labelled
    final = page.locator("#chat").inner_text()
    assert STREAM_CURSOR.strip() not in final and "Draft, not yet checked" not in final
    assert re.search(r"\[\d\]", final), final
    sources = page.locator("#sources")
    expect(sources).to_contain_text("information_security_policy.pdf")
    screenshot(page, "editor-answer")

    option = page.locator("#source-pick label").filter(has_text=re.compile(r"Information Security Policy, page 2\b"))
    option.first.click()
    image = page.locator("#page-image img")
    expect(image).to_be_visible(timeout=60_000)
    expect(page.locator("#source-caption")).to_contain_text(re.compile(r"page 2\b"))
    assert image.evaluate("img => img.complete && img.naturalWidth > 500")
    screenshot(page, "editor-cited-page")

    record = AuditLog(app_settings.audit_path).records(action="answer")[-1]
    assert record["user"] == "editor" and record["question"] == QUESTION
    assert any((c["document_id"], c["page"]) == ("information-security-policy", 2) for c in record["citations"])
    context.close()


def test_viewer_can_ask_but_the_server_refuses_upload_and_audit_export(app_url, browser, app_settings):
    context, page = log_in(browser, app_url, "viewer")
    expect(page.get_by_role("tab", name="Administration")).to_have_count(0)
    page.get_by_role("tab", name="Documents").click()
    expect(page.locator("#library")).to_contain_text("Data Retention Policy")
    expect(page.locator("#upload-button")).to_be_hidden()
    page.get_by_role("tab", name="Ask").click()
    page.locator("#strict input[type=checkbox]").check()  # strict citations, for this question
    ask(page, QUESTION)
    expect(page.locator("#sources")).to_contain_text("information_security_policy.pdf")
    screenshot(page, "viewer-answer")
    record = AuditLog(app_settings.audit_path).records(action="answer")[-1]
    assert record["user"] == "viewer" and record["filters"]["strict"] is True

    catalog = Catalog(app_settings.catalog_path)
    before = [(r.document_id, r.version, r.status) for r in catalog.documents(include_deleted=True)]
    # The hidden button is no protection: the server refuses the viewer's upload itself (tests/ui/test_uploads.py),
    # and the ingest endpoint called directly with the viewer's own session.
    event, payload = call_endpoint(page, app_url, "upload_documents", [[], "", False])
    assert event == "error" and "Permission denied" in payload["error"] and "editor" in payload["error"], payload
    assert [(r.document_id, r.version, r.status) for r in catalog.documents(include_deleted=True)] == before
    catalog.close()

    event, payload = call_endpoint(page, app_url, "export_audit", ["CSV"])
    assert event == "error" and "Permission denied" in payload["error"] and "admin" in payload["error"], payload
    denied = AuditLog(app_settings.audit_path).records(action="access.denied")
    assert {(r["user"], r["permission"]) for r in denied} >= {("viewer", "documents.write"),
                                                              ("viewer", "audit.export")}
    context.close()

    # The same export call succeeds for an admin, so the refusal above is the role check, not a broken call.
    context, page = log_in(browser, app_url, "admin")
    event, payload = call_endpoint(page, app_url, "export_audit", ["CSV"])
    assert event == "complete", payload
    assert "trail is intact" in payload[0]
    page.get_by_role("tab", name="Administration").click()
    page.locator("#export-audit").click()
    expect(page.locator("#audit-status")).to_contain_text("the trail is intact", timeout=30_000)
    screenshot(page, "admin-audit-export")
    context.close()
