"""Embedder fine-tuning on the sample corpus: no step ever shows a question its own gold passage as a negative (mined
or in the batch), real training steps on the packaged MiniLM lower the MultipleNegativesRankingLoss, and a run
checkpoints, resumes, and saves a model sentence-transformers (and comply's embedder) loads."""

import dataclasses
import json

import numpy as np
import pytest

from assistant.retrieval import Retriever
from eval.datasets import load_jsonl
from eval.metrics import relevant
from finetune.embedder_train import (
    CARD,
    CHECKPOINT,
    EmbedTrainConfig,
    TrainError,
    batch_loss,
    batches,
    export,
    load_model,
    rows,
    train_embedder,
)
from finetune.reranker_data import mine, overlaps_gold
from tests.library import GOLD, sample_library


@pytest.fixture(scope="module")
def mined():
    """The sample gold set's answerable questions with their fused top 20, plus a second question about the first
    one's gold passage (as ObliQA asks several questions of one passage)."""
    questions = [q for q in load_jsonl(GOLD) if q.answerable]
    lib = sample_library()
    lists = mine(Retriever(lib, reranker=False), questions, depth=20)
    lib.close()
    twin = dataclasses.replace(lists[0], id="twin", question="Which rule does this passage state? " + lists[0].question)
    return [*lists, twin]


def test_no_step_shows_a_question_its_gold_passage_as_a_negative(mined):
    config = EmbedTrainConfig(negatives=2, negative_depth=20)
    for epoch in range(3):
        steps = batches(rows(mined, config, epoch), size=8)
        assert sorted(r.question.id for step in steps for r in step) == sorted(m.id for m in mined)
        for step in steps:
            for row in step:
                q = row.question
                # every passage the loss treats as wrong for this question: its hard negatives, the other rows'
                for text, candidate in [*row.passages()[1:], *(p for other in step if other is not row
                                                               for p in other.passages())]:
                    assert not overlaps_gold(text, q.gold_texts), (q.id, text[:60])
                    assert candidate is None or not relevant(candidate.ranked_item(), q.gold()), (q.id, text[:60])
    # with room for every row in one step, the two questions about one passage still go to different steps
    steps = batches(rows(mined, config, 0), size=len(mined))
    twins = {"twin", mined[0].id}
    assert len(steps) > 1 and all(len(twins & {r.question.id for r in step}) < 2 for step in steps)


def test_a_few_real_training_steps_lower_the_loss():
    import torch
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss

    # 16 questions: the sample manual asks several of one passage, and a step holds no question whose gold passage
    # is another row's passage, so 8 questions fill fewer than 6 rows of the first step
    questions = [q for q in load_jsonl(GOLD) if q.answerable][:16]
    lib = sample_library()
    lists = mine(Retriever(lib, reranker=False), questions, depth=20)
    lib.close()
    config = EmbedTrainConfig(negatives=1, negative_depth=20, max_length=128)
    [batch, *_] = batches(rows(lists, config, epoch=0), size=8)
    assert len(batch) >= 6
    torch.manual_seed(0)
    model = load_model(config.base_model, config.max_length)
    loss = MultipleNegativesRankingLoss(model, scale=config.scale)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-5)
    before = batch_loss(model, loss, batch, autocast=False).item()
    for _ in range(4):
        value = batch_loss(model, loss, batch, autocast=False)
        value.backward()
        optimizer.step()
        optimizer.zero_grad()
    after = batch_loss(model, loss, batch, autocast=False).item()
    assert after < before * 0.8, (before, after)


def test_training_checkpoints_resumes_and_saves_a_model_that_loads(mined, tmp_path):
    import torch
    from sentence_transformers import SentenceTransformer

    from ingest.embedding import Embedder

    config = EmbedTrainConfig(negatives=1, negative_depth=20, batch_questions=4, max_length=96, lr=1e-4,
                              max_steps=2, eval_every=2, eval_questions=3, eval_depth=5, checkpoint_every=1)
    work = tmp_path / "work"
    first = train_embedder(mined[:20], mined[20:], work, config, data_sha256="x", progress=False)
    assert first["steps"] == 2 and (work / CHECKPOINT).exists() and (work / "best" / "modules.json").exists()
    assert set(first["frozen"]) == {"fused", "embedder"} and first["best"]["step"] == 2
    again = train_embedder(mined[:20], mined[20:], work, config, data_sha256="x", progress=False)
    # resumed from the checkpoint: nothing trained twice (the clock too is the saved one)
    assert again["steps"] == 2 and again["history"] == first["history"] and again["seconds"] == first["seconds"]
    with pytest.raises(TrainError, match="another recipe or data"):
        train_embedder(mined[:20], mined[20:], work, config, data_sha256="other data", progress=False)

    out = tmp_path / "embedder"
    export(work / "best", out, {**first, "name": "embedder"})
    assert json.loads((out / CARD).read_text())["frozen"] == first["frozen"]
    texts = [mined[0].question, mined[0].positives()[0]]
    # exported in bf16: read back as float32 weights, as comply's Embedder reads it on a CPU without bf16
    trained = SentenceTransformer(str(out), device="cpu", local_files_only=True,
                                  model_kwargs={"dtype": torch.float32}).encode(texts)
    base = load_model(config.base_model, 256).encode(texts)
    assert np.abs(trained - base).max() > 1e-3
    # comply's own embedder reads the folder as it is (what re-embedding the library will load)
    assert np.allclose(Embedder(str(out)).encode(texts), trained, atol=1e-4)


def test_every_epoch_is_trained_however_many_steps_its_shuffle_packs_into(mined, tmp_path):
    """First-fit packing gives each epoch's shuffle its own number of steps (here 6, 6 and 5): a run of 3 epochs
    trains 17 steps. It once counted 3 x the first epoch's 6 and failed on its last step (IndexError), after
    question generation and the reranker had run (`comply adapt retriever --epochs 2`)."""
    config = EmbedTrainConfig(negatives=1, negative_depth=20, batch_questions=4, max_length=64, epochs=3,
                              eval_every=100, eval_questions=2, eval_depth=5, checkpoint_every=100)
    per_epoch = [len(batches(rows(mined[:20], config, e), config.batch_questions)) for e in range(3)]
    assert len(set(per_epoch)) > 1  # the case under test: epochs of different lengths
    card = train_embedder(mined[:20], mined[20:], tmp_path / "work", config, progress=False)
    assert card["steps"] == sum(per_epoch)
