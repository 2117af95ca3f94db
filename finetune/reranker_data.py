"""Gold questions -> reranker training lists: each question's fused candidates from comply's own retrievers (dense
and BM25, as the assistant retrieves), labelled by the gold-matching rule of `eval.metrics`.

A candidate is a positive when `relevant` says it matches a gold place; it is a hard negative only when it is not
relevant *and* its text neither contains nor is contained in a gold passage's text. The second check keeps out
what the matching rule would not call gold but a model could not tell apart from it: the same text under another
document or passage id (ObliQA repeats passages, and 17 of its keys are shared by several records). Those are left
unlabelled ("unsure") and never trained on.
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from tqdm import tqdm

from assistant.retrieval import Retriever
from eval.datasets import Evidence, GoldQuestion, load_dataset, select_part
from eval.metrics import RankedItem, normalise, ranked_item_from_chunk, relevant
from eval.runner import file_sha256
from finetune.train_loop import TrainError
from ingest.pipeline import Library
from ingest.settings import Settings


@dataclass
class Candidate:
    """One retrieved chunk of a question's candidate list, with its label and where the retrievers ranked it."""

    chunk_id: str
    text: str
    relevant: bool
    unsure: bool  # not gold by the matching rule, but its text overlaps a gold passage's: never a negative
    dense_rank: int | None
    bm25_rank: int | None
    item: dict = field(default_factory=dict)  # the RankedItem's fields, for the retrieval metrics

    @property
    def negative(self) -> bool:
        return not self.relevant and not self.unsure

    def ranked_item(self) -> RankedItem:
        return RankedItem(**{**self.item, "aliases": tuple(self.item.get("aliases") or ())})


@dataclass
class MinedQuestion:
    """A gold question with its fused candidates, best first, and the gold passages' texts."""

    id: str
    question: str
    gold_texts: list[str]
    candidates: list[Candidate]
    evidence: list[dict] = field(default_factory=list)
    also: list[dict] = field(default_factory=list)

    def positives(self) -> list[str]:
        """Texts to train on as relevant: the gold chunks retrieved, else the gold passages' own texts."""
        found = [c.text for c in self.candidates if c.relevant]
        return found or [t for t in self.gold_texts if t.strip()]

    def negatives(self, depth: int) -> list[Candidate]:
        """Hard negatives among the first `depth` candidates, best ranked first."""
        return [c for c in self.candidates[:depth] if c.negative]

    def gold(self) -> _Gold:
        """The question's gold places, in the shape `eval.metrics` reads."""
        return _Gold([Evidence(**e) for e in self.evidence], [Evidence(**e) for e in self.also])


@dataclass
class _Gold:
    evidence: list[Evidence]
    also: list[Evidence]


def overlaps_gold(text: str, gold_texts: Iterable[str]) -> bool:
    """True when the text contains, or is contained in, a gold passage's text (after normalising)."""
    t = normalise(text)
    return bool(t) and any(g and (g in t or t in g) for g in (normalise(x) for x in gold_texts))


def mine(retriever: Retriever, questions: list[GoldQuestion], depth: int = 50,
         on_question: Callable[[], None] | None = None) -> list[MinedQuestion]:
    """Each question's fused top-`depth` candidates (dense + BM25, RRF), labelled against its gold places."""
    mined = []
    for q in questions:
        gold_texts = [e.quote for e in [*q.evidence, *q.also] if e.quote]
        candidates = []
        for r in retriever.retrieve(q.question, depth, rerank=False):
            item = ranked_item_from_chunk(r.chunk)
            is_gold = relevant(item, q)
            candidates.append(Candidate(
                chunk_id=r.chunk.chunk_id, text=r.chunk.text, relevant=is_gold,
                unsure=not is_gold and overlaps_gold(r.chunk.text, gold_texts),
                dense_rank=r.dense_rank, bm25_rank=r.bm25_rank, item={**asdict(item), "aliases": list(item.aliases)}))
        mined.append(MinedQuestion(id=q.id, question=q.question, gold_texts=gold_texts, candidates=candidates,
                                   evidence=[asdict(e) for e in q.evidence], also=[asdict(e) for e in q.also]))
        if on_question is not None:
            on_question()
    return mined


def write_mined(path: Path, mined: list[MinedQuestion]) -> str:
    """Write the lists as JSON Lines (atomically); return the file's sha256."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    with tmp.open("w", encoding="utf-8") as f:
        for m in mined:
            f.write(json.dumps(asdict(m), ensure_ascii=False) + "\n")
    tmp.replace(path)
    return hashlib.sha256(path.read_bytes()).hexdigest()


def read_mined(path: Path) -> list[MinedQuestion]:
    """The lists written by `write_mined`."""
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            row = json.loads(line)
            row["candidates"] = [Candidate(**c) for c in row["candidates"]]
            out.append(MinedQuestion(**row))
    return out


@dataclass
class MinedParts:
    """The mined lists of the training and validation parts, their joint sha256, and the cards' data fields."""

    train: list[MinedQuestion]
    val: list[MinedQuestion]
    sha256: str
    data: dict


def mined_part(library: Library, questions: list[GoldQuestion], name: str, key: dict, folders: list[Path],
               progress: bool = True) -> tuple[list[MinedQuestion], str]:
    """One part's lists (and their sha256): read from the first of `folders` holding `mined-<name>.jsonl` mined
    under the same `key` (dataset, part, index generation...), else mined from `library` and written to the last."""
    for folder in folders:
        path, stamp = folder / f"mined-{name}.jsonl", folder / f"mined-{name}.json"
        if path.exists() and stamp.exists() and json.loads(stamp.read_text())["key"] == key:
            return read_mined(path), json.loads(stamp.read_text())["sha256"]
    retriever = Retriever(library, reranker=False)
    with tqdm(total=len(questions), desc=f"mining {name}", unit="q", file=sys.stderr, disable=not progress) as bar:
        rows = mine(retriever, questions, depth=key["depth"], on_question=lambda: bar.update(1))
    digest = write_mined(folders[-1] / f"mined-{name}.jsonl", rows)
    (folders[-1] / f"mined-{name}.json").write_text(json.dumps({"key": key, "sha256": digest}) + "\n")
    return rows, digest


def fusion_key(settings: Settings) -> dict:
    """What decides the fused lists besides the index: lists mined under other fusion settings are mined again."""
    return {"candidates": settings.candidates, "rrf_k": settings.rrf_k}


def mined_parts(settings: Settings, dataset: Path, format: str, documents_dir: Path | None, part: str,
                val_part: str, folders: list[Path], *, progress: bool = True, depth: int = 50) -> MinedParts:
    """The two parts' gold questions with their fused top `depth` from the library of `settings`, labelled (see
    `mined_part` for the reuse of lists mined before). DatasetError for a bad dataset, ValueError for equal or
    unknown parts, TrainError for an empty library."""
    if part == val_part:
        raise ValueError("--part and --val-part must differ")
    questions = load_dataset(dataset, format, documents_dir=documents_dir)
    parts = {"train": (part, select_part(questions, part)), "val": (val_part, select_part(questions, val_part))}
    library = Library(settings)
    try:
        chunks = library.catalog.count_chunks()
        if not chunks:
            raise TrainError(f"the library in {settings.home} is empty: ingest the documents the questions are "
                             f"about first")
        generation = library.catalog.generation()
        dataset_sha = file_sha256(dataset)
        mined = {name: mined_part(library, qs, name, {"dataset_sha256": dataset_sha, "part": part_name,
                                                      "questions": len(qs), "index_generation": generation,
                                                      "depth": depth, **fusion_key(settings)}, folders, progress)
                 for name, (part_name, qs) in parts.items()}
    finally:
        library.close()
    (train, train_sha), (val, val_sha) = mined["train"], mined["val"]
    return MinedParts(train, val, hashlib.sha256(f"{train_sha}:{val_sha}".encode()).hexdigest(),
                      {"dataset": dataset.name, "dataset_sha256": dataset_sha, "part": part, "val_part": val_part,
                       "mined_train_sha256": train_sha, "mined_val_sha256": val_sha, "index_generation": generation,
                       "chunks": chunks})
