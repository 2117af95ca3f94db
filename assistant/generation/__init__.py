"""The generator, one file per backend (base.py holds what they share): greedy, streaming chat completion from a causal LM with an optional peft LoRA adapter.

The local backends share the decoding (chat template, greedy choice, repetition penalty, stop tokens, detokenising)
and differ only in how the model runs:
- llamacpp (the default for GGUF models, the packaged Qwen2.5-Coder-1.5B-Instruct among them): llama.cpp with
  continuous batching, several answers at once (llamacpp.py, llamacpp_engine.py); an adapter runs as a LoRA GGUF.
- transformers: any HF model on CUDA or CPU; what training uses and checks an adapter with. On CPU a
  llama-architecture model decodes through `Int4Decoder` (int4 weights, the LoRA kept beside them unmerged).
- openai (openai.py): any OpenAI-compatible server (vLLM, llama.cpp's server, Ollama, TGI).
"""

from __future__ import annotations

import functools
import threading
from pathlib import Path

from assistant.generation.base import Generator, GreedyPicker, quiet_loading
from assistant.generation.llamacpp import LlamaCppGenerator, gguf_quantisation
from assistant.generation.openai import OpenAIGenerator
from assistant.generation.transformers import Int4Decoder, TransformersGenerator
from assistant.models import (
    generator_gguf,
    generator_tokenizer,
    lora_gguf,
    model_display_name,
    pick_backend,
    pick_device,
    repetition_penalty,
    resolve_generator,
    use_bf16,
)
from ingest.settings import Settings

__all__ = ["Generator", "GreedyPicker", "Int4Decoder", "LlamaCppGenerator", "TransformersGenerator", "gguf_quantisation",
           "load_generator", "quiet_loading"]


@functools.lru_cache(maxsize=2)
def _cached(backend: str, path: str, name: str, adapter: str | None, device: str, bf16: bool, max_new_tokens: int,
            threads: int | None, models_dir: str, gguf_file: str | None, slots: int, slot_tokens: int,
            penalty: float) -> Generator:
    if backend == "llamacpp":
        lora = str(lora_gguf(adapter, Path(gguf_file), Path(models_dir))) if adapter else None
        return LlamaCppGenerator(gguf_file, path, name=name, adapter=adapter, lora_path=lora,
                                 max_new_tokens=max_new_tokens, threads=threads, slots=slots,
                                 slot_tokens=slot_tokens, repetition_penalty=penalty)
    return TransformersGenerator(path, name=name, adapter=adapter, device=device, bf16=bf16,
                                 max_new_tokens=max_new_tokens, threads=threads, repetition_penalty=penalty)


# transformers builds a model under a process-wide "weights on the meta device" switch while it loads: two threads
# loading at once (the server's warm-up and a first question) leave one with empty weights. One load at a time.
_LOADING = threading.Lock()


def load_generator(settings: Settings, adapter: str | None = None):
    """The process-wide generator for these settings and adapter folder (loaded once per model/adapter/backend):
    llama.cpp for GGUF models, any OpenAI-compatible server, or transformers (docs/architecture.md)."""
    with _LOADING:
        return _load_generator(settings, adapter)


def _load_generator(settings: Settings, adapter: str | None):
    backend = pick_backend(settings, adapter)
    if backend == "openai":
        return OpenAIGenerator.from_settings(settings, adapter)
    device = pick_device(settings)
    gguf_file = str(generator_gguf(settings)) if backend == "llamacpp" else None
    path = generator_tokenizer(settings) if backend == "llamacpp" else resolve_generator(settings)
    return _cached(backend, path, model_display_name(settings), adapter, device, use_bf16(settings, device),
                   settings.max_new_tokens, settings.threads, str(settings.models_dir), gguf_file,
                   settings.generator_parallel, settings.generator_context_tokens, repetition_penalty(settings))
