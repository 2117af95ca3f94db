"""Continuous batching on llama.cpp: one context serves several answers at once.

llama-cpp-python's `Llama` (and its OpenAI-compatible server) completes one prompt at a time: a second user waits
for the first answer to finish. llama.cpp itself decodes many sequences in one `llama_decode` call; where a decode
step is bound by reading the weights from memory, a step for four sequences costs little more than a step for one.
This file is the scheduler llama-cpp-python lacks (its C API, no private ops): each step puts the next token of every
answer being written, plus a slice of any prompt still being read, into one batch, so a new question starts while
others are still answering and no one waits for a whole answer (docs/architecture.md; measured in
`make bench-generate`: on a compute-bound 2-core CPU it gives fairness, not throughput).

A slot keeps what its last answer left in the KV cache, and a new prompt goes to the free slot that already holds
the longest start of it: every answer's prompt opens with the same system rules and chat template, so those tokens
are read once per slot, not once per answer (llama.cpp's server calls this prompt caching). Only the rest of the
prompt is decoded.
"""

from __future__ import annotations

import ctypes
import logging
import queue
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np

from ingest.types import ComplyError

# a token picker: next-token logits (float32, writable) -> the token id, or None to end the answer
Picker = Callable[[np.ndarray], "int | None"]
_DONE = object()


class EngineError(ComplyError, RuntimeError):
    """llama.cpp could not run a request (the model or adapter failed to load, a prompt too long for a slot)."""


@dataclass
class _Request:
    prompt: list[int]
    pick: Picker
    out: queue.Queue = field(default_factory=queue.Queue)
    cancelled: bool = False


@dataclass
class _Slot:
    seq: int
    request: _Request
    fed: int = 0  # prompt tokens already decoded
    pos: int = 0  # next position in this sequence
    next_token: int | None = None  # the last picked token, to be fed at the next step


class BatchEngine:
    """A GGUF model on llama.cpp with `slots` sequences in one KV cache, each up to `slot_tokens` long."""

    def __init__(self, gguf: str, *, lora: str | None = None, slots: int = 4, slot_tokens: int = 2048,
                 threads: int = 2, batch_tokens: int = 512):
        import llama_cpp  # lazy: loads llama.cpp's native library
        from llama_cpp import _internals  # lazy: loads llama.cpp's native library

        self._c = llama_cpp
        llama_cpp.llama_backend_init()
        _silence_llama_log()
        model_params = llama_cpp.llama_model_default_params()
        # read the weights into memory instead of mapping the file: on CPUs with AVX2 llama.cpp repacks most
        # quantised matrices into its own interleaved layout (in anonymous memory), so with the file mapped the
        # process held both copies, about 600 MiB more resident for the 1.5B (docs/benchmarks.md, "Memory")
        model_params.load_mode = llama_cpp.LLAMA_LOAD_MODE_NONE
        try:
            self.model = _internals.LlamaModel(path_model=gguf, params=model_params, verbose=False)
        except ValueError as e:
            raise EngineError(f"llama.cpp cannot load {gguf}: {e}") from e
        params = llama_cpp.llama_context_default_params()
        params.n_ctx = slots * slot_tokens
        params.n_batch = params.n_ubatch = batch_tokens
        params.n_seq_max = slots
        # a slot per answer, each attending only to its own cells: answers share no prefix worth pooling, and
        # llama.cpp advises against the unified cache then (measured alike here, docs/benchmarks.md)
        params.kv_unified = False
        params.n_threads = params.n_threads_batch = threads
        params.no_perf = True
        try:
            self.context = _internals.LlamaContext(model=self.model, params=params, verbose=False)
        except ValueError as e:
            raise EngineError(f"llama.cpp cannot create a context of {params.n_ctx} tokens for {gguf}: {e}") from e
        self._lora = None
        if lora:
            self._lora = llama_cpp.llama_adapter_lora_init(self.model.model, lora.encode())
            adapters = (llama_cpp.llama_adapter_lora_p_ctypes * 1)(self._lora)
            if not self._lora or llama_cpp.llama_set_adapters_lora(self.context.ctx, adapters, 1,
                                                                    (ctypes.c_float * 1)(1.0)):
                raise EngineError(f"llama.cpp cannot apply the LoRA GGUF {lora} to {gguf}")
        self.slots, self.slot_tokens, self.batch_tokens = slots, slot_tokens, batch_tokens
        self.n_vocab = llama_cpp.llama_vocab_n_tokens(self.model.vocab)
        self._batch = llama_cpp.llama_batch_init(batch_tokens, 0, 1)
        self.peak_active = 0  # the most answers written at once so far
        self.reused_tokens = 0  # prompt tokens found in a slot's cache instead of decoded, over all requests
        self._held: list[list[int]] = [[] for _ in range(slots)]  # the tokens each slot's cache holds, in order
        self._pending: queue.Queue[_Request] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="llamacpp-engine", daemon=True)
        self._thread.start()

    def generate(self, prompt: list[int], pick: Picker, max_new_tokens: int) -> Iterator[int]:
        """The tokens `pick` chooses after `prompt`, as they come; leaving the loop early frees the slot."""
        if not prompt:
            raise EngineError("empty prompt")
        if len(prompt) + max_new_tokens > self.slot_tokens:
            raise EngineError(f"the prompt has {len(prompt)} tokens and the answer may take {max_new_tokens}: more "
                              f"than the {self.slot_tokens} a slot holds (setting generator_context_tokens)")
        request = _Request(prompt, pick)
        self._pending.put(request)
        try:
            while (item := request.out.get()) is not _DONE:
                if isinstance(item, BaseException):
                    raise EngineError(f"llama.cpp failed: {item}") from item
                yield item
        finally:
            request.cancelled = True

    # ---- the scheduler thread ------------------------------------------------------------------------------------

    def _run(self) -> None:
        active: dict[int, _Slot] = {}
        free = list(range(self.slots))
        while True:
            while free:  # take new requests; wait only when there is nothing to do
                try:
                    request = self._pending.get(block=not active)
                except queue.Empty:
                    break
                slot = self._take(request, free)
                active[slot.seq] = slot
            for seq in [s for s, slot in active.items() if slot.request.cancelled]:
                self._release(active.pop(seq), free)
            if not active:
                continue
            self.peak_active = max(self.peak_active, len(active))
            try:
                rows = self._fill(active)
                if self._c.llama_decode(self.context.ctx, self._batch):
                    raise EngineError("llama_decode found no room in the KV cache")
                for row, slot in rows:
                    logits = np.ctypeslib.as_array(self._c.llama_get_logits_ith(self.context.ctx, row),
                                                   shape=(self.n_vocab,)).copy()
                    token = None if slot.pos >= self.slot_tokens else slot.request.pick(logits)
                    if token is None:
                        slot.request.out.put(_DONE)
                        self._release(active.pop(slot.seq), free)
                    else:
                        slot.next_token = token
                        slot.request.out.put(token)
            except Exception as e:  # noqa: BLE001 - every waiting answer must hear of it, or it waits forever
                for slot in active.values():
                    slot.request.out.put(e)
                    self._release(slot, free, keep=False)  # what the failed step left in its cache is unknown
                active.clear()

    def _take(self, request: _Request, free: list[int]) -> _Slot:
        """The free slot whose cache holds the longest start of the prompt, its cache cut to that start. At least
        the prompt's last token is decoded again: its logits pick the first new token."""
        prompt = request.prompt
        seq = max(free, key=lambda s: (_common_prefix(self._held[s], prompt), -s))
        free.remove(seq)
        keep = min(_common_prefix(self._held[seq], prompt), len(prompt) - 1)
        if keep and not self._c.llama_memory_seq_rm(self.context.memory, seq, keep, -1):
            keep = 0  # this cache cannot drop a tail: start the slot empty
        if not keep:
            self._c.llama_memory_seq_rm(self.context.memory, seq, -1, -1)
        del self._held[seq][keep:]
        self.reused_tokens += keep
        return _Slot(seq, request, fed=keep, pos=keep)

    def _fill(self, active: dict[int, _Slot]) -> list[tuple[int, _Slot]]:
        """Put one step into the batch: every answer's next token first, then prompt slices in arrival order.
        Returns (batch row, slot) for the rows whose logits are read."""
        batch, n, rows = self._batch, 0, []

        def add(token: int, slot: _Slot, logits: bool) -> None:
            nonlocal n
            batch.token[n], batch.pos[n], batch.n_seq_id[n] = token, slot.pos, 1
            batch.seq_id[n][0], batch.logits[n] = slot.seq, logits
            if logits:
                rows.append((n, slot))
            self._held[slot.seq].append(token)
            slot.pos += 1
            n += 1

        for slot in active.values():
            if slot.next_token is not None:
                add(slot.next_token, slot, True)
                slot.next_token = None
        for slot in active.values():
            prompt = slot.request.prompt
            while slot.fed < len(prompt) and n < self.batch_tokens:
                slot.fed += 1
                add(prompt[slot.fed - 1], slot, slot.fed == len(prompt))
        batch.n_tokens = n
        return rows

    def _release(self, slot: _Slot, free: list[int], keep: bool = True) -> None:
        """Give the slot back; its cache stays for the next prompt that starts the same way, unless `keep` is off."""
        if not keep:
            self._c.llama_memory_seq_rm(self.context.memory, slot.seq, -1, -1)
            self._held[slot.seq].clear()
        free.append(slot.seq)
        free.sort()


def _common_prefix(a: list[int], b: list[int]) -> int:
    """How many tokens `a` and `b` share from the start."""
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def _silence_llama_log() -> None:
    """llama.cpp logs every model load to stderr through llama-cpp-python's logger: keep its errors only."""
    logging.getLogger("llama-cpp-python").setLevel(logging.ERROR)


__all__ = ["BatchEngine", "EngineError", "Picker"]
