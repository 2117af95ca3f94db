"""The citation gate's parts without the generator: features of a source among the prompt's sources, the
probability and score of a fitted gate, and the logistic regression that fits it."""

from __future__ import annotations

import math

import numpy as np
import pytest

from assistant.gate import FEATURES, CitationGate, fit_logistic, source_features
from assistant.types import Retrieved
from ingest.types import Chunk


def _source(i: int, dense_rank, dense_score, bm25_rank, bm25_score) -> Retrieved:
    chunk = Chunk(chunk_id=f"d@v1#{i:05d}", document_id="d", version=1, title="d", source_file="d.pdf",
                  text=f"passage {i}", seq=i)
    return Retrieved(chunk=chunk, score=0.0, dense_rank=dense_rank, dense_score=dense_score, bm25_rank=bm25_rank,
                     bm25_score=bm25_score)


SOURCES = [_source(0, 1, 0.80, 1, 20.0), _source(1, 3, 0.60, 2, 10.0), _source(2, None, None, 7, 5.0)]


def test_features_of_a_source_compare_it_with_the_other_sources():
    assert len(FEATURES) == 8
    first = source_features(SOURCES, 1)
    assert first == pytest.approx([0.80, 0.20, 1.0, 0.5, 1.0, 1.0, 1.0, 1.0])
    second = source_features(SOURCES, 2)
    assert second == pytest.approx([0.60, -0.20, 0.5, -0.5, 1 / 3, 0.5, 0.0, 0.5])
    third = source_features(SOURCES, 3)  # not among the dense candidates: no dense score, no dense rank
    assert third == pytest.approx([0.0, -0.80, 0.25, -0.75, 0.0, 1 / 7, 0.0, 1 / 3])


def test_the_score_of_an_answer_is_its_weakest_citation_and_old_gates_are_refused():
    gate = CitationGate(coef=[0, 0, 0, 0, 2.0, 2.0, 0, 0], intercept=-2.0, threshold=0.5)
    p = [gate.probability(SOURCES, n) for n in (1, 2, 3)]
    assert p[0] == pytest.approx(1 / (1 + math.exp(-2.0))) and p[0] > p[1] > p[2]
    assert gate.score(SOURCES, [1, 2]) == pytest.approx(p[1]) and gate.score(SOURCES, []) is None
    again = CitationGate.from_dict(gate.to_dict())
    assert again == gate and gate.to_dict()["features"] == list(FEATURES)
    with pytest.raises(ValueError, match="calibrate the adapter again"):
        CitationGate.from_dict({**gate.to_dict(), "features": ["dense_score"]})


def test_logistic_regression_recovers_the_weights_that_generated_the_labels():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(20_000, 3))
    true_w, true_b = np.array([1.5, -2.0, 0.0]), 0.5
    y = rng.random(20_000) < 1 / (1 + np.exp(-(x @ true_w + true_b)))
    coef, intercept = fit_logistic(x.tolist(), y.tolist(), l2=1e-6)
    assert coef == pytest.approx(true_w.tolist(), abs=0.08) and intercept == pytest.approx(true_b, abs=0.08)
    strong, _ = fit_logistic(x.tolist(), y.tolist(), l2=1e4)  # the penalty shrinks the weights, not the intercept
    assert np.abs(strong).max() < 0.5 * np.abs(coef).max()
    with pytest.raises(ValueError, match="both right and wrong"):
        fit_logistic([[0.0], [1.0]], [True, True])
