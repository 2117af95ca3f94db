"""RAFT-style training data: gold questions -> (the assistant's exact prompt with k numbered sources, a cited
target answer), split by question id into train and validation.

For each question the sources are what our own retriever returns, so the model trains on the distractors it will
see at inference (`DataConfig.layout`): "raft", the gold chunks plus the best-ranked non-gold chunks, numbered in
retrieval order as the assistant numbers them (or shuffled with a seed fixed per question, `DataConfig.order`);
or "prompt", exactly the top k the assistant's prompt would hold, abstaining when the gold is not among them. The
target quotes the gold chunk's sentence most similar to the question (and reference answer, when there is one),
opened by its citation: "According to [n], ...". With probability `p_abstain` the gold chunks are left out and
the target is the abstention answer; unanswerable questions always get it.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from assistant.prompt import ABSTAIN_REPLIES, PROMPT_VERSION, build_messages, neutralise
from assistant.retrieval import Retriever
from eval.datasets import GoldQuestion, split
from eval.metrics import matches, ranked_item_from_chunk, relevant
from finetune.pii import DEFAULT_KINDS, Scrubber
from ingest.chunking import sentence_spans
from ingest.pipeline import Library
from ingest.types import Chunk, ComplyError

# Bumped whenever cited_target() writes targets differently: data built with another format is stale.
TARGET_FORMAT = 2  # 1: "<quote> [n]."; 2: "According to [n], <quote>."
SOURCE_CHARS = 900  # format_sources shows at most this much of a chunk: a quote must come from that part
MAX_QUOTE_CHARS = 320
# Clause numbers that open a sentence ("4.2.1", "(c)", "3.1.(b)"): the answer states content, the [n] says where.
_LEADING_NUMBER = re.compile(r"^(?:(?:\(?[0-9]{1,3}[a-z]?\)|\(?[a-z]{1,3}\)|[0-9]+(?:\.[0-9A-Za-z()]+)*\.?)\s+)+")


LAYOUTS = ("prompt", "raft")  # DataConfig.layout
ORDERS = ("retrieval", "shuffled")  # DataConfig.order (layout "raft")


class DataError(ComplyError):
    """Training data could not be built or read: the reason."""


@dataclass
class DataConfig:
    """How examples are built."""

    k: int | None = None  # sources per prompt; None = settings.top_k, the number the assistant uses
    # Extra abstention examples: the gold left out with this probability. With layout "prompt" the questions
    # whose gold the retriever missed already abstain (a quarter on ObliQA); 0.2 on top made the model abstain on
    # 70% of answerable questions (docs/benchmarks.md), so the default adds none.
    p_abstain: float = 0.0
    val_fraction: float = 0.2
    seed: int = 0
    candidates: int = 50  # retrieved chunks searched for gold and distractors
    # "prompt" (the default, the best measured; docs/benchmarks.md): the sources are exactly the top k the
    # retriever returns, as the assistant's prompt shows them; gold outside the top k is not added, and the target
    # abstains (the prompt cannot answer). "raft": the gold chunks (found deeper in the ranking or in the catalog
    # when retrieval missed them) plus the best distractors, arranged by `order`.
    layout: str = "prompt"
    # For layout "raft": "retrieval" puts the sources in the order of their retrieval rank (gold the retriever
    # missed goes last); "shuffled" is random (RAFT's recipe, no position prior).
    order: str = "retrieval"
    pii_kinds: tuple[str, ...] = DEFAULT_KINDS

    def __post_init__(self):
        if self.layout not in LAYOUTS or self.order not in ORDERS:
            raise DataError(f"layout must be one of {', '.join(LAYOUTS)} and order one of {', '.join(ORDERS)} "
                            f"(got {self.layout!r}, {self.order!r})")


@dataclass
class Example:
    """One training example: chat messages (the last one is the target) and where the gold sources are."""

    id: str
    messages: list[dict]
    gold_sources: list[int] = field(default_factory=list)  # 1-based source numbers, as cited in the target
    abstain: bool = False
    # Where the gold was found, even when left out for abstention: "retrieval" (among the candidates; with layout
    # "prompt", in the top k), "catalog" (layout "raft": retrieval missed it) or "none".
    gold_found_by: str = "retrieval"
    source_chunks: list[str] = field(default_factory=list)  # chunk ids of sources 1..k, in prompt order

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False)


def visible_text(chunk: Chunk) -> str:
    """The chunk text as the model sees it in the prompt (neutralised, whitespace collapsed, truncated)."""
    text = " ".join(neutralise(chunk.text).split())
    if len(text) > SOURCE_CHARS:
        text = text[:SOURCE_CHARS].rsplit(" ", 1)[0]
    return text


def _sentences(text: str) -> list[str]:
    out = []
    for s, e in sentence_spans(text):
        piece = text[s:e].strip()
        if len(re.findall(r"[A-Za-z]{3,}", piece)) >= 3:
            out.append(piece)
    return out or [text.strip()]


def _clip(sentence: str) -> str:
    """The quote as the answer states it: no leading clause number, at most MAX_QUOTE_CHARS (cut at a comma or
    semicolon when there is one late enough, else at a word)."""
    sentence = _LEADING_NUMBER.sub("", sentence.strip()) or sentence.strip()
    if len(sentence) > MAX_QUOTE_CHARS:
        head = sentence[:MAX_QUOTE_CHARS]
        cut = max(head.rfind(", "), head.rfind("; "))
        sentence = head[:cut] if cut > MAX_QUOTE_CHARS // 2 else head.rsplit(" ", 1)[0]
    sentence = sentence.rstrip(" .;:,")
    return sentence[:1].upper() + sentence[1:]


# Words that open a quoted sentence and read as ordinary words after "According to [n],".
_LOWERCASE_OPENERS = frozenset(
    "a an the this that these those each every any all no such where if when whether unless subject in for as "
    "it there before after under upon on at by with without except".split())


def _after_marker(sentence: str) -> str:
    first = sentence.split(" ", 1)[0]
    return sentence[:1].lower() + sentence[1:] if first.lower() in _LOWERCASE_OPENERS else sentence


def cited_target(question: GoldQuestion, numbered_gold: list[tuple[int, Chunk]], embedder) -> str:
    """One quoted sentence per gold source, each opened by its `[n]`: "According to [n], <sentence>." with the
    supporting sentence of the chunk most similar (embedding cosine) to the question and reference answer.

    The marker comes first on purpose. Every abstention starts with the same words, while answers start with
    whatever their quote starts with; a greedy decoder picks the single most likely first tokens, so when the
    answers' first tokens are scattered it can abstain even where answering is more likely overall. A fixed
    opening makes the first token the decision between answering and abstaining, and commits every answer to a
    citation (docs/benchmarks.md, "Fine-tuning", has the runs)."""
    probe = question.question if not question.answer else f"{question.question} {question.answer}"
    probe_vec = embedder.encode_query(probe)
    parts = []
    for n, chunk in sorted(numbered_gold, key=lambda p: p[0]):
        candidates = _sentences(visible_text(chunk))
        vecs = embedder.encode(candidates)
        best = candidates[int(np.argmax(vecs @ probe_vec))]
        parts.append(f"According to [{n}], {_after_marker(_clip(best))}.")
    return " ".join(parts)


class ExampleBuilder:
    """Builds examples for questions against one Library with the assistant's retriever."""

    def __init__(self, library: Library, config: DataConfig | None = None):
        self.library = library
        self.config = config or DataConfig()
        self.k = self.config.k or library.settings.top_k
        self.retriever = Retriever(library)
        self.scrubber = Scrubber(tuple(self.config.pii_kinds))
        self._doc_chunks: dict[str, list[Chunk]] = {}

    def _catalog_gold(self, question: GoldQuestion) -> list[Chunk]:
        """Gold chunks found by reading the named documents from the catalog (when retrieval missed them)."""
        found: list[Chunk] = []
        for rec in self.library.catalog.documents():
            if rec.status != "active":
                continue
            names = {rec.document_id, rec.file_name, rec.external_id or ""}
            places = [ev for ev in (*question.evidence, *question.also) if ev.document in names]
            if not places:
                continue
            if rec.doc_key not in self._doc_chunks:
                self._doc_chunks[rec.doc_key] = self.library.catalog.chunks_of(rec.doc_key)
            for chunk in self._doc_chunks[rec.doc_key]:
                item = ranked_item_from_chunk(chunk)
                if any(matches(item, ev) for ev in places):
                    found.append(chunk)
        return found

    def gold_chunks(self, question: GoldQuestion, retrieved: list[Chunk]) -> tuple[list[Chunk], str]:
        """One chunk per evidence item (retrieved ones first), and how they were found."""
        pool, how = retrieved, "retrieval"
        picked: list[Chunk] = []
        for attempt in (0, 1):
            picked = []
            for ev in question.evidence:
                for chunk in pool:
                    if chunk not in picked and matches(ranked_item_from_chunk(chunk), ev):
                        picked.append(chunk)
                        break
            if len(picked) == len(question.evidence) or attempt == 1:
                break
            pool, how = retrieved + [c for c in self._catalog_gold(question) if c not in retrieved], "catalog"
        return picked, (how if picked else "none")

    def build(self, question: GoldQuestion) -> Example:
        """The example for one question (see `DataConfig.layout`)."""
        rng = random.Random(f"{self.config.seed}\x00{question.id}")
        retrieved = [r.chunk for r in self.retriever.retrieve(question.question, self.config.candidates)]
        distractors = [c for c in retrieved if not relevant(ranked_item_from_chunk(c), question)]
        if self.config.layout == "prompt":
            top = retrieved[: self.k]
            gold = [c for c in top if c not in distractors] if question.answerable else []
            how = "retrieval" if gold else "none"
            abstain = not gold or rng.random() < self.config.p_abstain
            # Left out for abstention: the gold's places go to the next distractors, the rest keep their rank.
            sources = distractors[: self.k] if abstain else top
            gold = [] if abstain else gold
        else:
            sources, gold, how, abstain = self._raft_sources(question, rng, retrieved, distractors)
        numbered = [(i + 1, c) for i, c in enumerate(sources) if c in gold]
        target = (ABSTAIN_REPLIES[PROMPT_VERSION] if abstain  # the quote is chosen in the calibrated model's space
                  else cited_target(question, numbered, self.library.base_embedder()))
        messages = build_messages(question.question, sources)
        messages.append({"role": "assistant", "content": target})
        messages = self.scrubber.scrub_messages(messages)
        return Example(id=question.id, messages=messages, gold_sources=[n for n, _ in numbered], abstain=abstain,
                       gold_found_by=how, source_chunks=[c.chunk_id for c in sources])

    def _raft_sources(self, question, rng, retrieved, distractors):
        """Layout "raft": (sources, gold, how found, abstain)."""
        gold, how = self.gold_chunks(question, retrieved) if question.answerable else ([], "none")
        abstain = not gold or rng.random() < self.config.p_abstain
        if abstain:
            sources = distractors[: self.k]
            gold = []
        else:
            gold = gold[: max(1, self.k - 1)]
            sources = gold + distractors[: self.k - len(gold)]
        if self.config.order == "shuffled":
            rng.shuffle(sources)
        else:
            rank = {c.chunk_id: i for i, c in enumerate(retrieved)}
            sources.sort(key=lambda c: rank.get(c.chunk_id, len(retrieved)))
        return sources, gold, how, abstain


def sha256_files(paths: list[Path]) -> str:
    """sha256 over the bytes of the files, in the given order."""
    h = hashlib.sha256()
    for p in paths:
        h.update(Path(p).read_bytes())
    return h.hexdigest()


def write_eval_jsonl(questions: list[GoldQuestion], path: Path) -> Path:
    """Questions in the project's gold JSONL format (what `eval.runner.run_eval` reads)."""
    with open(path, "w", encoding="utf-8") as f:
        for q in questions:
            obj = {"id": q.id, "question": q.question, "answerable": q.answerable, "answer": q.answer,
                   "evidence": [asdict(e) for e in q.evidence], "also": [asdict(e) for e in q.also]}
            f.write(json.dumps(obj, ensure_ascii=False) + "\n")
    return path


def build_dataset(library: Library, questions: list[GoldQuestion], out: Path, config: DataConfig | None = None,
                  *, name: str = "dataset", part: str | None = None, progress=None) -> dict:
    """Split questions by id, build train.jsonl and val.jsonl (and val_questions.jsonl in the gold format for
    evaluation), and write manifest.json with counts, PII replacements and the data's sha256. Returns the manifest."""
    config = config or DataConfig()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    train_q, val_q = split(questions, config.val_fraction, config.seed)
    builder = ExampleBuilder(library, config)
    counts: dict[str, dict[str, int]] = {}
    for side, qs in (("train", train_q), ("val", val_q)):
        stats = {"examples": 0, "abstain": 0, "gold_from_catalog": 0, "gold_not_found": 0}
        with open(out / f"{side}.jsonl", "w", encoding="utf-8") as f:
            for q in (progress(qs, side) if progress else qs):
                ex = builder.build(q)
                stats["examples"] += 1
                stats["abstain"] += ex.abstain
                stats["gold_from_catalog"] += ex.gold_found_by == "catalog"
                stats["gold_not_found"] += q.answerable and ex.gold_found_by == "none"
                f.write(ex.to_json() + "\n")
        counts[side] = stats
    write_eval_jsonl(val_q, out / "val_questions.jsonl")
    overlap = {q.id for q in train_q} & {q.id for q in val_q}
    if overlap:  # split() cannot do this; the check guards the promise that validation is never trained on
        raise DataError(f"{len(overlap)} question ids are in both train and validation")
    manifest = {
        "name": name,
        "sha256": sha256_files([out / "train.jsonl", out / "val.jsonl"]),
        "questions": len(questions),
        "part": part,  # the fixed part of the gold set the questions came from (eval.datasets.PARTS), or None
        "train": counts["train"],
        "val": counts["val"],
        "config": {**asdict(config), "k": builder.k, "pii_kinds": list(config.pii_kinds)},
        "target_format": TARGET_FORMAT,
        "pii_replacements": dict(builder.scrubber.counts),
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return manifest


def load_examples(path: Path) -> list[Example]:
    """Examples from a train.jsonl / val.jsonl file."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path} does not exist (run `comply finetune build-data` first)")
    out = []
    for line_no, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if line.strip():
            try:
                out.append(Example(**json.loads(line)))
            except (json.JSONDecodeError, TypeError) as e:
                raise DataError(f"{path}:{line_no}: not a training example ({e})") from e
    return out


def load_manifest(data_dir: Path) -> dict:
    """The manifest.json of a data folder."""
    path = Path(data_dir) / "manifest.json"
    if not path.is_file():
        raise DataError(f"{path} does not exist (run `comply finetune build-data` first)")
    return json.loads(path.read_text())
