"""Reranker training data and steps: mined lists never call a gold passage a negative (duplicated passage ids,
identical texts), and real training steps on the packaged MiniLM lower the listwise loss."""

import json

import pytest

from assistant.retrieval import Retriever
from eval.datasets import load_jsonl, load_obliqa
from eval.metrics import relevant
from finetune.reranker_data import mine, overlaps_gold, read_mined, write_mined
from finetune.reranker_train import RerankTrainConfig, group_loss, groups
from ingest.embedding import load_embedder
from ingest.pipeline import Library
from ingest.settings import Settings
from tests.library import GOLD, sample_library

GOLD_TEXT = "A Fund Manager must notify the Regulator within 10 business days of any change to its auditor."
SIBLING = "A Fund Manager must keep its register of unitholders at its principal office."  # same key, other text
COPY_ELSEWHERE = GOLD_TEXT  # the same text under another document and passage id
OTHER = "An Authorised Person must notify the Regulator within 10 business days of a change of its auditor firm."


@pytest.fixture(scope="module")
def duplicated_library(tmp_path_factory):
    """Two ObliQA-shaped documents: a shared (DocumentID, PassageID) key with two texts, and the gold text
    repeated in the other document under another passage id."""
    root = tmp_path_factory.mktemp("dup")
    docs = root / "docs"
    docs.mkdir()
    filler = [f"Rule {i}: the Regulator may publish guidance on matter number {i} of the rulebook." for i in range(8)]
    (docs / "1.json").write_text(json.dumps(
        [{"ID": "a", "DocumentID": 1, "PassageID": "3.2.1", "Passage": GOLD_TEXT},
         {"ID": "b", "DocumentID": 1, "PassageID": "3.2.1", "Passage": SIBLING},
         *({"ID": f"f{i}", "DocumentID": 1, "PassageID": f"9.{i}", "Passage": t} for i, t in enumerate(filler))]))
    (docs / "2.json").write_text(json.dumps(
        [{"ID": "c", "DocumentID": 2, "PassageID": "7.1", "Passage": COPY_ELSEWHERE},
         {"ID": "d", "DocumentID": 2, "PassageID": "7.2", "Passage": OTHER}]))
    dev = root / "dev.json"
    dev.write_text(json.dumps([{"QuestionID": "q1", "Question": "When must a Fund Manager tell the Regulator that "
                                "its auditor changed?", "Group": 1,
                                "Passages": [{"DocumentID": 1, "PassageID": "3.2.1", "Passage": GOLD_TEXT}]}]))
    settings = Settings(home=root / "home")
    lib = Library(settings, embedder=load_embedder(settings))
    assert not lib.ingest([docs]).failed
    yield lib, load_obliqa(dev, documents_dir=docs)
    lib.close()


def test_mining_never_labels_a_duplicate_or_identical_gold_text_negative(duplicated_library, tmp_path):
    lib, questions = duplicated_library
    [mined] = mine(Retriever(lib, reranker=False), questions, depth=20)
    by_text = {}
    for c in mined.candidates:
        by_text.setdefault(c.text, []).append(c)
    # the gold record is a positive, its copy in document 2 is unsure (never a negative)
    assert [c.relevant for c in by_text[GOLD_TEXT]].count(True) == 1
    copy = next(c for c in by_text[GOLD_TEXT] if not c.relevant)
    assert copy.unsure and not copy.negative
    # the sibling under the same key but with another text is a real negative, as the matching rule says
    assert by_text[SIBLING][0].negative
    assert by_text[OTHER][0].negative
    assert GOLD_TEXT not in [c.text for c in mined.negatives(20)]
    # the lists survive the round trip through the file the trainer reads
    write_mined(tmp_path / "mined.jsonl", [mined])
    assert read_mined(tmp_path / "mined.jsonl")[0] == mined


def test_mined_negatives_on_the_sample_corpus_are_never_gold():
    questions = [q for q in load_jsonl(GOLD) if q.answerable]
    mined = mine(Retriever(sample_library(), reranker=False), questions, depth=20)
    negatives = 0
    for q, m in zip(questions, mined, strict=True):
        for c in m.negatives(20):
            negatives += 1
            assert not relevant(c.ranked_item(), q), (q.id, c.chunk_id)
            assert not overlaps_gold(c.text, m.gold_texts), (q.id, c.chunk_id)
        assert m.positives(), q.id
    assert negatives > 10 * len(questions)


def test_a_few_real_training_steps_lower_the_loss():
    import torch
    from sentence_transformers import CrossEncoder

    from ingest.embedding import resolve_embedding_model

    questions = [q for q in load_jsonl(GOLD) if q.answerable][:8]
    mined = mine(Retriever(sample_library(), reranker=False), questions, depth=20)
    config = RerankTrainConfig(negatives=3, max_length=128)
    batch = groups(mined, config, epoch=0)[:4]
    assert len(batch) == 4 and all(len(texts) == 4 for _, texts in batch)
    torch.manual_seed(0)
    model = CrossEncoder(resolve_embedding_model(config.base_model), num_labels=1, max_length=config.max_length,
                         device="cpu", local_files_only=True)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    before = group_loss(model, batch, autocast=False).item()
    for _ in range(5):
        loss = group_loss(model, batch, autocast=False)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    after = group_loss(model, batch, autocast=False).item()
    assert after < before - 0.1, (before, after)


def test_training_checkpoints_and_resumes_where_it_stopped(tmp_path):
    from finetune.reranker_train import CHECKPOINT, TrainError, train_reranker

    questions = [q for q in load_jsonl(GOLD) if q.answerable][:10]
    mined = mine(Retriever(sample_library(), reranker=False), questions, depth=20)
    config = RerankTrainConfig(negatives=2, batch_questions=2, max_length=96, max_steps=2, eval_every=2,
                               eval_questions=2, eval_depth=5, checkpoint_every=1)
    first = train_reranker(mined[:8], mined[8:], tmp_path, config, data_sha256="x", progress=False)
    assert first["steps"] == 2 and (tmp_path / CHECKPOINT).exists() and (tmp_path / "best" / "config.json").exists()
    again = train_reranker(mined[:8], mined[8:], tmp_path, config, data_sha256="x", progress=False)
    # resumed from the checkpoint: nothing trained twice (the clock too is the saved one)
    assert again["steps"] == 2 and again["history"] == first["history"] and again["seconds"] == first["seconds"]
    with pytest.raises(TrainError, match="another recipe or data"):
        train_reranker(mined[:8], mined[8:], tmp_path, config, data_sha256="other data", progress=False)
