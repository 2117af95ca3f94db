"""The generator on any OpenAI-compatible server: vLLM (GPUs, `--enable-lora` for several adapters), llama.cpp's
server, Ollama, TGI. This is how a firm outgrows one machine: generator replicas on GPU servers, comply in front.

The server applies the model's chat template and decodes greedily (temperature 0); an adapter is addressed by its
name as such servers serve LoRA modules (`--lora-modules NAME=PATH`), so the request's model is the adapter's
folder name. The server sends text, not token probabilities, so answers carry no confidence score.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from assistant.models import GeneratorError
from ingest.settings import Settings


class OpenAIGenerator:
    """Streaming chat completions from an OpenAI-compatible server, with the same interface as the local backends."""

    backend = "openai"
    dtype = "server"
    tokenizer = None  # the server tokenises

    def __init__(self, url: str, model: str, *, adapter: str | None = None, api_key: str | None = None,
                 max_new_tokens: int = 192, repetition_penalty: float = 1.0, timeout_s: float = 300.0):
        from openai import OpenAI  # lazy: openai takes ~1 s to import; only this backend needs it

        self.url, self.served_model, self.adapter = url, model, adapter
        self.model_name = Path(model).name or model
        self.max_new_tokens, self.repetition_penalty = max_new_tokens, repetition_penalty
        # local servers need no key; the client insists on one
        self.client = OpenAI(base_url=url, api_key=api_key or "not-needed", timeout=timeout_s, max_retries=1)

    @classmethod
    def from_settings(cls, settings: Settings, adapter: str | None) -> OpenAIGenerator:
        key = settings.generator_api_key.get_secret_value() if settings.generator_api_key else None
        return cls(settings.generator_url, settings.generator_model, adapter=adapter, api_key=key,
                   max_new_tokens=settings.max_new_tokens, timeout_s=settings.generator_timeout_s,
                   repetition_penalty=settings.repetition_penalty or 1.0)

    def stream(self, messages: list[dict], max_new_tokens: int | None = None,
               trace: list | None = None) -> Iterator[str]:
        """Yield text pieces as the server sends them (`trace` stays empty: the server sends no token ids)."""
        import openai  # lazy: openai takes ~1 s to import; only this backend needs it

        model = Path(self.adapter).name if self.adapter else self.served_model
        extra = {"repeat_penalty": self.repetition_penalty} if self.repetition_penalty != 1.0 else None
        try:
            chunks = self.client.chat.completions.create(
                model=model, messages=messages, stream=True, temperature=0.0,
                max_tokens=max_new_tokens or self.max_new_tokens, extra_body=extra)
            for chunk in chunks:
                if chunk.choices and (piece := chunk.choices[0].delta.content):
                    yield piece
        except openai.APIConnectionError as e:
            raise GeneratorError(f"the generator server at {self.url} cannot be reached ({e})") from e
        except openai.APIStatusError as e:
            raise GeneratorError(f"the generator server at {self.url} refused the request for model '{model}': "
                                 f"HTTP {e.status_code} {e.message}") from e

    def generate(self, messages: list[dict], max_new_tokens: int | None = None) -> str:
        """The whole completion as one string."""
        return "".join(self.stream(messages, max_new_tokens))


__all__ = ["OpenAIGenerator"]
