"""Generation speed: our streaming generator vs llama.cpp on the same model and machine, in the same run.

    python -m eval.bench_generate [--obliqa ../shared/corpora/obliqa] [--tokens 128] [--json]

The prompt is the assistant's real prompt with 5 sources (ADGM passages from ObliQA when available, else the
sample corpus). llama.cpp runs the packaged Q4_1 GGUF through llama-cpp-python (built from source by
`make bench-generate`); it is skipped with a message when that package is missing.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

from assistant.generation import load_generator
from assistant.models import packaged_gguf
from assistant.prompt import build_messages
from ingest.settings import Settings
from ingest.types import Chunk


def _sources(obliqa: Path) -> tuple[str, list[Chunk]]:
    docs = obliqa / "StructuredRegulatoryDocuments" / "3.json"
    if docs.is_file():
        records = [r for r in json.loads(docs.read_text()) if len(r["Passage"]) > 600][:5]
        chunks = [Chunk(chunk_id=str(i), document_id="3", version=1, title="Conduct of Business Rulebook",
                        source_file="3.json", text=r["Passage"], seq=i, clause=r["PassageID"])
                  for i, r in enumerate(records)]
        return "What must an Authorised Person disclose to a Retail Client before providing a service?", chunks
    from assistant.retrieval import Retriever
    from ingest.pipeline import Library

    lib = Library(Settings(home=Path(tempfile.mkdtemp())))
    lib.ingest([Path("data/corpus")])
    q = "What must the Bank do before establishing a business relationship?"
    return q, [r.chunk for r in Retriever(lib).retrieve(q, 5)]


def _time_ours(gen, messages, tokens: int) -> dict:
    gen.generate(messages, 4)  # warm-up
    t0 = time.perf_counter()
    first, n = None, 0
    for _ in gen.stream(messages, tokens):
        n += 1
        first = first or time.perf_counter()
    end = time.perf_counter()
    produced = gen.count_tokens(gen.generate(messages, tokens))
    return {"prompt_tokens": int(gen.encode_chat(messages).shape[1]), "new_tokens": produced,
            "ttft_ms": round(1000 * (first - t0), 1),
            "decode_tok_s": round((produced - 1) / (end - first), 1) if produced > 1 else None}


def _time_llamacpp(messages, tokens: int, threads: int) -> dict | None:
    try:
        from llama_cpp import Llama
    except ImportError:
        return None
    llm = Llama(model_path=str(packaged_gguf()), n_ctx=4096, n_threads=threads, verbose=False)
    llm.create_chat_completion(messages=messages, max_tokens=4, temperature=0)
    t0 = time.perf_counter()
    first, n = None, 0
    for part in llm.create_chat_completion(messages=messages, max_tokens=tokens, temperature=0, stream=True):
        if part["choices"][0]["delta"].get("content"):
            n += 1
            first = first or time.perf_counter()
    end = time.perf_counter()
    return {"new_tokens": n, "ttft_ms": round(1000 * (first - t0), 1),
            "decode_tok_s": round((n - 1) / (end - first), 1) if n > 1 else None}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--obliqa", type=Path, default=Path("../shared/corpora/obliqa"))
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    threads = os.cpu_count() or 2
    settings = Settings(home=Path(os.environ.get("COMPLY_HOME", ".comply")))
    question, chunks = _sources(args.obliqa)
    messages = build_messages(question, chunks)
    gen = load_generator(settings)
    ours = _time_ours(gen, messages, args.tokens)
    base = _time_llamacpp(messages, args.tokens, threads)
    out = {"machine": f"{platform.processor() or platform.machine()}, {threads} threads",
           "ours": {**ours, "dtype": str(gen.dtype).replace("torch.", ""), "backend": gen.backend},
           "llama_cpp": base,
           "decode_ratio": round(ours["decode_tok_s"] / base["decode_tok_s"], 2) if base else None}
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        print(f"prompt: {ours['prompt_tokens']} tokens (5 sources), {args.tokens} new tokens max\n")
        print("| generator | decode tok/s | time to first token (ms) |")
        print("| --- | --- | --- |")
        print(f"| comply (transformers, {out['ours']['dtype']}) | {ours['decode_tok_s']} | {ours['ttft_ms']} |")
        if base:
            print(f"| llama.cpp (Q4_1 GGUF) | {base['decode_tok_s']} | {base['ttft_ms']} |")
            print(f"\nratio comply / llama.cpp decode: {out['decode_ratio']}")
        else:
            print("| llama.cpp | not installed (make bench-generate builds it) | |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
