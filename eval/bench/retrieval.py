"""Retrieval on ObliQA dev: Recall@10 and MAP@10 for BM25 alone, dense alone and hybrid, over all questions.

    python -m eval.bench.retrieval --obliqa ../shared/corpora/obliqa [--home DIR] [--limit N] [--json]

The 40 structured ADGM documents are ingested into `--home` (reused when already there: ingestion is idempotent).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from tqdm import tqdm

from assistant.retrieval import MODES, Retriever
from eval.datasets import load_obliqa
from eval.metrics import evaluate_retrieval, ranked_item_from_chunk
from ingest.pipeline import Library
from ingest.settings import BASE_MODEL, Settings


def ingest_obliqa(obliqa: Path, home: Path) -> Library:
    """A Library at `home` with the 40 structured ObliQA documents ingested (a no-op when already there); exits
    with the ingestion report when a file fails. A new one is built with the packaged all-MiniLM-L6-v2 (the frozen
    baseline: the shipped fine-tuned embedder was trained on ObliQA dev's train part)."""
    lib = Library(Settings(home=home, index_embedding_model=BASE_MODEL))
    report = lib.ingest([obliqa / "StructuredRegulatoryDocuments"])
    if report.failed:
        print(json.dumps(report.to_dict(), indent=2), file=sys.stderr)
        raise SystemExit(1)
    return lib


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--obliqa", type=Path, default=Path("../shared/corpora/obliqa"))
    parser.add_argument("--home", type=Path, default=Path(".comply-bench/obliqa"))
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)

    lib = ingest_obliqa(args.obliqa, args.home)
    questions = load_obliqa(args.obliqa / "ObliQA_dev.json", documents_dir=args.obliqa / "StructuredRegulatoryDocuments")
    if args.limit:
        questions = questions[: args.limit]
    retriever = Retriever(lib)
    rows = {}
    for mode in MODES:
        runs = []
        start = time.perf_counter()
        for q in tqdm(questions, desc=mode, file=sys.stderr):
            results = retriever.retrieve(q.question, args.k, mode=mode)
            runs.append((q, [ranked_item_from_chunk(r.chunk) for r in results]))
        seconds = time.perf_counter() - start
        metrics = evaluate_retrieval(runs, k=args.k)
        metrics["ms_per_query"] = round(1000 * seconds / max(1, len(questions)), 1)
        rows[mode] = metrics
    out = {"questions": len(questions), "chunks": lib.catalog.count_chunks(), "modes": rows}
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        print(f"ObliQA dev, {len(questions)} questions, {out['chunks']} chunks\n")
        print("| retriever | Recall@10 | MAP@10 | nDCG@10 | MRR | Recall@1 | Recall@5 | ms/query |")
        print("| --- | --- | --- | --- | --- | --- | --- | --- |")
        for mode, m in rows.items():
            print(f"| {mode} | {m['recall@10']:.3f} | {m['map@10']:.3f} | {m['ndcg@10']:.3f} | {m['mrr']:.3f} | "
                  f"{m['recall@1']:.3f} | {m['recall@5']:.3f} | {m['ms_per_query']} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
