"""Choosing hybrid retrieval's fusion on ObliQA dev's tune part, and checking the choice on the report part.

    python -m eval.bench.fusion --obliqa ../shared/corpora/obliqa --home .comply-bench/obliqa \
        [--rrf-k 10,30,60,100] [--candidates 20,50,100] [--json]

Each question's dense and BM25 lists are retrieved once, at the largest candidate count, exactly as
`Retriever.retrieve` does (the same embedder, Chroma and BM25 queries); each (candidates, rrf_k) pair then cuts both
lists to its candidate count and fuses them with `assistant.retrieval.fuse`. The pair with the best MAP@10 on the
tune part (ties: Recall@10, then the smaller values) is chosen there; the report part, never looked at while
choosing, then measures the chosen pair against the defaults in the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from tqdm import tqdm

from assistant.retrieval import fuse
from eval.bench.retrieval import ingest_obliqa
from eval.datasets import load_obliqa, select_part
from eval.machine import cpu_model
from eval.metrics import evaluate_retrieval, ranked_item_from_chunk
from ingest.pipeline import Library
from ingest.settings import Settings

KEYS = ("recall@1", "recall@5", "recall@10", "map@10", "mrr")


def lists(lib: Library, questions, n: int, quiet: bool) -> list[tuple]:
    """(question, dense list, BM25 list) with `n` candidates each, as the retriever queries them."""
    out = []
    for q in tqdm(questions, desc="retrieving", unit="q", file=sys.stderr, disable=quiet):
        vector = lib.embedder.encode_query(q.question)
        out.append((q, lib.vectors.query(vector, n), lib.bm25.query(q.question, n)))
    return out


def score(lib: Library, retrieved: list[tuple], candidates: int, rrf_k: int) -> dict:
    runs = []
    for q, dense, bm25 in retrieved:
        fused = fuse(dense[:candidates], bm25[:candidates], rrf_k)[:10]
        chunks = lib.catalog.chunks(cid for cid, _ in fused)
        runs.append((q, [ranked_item_from_chunk(chunks[cid]) for cid, _ in fused if cid in chunks]))
    return {k: round(v, 4) for k, v in evaluate_retrieval(runs, k=10).items() if k in KEYS}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--obliqa", type=Path, default=Path("../shared/corpora/obliqa"))
    parser.add_argument("--home", type=Path, default=Path(".comply-bench/obliqa"))
    parser.add_argument("--rrf-k", default="10,30,60,100")
    parser.add_argument("--candidates", default="20,50,100")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    ks = [int(x) for x in args.rrf_k.split(",")]
    counts = [int(x) for x in args.candidates.split(",")]
    defaults = Settings(home=args.home)
    lib = ingest_obliqa(args.obliqa, args.home)
    dev = load_obliqa(args.obliqa / "ObliQA_dev.json", documents_dir=args.obliqa / "StructuredRegulatoryDocuments")
    n = max([*counts, defaults.candidates])
    tune = lists(lib, select_part(dev, "tune"), n, args.json)
    grid = {(c, k): score(lib, tune, c, k) for c in counts for k in ks}
    chosen = max(grid, key=lambda ck: (grid[ck]["map@10"], grid[ck]["recall@10"], -ck[0], -ck[1]))
    default = (defaults.candidates, defaults.rrf_k)
    report = lists(lib, select_part(dev, "report"), n, args.json)
    on_report = {"default": score(lib, report, *default), "chosen": score(lib, report, *chosen)}
    out = {"cpu": f"{cpu_model()}, {len(os.sched_getaffinity(0))} cores", "tune_questions": len(tune),
           "report_questions": len(report), "default": {"candidates": default[0], "rrf_k": default[1]},
           "chosen": {"candidates": chosen[0], "rrf_k": chosen[1]},
           "tune": [{"candidates": c, "rrf_k": k, **m} for (c, k), m in grid.items()], "report": on_report}
    lib.close()
    if args.json:
        print(json.dumps(out, indent=2))
        return 0
    print(f"ObliQA dev tune part ({len(tune)} questions), hybrid, fused top 10; {out['cpu']}\n")
    print("| candidates | rrf_k | " + " | ".join(KEYS) + " |")
    print("| --- | --- |" + " --- |" * len(KEYS))
    for (c, k), m in grid.items():
        mark = " (chosen)" if (c, k) == chosen else " (default)" if (c, k) == default else ""
        print(f"| {c} | {k}{mark} | " + " | ".join(f"{m[x]:.3f}" for x in KEYS) + " |")
    print(f"\nreport part ({len(report)} questions):\n")
    print("| fusion | " + " | ".join(KEYS) + " |")
    print("| --- |" + " --- |" * len(KEYS))
    for name, pair in (("default", default), ("chosen", chosen)):
        m = on_report[name]
        print(f"| {name}: {pair[0]} candidates, rrf_k {pair[1]} | " + " | ".join(f"{m[x]:.3f}" for x in KEYS) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
