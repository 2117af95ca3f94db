"""Train the cross-encoder reranker: a sentence-transformers `CrossEncoder` built on the packaged all-MiniLM-L6-v2
(a new one-logit head), trained listwise on mined lists (finetune/reranker_data.py), stopped early on a validation
part, saved in bf16 with a card.

Each step takes `batch_questions` questions; each gives a group of one positive and `negatives` hard negatives drawn
(seeded per epoch) from its fused top `negative_depth`, and the loss is the softmax cross-entropy of the positive
within its group (the multiple-negatives ranking objective restricted to the question's own hard negatives: in-batch
passages of other questions are too easy to teach anything). Written as a plain loop rather than
`CrossEncoderTrainer`, which needs the `datasets` package that comply does not install; it checkpoints (model,
optimiser, schedule, step, best score) every `checkpoint_every` steps and resumes from there, and the batches are a
pure function of the seed and the epoch, so a resumed run sees exactly the batches it would have.
"""

from __future__ import annotations

import json
import math
import random
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from assistant.flat_cross import CrossEncoderPairs
from eval.metrics import map_at_k, mrr, recall_at_k
from finetune.reranker_data import MinedQuestion
from finetune.train_loop import CHECKPOINT, ListTrainConfig, TrainError, train_loop  # noqa: F401 (CHECKPOINT: where a run resumes)
from ingest.embedding import cpu_supports_bf16, resolve_embedding_model
from ingest.settings import DEFAULT_EMBEDDING

CARD = "card.json"


@dataclass(kw_only=True)
class RerankTrainConfig(ListTrainConfig):
    """The training recipe (docs/benchmarks.md measures the default on 2 cores)."""

    negatives: int = 3
    batch_questions: int = 4
    lr: float = 5e-5
    warmup: float = 0.05
    max_length: int = 192
    eval_every: int = 100
    eval_depth: int = 20
    # auto | on | off: bf16 autocast for the training steps. Off by default: on the shared 2-core EPYC it was not
    # faster than float32 for the backward pass (the casts of every weight each step ate the gain); inference
    # and validation run in bf16 where the CPU has it.
    bf16: str = "off"


def groups(train: list[MinedQuestion], config: RerankTrainConfig, epoch: int) -> list[tuple[str, list[str]]]:
    """One epoch's (question, [positive, negative...]) groups, shuffled; a pure function of the seed and epoch.
    Questions without `negatives` hard negatives in their top `negative_depth` are left out."""
    rng = random.Random(f"{config.seed}:{epoch}")
    out = []
    for q in train:
        positives, negatives = q.positives(), q.negatives(config.negative_depth)
        if not positives or len(negatives) < config.negatives:
            continue
        picked = rng.sample(negatives, config.negatives)
        out.append((q.question, [rng.choice(positives), *(c.text for c in picked)]))
    rng.shuffle(out)
    return out


def group_loss(model, batch: list[tuple[str, list[str]]], autocast: bool, micro: int = 8):
    """Softmax cross-entropy of each group's first text (the positive) among its group. The pairs are run in
    micro-batches of similar length (padding a step to its longest pair cost ~2x on ObliQA's passages)."""
    import torch  # lazy: torch takes ~2 s to import

    pairs = [(question, text) for question, texts in batch for text in texts]
    lengths = [len(ids) for ids in model.tokenizer([q for q, _ in pairs], [t for _, t in pairs], truncation=True,
                                                   max_length=model.max_length)["input_ids"]]
    order = sorted(range(len(pairs)), key=lambda i: lengths[i])
    scores = [None] * len(pairs)
    for start in range(0, len(order), micro):
        idx = order[start:start + micro]
        features = model.preprocess([pairs[i] for i in idx])
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            out = model(features)["scores"].float().view(-1)
        for j, i in enumerate(idx):
            scores[i] = out[j]
    logits = torch.stack(scores).view(len(batch), -1)
    return torch.nn.functional.cross_entropy(logits, torch.zeros(len(batch), dtype=torch.long))


def validate_lists(score: Callable[[str, list[str]], list[float]], questions: list[MinedQuestion], depth: int) -> dict:
    """Retrieval metrics of the fused top `depth` reordered by `score`, and of the fused order itself."""
    fused, reranked = [], []
    for q in questions:
        cands = q.candidates[:depth]
        if not cands:
            continue
        s = score(q.question, [c.text for c in cands])
        order = sorted(range(len(cands)), key=lambda i: -s[i])
        gold = q.gold()
        fused.append((gold, [c.ranked_item() for c in cands]))
        reranked.append((gold, [cands[i].ranked_item() for i in order]))
    return {"fused": _metrics(fused), "reranked": _metrics(reranked)}


def _metrics(runs) -> dict:
    n = max(1, len(runs))
    return {"recall@1": round(sum(recall_at_k(r, g, 1) for g, r in runs) / n, 4),
            "recall@10": round(sum(recall_at_k(r, g, 10) for g, r in runs) / n, 4),
            "map@10": round(sum(map_at_k(r, g, 10) for g, r in runs) / n, 4),
            "mrr": round(sum(mrr(r, g) for g, r in runs) / n, 4)}


def cross_scorer(model, autocast: bool, batch_size: int = 32):
    """A `validate_lists` scorer: the cross-encoder's raw logit of (question, candidate)."""
    pairs = CrossEncoderPairs(model, autocast=autocast)

    def score(question: str, texts: list[str]) -> list[float]:
        return pairs.score_pairs([(question, t) for t in texts], batch_size)
    return score


def train_reranker(train: list[MinedQuestion], val: list[MinedQuestion], work: Path, config: RerankTrainConfig,
                   *, data_sha256: str = "", progress: bool = True, resume: bool = True) -> dict:
    """Train in `work` (checkpoint, best model) and return the card: config, data hash, history, best metrics,
    seconds. The best model (by validation MAP@10 of the reranked fused list) is in `work/best`."""
    import torch  # lazy: torch takes ~2 s to import
    from sentence_transformers import CrossEncoder  # lazy: sentence_transformers takes ~6 s to import

    work.mkdir(parents=True, exist_ok=True)
    autocast = config.bf16 == "on" or (config.bf16 == "auto" and cpu_supports_bf16())
    rng_val = random.Random(config.seed)
    val = sorted(val, key=lambda q: q.id)
    val = rng_val.sample(val, min(config.eval_questions, len(val)))
    torch.manual_seed(config.seed)
    # float32 weights for training, also when the base is a reranker stored in bf16 (continued training)
    model = CrossEncoder(resolve_embedding_model(config.base_model), num_labels=1, max_length=config.max_length,
                         device="cpu", local_files_only=True, model_kwargs={"dtype": torch.float32})
    epoch_groups = [groups(train, config, e) for e in range(config.epochs)]
    steps_per_epoch = math.ceil(len(epoch_groups[0]) / config.batch_questions)
    total = steps_per_epoch * config.epochs
    if config.max_steps:
        total = min(total, config.max_steps)
    if total == 0:
        raise TrainError("no training groups: every question lacks a positive or enough hard negatives")

    def loss_at(step: int):
        epoch, index = divmod(step, steps_per_epoch)
        return group_loss(model, epoch_groups[epoch][index * config.batch_questions:(index + 1) *
                                                     config.batch_questions], autocast)

    def validate() -> tuple[dict, tuple]:
        metrics = validate_lists(cross_scorer(model, cpu_supports_bf16()), val, config.eval_depth)
        return metrics, (metrics["reranked"]["map@10"],)

    state = train_loop(model, work=work, config=asdict(config), data_sha256=data_sha256, total=total,
                       loss_at=loss_at, validate=validate, lr=config.lr, warmup=config.warmup,
                       eval_every=config.eval_every, checkpoint_every=config.checkpoint_every,
                       patience=config.patience, resume=resume, progress=progress, desc="reranker")
    return {"base_model": config.base_model, "config": asdict(config), "data_sha256": data_sha256,
            "train_questions": len(train), "train_groups": len(epoch_groups[0]), "val_questions": len(val),
            "steps": state["step"], "best_step": state["best_step"], "stopped_early": state["stopped_early"],
            "bf16_autocast": autocast, "seconds": round(state["seconds"], 1), "history": state["history"],
            "best": next(h for h in state["history"] if h["step"] == state["best_step"])}


def export_bf16(best: Path, out: Path, card: dict, readme: str | None = None) -> None:
    """Write the best model to `out` in bf16 with its card (card.json and a README, by default the reranker's),
    replacing what is there."""
    import torch  # lazy: torch takes ~2 s to import
    from sentence_transformers import CrossEncoder  # lazy: sentence_transformers takes ~6 s to import

    model = CrossEncoder(str(best), device="cpu", local_files_only=True)
    model.model.to(torch.bfloat16)
    tmp = out.with_name(out.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    model.save_pretrained(str(tmp))
    (tmp / CARD).write_text(json.dumps(card, indent=2) + "\n", encoding="utf-8")
    (tmp / "README.md").write_text(readme if readme is not None else card_markdown(card), encoding="utf-8")
    if out.exists():
        shutil.rmtree(out)
    tmp.replace(out)


def card_markdown(card: dict) -> str:
    """The human-readable card (README.md) of a trained reranker, from its card.json."""
    best, data, cfg = card["best"], card.get("data", {}), card["config"]
    rows = "\n".join(f"| {name} | {best['fused'][k]:.3f} | {best['reranked'][k]:.3f} |"
                     for name, k in (("Recall@1", "recall@1"), ("Recall@10", "recall@10"), ("MAP@10", "map@10"),
                                     ("MRR", "mrr")))
    machine = card.get("machine", {})
    return f"""# {card.get('name', 'reranker')}

A cross-encoder reranker trained by comply (`comply adapt reranker`): a sentence-transformers `CrossEncoder`
(BERT, one logit; weights stored in bf16) scoring (question, passage) pairs. comply reranks the fused hybrid
candidates with it (settings `rerank`, `reranker_model`, `rerank_depth`; docs/architecture.md).

- **Base model:** {card['base_model']} ({'the packaged all-MiniLM-L6-v2; a new classification head'
  if card['base_model'] == DEFAULT_EMBEDDING else 'a trained reranker, trained further'})
- **Data:** {data.get('dataset')} (sha256 `{data.get('dataset_sha256')}`), part `{data.get('part')}`:
  {card['train_questions']} questions, {card['train_groups']} groups of 1 gold passage + {cfg['negatives']} hard
  negatives drawn from the fused top {cfg['negative_depth']} of comply's BM25 + dense retrievers over the ingested
  library ({data.get('chunks')} chunks, index generation {data.get('index_generation')}); mined lists' sha256
  `{card['data_sha256']}`. Passages whose text overlaps a gold passage are never negatives.
- **Validation / early stopping:** part `{data.get('val_part')}`, a seeded sample of {card['val_questions']} questions,
  MAP@10 of the fused top {cfg['eval_depth']} reranked, every {cfg['eval_every']} steps, patience {cfg['patience']}.
- **Training:** {card['steps']} steps of {cfg['batch_questions']} questions (best at step {card['best_step']}), lr
  {cfg['lr']}, max length {cfg['max_length']} tokens, {card['seconds'] / 60:.1f} min on {machine.get('cpu')}
  ({machine.get('cores')} cores, shared with another process).
- **Reproduce:** `{card.get('reproduce')}` (or `make reranker`)

Validation at the best step (before = the fused hybrid order, after = reranked):

| metric | before | after |
| --- | --- | --- |
{rows}

The numbers on ObliQA dev's report part (never looked at while training or choosing) are in docs/benchmarks.md,
"The trained reranker".
"""
