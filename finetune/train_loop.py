"""The resumable training loop the cross-encoders share (finetune/reranker_train.py, finetune/entailment_train.py):
AdamW with linear warm-up and decay, gradient clipping, validation every `eval_every` steps keeping the best model
in `work/best`, early stopping after `patience` validations without a better score, and a checkpoint (model,
optimiser, schedule, loop state) every `checkpoint_every` steps from which a killed run resumes exactly. Written as
a plain loop rather than sentence-transformers' trainers, which need the `datasets` package comply does not install.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from ingest.settings import DEFAULT_EMBEDDING
from ingest.types import ComplyError

CHECKPOINT = "checkpoint.pt"
BEST = "best"


class TrainError(ComplyError):
    """Training cannot start or go on: the reason."""


@dataclass(kw_only=True)
class ListTrainConfig:
    """The recipe the models trained on the reranker's mined lists share (finetune/reranker_train.py,
    finetune/embedder_train.py): each names its own values for the fields without a default here. The fields keep
    this order in their cards (asdict)."""

    base_model: str = DEFAULT_EMBEDDING
    negatives: int  # mined hard negatives per question
    negative_depth: int = 30  # ... drawn from its fused top `negative_depth`
    epochs: int = 1
    batch_questions: int
    lr: float
    warmup: float
    max_length: int
    eval_every: int
    eval_questions: int = 60
    eval_depth: int
    patience: int = 2
    checkpoint_every: int = 20
    max_steps: int | None = None
    seed: int = 0
    bf16: str  # auto | on | off: bf16 autocast for the training steps (auto: where the CPU has native bf16)


def train_loop(model, *, work: Path, config: dict, data_sha256: str, total: int, loss_at: Callable[[int], object],
               validate: Callable[[], tuple[dict, tuple]], lr: float, warmup: float, eval_every: int,
               checkpoint_every: int, patience: int, resume: bool, progress: bool, desc: str) -> dict:
    """Run `total` steps of `loss_at(step)` (a scalar loss tensor; the batch is the caller's pure function of the
    step) and return the loop's state: step, best score and step, history of validations (`validate()`'s metrics
    with the step and the mean loss since the last one), seconds, stopped_early. A checkpoint written for another
    `config` or data is an error, not silently reused."""
    import torch  # lazy: torch takes ~2 s to import

    if total == 0:
        raise TrainError("no training data")
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    ramp = max(1, int(warmup * total))
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min((s + 1) / ramp, max(0.0, (total - s) / max(1, total - ramp))))
    state = {"step": 0, "best": None, "best_step": None, "bad_evals": 0, "history": [], "seconds": 0.0,
             "losses": [], "stopped_early": False}
    ckpt = work / CHECKPOINT
    if resume and ckpt.exists():
        saved = torch.load(ckpt, weights_only=False)
        if saved["config"] != config or saved["data_sha256"] != data_sha256:
            raise TrainError(f"{ckpt} was written for another recipe or data; remove {work} or use a new one")
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        schedule.load_state_dict(saved["schedule"])
        state = {"stopped_early": False, **saved["state"]}
    elif ckpt.exists():
        ckpt.unlink()

    def save_checkpoint() -> None:
        tmp = ckpt.with_suffix(".tmp")
        torch.save({"config": config, "data_sha256": data_sha256, "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(), "schedule": schedule.state_dict(), "state": state}, tmp)
        tmp.replace(ckpt)

    def evaluate() -> bool:
        """Validate, keep the best model; True when patience has run out."""
        model.eval()
        metrics, score = validate()
        model.train()
        state["history"].append({"step": state["step"], **metrics,
                                 "loss": round(sum(state["losses"]) / max(1, len(state["losses"])), 4)})
        state["losses"] = []
        if state["best"] is None or tuple(score) > tuple(state["best"]):
            state["best"], state["best_step"], state["bad_evals"] = list(score), state["step"], 0
            if (work / BEST).exists():
                shutil.rmtree(work / BEST)
            model.save_pretrained(str(work / BEST))
        else:
            state["bad_evals"] += 1
        bar.set_postfix(val=f"{score[0]:.3f}", best=f"{state['best'][0]:.3f}")
        return state["bad_evals"] >= patience

    model.train()
    bar = tqdm(total=total, initial=state["step"], desc=desc, unit="step", disable=not progress)
    started = time.perf_counter() - state["seconds"]
    while state["step"] < total and not state["stopped_early"]:
        loss = loss_at(state["step"])
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad()
        state["step"] += 1
        state["losses"].append(loss.item())
        state["seconds"] = time.perf_counter() - started
        bar.update(1)
        if state["step"] % eval_every == 0 or state["step"] == total:
            state["stopped_early"] = evaluate()
        if state["step"] % checkpoint_every == 0 or state["step"] == total or state["stopped_early"]:
            save_checkpoint()
    bar.close()
    if not state["history"] or state["history"][-1]["step"] != state["step"]:
        evaluate()
        save_checkpoint()
    return state
