"""Each question's verdict in words (eval.report.verdict) from the records eval/runner.py writes, and the questions
whose verdict changed between two runs (eval.compare): on real retrieval-only runs of the sample gold set, and on
answer records shaped as the runner writes them (the answers of a real run vary with the model)."""

import json

from eval.compare import changed_verdicts, compare_runs
from eval.metrics import aggregate
from eval.report import (
    ANSWERED_UNANSWERABLE,
    CORRECT,
    CORRECT_REFUSAL,
    DIFFERS,
    FALSE_REFUSAL,
    GOLD_FOUND,
    GOLD_MISSED,
    NO_CITATION,
    NOT_JUDGED,
    UNSUPPORTED,
    WITHHELD,
    WRONG_CITATION,
    cited_pages,
    gold_pages,
    meaning,
    verdict,
)
from tests.eval.test_report import runs  # noqa: F401 (a fixture: real retrieval-only runs, hybrid and BM25)

GOLD_PLACE = {"document": "information_security_policy.pdf", "page": 2, "passage_id": "IA-5", "quote": "14"}
RIGHT = {"n": 1, "document_id": "information-security-policy", "file": "/x/information_security_policy.pdf",
         "page": 2, "clause": "IA-5", "quote": "at least 14 characters", "chunk_id": "c1", "correct": True}
WRONG = RIGHT | {"page": 5, "clause": "AC-2", "quote": "accounts are reviewed", "chunk_id": "c2", "correct": False}
SUPPORTED = {"text": "Passwords have at least 14 characters [1].", "supported": True, "issue": None}


def answer(**fields) -> dict:
    """A record of an answered, answerable question as the runner writes it; `fields` override."""
    return {"id": "q", "question": "What is the minimum password length?", "answerable": True,
            "evidence": [GOLD_PLACE], "also": [], "gold_answer": "At least 14 characters.",
            "answer": "Passwords have at least 14 characters [1].", "abstained": False, "abstain_reason": None,
            "answer_correct": True, "answer_entailed": 0.9, "answer_covers": 0.9, "sentences": [SUPPORTED],
            "citations": [RIGHT], "retrieved": [], "timings": {"total_ms": 900.0}, "scores": {}} | fields


def test_an_answer_is_correct_only_when_it_cites_gold_with_supported_sentences_that_agree_with_the_gold_answer():
    assert verdict(answer()) == (CORRECT, "cites a gold passage")
    assert verdict(answer(answer_correct=None))[1] == "cites a gold passage (not checked against a gold answer)"
    said, reason = verdict(answer(citations=[WRONG]))
    assert said == WRONG_CITATION and reason == "cites information_security_policy.pdf p. 5 (AC-2), not a gold passage"
    assert verdict(answer(citations=[]))[0] == NO_CITATION
    unsupported = SUPPORTED | {"supported": False, "issue": "the number 12 is not in the passage"}
    said, reason = verdict(answer(sentences=[SUPPORTED, unsupported]))
    assert said == UNSUPPORTED and reason == ("1 of 2 sentences not supported by the passage they cite (the number 12 "
                                              "is not in the passage)")
    said, reason = verdict(answer(answer_correct=False, answer_entailed=0.08, answer_covers=0.88))
    assert (said, reason) == (DIFFERS, "differs from the gold answer (entailed 0.08, covers 0.88)")
    # everything that failed is in the reason; the verdict is the first of them
    said, reason = verdict(answer(citations=[WRONG], answer_correct=False, answer_entailed=0.1, answer_covers=0.2))
    assert said == WRONG_CITATION and "not a gold passage; differs from the gold answer" in reason


def test_no_answer_is_a_withheld_draft_a_false_refusal_or_a_correct_refusal_by_its_reason():
    withheld = answer(abstained=True, abstain_reason="low_citation_score", citations=[], sentences=[])
    assert verdict(withheld) == (WITHHELD, "an answer was written, but the passage it cites is not clearly the one "
                                           "that answers it")
    refused = answer(abstained=True, abstain_reason="low_relevance", citations=[], sentences=[])
    assert verdict(refused)[0] == FALSE_REFUSAL and "too far from the question" in verdict(refused)[1]
    assert verdict(answer(abstained=True, abstain_reason=None))[0] == FALSE_REFUSAL  # a run before the reasons
    # a withheld draft's own citations ([n] of raw_answer, numbered as the recorded sources)
    sources = [RIGHT | {"n": 1}, WRONG | {"n": 2}]
    draft = withheld | {"raw_answer": "Passwords have at least 14 characters [2][1].", "sources": sources}
    assert cited_pages(draft) == ("draft: information_security_policy.pdf p. 5 (AC-2); "
                                  "information_security_policy.pdf p. 2 (IA-5)")
    assert verdict(draft)[1].endswith("; the draft cited a gold passage (" + cited_pages(draft) + ")")
    assert "no gold passage" in verdict(draft | {"raw_answer": "At least 12 [2]."})[1]
    assert cited_pages(draft | {"raw_answer": "No marker."}) == "" and cited_pages(withheld) == ""
    unanswerable = answer(answerable=False, evidence=[])
    assert verdict(unanswerable | {"abstained": True, "abstain_reason": "model"}) == (
        CORRECT_REFUSAL, "the model said the sources do not answer it")
    assert verdict(unanswerable)[0] == ANSWERED_UNANSWERABLE


def test_pages_name_the_file_page_and_clause():
    assert cited_pages(answer(citations=[RIGHT, RIGHT, WRONG])) == (
        "information_security_policy.pdf p. 2 (IA-5); information_security_policy.pdf p. 5 (AC-2)")
    assert gold_pages(answer()) == "information_security_policy.pdf p. 2 (IA-5)"
    assert cited_pages(answer(citations=None)) == ""


def test_every_metric_and_latency_has_a_plain_meaning():
    assert meaning("recall@10").startswith("share of the gold passages among the first 10 retrieved")
    assert meaning("latency.total_ms.p95") == ("95 in 100 questions took at most this many milliseconds for the "
                                               "whole answer")
    assert all(meaning(key) for key in aggregate([]))


def test_a_retrieval_only_run_says_where_the_gold_passage_was_found(runs):  # noqa: F811 (the fixture)
    records = {r["id"]: r for r in map(json.loads, (runs / "hybrid" / "results.jsonl").read_text().splitlines())}
    assert verdict(records["aml-cash-threshold"]) == (GOLD_FOUND, "gold passage at rank 1")
    said, reason = verdict(records["retention-customer-v1"])  # asks for the superseded version, naming no date
    assert said == GOLD_MISSED and reason.startswith("no gold passage among the first 10 retrieved; first retrieved: ")
    assert verdict(records["none-crypto-custody"])[0] == NOT_JUDGED


def test_a_comparison_lists_the_questions_whose_verdict_changed(runs, tmp_path):  # noqa: F811 (the fixture)
    hybrid = {r["id"]: verdict(r)[0] for r in map(json.loads, (runs / "hybrid" / "results.jsonl").read_text()
                                                                  .splitlines())}
    bm25 = {r["id"]: verdict(r)[0] for r in map(json.loads, (runs / "bm25" / "results.jsonl").read_text()
                                                                .splitlines())}
    expected = [qid for qid in bm25 if bm25[qid] != hybrid[qid]]
    changed = changed_verdicts(runs / "bm25", runs / "hybrid")
    assert [c["id"] for c in changed] == expected
    assert all((c["a"], c["b"]) == (bm25[c["id"]], hybrid[c["id"]]) and c["question"] for c in changed)
    assert changed_verdicts(runs / "hybrid", runs / "hybrid") == []

    # an answered run against the retrieval run: the answered questions changed from "gold found"
    answered = tmp_path / "answered"
    answered.mkdir()
    (answered / "metrics.json").write_text((runs / "hybrid" / "metrics.json").read_text())
    first = json.loads((runs / "hybrid" / "results.jsonl").read_text().splitlines()[0])
    withheld = first | {"abstained": True, "abstain_reason": "unsupported", "citations": [], "sentences": []}
    (answered / "results.jsonl").write_text(json.dumps(withheld) + "\n")
    result = compare_runs(runs / "hybrid", answered, tmp_path / "cmp")
    assert result["changed"] == [{"id": "aml-cash-threshold", "question": first["question"], "a": GOLD_FOUND,
                                  "b": WITHHELD, "reason_a": "gold passage at rank 1",
                                  "reason_b": "an answer was written, but no sentence of it is stated in the "
                                              "passage it cites"}]
    assert "Questions whose verdict changed: 1" in result["markdown"]
    assert f"| aml-cash-threshold | {first['question']} | gold found | withheld |" in result["markdown"]
