"""run_eval on the real sample library and gold set: retrieval-only runs, resuming an interrupted run, choosing
questions, and refusing to mix two runs in one directory."""

import json
import shutil

import pytest

from eval.datasets import load_jsonl, sample
from eval.metrics import RETRIEVAL_KEYS
from eval.runner import RunError, run_eval
from tests.library import GOLD

RUN_FILES = ("run_config.json", "results.jsonl", "metrics.json", "report.md", "metrics.png", "latency.png",
             "per_document.png")


@pytest.fixture(scope="module")
def hybrid_run(library, tmp_path_factory):
    """A retrieval-only run of all 35 sample gold questions; tests that write into it work on a copy."""
    out = tmp_path_factory.mktemp("eval") / "hybrid"
    calls = []
    metrics = run_eval(library.settings, GOLD, out, retrieval_only=True, library=library, progress=False,
                       on_progress=lambda done, total: calls.append((done, total)))
    return out, metrics, calls


def test_retrieval_only_run_scores_every_question_and_writes_every_file(hybrid_run):
    out, metrics, calls = hybrid_run
    assert all((out / name).is_file() for name in RUN_FILES)
    lines = (out / "results.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(lines) == 35
    assert (metrics["n_questions"], metrics["n_answerable"], metrics["n_unanswerable"]) == (35, 27, 8)
    assert 0.85 <= metrics["recall@10"] <= 1.0  # 0.963 when written: one question asks for a superseded version
    assert metrics["recall@1"] <= metrics["recall@5"] <= metrics["recall@10"]
    assert metrics["citation_precision"] is None and metrics["refusal_rate"] is None  # nothing was answered
    assert metrics["latency.retrieval_ms.p50"] > 0 and metrics["latency.total_ms.p50"] is None
    assert json.loads((out / "metrics.json").read_text(encoding="utf-8")) == metrics
    run = metrics["run"]
    assert run["retrieval_only"] and run["mode"] == "hybrid" and run["n"] == 35 and run["new"] == 35
    assert run["index"]["documents"] >= 7 and run["index"]["chunks"] > 100
    assert calls[0] == (0, 35) and calls[-1] == (35, 35) and len(calls) == 36

    first = json.loads(lines[0])
    assert first["id"] == "aml-cash-threshold" and first["answer"] is None
    assert first["evidence"][0]["page"] == 4
    assert [r["rank"] for r in first["retrieved"]] == list(range(1, 11))
    assert sum(r["relevant"] for r in first["retrieved"]) == 1 and first["scores"]["recall@10"] == 1.0

    per_doc = metrics["per_document"]
    assert per_doc["aml_kyc_policy.pdf"]["n_questions"] == 7
    assert all(0 <= row["recall@10"] <= 1 and row["citation_precision"] is None for row in per_doc.values())


def test_an_interrupted_run_resumes_and_drops_its_cut_off_last_line(library, hybrid_run, tmp_path):
    out, full, _ = hybrid_run
    run = tmp_path / "run"
    shutil.copytree(out, run)
    lines = (run / "results.jsonl").read_text(encoding="utf-8").splitlines(keepends=True)
    (run / "results.jsonl").write_text("".join(lines[:20]) + lines[20][:50], encoding="utf-8")  # killed mid-write

    calls = []
    metrics = run_eval(library.settings, GOLD, run, retrieval_only=True, library=library, progress=False,
                       on_progress=lambda done, total: calls.append((done, total)))
    assert calls[0] == (20, 35) and len(calls) == 1 + 15
    assert (metrics["run"]["resumed"], metrics["run"]["new"]) == (20, 15)
    records = [json.loads(line) for line in (run / "results.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [r["id"] for r in records] == [q.id for q in load_jsonl(GOLD)]
    for key in RETRIEVAL_KEYS:  # the 20 resumed results are rebuilt from their records to the same scores
        assert metrics[key] == pytest.approx(full[key])


def test_limit_and_sample_choose_questions_and_reuse_the_ones_already_run(library, hybrid_run, tmp_path):
    out, _, _ = hybrid_run
    run = tmp_path / "run"
    shutil.copytree(out, run)
    metrics = run_eval(library.settings, GOLD, run, retrieval_only=True, library=library, progress=False,
                       limit=5, sample_seed=0)
    assert (metrics["n_questions"], metrics["run"]["resumed"], metrics["run"]["new"]) == (5, 5, 0)
    assert "sample of 5, seed 0" in (run / "report.md").read_text(encoding="utf-8")

    fresh = run_eval(library.settings, GOLD, tmp_path / "fresh", retrieval_only=True, library=library,
                     progress=False, limit=5, sample_seed=0)
    chosen = [json.loads(line)["id"] for line in (tmp_path / "fresh" / "results.jsonl").read_text().splitlines()]
    assert chosen == [q.id for q in sample(load_jsonl(GOLD), 5, seed=0)]
    assert fresh["recall@10"] == metrics["recall@10"]


def test_a_different_configuration_in_the_same_directory_is_refused(library, hybrid_run, tmp_path):
    out, _, _ = hybrid_run
    before = (out / "results.jsonl").read_bytes()
    with pytest.raises(RunError, match="mode: 'hybrid' there, 'bm25' now.*new --out"):
        run_eval(library.settings, GOLD, out, retrieval_only=True, retrieval_mode="bm25", library=library,
                 progress=False)
    with pytest.raises(RunError, match="retrieval_only"):
        run_eval(library.settings, GOLD, out, adapter="none", library=library, progress=False)
    assert (out / "results.jsonl").read_bytes() == before

    (tmp_path / "notes.txt").write_text("something else")
    with pytest.raises(RunError, match="not empty"):
        run_eval(library.settings, GOLD, tmp_path, retrieval_only=True, library=library, progress=False)
    with pytest.raises(ValueError, match="retrieval mode"):
        run_eval(library.settings, GOLD, tmp_path / "x", retrieval_only=True, retrieval_mode="sparse",
                 library=library, progress=False)
