"""Retrieval, citation, abstention and latency metrics against gold evidence. Definitions: docs/evaluation.md.

Retrieval metrics follow trec_eval (pytrec_eval `recall_k`, `map_cut_k`, `ndcg_cut_k`, `recip_rank`) with the
question's `evidence` items as the relevant set R. A ranked item is *relevant* at rank r when it finds a gold item
that no earlier rank found, so a passage retrieved twice, or two chunks of one passage, count once and no metric
exceeds 1. `also` places restate the evidence: retrieving one finds one otherwise unfound gold item.
Formally, found(r) = min(|R|, size of a maximum matching between the ranks <= r and the places (evidence items and
also places) they match), and rank r is relevant when found(r) > found(r-1). This does not depend on the order
inside the top r, each rank finds at most one gold item, each place is used at most once, and a chunk
ranked a second time (same chunk_id, or an equal RankedItem) is not relevant.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import PurePath
from typing import Protocol

from eval.datasets import Evidence, GoldQuestion
from ingest.types import Chunk

RETRIEVAL_KEYS = ("recall@1", "recall@5", "recall@10", "map@10", "ndcg@10", "mrr", "hit@10")
ANSWER_KEYS = ("citation_precision", "citation_recall", "support_rate", "answer_correct_rate",
               "answer_correct_rate_answerable", "cited_answer_rate",
               "cited_answer_rate_answerable", "model_cited_rate_answerable", "refusal_rate", "false_refusal_rate",
               "false_answer_rate")
LATENCY_KEYS = ("retrieval_ms", "first_token_ms", "total_ms")
LATENCY_PERCENTILES = (50, 95)


@dataclass(frozen=True)
class RankedItem:
    """A retrieved or cited chunk, reduced to what gold matching needs.

    `document` is our document id; `file` the source file name; `aliases` other ids of the same document (the
    ObliQA DocumentID). `passage_id` comes from passage-structured sources; `clause` is the clause the chunker
    detected in PDFs and Markdown.
    """

    document: str
    page: int | None = None
    passage_id: str | None = None
    text: str = ""
    file: str = ""
    aliases: tuple[str, ...] = ()
    clause: str | None = None
    chunk_id: str = ""


def ranked_item_from_chunk(chunk: Chunk) -> RankedItem:
    """The RankedItem of an ingested chunk; an ObliQA `DocumentID` kept in chunk.extra becomes an alias."""
    external = (chunk.extra or {}).get("DocumentID")
    aliases = (str(external),) if external not in (None, "") and str(external) != chunk.document_id else ()
    return RankedItem(document=chunk.document_id, page=chunk.page, passage_id=chunk.passage_id,
                      text=chunk.text or "", file=chunk.source_file, aliases=aliases, clause=chunk.clause,
                      chunk_id=chunk.chunk_id)


class Gold(Protocol):
    """Anything carrying a question's gold places: a GoldQuestion or a QuestionResult."""

    evidence: list[Evidence]
    also: list[Evidence]


# ---------- matching one item to one gold place ----------

_WS = re.compile(r"\s+")


def normalise(text: str) -> str:
    """NFKC, case-folded, whitespace runs collapsed to one space: the form in which quotes and texts compare."""
    return _WS.sub(" ", unicodedata.normalize("NFKC", text)).strip().casefold()


def same_document(item: RankedItem, document: str) -> bool:
    """`document` names the item's document: its id, an alias, its file name or its file path."""
    if document in (item.document, *item.aliases):
        return True
    return bool(item.file) and document in (item.file, PurePath(item.file.replace("\\", "/")).name)


def texts_overlap(quote: str, text: str) -> bool:
    """Normalised, the two texts are equal or one contains the other; an empty side never overlaps."""
    a, b = normalise(quote), normalise(text)
    return bool(a) and bool(b) and (a in b or b in a)


def matches(item: RankedItem, ev: Evidence) -> bool:
    """Whether the item lies at the gold place `ev`. Every locator that both sides carry must agree:

    1. document: `same_document(item, ev.document)`;
    2. page: when both have a page, equal;
    3. passage id: when both have one (passage-structured sources such as ObliQA), equal;
    4. quote: when `ev.quote` is set, `texts_overlap(ev.quote, item.text)`; an item without text fails. For
       ObliQA records sharing one (DocumentID, PassageID) with different text, only the gold text's record (or a
       chunk of it) matches.
    If the evidence names a page or passage but no page, passage id or quote could be compared, the item
    matches only when its detected clause equals `ev.passage_id`. Evidence naming only a document matches any
    item of that document.
    """
    if not same_document(item, ev.document):
        return False
    compared = False
    if ev.page is not None and item.page is not None:
        if item.page != ev.page:
            return False
        compared = True
    if ev.passage_id is not None and item.passage_id is not None:
        if str(item.passage_id) != ev.passage_id:
            return False
        compared = True
    if ev.quote:
        if not texts_overlap(ev.quote, item.text):
            return False
        compared = True
    if compared or (ev.page is None and ev.passage_id is None):
        return True
    return ev.passage_id is not None and item.clause == ev.passage_id


def relevant(item: RankedItem, gold: Gold) -> bool:
    """The item matches any evidence or `also` place of the question (the rule for a correct citation)."""
    return any(matches(item, ev) for ev in (*gold.evidence, *gold.also))


# ---------- retrieval ----------

def _augment(rank: int, edges: list[list[int]], owner: list[int | None], seen: set[int]) -> bool:
    for place in edges[rank]:
        if place in seen:
            continue
        seen.add(place)
        if owner[place] is None or _augment(owner[place], edges, owner, seen):
            owner[place] = rank
            return True
    return False


def gold_hits(ranked: Sequence[RankedItem], gold: Gold, k: int | None = None) -> list[bool]:
    """Per rank (the top k, or all), whether it finds a new gold item (see the module docstring)."""
    places = [*gold.evidence, *gold.also]
    owner: list[int | None] = [None] * len(places)
    edges: list[list[int]] = []
    found, flags, seen = 0, [], set()
    for rank, item in enumerate(ranked[:k] if k is not None else ranked):
        key = item.chunk_id or item  # the same chunk ranked twice (trec_eval: a duplicate docid) finds nothing new
        edges.append([] if key in seen else [p for p, ev in enumerate(places) if matches(item, ev)])
        seen.add(key)
        hit = found < len(gold.evidence) and _augment(rank, edges, owner, set())
        found += hit
        flags.append(hit)
    return flags


def _check_k(k: int) -> None:
    if k < 1:
        raise ValueError(f"k must be at least 1, not {k}")


def recall_at_k(ranked: Sequence[RankedItem], gold: Gold, k: int) -> float:
    """Gold items found in the top k / |R|; 0.0 when R is empty."""
    _check_k(k)
    return sum(gold_hits(ranked, gold, k)) / len(gold.evidence) if gold.evidence else 0.0


def map_at_k(ranked: Sequence[RankedItem], gold: Gold, k: int) -> float:
    """AP@k as trec_eval's map_cut: (1/|R|) * sum over relevant ranks r <= k of P@r; 0.0 when R is empty."""
    _check_k(k)
    if not gold.evidence:
        return 0.0
    total, found = 0.0, 0
    for rank, hit in enumerate(gold_hits(ranked, gold, k), start=1):
        if hit:
            found += 1
            total += found / rank
    return total / len(gold.evidence)


def ndcg_at_k(ranked: Sequence[RankedItem], gold: Gold, k: int) -> float:
    """Binary-gain nDCG@k, discount 1/log2(r+1), ideal ranking = min(|R|, k) relevant items on top."""
    _check_k(k)
    if not gold.evidence:
        return 0.0
    dcg = sum(1.0 / math.log2(rank + 1) for rank, hit in enumerate(gold_hits(ranked, gold, k), start=1) if hit)
    ideal = sum(1.0 / math.log2(rank + 1) for rank in range(1, min(len(gold.evidence), k) + 1))
    return dcg / ideal


def mrr(ranked: Sequence[RankedItem], gold: Gold, k: int | None = None) -> float:
    """Reciprocal rank of the first relevant item (whole list unless k is given); 0.0 when there is none."""
    for rank, hit in enumerate(gold_hits(ranked, gold, k), start=1):
        if hit:
            return 1.0 / rank
    return 0.0


def hit_at_k(ranked: Sequence[RankedItem], gold: Gold, k: int) -> float:
    """1.0 when a gold item is found in the top k, else 0.0."""
    _check_k(k)
    return 1.0 if any(gold_hits(ranked, gold, k)) else 0.0


# ---------- per-question records and aggregation ----------

@dataclass
class QuestionResult:
    """What the system did for one gold question. None means "not measured" (retrieval-only runs leave the
    answer fields None). `cited` holds the chunk behind each citation of the answer."""

    id: str
    answerable: bool
    evidence: list[Evidence] = field(default_factory=list)
    also: list[Evidence] = field(default_factory=list)
    retrieved: list[RankedItem] | None = None
    cited: list[RankedItem] | None = None
    sentence_supported: list[bool] | None = None
    abstained: bool | None = None
    model_cited: bool | None = None  # the generator itself wrote a valid [n] (not one the verifier attached)
    # right against the gold reference answer (eval/correctness.py); None when not scored (no gold answer, no
    # entailment model, no answer measured)
    answer_correct: bool | None = None
    timings: dict[str, float] = field(default_factory=dict)  # retrieval_ms, first_token_ms, total_ms

    @classmethod
    def for_question(cls, q: GoldQuestion, **measured) -> QuestionResult:
        """A result carrying q's id and gold places plus the measured fields given by name."""
        return cls(id=q.id, answerable=q.answerable, evidence=list(q.evidence), also=list(q.also), **measured)


def percentiles(values: Iterable[float], ps: Sequence[float] = LATENCY_PERCENTILES) -> list[float] | None:
    """The ps-th percentiles (0-100) with numpy's default linear interpolation; None for no values."""
    xs = sorted(float(v) for v in values)
    if not xs:
        return None
    out = []
    for p in ps:
        if not 0 <= p <= 100:
            raise ValueError(f"percentile {p} is outside 0-100")
        h = (len(xs) - 1) * p / 100
        lo = math.floor(h)
        hi = min(lo + 1, len(xs) - 1)
        out.append(xs[lo] + (h - lo) * (xs[hi] - xs[lo]))
    return out


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _ratio(num: int, den: int) -> float | None:
    return num / den if den else None


def _retrieval_metrics(results: list[QuestionResult], k: int) -> dict[str, float | None]:
    scored = [r for r in results if r.answerable and r.evidence and r.retrieved is not None]
    fns = {
        "recall@1": lambda r: recall_at_k(r.retrieved, r, 1),
        "recall@5": lambda r: recall_at_k(r.retrieved, r, 5),
        "recall@10": lambda r: recall_at_k(r.retrieved, r, 10),
        "map@10": lambda r: map_at_k(r.retrieved, r, 10),
        "ndcg@10": lambda r: ndcg_at_k(r.retrieved, r, 10),
        "mrr": lambda r: mrr(r.retrieved, r),
        "hit@10": lambda r: hit_at_k(r.retrieved, r, 10),
    }
    if k not in (1, 5, 10):
        fns |= {
            f"recall@{k}": lambda r: recall_at_k(r.retrieved, r, k),
            f"map@{k}": lambda r: map_at_k(r.retrieved, r, k),
            f"ndcg@{k}": lambda r: ndcg_at_k(r.retrieved, r, k),
            f"hit@{k}": lambda r: hit_at_k(r.retrieved, r, k),
        }
    return {key: _mean([fn(r) for r in scored]) for key, fn in fns.items()}


def _answer_metrics(results: list[QuestionResult]) -> dict[str, float | int | None]:
    judged = [r for r in results if r.abstained is not None]
    with_citations = [r for r in judged if r.cited is not None]
    answered = [r for r in with_citations if not r.abstained]
    answered_answerable = [r for r in answered if r.answerable]
    answerable = [r for r in judged if r.answerable]
    unanswerable = [r for r in judged if not r.answerable]
    cited_answerable = [r for r in with_citations if r.answerable]
    sentences = [s for r in judged if not r.abstained and r.sentence_supported is not None
                 for s in r.sentence_supported]
    citations = [(c, r) for r in answered for c in r.cited]
    scored = [r for r in answerable if r.answer_correct is not None]
    scored_answers = [r for r in scored if not r.abstained]
    return {
        "citation_precision": _ratio(sum(relevant(c, r) for c, r in citations), len(citations)),
        "citation_recall": _ratio(sum(not r.abstained and any(relevant(c, r) for c in r.cited)
                                      for r in cited_answerable), len(cited_answerable)),
        "support_rate": _ratio(sum(sentences), len(sentences)),
        "answer_correct_rate": _ratio(sum(r.answer_correct for r in scored_answers), len(scored_answers)),
        "answer_correct_rate_answerable": _ratio(sum(r.answer_correct for r in scored), len(scored)),
        "cited_answer_rate": _ratio(sum(bool(r.cited) for r in answered), len(answered)),
        "cited_answer_rate_answerable": _ratio(sum(bool(r.cited) for r in answered_answerable),
                                               len(answered_answerable)),
        "model_cited_rate_answerable": _ratio(sum(bool(r.model_cited) for r in answered_answerable),
                                              sum(r.model_cited is not None for r in answered_answerable)),
        "refusal_rate": _ratio(sum(r.abstained for r in unanswerable), len(unanswerable)),
        "false_refusal_rate": _ratio(sum(r.abstained for r in answerable), len(answerable)),
        "false_answer_rate": _ratio(sum(not r.abstained for r in unanswerable), len(unanswerable)),
        "n_citations": len(citations) if with_citations else None,
    }


def aggregate(results: Iterable[QuestionResult], k: int = 10) -> dict[str, float | int | None]:
    """Flat metrics over per-question results, with stable keys (docs/evaluation.md):

    n_questions, n_answerable, n_unanswerable, n_citations; RETRIEVAL_KEYS (means over answerable questions with
    a retrieval; plus recall@k, map@k, ndcg@k, hit@k when k is not 1, 5 or 10); ANSWER_KEYS; and
    latency.<timing>.p50/.p95 for LATENCY_KEYS. A metric that was not measured or has an empty denominator is None.
    """
    results = list(results)
    out: dict[str, float | int | None] = {
        "n_questions": len(results),
        "n_answerable": sum(r.answerable for r in results),
        "n_unanswerable": sum(not r.answerable for r in results),
    }
    out |= _retrieval_metrics(results, k)
    out |= _answer_metrics(results)
    for name in LATENCY_KEYS:
        values = percentiles(r.timings[name] for r in results if r.timings.get(name) is not None)
        for p, value in zip(LATENCY_PERCENTILES, values or [None] * len(LATENCY_PERCENTILES), strict=True):
            out[f"latency.{name}.p{p}"] = value
    return out


def evaluate_retrieval(runs: Iterable[tuple[GoldQuestion, Sequence[RankedItem]]], k: int = 10) -> dict:
    """`aggregate` of a retrieval-only run given as (question, ranked items) pairs: counts and retrieval keys."""
    metrics = aggregate((QuestionResult.for_question(q, retrieved=list(items or [])) for q, items in runs), k)
    keep = ("n_questions", "n_answerable", "n_unanswerable", *RETRIEVAL_KEYS)
    return {key: value for key, value in metrics.items() if key in keep or key.endswith(f"@{k}")}
