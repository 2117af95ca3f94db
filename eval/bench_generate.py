"""Generation speed: comply's generator backends vs llama.cpp on the same model and machine, in the same run.

    python -m eval.bench_generate [--obliqa ../shared/corpora/obliqa] [--tokens 128] [--rounds 3] [--json]
    python -m eval.bench_generate --quality 20    # also: bf16 vs fp32 greedy agreement, repetition penalty study

The prompt is the assistant's real prompt (assistant/prompt.py) with 5 sources: an ObliQA question, its gold
passage and 4 other passages of the same ADGM document, each cut to ~200 tokens; a synthetic regulatory prompt of
the same shape when ObliQA is absent. Every variant decodes exactly --tokens tokens (stop tokens are ignored) from the
same prompt ids; rounds are interleaved and the median is reported, so machine load hits all variants alike.

Variants: comply's generator on transformers (bf16 and fp32, its own decode loop with a static KV cache), plain
`model.generate()` (bf16) for reference, comply's generator on llama.cpp, and llama.cpp's own sampling loop
(llama-cpp-python `Llama.generate`, greedy) on the packaged Q4_1 GGUF: the baseline of the ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import time
from pathlib import Path

from assistant.generation import REPETITION_PENALTY, Generator, LlamaCppGenerator, TransformersGenerator
from assistant.models import PACKAGED_NAME, llamacpp_installed, packaged_gguf, resolve_generator
from assistant.prompt import build_messages
from eval.bench_ingest import cpu_model
from ingest.settings import Settings
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


def synthetic_prompt() -> tuple[str, list[Chunk]]:
    """A prompt of the same shape without ObliQA: 5 sources of ~200 tokens of rulebook-like text."""
    clause = ("An Authorised Person must take reasonable steps to ensure that any communication to a Client is clear, "
              "fair and not misleading, and must disclose in writing, before providing the service, the nature of the "
              "service, the fees and charges, any conflicts of interest and the complaints procedure. Records of such "
              "disclosures must be retained for at least six years from the date of the last transaction. ")
    chunks = [Chunk(chunk_id=str(i), document_id="synthetic", version=1, title="Conduct of Business Rulebook",
                    source_file="cob.txt", text=(clause * 3)[:SOURCE_CHARS], seq=i, clause=f"6.{i + 1}.1")
              for i in range(5)]
    return "What must an Authorised Person disclose to a Client before providing a service?", chunks


def time_tokens(gen: Generator, messages: list[dict], tokens: int) -> dict:
    """Time to first token and decode tokens/s of comply's generator, decoding exactly `tokens` tokens."""
    stops, gen.stop_ids = gen.stop_ids, set()
    try:
        t0 = time.perf_counter()
        stamps = [time.perf_counter() for _ in gen.tokens(messages, tokens)]
    finally:
        gen.stop_ids = stops
    return _timing(t0, stamps)


def time_hf_generate(gen: TransformersGenerator, messages: list[dict], tokens: int) -> dict:
    """The same model through plain `model.generate()` (greedy, dynamic cache), timed by a streamer."""
    import torch
    from transformers.generation.streamers import BaseStreamer

    class Clock(BaseStreamer):
        def __init__(self):
            self.stamps: list[float] = []

        def put(self, value):  # the first call carries the prompt
            self.stamps.append(time.perf_counter())

        def end(self):
            pass

    ids = torch.tensor([gen.encode_chat(messages)], device=gen.device)
    clock = Clock()
    t0 = time.perf_counter()
    with torch.inference_mode():
        gen.model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=tokens, min_new_tokens=tokens,
                           do_sample=False, streamer=clock, pad_token_id=gen.tokenizer.eos_token_id)
    return _timing(t0, clock.stamps[1:])


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
    return {"ttft_ms": 1000 * (stamps[0] - t0), "decode_tok_s": decode, "new_tokens": len(stamps)}


def quality(gens: dict[str, Generator], prompts: list[tuple[str, list[Chunk]]], tokens: int) -> dict:
    """bf16 vs fp32 greedy agreement, and what the repetition penalty does to answers (loops, stops, grounding)."""
    bf16, fp32 = gens["transformers-bf16"], gens["transformers-fp32"]
    report: dict = {"prompts": len(prompts), "max_new_tokens": tokens}
    same, prefix = 0, []
    penalties = {1.0: [], REPETITION_PENALTY: []}
    for question, chunks in prompts:
        messages = build_messages(question, chunks)
        a, b = list(bf16.tokens(messages, tokens)), list(fp32.tokens(messages, tokens))
        same += a == b
        prefix.append(next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b))))
        for penalty, rows in penalties.items():
            bf16.repetition_penalty = penalty
            ids = list(bf16.tokens(messages, tokens))
            text = bf16.tokenizer.decode(ids, skip_special_tokens=True)
            rows.append(_answer_stats(text, len(ids), tokens, " ".join(c.text for c in chunks)))
        bf16.repetition_penalty = REPETITION_PENALTY
    report["bf16_vs_fp32"] = {"identical_outputs": same, "median_common_prefix_tokens": statistics.median(prefix)}
    report["repetition_penalty"] = {str(p): {k: round(statistics.mean(r[k] for r in rows), 3) for k in rows[0]}
                                    for p, rows in penalties.items()}
    return report


def _answer_stats(text: str, n: int, limit: int, sources: str) -> dict:
    words = text.lower().split()
    grams = [tuple(words[i:i + 4]) for i in range(len(words) - 3)]
    source_words = set(sources.lower().split())
    return {"hit_max_tokens": float(n >= limit),
            "repeated_4gram_share": 1 - len(set(grams)) / len(grams) if grams else 0.0,
            "cites_a_source": float("[" in text and "]" in text),
            "words_from_sources": sum(w in source_words for w in words) / len(words) if words else 0.0,
            "tokens": n}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--obliqa", type=Path, default=Path("../shared/corpora/obliqa"))
    parser.add_argument("--tokens", type=int, default=128, help="new tokens per timed completion")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: all cores)")
    parser.add_argument("--quality", type=int, default=0, metavar="N", help="also study N ObliQA prompts")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    threads = args.threads or os.cpu_count() or 1
    settings = Settings(home=Path(os.environ.get("COMPLY_HOME", ".comply")))
    path = resolve_generator(settings)
    have_obliqa = (args.obliqa / "ObliQA_dev.json").is_file()
    question, chunks = obliqa_prompts(args.obliqa, 1)[0] if have_obliqa else synthetic_prompt()
    messages = build_messages(question, chunks)

    gens: dict[str, Generator] = {
        "transformers-bf16": TransformersGenerator(path, name=PACKAGED_NAME, bf16=True, threads=threads),
        "transformers-fp32": TransformersGenerator(path, name=PACKAGED_NAME, bf16=False, threads=threads)}
    llm = None
    if llamacpp_installed():
        from llama_cpp import Llama

        gens["llamacpp"] = LlamaCppGenerator(str(packaged_gguf()), path, name=PACKAGED_NAME, threads=threads)
        llm = Llama(model_path=str(packaged_gguf()), n_ctx=0, n_batch=512, n_threads=threads,
                    n_threads_batch=threads, verbose=False)
    ids = gens["transformers-bf16"].encode_chat(messages)
    runs: dict[str, list[dict]] = {}
    load_before = os.getloadavg()[0]
    for round_ in range(args.rounds + 1):  # round 0 warms up every variant and is discarded
        for name, gen in gens.items():
            runs.setdefault(name, []).append(time_tokens(gen, messages, args.tokens))
        runs.setdefault("transformers-bf16 generate()", []).append(
            time_hf_generate(gens["transformers-bf16"], messages, args.tokens))
        if llm is not None:
            runs.setdefault("llama.cpp reference", []).append(time_llamacpp_reference(llm, ids, args.tokens))
        if round_ == 0:
            runs = {k: [] for k in runs}
    results = {name: {k: round(statistics.median(r[k] for r in rs), 1) for k in ("ttft_ms", "decode_tok_s")}
               for name, rs in runs.items()}
    base = results.get("llama.cpp reference")
    for row in results.values():
        row["ratio_vs_llamacpp"] = round(row["decode_tok_s"] / base["decode_tok_s"], 2) if base else None
    out = {"machine": f"{cpu_model()}, {threads} threads, load average {load_before:.1f} -> {os.getloadavg()[0]:.1f}",
           "prompt": f"{len(ids)} tokens ({'ObliQA' if have_obliqa else 'synthetic'}, 5 sources)",
           "new_tokens": args.tokens, "rounds": args.rounds, "results": results}
    if args.quality:
        prompts = obliqa_prompts(args.obliqa, args.quality, seed=1) if have_obliqa else [synthetic_prompt()]
        out["quality"] = quality(gens, prompts, 96)
    if args.json:
        print(json.dumps(out, indent=2))
        return 0
    print(f"{out['machine']}\nprompt: {out['prompt']}, {args.tokens} new tokens, median of {args.rounds} rounds\n")
    print("| generator | decode tok/s | time to first token (ms) | decode vs llama.cpp |")
    print("| --- | --- | --- | --- |")
    for name, row in results.items():
        print(f"| {name} | {row['decode_tok_s']} | {row['ttft_ms']:.0f} | {row['ratio_vs_llamacpp'] or '-'} |")
    if llm is None:
        print("\nllama.cpp: llama-cpp-python is not installed (`make bench-generate` builds it)")
    if args.quality:
        print("\n" + json.dumps(out["quality"], indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
