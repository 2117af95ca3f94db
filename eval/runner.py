"""Run the real pipeline on a gold set and keep what it did: results.jsonl (one line per question, resumable),
metrics.json (aggregate + run metadata + per-document breakdown), then the report (eval/report.py).

Resuming: `run_config.json` records what decides a question's result (dataset content, retrieval mode, model,
adapter, settings, index generation). A run into a directory with the same config skips the questions already in
results.jsonl; a different config is a RunError, so two runs are never mixed. `limit` and `sample_seed` only pick
which questions are scored, so they may change between runs into one directory.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace

from tqdm import tqdm

from assistant.citations import valid_markers
from assistant.pipeline import Assistant, citation_gate, min_confidence, resolve_adapter
from assistant.rerank import DEFAULT_RERANKER, abstain_rule, current_reranker
from assistant.retrieval import MODES, Retriever
from eval.correctness import Judge, load_judge
from eval.datasets import PARTS_SEED, GoldQuestion, load_dataset, sample, select_part
from eval.metrics import (
    QuestionResult,
    RankedItem,
    aggregate,
    gold_hits,
    map_at_k,
    mrr,
    ndcg_at_k,
    ranked_item_from_chunk,
    recall_at_k,
    relevant,
)
from eval.report import write_report
from ingest.pipeline import Library
from ingest.settings import Settings
from ingest.types import ComplyError

K = 10  # ranked items kept per question for the retrieval metrics
CONFIG_FILE = "run_config.json"
RESULTS_FILE = "results.jsonl"
METRICS_FILE = "metrics.json"
# run_config keys that only pick or describe the questions: they may differ when resuming.
SELECTION_KEYS = ("dataset", "format", "limit", "sample_seed", "part", "parts_seed")


class RunError(ComplyError):
    """An evaluation run cannot go on in its output directory: the directory and the reason."""

    def __init__(self, out: str | Path, reason: str):
        self.out = str(out)
        self.reason = reason
        super().__init__(f"{self.out}: {reason}")


class RunCancelled(RunError):
    """A run stopped on request between two questions: `done` of its `total` questions have a result in
    results.jsonl (no metrics.json is written), and the same run into the same directory goes on from there."""

    def __init__(self, out: str | Path, done: int, total: int):
        self.done = done
        self.total = total
        super().__init__(out, f"cancelled after {done} of {total} questions; run it again into this directory to "
                              f"go on from there")


def run_eval(settings: Settings, dataset: str | Path, out: str | Path, *, format: str = "auto",
             limit: int | None = None, adapter: str | None = None, retrieval_only: bool = False,
             retrieval_mode: str = "hybrid", documents_dir: str | Path | None = None, sample_seed: int | None = None,
             progress: bool = True, on_progress: Callable[[int, int], None] | None = None,
             library: Library | None = None, assistant: Assistant | None = None, part: str | None = None,
             cancel: threading.Event | None = None) -> dict:
    """Run the real pipeline on a gold set, write metrics.json, results.jsonl, report.md and plots into out;
    return the metrics dict. `part` keeps one fixed part of the set (eval.datasets.PARTS) before `limit`. Once
    `cancel` is set the run stops before its next question with RunCancelled (what was done stays, resumable)."""
    if retrieval_mode not in MODES:
        raise ValueError(f"retrieval mode must be one of {', '.join(MODES)}, not '{retrieval_mode}'")
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be at least 1, not {limit}")
    started = time.perf_counter()
    out = Path(out)
    questions = load_dataset(dataset, format, documents_dir=documents_dir)
    questions = select_questions(select_part(questions, part) if part else questions, limit, sample_seed)
    own_library = library is None and assistant is None
    if assistant is not None:
        library = assistant.library
    elif library is None:
        library = Library(settings)
    try:
        if retrieval_only:
            adapter_path = None
        elif assistant is not None:
            adapter_path = assistant.adapter
            if assistant.retriever.mode != retrieval_mode:
                raise ValueError(f"the assistant retrieves with '{assistant.retriever.mode}', not '{retrieval_mode}'")
            if adapter is not None and resolve_adapter(settings, adapter) != adapter_path:
                raise ValueError(f"the assistant uses adapter {adapter_path!r}, not {adapter!r}")
        else:
            adapter_path = resolve_adapter(settings, adapter)
        judge = None if retrieval_only else load_judge(settings)
        config = run_config(settings, library, dataset, format=format, limit=limit, sample_seed=sample_seed,
                            documents_dir=documents_dir, retrieval_only=retrieval_only, mode=retrieval_mode,
                            adapter=adapter_path, part=part, judge=judge)
        check_out_dir(out, config)
        out.mkdir(parents=True, exist_ok=True)
        _write_json(out / CONFIG_FILE, config)
        records = read_results(out / RESULTS_FILE)
        wanted = {q.id for q in questions}
        resumed = sum(1 for qid in records if qid in wanted)
        results: dict[str, QuestionResult] = {}
        todo = [q for q in questions if q.id not in records]

        if retrieval_only:
            retriever = Retriever(library, mode=retrieval_mode, settings=settings)

            def measure(q: GoldQuestion):
                return _retrieve_one(retriever, q)
        else:
            if assistant is None:
                assistant = Assistant(settings, library, adapter=adapter, retrieval_mode=retrieval_mode)
            keeper = _KeepRetrieved(assistant.retriever, K)
            keeper.install(assistant)

            def measure(q: GoldQuestion):
                return _answer_one(assistant, keeper, q, judge)

        bar = _progress_bar(len(questions), resumed, progress)
        if on_progress is not None:
            on_progress(resumed, len(questions))
        try:
            with (out / RESULTS_FILE).open("a", encoding="utf-8") as f:
                for q in todo:
                    if cancel is not None and cancel.is_set():
                        raise RunCancelled(out, resumed + len(results), len(questions))
                    record, result = measure(q)
                    f.write(json.dumps(record, ensure_ascii=False) + "\n")
                    f.flush()
                    records[q.id] = record
                    results[q.id] = result
                    bar.update(1)
                    if on_progress is not None:
                        on_progress(resumed + len(results), len(questions))
        finally:
            bar.close()
            if not retrieval_only:
                keeper.restore()

        ordered = [results.get(q.id) or rebuild_result(q, records[q.id], library, out) for q in questions]
        metrics = aggregate(ordered, k=K)
        metrics["run"] = run_metadata(config, library, [records[q.id] for q in questions], resumed=resumed,
                                      new=len(results), seconds=time.perf_counter() - started)
        metrics["per_document"] = per_document(ordered)
        _write_json(out / METRICS_FILE, metrics)
        write_report(out, [q.id for q in questions])
        return metrics
    finally:
        if own_library:
            library.close()


def select_questions(questions: list[GoldQuestion], limit: int | None, sample_seed: int | None) -> list[GoldQuestion]:
    """The first `limit` questions, or `sample(questions, limit, sample_seed)` when a seed is given; all without limit."""
    if limit is None:
        return list(questions)
    if sample_seed is not None:
        return sample(questions, limit, sample_seed)
    return list(questions[:limit])


def file_sha256(path: str | Path) -> str:
    """The sha256 of a file's bytes (hex)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def run_config(settings: Settings, library: Library, dataset: str | Path, *, format: str, limit: int | None,
               sample_seed: int | None, documents_dir: str | Path | None, retrieval_only: bool, mode: str,
               adapter: str | None, part: str | None = None, judge: Judge | None = None) -> dict:
    """What identifies a run (everything but SELECTION_KEYS decides a question's result); `judge` scores answers
    against the gold answers."""
    return {
        "dataset": str(Path(dataset).resolve()),
        "dataset_sha256": file_sha256(dataset),
        "format": format,
        "limit": limit,
        "sample_seed": sample_seed,
        # the fixed part of the set (absent when the whole set, as in runs made before parts existed)
        **({"part": part, "parts_seed": PARTS_SEED} if part else {}),
        "documents_dir": str(Path(documents_dir).resolve()) if documents_dir is not None else None,
        "retrieval_only": retrieval_only,
        "mode": mode,
        "k": K,
        "model": None if retrieval_only else settings.generator_model,
        "adapter": adapter,
        "embedding_model": library.pointer.model,
        # the registry model the library was re-embedded with; absent for the configured model (as in older runs)
        **({"embedding_registry_name": library.pointer.name} if library.pointer.name else {}),
        "settings": {name: _plain(getattr(settings, name)) for name in (
            "candidates", "rrf_k", "chunk_tokens", *(() if retrieval_only else (
                "top_k", "max_new_tokens", "abstain_threshold", "support_threshold", "generator_backend",
                "prompt_version", "few_shot_file", "few_shot_count", "citation_realign_margin", "entailment_check",
                "entailment_model",
                "entailment_threshold", "entailment_max_new_words", "relevance_check", "relevance_margin",
                "answer_margin")))},
        "index_generation": library.catalog.generation(),
        # the confidence gate in effect; absent when there is none (as in runs made before the gate existed)
        **({} if retrieval_only or not (gate := min_confidence(settings, adapter)) else {"min_confidence": gate}),
        **({"consensus_citations": True} if settings.consensus_citations and not retrieval_only else {}),
        # the reranker's abstention rule in effect; absent when off (as in runs made before it)
        **({} if retrieval_only or (rule := abstain_rule(settings)) is None else
           {"abstain_rule": {"logit": rule.logit, "cosine": rule.cosine}}),
        **({} if retrieval_only else _gate_config(citation_gate(settings, adapter))),
        # the reranker in effect (its weights' hash and depth); absent without one (as in runs made before it)
        **({} if (rerank := rerank_config(settings)) is None else {"rerank": rerank}),
        # the model that judges answers against the gold answers; absent without one (as in runs made before it)
        **({} if judge is None else {"answer_correctness": correctness_config(judge)}),
    }


def rerank_config(settings: Settings) -> dict | None:
    """The reranker a run uses: its folder, the sha256 of its weights and the depth it reranks; None when off."""
    if not settings.rerank:
        return None
    path = current_reranker(settings)
    if not path.is_dir() and settings.reranker_model == DEFAULT_RERANKER:
        return None
    return {"model": str(path.resolve()), "weights_sha256": weights_sha256(path),
            "depth": settings.rerank_depth, "weight": settings.rerank_weight}


def weights_sha256(folder: Path) -> list[str]:
    """The sha256 of each weights file of a model folder (safetensors, else .bin), in name order."""
    weights = sorted(folder.glob("*.safetensors")) or sorted(folder.glob("*.bin"))
    return [file_sha256(w) for w in weights]


def correctness_config(judge: Judge) -> dict:
    """The entailment model that scores answer correctness: its folder, the sha256 of its weights, the threshold."""
    path = judge.entailment.path
    return {"model": str(path.resolve()), "weights_sha256": weights_sha256(path), "threshold": judge.threshold}


def _gate_config(gate) -> dict:
    """The citation gate in a run's config (its threshold, and its weights, which decide the recorded scores);
    absent without one (as in runs made before the gate existed)."""
    if gate is None:
        return {}
    return {"citation_gate": {"threshold": gate.threshold, "coef": [round(c, 6) for c in gate.coef],
                              "intercept": round(gate.intercept, 6)}}


def check_out_dir(out: Path, config: dict) -> None:
    """Raise RunError unless `out` is new, empty, or holds a run with the same config (then it resumes)."""
    if not out.exists():
        return
    if not out.is_dir():
        raise RunError(out, "exists and is not a directory")
    path = out / CONFIG_FILE
    if not path.is_file():
        if any(out.iterdir()):
            raise RunError(out, f"is not empty and holds no {CONFIG_FILE}; choose a new --out directory")
        return
    try:
        old = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise RunError(out, f"cannot read {CONFIG_FILE}: {e}") from e
    for key in [*config, *(key for key in old if key not in config)]:
        if key in SELECTION_KEYS or old.get(key) == config.get(key):
            continue
        raise RunError(out, f"holds a run with a different configuration ({key}: {old.get(key)!r} there, "
                            f"{config.get(key)!r} now); write this run to a new --out directory")


def read_results(path: Path) -> dict[str, dict]:
    """Records of results.jsonl by question id. An unfinished last line (an interrupted run) is cut off the file."""
    if not path.is_file():
        return {}
    data = path.read_bytes()
    end = data.rfind(b"\n") + 1
    if end < len(data):
        with path.open("r+b") as f:
            f.truncate(end)
    records = {}
    for line_no, line in enumerate(data[:end].decode("utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            records[str(record["id"])] = record
        except (ValueError, KeyError, TypeError) as e:
            raise RunError(path.parent, f"{RESULTS_FILE} line {line_no} is not a result record ({e}); "
                                        f"choose a new --out directory") from e
    return records


def rebuild_result(q: GoldQuestion, record: dict, library: Library, out: str | Path = "") -> QuestionResult:
    """The QuestionResult of a record written by an earlier run (chunks are read back from the catalog, which the
    config's index generation pins)."""
    ids = [r["chunk_id"] for r in record.get("retrieved") or []]
    ids += [c["chunk_id"] for c in record.get("citations") or []]
    chunks = library.catalog.chunks(ids)
    missing = [cid for cid in ids if cid not in chunks]
    if missing:
        raise RunError(out, f"chunk {missing[0]} of question {q.id} is no longer in the library; "
                            f"choose a new --out directory")

    def items(rows):
        return None if rows is None else [ranked_item_from_chunk(chunks[r["chunk_id"]]) for r in rows]

    sentences = record.get("sentences")
    return QuestionResult.for_question(
        q, retrieved=items(record.get("retrieved")), cited=items(record.get("citations")),
        sentence_supported=None if sentences is None else [bool(s["supported"]) for s in sentences],
        abstained=record.get("abstained"), timings=dict(record.get("timings") or {}),
        model_cited=record.get("model_cited"), answer_correct=record.get("answer_correct"))


# ---------- measuring one question ----------

def _retrieve_one(retriever: Retriever, q: GoldQuestion) -> tuple[dict, QuestionResult]:
    t0 = time.perf_counter()
    retrieved = retriever.retrieve(q.question, K)
    timings = {"retrieval_ms": _ms(t0)}
    items = [ranked_item_from_chunk(r.chunk) for r in retrieved]
    result = QuestionResult.for_question(q, retrieved=items, timings=timings)
    return _record(q, result, items), result


def _answer_one(assistant: Assistant, keeper: _KeepRetrieved, q: GoldQuestion,
                judge: Judge | None = None) -> tuple[dict, QuestionResult]:
    answer = assistant.ask(q.question)
    retrieved = [ranked_item_from_chunk(r.chunk) for r in keeper.last()]
    by_id = {item.chunk_id: item for item in retrieved}
    missing = [c.chunk_id for c in answer.citations if c.chunk_id not in by_id]
    if missing:  # only when generation was given more sources than the metrics keep
        by_id |= {cid: ranked_item_from_chunk(chunk)
                  for cid, chunk in assistant.library.catalog.chunks(missing).items()}
    cited = [by_id[c.chunk_id] for c in answer.citations]
    timings = dict(answer.timings)
    if answer.abstained and not answer.raw_answer and not timings.get("first_token_ms"):
        timings.pop("first_token_ms", None)  # abstained before generating: there was no first token
    model_cited = bool(valid_markers(answer.raw_answer or "", len(answer.sources)))
    verdict = None if judge is None else judge(q, abstained=answer.abstained, answer=answer.answer)
    result = QuestionResult.for_question(q, retrieved=retrieved, cited=cited,
                                         sentence_supported=[s.supported for s in answer.sentences],
                                         abstained=answer.abstained, timings=timings, model_cited=model_cited,
                                         answer_correct=None if verdict is None else verdict.correct)
    record = _record(q, result, retrieved)
    if verdict is not None:
        record |= {"answer_correct": verdict.correct, "answer_entailed": verdict.entailed,
                   "answer_covers": verdict.covers}
    # the answer as comply serialises it everywhere (Answer.to_record: the CLI's JSON, the API, the audit trail),
    # with the gold's verdict on each cited and each retrieved source; the question and the timings are the run's
    shown = answer.to_record()
    record |= {key: value for key, value in shown.items() if key not in ("question", "timings")}
    record["model_cited"] = result.model_cited
    record["citations"] = [{**c, "correct": relevant(item, q)}
                           for c, item in zip(shown["citations"], cited, strict=True)]
    # the sources as numbered in the prompt: what the [n] of raw_answer name (a withheld draft's citations)
    record["sources"] = [{**s, "file": source.file,
                          "correct": relevant(by_id[source.chunk_id], q) if source.chunk_id in by_id else None}
                         for s, source in zip(shown["sources"], answer.sources, strict=True)]
    return record, result


def _record(q: GoldQuestion, result: QuestionResult, retrieved: list[RankedItem]) -> dict:
    hits = gold_hits(retrieved, result, K)
    return {
        "id": q.id,
        "question": q.question,
        "answerable": q.answerable,
        "evidence": [asdict(e) for e in q.evidence],
        "also": [asdict(e) for e in q.also],
        "gold_answer": q.answer,
        "answer": None,
        "abstained": result.abstained,
        "answer_correct": None,
        "answer_entailed": None,
        "answer_covers": None,
        "sentences": None,
        "citations": None,
        "retrieved": [{"rank": rank, "document": item.document, "file": item.file, "page": item.page,
                       "passage_id": item.passage_id, "clause": item.clause, "chunk_id": item.chunk_id,
                       "relevant": hit}
                      for rank, (item, hit) in enumerate(zip(retrieved, hits, strict=True), start=1)],
        "timings": result.timings,
        "scores": question_scores(result),
    }


def question_scores(result: QuestionResult) -> dict:
    """Per-question retrieval scores (None for unanswerable questions) and citation counts, for the report."""
    scores: dict = {"recall@10": None, "map@10": None, "ndcg@10": None, "rr": None}
    if result.answerable and result.evidence and result.retrieved is not None:
        scores = {"recall@10": recall_at_k(result.retrieved, result, K), "map@10": map_at_k(result.retrieved, result, K),
                  "ndcg@10": ndcg_at_k(result.retrieved, result, K), "rr": mrr(result.retrieved, result)}
    if result.cited is not None:
        scores["citations"] = len(result.cited)
        scores["correct_citations"] = sum(relevant(c, result) for c in result.cited)
    if result.sentence_supported is not None:
        scores["sentences"] = len(result.sentence_supported)
        scores["supported_sentences"] = sum(result.sentence_supported)
    return scores


class _KeepRetrieved:
    """Stands in for an Assistant's retriever during a run: it retrieves `depth` once per question, keeps them
    for the retrieval metrics and hands the first k on to generation (fusion ranks all candidates before cutting,
    so these are exactly the k the assistant would have got). Thread-local, so a UI chat sharing the assistant is
    unaffected."""

    def __init__(self, inner: Retriever, depth: int):
        self.inner = inner
        self.depth = depth
        self._local = threading.local()
        self._owner = None

    def install(self, assistant: Assistant) -> None:
        self._owner = assistant
        assistant.retriever = self

    def restore(self) -> None:
        if self._owner is not None and self._owner.retriever is self:
            self._owner.retriever = self.inner
        self._owner = None

    def retrieve(self, query, k=None, flt=None, mode=None):
        k = k or self.inner.settings.top_k
        found = self.inner.retrieve(query, max(k, self.depth), flt, mode)
        self._local.last = found
        return found[:k]

    def last(self) -> list:
        return getattr(self._local, "last", [])

    def __getattr__(self, name):
        return getattr(self.inner, name)


# ---------- aggregation extras ----------

def _natural(text: str) -> list:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text)]


def per_document(results: list[QuestionResult]) -> dict[str, dict]:
    """Per gold document (from the evidence of answerable questions): questions, recall@10 of that document's
    evidence items, and the precision of the citations in answers to those questions."""
    groups: dict[str, list[QuestionResult]] = {}
    for r in results:
        if r.answerable:
            for doc in dict.fromkeys(ev.document for ev in r.evidence):
                groups.setdefault(doc, []).append(r)
    out = {}
    for doc in sorted(groups, key=_natural):
        rs = groups[doc]
        recalls = []
        for r in rs:
            if r.retrieved is None:
                continue
            view = SimpleNamespace(evidence=[ev for ev in r.evidence if ev.document == doc],
                                   also=[ev for ev in r.also if ev.document == doc])
            recalls.append(recall_at_k(r.retrieved, view, K))
        judged = [r for r in rs if r.cited is not None]
        cites = [relevant(c, r) for r in judged if not r.abstained for c in r.cited]
        out[doc] = {
            "n_questions": len(rs),
            "recall@10": sum(recalls) / len(recalls) if recalls else None,
            "citation_precision": sum(cites) / len(cites) if cites else None,
            "n_citations": len(cites) if judged else None,
        }
    return out


def run_metadata(config: dict, library: Library, records: list[dict], *, resumed: int, new: int,
                 seconds: float) -> dict:
    """The `run` section of metrics.json: what was run, on which index, when, and how much was resumed."""
    names = [r.get("model") for r in records if r.get("model") and r.get("abstained") is False]
    documents = library.catalog.documents(status="active")
    return {
        "dataset": config["dataset"],
        "dataset_sha256": config["dataset_sha256"],
        "format": config["format"],
        "documents_dir": config["documents_dir"],
        "limit": config["limit"],
        "sample_seed": config["sample_seed"],
        "n": len(records),
        # which questions the metrics are over: results.jsonl may hold more (a run resumed with a smaller limit)
        "ids": [str(r["id"]) for r in records],
        "retrieval_only": config["retrieval_only"],
        "mode": config["mode"],
        "k": config["k"],
        "model": config["model"],
        "model_name": names[0] if names else None,
        "adapter": config["adapter"],
        "embedding_model": config["embedding_model"],
        "settings": config["settings"],
        "answer_correctness": config.get("answer_correctness"),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "index": {"generation": config["index_generation"], "documents": len(documents),
                  "chunks": library.catalog.count_chunks()},
        "resumed": resumed,
        "new": new,
        "seconds": round(seconds, 1),
    }


def _progress_bar(total: int, initial: int, enabled: bool):
    return tqdm(total=total, initial=initial, unit="q", desc="eval", file=sys.stderr, disable=not enabled)


def _plain(value):
    """A setting as JSON holds it (paths as strings)."""
    return str(value) if isinstance(value, Path) else value


def _write_json(path: Path, data: dict) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def _ms(t0: float) -> float:
    return round((time.perf_counter() - t0) * 1000, 1)
