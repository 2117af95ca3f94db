"""The entailment check's training data and loop, on passages written here (ObliQA's shape, comply's own text)."""

from __future__ import annotations

import json

import pytest

from eval.datasets import Evidence, GoldQuestion
from finetune.entailment_data import ENTAILED, NOT_ENTAILED, build_pairs, read_pairs, write_pairs
from finetune.entailment_train import EntailTrainConfig, auc, pair_loss, threshold_at, train_entailment
from finetune.train_loop import CHECKPOINT, TrainError

PASSAGES = [
    ("4.1", "Every complaint must be acknowledged in writing within 5 business days of receipt. The acknowledgement "
            "names the Complaints Officer who handles the complaint."),
    ("4.2", "The Bank must send a final response within 8 weeks of receipt. A handler who expects to miss that "
            "deadline must escalate the case to the Head of Compliance before it passes."),
    ("4.3", "Complaints about the Head of Compliance are handled by the General Counsel, who may appoint an "
            "external reviewer. The General Counsel reports every such complaint to the Board."),
    ("4.4", "Business email of all staff is retained for 3 years from the date it was sent or received, after "
            "which it is deleted automatically from the email archive."),
    ("4.5", "Recordings of telephone calls relating to investment services are retained for 5 years from the date "
            "of the recording. The Compliance team may extend the period where a regulator requires it."),
]
OTHER = [("1.1", "A Fund Manager must appoint a Trustee before the Fund is offered to the public. The Trustee "
                 "must hold the Fund Property separately from its own assets at all times.")]


@pytest.fixture()
def documents(tmp_path):
    folder = tmp_path / "docs"
    folder.mkdir()
    for doc, items in (("1", PASSAGES), ("2", OTHER)):
        (folder / f"{doc}.json").write_text(json.dumps(
            [{"ID": f"{doc}-{pid}", "DocumentID": int(doc), "PassageID": pid, "Passage": text} for pid, text in items]))
    questions = [GoldQuestion(f"q{i}", f"question {i}", True, None, [Evidence("1", passage_id=pid, quote=text)])
                 for i, (pid, text) in enumerate(PASSAGES)]
    return folder, questions


def test_pairs_are_balanced_and_every_not_entailed_claim_says_something_else(documents, tmp_path):
    folder, questions = documents
    pairs = build_pairs(questions, folder, seed=0, per_passage=8)
    labels = [p.label for p in pairs]
    assert labels.count(ENTAILED) and labels.count(NOT_ENTAILED)
    assert abs(labels.count(ENTAILED) - labels.count(NOT_ENTAILED)) <= len(PASSAGES) * 2
    for p in pairs:
        assert p.premise and p.claim and p.source.startswith("1/")
        if p.kind == "verbatim":
            assert p.claim in " ".join(p.premise.split())
        if p.label == NOT_ENTAILED:
            assert " ".join(p.claim.split()) not in " ".join(p.premise.split()), p
    assert build_pairs(questions, folder, seed=0, per_passage=8) == pairs  # a pure function of the seed
    digest = write_pairs(tmp_path / "pairs.jsonl", pairs)
    assert len(digest) == 64 and read_pairs(tmp_path / "pairs.jsonl") == pairs


def test_threshold_flags_at_most_the_allowed_share_of_entailed_pairs():
    probs = [0.9, 0.8, 0.7, 0.6, 0.95, 0.2, 0.3, 0.65, 0.1, 0.85]
    labels = [1, 1, 1, 1, 1, 0, 0, 0, 0, 1]
    cut = threshold_at(probs, labels, 0.2)  # 6 entailed: at most 1 flagged (0.6), so every p < 0.7 is
    assert cut["threshold"] == 0.7 and cut["false_flags"] == pytest.approx(1 / 6, abs=1e-3) and cut["recall"] == 1.0
    strict = threshold_at(probs, labels, 0.1)  # none may be flagged: p < 0.6 misses the 0.65
    assert strict["threshold"] == 0.6 and strict["false_flags"] == 0.0 and strict["recall"] == 0.75
    assert auc([0.9, 0.1], [1, 0]) == 1.0 and auc([0.1, 0.9], [1, 0]) == 0.0


def test_training_lowers_the_loss_checkpoints_and_resumes(documents, tmp_path):
    import torch
    from sentence_transformers import CrossEncoder

    from ingest.embedding import resolve_embedding_model

    folder, questions = documents
    pairs = build_pairs(questions, folder, seed=0, per_passage=8)
    model = CrossEncoder(resolve_embedding_model(EntailTrainConfig().base_model), num_labels=1, max_length=128,
                         device="cpu", local_files_only=True)
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-5)
    before = pair_loss(model, pairs).item()
    for _ in range(4):
        pair_loss(model, pairs).backward()
        optimizer.step()
        optimizer.zero_grad()
    assert pair_loss(model, pairs).item() < before
    config = EntailTrainConfig(epochs=1, batch_size=8, max_steps=2, eval_every=2, eval_pairs=12, checkpoint_every=1)
    work = tmp_path / "work"
    first = train_entailment(pairs, pairs, work, config, data_sha256="x", progress=False)
    assert first["steps"] == 2 and (work / CHECKPOINT).exists() and (work / "best" / "config.json").exists()
    assert 0.0 < first["calibration"]["threshold"] < 1.0
    again = train_entailment(pairs, pairs, work, config, data_sha256="x", progress=False)
    assert again["history"] == first["history"] and again["seconds"] == first["seconds"]
    with pytest.raises(TrainError, match="another recipe or data"):
        train_entailment(pairs, pairs, work, config, data_sha256="other", progress=False)
