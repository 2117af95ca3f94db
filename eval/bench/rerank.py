"""Hybrid retrieval against hybrid + the cross-encoder reranker, in one run over one part of ObliQA dev.

    python -m eval.bench.rerank --obliqa ../shared/corpora/obliqa --home .comply-bench/obliqa --part tune \
        [--reranker data/rerankers/minilm-obliqa] [--depths 20,30,40,50] [--latency-depth 30] [--json]

Each question is retrieved once (hybrid, the fused top max(depths)); its candidates are scored once by the reranker;
hybrid's metrics come from the fused order and each depth's from the fused top N reordered by the scores (the scores
are per pair, so reranking the top N is the top N's scores sorted). Latency is measured separately, per question, as
the assistant runs it: `Retriever.retrieve` with the reranker and `rerank_depth = --latency-depth`. Choose the depth
on `--part tune`; report on `--part report`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from tqdm import tqdm

from assistant.rerank import Reranker, resolve_reranker
from assistant.retrieval import Retriever, blend
from eval.datasets import load_obliqa, select_part
from eval.machine import cpu_model
from eval.metrics import evaluate_retrieval, percentiles, ranked_item_from_chunk
from ingest.embedding import cpu_supports_bf16
from ingest.pipeline import Library
from ingest.settings import DEFAULT_RERANKER, Settings

KEYS = ("recall@1", "recall@5", "recall@10", "map@10", "mrr")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--obliqa", type=Path, default=Path("../shared/corpora/obliqa"))
    parser.add_argument("--home", type=Path, default=Path(".comply-bench/obliqa"))
    parser.add_argument("--part", default="tune", choices=("train", "tune", "report"))
    parser.add_argument("--reranker", default=DEFAULT_RERANKER)
    parser.add_argument("--depths", default="30")
    parser.add_argument("--weights", default="1.0,0.7", help="rerank_weight values (assistant.retrieval.blend)")
    parser.add_argument("--latency-depth", type=int, default=30)
    parser.add_argument("--latency-weight", type=float, default=0.7)
    parser.add_argument("--latency-questions", type=int, default=100, help="questions timed (the first N)")
    parser.add_argument("--batch-sizes", default=None, help="comma-separated reranker batch sizes to time, each in "
                        "the same run (default: the rerank_batch_size setting)")
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)

    depths = sorted(int(d) for d in args.depths.split(","))
    settings = Settings(home=args.home, rerank_depth=args.latency_depth, rerank_weight=float(args.latency_weight))
    lib = Library(settings)
    questions = select_part(load_obliqa(args.obliqa / "ObliQA_dev.json",
                                        documents_dir=args.obliqa / "StructuredRegulatoryDocuments"), args.part)
    questions = questions[:args.limit] if args.limit else questions
    bf16 = cpu_supports_bf16()
    reranker = Reranker(resolve_reranker(args.reranker), bf16=bf16, batch_size=settings.rerank_batch_size)
    plain = Retriever(lib, reranker=False)
    weights = [float(w) for w in args.weights.split(",")]
    names = {(n, w): f"rerank@{n}" + ("" if w == 1.0 else f" w={w}") for n in depths for w in weights}
    runs: dict[str, list] = {"hybrid": [], **{name: [] for name in names.values()}}
    for q in tqdm(questions, desc=f"rerank {args.part}", unit="q", file=sys.stderr, disable=args.json):
        fused = plain.retrieve(q.question, max(depths))
        scores = reranker.score(q.question, [r.chunk.text for r in fused])
        items = [ranked_item_from_chunk(r.chunk) for r in fused]
        runs["hybrid"].append((q, items[:10]))
        for (n, w), name in names.items():
            runs[name].append((q, [items[i] for i in blend(scores[:n], w)][:10]))
    metrics = {name: {k: round(v, 4) for k, v in evaluate_retrieval(r, k=10).items() if k in KEYS}
               for name, r in runs.items()}

    sizes = [int(b) for b in args.batch_sizes.split(",")] if args.batch_sizes else [settings.rerank_batch_size]
    timed = {b: Retriever(lib, reranker=reranker if b == reranker.batch_size else
                          Reranker(reranker.path, bf16=bf16, batch_size=b)) for b in sizes}
    latency, hybrid_latency = {b: [] for b in sizes}, []
    for q in tqdm(questions[:args.latency_questions], desc="latency", unit="q", file=sys.stderr,
                  disable=args.json):
        t0 = time.perf_counter()
        plain.retrieve(q.question, settings.top_k)
        hybrid_latency.append(1000 * (time.perf_counter() - t0))
        for b, retriever in timed.items():  # interleaved: every batch size sees the same load
            t1 = time.perf_counter()
            retriever.retrieve(q.question, settings.top_k)
            latency[b].append(1000 * (time.perf_counter() - t1))
    by_size = {b: percentiles(v) or [None, None] for b, v in latency.items()}
    p = by_size[sizes[0]]
    h = percentiles(hybrid_latency) or [None, None]
    out = {"part": args.part, "questions": len(questions), "chunks": lib.catalog.count_chunks(),
           "reranker": str(resolve_reranker(args.reranker)), "bf16": bf16, "cpu": f"{cpu_model()}, {len(os.sched_getaffinity(0))} cores",
           "load_average": os.getloadavg()[0], "metrics": metrics,
           "latency_ms": {"candidates": args.latency_depth, "questions": len(hybrid_latency),
                          "hybrid_p50": round(h[0], 1), "hybrid_p95": round(h[1], 1),
                          "hybrid_rerank_p50": round(p[0], 1), "hybrid_rerank_p95": round(p[1], 1),
                          "by_batch_size": {b: {"p50": round(v[0], 1), "p95": round(v[1], 1)}
                                            for b, v in by_size.items()}}}
    lib.close()
    if args.json:
        print(json.dumps(out, indent=2))
        return 0
    print(f"ObliQA dev, {args.part} part, {len(questions)} questions, {out['chunks']} chunks; {out['cpu']}; "
          f"bf16 {bf16}\n")
    print("| ranking | " + " | ".join(KEYS) + " |")
    print("| --- |" + " --- |" * len(KEYS))
    for name, m in metrics.items():
        print(f"| {name} | " + " | ".join(f"{m[k]:.3f}" for k in KEYS) + " |")
    lat = out["latency_ms"]
    print(f"\nlatency over {lat['questions']} questions: hybrid p50 {lat['hybrid_p50']} / p95 {lat['hybrid_p95']} ms; "
          f"hybrid + rerank of {lat['candidates']} p50 {lat['hybrid_rerank_p50']} / p95 {lat['hybrid_rerank_p95']} ms")
    if len(sizes) > 1:
        print("\n| reranker batch size | hybrid + rerank p50 (ms) | p95 (ms) |\n| --- | --- | --- |")
        for b, v in lat["by_batch_size"].items():
            print(f"| {b} | {v['p50']} | {v['p95']} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
