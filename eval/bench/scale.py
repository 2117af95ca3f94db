"""Retrieval latency with a large library: a synthetic index of about 100,000 chunks made from a real one.

    python -m eval.bench.scale --source .comply-bench/obliqa --home .comply-bench/scale [--chunks 100000] \
        [--queries 200] [--json]

How the index is made: every chunk of the source library (ObliQA's 40 documents, 14,278 chunks, ingested with the
packaged embedder) is copied as many times as needed to reach `--chunks`, each copy a chunk of its own synthetic
document (`<document>-copy<i>`): its words shuffled (seeded), so BM25 sees new word mixes of the same vocabulary,
and its vector the source's plus Gaussian noise (sigma 0.02 per dimension, about 0.4 in norm before renormalising;
cosine to the original ~0.93), so HNSW holds 100,000 distinct points in the regions real chunks occupy. The copies
go through the library's own writers (catalog version pending -> Chroma upsert -> activate, then one BM25 rebuild),
not through the embedder, which would take half an hour here. The queries are real ObliQA dev questions (report
part), timed as the assistant retrieves: `Retriever.retrieve` (hybrid, top_k 5, today's defaults), one at a time,
after 10 warm-up questions; the source library is timed in the same run as the baseline.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from assistant.retrieval import Retriever
from eval.datasets import load_obliqa, select_part
from eval.machine import cpu_model
from eval.metrics import percentiles
from ingest.catalog import now_iso
from ingest.pipeline import Library
from ingest.settings import Settings
from ingest.types import Chunk, DocumentRecord, doc_key

NOISE = 0.02


def source_chunks(lib: Library) -> tuple[list[DocumentRecord], dict[str, list[Chunk]], dict[str, np.ndarray]]:
    """The source's live versions, their chunks, and every chunk's stored vector."""
    records = [r for r in lib.catalog.documents() if r.status == "active"]
    chunks = {r.doc_key: lib.catalog.chunks_of(r.doc_key) for r in records}
    vectors: dict[str, np.ndarray] = {}
    total = lib.vectors.collection.count()
    for offset in range(0, total, 5000):
        got = lib.vectors.collection.get(include=["embeddings"], limit=5000, offset=offset)
        vectors.update(zip(got["ids"], np.asarray(got["embeddings"], dtype=np.float32), strict=True))
    return records, chunks, vectors


def build(source: Library, home: Path, target: int, quiet: bool) -> dict:
    """Fill `home` with copies of the source's chunks until it holds at least `target`; returns what it made."""
    lib = Library(Settings(home=home))
    have = lib.catalog.count_chunks()
    if have >= target:
        lib.close()
        return {"chunks": have, "built_seconds": None}
    records, chunks, vectors = source_chunks(source)
    rng = np.random.default_rng(0)
    shuffle = random.Random(0)
    start = time.perf_counter()
    copy = 0
    bar = tqdm(total=target, initial=have, desc="synthetic index", unit="chunk", file=sys.stderr, disable=quiet)
    while have < target:
        for rec in records:
            document_id = f"{rec.document_id}-copy{copy}"
            if lib.catalog.get(document_id) is not None:  # a copy made by an interrupted run
                continue
            made, rows = [], []
            for c in chunks[rec.doc_key]:
                if c.chunk_id not in vectors:
                    continue
                words = c.text.split()
                if copy:
                    shuffle.shuffle(words)
                made.append(Chunk(**{**c.to_dict(), "chunk_id": f"{c.chunk_id}-copy{copy}", "document_id": document_id,
                                     "version": 1, "text": " ".join(words)}))
                v = vectors[c.chunk_id] + (rng.normal(0, NOISE, vectors[c.chunk_id].shape) if copy else 0)
                rows.append(v / np.linalg.norm(v))
            record = DocumentRecord(document_id=document_id, version=1, title=f"{rec.title} (copy {copy})",
                                    file_name=rec.file_name, sha256=f"{rec.sha256[:48]}{copy:016x}", status="pending",
                                    effective_date=None, pages=rec.pages, chunks=len(made), ingested_at=now_iso(),
                                    kind=rec.kind)
            lib.catalog.add_pending(record, made)
            lib.vectors.upsert(made, np.asarray(rows, dtype=np.float32))
            lib.catalog.activate(record)
            have += len(made)
            bar.update(len(made))
            if have >= target:
                break
        copy += 1
    bar.close()
    lib.refresh_bm25()
    lib.close()
    return {"chunks": have, "built_seconds": round(time.perf_counter() - start, 1)}


def timed(lib: Library, questions, quiet: bool, desc: str) -> list[float]:
    retriever = Retriever(lib, reranker=False)
    for q in questions[:10]:
        retriever.retrieve(q.question)
    out = []
    for q in tqdm(questions[10:], desc=desc, unit="q", file=sys.stderr, disable=quiet):
        t0 = time.perf_counter()
        retriever.retrieve(q.question)
        out.append(1000 * (time.perf_counter() - t0))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--obliqa", type=Path, default=Path("../shared/corpora/obliqa"))
    parser.add_argument("--source", type=Path, default=Path(".comply-bench/obliqa"))
    parser.add_argument("--home", type=Path, default=Path(".comply-bench/scale"))
    parser.add_argument("--chunks", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    source = Library(Settings(home=args.source))
    if not source.catalog.count_chunks():
        raise SystemExit(f"{args.source} holds no library: make bench-retrieval ingests ObliQA there")
    made = build(source, args.home, args.chunks, args.json)
    questions = select_part(load_obliqa(args.obliqa / "ObliQA_dev.json"), "report")[:args.queries + 10]
    big = Library(Settings(home=args.home))
    small_ms = timed(source, questions, args.json, f"{source.catalog.count_chunks()} chunks")
    big_ms = timed(big, questions, args.json, f"{big.catalog.count_chunks()} chunks")
    p_small, p_big = percentiles(small_ms), percentiles(big_ms)
    out = {"cpu": f"{cpu_model()}, {len(os.sched_getaffinity(0))} cores", "load_average": os.getloadavg()[0],
           "queries": len(big_ms), "source_chunks": source.catalog.count_chunks(), **made,
           "source_ms": {"p50": round(p_small[0], 1), "p95": round(p_small[1], 1)},
           "large_ms": {"p50": round(p_big[0], 1), "p95": round(p_big[1], 1)},
           "doc_keys": len({doc_key(r.document_id, r.version) for r in big.catalog.documents()})}
    source.close()
    big.close()
    if args.json:
        print(json.dumps(out, indent=2))
        return 0
    print(f"{out['cpu']}, load {out['load_average']:.2f}; {out['queries']} ObliQA report questions, hybrid, top 5")
    print(f"source library, {out['source_chunks']} chunks: p50 {out['source_ms']['p50']} ms, "
          f"p95 {out['source_ms']['p95']} ms")
    print(f"synthetic library, {out['chunks']} chunks ({out['doc_keys']} documents): p50 {out['large_ms']['p50']} "
          f"ms, p95 {out['large_ms']['p95']} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
