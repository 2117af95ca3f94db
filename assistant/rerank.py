"""The cross-encoder reranker: scores (question, chunk) pairs jointly and reorders the fused candidates.

Any sentence-transformers `CrossEncoder` folder loads (the one comply trains and ships in data/rerankers/, or
another); its raw score (the logit, no sigmoid) is the rerank score. Pairs are scored in batches sorted by length,
in bf16 on CPUs with native bf16 and on CUDA (the same rule as the embedder).
"""

from __future__ import annotations

import functools
import json
import logging
import threading
from dataclasses import dataclass
from pathlib import Path

from assistant.flat_cross import load_pair_model
from ingest.embedding import pick_device, use_bf16
from ingest.settings import DEFAULT_RERANKER, Settings
from ingest.types import ComplyError

log = logging.getLogger(__name__)

SHIPPED_DIR = Path(__file__).resolve().parent.parent / "data" / "rerankers"


class RerankerError(ComplyError):
    """A reranker folder could not be loaded: the path and the reason."""

    def __init__(self, path: str, reason: str):
        self.path, self.reason = path, reason
        super().__init__(f"reranker {path}: {reason}")


def resolve_reranker(name: str) -> Path:
    """A shipped reranker's name -> its folder in data/rerankers/; anything else is a path."""
    shipped = SHIPPED_DIR / name
    return shipped if "/" not in name and shipped.is_dir() else Path(name).expanduser()


class Reranker:
    """A CrossEncoder that scores pairs; `score(query, texts)` returns one float per text (higher = better). On CPU a
    BERT with one output runs as `FlatCrossEncoder` (`flat=False`: always through sentence-transformers)."""

    def __init__(self, path: str | Path, device: str = "cpu", bf16: bool = False, batch_size: int = 32,
                 flat: bool = True):
        path = Path(path)
        if not (path / "config.json").is_file():
            raise RerankerError(str(path), "is not a model folder (no config.json)")
        self.path, self.batch_size, self.bf16 = path, batch_size, bf16
        # on CPU a BERT with one output runs as a flat pass, without importing sentence-transformers (~200 MiB)
        self.scorer = load_pair_model(path, device, bf16, flat)
        self._lock = threading.Lock()

    def score(self, query: str, texts: list[str]) -> list[float]:
        """Raw cross-encoder scores of (query, text) for each text, in input order."""
        with self._lock:
            return self.scorer.score_pairs([(query, t) for t in texts], self.batch_size)


@functools.lru_cache(maxsize=2)
def _cached(path: str, device: str, bf16: bool, batch_size: int) -> Reranker:
    return Reranker(path, device=device, bf16=bf16, batch_size=batch_size)


def load_reranker(settings: Settings) -> Reranker | None:
    """The process-wide reranker for these settings, or None when reranking is off. The default model missing
    (a checkout without data/rerankers/) turns reranking off with a warning; a named model that is missing is an
    error."""
    return _load(settings) if settings.rerank else None


def load_relevance_model(settings: Settings) -> Reranker | None:
    """The reranker the verifier asks whether a cited source addresses the question (`relevance_check`), whether
    or not retrieval reranks with it; None when the check is off or the default model is not installed."""
    return _load(settings) if settings.relevance_check else None


@dataclass(frozen=True)
class AbstainRule:
    """Abstain before drafting when no source addresses the question: a question whose best cosine relevance is
    below `cosine` is asked of the reranker, and when no source shown scores `logit` or more, the model is not
    asked. The thresholds belong to one reranker (its logits' scale): they live in its card.json (`abstain`),
    chosen by `eval.bench.abstention` on ObliQA dev's tune part."""

    logit: float
    cosine: float

    def asks(self, cosine: float) -> bool:
        """Whether the reranker must be asked for a question of this best cosine relevance."""
        return cosine < self.cosine

    def refuses(self, cosine: float, best_logit: float) -> bool:
        return self.asks(cosine) and best_logit < self.logit


def card_rule(path: Path) -> dict:
    """The `abstain` entry of a reranker folder's card.json ({} when there is none)."""
    try:
        card = json.loads((path / "card.json").read_text())
    except (OSError, ValueError):
        return {}
    rule = card.get("abstain") if isinstance(card, dict) else None
    return rule if isinstance(rule, dict) else {}


def abstain_rule(settings: Settings) -> AbstainRule | None:
    """The rule these settings apply: `abstain_rerank` on, thresholds from the settings or else from the card of
    the reranker in use; None when off, when the reranker is not installed or when its card calibrates none."""
    if not settings.abstain_rerank:
        return None
    path = current_reranker(settings)
    if not path.is_dir():
        return None
    card = card_rule(path)
    logit = settings.abstain_rerank_logit if settings.abstain_rerank_logit is not None else card.get("logit")
    cosine = settings.abstain_rerank_cosine if settings.abstain_rerank_cosine is not None else card.get("cosine")
    if logit is None or cosine is None:
        return None
    return AbstainRule(logit=float(logit), cosine=float(cosine))


def load_abstain_model(settings: Settings) -> Reranker | None:
    """The reranker that the rule of `abstain_rule(settings)` asks, loaded once per process (None when it is not
    installed)."""
    return _load(settings)


def registry_reranker(settings: Settings) -> Path | None:
    """The folder of the reranker activated in the retriever registry (retrievers/reranker/ACTIVE), or None."""
    root = settings.retrievers_dir / "reranker"
    try:
        name = (root / "ACTIVE").read_text().strip()
    except OSError:
        return None
    return root / name if name and (root / name / "config.json").is_file() else None


def current_reranker(settings: Settings) -> Path:
    """The reranker folder these settings use: a reranker_model set to anything but the default wins; else the
    registry's active reranker; else the shipped default."""
    active = registry_reranker(settings) if settings.reranker_model == DEFAULT_RERANKER else None
    return active or resolve_reranker(settings.reranker_model)


def _load(settings: Settings) -> Reranker | None:
    path = current_reranker(settings)
    if not path.is_dir():
        if settings.reranker_model == DEFAULT_RERANKER:
            log.warning("the default reranker %s is not installed; neither retrieval nor the relevance check uses it",
                        path)
            return None
        raise RerankerError(str(path), "does not exist")
    device = pick_device(settings)
    return _cached(str(path.resolve()), device, use_bf16(settings, device), settings.rerank_batch_size)
