"""A fine-tuned embedder against the frozen one, retrieval only, in one run: ObliQA dev's report part (and tune),
ObliQA-MP validation (multi-passage questions over the same 40 documents) and the sample gold set.

    python -m eval.bench.embedder --obliqa ../shared/corpora/obliqa --embedder .comply-bench/embedders/minilm-obliqa \
        [--home .comply-bench/obliqa] [--parts report] [--rerank-sets "ObliQA dev report"] [--json]

For each corpus there are two libraries: the frozen one (`--home`, ObliQA's 40 documents ingested with the packaged
all-MiniLM-L6-v2; and a sample home with data/corpus) and its twin (`<home>-embedder`): a copy of the frozen home
in which the embedder is registered and activated as a user does it (`comply retrievers activate embedder`), which
re-embeds every chunk into a new index generation. Each question is retrieved from both: dense alone and hybrid (the
default); for the sets named in `--rerank-sets` also hybrid + the reranker (top `rerank_depth`, `rerank_weight`: the
settings' defaults; about a second a question on 2 cores). The embedder was trained on the train part and stopped
early on the tune part; the report part and ObliQA-MP were never looked at.
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
from assistant.retrieval import Retriever
from eval.bench.retrieval import ingest_obliqa
from eval.datasets import load_jsonl, load_obliqa, select_part
from eval.machine import cpu_model
from eval.metrics import evaluate_retrieval, ranked_item_from_chunk
from finetune import retrievers
from ingest.embedding import cpu_supports_bf16
from ingest.pipeline import Library
from ingest.settings import BASE_MODEL, DEFAULT_RERANKER, Settings

ROOT = Path(__file__).resolve().parents[2]
KEYS = ("recall@1", "recall@5", "recall@10", "map@10", "mrr")
def twin(frozen: Path, embedder: Path, name: str, log) -> tuple[Path, dict]:
    """`<frozen>-embedder`: finetune.retrievers.twin_library beside the frozen home, with a progress bar."""
    bar = tqdm(desc=f"re-embedding {frozen.name}-embedder", unit="chunk", file=sys.stderr, disable=log is None)

    def progress(done: int, total: int) -> None:
        bar.total, bar.n = total, done
        bar.refresh()

    try:
        return retrievers.twin_library(frozen, embedder, name, frozen.parent / f"{frozen.name}-embedder", progress)
    finally:
        bar.close()


def measure(lib: Library, questions, reranker: Reranker | None, desc: str, quiet: bool) -> dict:
    """Dense and hybrid metrics of `questions` over `lib`, and hybrid + reranker with a `reranker`."""
    plain, reranked = Retriever(lib, reranker=False), Retriever(lib, reranker=reranker) if reranker else None
    runs: dict[str, list] = {"dense": [], "hybrid": [], **({"hybrid + reranker": []} if reranker else {})}
    for q in tqdm(questions, desc=desc, unit="q", file=sys.stderr, disable=quiet):
        runs["dense"].append((q, [ranked_item_from_chunk(r.chunk) for r in plain.retrieve(q.question, 10,
                                                                                           mode="dense")]))
        runs["hybrid"].append((q, [ranked_item_from_chunk(r.chunk) for r in plain.retrieve(q.question, 10)]))
        if reranked is not None:
            runs["hybrid + reranker"].append((q, [ranked_item_from_chunk(r.chunk)
                                                  for r in reranked.retrieve(q.question, 10)]))
    return {name: {k: round(v, 4) for k, v in evaluate_retrieval(r, k=10).items() if k in KEYS}
            for name, r in runs.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--obliqa", type=Path, default=Path("../shared/corpora/obliqa"))
    parser.add_argument("--home", type=Path, default=Path(".comply-bench/obliqa"))
    parser.add_argument("--sample-home", type=Path, default=Path(".comply-bench/sample-retrieval"))
    parser.add_argument("--embedder", type=Path, required=True, help="A folder written by `comply adapt embedder`.")
    parser.add_argument("--name", default=None, help="Its registry name (default: the folder's name).")
    parser.add_argument("--parts", default="report")
    parser.add_argument("--rerank-sets", default="ObliQA dev report",
                        help="Comma-separated set titles also measured with the reranker ('' for none).")
    parser.add_argument("--reranker", default=DEFAULT_RERANKER)
    parser.add_argument("--limit", type=int, default=None, help="Questions per set at most (a quick look).")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    name = args.name or args.embedder.name
    log = None if args.json else sys.stderr
    start = time.perf_counter()

    ingest_obliqa(args.obliqa, args.home).close()
    sample = Library(Settings(home=args.sample_home, index_embedding_model=BASE_MODEL))  # frozen, as ObliQA's
    report = sample.ingest([ROOT / "data" / "corpus"])
    sample.close()  # the catalog's last writes reach its file (SQLite WAL) before the twin copies it
    if report.failed:
        raise SystemExit(json.dumps(report.to_dict(), indent=2))
    homes = {"obliqa": twin(args.home, args.embedder, name, log), "sample": twin(args.sample_home, args.embedder,
                                                                                   name, log)}
    dev = load_obliqa(args.obliqa / "ObliQA_dev.json", documents_dir=args.obliqa / "StructuredRegulatoryDocuments")
    sets = {f"ObliQA dev {part}": ("obliqa", select_part(dev, part)) for part in args.parts.split(",")}
    sets["ObliQA-MP validation"] = ("obliqa", load_obliqa(args.obliqa / "ObliQA_MultiPassage_val.json",
                                                          documents_dir=args.obliqa / "StructuredRegulatoryDocuments"))
    sets["sample gold set"] = ("sample", [q for q in load_jsonl(ROOT / "data" / "gold" / "sample_gold.jsonl")
                                          if q.answerable])
    settings = Settings(home=args.home)
    bf16 = cpu_supports_bf16()
    reranker = Reranker(resolve_reranker(args.reranker), bf16=bf16, batch_size=settings.rerank_batch_size)
    libraries = {("obliqa", "frozen"): Library(Settings(home=args.home)),
                 ("sample", "frozen"): Library(Settings(home=args.sample_home)),
                 ("obliqa", "trained"): Library(Settings(home=homes["obliqa"][0])),
                 ("sample", "trained"): Library(Settings(home=homes["sample"][0]))}
    rerank_sets = {t.strip() for t in args.rerank_sets.split(",") if t.strip()}
    results = {}
    for title, (corpus, questions) in sets.items():
        questions = questions[:args.limit] if args.limit else questions
        results[title] = {"questions": len(questions), **{
            which: measure(libraries[(corpus, which)], questions, reranker if title in rerank_sets else None,
                           f"{title}, {which}", args.json) for which in ("frozen", "trained")}}
    card = json.loads((args.embedder / "card.json").read_text())
    out = {"embedder": str(args.embedder), "name": name, "trained": {k: card.get(k) for k in (
               "steps", "best_step", "stopped_early", "seconds", "train_questions", "val_questions")},
           "validation_map10": {"frozen": retrievers.validation(card, "embedder").baseline,
                                "trained": retrievers.validation(card, "embedder").value},
           "reembedding": {corpus: info for corpus, (_, info) in homes.items()},
           "reranker": str(resolve_reranker(args.reranker)), "bf16": bf16,
           "cpu": f"{cpu_model()}, {len(os.sched_getaffinity(0))} cores", "load_average": os.getloadavg()[0],
           "seconds": round(time.perf_counter() - start, 1), "sets": results}
    for lib in libraries.values():
        lib.close()
    if args.json:
        print(json.dumps(out, indent=2))
        return 0
    print(f"embedder {name} ({args.embedder}); {out['cpu']}; {out['seconds']} s\n")
    for title, r in results.items():
        print(f"### {title} ({r['questions']} questions)\n")
        print("| ranking | embedder | " + " | ".join(KEYS) + " |")
        print("| --- | --- |" + " --- |" * len(KEYS))
        for ranking in r["frozen"]:
            for which in ("frozen", "trained"):
                m = r[which][ranking]
                print(f"| {ranking} | {which} | " + " | ".join(f"{m[k]:.3f}" for k in KEYS) + " |")
        print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
