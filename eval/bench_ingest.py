"""Ingestion speed: comply's pipeline vs the stock llama-index pipeline on the same PDFs, in the same run.

    python -m eval.bench_ingest --pdfs ../shared/corpora/regulation-pdfs [--json]

Stock: pages read with the same reader (pypdfium2, one llama-index Document per page), default SentenceSplitter,
HuggingFaceEmbedding (same model folder, fp32), ChromaVectorStore, VectorStoreIndex.from_documents.
Both write to fresh temporary stores. Model loading is timed separately from ingestion for both.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def run_ours(pdfs: list[Path]) -> dict:
    from ingest.embedding import load_embedder
    from ingest.pipeline import Library
    from ingest.settings import Settings

    settings = Settings(home=Path(tempfile.mkdtemp(prefix="bench-ours-")))
    t0 = time.perf_counter()
    embedder = load_embedder(settings)
    load_s = time.perf_counter() - t0
    lib = Library(settings, embedder=embedder)
    t1 = time.perf_counter()
    report = lib.ingest(pdfs)
    ingest_s = time.perf_counter() - t1
    assert not report.failed, report.to_dict()
    texts = [c for _, _, c in lib.catalog.all_chunk_rows()]
    tokens = sum(min(n, embedder.max_tokens) for n in embedder.count_tokens(texts))
    return {"pages": report.pages_read, "chunks": report.chunks_added, "model_load_s": round(load_s, 2),
            "ingest_s": round(ingest_s, 2), "tokens_embedded": tokens, "bf16": embedder.bf16}


def run_stock(pdfs: list[Path], model_dir: str) -> dict:
    import chromadb
    import pypdfium2 as pdfium
    from chromadb.config import Settings as ChromaSettings
    from llama_index.core import Document, StorageContext, VectorStoreIndex
    from llama_index.core import Settings as LISettings
    from llama_index.core.node_parser import SentenceSplitter
    from llama_index.embeddings.huggingface import HuggingFaceEmbedding
    from llama_index.vector_stores.chroma import ChromaVectorStore

    t0 = time.perf_counter()
    embed = HuggingFaceEmbedding(model_name=model_dir, device="cpu")
    load_s = time.perf_counter() - t0
    t1 = time.perf_counter()
    docs = []
    for path in pdfs:
        pdf = pdfium.PdfDocument(str(path))
        for i in range(len(pdf)):
            docs.append(Document(text=pdf[i].get_textpage().get_text_range(),
                                 metadata={"file_name": path.name, "page": i + 1}))
        pdf.close()
    client = chromadb.PersistentClient(path=tempfile.mkdtemp(prefix="bench-stock-"),
                                       settings=ChromaSettings(anonymized_telemetry=False))
    store = ChromaVectorStore(chroma_collection=client.get_or_create_collection("stock", embedding_function=None))
    LISettings.embed_model = embed
    splitter = SentenceSplitter()
    index = VectorStoreIndex.from_documents(docs, storage_context=StorageContext.from_defaults(vector_store=store),
                                            transformations=[splitter], embed_model=embed)
    ingest_s = time.perf_counter() - t1
    nodes = splitter.get_nodes_from_documents(docs)
    tokenizer = embed._model.tokenizer
    full = [len(ids) for ids in tokenizer([n.get_content() for n in nodes], add_special_tokens=False)["input_ids"]]
    del index
    return {"pages": len(docs), "chunks": len(nodes), "model_load_s": round(load_s, 2),
            "ingest_s": round(ingest_s, 2), "tokens_embedded": sum(min(n, 256) for n in full),
            "tokens_in_chunks": sum(full)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pdfs", type=Path, default=Path("../shared/corpora/regulation-pdfs"))
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    pdfs = sorted(args.pdfs.glob("*.pdf"))
    if not pdfs:
        print(f"no PDFs in {args.pdfs}", file=sys.stderr)
        return 2
    from ingest.embedding import resolve_embedding_model
    from ingest.settings import DEFAULT_EMBEDDING

    ours = run_ours(pdfs)
    stock = run_stock(pdfs, resolve_embedding_model(DEFAULT_EMBEDDING))
    for r in (ours, stock):
        r["pages_per_s"] = round(r["pages"] / r["ingest_s"], 1)
        r["chunks_per_s"] = round(r["chunks"] / r["ingest_s"], 1)
    out = {"cpu": _cpu(), "files": len(pdfs), "ours": ours, "stock_llama_index": stock,
           "speedup_pages_per_s": round(ours["pages_per_s"] / stock["pages_per_s"], 2),
           "share_of_chunk_text_embedded_by_stock": round(stock["tokens_embedded"] / stock["tokens_in_chunks"], 3)}
    if args.json:
        print(json.dumps(out, indent=2))
        return 0
    print(f"{len(pdfs)} PDFs, {ours['pages']} pages, CPU: {out['cpu']}\n")
    print("| pipeline | ingest s | pages/s | chunks | chunks/s | tokens embedded | model load s |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for name, r in (("comply (bf16)" if ours["bf16"] else "comply", ours), ("stock llama-index (fp32)", stock)):
        print(f"| {name} | {r['ingest_s']} | {r['pages_per_s']} | {r['chunks']} | {r['chunks_per_s']} | "
              f"{r['tokens_embedded']} | {r['model_load_s']} |")
    print(f"\nspeed-up (pages/s): {out['speedup_pages_per_s']}x; the stock splitter's 1024-token chunks are cut to the "
          f"model's 256-token window, so it embeds {100 * out['share_of_chunk_text_embedded_by_stock']:.0f}% "
          "of its chunk text")
    return 0


if __name__ == "__main__":
    sys.exit(main())
