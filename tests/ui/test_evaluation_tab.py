"""The Evaluation tab in a real browser, on the shipped sample gold set: an estimate before running, a retrieval-only
run of every question with the metrics explained and the per-question table (question, verdict, cited page, gold
page, reason) filtered and a row's sources opened; a run with answers started in the background, a viewer answered
in the chat meanwhile, then cancelled (and audited as such); the cancelled run taken up again for two questions and
compared with the retrieval run, question by question. And the estimate's arithmetic on its own.

The browser tests build on each other in this order (one server for the session): run the file, not one of them."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from assistant.app.audit import AuditLog
from assistant.app.ui.evaluation import ROUGH_MS, answer_details, duration, estimate_text
from eval.report import load_records
from tests.eval.test_verdicts import RIGHT, WRONG, answer
from tests.ui.conftest import log_in, no_error_badges, screenshot
from tests.ui.test_browser import ask

RUN_TIMEOUT_MS = 300_000
COLUMNS = ("Question", "Verdict", "Cited page", "Gold page", "Reason")  # after the id


def test_the_estimate_says_how_long_and_where_the_time_per_question_comes_from():
    rough = estimate_text(35, 0, True, None)
    assert rough.startswith("**Estimate**: 35 questions (retrieval only): about 7 s at 200 ms a question, a rough "
                            "default for retrieval only (no earlier run of this kind on this server to measure)")
    measured = estimate_text(35, 5, False, (12_000.0, "20261206-140000-sample_gold"))
    assert "35 questions (full answers; 5 were already done by an unfinished run, which this one continues)" in measured
    assert "about 6 min at 12.0 s a question, the average of the latest run of this kind on this server " \
           "(20261206-140000-sample_gold), plus loading the models" in measured
    assert ROUGH_MS[False] > 10 * ROUGH_MS[True]
    assert (duration(40), duration(180), duration(4800)) == ("40 s", "3 min", "1 h 20 min")


def test_a_withheld_answer_opens_with_its_draft_and_the_sources_the_draft_cited():
    record = answer(abstained=True, abstain_reason="low_citation_score", citations=[], sentences=[],
                    answer="An answer was written but withheld.", raw_answer="At least 14 characters [2].",
                    sources=[RIGHT | {"n": 1}, WRONG | {"n": 2}],
                    retrieved=[{"rank": 1, "document": "information-security-policy", "page": 2, "clause": "IA-5",
                                "chunk_id": "c1", "relevant": True}])
    shown = answer_details(record, {"c1": "Passwords must be at least 14 characters long.",
                                    "c2": "Accounts are reviewed every quarter."})
    assert "**Verdict**: withheld: an answer was written, but the passage it cites is not clearly the one" in shown
    assert "the draft cited no gold passage (draft: information\\_security\\_policy.pdf p. 5 (AC-2))" in shown
    assert "**Draft that was not shown**: At least 14 characters \\[2\\]." in shown
    assert ("**Sources the draft cited**:\n- [2] information\\_security\\_policy.pdf p. 5 (AC-2) (not a gold "
            "passage): “Accounts are reviewed every quarter.”") in shown
    assert "- 1. information-security-policy p. 2 (IA-5) (gold passage): “Passwords must be at least 14" in shown


def open_tab(page) -> None:
    page.get_by_role("tab", name="Evaluation").click()
    expect(page.locator("#eval-estimate")).to_contain_text("Estimate", timeout=30_000)


def limit_box(page):
    return page.locator("#eval-limit input, #eval-limit textarea").first


def expect_rows(table, n: int) -> None:
    """The table holds n rows besides its header (it draws only those in view, so count its grid's rows)."""
    expect(table.locator("[role=grid]")).to_have_attribute("aria-rowcount", str(n + 1))


def cell(table, row: int, column: int):
    """The cell shown at `row` (0: the first under the header, as sorted) and `column`."""
    return table.locator(f".virtual-row[aria-rowindex='{row + 2}'] [role=gridcell]").nth(column)


def columns_visible(table, columns) -> None:
    """The table's header has each of `columns` (exactly that text), in view."""
    headers = table.locator("th")
    expect(headers.first).to_be_visible()
    texts = [t.strip() for t in headers.all_inner_texts()]
    for column in columns:
        assert column in texts, (column, texts)
        expect(headers.nth(texts.index(column))).to_be_visible()


def choose(page, elem_id: str, option: str | re.Pattern) -> None:
    page.locator(f"#{elem_id} input").click()
    page.locator(f"#{elem_id}").get_by_role("option", name=option).click()


@pytest.mark.browser
def test_a_retrieval_run_shows_metrics_explained_and_a_table_to_filter_and_open(app_url, browser):
    context, page = log_in(browser, app_url, "admin")
    open_tab(page)
    expect(limit_box(page)).to_have_value("")  # all questions
    page.locator("#eval-retrieval input").check()
    estimate = page.locator("#eval-estimate")
    expect(estimate).to_contain_text("35 questions (retrieval only)")
    expect(estimate).to_contain_text(re.compile(r"rough default for retrieval only|average of the latest run"))
    page.locator("#eval-run").click()
    status = page.locator("#eval-status")
    expect(status).to_contain_text(re.compile(r"Run \S+-sample_gold-retrieval finished: 35 questions"),
                                   timeout=RUN_TIMEOUT_MS)
    expect(estimate).to_contain_text("the average of the latest run of this kind on this server")

    metrics = page.locator("#eval-metrics")
    expect(metrics.locator("th").filter(has_text="What it means")).to_have_count(1)
    expect(metrics).to_contain_text("share of the gold passages among the first 10 retrieved")
    expect(metrics).to_contain_text("how high the first gold passage ranks")
    expect(page.locator("#eval-plot-metrics img")).to_be_visible()

    table = page.locator("#eval-questions")
    screenshot(page, "eval-retrieval-run")
    columns_visible(table, COLUMNS)
    expect_rows(table, 35)
    expect(table).to_contain_text("gold passage at rank 1")
    screenshot(page, "eval-retrieval-run")

    # the questions about the PDF this home leaves out (tests/ui/conftest.py)
    choose(page, "eval-verdict", re.compile(r"^gold missed \(\d+\)"))
    missed = int(re.search(r"gold missed \((\d+)\)", page.locator("#eval-verdict input").input_value()).group(1))
    expect_rows(table, missed)
    expect(table).to_contain_text("gifts-public-official")
    assert all(text == "gold missed" for text in table.locator("[data-col='2']").all_inner_texts())
    choose(page, "eval-verdict", "All verdicts")
    expect_rows(table, 35)
    # sorted in the browser by verdict, Z to A: a selected row still opens its own question
    header = table.locator("th").nth(COLUMNS.index("Verdict") + 1)
    header.hover()  # the header's menu button shows on hover
    header.locator("button[aria-label='Open cell menu']").click()
    page.get_by_text("Sort descending").click()
    expect(cell(table, 0, 2)).to_have_text("not judged")
    question = cell(table, 0, 1).inner_text()
    cell(table, 0, 1).click()
    detail = page.locator("#eval-detail")
    expect(detail).to_contain_text(question, timeout=30_000)
    expect(detail).to_contain_text("Verdict: not judged")
    expect(detail).to_contain_text("the documents do not answer this question")
    page.locator("#eval-filter input, #eval-filter textarea").first.fill("password")
    page.locator("#eval-filter input, #eval-filter textarea").first.press("Enter")
    expect_rows(table, 1)
    expect(cell(table, 0, 0)).to_have_text("infosec-password-length")

    cell(table, 0, 1).click()
    expect(detail).to_contain_text("Passages retrieved first", timeout=30_000)
    expect(detail).to_contain_text("information_security_policy.pdf p.")
    expect(detail).to_contain_text("(gold passage)")
    screenshot(page, "eval-retrieval-sources")
    context.close()


@pytest.mark.browser
def test_an_answer_run_goes_on_in_the_background_beside_the_chat_and_is_cancelled(app_url, browser, app_settings):
    context, page = log_in(browser, app_url, "admin")
    open_tab(page)
    page.locator("#eval-retrieval input").uncheck()
    expect(page.locator("#eval-estimate")).to_contain_text("35 questions (full answers")
    page.locator("#eval-run").click()
    status = page.locator("#eval-status")
    expect(status).to_contain_text(re.compile(r"of 35 questions done"), timeout=RUN_TIMEOUT_MS)

    viewer, chat = log_in(browser, app_url, "viewer")  # asks while the admin's run goes on
    ask(chat, "What is the minimum password length?")
    expect(chat.locator("#sources .source-card").first).to_be_visible()
    running = status.inner_text()
    assert "of 35 questions done" in running and "finished" not in running, running
    screenshot(chat, "eval-viewer-answered-during-run")
    viewer.close()

    page.locator("#eval-cancel").click()
    expect(status).to_contain_text(re.compile(r"cancelled after \d+ of 35 questions"), timeout=RUN_TIMEOUT_MS)
    done = int(re.search(r"cancelled after (\d+) of 35", status.inner_text()).group(1))
    assert done < 35
    expect_rows(page.locator("#eval-questions"), done)
    screenshot(page, "eval-cancelled")
    record = AuditLog.open(app_settings).records(action="eval.run")[-1]
    assert (record["user"], record["cancelled"], record["done"], record["total"]) == ("admin", True, done, 35)
    assert record["retrieval_only"] is False
    context.close()


@pytest.mark.browser
def test_the_cancelled_run_goes_on_and_two_runs_compare_question_by_question(app_url, browser, app_settings):
    context, page = log_in(browser, app_url, "admin")
    open_tab(page)
    page.locator("#eval-retrieval input").uncheck()
    limit_box(page).fill("2")
    limit_box(page).press("Enter")
    estimate = page.locator("#eval-estimate")
    expect(estimate).to_contain_text(re.compile(r"2 questions \(full answers; [12] were already done by an "
                                                r"unfinished run"))
    page.locator("#eval-run").click()
    status = page.locator("#eval-status")
    expect(status).to_contain_text(re.compile(r"Run \S+-sample_gold finished: 2 questions"), timeout=RUN_TIMEOUT_MS)
    answered = re.search(r"Run (\S+-sample_gold) finished", status.inner_text()).group(1)
    records = load_records(app_settings.eval_dir / "runs" / answered / "results.jsonl")
    assert records and all(r["answer"] and r["sources"] and "abstain_reason" in r for r in records)

    cell(page.locator("#eval-questions"), 0, 1).click()  # an answer's text and sources
    detail = page.locator("#eval-detail")
    expect(detail).to_contain_text("Answer", timeout=30_000)
    expect(detail).to_contain_text("Verdict")
    expect(detail).to_contain_text(re.compile(r"Sources cited|Passages retrieved first"))
    expect(detail).to_contain_text("aml_kyc_policy.pdf p.")
    screenshot(page, "eval-answer-sources")

    choose(page, "eval-run-a", answered)  # a run against itself: said in place, no error badge
    choose(page, "eval-run-b", answered)
    page.locator("#eval-compare").click()
    expect(status).to_contain_text("⚠ Choose two different stored runs.", timeout=30_000)
    no_error_badges(page)
    choose(page, "eval-run-a", re.compile(r"-sample_gold-retrieval$"))
    page.locator("#eval-compare").click()
    expect(status).to_contain_text("changed verdict", timeout=60_000)
    changed = page.locator("#eval-changed")
    columns_visible(changed, ("Question", "Verdict A", "Verdict B"))
    # every answered question was "gold found" by retrieval alone; its answer verdict says what became of it
    expect_rows(changed, 2)
    expect(cell(changed, 0, 1)).to_have_text("gold found")
    expect(page.locator("#eval-compare-metrics")).to_contain_text("share of the gold passages")
    screenshot(page, "eval-compare")
    context.close()
