"""The generator: a causal LM on transformers (plus an optional peft LoRA adapter), greedy, streaming.

Decoding is a lean loop over the model's forward with its KV cache rather than `generate()`: on a 2-core CPU the
per-token bookkeeping of `generate()` costs as much as the 135M model's forward itself.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Iterator

from assistant.models import model_display_name, pick_device, resolve_generator, use_bf16
from ingest.settings import Settings


class Generator:
    """Greedy chat generation with token streaming."""

    backend = "transformers"

    def __init__(self, model_path: str, *, name: str, adapter: str | None = None, device: str = "cpu",
                 bf16: bool = False, max_new_tokens: int = 192, repetition_penalty: float = 1.1,
                 threads: int | None = None):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if threads:
            torch.set_num_threads(threads)
        self.model_name = name
        self.adapter = adapter
        self.device = device
        self.dtype = torch.bfloat16 if bf16 else torch.float32
        self.max_new_tokens = max_new_tokens
        self.repetition_penalty = repetition_penalty
        self.tokenizer = AutoTokenizer.from_pretrained(model_path)
        model = AutoModelForCausalLM.from_pretrained(model_path, dtype=self.dtype)
        if adapter:
            from peft import PeftModel

            model = PeftModel.from_pretrained(model, adapter)
        self.model = model.to(device).eval()
        stop = {self.tokenizer.eos_token_id}
        for token in ("<|im_end|>", "<|endoftext|>", "<|eot_id|>"):
            tid = self.tokenizer.convert_tokens_to_ids(token)
            if isinstance(tid, int) and tid != self.tokenizer.unk_token_id:
                stop.add(tid)
        self.stop_ids = {t for t in stop if t is not None}
        self._lock = threading.Lock()

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def encode_chat(self, messages: list[dict]):
        """Token ids of a chat rendered with the model's template, ready for the assistant's turn."""
        return self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt",
                                                  return_dict=True)["input_ids"]

    def stream(self, messages: list[dict], max_new_tokens: int | None = None) -> Iterator[str]:
        """Yield text pieces as tokens are generated (greedy)."""
        import torch

        limit = max_new_tokens or self.max_new_tokens
        input_ids = self.encode_chat(messages).to(self.device)
        with self._lock, torch.inference_mode():
            out = self.model(input_ids=input_ids, use_cache=True)
            past = out.past_key_values
            logits = out.logits[:, -1, :]
            generated: list[int] = []
            emitted = ""
            for _ in range(limit):
                if self.repetition_penalty != 1.0 and generated:
                    seen = torch.tensor(sorted(set(generated)), device=logits.device)
                    picked = logits[0, seen]
                    logits[0, seen] = torch.where(picked > 0, picked / self.repetition_penalty,
                                                  picked * self.repetition_penalty)
                token = int(torch.argmax(logits, dim=-1))
                if token in self.stop_ids:
                    break
                generated.append(token)
                text = self.tokenizer.decode(generated, skip_special_tokens=True)
                # hold back an incomplete UTF-8 sequence until the next token completes it
                if not text.endswith("\ufffd") and len(text) > len(emitted):
                    yield text[len(emitted):]
                    emitted = text
                out = self.model(input_ids=torch.tensor([[token]], device=self.device), past_key_values=past,
                                 use_cache=True)
                past = out.past_key_values
                logits = out.logits[:, -1, :]

    def generate(self, messages: list[dict], max_new_tokens: int | None = None) -> str:
        """The whole completion as one string."""
        return "".join(self.stream(messages, max_new_tokens))

    def benchmark(self, messages: list[dict], new_tokens: int = 64) -> dict:
        """Time to first token and decode tokens/s for one greedy run."""
        t0 = time.perf_counter()
        first = None
        pieces = 0
        for _ in self.stream(messages, new_tokens):
            pieces += 1
            if first is None:
                first = time.perf_counter()
        end = time.perf_counter()
        n = self.count_tokens("".join(self.stream(messages, new_tokens))) if pieces else 0
        decode_s = end - (first or end)
        return {"ttft_ms": round(1000 * ((first or end) - t0), 1), "tokens": n,
                "tokens_per_s": round((n - 1) / decode_s, 1) if n > 1 and decode_s > 0 else None}


@functools.lru_cache(maxsize=4)
def _cached(path: str, name: str, adapter: str | None, device: str, bf16: bool, max_new_tokens: int,
            threads: int | None) -> Generator:
    return Generator(path, name=name, adapter=adapter, device=device, bf16=bf16, max_new_tokens=max_new_tokens,
                     threads=threads)


def load_generator(settings: Settings, adapter: str | None = None) -> Generator:
    """The process-wide generator for these settings and adapter (loaded once)."""
    if settings.generator_backend not in ("auto", "transformers"):
        raise ValueError(f"generator backend '{settings.generator_backend}' is not available; use 'transformers'")
    device = pick_device(settings)
    return _cached(resolve_generator(settings), model_display_name(settings), adapter, device,
                   use_bf16(settings, device), settings.max_new_tokens, settings.threads)
