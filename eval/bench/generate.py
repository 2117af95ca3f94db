"""Generation speed: comply's generator against llama.cpp's own loop on the same GGUF, threads and machine, in one run.

    python -m eval.bench.generate [--obliqa ../shared/corpora/obliqa] [--model qwen2.5-coder-1.5b-instruct]
                                  [--tokens 128] [--rounds 3] [--concurrent 4] [--transformers] [--json]

The prompt is the assistant's real prompt (assistant/prompt.py) with 5 sources: an ObliQA question, its gold passage
and 4 other passages of the same ADGM document (~1,200 prompt tokens with the 1.5B model's tokenizer); a synthetic
regulatory prompt of the same shape when ObliQA is absent. Every single-asker variant decodes exactly --tokens tokens
(stop tokens ignored) from the same prompt ids; rounds are interleaved and the median is reported, so machine load
hits all variants alike. Each round asks new questions: comply's engine keeps each slot's cache, so only the start
that every prompt shares (the system rules) is read from it, as in use; a ratio is the median of each run against the
reference run on the same question.

- **llama.cpp reference**: llama-cpp-python's `Llama.generate` (greedy, top_k=1, no penalty) on the same GGUF: the
  baseline of every ratio.
- **comply engine**: comply's generator as the assistant runs it (assistant/generation/llamacpp_engine.py: continuous batching).
- **comply as it answers**: the engine with the assistant's own source count (`top_k`: 3 for the packaged models,
  chosen on ObliQA's tune part, docs/benchmarks.md), the first of the same question's 5 sources, against the
  reference on all 5: what a user waits for, next to what llama.cpp does with the longer prompt.
- **comply engine, N askers**: N completions of N different questions submitted at once; each asker's total time
  against one asker's alone.
- **transformers** (`--transformers`, llama-architecture models only): comply's HF path and its int4 decoder.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import threading
import time
from pathlib import Path

from assistant.generation import Generator, GreedyPicker, LlamaCppGenerator, TransformersGenerator
from assistant.models import generator_gguf, generator_tokenizer, model_display_name, resolve_generator
from assistant.prompt import build_messages
from eval.machine import cpu_model
from ingest.settings import DEFAULT_GENERATOR, Settings
from ingest.types import Chunk

SOURCE_CHARS = 900  # what assistant/prompt.py keeps of each source: ~200 tokens of regulatory English


def obliqa_prompts(obliqa: Path, count: int, seed: int = 0) -> list[tuple[str, list[Chunk]]]:
    """(question, 5 sources) from ObliQA dev: the gold passage plus 4 long passages of the same document."""
    questions = json.loads((obliqa / "ObliQA_dev.json").read_text())
    rng = random.Random(seed)
    rng.shuffle(questions)
    prompts: list[tuple[str, list[Chunk]]] = []
    documents: dict[int, list[dict]] = {}
    for q in questions:
        gold = q["Passages"][0]
        doc = gold["DocumentID"]
        if doc not in documents:
            path = obliqa / "StructuredRegulatoryDocuments" / f"{doc}.json"
            documents[doc] = json.loads(path.read_text()) if path.is_file() else []
        others = [p for p in documents[doc] if len(p["Passage"]) >= SOURCE_CHARS and p["PassageID"] != gold["PassageID"]]
        if len(gold["Passage"]) < 300 or len(others) < 4:
            continue
        picked = [gold, *rng.sample(others, 4)]
        rng.shuffle(picked)
        chunks = [Chunk(chunk_id=str(i), document_id=str(doc), version=1, title=f"ADGM document {doc}",
                        source_file=f"{doc}.json", text=p["Passage"], seq=i, clause=p["PassageID"])
                  for i, p in enumerate(picked)]
        prompts.append((q["Question"], chunks))
        if len(prompts) == count:
            break
    return prompts


def synthetic_prompts(count: int) -> list[tuple[str, list[Chunk]]]:
    """Prompts of the same shape without ObliQA: 5 sources of ~200 tokens of rulebook-like text."""
    clause = ("An Authorised Person must take reasonable steps to ensure that any communication to a Client is clear, "
              "fair and not misleading, and must disclose in writing, before providing the service, the nature of the "
              "service, the fees and charges, any conflicts of interest and the complaints procedure. Records of such "
              "disclosures must be retained for at least six years from the date of the last transaction. ")
    asks = ["What must an Authorised Person disclose to a Client before providing a service?",
            "How long must records of disclosures be retained?", "What must communications to a Client be?",
            "Who must take reasonable steps about communications?", "When must the fees be disclosed?"]
    # each prompt's sources open differently, so the engine's caches share only the system rules, as with ObliQA
    return [(asks[n % len(asks)],
             [Chunk(chunk_id=str(i), document_id="synthetic", version=1, title="Conduct of Business Rulebook",
                    source_file="cob.txt", text=(f"Rule {n + 1}.{i + 1}. " + clause * 3)[:SOURCE_CHARS], seq=i,
                    clause=f"{n + 6}.{i + 1}.1") for i in range(5)]) for n in range(count)]


def time_tokens(gen: Generator, messages: list[dict], tokens: int) -> dict:
    """Time to first token and decode tokens/s of comply's generator, decoding exactly `tokens` tokens."""
    stops, gen.stop_ids = gen.stop_ids, set()
    try:
        t0 = time.perf_counter()
        stamps = [time.perf_counter() for _ in gen.tokens(messages, tokens)]
    finally:
        gen.stop_ids = stops
    return _timing(t0, stamps)


def time_concurrent(gen: LlamaCppGenerator, prompts: list[list[dict]], tokens: int) -> list[dict]:
    """Submit every prompt at once (one thread each, as the server's users would) and time each asker."""
    results: list[dict] = [{} for _ in prompts]

    def ask(i: int) -> None:
        ids = gen.encode_chat(prompts[i])
        t0 = time.perf_counter()
        stamps = [time.perf_counter() for _ in gen.engine.generate(ids, GreedyPicker(set(), tokens, 1.0, None),
                                                                    tokens)]
        results[i] = _timing(t0, stamps)

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(len(prompts))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def time_llamacpp_reference(llm, ids: list[int], tokens: int) -> dict:
    """llama.cpp's own loop: llama-cpp-python `Llama.generate`, greedy (top_k=1), no repetition penalty."""
    llm.reset()
    t0 = time.perf_counter()
    stamps: list[float] = []
    for _ in llm.generate(ids, top_k=1, temp=0.0, repeat_penalty=1.0, reset=True):
        stamps.append(time.perf_counter())
        if len(stamps) == tokens:
            break
    return _timing(t0, stamps)


def _timing(t0: float, stamps: list[float]) -> dict:
    decode = (len(stamps) - 1) / (stamps[-1] - stamps[0]) if len(stamps) > 1 else None
    return {"ttft_ms": 1000 * (stamps[0] - t0), "decode_tok_s": decode, "new_tokens": len(stamps),
            "total_ms": 1000 * (stamps[-1] - t0)}


def _p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--obliqa", type=Path, default=Path("../shared/corpora/obliqa"))
    parser.add_argument("--model", default=DEFAULT_GENERATOR, help="generator_model to measure (a GGUF model)")
    parser.add_argument("--tokens", type=int, default=128, help="new tokens per timed completion")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrent", type=int, default=4, help="askers at once (0: skip)")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: all cores)")
    parser.add_argument("--transformers", action="store_true", help="also comply's transformers path (llama models)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    threads = args.threads or os.cpu_count() or 1
    settings = Settings(home=Path(os.environ.get("COMPLY_HOME", ".comply")), generator_model=args.model,
                        generator_parallel=max(args.concurrent, 1), threads=threads)
    from llama_cpp import Llama  # lazy: loads llama.cpp's native library (~0.2 s)

    gguf = str(generator_gguf(settings))
    name = model_display_name(settings)
    have_obliqa = (args.obliqa / "ObliQA_dev.json").is_file()
    # Every timed completion gets a question of its own: the engine keeps each slot's cache (llamacpp_engine.py), so
    # a prompt asked twice would be read from it; across questions only the shared start (the system rules) is.
    per_round = 2 + max(args.concurrent, 1)
    count = (args.rounds + 1) * per_round
    prompts = obliqa_prompts(args.obliqa, count) if have_obliqa else synthetic_prompts(count)
    if len(prompts) < count:
        raise SystemExit(f"only {len(prompts)} ObliQA prompts of the benchmark's shape; need {count}")
    top_k = settings.top_k or 5

    engine = LlamaCppGenerator(gguf, generator_tokenizer(settings), name=name, threads=threads,
                               slots=max(args.concurrent, 1), slot_tokens=settings.generator_context_tokens)
    gens: dict[str, Generator] = {"comply engine": engine}
    if args.transformers:
        path = resolve_generator(settings)
        gens["transformers-bf16"] = TransformersGenerator(path, name=name, bf16=True, threads=threads)
        gens["transformers-fp32"] = TransformersGenerator(path, name=name, bf16=False, threads=threads)
    llm = Llama(model_path=gguf, n_ctx=settings.generator_context_tokens, n_batch=512, n_threads=threads,
                n_threads_batch=threads, verbose=False)
    default_label = f"comply as it answers: the first {top_k} of the 5 sources"
    # label -> [(this run, the llama.cpp reference on the same question's 5-source prompt)]
    runs: dict[str, list[tuple[dict, dict]]] = {}
    prompt_tokens: list[int] = []
    load_before = os.getloadavg()[0]
    for round_ in range(args.rounds + 1):  # round 0 warms up every variant and is discarded
        (q_a, chunks_a), (q_b, chunks_b), *group = prompts[round_ * per_round:(round_ + 1) * per_round]
        messages = build_messages(q_a, chunks_a)
        ids = engine.encode_chat(messages)
        prompt_tokens.append(len(ids))
        ref = time_llamacpp_reference(llm, ids, args.tokens)
        runs.setdefault("llama.cpp reference", []).append((ref, ref))
        for label, gen in gens.items():
            runs.setdefault(label, []).append((time_tokens(gen, messages, args.tokens), ref))
        if top_k < 5:
            ref_b = time_llamacpp_reference(llm, engine.encode_chat(build_messages(q_b, chunks_b)), args.tokens)
            short = time_tokens(engine, build_messages(q_b, chunks_b[:top_k]), args.tokens)
            runs.setdefault(default_label, []).append((short, ref_b))
        if args.concurrent > 1:
            chats = [build_messages(q, c) for q, c in group]
            runs.setdefault(f"comply engine, {args.concurrent} askers", []).extend(
                (r, ref) for r in time_concurrent(engine, chats, args.tokens))
        if round_ == 0:
            runs = {k: [] for k in runs}
            prompt_tokens.clear()
    results = {label: {k: round(statistics.median(r[k] for r, _ in rs), 1)
                       for k in ("ttft_ms", "decode_tok_s", "total_ms")} for label, rs in runs.items()}
    for label, row in results.items():  # each run against the reference on its own question, then the median
        row["decode_vs_llamacpp"] = round(statistics.median(r["decode_tok_s"] / b["decode_tok_s"]
                                                            for r, b in runs[label]), 2)
        row["ttft_vs_llamacpp"] = round(statistics.median(r["ttft_ms"] / b["ttft_ms"] for r, b in runs[label]), 2)
        row["p95_total_ms"] = round(_p95([r["total_ms"] for r, _ in runs[label]]), 1)
    single = results["comply engine"]["total_ms"]
    for row in results.values():
        row["p95_total_vs_one_asker"] = round(row["p95_total_ms"] / single, 2)
    out = {"machine": f"{cpu_model()}, {threads} threads, load average {load_before:.1f} -> {os.getloadavg()[0]:.1f}",
           "model": f"{name} ({Path(gguf).name})",
           "prompt": f"{round(statistics.median(prompt_tokens))} tokens, median ({'ObliQA' if have_obliqa else 'synthetic'}, "
                     f"5 sources; a new question for every completion)",
           "reused_prompt_tokens": engine.engine.reused_tokens,
           "new_tokens": args.tokens, "rounds": args.rounds, "results": results}
    if args.json:
        print(json.dumps(out, indent=2))
        return 0
    print(f"{out['machine']}\nmodel: {out['model']}\nprompt: {out['prompt']}, {args.tokens} new tokens, median of "
          f"{args.rounds} rounds; {out['reused_prompt_tokens']} prompt tokens read from the engine's slot caches\n")
    print("| generator | decode tok/s | vs llama.cpp | first token (ms) | vs llama.cpp | total p50 / p95 (ms) | "
          "p95 vs one asker |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for label, row in results.items():
        print(f"| {label} | {row['decode_tok_s']} | {row['decode_vs_llamacpp']} | {row['ttft_ms']:.0f} | "
              f"{row['ttft_vs_llamacpp']} | {row['total_ms']:.0f} / {row['p95_total_ms']:.0f} | "
              f"{row['p95_total_vs_one_asker']} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
