"""The Adapters tab's retrieval models in a real browser: the registered reranker and embedder are listed with their
validation numbers; an admin activates the reranker, then the embedder (the library is re-embedded, the page says
how many passages), and rolls both back; the audit trail has each step."""

from __future__ import annotations

import json
import shutil

import pytest
from playwright.sync_api import expect

from finetune import retrievers
from ingest.embedding import resolve_embedding_model
from ingest.settings import DEFAULT_EMBEDDING, DEFAULT_RERANKER
from tests.library import ROOT
from tests.ui.conftest import log_in, no_error_badges, screenshot


def _copy_of_the_packaged_embedder(folder):
    """The packaged all-MiniLM-L6-v2 as a registry embedder with a training card (same vectors: the other tests
    of this session search the same home)."""
    shutil.copytree(resolve_embedding_model(DEFAULT_EMBEDDING), folder)
    (folder / "card.json").write_text(json.dumps({
        "base_model": DEFAULT_EMBEDDING, "val_questions": 60, "frozen": {"embedder": {"map@10": 0.52}},
        "best": {"embedder": {"map@10": 0.55}}, "data": {"dataset": "sample.json", "mined_val_sha256": "a" * 64}}))
    return folder


def pick(page, kind_label: str, name: str) -> None:
    page.get_by_label(kind_label).check()
    page.locator("#retriever-name input").click()
    page.locator("#retriever-name").get_by_role("option", name=name, exact=True).click()


@pytest.mark.browser
def test_an_admin_lists_activates_and_rolls_back_retrieval_models(app_settings, app_url, browser, tmp_path):
    retrievers.register(app_settings, "reranker", ROOT / "data" / "rerankers" / DEFAULT_RERANKER)
    retrievers.register(app_settings, "embedder", _copy_of_the_packaged_embedder(tmp_path / "minilm-copy"))
    context, page = log_in(browser, app_url, "admin")
    page.get_by_role("tab", name="Adapters").click()
    table = page.locator("#retrievers-table")
    expect(table).to_contain_text(DEFAULT_RERANKER)
    expect(table).to_contain_text("0.626")  # the shipped reranker's validation MAP@10 (0.6265), and without it:
    expect(table).to_contain_text("0.606")
    expect(table).to_contain_text("minilm-copy")
    expect(page.locator("#retrievers-summary")).to_contain_text("Reranking is off")
    result = page.locator("#retriever-result")

    pick(page, "Reranker (reorders the found passages)", DEFAULT_RERANKER)
    page.locator("#activate-retriever").click()
    expect(result).to_contain_text(f"The reranker {DEFAULT_RERANKER} is now active", timeout=60_000)
    assert retrievers.active(app_settings, "reranker") == DEFAULT_RERANKER

    pick(page, "Embedder (search)", "minilm-copy")
    page.locator("#activate-retriever").click()
    expect(result).to_contain_text("The embedder minilm-copy is now active", timeout=120_000)
    expect(result).to_contain_text("passages were re-embedded")
    expect(page.locator("#retrievers-summary")).to_contain_text("Search embeds with minilm-copy")
    screenshot(page, "retrieval-models")
    no_error_badges(page)

    page.locator("#rollback-retriever").click()  # the embedder is the kind chosen
    expect(result).to_contain_text("the embedder is now base", timeout=120_000)
    pick(page, "Reranker (reorders the found passages)", "base")
    page.locator("#rollback-retriever").click()
    expect(result).to_contain_text("the reranker is now base", timeout=60_000)
    no_error_badges(page)
    assert retrievers.active(app_settings, "embedder") is None and retrievers.active(app_settings, "reranker") is None
    records = [json.loads(line) for line in app_settings.audit_path.read_text().splitlines()]
    steps = [(r["action"], r.get("kind"), r.get("ok")) for r in records if r["action"].startswith("retriever.")]
    assert steps == [("retriever.activate", "reranker", True), ("retriever.activate", "embedder", True),
                     ("retriever.rollback", "embedder", True), ("retriever.rollback", "reranker", True)]
    context.close()
