"""Hand-computed cases for eval.metrics."""

from __future__ import annotations

import math

import pytest

from eval.datasets import Evidence, GoldQuestion
from eval.metrics import (
    QuestionResult,
    RankedItem,
    average_precision_at_k,
    evaluate_answers,
    evaluate_retrieval,
    hit_at_k,
    matches,
    ndcg_at_k,
    ranked_item_from_chunk,
    recall_at_k,
    reciprocal_rank,
)
from ingest.types import Chunk


def item(doc="d", pid=None, text="", page=None, file=None, aliases=()):
    return RankedItem(document_id=doc, file=file or f"{doc}.pdf", page=page, passage_id=pid, text=text,
                      aliases=tuple(aliases))


def gq(evidence=(), also=(), answerable=None, qid="q"):
    evidence = list(evidence)
    return GoldQuestion(qid, "?", bool(evidence) if answerable is None else answerable, None, evidence, list(also))


A = Evidence("d", passage_id="1")
B = Evidence("d", passage_id="2")
C = Evidence("d", passage_id="3")
iA, iB, iC = item(pid="1"), item(pid="2"), item(pid="3")
X, Y, Z = item(pid="x"), item(pid="y"), item(pid="z")


# ---------- matching ----------

def test_document_matches_id_alias_or_file_name():
    it = item(doc="fund-rules", file="/lib/docs/9.json", aliases=("9",))
    assert matches(it, Evidence("fund-rules"))
    assert matches(it, Evidence("9"))
    assert matches(it, Evidence("9.json"))
    assert matches(it, Evidence("/lib/docs/9.json"))
    assert not matches(it, Evidence("10"))


def test_page_and_passage_rules():
    it = item(doc="p", pid="3.1.(c)", page=4, text="Any cash transaction above EUR 10,000")
    assert matches(it, Evidence("p", page=4))
    assert not matches(it, Evidence("p", page=5))
    # passage id decides, page is then ignored
    assert matches(it, Evidence("p", page=9, passage_id="3.1.(c)"))
    assert not matches(it, Evidence("p", page=4, passage_id="3.1"))
    # quote: normalised containment either way
    assert matches(it, Evidence("p", passage_id="3.1.(c)", quote="any  CASH\ntransaction"))
    assert not matches(it, Evidence("p", passage_id="3.1.(c)", quote="something else"))
    # a document-only place matches every item of the document
    assert matches(it, Evidence("p"))


def test_duplicate_passage_keys_only_the_right_text_counts():
    # ObliQA: two records share (DocumentID 7, PassageID "2.1") with different text
    gold = gq([Evidence("7", passage_id="2.1", quote="Second paragraph of the section.")])
    first = item(doc="gen", pid="2.1", text="First paragraph of the section.", aliases=("7",))
    second = item(doc="gen", pid="2.1", text="Second   paragraph of the SECTION.", aliases=("7",))
    assert not matches(first, gold.evidence[0])
    assert matches(second, gold.evidence[0])
    assert recall_at_k([first], gold, 10) == 0.0
    assert recall_at_k([first, second], gold, 10) == 1.0
    assert reciprocal_rank([first, second], gold) == 0.5


def test_ranked_item_from_chunk_aliases_document_id():
    chunk = Chunk(chunk_id="c1", document_id="ifr-rules", version=1, title="IFR", source_file="9.json",
                  text="The Fund Manager ...", seq=0, passage_id="6.1.3.(a)", extra={"DocumentID": 9})
    it = ranked_item_from_chunk(chunk)
    assert it.aliases == ("9",)
    assert (it.document_id, it.file, it.passage_id, it.page) == ("ifr-rules", "9.json", "6.1.3.(a)", None)
    assert matches(it, Evidence("9", passage_id="6.1.3.(a)", quote="the fund manager"))
    plain = Chunk(chunk_id="c2", document_id="x", version=1, title="X", source_file="x.pdf", text="t", seq=0,
                  page=2)
    assert ranked_item_from_chunk(plain).aliases == ()


# ---------- retrieval metrics ----------

def test_map_at_10_by_hand():
    # Gold R = {A, B, C}. Ranking: X, A, Y, B, A (again), C.
    # New-gold hits at ranks 2, 4, 6 (rank 5 re-finds A: not a hit, counts as non-relevant).
    # P@2 = 1/2, P@4 = 2/4, P@6 = 3/6  ->  AP@10 = (0.5 + 0.5 + 0.5) / 3 = 0.5
    # (if the duplicate counted, hits at 2,4,5,6 would give a different, wrong value)
    q = gq([A, B, C])
    ranking = [X, iA, Y, iB, iA, iC]
    assert average_precision_at_k(ranking, q, 10) == pytest.approx(0.5)
    assert recall_at_k(ranking, q, 1) == 0.0
    assert recall_at_k(ranking, q, 5) == pytest.approx(2 / 3)
    assert recall_at_k(ranking, q, 10) == 1.0
    assert reciprocal_rank(ranking, q) == 0.5
    assert hit_at_k(ranking, q, 1) == 0.0 and hit_at_k(ranking, q, 2) == 1.0
    dcg = 1 / math.log2(3) + 1 / math.log2(5) + 1 / math.log2(7)
    idcg = 1 + 1 / math.log2(3) + 1 / math.log2(4)
    assert ndcg_at_k(ranking, q, 10) == pytest.approx(dcg / idcg)
    # cut-off: AP@4 = (1/2 + 2/4) / 3
    assert average_precision_at_k(ranking, q, 4) == pytest.approx(1 / 3)


def test_same_gold_item_twice_counted_once():
    q = gq([A, B])
    assert recall_at_k([iA, iA, iA], q, 10) == 0.5
    # hits at rank 1 only: AP = (1/1) / 2
    assert average_precision_at_k([iA, iA], q, 10) == 0.5
    # two chunks of the same passage (both contain/are contained in the quote) also count once
    gold = gq([Evidence("d", passage_id="1", quote="alpha beta gamma delta")])
    parts = [item(pid="1", text="alpha beta"), item(pid="1", text="gamma delta")]
    assert recall_at_k(parts, gold, 10) == 1.0
    assert average_precision_at_k(parts, gold, 10) == 1.0
    assert ndcg_at_k(parts, gold, 10) == 1.0


def test_ndcg_ideal_uses_min_of_gold_and_k():
    q = gq([A, B, C])
    # k = 2: ideal DCG has 2 hits, so retrieving A and B at 1 and 2 is perfect
    assert ndcg_at_k([iA, iB], q, 2) == pytest.approx(1.0)
    assert ndcg_at_k([X, iA], q, 2) == pytest.approx((1 / math.log2(3)) / (1 + 1 / math.log2(3)))


def test_empty_retrieval_is_zero():
    q = gq([A])
    for fn in (recall_at_k, average_precision_at_k, ndcg_at_k, hit_at_k):
        assert fn([], q, 10) == 0.0
    assert reciprocal_rank([], q) == 0.0


def test_also_places_credit_the_first_unfound_gold_item():
    # also = page 2 of the document: an overview that lists every rule
    overview = Evidence("d", page=2)
    q = gq([A, B], also=[overview])
    p2 = item(pid="intro", page=2)
    # rank 1: overview -> credited to A (first unfound); rank 2: B -> hit
    assert recall_at_k([p2, iB], q, 10) == 1.0
    assert average_precision_at_k([p2, iB], q, 10) == 1.0
    # rank 1: A found; rank 2: overview credited to B
    assert recall_at_k([iA, p2], q, 10) == 1.0
    # each also place credits at most one gold item
    assert recall_at_k([p2, p2], q, 10) == 0.5
    # once all gold items are found, an also match is not a hit: AP = (1/1) / 1
    q1 = gq([A], also=[overview])
    assert average_precision_at_k([iA, p2], q1, 10) == 1.0
    assert recall_at_k([p2], q1, 1) == 1.0


def test_evaluate_retrieval_skips_unanswerable_and_averages():
    q1 = gq([A, B, C], qid="1")
    q2 = gq([A], qid="2")
    q_none = gq([], qid="3", answerable=False)
    runs = [(q1, [X, iA, Y, iB, iA, iC]), (q2, []), (q_none, [iA])]
    m = evaluate_retrieval(runs, k=10)
    assert m["n_questions"] == 2
    assert m["map@10"] == pytest.approx((0.5 + 0.0) / 2)
    assert m["recall@10"] == pytest.approx(0.5)
    assert m["recall@5"] == pytest.approx((2 / 3) / 2)
    assert m["recall@1"] == 0.0
    assert m["mrr"] == pytest.approx(0.25)
    assert m["hit@10"] == pytest.approx(0.5)
    assert set(m) == {"recall@1", "recall@5", "recall@10", "map@10", "ndcg@10", "mrr", "hit@10", "n_questions"}
    m20 = evaluate_retrieval(runs, k=20)
    assert m20["recall@20"] == pytest.approx(0.5) and m20["map@10"] == m["map@10"]
    empty = evaluate_retrieval([(q_none, [])])
    assert empty["n_questions"] == 0 and empty["map@10"] is None


# ---------- answer metrics ----------

def test_evaluate_answers_by_hand():
    qa = gq([A], qid="a")
    qb = gq([B], also=[Evidence("d", page=7)], qid="b")
    qc = gq([C], qid="c")
    qn1 = gq([], qid="n1", answerable=False)
    qn2 = gq([], qid="n2", answerable=False)
    results = [
        # correct citation + a wrong one; 2 of 3 sentences supported
        QuestionResult(qa, [iA], [iA, X], [True, True, False], False,
                       {"retrieval_ms": 10, "first_token_ms": 100, "total_ms": 1000}),
        # cites an `also` place: correct
        QuestionResult(qb, [iB], [item(pid="zz", page=7)], [True], False, {"total_ms": 2000}),
        # answered without citations
        QuestionResult(qc, [], [], [False], False, {"total_ms": 3000}),
        # unanswerable, correctly refused
        QuestionResult(qn1, [], [], [], True, {"total_ms": 4000}),
        # unanswerable, answered with a (necessarily wrong) citation
        QuestionResult(qn2, [X], [X], [True], False, {}),
    ]
    m = evaluate_answers(results)
    assert m["n_citations"] == 4
    assert m["citation_precision"] == pytest.approx(2 / 4)
    assert m["citation_recall"] == pytest.approx(2 / 3)
    assert m["support_rate"] == pytest.approx(4 / 6)
    assert m["cited_answer_rate"] == pytest.approx(2 / 3)
    assert m["refusal_rate"] == 0.5
    assert m["false_answer_rate"] == 0.5
    assert m["false_refusal_rate"] == 0.0
    assert m["latency.total_ms.p50"] == pytest.approx(2500.0)
    assert m["latency.total_ms.p95"] == pytest.approx(3850.0)  # 1000 + 0.95*3*1000
    assert m["latency.retrieval_ms.p50"] == 10.0
    assert m["latency.first_token_ms.p95"] == 100.0
    # merged retrieval metrics (over the 3 answerable questions)
    assert m["n_questions"] == 3
    assert m["recall@10"] == pytest.approx(2 / 3)


def test_evaluate_answers_no_citations_and_abstentions():
    qa = gq([A], qid="a")
    results = [
        QuestionResult(qa, [], [], [], True, {}),  # false refusal
        QuestionResult(gq([B], qid="b"), [iB], [], [], False, {}),
    ]
    m = evaluate_answers(results)
    assert m["citation_precision"] is None
    assert m["n_citations"] == 0
    assert m["citation_recall"] == 0.0
    assert m["support_rate"] is None
    assert m["cited_answer_rate"] == 0.0
    assert m["refusal_rate"] is None and m["false_answer_rate"] is None
    assert m["false_refusal_rate"] == 0.5
    assert m["latency.total_ms.p50"] is None and m["latency.retrieval_ms.p95"] is None


def test_citations_of_abstained_answers_are_ignored():
    qa = gq([A], qid="a")
    m = evaluate_answers([QuestionResult(qa, [], [X], [], True, {})])
    assert m["n_citations"] == 0 and m["citation_precision"] is None
    assert m["cited_answer_rate"] is None
