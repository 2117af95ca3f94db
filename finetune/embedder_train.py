"""Fine-tune the embedder: the packaged all-MiniLM-L6-v2 (a sentence-transformers `SentenceTransformer`) trained with
`MultipleNegativesRankingLoss` on (question, gold passage, hard negative) rows from the reranker's mined lists
(finetune/reranker_data.py), stopped early on a validation part, saved with a card.

Each step takes `batch_questions` rows; every question is scored against every passage of the step (its own gold
and hard negatives and the other rows' passages: in-batch negatives). The rows of a step are packed so that no
passage of one row is gold for another row's question (ObliQA asks several questions of the same passage), so a
gold passage is never a negative, in the batch or as a mined hard negative. Written as a plain loop on the shared
`train_loop` (checkpoints, resume, early stopping) rather than `SentenceTransformerTrainer`, which needs the
`datasets` package comply does not install; the loss is sentence-transformers' own, fed embeddings computed in
length-sorted micro-batches (a question padded to its passages' length costs several times its own). Validation
ranks each question's mined candidate list by cosine similarity: a measure of the ordering within the list, not of
retrieval from the whole library (the lists were found with the frozen model; re-embedding the library is not
built yet).
"""

from __future__ import annotations

import json
import random
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

from eval.metrics import normalise, relevant
from finetune.reranker_data import Candidate, MinedQuestion
from finetune.reranker_train import validate_lists
from finetune.train_loop import CHECKPOINT, ListTrainConfig, TrainError, train_loop  # noqa: F401 (CHECKPOINT: where a run resumes)
from ingest.embedding import cpu_supports_bf16, resolve_embedding_model
from ingest.settings import DEFAULT_EMBEDDING

CARD = "card.json"
FROZEN = "frozen.json"


@dataclass(kw_only=True)
class EmbedTrainConfig(ListTrainConfig):
    """The training recipe."""

    negatives: int = 1  # mined hard negatives per row: (question, gold, negative) triples
    batch_questions: int = 16
    lr: float = 2e-5
    warmup: float = 0.1
    max_length: int = 256  # the model's own window, the one ingestion embeds with
    eval_every: int = 50
    eval_depth: int = 30
    # auto | on | off: bf16 autocast for the training steps, by default where the CPU has native bf16. Unlike the
    # reranker's steps, these were faster in bf16 on the shared 2-core EPYC: 4.0-4.7 s against 5.9-7.1 s float32
    # for 16 ObliQA rows (alternating, same batches)
    bf16: str = "auto"
    scale: float = 20.0  # MultipleNegativesRankingLoss's: cosine x 20 (temperature 0.05)


@dataclass
class Row:
    """One training row: a question, one gold passage and its hard negatives, and what is gold for the question."""

    question: MinedQuestion
    positive: str
    negatives: list[Candidate]
    gold_candidate: Candidate | None  # the positive's entry in the candidate list (None: a gold text not retrieved)
    guard: list[str]  # normalised texts that must never be a negative for this question

    def passages(self) -> list[tuple[str, Candidate | None]]:
        """The row's passages, gold first, with their candidate entry where they have one."""
        return [(self.positive, self.gold_candidate), *((c.text, c) for c in self.negatives)]

    def is_gold(self, text: str, candidate: Candidate | None) -> bool:
        """True when the passage may be gold for this row's question: its text overlaps a gold text or a candidate
        that was not a negative for it, or its place matches the question's gold places."""
        t = normalise(text)
        return (any(g and (g in t or t in g) for g in self.guard)
                or (candidate is not None and relevant(candidate.ranked_item(), self.question.gold())))


def rows(train: list[MinedQuestion], config: EmbedTrainConfig, epoch: int) -> list[Row]:
    """One epoch's rows, shuffled; a pure function of the seed and epoch. Questions without a positive or without
    `negatives` hard negatives in their top `negative_depth` are left out."""
    rng = random.Random(f"{config.seed}:{epoch}")
    out = []
    for q in train:
        positives, negatives = q.positives(), q.negatives(config.negative_depth)
        if not positives or len(negatives) < config.negatives:
            continue
        positive = rng.choice(positives)
        gold = next((c for c in q.candidates if c.relevant and c.text == positive), None)
        guard = [normalise(t) for t in [*q.gold_texts, *(c.text for c in q.candidates if not c.negative)]]
        out.append(Row(q, positive, rng.sample(negatives, config.negatives), gold, guard))
    rng.shuffle(out)
    return out


def batches(epoch_rows: list[Row], size: int) -> list[list[Row]]:
    """The rows packed into steps of at most `size`, in order: each row goes to the first step still open where
    none of its passages is gold for another row's question and none of theirs for its question (first fit)."""
    steps: list[list[Row]] = []
    open_steps: list[list[Row]] = []
    for row in epoch_rows:
        step = next((s for s in open_steps if all(_apart(row, other) for other in s)), None)
        if step is None:
            step = []
            steps.append(step)
            open_steps.append(step)
        step.append(row)
        if len(step) == size:
            open_steps = [s for s in open_steps if s is not step]
    return steps


def _apart(a: Row, b: Row) -> bool:
    return (not any(a.is_gold(text, c) for text, c in b.passages())
            and not any(b.is_gold(text, c) for text, c in a.passages()))


def embed(model, texts: list[str], autocast: bool, micro: int = 16):
    """Unit embeddings of the texts (with gradients), computed in micro-batches of similar length."""
    import torch  # lazy: torch takes ~2 s to import

    lengths = [len(ids) for ids in model.tokenizer(texts, truncation=True, max_length=model.max_seq_length)
               ["input_ids"]]
    order = sorted(range(len(texts)), key=lambda i: lengths[i])
    out = [None] * len(texts)
    for start in range(0, len(order), micro):
        idx = order[start:start + micro]
        features = model.preprocess([texts[i] for i in idx])
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            vectors = model(features)["sentence_embedding"].float()
        for j, i in enumerate(idx):
            out[i] = vectors[j]
    return torch.stack(out)


def batch_loss(model, loss, batch: list[Row], autocast: bool):
    """`MultipleNegativesRankingLoss` of one step: each question against all the step's passages."""
    questions = embed(model, [r.question.question for r in batch], autocast)
    columns = [[r.positive for r in batch],
               *([r.negatives[k].text for r in batch] for k in range(len(batch[0].negatives)))]
    passages = embed(model, [t for column in columns for t in column], autocast)
    n = len(batch)
    return loss.compute_loss_from_embeddings([questions, *(passages[k * n:(k + 1) * n] for k in range(len(columns)))],
                                             None)


def scorer(model, questions: list[MinedQuestion], depth: int, autocast: bool, batch_size: int = 32):
    """A `validate_lists` scorer: cosine similarity of the question and each candidate, every distinct text of
    the lists embedded once."""
    import torch  # lazy: torch takes ~2 s to import

    texts = list(dict.fromkeys(t for q in questions for t in (q.question, *(c.text for c in q.candidates[:depth]))))
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        vectors = model.encode(texts, batch_size=batch_size, normalize_embeddings=True, convert_to_tensor=True,
                               show_progress_bar=False).float()
    index = {t: i for i, t in enumerate(texts)}

    def score(question: str, candidates: list[str]) -> list[float]:
        return (vectors[[index[t] for t in candidates]] @ vectors[index[question]]).tolist()
    return score


def validate(model, val: list[MinedQuestion], depth: int) -> dict:
    """MAP@10, Recall@1, ... of each validation list in fused order and ordered by the model's cosine similarity."""
    metrics = validate_lists(scorer(model, val, depth, cpu_supports_bf16()), val, depth)
    return {"fused": metrics["fused"], "embedder": metrics["reranked"]}


def load_model(name: str, max_length: int):
    """The sentence-transformers model `name` (the packaged default or a data/embedders/ name resolved to its folder),
    offline, on CPU, with float32 weights also when the folder stores bf16 (a fine-tuned embedder trained further)."""
    import torch  # lazy: torch takes ~2 s to import
    from sentence_transformers import SentenceTransformer  # lazy: sentence_transformers takes ~6 s to import

    model = SentenceTransformer(resolve_embedding_model(name), device="cpu", local_files_only=True,
                                model_kwargs={"dtype": torch.float32})
    model.max_seq_length = max_length
    return model


def train_embedder(train: list[MinedQuestion], val: list[MinedQuestion], work: Path, config: EmbedTrainConfig,
                   *, data_sha256: str = "", progress: bool = True, resume: bool = True) -> dict:
    """Train in `work` (checkpoint, best model) and return the card: config, data hash, the frozen model's and the
    best step's validation, history, seconds. The best model (by validation MAP@10) is in `work/best`."""
    import torch  # lazy: torch takes ~2 s to import
    from sentence_transformers.sentence_transformer.losses import (  # lazy: ~6 s to import (torch)
        MultipleNegativesRankingLoss,
    )

    work.mkdir(parents=True, exist_ok=True)
    autocast = config.bf16 == "on" or (config.bf16 == "auto" and cpu_supports_bf16())
    val = sorted(val, key=lambda q: q.id)
    val = random.Random(config.seed).sample(val, min(config.eval_questions, len(val)))
    torch.manual_seed(config.seed)
    model = load_model(config.base_model, config.max_length)
    loss = MultipleNegativesRankingLoss(model, scale=config.scale)
    epoch_batches = [batches(rows(train, config, e), config.batch_questions) for e in range(config.epochs)]
    steps_per_epoch = len(epoch_batches[0])
    # each epoch's shuffle packs its rows into its own number of steps (first fit keeps a question's gold passages
    # out of the other questions' steps), so the steps are counted over the epochs, not as epochs x the first one
    schedule = [(epoch, index) for epoch, steps in enumerate(epoch_batches) for index in range(len(steps))]
    total = len(schedule)
    if config.max_steps:
        total = min(total, config.max_steps)
    if total == 0:
        raise TrainError("no training rows: every question lacks a positive or enough hard negatives")
    frozen = _frozen(model, val, work, config, data_sha256)

    def loss_at(step: int):
        epoch, index = schedule[step]
        return batch_loss(model, loss, epoch_batches[epoch][index], autocast)

    def check() -> tuple[dict, tuple]:
        metrics = validate(model, val, config.eval_depth)
        return metrics, (metrics["embedder"]["map@10"],)

    state = train_loop(model, work=work, config=asdict(config), data_sha256=data_sha256, total=total,
                       loss_at=loss_at, validate=check, lr=config.lr, warmup=config.warmup,
                       eval_every=config.eval_every, checkpoint_every=config.checkpoint_every,
                       patience=config.patience, resume=resume, progress=progress, desc="embedder")
    return {"base_model": config.base_model, "config": asdict(config), "data_sha256": data_sha256,
            "train_questions": len(train), "train_rows": sum(map(len, epoch_batches[0])),
            "val_questions": len(val), "steps": state["step"], "steps_per_epoch": steps_per_epoch,
            "best_step": state["best_step"], "stopped_early": state["stopped_early"], "bf16_autocast": autocast,
            "seconds": round(state["seconds"], 1), "frozen": frozen, "history": state["history"],
            "best": next(h for h in state["history"] if h["step"] == state["best_step"])}


def _frozen(model, val: list[MinedQuestion], work: Path, config: EmbedTrainConfig, data_sha256: str) -> dict:
    """The untrained model's validation (computed once per recipe and data, kept in the work folder)."""
    path = work / FROZEN
    key = {"config": asdict(config), "data_sha256": data_sha256}
    if path.exists():
        saved = json.loads(path.read_text(encoding="utf-8"))
        if saved["key"] == key:
            return saved["metrics"]
    model.eval()
    metrics = validate(model, val, config.eval_depth)
    path.write_text(json.dumps({"key": key, "metrics": metrics}) + "\n", encoding="utf-8")
    return metrics


def export(best: Path, out: Path, card: dict) -> None:
    """Write the best model (the sentence-transformers folder `save` wrote) to `out` in bf16 (half the size; loaded
    as float32 on CPUs without bf16) with its card (card.json and a README), replacing what is there."""
    import torch  # lazy: torch takes ~2 s to import
    from sentence_transformers import SentenceTransformer  # lazy: sentence_transformers takes ~6 s to import

    tmp = out.with_name(out.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    model = SentenceTransformer(str(best), device="cpu", local_files_only=True)
    model.to(torch.bfloat16)
    model.save(str(tmp))
    (tmp / CARD).write_text(json.dumps(card, indent=2) + "\n", encoding="utf-8")
    (tmp / "README.md").write_text(card_markdown(card), encoding="utf-8")
    if out.exists():
        shutil.rmtree(out)
    tmp.replace(out)


def card_markdown(card: dict) -> str:
    """The human-readable card (README.md) of a fine-tuned embedder, from its card.json."""
    frozen, best, data, cfg = card["frozen"], card["best"], card.get("data", {}), card["config"]
    rows_ = "\n".join(f"| {name} | {frozen['fused'][k]:.3f} | {frozen['embedder'][k]:.3f} | "
                      f"{best['embedder'][k]:.3f} |"
                      for name, k in (("Recall@1", "recall@1"), ("Recall@10", "recall@10"), ("MAP@10", "map@10"),
                                      ("MRR", "mrr")))
    machine = card.get("machine", {})
    return f"""# {card.get('name', 'embedder')}

A sentence embedding model fine-tuned by comply (`comply adapt embedder`): a sentence-transformers
`SentenceTransformer` (BERT, mean pooling, unit vectors; weights stored in bf16). A library searches with it once
it is built with it (`index_embedding_model`, for new libraries) or re-embedded with it (`comply retrievers
register embedder FOLDER`, then `comply retrievers activate embedder NAME`); the verifier keeps the packaged
all-MiniLM-L6-v2.

- **Base model:** {card['base_model']} ({'the packaged all-MiniLM-L6-v2' if card['base_model'] == DEFAULT_EMBEDDING
  else 'a fine-tuned embedder, trained further'})
- **Data:** {data.get('dataset')} (sha256 `{data.get('dataset_sha256')}`), part `{data.get('part')}`:
  {card['train_questions']} questions, {card['train_rows']} rows of (question, gold passage, {cfg['negatives']}
  hard negative(s) from the fused top {cfg['negative_depth']} of comply's BM25 + dense retrievers over the ingested
  library, index generation {data.get('index_generation')}); mined lists' sha256 `{card['data_sha256']}`. Passages
  whose text overlaps a gold passage are never negatives, mined or in the batch.
- **Loss:** sentence-transformers `MultipleNegativesRankingLoss` (scale {cfg['scale']}), {cfg['batch_questions']}
  rows per step, in-batch negatives.
- **Validation / early stopping:** part `{data.get('val_part')}`, a seeded sample of {card['val_questions']}
  questions, MAP@10 of each question's fused top {cfg['eval_depth']} ordered by cosine similarity, every
  {cfg['eval_every']} steps, patience {cfg['patience']}.
- **Training:** {card['steps']} steps (best at step {card['best_step']}), lr {cfg['lr']}, max length
  {cfg['max_length']} tokens, {card['seconds'] / 60:.1f} min on {machine.get('cpu')} ({machine.get('cores')} cores).
- **Reproduce:** `{card.get('reproduce')}`

Validation within the candidate lists (fused = the hybrid order; frozen and trained = ordered by each model's
cosine similarity):

| metric | fused | frozen | trained |
| --- | --- | --- | --- |
{rows_}
"""
