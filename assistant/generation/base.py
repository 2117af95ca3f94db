"""What every local backend shares: the chat template, the greedy choice with the repetition penalty, stop tokens and
the token probabilities an answer's confidence is computed from (`GreedyPicker`), detokenising (`Generator`), and
loading without progress bars (`quiet_loading`)."""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator

import numpy as np

from assistant.models import (
    REPETITION_PENALTY,  # the 135M model's penalty: TransformersGenerator's default
    )


class GreedyPicker:
    """The decoding rule every backend shares: greedy, with the repetition penalty on generated tokens, stop tokens
    and a token limit. Called with each step's logits (float32, writable); returns the token or None to stop."""

    def __init__(self, stop_ids: set[int], limit: int, penalty: float, trace: list[tuple[int, float]] | None):
        self.stop_ids, self.limit, self.penalty, self.trace = stop_ids, limit, penalty, trace
        self.seen: set[int] = set()
        self.count = 0

    def __call__(self, logits: np.ndarray) -> int | None:
        if self.count >= self.limit:
            return None
        if self.seen and self.penalty != 1.0:
            index = np.fromiter(self.seen, dtype=np.int64, count=len(self.seen))
            picked = logits[index]
            logits[index] = np.where(picked > 0, picked / self.penalty, picked * self.penalty)
        token = int(np.argmax(logits))
        if self.trace is not None:  # softmax at the argmax: 1 / sum(exp(logits - max))
            self.trace.append((token, float(1.0 / np.exp(logits - logits[token]).sum())))
        if token in self.stop_ids:
            return None
        self.seen.add(token)
        self.count += 1
        return token


class Generator:
    """Greedy chat generation with token streaming; subclasses supply the model's forward pass."""

    backend = ""
    dtype = ""

    def __init__(self, tokenizer, *, name: str, adapter: str | None, max_new_tokens: int = 192,
                 repetition_penalty: float = REPETITION_PENALTY):
        self.tokenizer = tokenizer
        self.model_name = name
        self.adapter = adapter
        self.max_new_tokens = max_new_tokens
        self.repetition_penalty = repetition_penalty
        stop = {tokenizer.eos_token_id}
        for token in ("<|im_end|>", "<|endoftext|>", "<|eot_id|>", "<|end_of_text|>"):
            tid = tokenizer.convert_tokens_to_ids(token)
            if isinstance(tid, int) and tokenizer.convert_ids_to_tokens(tid) == token:
                stop.add(tid)
        self.stop_ids = {t for t in stop if t is not None}

    def count_tokens(self, text: str) -> int:
        """Tokens in `text` for this model, without special tokens."""
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def encode_chat(self, messages: list[dict]) -> list[int]:
        """Token ids of chat messages rendered with the model's template, ready for the assistant's turn."""
        ids = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True,
                                                 return_dict=True)["input_ids"]
        return list(ids[0] if ids and isinstance(ids[0], list) else ids)

    def stream(self, messages: list[dict], max_new_tokens: int | None = None,
               trace: list[tuple[int, float]] | None = None) -> Iterator[str]:
        """Yield text pieces as tokens are generated (greedy). `trace` (see `tokens`) collects the token ids and
        the probabilities the model gave them."""
        tokens: list[int] = []
        # decode only a short window (prefix..end) each step, so a step costs the same however long the answer
        prefix = read = 0
        for token in self.tokens(messages, max_new_tokens, trace):
            tokens.append(token)
            before = self.tokenizer.decode(tokens[prefix:read], skip_special_tokens=True)
            text = self.tokenizer.decode(tokens[prefix:], skip_special_tokens=True)
            # an incomplete UTF-8 sequence ends in U+FFFD: wait for the token that completes it
            if len(text) > len(before) and not text.endswith("\ufffd"):
                yield text[len(before):]
                prefix, read = read, len(tokens)

    def generate(self, messages: list[dict], max_new_tokens: int | None = None) -> str:
        """The whole completion as one string."""
        return self.tokenizer.decode(list(self.tokens(messages, max_new_tokens)), skip_special_tokens=True)

    def tokens(self, messages: list[dict], max_new_tokens: int | None = None,
               trace: list[tuple[int, float]] | None = None) -> Iterator[int]:
        """Generated token ids, one at a time: greedy (`GreedyPicker`), with the repetition penalty on generated
        tokens. When `trace` is a list, (token id, its probability under the distribution it was picked from) is
        appended for each generated token."""
        raise NotImplementedError


@contextlib.contextmanager
def quiet_loading():
    """Load a model without transformers' per-tensor progress bar (under a second for a local folder, and it would
    fill the CLI's output at every question) and without the deprecation warning that peft's own
    `is_gradient_checkpointing` check raises on transformers 5 (nothing a user can act on)."""
    from transformers.utils import logging as hf_logging  # lazy: transformers takes ~1 s to import

    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r"`is_gradient_checkpointing` is deprecated",
                                    category=FutureWarning)
            yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()
