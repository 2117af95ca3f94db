"""`comply adapt retriever`: adapt both retrieval models to a firm's own library in one command.

Questions come from `--dataset` (gold questions) or, for a library without any, from the configured generator
(`--generate N`: `finetune.questions.generate_gold` writes a question for each of N sampled chunks and keeps it only
when its chunk comes back in the retriever's top `round_trip_k` for it). The questions are split by id into the fixed
parts of eval.datasets (train / tune / report); the reranker and then the embedder train on the train part with hard
negatives mined from the library (the embedder reuses the reranker's lists), stopping early on the tune part; the
report part, never trained or stopped on, gives the before/after report: each report question's fused top 30
ordered as retrieval does today (fused), by the trained reranker, and by the frozen and the trained embedder's
similarity. The two models are written under `out` with their cards, ready for `comply retrievers register` (the
CLI registers them); activating them is the admin's step, through the release gate.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from eval.datasets import load_dataset, select_part
from eval.runner import file_sha256
from finetune.abstain_calibration import calibrate_library, no_library_answers
from finetune.embedder_train import EmbedTrainConfig, export, load_model, train_embedder
from finetune.embedder_train import scorer as embedder_scorer
from finetune.questions import MIN_CHARS, generate_gold
from finetune.reranker_data import fusion_key, mined_part, mined_parts
from finetune.reranker_train import (
    RerankTrainConfig,
    cross_scorer,
    export_bf16,
    train_reranker,
    validate_lists,
)
from finetune.train_loop import TrainError
from ingest.embedding import cpu_supports_bf16
from ingest.pipeline import Library
from ingest.settings import Settings

REPORT_DEPTH = 30  # candidates reordered in the report, as `rerank_depth`


@dataclass
class RetrieverAdaptation:
    """What `adapt_retriever` did: where the models are, their cards, the questions, the held-out report."""

    reranker: Path
    embedder: Path
    questions: dict
    report: dict
    reranker_card: dict
    embedder_card: dict

    def to_dict(self) -> dict:
        return {"reranker": str(self.reranker), "embedder": str(self.embedder), "questions": self.questions,
                "report": self.report,
                "validation": {"reranker": _best(self.reranker_card, "reranked"),
                               "embedder": _best(self.embedder_card, "embedder")}}


def _best(card: dict, key: str) -> dict:
    return (card.get("best") or {}).get(key) or {}


def adapt_retriever(settings: Settings, out: Path, *, dataset: Path | None = None, generate: int | None = None,
                    round_trip_k: int = 20, reranker_config: RerankTrainConfig | None = None,
                    embedder_config: EmbedTrainConfig | None = None, seed: int = 0, resume: bool = True,
                    progress: bool = True, generator=None, machine: dict | None = None,
                    reproduce: str | None = None) -> RetrieverAdaptation:
    """Train a reranker (`out/<name>-reranker`) and an embedder (`out/<name>-embedder`) for the library of
    `settings` on `dataset`, or on `generate` questions the generator writes (kept in `out/work/questions.jsonl`
    and reused when asked again for as many); work files (mined lists, checkpoints) in `out/work`."""
    if (dataset is None) == (generate is None):
        raise ValueError("give either --dataset (gold questions) or --generate N (questions the generator writes)")
    work = out / "work"
    work.mkdir(parents=True, exist_ok=True)
    questions_info: dict = {}
    if generate is not None:
        dataset = work / "questions.jsonl"
        stamp = work / "questions.json"
        key = {"generate": generate, "seed": seed, "round_trip_k": round_trip_k,
               "generator": settings.generator_model, "min_chars": MIN_CHARS}
        library = Library(settings)
        key["index_generation"] = library.catalog.generation()
        try:
            if resume and dataset.exists() and stamp.exists() and json.loads(stamp.read_text())["key"] == key:
                questions_info = json.loads(stamp.read_text())["counts"]
            else:
                questions_info = generate_gold(library, dataset, limit=generate, seed=seed, k=round_trip_k,
                                               generator=generator, progress=progress)
                stamp.write_text(json.dumps({"key": key, "counts": questions_info}) + "\n")
        finally:
            library.close()
        questions_info = {"source": "generated", "generator": settings.generator_model, **questions_info}
    else:
        questions_info = {"source": str(dataset)}
    gold = load_dataset(dataset, "auto")
    parts = {part: len(select_part(gold, part)) for part in ("train", "tune", "report")}
    questions_info |= {"questions": len(gold), "parts": parts}
    if parts["train"] < 4 or parts["tune"] < 1 or parts["report"] < 1:
        raise TrainError(f"too few questions to train and report on: {parts['train']} train, {parts['tune']} tune, "
                         f"{parts['report']} report (of {len(gold)}; the parts are 70/10/20% by question id): "
                         f"generate or give more")
    lists = mined_parts(settings, dataset, "auto", None, "train", "tune", [work], progress=progress)
    library = Library(settings)
    try:
        report_lists, _ = mined_part(library, select_part(gold, "report"), "report",
                                     {"dataset_sha256": file_sha256(dataset), "part": "report",
                                      "questions": parts["report"], "index_generation": lists.data["index_generation"],
                                      "depth": 50, **fusion_key(settings)}, [work], progress)
    finally:
        library.close()
    extra = {"data": lists.data, "machine": machine or {}, "reproduce": reproduce or ""}
    name = out.name
    rcfg = reranker_config or RerankTrainConfig(seed=seed)
    rcard = train_reranker(lists.train, lists.val, work / "reranker", rcfg, data_sha256=lists.sha256,
                           progress=progress, resume=resume)
    rcard |= {"name": f"{name}-reranker", "kind": "cross-encoder reranker (sentence-transformers CrossEncoder, "
              "one logit), weights in bf16", "questions": questions_info, **extra}
    ecfg = embedder_config or EmbedTrainConfig(seed=seed)
    ecard = train_embedder(lists.train, lists.val, work / "embedder", ecfg, data_sha256=lists.sha256,
                           progress=progress, resume=resume)
    ecard |= {"name": f"{name}-embedder", "kind": "sentence embedder (sentence-transformers SentenceTransformer, "
              "mean pooling, unit vectors), weights in bf16", "questions": questions_info, **extra}
    report = held_out_report(report_lists, work / "reranker" / "best", work / "embedder" / "best", ecfg)
    rcard["report"], ecard["report"] = report, report
    # the reranker's own abstention rule (its logits have their own scale): without one on its card, activating it
    # would switch the "no source addresses the question" rule off
    rule = calibrate_library(settings, work / "reranker" / "best",
                             select_part(gold, "tune") + select_part(gold, "report"), no_library_answers(),
                             progress=progress)
    if rule:
        rcard["abstain"] = rule
    reranker_out, embedder_out = out / f"{name}-reranker", out / f"{name}-embedder"
    export_bf16(work / "reranker" / "best", reranker_out, rcard)
    export(work / "embedder" / "best", embedder_out, ecard)
    return RetrieverAdaptation(reranker_out, embedder_out, questions_info, report, rcard, ecard)


def held_out_report(report_lists, reranker: Path, embedder: Path, ecfg: EmbedTrainConfig) -> dict:
    """The report part's fused top REPORT_DEPTH ordered four ways: fused (today's retrieval), by the trained
    reranker, by the frozen embedder's and by the trained embedder's similarity (MAP@10, Recall@1, ...)."""
    from sentence_transformers import CrossEncoder  # lazy: sentence_transformers takes ~6 s to import

    bf16 = cpu_supports_bf16()
    cross = CrossEncoder(str(reranker), device="cpu", local_files_only=True)
    reranked = validate_lists(cross_scorer(cross, bf16), report_lists, REPORT_DEPTH)
    frozen_model, trained_model = load_model(ecfg.base_model, ecfg.max_length), load_model(str(embedder),
                                                                                          ecfg.max_length)
    frozen = validate_lists(embedder_scorer(frozen_model, report_lists, REPORT_DEPTH, bf16), report_lists,
                            REPORT_DEPTH)
    trained = validate_lists(embedder_scorer(trained_model, report_lists, REPORT_DEPTH, bf16), report_lists,
                             REPORT_DEPTH)
    return {"questions": len(report_lists), "depth": REPORT_DEPTH, "fused": reranked["fused"],
            "reranker": reranked["reranked"], "frozen_embedder": frozen["reranked"],
            "trained_embedder": trained["reranked"]}
