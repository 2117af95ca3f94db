"""Choosing the reranker's abstention rule (`assistant.rerank.AbstainRule`): ask the reranker when a question's best
cosine is below `cosine`, abstain when no source scores `logit` or more.

Used twice: `eval.bench.abstention` chooses the shipped ObliQA reranker's rule on ObliQA dev's tune part, and
`comply adapt retriever` chooses the rule of a reranker adapted to a firm's library on that library's own held-out
questions (answerable there) and the questions of data/adaptation that no library of comply's answers.
The thresholds belong to one reranker (its logits' scale), so each reranker's card carries its own.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from tqdm import tqdm

from assistant.rerank import AbstainRule, Reranker
from assistant.retrieval import Retriever
from eval.datasets import GoldQuestion, load_jsonl
from eval.metrics import ranked_item_from_chunk, relevant
from ingest.pipeline import Library
from ingest.settings import Settings

CHECKS_DIR = Path(__file__).resolve().parent.parent / "data" / "adaptation"
GENERAL_QUESTIONS = CHECKS_DIR / "general_questions.jsonl"  # general knowledge: "What is the capital of France?"
OUTSIDE_QUESTIONS = CHECKS_DIR / "outside_questions.jsonl"  # regulatory, but about rules no library here holds
COSINES = (0.40, 0.45, 0.50, 0.55, 0.60, 0.65, 0.70, 1.01)  # 1.01: the reranker asked for every question
LOGITS = tuple(round(-3.0 + 0.2 * i, 1) for i in range(11))  # -3.0 .. -1.0: the ObliQA reranker's range
WIDE_LOGITS = tuple(round(-4.0 + 0.2 * i, 1) for i in range(41))  # -4.0 .. 4.0: a reranker adapted to a library


def features(library: Library, settings: Settings, reranker: Reranker, questions: list[GoldQuestion],
             answerable: bool | None, desc: str, quiet: bool) -> list[dict]:
    """Per question: best cosine, best reranker logit over the sources the assistant would show, whether a gold
    passage is among them, and whether the question is answerable in this library (None: as its gold says)."""
    retriever = Retriever(library, settings=settings, reranker=False)
    rows = []
    for q in tqdm(questions, desc=desc, unit="q", file=sys.stderr, disable=quiet):
        sources = retriever.retrieve(q.question, settings.top_k)
        t0 = time.perf_counter()
        logits = reranker.score(q.question, [s.chunk.text for s in sources])
        ms = 1000 * (time.perf_counter() - t0)
        ok = q.answerable if answerable is None else answerable
        rows.append({"id": q.id, "answerable": ok, "cosine": retriever.relevance(q.question, sources),
                     "logit": max(logits, default=-99.0), "ms": ms,
                     "gold_shown": ok and any(relevant(ranked_item_from_chunk(s.chunk), q) for s in sources)})
    return rows


def refused(rows: list[dict], threshold: float, rule: AbstainRule | None) -> int:
    """How many of these questions are not asked of the model (the cosine gate, then the rule)."""
    return sum(r["cosine"] < threshold or (rule is not None and rule.refuses(r["cosine"], r["logit"])) for r in rows)


def choose(answerable: list[dict], unanswerable: list[dict], threshold: float, max_false: float,
           logits: tuple[float, ...] = LOGITS) -> dict:
    """The grid pair refusing the most unanswerable questions while refusing at most `max_false` of the answerable;
    ties go to the pair that asks the reranker least (lower cosine), then to the lower logit."""
    grid = []
    for cosine in COSINES:
        for logit in logits:
            rule = AbstainRule(logit=logit, cosine=cosine)
            grid.append({"cosine": cosine, "logit": logit,
                         "false_refusals": refused(answerable, threshold, rule) / len(answerable),
                         "refusals_unanswerable": refused(unanswerable, threshold, rule) / len(unanswerable)})
    allowed = [g for g in grid if g["false_refusals"] <= max_false + 1e-9]
    best = max(allowed, key=lambda g: (round(g["refusals_unanswerable"], 6), -g["cosine"], -g["logit"]))
    return {"chosen": best, "grid": grid}


def calibrate_library(settings: Settings, reranker_path, answerable: list[GoldQuestion],
                      unanswerable: list[GoldQuestion], *, max_false: float = 0.0, progress: bool = True) -> dict:
    """The abstention rule of a reranker adapted to the library of `settings`, for its card's `abstain`: chosen on
    `answerable` (the library's own held-out questions, generated or gold; only those whose chunk is among the
    sources the assistant shows count, as a question whose passage is not shown cannot be answered right anyway) against
    `unanswerable` (questions no library of comply's answers), over the wide logit grid. `max_false` 0: no
    held-out question whose passage is shown (and that the cosine gate lets through) may be refused. {} when there
    is nothing to choose on."""
    from ingest.embedding import cpu_supports_bf16  # the reranker's dtype, as the assistant loads it

    library = Library(settings)
    try:
        reranker = Reranker(reranker_path, bf16=cpu_supports_bf16(), batch_size=settings.rerank_batch_size)
        # the cosine gate refuses a question below `abstain_threshold` whatever the rule: those are not the rule's
        shown = [r for r in features(library, settings, reranker, answerable, True, "abstain rule: held-out",
                                     not progress) if r["gold_shown"] and r["cosine"] >= settings.abstain_threshold]
        outside = features(library, settings, reranker, unanswerable, False, "abstain rule: outside", not progress)
    finally:
        library.close()
    if not shown or not outside:
        return {}
    chosen = choose(shown, outside, settings.abstain_threshold, max_false, WIDE_LOGITS)["chosen"]
    return {"logit": chosen["logit"], "cosine": chosen["cosine"],
            "chosen_on": f"this library: {len(shown)} held-out questions whose chunk is among the "
                         f"{settings.top_k} sources (answerable) against {len(outside)} questions no library "
                         "answers (data/adaptation; unanswerable), by `comply adapt retriever`",
            "max_false_refusals": max_false,
            "tune_false_refusals": round(chosen["false_refusals"], 4),
            "tune_refusals_unanswerable": round(chosen["refusals_unanswerable"], 4)}


def general_questions() -> list[dict]:
    """The 20 general-knowledge questions of data/adaptation: id, question and `accept` (patterns of a right answer)."""
    return [json.loads(line) for line in GENERAL_QUESTIONS.read_text(encoding="utf-8").splitlines() if line.strip()]


def no_library_answers() -> list[GoldQuestion]:
    """The 12 regulatory questions and the 20 general-knowledge questions of data/adaptation, as unanswerable."""
    return load_jsonl(OUTSIDE_QUESTIONS) + [GoldQuestion(id=g["id"], question=g["question"], answerable=False)
                                            for g in general_questions()]
