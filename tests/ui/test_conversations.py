"""Conversations and feedback in a real browser: an answer lands in the sidebar, survives a page reload and is
reopened with its sources; a thumbs up under it, then a thumbs down with a comment, are audited and the last is
exported by `comply feedback export`; rename, export, a follow-up (labelled as one, also when reopened) and delete
(after the confirmation) from the sidebar; another user never sees it."""

from __future__ import annotations

import json
import re

import pytest
from playwright.sync_api import expect
from typer.testing import CliRunner

from assistant.app.audit import AuditLog
from assistant.app.cli.main import app
from assistant.app.conversations import ConversationStore
from assistant.app.users import UserStore
from tests.ui.conftest import log_in, screenshot
from tests.ui.test_browser import ask

pytestmark = pytest.mark.browser

QUESTION = "What is the minimum length of a password?"


def test_a_conversation_is_kept_reopened_rated_exported_and_deleted(app_url, browser, app_settings, tmp_path):
    context, page = log_in(browser, app_url, "viewer")
    ask(page, QUESTION)
    sidebar = page.locator("#conversations")
    expect(sidebar).to_contain_text(QUESTION)
    expect(page.locator("#conversation-title input")).to_have_value(QUESTION)
    viewer = UserStore(app_settings.users_path).get("viewer")
    [saved] = [c for c in ConversationStore(app_settings.conversations_path).list(viewer) if c.title == QUESTION]
    answered = AuditLog(app_settings.audit_path).records(action="answer")[-1]
    assert (answered["user"], answered["question"], answered["conversation"]) == ("viewer", QUESTION, saved.id)
    page.locator("#chat").get_by_role("button", name="Like", exact=True).last.click()  # the answer just given
    expect(page.locator("#feedback-status")).to_contain_text("recorded 👍 helpful")
    liked = AuditLog(app_settings.audit_path).records(action="answer.feedback")[-1]
    assert (liked["user"], liked["verdict"], liked["turn"]) == ("viewer", "up", answered["turn"])

    page.reload()  # a new page: nothing on screen but the sidebar, which the server fills again
    page.get_by_text("Logged in as viewer").wait_for(timeout=60_000)
    expect(page.locator("#chat")).not_to_contain_text(QUESTION)
    sidebar.locator("label").filter(has_text=QUESTION).first.click()
    expect(page.locator("#chat")).to_contain_text(QUESTION, timeout=30_000)
    expect(page.locator("#chat")).to_contain_text(re.compile(r"\[\d\]|not answer|withheld|Not answered", re.I))
    expect(page.locator("#sources .source-card").first).to_be_visible()
    expect(page.locator("#conversation-title input")).to_have_value(QUESTION)
    page.locator("#sources a.cite").first.click()  # a reopened answer's source cards open their page
    expect(page.locator("#page-image img")).to_be_visible(timeout=60_000)
    expect(page.locator("#page-image img")).to_be_in_viewport()
    expect(page.locator("#source-caption")).to_contain_text("Information Security Policy")

    # the chat's own thumbs under an answer rate it (here one reopened); the ones below the chat rate the last one
    page.locator("#chat").get_by_role("button", name="Dislike", exact=True).last.click()
    expect(page.locator("#feedback-status")).to_contain_text("recorded 👎 not helpful.")
    page.locator("#feedback-comment textarea").fill("It should also give the rule for admin accounts.")
    page.locator("#thumbs-down").click()
    expect(page.locator("#feedback-status")).to_contain_text("recorded 👎 not helpful with your comment")
    screenshot(page, "conversation-feedback")
    rated = AuditLog(app_settings.audit_path).records(action="answer.feedback")[-1]
    assert (rated["user"], rated["verdict"], rated["comment"], rated["turn"], rated["conversation"], rated["ok"]) == (
        "viewer", "down", "It should also give the rule for admin accounts.", answered["turn"], saved.id, True)

    out = tmp_path / "feedback.jsonl"
    exported = CliRunner().invoke(app, ["--home", str(app_settings.home), "feedback", "export", "--out", str(out)])
    assert exported.exit_code == 0, exported.output
    [line] = [json.loads(x) for x in out.read_text().splitlines() if json.loads(x)["conversation"] == saved.id]
    assert (line["question"], line["verdict"], line["comment"], line["user"]) == (
        QUESTION, "down", "It should also give the rule for admin accounts.", "viewer")
    assert line["answer"] == answered["answer"]
    assert [(e["document"], e["page"]) for e in line["evidence"]] == \
        [(c["document_id"], c["page"]) for c in answered["citations"]]

    page.locator("#conversation-title input").fill("Password length (viewer)")
    page.locator("#rename-conversation").click()
    expect(sidebar).to_contain_text("Password length (viewer)")
    page.locator("#export-conversation").click()
    for suffix in ("md", "json"):  # Gradio shows the stem and the extension in two spans
        expect(page.locator("#conversation-export")).to_contain_text(re.compile(rf"{saved.id}\s*\.{suffix}"))

    # A follow-up says that it was searched with the previous question, and still does when the conversation is
    # reopened.
    assert "searched with your previous question too" in ask(page, "And for administrator accounts?")[-1]
    page.reload()
    page.get_by_text("Logged in as viewer").wait_for(timeout=60_000)
    sidebar.locator("label").filter(has_text="Password length (viewer)").first.click()
    answers = page.locator("#chat [data-testid=bot]")
    expect(answers).to_have_count(2, timeout=30_000)
    expect(answers.last).to_contain_text(f"searched with your previous question too (“{QUESTION}”)")
    expect(answers.first).not_to_contain_text("Follow-up")

    # Another user, an editor, has a sidebar of their own.
    other, other_page = log_in(browser, app_url, "editor")
    expect(other_page.locator("#conversations")).not_to_contain_text("Password length (viewer)")
    other.close()

    page.locator("#delete-conversation").click()
    expect(page.locator("#conversation-status")).to_contain_text("Tick")
    expect(sidebar).to_contain_text("Password length (viewer)")
    page.locator("#delete-conversation-confirm input").check()
    page.locator("#delete-conversation").click()
    expect(page.locator("#conversation-status")).to_contain_text("Deleted “Password length (viewer)”")
    expect(sidebar).not_to_contain_text("Password length (viewer)")
    assert saved.id not in [c.id for c in ConversationStore(app_settings.conversations_path).list(viewer)]
    actions = [(r["action"], r.get("format")) for r in AuditLog(app_settings.audit_path).records()
               if r.get("conversation") == saved.id and r["user"] == "viewer" and r["action"] != "answer"]
    assert actions == [*[("answer.feedback", None)] * 3, ("conversation.rename", None), ("conversation.export", "md"),
                       ("conversation.export", "json"), ("conversation.delete", None)]
    context.close()
