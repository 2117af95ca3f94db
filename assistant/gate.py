"""The citation gate: the probability that a source the answer cites is a right one, from how the two retrievers
ranked and scored it against the other sources of the prompt.

The generator cannot tell (`docs/benchmarks.md`: the tuned 135M model cites [1] whatever [1] holds, and its own
token probabilities do not separate right citations from wrong ones), but the retrievers can, in part: a passage
that dense and BM25 retrieval both put first, clearly ahead of the next one, is far more often the right one than
a passage one retriever ranks 1st and the other 30th. Strict citations (`consensus_citations`) is the yes/no form
of this; the gate weighs the same evidence with a logistic regression fitted on gold questions of the corpus
(`finetune.calibrate.fit_gate`, retrieval only: no generation needed) and abstains below a threshold calibrated
on held-out questions for a target citation precision. Both live on the adapter's card: the threshold depends on
how the adapter cites.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from assistant.types import Retrieved

# what `source_features` returns, in order; a gate fitted on other features is refused (`CitationGate.from_dict`)
FEATURES = ("dense_score", "dense_margin", "bm25_share", "bm25_margin", "dense_rr", "bm25_rr", "both_first",
            "position_rr")


def source_features(sources: Sequence[Retrieved], n: int) -> list[float]:
    """The features of source n (1-based) among the sources given to the generator: its dense cosine and its lead
    over the best other source's, its BM25 score as a share of the best BM25 score among the sources and its lead
    over the best other's, the reciprocal of its rank in each retriever's candidate list (0 when absent), whether
    both rank it first, and the reciprocal of its position in the prompt."""
    s = sources[n - 1]
    others = [r for i, r in enumerate(sources) if i != n - 1]
    dense = s.dense_score if s.dense_score is not None else 0.0
    best_other_dense = max((r.dense_score for r in others if r.dense_score is not None), default=0.0)
    bm25 = s.bm25_score or 0.0
    top_bm25 = max((r.bm25_score or 0.0 for r in sources), default=0.0) or 1.0
    best_other_bm25 = max((r.bm25_score or 0.0 for r in others), default=0.0)
    return [dense, dense - best_other_dense, bm25 / top_bm25, (bm25 - best_other_bm25) / top_bm25,
            1.0 / s.dense_rank if s.dense_rank else 0.0, 1.0 / s.bm25_rank if s.bm25_rank else 0.0,
            float(s.dense_rank == 1 and s.bm25_rank == 1), 1.0 / n]


@dataclass
class CitationGate:
    """A fitted gate: logistic-regression weights over FEATURES, and the probability below which an answer is
    withheld (0 = record the score, withhold nothing)."""

    coef: list[float]
    intercept: float
    threshold: float = 0.0

    def probability(self, sources: Sequence[Retrieved], n: int) -> float:
        """The probability that source n (1-based) is a right one."""
        z = self.intercept + sum(w * x for w, x in zip(self.coef, source_features(sources, n), strict=True))
        return 1.0 / (1.0 + math.exp(-z)) if z >= 0 else math.exp(z) / (1.0 + math.exp(z))

    def score(self, sources: Sequence[Retrieved], cited: Sequence[int]) -> float | None:
        """The answer's citation score: the lowest probability among the sources it cites (None if it cites none)."""
        return min((self.probability(sources, n) for n in cited), default=None)

    def to_dict(self) -> dict:
        return {"features": list(FEATURES), **asdict(self)}

    @classmethod
    def from_dict(cls, data: dict) -> CitationGate:
        if list(data.get("features") or []) != list(FEATURES) or len(data.get("coef") or []) != len(FEATURES):
            raise ValueError(f"the citation gate was fitted on features {data.get('features')}, not "
                             f"{list(FEATURES)}: calibrate the adapter again")
        return cls(coef=[float(c) for c in data["coef"]], intercept=float(data["intercept"]),
                   threshold=float(data.get("threshold") or 0.0))


def fit_logistic(rows: Sequence[Sequence[float]], labels: Sequence[bool], l2: float = 1.0,
                 iterations: int = 100) -> tuple[list[float], float]:
    """L2-regularised logistic regression by Newton's method (the intercept is not penalised): (coef, intercept)."""
    x = np.asarray(rows, dtype=np.float64)
    y = np.asarray(labels, dtype=np.float64)
    if x.ndim != 2 or len(x) != len(y) or len(x) == 0:
        raise ValueError("fit_logistic needs one label per row and at least one row")
    if y.min() == y.max():
        raise ValueError("fit_logistic needs both right and wrong examples")
    x = np.hstack([x, np.ones((len(x), 1))])
    w = np.zeros(x.shape[1])
    penalty = np.full(x.shape[1], l2)
    penalty[-1] = 0.0
    for _ in range(iterations):
        p = 1.0 / (1.0 + np.exp(-(x @ w)))
        gradient = x.T @ (p - y) + penalty * w
        hessian = (x * (p * (1 - p))[:, None]).T @ x + np.diag(penalty) + 1e-9 * np.eye(x.shape[1])
        step = np.linalg.solve(hessian, gradient)
        w -= step
        if np.abs(step).max() < 1e-10:
            break
    return [float(v) for v in w[:-1]], float(w[-1])
