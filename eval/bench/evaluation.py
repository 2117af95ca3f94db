"""The ObliQA dev evaluation for docs/benchmarks.md: retrieval-only runs for hybrid and for BM25 on every dev
question (and their comparison), then full answers with citations on a fixed sample (seed 0).

    python -m eval.bench.evaluation --obliqa ../shared/corpora/obliqa --home .comply-bench/obliqa \
        --out .comply-bench/eval [--limit N] [--answers 300] [--json]

The 40 structured ADGM documents are ingested into `--home` as eval.bench.retrieval does (a no-op when already
there). Each run is a `comply eval` run directory under `--out`, so an interrupted benchmark resumes where it stopped.
`--limit N` takes the first N dev questions for retrieval and at most N for the answer sample (a smoke run).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from datetime import UTC, datetime
from pathlib import Path

from eval.bench.retrieval import ingest_obliqa
from eval.compare import compare_runs
from eval.report import fmt
from eval.runner import run_eval


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--obliqa", type=Path, default=Path("../shared/corpora/obliqa"))
    parser.add_argument("--home", type=Path, default=Path(".comply-bench/obliqa"))
    parser.add_argument("--out", type=Path, default=Path(".comply-bench/eval"))
    parser.add_argument("--limit", type=int, default=None, help="first N questions only (smoke run)")
    parser.add_argument("--answers", type=int, default=300, help="size of the fixed answer sample (seed 0)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)

    lib = ingest_obliqa(args.obliqa, args.home)
    dataset = args.obliqa / "ObliQA_dev.json"
    documents = args.obliqa / "StructuredRegulatoryDocuments"
    common = {"documents_dir": documents, "library": lib, "progress": True}
    runs = {}
    for mode in ("hybrid", "bm25"):
        runs[mode] = run_eval(lib.settings, dataset, args.out / f"retrieval-{mode}", retrieval_only=True,
                              retrieval_mode=mode, limit=args.limit, **common)
    comparison = compare_runs(args.out / "retrieval-bm25", args.out / "retrieval-hybrid",
                              args.out / "compare-bm25-hybrid")
    n_answers = min(args.answers, args.limit) if args.limit else args.answers
    runs["answers"] = run_eval(lib.settings, dataset, args.out / "answers", limit=n_answers, sample_seed=0,
                               retrieval_mode="hybrid", **common)
    lib.close()
    if args.json:
        print(json.dumps({"runs": runs, "compare": comparison["rows"]}, indent=2, default=str))
    else:
        print(markdown(runs, args))
    return 0


def markdown(runs: dict, args: argparse.Namespace) -> str:
    """The docs/benchmarks.md section for these runs."""
    hybrid, bm25, answers = runs["hybrid"], runs["bm25"], runs["answers"]
    index = hybrid["run"]["index"]
    a = answers["run"]
    date = datetime.now(UTC).date().isoformat()
    lines = [
        "## Evaluation on ObliQA dev",
        "",
        "`make bench-eval` (= `.venv/bin/python -m eval.bench.evaluation --obliqa ../shared/corpora/obliqa "
        "--home .comply-bench/obliqa --out .comply-bench/eval`)",
        "",
        f"Run of {date} on {platform.machine()} with {os.cpu_count()} CPU cores; {index['documents']} documents, "
        f"{index['chunks']} chunks. Gold passages resolved against the corpus (`--documents-dir`); metric "
        "definitions in [evaluation.md](evaluation.md). Reports, per-question results and plots: `.comply-bench/eval/`.",
        "",
        f"### Retrieval only, {hybrid['n_questions']} dev questions",
        "",
        "| retriever | Recall@10 | MAP@10 | nDCG@10 | MRR | Recall@1 | Recall@5 | retrieval ms p50 / p95 |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, m in (("BM25 (bm25s)", bm25), ("**hybrid** (ours)", hybrid)):
        lines.append(f"| {name} | {fmt(m['recall@10'])} | {fmt(m['map@10'])} | {fmt(m['ndcg@10'])} | {fmt(m['mrr'])} "
                     f"| {fmt(m['recall@1'])} | {fmt(m['recall@5'])} | {fmt(m['latency.retrieval_ms.p50'], 0)} / "
                     f"{fmt(m['latency.retrieval_ms.p95'], 0)} |")
    lines += [
        "",
        f"### Answers with citations, fixed sample of {answers['n_questions']} dev questions (seed 0)",
        "",
        f"Generator {a.get('model_name') or a.get('model')}, adapter {a.get('adapter') or 'none'}, hybrid retrieval, "
        f"top {a['settings'].get('top_k')} sources. Every ObliQA question is answerable, so refusal rates on "
        "unanswerable questions do not apply.",
        "",
        "| Recall@10 | citation precision | citation recall | support rate | cited answers | false refusals | "
        "first token ms p50 | total ms p50 / p95 |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
        f"| {fmt(answers['recall@10'])} | {fmt(answers['citation_precision'])} | {fmt(answers['citation_recall'])} | "
        f"{fmt(answers['support_rate'])} | {fmt(answers['cited_answer_rate'])} | {fmt(answers['false_refusal_rate'])} "
        f"| {fmt(answers['latency.first_token_ms.p50'], 0)} | {fmt(answers['latency.total_ms.p50'], 0)} / "
        f"{fmt(answers['latency.total_ms.p95'], 0)} |",
    ]
    if args.limit:
        lines += ["", f"(smoke run: `--limit {args.limit}`, not a benchmark result)"]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
