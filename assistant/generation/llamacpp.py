"""The llama.cpp backend (the default for GGUF models, the packaged Qwen2.5-Coder-1.5B-Instruct among them): continuous
batching, several answers at once (assistant/generation/llamacpp_engine.py); an adapter runs as a LoRA GGUF."""

from __future__ import annotations

import os
from collections.abc import Iterator

from assistant.generation.base import Generator, GreedyPicker
from assistant.generation.llamacpp_engine import BatchEngine
from assistant.models import (
    REPETITION_PENALTY,  # the 135M model's penalty: TransformersGenerator's default
)


class LlamaCppGenerator(Generator):
    """A GGUF model on llama.cpp with continuous batching (llamacpp_engine.py): several answers are
    written at once. An adapter runs as a LoRA GGUF on top of the quantised weights, unmerged.

    Tokenising and the chat template stay with the HF tokenizer (the same vocabulary, read from the GGUF), so the
    training code and every backend see the same ids and the same prompt."""

    backend = "llamacpp"

    def __init__(self, gguf_path: str, tokenizer_path: str, *, name: str, adapter: str | None = None,
                 lora_path: str | None = None, max_new_tokens: int = 192, threads: int | None = None,
                 slots: int = 4, slot_tokens: int = 2048, repetition_penalty: float = REPETITION_PENALTY):
        from transformers import AutoTokenizer  # lazy: transformers takes ~2.5 s to import (it loads torch)

        super().__init__(AutoTokenizer.from_pretrained(tokenizer_path), name=name, adapter=adapter,
                         max_new_tokens=max_new_tokens, repetition_penalty=repetition_penalty)
        self.dtype = gguf_quantisation(gguf_path)
        threads = threads or os.cpu_count() or 1  # llama-cpp-python's own default is half the cores
        self.engine = BatchEngine(gguf_path, lora=lora_path, slots=slots, slot_tokens=slot_tokens, threads=threads)
        self.gguf_path, self.lora_path = gguf_path, lora_path

    def tokens(self, messages: list[dict], max_new_tokens: int | None = None,
               trace: list[tuple[int, float]] | None = None) -> Iterator[int]:
        limit = max_new_tokens or self.max_new_tokens
        pick = GreedyPicker(self.stop_ids, limit, self.repetition_penalty, trace)
        return self.engine.generate(self.encode_chat(messages), pick, limit)


def gguf_quantisation(path: str) -> str:
    """The file type of a GGUF as llama.cpp names it (q4_k_m, q4_1, ...), read from its header."""
    import gguf  # lazy: gguf takes ~0.3 s to import; only GGUF models need it

    reader = gguf.GGUFReader(path)
    field = reader.fields.get("general.file_type")
    if field is None:
        return "gguf"
    try:
        return gguf.LlamaFileType(int(field.contents())).name.removeprefix("MOSTLY_").lower()
    except ValueError:
        return "gguf"
