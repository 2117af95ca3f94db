"""Hand-computed cases for eval.metrics, and the sample gold matched against the real ingested sample corpus."""

from __future__ import annotations

import math

import numpy as np
import pytest

from eval.datasets import Evidence, GoldQuestion, load_jsonl
from eval.metrics import (
    ANSWER_KEYS,
    LATENCY_KEYS,
    RETRIEVAL_KEYS,
    QuestionResult,
    RankedItem,
    aggregate,
    evaluate_retrieval,
    gold_hits,
    hit_at_k,
    map_at_k,
    matches,
    mrr,
    ndcg_at_k,
    percentiles,
    ranked_item_from_chunk,
    recall_at_k,
    relevant,
)
from ingest.types import Chunk
from tests.library import GOLD, sample_library


def item(pid=None, text="", page=None, doc="d", file=None, aliases=(), clause=None):
    return RankedItem(document=doc, page=page, passage_id=pid, text=text, file=file or f"{doc}.pdf",
                      aliases=tuple(aliases), clause=clause)


def gold(evidence=(), also=(), qid="q"):
    evidence = list(evidence)
    return GoldQuestion(qid, "?", bool(evidence), None, evidence, list(also))


A, B, C = (Evidence("d", passage_id=p) for p in ("a", "b", "c"))
iA, iB, iC = item("a"), item("b"), item("c")
X, Y = item("x"), item("y")


# ---------- matching ----------

def test_document_is_named_by_id_alias_file_name_or_path():
    it = item(doc="ifr-rules", file="/library/9.json", aliases=("9",))
    for name in ("ifr-rules", "9", "9.json", "/library/9.json"):
        assert matches(it, Evidence(name))
    assert not matches(it, Evidence("10"))
    assert not matches(it, Evidence("9.js"))


def test_every_locator_both_sides_carry_must_agree():
    it = item(pid="3.1.(c)", page=4, text="Any cash transaction above EUR 10,000 requires due diligence.")
    assert matches(it, Evidence("d", page=4))
    assert not matches(it, Evidence("d", page=5))
    assert matches(it, Evidence("d", page=4, passage_id="3.1.(c)"))
    assert not matches(it, Evidence("d", page=4, passage_id="3.1"))
    # quotes compare NFKC-normalised, case-folded, whitespace-collapsed, by containment either way
    assert matches(it, Evidence("d", page=4, quote="any  CASH\ntransaction"))
    assert matches(it, Evidence("d", quote="Note: any cash transaction above EUR 10,000 requires due diligence. End"))
    assert not matches(it, Evidence("d", page=4, quote="cash withdrawals"))
    # a document-only place matches every item of the document
    assert matches(it, Evidence("d"))


def test_pdf_chunks_are_matched_by_page_and_quote_not_by_detected_clause():
    # The chunker's clause label can be off (merged blocks take the later clause), so it is not compared
    # when a page or quote decides.
    chunk = item(page=2, clause="4.3", text="4.2 Customer records are retained for 7 years after the end.")
    assert matches(chunk, Evidence("d", page=2, passage_id="4.2", quote="retained for 7 years"))
    assert not matches(chunk, Evidence("d", page=2, passage_id="4.2", quote="retained for 5 years"))


def test_clause_is_the_last_resort_when_nothing_else_compares():
    markdown = item(clause="3.2", text="Concerns may be raised anonymously.")  # no page, no passage id
    assert matches(markdown, Evidence("d", passage_id="3.2"))
    assert not matches(markdown, Evidence("d", passage_id="3.3"))
    assert not matches(markdown, Evidence("d", page=1))  # a page the item cannot confirm


def test_a_quote_needs_item_text():
    assert not matches(item("a", text=""), Evidence("d", passage_id="a", quote="some text"))
    assert matches(item("a", text=""), Evidence("d", passage_id="a"))


def test_duplicate_obliqa_keys_only_the_gold_text_counts():
    # Two ObliQA records share (DocumentID 7, PassageID "2.1") with different text; the gold is the second.
    q = gold([Evidence("7", passage_id="2.1", quote="Second paragraph of the section.")])
    first = item("2.1", text="First paragraph of the section.", doc="gen", aliases=("7",))
    second = item("2.1", text="Second   paragraph of the SECTION.", doc="gen", aliases=("7",))
    part = item("2.1", text="second paragraph", doc="gen", aliases=("7",))  # a chunk of the gold record
    assert not matches(first, q.evidence[0]) and not relevant(first, q)
    assert matches(second, q.evidence[0]) and matches(part, q.evidence[0])
    assert recall_at_k([first], q, 10) == 0.0
    assert recall_at_k([first, second], q, 10) == 1.0
    assert mrr([first, second], q) == 0.5


def test_ranked_item_from_chunk_keeps_the_obliqa_document_id_as_alias():
    chunk = Chunk(chunk_id="ifr@v1#00003", document_id="ifr-rules", version=1, title="IFR", source_file="9.json",
                  text="The Fund Manager of a Domestic Fund ...", seq=3, passage_id="6.1.3.(a)",
                  extra={"DocumentID": 9, "ID": "e35"})
    it = ranked_item_from_chunk(chunk)
    assert it == RankedItem(document="ifr-rules", page=None, passage_id="6.1.3.(a)",
                            text="The Fund Manager of a Domestic Fund ...", file="9.json", aliases=("9",),
                            clause=None, chunk_id="ifr@v1#00003")
    assert matches(it, Evidence("9", passage_id="6.1.3.(a)", quote="The Fund Manager of a Domestic Fund ... must"))
    pdf = Chunk(chunk_id="c2", document_id="aml", version=1, title="AML", source_file="aml.pdf", text="t", seq=0,
                page=2, clause="2.1")
    assert ranked_item_from_chunk(pdf).aliases == ()
    assert (ranked_item_from_chunk(pdf).page, ranked_item_from_chunk(pdf).clause) == (2, "2.1")


# ---------- retrieval metrics ----------

def test_map_ndcg_recall_mrr_by_hand():
    # R = {A, B, C}; ranking X, A, Y, B, A, C. Relevant ranks: 2, 4, 6 (rank 5 finds A again: not relevant).
    #   AP@10  = (P@2 + P@4 + P@6) / |R| = (1/2 + 2/4 + 3/6) / 3 = 0.5
    #   nDCG@10 = (1/log2 3 + 1/log2 5 + 1/log2 7) / (1/log2 2 + 1/log2 3 + 1/log2 4)
    #           = (0.63093 + 0.43068 + 0.35621) / (1 + 0.63093 + 0.5) = 1.41782 / 2.13093 = 0.66535
    # pytrec_eval on docids [x, a, y, b, a2, c] with qrels {a, b, c} gives the same map_cut_10, ndcg_cut_10,
    # recall_5 and recip_rank (checked once; 39,000 random values agreed).
    q = gold([A, B, C])
    ranking = [X, iA, Y, iB, iA, iC]
    assert gold_hits(ranking, q) == [False, True, False, True, False, True]
    assert map_at_k(ranking, q, 10) == pytest.approx(0.5)
    assert map_at_k(ranking, q, 4) == pytest.approx((1 / 2 + 2 / 4) / 3)
    assert ndcg_at_k(ranking, q, 10) == pytest.approx(0.66535, abs=1e-5)
    assert recall_at_k(ranking, q, 1) == 0.0
    assert recall_at_k(ranking, q, 5) == pytest.approx(2 / 3)
    assert recall_at_k(ranking, q, 10) == 1.0
    assert mrr(ranking, q) == 0.5 and mrr(ranking, q, k=1) == 0.0
    assert hit_at_k(ranking, q, 1) == 0.0 and hit_at_k(ranking, q, 2) == 1.0


def test_k_larger_than_the_list():
    # R = {A, B}, ranking [A], k = 10: AP = (1/1) / 2; nDCG ideal has min(|R|, k) = 2 relevant ranks
    q = gold([A, B])
    assert recall_at_k([iA], q, 10) == 0.5
    assert map_at_k([iA], q, 10) == 0.5
    assert ndcg_at_k([iA], q, 10) == pytest.approx(1 / (1 + 1 / math.log2(3)))
    # ... while k = 1 caps the ideal at one relevant rank
    assert ndcg_at_k([iA], q, 1) == 1.0


def test_a_gold_item_retrieved_twice_counts_once():
    q = gold([A, B])
    assert recall_at_k([iA, iA, iA], q, 10) == 0.5
    assert map_at_k([iA, iA, iB], q, 10) == pytest.approx((1 / 1 + 2 / 3) / 2)
    # two chunks of one long passage are one gold item too
    long = gold([Evidence("d", passage_id="1", quote="alpha beta. gamma delta.")])
    halves = [item("1", text="alpha beta."), item("1", text="gamma delta.")]
    assert gold_hits(halves, long) == [True, False]
    assert map_at_k(halves, long, 10) == 1.0 and ndcg_at_k(halves, long, 10) == 1.0


def test_a_chunk_holding_two_gold_places_finds_one_and_the_best_assignment_wins():
    # x holds both quotes, y only the first. Whatever the order, x and y together find both gold items.
    q = gold([Evidence("d", page=4, quote="alpha"), Evidence("d", page=4, quote="beta")])
    x, y = item(page=4, text="alpha and beta"), item(page=4, text="alpha only")
    assert gold_hits([x], q) == [True]
    assert gold_hits([x, y], q) == [True, True]
    assert gold_hits([x, x], q) == [True, False]


def test_also_places_stand_for_one_unfound_gold_item():
    overview = Evidence("d", page=2)  # e.g. an "at a glance" page restating the rules
    p2, p2b = item("intro", page=2), item("summary", page=2)
    one = gold([A], also=[overview])
    assert recall_at_k([p2], one, 1) == 1.0
    assert gold_hits([iA, p2], one) == [True, False]  # already found: the overview adds nothing
    assert gold_hits([p2, iA], one) == [True, False]
    two = gold([A, B], also=[overview])
    # order inside the top k does not matter: [overview, A] and [A, overview] both find 2 of 2
    assert recall_at_k([p2, iA], two, 10) == recall_at_k([iA, p2], two, 10) == 1.0
    # one also place stands for one gold item, however many of its chunks come back
    assert recall_at_k([p2, p2b], two, 10) == 0.5
    # ranks 1 and 3 relevant: AP = (1/1 + 2/3) / 2
    assert map_at_k([iA, iA, p2], two, 10) == pytest.approx((1 + 2 / 3) / 2)


def test_empty_retrieval_and_empty_gold_score_zero():
    q = gold([A])
    for fn in (recall_at_k, map_at_k, ndcg_at_k, hit_at_k):
        assert fn([], q, 10) == 0.0
        assert fn([iA], gold([]), 10) == 0.0
    assert mrr([], q) == 0.0
    with pytest.raises(ValueError):
        recall_at_k([iA], q, 0)


def test_evaluate_retrieval_means_over_answerable_questions():
    q1, q2, none = gold([A, B, C], qid="1"), gold([A], qid="2"), gold([], qid="3")
    m = evaluate_retrieval([(q1, [X, iA, Y, iB, iA, iC]), (q2, []), (none, [iA])])
    assert (m["n_questions"], m["n_answerable"], m["n_unanswerable"]) == (3, 2, 1)
    assert m["map@10"] == pytest.approx((0.5 + 0.0) / 2)
    assert m["recall@5"] == pytest.approx((2 / 3 + 0) / 2)
    assert m["mrr"] == pytest.approx((0.5 + 0) / 2)
    assert m["hit@10"] == 0.5 and m["recall@1"] == 0.0
    assert set(m) == {"n_questions", "n_answerable", "n_unanswerable", *RETRIEVAL_KEYS}
    m20 = evaluate_retrieval([(q1, [X, iA, Y, iB, iA, iC])], k=20)
    assert m20["recall@20"] == 1.0 and m20["map@20"] == pytest.approx(0.5)
    assert evaluate_retrieval([(none, [])])["map@10"] is None


# ---------- answers: citations, support, abstention, latency ----------

def test_aggregate_by_hand():
    qa, qb, qc, qd = gold([A], qid="a"), gold([B], also=[Evidence("d", page=7)], qid="b"), gold([C], qid="c"), \
        gold([A], qid="d")
    n1, n2 = gold([], qid="n1"), gold([], qid="n2")
    r = QuestionResult.for_question
    results = [
        # one correct and one wrong citation; 2 of 3 sentences supported
        r(qa, retrieved=[iA], cited=[iA, X], sentence_supported=[True, True, False], abstained=False, model_cited=True,
          timings={"retrieval_ms": 10, "first_token_ms": 100, "total_ms": 1000}),
        # cites the `also` place: correct (a citation the verifier attached, the model wrote none)
        r(qb, retrieved=[iB], cited=[item("zz", page=7)], sentence_supported=[True], abstained=False, model_cited=False,
          timings={"total_ms": 2000}),
        # answered without any citation
        r(qc, retrieved=[], cited=[], sentence_supported=[False], abstained=False, timings={"total_ms": 3000}),
        # answerable but refused (false refusal)
        r(qd, retrieved=[X], cited=[], sentence_supported=[], abstained=True, timings={"total_ms": 500}),
        # unanswerable, rightly refused
        r(n1, retrieved=[], cited=[], sentence_supported=[], abstained=True, timings={"total_ms": 4000}),
        # unanswerable, answered with a citation, necessarily wrong
        r(n2, retrieved=[X], cited=[X], sentence_supported=[True], abstained=False),
    ]
    m = aggregate(results)
    assert (m["n_questions"], m["n_answerable"], m["n_unanswerable"]) == (6, 4, 2)
    assert m["n_citations"] == 4                                # qa 2 + qb 1 + n2 1
    assert m["citation_precision"] == pytest.approx(2 / 4)      # iA and the also place
    assert m["citation_recall"] == pytest.approx(2 / 4)         # qa, qb of qa, qb, qc, qd
    assert m["support_rate"] == pytest.approx(4 / 6)            # sentences of non-abstained answers
    assert m["cited_answer_rate"] == pytest.approx(3 / 4)       # qa, qb, n2 of qa, qb, qc, n2
    assert m["cited_answer_rate_answerable"] == pytest.approx(2 / 3)
    assert m["model_cited_rate_answerable"] == pytest.approx(1 / 2)  # qa of qa, qb (qc's raw text not recorded)
    assert m["refusal_rate"] == 0.5 and m["false_answer_rate"] == 0.5
    assert m["false_refusal_rate"] == pytest.approx(1 / 4)
    assert m["recall@10"] == pytest.approx(2 / 4) and m["mrr"] == pytest.approx(2 / 4)
    # total_ms sorted 500, 1000, 2000, 3000, 4000: p50 = 2000; p95 at rank 0.95 * 4 = 3.8 -> 3000 + 0.8 * 1000
    assert m["latency.total_ms.p50"] == 2000.0
    assert m["latency.total_ms.p95"] == pytest.approx(3800.0)
    assert m["latency.retrieval_ms.p50"] == m["latency.retrieval_ms.p95"] == 10.0
    assert m["latency.first_token_ms.p95"] == 100.0


def test_answer_correctness_rates():
    r = QuestionResult.for_question
    results = [
        r(gold([A], qid="right"), cited=[iA], sentence_supported=[True], abstained=False, answer_correct=True),
        r(gold([A], qid="wrong"), cited=[iA], sentence_supported=[True], abstained=False, answer_correct=False),
        r(gold([A], qid="refused"), cited=[], sentence_supported=[], abstained=True, answer_correct=False),
        # no gold answer (ObliQA): not scored, in neither denominator
        r(gold([A], qid="obliqa"), cited=[iA], sentence_supported=[True], abstained=False, answer_correct=None),
        # unanswerable questions are counted by refusal_rate, not here
        r(gold([], qid="n"), cited=[X], sentence_supported=[True], abstained=False, answer_correct=False),
    ]
    m = aggregate(results)
    assert m["answer_correct_rate"] == pytest.approx(1 / 2)             # right of right, wrong
    assert m["answer_correct_rate_answerable"] == pytest.approx(1 / 3)  # the refusal counts as not correct
    unscored = aggregate([results[3]])
    assert unscored["answer_correct_rate"] is None and unscored["answer_correct_rate_answerable"] is None


def test_no_citations_at_all():
    results = [QuestionResult.for_question(gold([A], qid="a"), cited=[], sentence_supported=[False], abstained=False),
               QuestionResult.for_question(gold([], qid="n"), cited=[], sentence_supported=[], abstained=True)]
    m = aggregate(results)
    assert m["citation_precision"] is None and m["n_citations"] == 0
    assert m["citation_recall"] == 0.0 and m["cited_answer_rate"] == 0.0
    assert m["support_rate"] == 0.0 and m["refusal_rate"] == 1.0


def test_citations_of_an_abstention_are_not_counted():
    m = aggregate([QuestionResult.for_question(gold([A]), cited=[iA], sentence_supported=[], abstained=True)])
    assert m["n_citations"] == 0 and m["citation_precision"] is None
    assert m["citation_recall"] == 0.0 and m["false_refusal_rate"] == 1.0
    assert m["cited_answer_rate"] is None and m["support_rate"] is None


def test_retrieval_only_run_leaves_answer_metrics_none():
    m = aggregate([QuestionResult.for_question(gold([A]), retrieved=[iA], timings={"retrieval_ms": 5.0})])
    assert m["recall@1"] == 1.0 and m["latency.retrieval_ms.p50"] == 5.0
    assert all(m[key] is None for key in ANSWER_KEYS) and m["n_citations"] is None
    assert m["latency.total_ms.p50"] is None


def test_keys_are_stable():
    latency = {f"latency.{t}.p{p}" for t in LATENCY_KEYS for p in (50, 95)}
    expected = {"n_questions", "n_answerable", "n_unanswerable", "n_citations", *RETRIEVAL_KEYS, *ANSWER_KEYS,
                *latency}
    empty = aggregate([])
    assert set(empty) == expected
    assert all(v is None for key, v in empty.items() if not key.startswith("n_") or key == "n_citations")
    assert set(aggregate([QuestionResult.for_question(gold([A]), retrieved=[])], k=20)) == expected | {
        "recall@20", "map@20", "ndcg@20", "hit@20"}


def test_percentiles_follow_numpy_linear():
    for values in ([3.0], [1, 2], [5, 1, 4, 2, 3], [0.1, 10, 7.5, 7.5, 300, 2]):
        ours = percentiles(values, [0, 50, 90, 95, 100])
        assert ours == pytest.approx(list(np.percentile(values, [0, 50, 90, 95, 100])))
    assert percentiles([]) is None
    assert percentiles([1, 2, 3]) == [2.0, pytest.approx(2.9)]
    with pytest.raises(ValueError):
        percentiles([1], [101])


# ---------- the sample gold against the real ingested sample corpus ----------

def test_every_sample_gold_place_matches_real_chunks():
    """Each evidence item lies in exactly one chunk of the ingested sample corpus; each also place in some."""
    lib = sample_library()
    items = [ranked_item_from_chunk(c) for d in lib.catalog.documents() for c in lib.catalog.chunks_of(d.doc_key)]
    for q in load_jsonl(GOLD):
        for ev in q.evidence:
            assert sum(matches(it, ev) for it in items) == 1, (q.id, ev)
        for place in q.also:
            assert any(matches(it, place) for it in items), (q.id, place)
