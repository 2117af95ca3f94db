"""`comply eval ...` commands (registered on the main app by assistant.app.cli.main).

    comply eval --dataset PATH --out DIR [--format jsonl|obliqa|auto] [--documents-dir DIR] [--limit N]
                [--sample-seed S] [--adapter A] [--retrieval-only] [--mode hybrid|dense|bm25] [--json]
    comply eval compare RUN_A RUN_B [--out DIR] [--json]
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from assistant.app.audit import AuditError
from assistant.app.cli.common import JsonOpt, app, cli_admin, emit, fail, open_services
from eval.compare import CompareError, compare_runs
from eval.datasets import DatasetError
from eval.report import fmt

eval_app = typer.Typer(help="Evaluate retrieval, citations and abstention on a gold question set; compare runs.")
app.add_typer(eval_app, name="eval")

SUMMARY_KEYS = ("recall@10", "map@10", "ndcg@10", "mrr", "citation_precision", "citation_recall", "support_rate",
                "cited_answer_rate", "refusal_rate", "false_refusal_rate", "latency.total_ms.p50",
                "latency.total_ms.p95")


@eval_app.callback(invoke_without_command=True)
def eval_run(
    ctx: typer.Context,
    dataset: Annotated[Path | None, typer.Option(help="Required. Gold questions: JSON Lines, or an ObliQA .json "
                                                      "file.")] = None,
    out: Annotated[Path | None, typer.Option(help="Required. Run directory for metrics.json, results.jsonl, report.md, "
                                                  "plots; an interrupted run resumes there.")] = None,
    format: Annotated[str, typer.Option("--format", help="jsonl, obliqa or auto (by suffix).")] = "auto",
    documents_dir: Annotated[Path | None, typer.Option(help="ObliQA StructuredRegulatoryDocuments folder, to "
                                                            "resolve gold passages against the corpus.")] = None,
    limit: Annotated[int | None, typer.Option(help="Only the first N questions (a fixed sample with "
                                                   "--sample-seed).")] = None,
    sample_seed: Annotated[int | None, typer.Option(help="With --limit: a hash sample of N, fixed by the "
                                                         "seed.")] = None,
    adapter: Annotated[str | None, typer.Option(help="LoRA adapter: a folder, a registered name, or "
                                                     "'none'.")] = None,
    part: Annotated[str | None, typer.Option(help="Only one fixed part of the set: train, tune or report (by a hash "
                                                  "of the question id; docs/evaluation.md).")] = None,
    retrieval_only: Annotated[bool, typer.Option("--retrieval-only", help="Score retrieval only; no "
                                                                          "answers.")] = False,
    mode: Annotated[str, typer.Option(help="Retrieval: hybrid, dense or bm25.")] = "hybrid",
    as_json: JsonOpt = False,
):
    """Run the real pipeline on a gold set and write metrics, per-question results, a report and plots."""
    if ctx.invoked_subcommand is not None:
        return
    from assistant.app import actions_admin  # lazy: loads the answering code (0.3 s)
    from eval.runner import RunError  # lazy: loads the answering code (0.3 s)

    if dataset is None or out is None:
        fail("comply eval needs --dataset PATH and --out DIR (or a subcommand: comply eval compare A B)", as_json)
    try:  # the app's action: fail closed, run, recorded as eval.run
        metrics = actions_admin.run_evaluation(
            open_services(), cli_admin(), dataset, out, format=format, limit=limit, adapter=adapter,
            retrieval_only=retrieval_only, retrieval_mode=mode, documents_dir=documents_dir, sample_seed=sample_seed,
            progress=not as_json, part=part)
    except (DatasetError, RunError, FileNotFoundError, ValueError, AuditError) as e:
        fail(str(e), as_json)
    emit(metrics, as_json, summary_text(metrics, out))


def summary_text(metrics: dict, out: Path) -> str:
    """A short table of the headline metrics and the files written."""
    run = metrics.get("run") or {}
    lines = [f"{metrics['n_questions']} questions ({metrics['n_answerable']} answerable), "
             f"{run.get('resumed', 0)} resumed, {run.get('new', 0)} run now"]
    lines += [f"  {key:<22} {fmt(metrics.get(key))}" for key in SUMMARY_KEYS if metrics.get(key) is not None]
    files = [name for name in ("metrics.json", "results.jsonl", "report.md", "metrics.png", "latency.png",
                               "per_document.png") if (out / name).exists()]
    lines.append("wrote " + ", ".join(str(out / name) for name in files))
    return "\n".join(lines)


@eval_app.command("compare")
def eval_compare(
    run_a: Annotated[Path, typer.Argument(help="Run directory A (the baseline).")],
    run_b: Annotated[Path, typer.Argument(help="Run directory B.")],
    out: Annotated[Path | None, typer.Option(help="Write compare.md, compare.json and compare.png here.")] = None,
    as_json: JsonOpt = False,
):
    """Show the metric deltas between two runs (B - A) as a table, and a plot with --out."""
    try:
        result = compare_runs(run_a, run_b, out)
    except CompareError as e:
        fail(str(e), as_json)
    text = result["markdown"]
    if result.get("files"):
        text += "wrote " + ", ".join(result["files"].values())
    emit(result, as_json, text)
