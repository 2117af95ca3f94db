"""Retrieval and answer metrics against gold evidence. Precise definitions: docs/evaluation.md.

Retrieval metrics follow trec_eval semantics over the gold items R = a question's `evidence` list:
an item at rank r is a *hit* when it finds a gold item not found at an earlier rank. A second item
matching an already-found gold item (the same passage retrieved twice, or two chunks of one passage)
is not a hit, so nothing can exceed 1.

`also` places are alternative locations of *any* gold item: a retrieved item that matches no still-unfound
gold item but matches an unused `also` place is a hit, credited to the first still-unfound gold item (in
evidence order). Each `also` place credits at most one gold item.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import PurePath

import numpy as np

from eval.datasets import Evidence, GoldQuestion

RETRIEVAL_KEYS = ("recall@1", "recall@5", "recall@10", "map@10", "ndcg@10", "mrr", "hit@10")
LATENCY_KEYS = ("retrieval_ms", "first_token_ms", "total_ms")


@dataclass(frozen=True)
class RankedItem:
    """One retrieved or cited chunk, reduced to what gold matching needs."""

    document_id: str
    file: str
    page: int | None
    passage_id: str | None
    text: str
    aliases: tuple[str, ...] = ()


def ranked_item_from_chunk(chunk) -> RankedItem:
    """RankedItem for an ingest.types.Chunk. An ObliQA `DocumentID` in chunk.extra becomes an alias id."""
    extra = getattr(chunk, "extra", None) or {}
    aliases: tuple[str, ...] = ()
    ext = extra.get("DocumentID")
    if ext is not None and str(ext) != "" and str(ext) != chunk.document_id:
        aliases = (str(ext),)
    return RankedItem(
        document_id=chunk.document_id,
        file=chunk.source_file,
        page=chunk.page,
        passage_id=chunk.passage_id,
        text=chunk.text or "",
        aliases=aliases,
    )


_WS = re.compile(r"\s+")


def _norm(text: str) -> str:
    return _WS.sub(" ", text).strip().lower()


def _document_matches(item: RankedItem, document: str) -> bool:
    if document == item.document_id or document in item.aliases:
        return True
    if not item.file:
        return False
    return document == item.file or document == PurePath(item.file.replace("\\", "/")).name


def matches(item: RankedItem, ev: Evidence) -> bool:
    """Whether a retrieved/cited item lies at the gold place `ev`.

    1. Document: `ev.document` equals the item's document_id, one of its aliases (e.g. the ObliQA DocumentID
       "9"), its source file path or that path's file name. Otherwise no match.
    2. If `ev.passage_id` is set: the item's passage_id must be equal, and when `ev.quote` is set and the item
       has text, the normalised texts (lower-case, whitespace collapsed) must be equal or one must contain the
       other. This tells apart ObliQA records sharing one (DocumentID, PassageID) with different text, while
       a chunk that is part of a long passage still counts. The page is then ignored.
    3. Elif `ev.page` is set: the item must be on that page.
    4. Else the document match suffices (the quote is not checked: without a passage id it only documents).
    """
    if not _document_matches(item, ev.document):
        return False
    if ev.passage_id is not None:
        if item.passage_id is None or str(item.passage_id) != str(ev.passage_id):
            return False
        if ev.quote and item.text:
            a, b = _norm(ev.quote), _norm(item.text)
            return a == b or a in b or b in a
        return True
    if ev.page is not None:
        return item.page == ev.page
    return True


def relevant(item: RankedItem, q: GoldQuestion) -> bool:
    """The item matches any evidence or `also` place of the question."""
    return any(matches(item, ev) for ev in q.evidence) or any(matches(item, a) for a in q.also)


def new_gold_hits(items: Sequence[RankedItem], q: GoldQuestion, k: int | None = None) -> list[bool]:
    """Per rank (up to k), whether that item finds a not-yet-found gold item (see the module docstring)."""
    found = [False] * len(q.evidence)
    used_also = [False] * len(q.also)
    flags: list[bool] = []
    for item in items[:k] if k is not None else items:
        hit = False
        for i, ev in enumerate(q.evidence):
            if not found[i] and matches(item, ev):
                found[i] = hit = True
                break
        if not hit and not all(found):
            for j, place in enumerate(q.also):
                if not used_also[j] and matches(item, place):
                    found[found.index(False)] = hit = used_also[j] = True
                    break
        flags.append(hit)
    return flags


def recall_at_k(items: Sequence[RankedItem], q: GoldQuestion, k: int) -> float:
    """Found gold items in the top k / |R|. 0 for an empty list or no evidence."""
    if not q.evidence:
        return 0.0
    return sum(new_gold_hits(items, q, k)) / len(q.evidence)


def average_precision_at_k(items: Sequence[RankedItem], q: GoldQuestion, k: int) -> float:
    """(1/|R|) * sum of P@r over ranks r <= k holding a new-gold hit; P@r = new-gold hits in the top r / r."""
    if not q.evidence:
        return 0.0
    total, hits = 0.0, 0
    for r, hit in enumerate(new_gold_hits(items, q, k), start=1):
        if hit:
            hits += 1
            total += hits / r
    return total / len(q.evidence)


def ndcg_at_k(items: Sequence[RankedItem], q: GoldQuestion, k: int) -> float:
    """Binary gains (new-gold hits), discount 1/log2(r+1); ideal DCG puts min(|R|, k) hits on top."""
    if not q.evidence or k <= 0:
        return 0.0
    dcg = sum(1.0 / math.log2(r + 1) for r, hit in enumerate(new_gold_hits(items, q, k), start=1) if hit)
    ideal = sum(1.0 / math.log2(r + 1) for r in range(1, min(len(q.evidence), k) + 1))
    return dcg / ideal


def reciprocal_rank(items: Sequence[RankedItem], q: GoldQuestion, k: int | None = None) -> float:
    """1 / rank of the first hit (within k when given, else the whole list); 0 when there is none."""
    for r, hit in enumerate(new_gold_hits(items, q, k), start=1):
        if hit:
            return 1.0 / r
    return 0.0


def hit_at_k(items: Sequence[RankedItem], q: GoldQuestion, k: int) -> float:
    """1.0 when at least one gold item is found in the top k, else 0.0."""
    return 1.0 if any(new_gold_hits(items, q, k)) else 0.0


def _mean(values: list[float]) -> float | None:
    return float(sum(values) / len(values)) if values else None


def evaluate_retrieval(runs: Iterable[tuple[GoldQuestion, Sequence[RankedItem]]], k: int = 10) -> dict:
    """Means over answerable questions (those with evidence); unanswerable ones are skipped.

    Keys are always recall@1, recall@5, recall@10, map@10, ndcg@10, mrr (over the whole ranked list),
    hit@10 and n_questions. When k is not 1, 5 or 10, recall@k, map@k, ndcg@k and hit@k are added too.
    Every mean is None when there is no answerable question.
    """
    cutoffs = {
        "recall@1": lambda it, q: recall_at_k(it, q, 1),
        "recall@5": lambda it, q: recall_at_k(it, q, 5),
        "recall@10": lambda it, q: recall_at_k(it, q, 10),
        "map@10": lambda it, q: average_precision_at_k(it, q, 10),
        "ndcg@10": lambda it, q: ndcg_at_k(it, q, 10),
        "mrr": lambda it, q: reciprocal_rank(it, q),
        "hit@10": lambda it, q: hit_at_k(it, q, 10),
    }
    if k not in (1, 5, 10):
        cutoffs[f"recall@{k}"] = lambda it, q: recall_at_k(it, q, k)
        cutoffs[f"map@{k}"] = lambda it, q: average_precision_at_k(it, q, k)
        cutoffs[f"ndcg@{k}"] = lambda it, q: ndcg_at_k(it, q, k)
        cutoffs[f"hit@{k}"] = lambda it, q: hit_at_k(it, q, k)
    values: dict[str, list[float]] = {key: [] for key in cutoffs}
    n = 0
    for q, items in runs:
        if not q.evidence:
            continue
        n += 1
        items = list(items or [])
        for key, fn in cutoffs.items():
            values[key].append(fn(items, q))
    out: dict = {key: _mean(v) for key, v in values.items()}
    out["n_questions"] = n
    return out


@dataclass
class QuestionResult:
    """What the assistant did for one gold question."""

    question: GoldQuestion
    retrieved: list[RankedItem] = field(default_factory=list)
    cited: list[RankedItem] = field(default_factory=list)
    sentence_supported: list[bool] = field(default_factory=list)
    abstained: bool = False
    timings: dict = field(default_factory=dict)  # retrieval_ms, first_token_ms, total_ms


def _ratio(num: int, den: int) -> float | None:
    return num / den if den else None


def _percentile(values: list[float], p: float) -> float | None:
    return float(np.percentile(np.asarray(values, dtype=float), p, method="linear")) if values else None


def evaluate_answers(results: Sequence[QuestionResult]) -> dict:
    """Answer-level metrics plus evaluate_retrieval over each result's `retrieved` list (k=10).

    citation_precision: citations matching the question's evidence or `also` / all citations, over
        non-abstained answers (a citation given for an unanswerable question is wrong); None without citations.
    citation_recall: answerable questions with >= 1 citation matching evidence or `also` / answerable questions.
    support_rate: supported sentences / all sentences (all results); None when there are no sentences.
    cited_answer_rate: non-abstained answers to answerable questions with >= 1 citation / non-abstained
        answers to answerable questions.
    refusal_rate: abstained unanswerable / unanswerable. false_answer_rate: answered unanswerable / unanswerable.
    false_refusal_rate: abstained answerable / answerable.
    Rates with a zero denominator are None. Latency: latency.<name>.p50/p95 (numpy linear percentiles) of
    timings retrieval_ms, first_token_ms, total_ms over the results that report them; None when none do.
    """
    results = list(results)
    answerable = [r for r in results if r.question.answerable]
    unanswerable = [r for r in results if not r.question.answerable]
    answered = [r for r in results if not r.abstained]

    n_citations = sum(len(r.cited) for r in answered)
    correct = sum(1 for r in answered for c in r.cited if relevant(c, r.question))
    recalled = sum(1 for r in answerable if any(relevant(c, r.question) for c in r.cited))
    sentences = [s for r in results for s in r.sentence_supported]
    answered_answerable = [r for r in answerable if not r.abstained]

    out: dict = {
        "n_results": len(results),
        "n_answerable": len(answerable),
        "n_unanswerable": len(unanswerable),
        "citation_precision": _ratio(correct, n_citations),
        "citation_recall": _ratio(recalled, len(answerable)),
        "support_rate": _ratio(sum(1 for s in sentences if s), len(sentences)),
        "cited_answer_rate": _ratio(sum(1 for r in answered_answerable if r.cited), len(answered_answerable)),
        "refusal_rate": _ratio(sum(1 for r in unanswerable if r.abstained), len(unanswerable)),
        "false_answer_rate": _ratio(sum(1 for r in unanswerable if not r.abstained), len(unanswerable)),
        "false_refusal_rate": _ratio(sum(1 for r in answerable if r.abstained), len(answerable)),
        "n_citations": n_citations,
    }
    for name in LATENCY_KEYS:
        vals = [float(r.timings[name]) for r in results if (r.timings or {}).get(name) is not None]
        out[f"latency.{name}.p50"] = _percentile(vals, 50)
        out[f"latency.{name}.p95"] = _percentile(vals, 95)
    out.update(evaluate_retrieval(((r.question, r.retrieved) for r in results), k=10))
    return out
