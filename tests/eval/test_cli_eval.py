"""`comply eval` end to end with the real model: answers with citations, resuming a run, comparing runs, errors."""

import json

import pytest
from typer.testing import CliRunner

from assistant.app.cli.main import app
from eval.datasets import load_jsonl
from eval.metrics import aggregate
from eval.runner import run_eval
from tests.library import GOLD, sample_home, sample_library

pytestmark = pytest.mark.slow

# Short answers keep the test fast; the settings are part of the run's identity, so both steps use the same.
ENV = {"COMPLY_MAX_NEW_TOKENS": "48"}
# sample(gold, 4, seed=10): 2 answerable + 2 unanswerable questions; its first 2 are a sample of 2 with the same seed.
SAMPLE = ["--limit", "4", "--sample-seed", "10"]


def comply(*args: str):
    return CliRunner().invoke(app, ["--home", str(sample_home()), *args], env=ENV)


@pytest.fixture(scope="module")
def answered_two(tmp_path_factory):
    """A full-answer run of 2 questions, later resumed to 4 through the CLI."""
    out = tmp_path_factory.mktemp("cli") / "answers"
    lib = sample_library(max_new_tokens=int(ENV["COMPLY_MAX_NEW_TOKENS"]))
    metrics = run_eval(lib.settings, GOLD, out, limit=2, sample_seed=10, library=lib, progress=False)
    lib.close()
    assert metrics["run"]["new"] == 2
    return out


def test_eval_resumes_a_run_and_prints_every_metric_as_json(answered_two):
    result = comply("eval", "--dataset", str(GOLD), "--out", str(answered_two), *SAMPLE, "--json")
    assert result.exit_code == 0, result.output
    metrics = json.loads(result.stdout)
    assert set(aggregate([])) <= set(metrics)  # every metric key, always present
    assert (metrics["run"]["resumed"], metrics["run"]["new"]) == (2, 2)  # only the 2 new questions were answered
    assert (metrics["n_questions"], metrics["n_answerable"], metrics["n_unanswerable"]) == (4, 2, 2)
    for key in ("recall@10", "map@10", "ndcg@10", "mrr", "refusal_rate", "false_refusal_rate",
                "latency.retrieval_ms.p50", "latency.first_token_ms.p95", "latency.total_ms.p95"):
        assert metrics[key] is not None, key
    assert 0 <= metrics["refusal_rate"] <= 1 and metrics["refusal_rate"] + metrics["false_answer_rate"] == 1
    assert metrics["run"]["model_name"] in (None, "SmolLM2-135M-Instruct")
    assert metrics["run"]["settings"]["max_new_tokens"] == 48

    records = [json.loads(line) for line in (answered_two / "results.jsonl").read_text().splitlines()]
    assert len(records) == 4 and all(r["abstained"] is not None for r in records)
    for r in records:
        assert {"answer", "sentences", "citations", "retrieved", "timings", "evidence"} <= set(r)
        assert len(r["retrieved"]) == 10 and r["timings"]["total_ms"] >= r["timings"]["retrieval_ms"]
        assert all({"n", "document_id", "file", "page", "clause", "quote", "chunk_id", "correct"} <= set(c)
                   for c in r["citations"])
        if r["abstained"]:
            assert r["citations"] == []
    # answer correctness against the gold answers, by the shipped entailment model (resumed ones read back)
    gold = {q.id: q for q in load_jsonl(GOLD)}
    for r in records:
        assert r["gold_answer"] == gold[r["id"]].answer
        if not r["answerable"]:
            assert r["answer_correct"] is r["abstained"] and r["answer_entailed"] is None
        elif r["abstained"]:
            assert r["answer_correct"] is False
        else:
            assert isinstance(r["answer_correct"], bool) and 0 <= r["answer_entailed"] <= 1
    answerable = [r for r in records if r["answerable"]]
    assert metrics["answer_correct_rate_answerable"] == sum(r["answer_correct"] for r in answerable) / len(answerable)
    assert "answer_correctness" in json.loads((answered_two / "run_config.json").read_text())
    report = (answered_two / "report.md").read_text(encoding="utf-8")
    assert "## Answers that went wrong" in report and "answers by " in report
    assert "- answer correctness: judged by `minilm-nli`" in report
    assert (answered_two / "latency.png").read_bytes().startswith(b"\x89PNG")


def test_eval_refuses_to_mix_runs_and_reports_dataset_errors(answered_two, tmp_path):
    mixed = comply("eval", "--dataset", str(GOLD), "--out", str(answered_two), "--retrieval-only", "--json")
    assert mixed.exit_code == 1
    assert "different configuration" in json.loads(mixed.stdout)["error"]

    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "a", "question": "q?", "answerable": true, "evidence": []}\n')
    broken = comply("eval", "--dataset", str(bad), "--out", str(tmp_path / "run"), "--json")
    assert broken.exit_code == 1
    assert json.loads(broken.stdout)["error"].startswith(f"{bad}:1: ")

    missing = comply("eval", "--dataset", str(GOLD))
    assert missing.exit_code == 1 and "--out" in missing.output


def test_eval_compare_shows_the_deltas_of_two_runs(tmp_path):
    for mode in ("hybrid", "bm25"):
        run = comply("eval", "--dataset", str(GOLD), "--out", str(tmp_path / mode), "--retrieval-only",
                     "--mode", mode, "--limit", "6")
        assert run.exit_code == 0, run.output
        assert "recall@10" in run.stdout and str(tmp_path / mode / "report.md") in run.stdout

    shown = comply("eval", "compare", str(tmp_path / "bm25"), str(tmp_path / "hybrid"), "--out",
                   str(tmp_path / "cmp"))
    assert shown.exit_code == 0, shown.output
    assert "| metric | A | B | B - A |" in shown.stdout and "| recall@10 |" in shown.stdout
    assert (tmp_path / "cmp" / "compare.png").read_bytes().startswith(b"\x89PNG")

    as_json = comply("eval", "compare", str(tmp_path / "bm25"), str(tmp_path / "hybrid"), "--json")
    rows = json.loads(as_json.stdout)["rows"]
    assert rows[0] == {"metric": "n_questions", "a": 6, "b": 6, "delta": 0}


def test_replay_reverifies_the_recorded_answers_without_generating(answered_two, tmp_path):
    from eval.replay import ReplayError, replay

    recorded = [json.loads(line) for line in (answered_two / "results.jsonl").read_text().splitlines()]
    settings = sample_library().settings
    metrics = replay(answered_two, tmp_path / "replayed", settings)
    again = {r["id"]: r for r in map(json.loads, (tmp_path / "replayed" / "results.jsonl").read_text().splitlines())}
    assert metrics["run"]["new"] == len(again) >= 2 and set(again) <= {r["id"] for r in recorded}
    for r in (r for r in recorded if r["id"] in again):  # the model's words are the run's, the checks today's
        assert again[r["id"]]["raw_answer"] == r["raw_answer"]
        assert again[r["id"]]["abstained"] == r["abstained"]
    with pytest.raises(ReplayError, match="not an evaluation run"):
        replay(tmp_path, tmp_path / "x", settings)
