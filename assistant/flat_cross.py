"""A BERT cross-encoder with one output (the reranker and the entailment model comply ships) as a flat forward
pass, without sentence-transformers.

Hand-written because of a measurement: importing sentence-transformers' `CrossEncoder` into the answering process
adds about 200 MiB of resident memory (it imports scipy, scikit-learn, pandas, peft and more) to score pairs with a
45 MB model, and the reranker's abstention rule asks it on every other question, so `comply serve` would pass the
3 GB the 1.5B default is held to (docs/benchmarks.md, "A second gate"). The encoder is the embedder's flat pass
(`ingest.embedding.FlatBert`: fused oneDNN linear layers, the same code that embeds every chunk) with the pair's
token types, then BERT's pooler (tanh over the first token) and the one-logit classifier, as
`BertForSequenceClassification` computes them. Only that shape loads here (`load` returns None otherwise, and
`load_pair_model` falls back to sentence-transformers, as it does on CUDA); its scores are checked against
sentence-transformers' in tests/assistant/test_rerank.py.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Protocol

from assistant.generation import quiet_loading
from ingest.embedding import FlatBert, pad_ids


def load_pair_model(path: Path, device: str, bf16: bool, flat: bool = True) -> PairScorer:
    """A one-output cross-encoder folder as a `PairScorer`: the flat pass on CPU when the folder has its shape, else
    sentence-transformers' CrossEncoder; bf16 weights read as stored or cast, float32 otherwise."""
    import torch  # lazy: torch takes ~2 s to import

    dtype = torch.bfloat16 if bf16 else torch.float32
    fast = FlatCrossEncoder.load(path, dtype) if flat and device == "cpu" else None
    if fast is not None:
        return fast
    from sentence_transformers import CrossEncoder  # lazy: sentence_transformers takes ~6 s to import

    with quiet_loading():  # no per-tensor progress bar in the CLI's output at every question
        model = CrossEncoder(str(path), device=device, local_files_only=True, model_kwargs={"dtype": dtype})
    model.eval()
    return CrossEncoderPairs(model)


class PairScorer(Protocol):
    def score_pairs(self, pairs: list[tuple[str, str]], batch_size: int) -> list[float]:
        """Raw logits of each (first, second) pair, in input order."""


class CrossEncoderPairs:
    """sentence-transformers' CrossEncoder (CUDA, or a folder the flat pass does not load) as a `PairScorer`.
    `autocast`: run the CPU forward pass under bf16 autocast (training code scoring a float32 model)."""

    def __init__(self, model, autocast: bool = False):
        self.model = model
        self.autocast = autocast

    def score_pairs(self, pairs: list[tuple[str, str]], batch_size: int) -> list[float]:
        import torch  # lazy: torch takes ~2 s to import

        if not pairs:
            return []
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.autocast):
            logits = self.model.predict(pairs, batch_size=batch_size, activation_fn=torch.nn.Identity(),
                                        show_progress_bar=False, convert_to_numpy=True)
        return [float(x) for x in logits]


class FlatCrossEncoder(FlatBert):
    """(query, text) pairs -> raw logits."""

    def __init__(self, weights: dict, config: dict, tokenizer, max_tokens: int, dtype):
        super().__init__(weights, config, tokenizer, max_tokens, dtype)
        w = {k.removeprefix("bert."): v.to(dtype) for k, v in weights.items()
             if k.startswith(("bert.pooler.", "classifier."))}
        self.pooler = (w["pooler.dense.weight"], w["pooler.dense.bias"])
        self.classifier = (w["classifier.weight"], w["classifier.bias"])

    @classmethod
    def load(cls, folder: Path, dtype) -> FlatCrossEncoder | None:
        """The flat pass for a sentence-transformers CrossEncoder folder holding a BERT sequence classifier with one
        label, or None."""
        try:
            modules = [m["type"].rsplit(".", 1)[-1] for m in json.loads((folder / "modules.json").read_text())]
            config = json.loads((folder / "config.json").read_text())
            tokenizer_config = json.loads((folder / "tokenizer_config.json").read_text())
        except (OSError, ValueError, KeyError, TypeError):
            return None
        if (modules != ["Transformer"] or config.get("architectures") != ["BertForSequenceClassification"]
                or len(config.get("id2label") or {"0": None}) != 1 or config.get("model_type") != "bert"
                or config.get("hidden_act") != "gelu"
                or config.get("position_embedding_type", "absolute") != "absolute"
                or not (folder / "model.safetensors").exists()):
            return None
        from safetensors.torch import load_file  # lazy: safetensors.torch loads torch (~2 s)
        from transformers import AutoTokenizer  # lazy: transformers takes ~2.5 s to import (it loads torch)

        window = tokenizer_config.get("model_max_length")
        window = window if isinstance(window, int) and window > 0 else 512
        max_tokens = min(window, int(config["max_position_embeddings"]))
        tokenizer = AutoTokenizer.from_pretrained(str(folder), model_max_length=max_tokens)
        weights = load_file(str(folder / "model.safetensors"))
        if not {"bert.pooler.dense.weight", "classifier.weight"} <= weights.keys():
            return None
        return cls(weights, config, tokenizer, max_tokens, dtype)

    def logits(self, ids, mask, types):
        """(batch, length) token ids, attention mask and token types -> (batch,) logits, float32."""
        import torch  # lazy: torch takes ~2 s to import
        import torch.nn.functional as F  # lazy: torch takes ~2 s to import

        batch, length = ids.shape
        first = self.hidden_states(ids, mask, types).view(batch, length, self.hidden)[:, 0]
        pooled = torch.tanh(F.linear(first, *self.pooler))
        return F.linear(pooled, *self.classifier).float().view(batch)

    def score_pairs(self, pairs: list[tuple[str, str]], batch_size: int) -> list[float]:
        """Logits of each (first, second) pair, in input order; pairs cut to the window (the longer side first, as
        the tokenizer's default truncation does) and batched by length."""
        import torch  # lazy: torch takes ~2 s to import

        if not pairs:
            return []
        enc = self.tokenizer([a for a, _ in pairs], [b for _, b in pairs], truncation=True,
                             max_length=self.max_tokens, return_attention_mask=False)
        rows, kinds = enc["input_ids"], enc["token_type_ids"]
        order = sorted(range(len(pairs)), key=lambda i: len(rows[i]))
        out = [0.0] * len(pairs)
        with torch.inference_mode():
            for start in range(0, len(order), batch_size):
                batch = order[start:start + batch_size]
                ids, mask = pad_ids([rows[i] for i in batch], self.tokenizer.pad_token_id or 0)
                types, _ = pad_ids([kinds[i] for i in batch], 0)
                for i, value in zip(batch, self.logits(ids, mask, types).tolist(), strict=True):
                    out[i] = float(value)
        return out
