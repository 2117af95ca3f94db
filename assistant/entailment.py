"""The entailment check: does the cited passage state what the answer sentence says?

A cross-encoder comply trains from the packaged all-MiniLM-L6-v2 (finetune/entailment_train.py; shipped in
data/entailment/) scores (premise, hypothesis) pairs; its one logit through a sigmoid is the probability that the
premise entails the hypothesis. The premise is the part of the cited chunk around the sentences the claim draws on
(`premise_window`), cut to what the model reads, the same at training and at answer time.

Any sentence-transformers `CrossEncoder` folder with one output loads; the threshold comes from the model's card
(`calibration.threshold`, chosen on a tune part) unless the `entailment_threshold` setting says otherwise.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import threading
from pathlib import Path

from assistant.flat_cross import load_pair_model
from assistant.words import content_words
from ingest.chunking import sentence_spans
from ingest.embedding import pick_device, use_bf16
from ingest.settings import DEFAULT_ENTAILMENT, Settings
from ingest.types import ComplyError

log = logging.getLogger(__name__)

SHIPPED_DIR = Path(__file__).resolve().parent.parent / "data" / "entailment"
# Characters of premise the model sees: MiniLM reads 256 word pieces for premise and claim together.
PREMISE_CHARS = 700


class EntailmentError(ComplyError):
    """An entailment model folder could not be loaded: the path and the reason."""

    def __init__(self, path: str, reason: str):
        self.path, self.reason = path, reason
        super().__init__(f"entailment model {path}: {reason}")


def _words(text: str) -> set[str]:
    return content_words(text)


def premise_window(text: str, claim: str, limit: int = PREMISE_CHARS) -> str:
    """The part of a chunk the claim is checked against: the sentence sharing most content words with the claim,
    widened one sentence at a time, towards the side whose next sentence shares more, while under `limit`
    characters. A chunk under the limit is taken whole."""
    text = " ".join(text.split()) if len(text) > limit else text.strip()
    if len(text) <= limit:
        return text
    spans = [sp for sp in sentence_spans(text) if text[sp[0]:sp[1]].strip()] or [(0, len(text))]
    words = _words(claim)
    overlap = [len(words & _words(text[s:e])) for s, e in spans]
    best = max(range(len(spans)), key=lambda i: overlap[i])
    lo = hi = best
    while True:
        left = overlap[lo - 1] if lo > 0 else -1
        right = overlap[hi + 1] if hi + 1 < len(spans) else -1
        if left < 0 and right < 0:
            break
        nxt = (lo - 1, hi) if left > right else (lo, hi + 1)
        if spans[nxt[1]][1] - spans[nxt[0]][0] > limit:
            break
        lo, hi = nxt
    start, end = spans[lo][0], spans[hi][1]
    if end - start > limit:  # one sentence longer than the limit: the part of it with most of the claim's words
        end = start + limit
    return text[start:end]


def _contains(premise: str, hypothesis: str) -> bool:
    h = " ".join(hypothesis.lower().split()).rstrip(".")
    return len(h) >= 12 and h in " ".join(premise.lower().split())


def resolve_entailment(name: str) -> Path:
    """A shipped model's name -> its folder in data/entailment/; anything else is a path."""
    shipped = SHIPPED_DIR / name
    return shipped if "/" not in name and shipped.is_dir() else Path(name).expanduser()


class Entailment:
    """A one-logit CrossEncoder; `probs(pairs)` returns P(premise entails hypothesis) per (premise, hypothesis)."""

    def __init__(self, path: str | Path, device: str = "cpu", bf16: bool = False, batch_size: int = 16,
                 flat: bool = True):
        path = Path(path)
        if not (path / "config.json").is_file():
            raise EntailmentError(str(path), "is not a model folder (no config.json)")
        self.path, self.batch_size = path, batch_size
        # on CPU a BERT with one output runs as a flat pass, without importing sentence-transformers (~200 MiB)
        self.scorer = load_pair_model(path, device, bf16, flat)
        card = path / "card.json"
        calibration = json.loads(card.read_text()).get("calibration", {}) if card.is_file() else {}
        self.threshold = float(calibration.get("threshold", 0.5))
        self._lock = threading.Lock()

    def probs(self, pairs: list[tuple[str, str]]) -> list[float]:
        """P(premise entails hypothesis) per pair; a hypothesis the premise contains word for word (case, spacing
        and the final full stop aside) is entailed without asking the model."""
        out: list[float | None] = [1.0 if _contains(p, h) else None for p, h in pairs]
        todo = [pair for pair, o in zip(pairs, out, strict=True) if o is None]
        if todo:
            with self._lock:
                logits = self.scorer.score_pairs(todo, self.batch_size)
            scored = iter(1.0 / (1.0 + math.exp(-x)) for x in logits)
            out = [o if o is not None else next(scored) for o in out]
        return out


@functools.lru_cache(maxsize=2)
def _cached(path: str, device: str, bf16: bool) -> Entailment:
    return Entailment(path, device=device, bf16=bf16)


def load_entailment(settings: Settings) -> Entailment | None:
    """The process-wide entailment model for these settings, or None when the check is off. The default model
    missing (a checkout without data/entailment/) turns the check off with a warning; a named one missing is an
    error."""
    if not settings.entailment_check:
        return None
    path = resolve_entailment(settings.entailment_model)
    if not path.is_dir():
        if settings.entailment_model == DEFAULT_ENTAILMENT:
            log.warning("the default entailment model %s is not installed; answers are checked without it", path)
            return None
        raise EntailmentError(str(path), "does not exist")
    device = pick_device(settings)
    return _cached(str(path.resolve()), device, use_bf16(settings, device))
