"""The chat's last points of issue #20, in a real browser: a draft that the checks will withhold is never on screen
while it is written (progress in words instead); each [n] link's accessible name says what it opens, and Tab then
Enter opens it; Activate and Roll back with nothing to do say so in place, without Gradio's red error badges; a
refused or invalid action is one log line, not a traceback. Screenshots in tests/artifacts/: `unsure-writing.png`,
`unsure-withheld.png`, `keyboard-cited-page.png`, `adapters-nothing-chosen.png`."""

from __future__ import annotations

import logging
import re
import shutil

import pytest
from playwright.sync_api import expect

from assistant.app.ui.chat import ABSTAIN_REASONS, DRAFT_WAITS, SEARCHING, STREAM_CURSOR, answer_markdown
from assistant.app.ui.main import launch
from assistant.app.ui.services import Services
from assistant.pipeline import ABSTAIN_TEXT, WITHHELD_TEXT, Assistant, Draft, DraftCheck
from assistant.types import AbstainReason, Answer, Citation
from ingest.embedding import load_embedder
from ingest.pipeline import Library
from ingest.settings import Settings
from tests.library import CORPUS
from tests.ui.conftest import PASSWORDS, free_port, log_in, no_error_badges, screenshot
from tests.ui.test_browser import QUESTION, ask, call_endpoint

pytestmark = pytest.mark.browser

UNSURE = 0.99  # a confidence gate no answer of the small model reaches: every answer it drafts is withheld
DRAFT_LABEL = "Draft, not yet checked"


# what a compliance officer should never read in a reason: a setting's name, an abstain reason's code, the jargon of
# the checks behind them
INTERNAL = sorted({*(name for name in Settings.model_fields if "_" in name), *(r.value for r in AbstainReason if "_" in r.value),
                   "gate", "calibrated", "threshold", "logistic", "rerank", "rrf", "bm25"})


def internal_words(text: str) -> list[str]:
    return [word for word in INTERNAL if re.search(rf"(?<![\w-]){re.escape(word)}(?![\w-])", text, re.I)]


@pytest.mark.parametrize("reason", list(AbstainReason))
def test_no_reason_for_an_answer_not_given_names_a_setting_or_a_code(reason):
    source = Citation(1, "information-security-policy", "policy.pdf", "Information Security Policy", 2, "IA-5",
                      "Passwords are at least 14 characters.", 0.03)
    answer = Answer("How long must passwords be?", WITHHELD_TEXT if reason.withheld else ABSTAIN_TEXT, True, [], [],
                    "model", None, {}, [source], abstain_reason=reason)  # as the pipeline words them
    shown = answer_markdown(answer, message=1)
    assert not internal_words(shown), (reason, shown)
    assert reason not in ABSTAIN_REASONS or ABSTAIN_REASONS[reason] in shown  # a withheld answer says why


@pytest.fixture(scope="module")
def unsure_app(tmp_path_factory):
    """The app over a home holding the information security policy, with the confidence gate at UNSURE; (url,
    services)."""
    home = tmp_path_factory.mktemp("comply-unsure")
    settings = Settings(home=home, admin_password=PASSWORDS["admin"], min_confidence=UNSURE)
    library = Library(settings, embedder=load_embedder(settings))
    assert library.ingest([CORPUS / "information_security_policy.pdf"]).ok
    services = Services(settings, library)
    port = free_port()
    demo = launch(settings, "127.0.0.1", port, block=False, services=services)
    services.users.add("viewer", "viewer", PASSWORDS["viewer"])
    yield f"http://127.0.0.1:{port}", services
    demo.close()
    library.close()
    shutil.rmtree(home, ignore_errors=True)


def test_the_drafts_say_whether_they_look_likely_to_stand(unsure_app):
    """What the chat relies on: `Assistant.stream` yields its text as `Draft`s (still plain str pieces), none of
    them likely when the confidence gate will withhold the answer, all of them likely without gates."""
    _, services = unsure_app
    for gate, likely in ((UNSURE, False), (0.0, True)):
        assistant = Assistant(services.settings.model_copy(update={"min_confidence": gate}), services.library)
        items = list(assistant.stream(QUESTION))
        drafts = [i for i in items if isinstance(i, str)]
        assert drafts and all(isinstance(d, Draft) and d.likely is likely for d in drafts), (gate, drafts)
        assert items[-1].raw_answer == "".join(drafts).strip()
        assert items[-1].abstained is not likely or items[-1].abstain_reason != "low_confidence"


def test_a_draft_citing_a_source_it_was_not_given_or_one_strict_citations_refuse_is_not_likely(unsure_app):
    _, services = unsure_app
    assistant = Assistant(services.settings.model_copy(update={"min_confidence": 0.0}), services.library)
    sources = assistant.retriever.retrieve(QUESTION, 3)
    loose = DraftCheck(assistant, sources, strict=False, trace=[])
    assert loose.likely("Passwords must be") and loose.likely("Passwords must be 14 characters long [1].")
    assert not loose.likely("Passwords must be 14 characters long [1]. They expire [4].")  # there is no source 4
    strict = DraftCheck(assistant, sources, strict=True, trace=[])
    assert not strict.likely("Passwords must be")  # strict citations judge a citation: none is written yet
    for n, source in enumerate(sources, start=1):
        assert strict.likely(f"Passwords must be 14 characters long [{n}].") is (
            source.dense_rank == 1 and source.bm25_rank == 1), (n, source.dense_rank, source.bm25_rank)


def test_a_draft_the_checks_will_withhold_is_never_on_screen(unsure_app, browser):
    url, services = unsure_app
    context, page = log_in(browser, url, "viewer")
    seen = ask(page, QUESTION, progress_shot="unsure-writing", shot_at="Writing the answer")
    *written, final = seen
    # while the model writes, the message says so in words and how far it is, and shows none of the draft
    assert any(re.search(rf"Writing the answer… [1-9]\d* words? so far\. {re.escape(DRAFT_WAITS)}", text)
               for text in written), written
    assert all(SEARCHING in t or re.search(r"^Reading \d+ passages?…$", t.strip()) or "Writing the answer" in t
               for t in written), written
    assert not any(DRAFT_LABEL in t or STREAM_CURSOR.strip() in t for t in seen), seen
    viewer = services.users.get("viewer")
    [conversation] = services.conversations.list(viewer)
    record = services.conversations.get(viewer, conversation.id).turns[-1].record
    assert record["abstained"] and record["abstain_reason"] == "low_confidence", record
    drafted = " ".join(record["raw_answer"].split()[:4])  # the draft's opening words, sampled 10 times a second
    assert drafted and not any(drafted in " ".join(t.split()) for t in seen), (drafted, seen)
    assert "withheld" in final and "unsure" in final, final
    assert not internal_words(final), final
    screenshot(page, "unsure-withheld")
    context.close()


def test_a_citation_link_says_what_it_opens_and_opens_with_tab_and_enter(app_url, browser):
    context, page = log_in(browser, app_url, "viewer")
    ask(page, QUESTION)
    links = page.locator("#chat [data-testid=bot]").last.locator("a.cite")
    expect(links.first).to_have_text(re.compile(r"^\[\d+\]$"))  # it still reads [n] on screen
    for link in links.all():
        n = link.inner_text().strip("[]")
        expect(link).to_have_accessible_name(re.compile(rf"^Source {n}: .+, page \d+"))
    # from the sidebar's last control, Tab moves through the page to the first [n] of the answer; Enter opens it
    page.locator("#delete-conversation").focus()
    for _ in range(80):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.matches('#chat a.cite')"):
            break
    else:
        raise AssertionError("Tab never reached a [n] link in the answer")
    name = page.evaluate("document.activeElement.getAttribute('aria-label')")
    document, page_no = re.match(r"Source \d+: (.+?), page (\d+)", name).groups()
    page.keyboard.press("Enter")
    caption = page.locator("#source-caption")
    expect(caption).to_contain_text(re.compile(rf"{re.escape(document)}.*page {page_no}\b"), timeout=60_000)
    expect(page.locator("#page-image img")).to_be_in_viewport()
    screenshot(page, "keyboard-cited-page")
    context.close()


def test_adapters_with_nothing_chosen_say_so_in_place_without_error_badges(app_url, browser):
    context, page = log_in(browser, app_url, "admin")
    page.get_by_role("tab", name="Adapters").click()
    page.locator("#activate-adapter").click()
    result = page.locator("#adapter-result")
    expect(result).to_contain_text("⚠ Choose an adapter in the list first.")
    no_error_badges(page)
    page.locator("#rollback-adapter").click()  # nothing was activated in this home: nothing to roll back to
    expect(result).to_contain_text("Not rolled back: nothing to roll back to", timeout=120_000)  # after the warm-up
    no_error_badges(page)
    screenshot(page, "adapters-nothing-chosen")
    page.get_by_role("tab", name="Administration").click()
    page.locator("#change-role").click()
    expect(page.locator("#user-result")).to_contain_text("Choose a user and a role first.")
    no_error_badges(page)
    context.close()


def test_a_refused_or_invalid_action_is_one_log_line_and_no_traceback(app_url, browser, capfd, caplog):
    caplog.set_level(logging.INFO, logger="assistant.app")
    capfd.readouterr()  # what the server printed before this test
    viewer, viewer_page = log_in(browser, app_url, "viewer")
    event, payload = call_endpoint(viewer_page, app_url, "export_audit", ["CSV"])  # refused: it needs an admin
    assert event == "error" and "Permission denied" in payload["error"], payload
    admin, admin_page = log_in(browser, app_url, "admin")
    event, payload = call_endpoint(admin_page, app_url, "add_user", ["shorty", "viewer", "short"])  # invalid
    assert event == "complete" and "too short" in payload[0], payload
    event, payload = call_endpoint(admin_page, app_url, "activate_adapter", [None, False])  # nothing chosen
    assert event == "complete" and "Choose an adapter" in payload[0], payload
    viewer.close()
    admin.close()
    printed = capfd.readouterr()
    assert "Traceback" not in printed.err + printed.out, printed.err[-2000:]
    lines = [r.getMessage() for r in caplog.records if r.name.startswith("assistant.app")]
    assert [sum(what in line for line in lines) for what in ("'audit.export'", "too short", "Choose an adapter")] \
        == [1, 1, 1], lines
