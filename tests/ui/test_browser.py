"""The app in a real browser: an editor uploads a PDF and asks a question, clicks a [n] in the answer and sees the
cited page beside the chat with the quote highlighted, asks a new question (nothing of the previous answer shows
while it is written) and a follow-up (labelled as one); a viewer can ask, but the server itself refuses their upload
and audit export (called directly with the viewer's session)."""

from __future__ import annotations

import json
import re
import time

import pytest
from playwright.sync_api import expect

from assistant.app.audit import AuditLog
from assistant.app.ui.chat import SEARCHING, STREAM_CURSOR
from ingest.catalog import Catalog
from tests.ui.conftest import UPLOADED_PDF, log_in, screenshot

pytestmark = pytest.mark.browser

QUESTION = "What is the minimum password length?"  # the base model answers it from information_security_policy.pdf
NEW_QUESTION = "Within what time must a complaint be acknowledged?"
FOLLOW_UP = "And how soon must it be resolved?"
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


def ask(page, question: str, progress_shot: str | None = None, shot_at: str = "Reading") -> list[str]:
    """Ask in the chat; return the successive texts of the answer's message (sampled every 100 ms), from when the
    question shows in the chat until the sources appear (with `progress_shot`, a screenshot of that name once it says
    `shot_at`)."""
    page.locator("#question textarea").fill(question)
    page.locator("#ask").click()
    seen: list[str] = []
    deadline = time.monotonic() + ANSWER_TIMEOUT_MS / 1000
    asked, answers = page.locator("#chat [data-testid=user]"), page.locator("#chat [data-testid=bot]")
    while time.monotonic() < deadline:
        if asked.count() and asked.last.inner_text().strip() == question:  # the new message pair is on screen
            done = page.locator("#sources .source-card").count() > 0  # before the text: the last text is final
            text = answers.last.inner_text()
            if not seen or seen[-1] != text:
                seen.append(text)
                if progress_shot and shot_at in text:
                    screenshot(page, progress_shot)
                    progress_shot = None
            if done:
                return seen
        page.wait_for_timeout(100)
    raise AssertionError(f"no answer with sources within {ANSWER_TIMEOUT_MS / 1000:.0f}s; saw {seen[-1:]}")


def readable_cards(page) -> None:
    """The source cards' quotes end at a word (a long one cut with an ellipsis, never mid-word) and show no Markdown
    heading marks."""
    for quote in page.locator("#sources blockquote").all_inner_texts():
        assert re.search(r"(\w[.;:!?)\]'\"]?|…)$", quote.strip()) and "##" not in quote, quote


def highlighted_pixels(image) -> int:
    """How many pixels of the shown page image are the marker yellow that pdf_view draws over the quote."""
    return image.evaluate("""img => {
        const canvas = document.createElement('canvas');
        canvas.width = img.naturalWidth; canvas.height = img.naturalHeight;
        const ctx = canvas.getContext('2d');
        ctx.drawImage(img, 0, 0);
        const px = ctx.getImageData(0, 0, canvas.width, canvas.height).data;
        let n = 0;
        for (let i = 0; i < px.length; i += 4)
            if (px[i] >= 235 && px[i + 1] >= 215 && px[i + 1] <= 250 && px[i + 2] <= 190) n++;
        return n;
    }""")


def test_editor_uploads_a_pdf_and_sees_it_in_the_library(app_url, browser, app_settings):
    context, page = log_in(browser, app_url, "editor")
    page.get_by_role("tab", name="Documents").click()
    library = page.locator("#library")
    expect(library).to_contain_text("Data Retention Policy")
    expect(library).not_to_contain_text("Gifts and Entertainment Policy")
    # comply's count of a document's versions, not the document's own; the version that applies is "in force"
    expect(library.locator("th").filter(has_text="comply version")).to_have_count(1)
    expect(library).to_contain_text("in force")
    expect(library).not_to_contain_text("active")

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


def test_editor_clicks_a_citation_in_the_answer_then_asks_a_new_question_and_a_follow_up(app_url, browser,
                                                                                         app_settings):
    context, page = log_in(browser, app_url, "editor")
    seen = ask(page, QUESTION, progress_shot="editor-progress")
    assert SEARCHING in seen[0] or "Reading" in seen[0], seen[0]  # progress in words, never an empty message
    assert any(re.search(r"Reading \d+ passages?…", text) for text in seen), seen[:4]
    streamed = [text for text in seen if STREAM_CURSOR.strip() in text]
    assert streamed, "the answer was not streamed: " + repr(seen[-3:])
    assert all("Draft, not yet checked" in text for text in streamed), streamed[-1]  # unchecked text is labelled
    final = seen[-1]
    assert STREAM_CURSOR.strip() not in final and "Draft, not yet checked" not in final and "Follow-up" not in final
    assert re.search(r"\[\d\]", final), final
    sources = page.locator("#sources")
    expect(sources).to_contain_text("information_security_policy.pdf")
    readable_cards(page)
    screenshot(page, "editor-answer")
    # the answer's copy button copies its [n] as plain text, not as the links the chat shows
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=app_url)
    page.locator("#chat").get_by_role("button", name="Copy message").last.click()
    copied = page.evaluate("navigator.clipboard.readText()")
    assert re.search(r"\[\d\]", copied) and "<a" not in copied and "cite" not in copied, copied

    # The [n] of the source on page 2 of the password policy, clicked in the answer itself, with the keyboard.
    card = sources.locator(".source-card").filter(has_text=re.compile(r"information_security_policy\.pdf.*page 2\b"))
    target = card.first.locator("a.cite").get_attribute("href")
    link = page.locator(f"#chat a.cite[href='{target}']").last
    expect(link).to_have_attribute("title", re.compile(r"^Open source \d+: Information Security Policy, page 2\b"))
    link.focus()
    page.keyboard.press("Enter")
    image = page.locator("#page-image img")
    expect(image).to_be_visible(timeout=60_000)
    expect(image).to_be_in_viewport()  # the panel beside the chat, scrolled into view
    caption = page.locator("#source-caption")
    expect(caption).to_contain_text(re.compile(r"Information Security Policy.*page 2\b"))
    expect(caption).not_to_contain_text("could not be located")
    assert image.evaluate("img => img.complete && img.naturalWidth > 500")
    assert highlighted_pixels(image) > 500  # the quote is marked on the page
    screenshot(page, "editor-cited-page")
    viewed = AuditLog(app_settings.audit_path).records(action="page.view")  # opening a source is recorded
    assert any((r["user"], r["document_id"], r["page"], r["highlighted"]) == ("editor", "information-security-policy",
                                                                               2, True) for r in viewed), viewed[-2:]

    record = AuditLog(app_settings.audit_path).records(action="answer")[-1]
    assert record["user"] == "editor" and record["question"] == QUESTION
    assert any((c["document_id"], c["page"]) == ("information-security-policy", 2) for c in record["citations"])

    # A new question (about complaints): while it is searched and written, nothing of the previous answer is in its
    # message, and the previous answer's page is no longer shown.
    first_answer = re.sub(r"\s*\[\d+\]", "", record["answer"]).strip()[:60]
    seen = ask(page, NEW_QUESTION)
    assert not any(first_answer in text for text in seen), [t for t in seen if first_answer in t][:1]
    assert "Follow-up" not in seen[-1]  # it names its own topic: searched alone
    readable_cards(page)
    expect(page.locator("#page-image img")).to_be_hidden()
    # the first answer's [n] still opens the first answer's source, not the new answer's source of that number
    page.locator(f"#chat a.cite[href='{target}']").click()
    expect(caption).to_contain_text(re.compile(r"Information Security Policy.*page 2\b"), timeout=60_000)
    expect(page.locator("#page-image img")).to_be_in_viewport()
    # A follow-up says that it was searched with the previous question
    seen = ask(page, FOLLOW_UP)
    assert all(f"searched with your previous question too (“{NEW_QUESTION}”)" in text for text in seen), seen[:2]
    readable_cards(page)
    screenshot(page, "editor-follow-up")
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
