"""Train the entailment cross-encoder: a sentence-transformers `CrossEncoder` on the packaged all-MiniLM-L6-v2 (a
new one-logit head), trained pointwise (binary cross-entropy) on premise/claim pairs (finetune/entailment_data.py),
validated on pairs of another part, and calibrated there.

The model kept is the one with the best validation recall of not-entailed claims at the threshold that flags at most
`max_false_flags` of the entailed ones (the target the verifier is held to); that threshold goes on the card
(`calibration.threshold`). The loop is finetune/train_loop.py (checkpoints, resume, early stopping); batches are a pure function of the seed
and the epoch.
"""

from __future__ import annotations

import math
import random
from dataclasses import asdict, dataclass
from pathlib import Path

from assistant.flat_cross import CrossEncoderPairs
from finetune.entailment_data import ENTAILED, Pair
from finetune.train_loop import train_loop
from ingest.embedding import cpu_supports_bf16, resolve_embedding_model
from ingest.settings import DEFAULT_EMBEDDING


@dataclass
class EntailTrainConfig:
    base_model: str = DEFAULT_EMBEDDING
    epochs: int = 2
    batch_size: int = 16
    lr: float = 5e-5
    warmup: float = 0.05
    max_length: int = 256
    eval_every: int = 150
    eval_pairs: int = 600
    max_false_flags: float = 0.05
    patience: int = 3
    checkpoint_every: int = 25
    max_steps: int | None = None
    seed: int = 0


def threshold_at(probs: list[float], labels: list[int], max_false_flags: float) -> dict:
    """The highest threshold (flag when p < t) that flags at most `max_false_flags` of the entailed pairs, and the
    share of not-entailed pairs it flags (recall) and of entailed ones (false flags)."""
    entailed = sorted(p for p, y in zip(probs, labels, strict=True) if y == ENTAILED)
    if not entailed:
        return {"threshold": 0.5, "recall": 0.0, "false_flags": 0.0}
    allowed = int(math.floor(max_false_flags * len(entailed)))
    t = entailed[allowed]  # p < t flags exactly the `allowed` lowest entailed pairs (ties aside)
    flagged = [p < t for p in probs]
    neg = [f for f, y in zip(flagged, labels, strict=True) if y != ENTAILED]
    pos = [f for f, y in zip(flagged, labels, strict=True) if y == ENTAILED]
    return {"threshold": round(float(t), 6), "recall": round(sum(neg) / max(1, len(neg)), 4),
            "false_flags": round(sum(pos) / max(1, len(pos)), 4)}


def auc(probs: list[float], labels: list[int]) -> float:
    """Area under the ROC curve (entailed scored above not entailed), by ranks."""
    order = sorted(range(len(probs)), key=lambda i: probs[i])
    ranks = [0.0] * len(probs)
    for r, i in enumerate(order, start=1):
        ranks[i] = r
    pos = [ranks[i] for i, y in enumerate(labels) if y == ENTAILED]
    n_pos, n_neg = len(pos), len(labels) - len(pos)
    if not n_pos or not n_neg:
        return 0.0
    return round((sum(pos) - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg), 4)


def predict(model, pairs: list[Pair], batch_size: int = 32) -> list[float]:
    logits = CrossEncoderPairs(model, autocast=cpu_supports_bf16()).score_pairs(
        [(p.premise, p.claim) for p in pairs], batch_size)
    return [1.0 / (1.0 + math.exp(-x)) for x in logits]


def evaluate(model, pairs: list[Pair], max_false_flags: float) -> dict:
    probs = predict(model, pairs)
    labels = [p.label for p in pairs]
    by_kind: dict[str, list[float]] = {}
    out = {"auc": auc(probs, labels), **threshold_at(probs, labels, max_false_flags)}
    for p, pr in zip(pairs, probs, strict=True):
        by_kind.setdefault(p.kind, []).append(pr)
    out["flagged_by_kind"] = {k: round(sum(x < out["threshold"] for x in v) / len(v), 3) for k, v in by_kind.items()}
    return out


def pair_loss(model, batch: list[Pair], micro: int = 8):
    """Binary cross-entropy of the logit, in micro-batches of similar length."""
    import torch  # lazy: torch takes ~2 s to import

    lengths = [len(ids) for ids in model.tokenizer([p.premise for p in batch], [p.claim for p in batch],
                                                   truncation=True, max_length=model.max_length)["input_ids"]]
    order = sorted(range(len(batch)), key=lambda i: lengths[i])
    total = 0.0
    for start in range(0, len(order), micro):
        idx = order[start:start + micro]
        features = model.preprocess([(batch[i].premise, batch[i].claim) for i in idx])
        logits = model(features)["scores"].float().view(-1)
        target = torch.tensor([float(batch[i].label) for i in idx])
        total = total + torch.nn.functional.binary_cross_entropy_with_logits(logits, target, reduction="sum")
    return total / len(batch)


def train_entailment(train: list[Pair], val: list[Pair], work: Path, config: EntailTrainConfig, *,
                     data_sha256: str = "", progress: bool = True, resume: bool = True) -> dict:
    """Train in `work` and return the card (config, history, best step, calibration). The best model is in
    `work/best`."""
    import torch  # lazy: torch takes ~2 s to import
    from sentence_transformers import CrossEncoder  # lazy: sentence_transformers takes ~6 s to import

    work.mkdir(parents=True, exist_ok=True)
    val = random.Random(config.seed).sample(val, min(config.eval_pairs, len(val)))
    torch.manual_seed(config.seed)
    model = CrossEncoder(resolve_embedding_model(config.base_model), num_labels=1, max_length=config.max_length,
                         device="cpu", local_files_only=True)
    epochs = []
    for e in range(config.epochs):
        order = list(train)
        random.Random(f"{config.seed}:{e}").shuffle(order)
        epochs.append(order)
    steps_per_epoch = math.ceil(len(train) / config.batch_size)
    total = steps_per_epoch * config.epochs
    if config.max_steps:
        total = min(total, config.max_steps)

    def loss_at(step: int):
        epoch, index = divmod(step, steps_per_epoch)
        return pair_loss(model, epochs[epoch][index * config.batch_size:(index + 1) * config.batch_size])

    def validate() -> tuple[dict, tuple]:
        metrics = evaluate(model, val, config.max_false_flags)
        return metrics, (metrics["recall"], metrics["auc"])

    state = train_loop(model, work=work, config=asdict(config), data_sha256=data_sha256, total=total,
                       loss_at=loss_at, validate=validate, lr=config.lr, warmup=config.warmup,
                       eval_every=config.eval_every, checkpoint_every=config.checkpoint_every,
                       patience=config.patience, resume=resume, progress=progress, desc="entailment")
    best = next(h for h in state["history"] if h["step"] == state["best_step"])
    return {"base_model": config.base_model, "config": asdict(config), "data_sha256": data_sha256,
            "train_pairs": len(train), "val_pairs": len(val), "steps": state["step"],
            "best_step": state["best_step"], "stopped_early": state["stopped_early"],
            "seconds": round(state["seconds"], 1), "history": state["history"], "best": best,
            "calibration": {"threshold": best["threshold"], "max_false_flags": config.max_false_flags,
                            "on": "validation pairs"}}


def card_markdown(card: dict) -> str:
    best, data, cfg, machine = card["best"], card.get("data", {}), card["config"], card.get("machine", {})
    kinds = "\n".join(f"| {k} | {v:.3f} |" for k, v in sorted(best["flagged_by_kind"].items()))
    return f"""# {card.get('name', 'entailment')}

The entailment check comply trains (`comply adapt entailment`): a sentence-transformers `CrossEncoder` (BERT, one
logit; weights in bf16) scoring (cited passage, answer sentence) pairs; sigmoid(logit) is the probability that the
passage states the sentence. With `entailment_check` on (off by default), the verifier flags a near-copy sentence
(`entailment_max_new_words`) scored under `entailment_threshold` (docs/architecture.md, docs/configuration.md).

- **Base model:** {card['base_model']} (the packaged all-MiniLM-L6-v2; a new classification head)
- **Data:** {data.get('dataset')} (sha256 `{data.get('dataset_sha256')}`), the gold passages of part
  `{data.get('part')}`: {card['train_pairs']} pairs built by finetune/entailment_data.py (entailed: verbatim, cut,
  framed, modal said another way, numbers in words, two sentences; not entailed: word, number, negation, modal,
  opposite, actor, splice, neighbouring passage, other document); pairs' sha256 `{card['data_sha256']}`.
- **Validation and calibration:** {card['val_pairs']} pairs from part `{data.get('val_part')}`; the model kept has the
  best recall of not-entailed claims at the threshold that flags at most {cfg['max_false_flags']:.0%} of entailed
  ones: threshold {card['calibration']['threshold']:.4f}.
- **Training:** {card['steps']} steps of {cfg['batch_size']} pairs (best at step {card['best_step']}), lr {cfg['lr']},
  max length {cfg['max_length']} tokens, {card['seconds'] / 60:.1f} min on {machine.get('cpu')} ({machine.get('cores')}
  cores).
- **Reproduce:** `{card.get('reproduce')}` (or `make entailment`)

At the best step on the validation pairs: AUC {best['auc']:.3f}, not-entailed flagged {best['recall']:.3f}, entailed
flagged {best['false_flags']:.3f}. Share flagged by kind:

| kind | flagged |
| --- | --- |
{kinds}

What it does to answers is measured on the labelled verification set (docs/benchmarks.md).
"""
