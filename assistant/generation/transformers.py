"""The transformers backend: any HF model on CUDA or CPU; what training uses and checks an adapter with. On CPU a
llama-architecture model decodes through `Int4Decoder` (int4 weights, a LoRA kept beside them unmerged, IA3 merged
into them, prompt tuning's virtual tokens in the prompt's cache)."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from assistant.generation.base import Generator, GreedyPicker, quiet_loading
from assistant.models import (
    REPETITION_PENALTY,  # the 135M model's penalty: TransformersGenerator's default
    GeneratorError,
    lora_tensors,
)


class TransformersGenerator(Generator):
    """Any HF causal LM on CUDA or CPU; int4 decoding on CPU for llama-architecture models (see module doc)."""

    backend = "transformers"

    def __init__(self, model_path: str, *, name: str, adapter: str | None = None, device: str = "cpu",
                 bf16: bool = False, max_new_tokens: int = 192, threads: int | None = None,
                 int4_decode: bool | None = None, repetition_penalty: float = REPETITION_PENALTY):
        import torch  # lazy: torch takes ~2 s to import
        from transformers import (  # lazy: transformers takes ~2.5 s to import (it loads torch)
            AutoModelForCausalLM,
            AutoTokenizer,
        )

        if threads:
            torch.set_num_threads(threads)
        super().__init__(AutoTokenizer.from_pretrained(model_path), name=name, adapter=adapter,
                         max_new_tokens=max_new_tokens, repetition_penalty=repetition_penalty)
        self.device = device
        dtype = torch.bfloat16 if bf16 else torch.float32
        self.dtype = str(dtype).removeprefix("torch.")
        with quiet_loading():
            # on CUDA load directly in bf16 (a 7B model in fp32 would not fit); on CPU merge adapters in fp32, then cast
            model = AutoModelForCausalLM.from_pretrained(model_path,
                                                         dtype=dtype if device == "cuda" else torch.float32)
            # a plain LoRA stays unmerged beside the int4 weights (its deltas exact, not rounded with the weights);
            # IA3 and prompt tuning decode from the int4 weights of the model they leave: IA3 merged into it (a
            # scaling of rows and columns), prompt tuning's unchanged base after its virtual tokens
            # the CPU int4 kernel is fast with bf16 activations only (fp32 measured ~10x slower than plain fp32)
            wanted = (device == "cpu" and bf16) if int4_decode is None else int4_decode
            lora, kind = (_plain_lora(adapter), _peft_type(adapter)) if wanted else ({}, None)  # read only if used
            if int4_decode is None:
                int4_decode = wanted and Int4Decoder.supports(model) and (not adapter or bool(lora)
                                                                          or kind in ("IA3", "PROMPT_TUNING"))
            self.decoder = Int4Decoder(model, lora, dtype) if int4_decode and (lora or not adapter) else None
            self.virtual = None  # prompt tuning's learned token embeddings, put before every prompt's
            if adapter:
                model, self.virtual = _with_adapter(model, adapter)
                if int4_decode and self.decoder is None:
                    self.decoder = Int4Decoder(model, {}, dtype)
        self.model = model.to(device=device, dtype=dtype).eval()
        if self.virtual is not None:
            self.virtual = self.virtual.to(device=device, dtype=dtype)
        self._cache = None
        self._lock = threading.Lock()  # one KV cache per generator: one completion at a time

    def tokens(self, messages: list[dict], max_new_tokens: int | None = None,
               trace: list[tuple[int, float]] | None = None) -> Iterator[int]:
        limit = max_new_tokens or self.max_new_tokens
        pick = GreedyPicker(self.stop_ids, limit, self.repetition_penalty, trace)
        with self._lock:
            logits = self._prefill(self.encode_chat(messages), limit)
            for step in range(limit):
                token = pick(logits)
                if token is None:
                    return
                yield token
                if step + 1 < limit:
                    logits = self._decode(token)

    # float32 numpy logits for the next token, writable
    def _prefill(self, ids: list[int], limit: int) -> np.ndarray:
        import torch  # lazy: torch takes ~2 s to import
        from transformers import (  # lazy: transformers takes ~2.5 s to import (it loads torch)
            DynamicCache,
            StaticCache,
        )

        virtual = 0 if self.virtual is None else self.virtual.shape[1]
        with torch.inference_mode():
            if self.decoder:
                self._cache = DynamicCache(config=self.model.config)
            else:  # sized for this completion: no per-token concatenation of growing key/value tensors
                self._cache = StaticCache(config=self.model.config, max_cache_len=virtual + len(ids) + limit)
            inputs = torch.tensor([ids], device=self.device)
            if self.virtual is None:
                out = self.model(input_ids=inputs, cache=self._cache, use_cache=True, logits_to_keep=1)
            else:
                embeds = torch.cat([self.virtual, self.model.get_input_embeddings()(inputs)], dim=1)
                out = self.model(inputs_embeds=embeds, cache=self._cache, use_cache=True, logits_to_keep=1)
            if self.decoder:
                self.decoder.start(self._cache, virtual + len(ids) + limit)
                self._cache = None
            return out.logits[0, -1].float().cpu().numpy()

    def _decode(self, token: int) -> np.ndarray:
        import torch  # lazy: torch takes ~2 s to import

        with torch.inference_mode():
            if self.decoder:
                return self.decoder.step(token).float().numpy()
            out = self.model(input_ids=torch.tensor([[token]], device=self.device), cache=self._cache,
                             use_cache=True)
            return out.logits[0, -1].float().cpu().numpy()


def _with_adapter(model, adapter: str):
    """The model with a peft adapter applied: merged into the weights (LoRA, IA3, any method peft can merge), or, for
    prompt tuning, the base model and the learned virtual-token embeddings to put before each prompt."""
    from peft import PeftModel  # lazy: peft takes ~4 s to import (it loads torch)

    peft_model = PeftModel.from_pretrained(model, adapter)
    config = peft_model.active_peft_config
    if not config.is_prompt_learning:
        return peft_model.merge_and_unload(), None
    if config.peft_type != "PROMPT_TUNING":  # a str enum
        raise GeneratorError(f"{adapter}: {config.peft_type} adapters cannot run here (of the prompt-learning "
                             "methods, the transformers backend runs prompt tuning)")
    import torch  # lazy: torch takes ~2 s to import

    with torch.inference_mode():
        virtual = peft_model.get_prompt(batch_size=1).detach().clone()
    return peft_model.get_base_model(), virtual


def _peft_type(adapter: str | None) -> str | None:
    try:
        return json.loads((Path(adapter) / "adapter_config.json").read_text()).get("peft_type") if adapter else None
    except (OSError, ValueError):
        return None


def _plain_lora(adapter: str | None) -> dict[str, tuple]:
    """The adapter's LoRA pairs when it is a plain LoRA on the decoder layers' linear modules (what Int4Decoder keeps
    unmerged), else {} (no adapter, or one that is merged or put before the prompt)."""
    if not adapter:
        return {}
    try:
        modules = lora_tensors(adapter)
    except GeneratorError:
        return {}
    return modules if all(_LAYER_LINEAR.fullmatch(m) for m in modules) else {}


_LAYER_LINEAR = re.compile(r"model\.layers\.\d+\.(self_attn\.[qkvo]_proj|mlp\.(gate|up|down)_proj)")


class Int4Decoder:
    """One-token forward of a llama-architecture model on CPU with int4 weights (groups of 32, scale and offset, as in
    a Q4_1 GGUF: the packaged model's weights are already on that grid) and a preallocated KV cache.

    A LoRA adapter stays unmerged beside the int4 weights (x A^T B^T, scale folded into B), so fine-tuned deltas
    smaller than a 4-bit step are not rounded away."""

    GROUP = 32

    @staticmethod
    def supports(model) -> bool:
        """True for a bias-free llama model with plain rotary embeddings and a torch with the CPU int4 kernel."""
        import torch  # lazy: torch takes ~2 s to import

        config = model.config
        if config.model_type != "llama" or getattr(config, "attention_bias", False) or getattr(config, "mlp_bias",
                                                                                                False):
            return False
        rope = getattr(config, "rope_parameters", None) or getattr(config, "rope_scaling", None) or {}
        if rope.get("rope_type", "default") not in ("default", "linear", "llama3"):
            return False
        return hasattr(torch.ops.aten, "_weight_int4pack_mm_for_cpu") and not config.hidden_size % Int4Decoder.GROUP

    def __init__(self, model, lora: dict[str, tuple], dtype):
        config = model.config
        self.dtype = dtype
        self.n_head, self.n_kv = config.num_attention_heads, config.num_key_value_heads
        self.head_dim = getattr(config, "head_dim", None) or config.hidden_size // self.n_head
        self.eps = config.rms_norm_eps
        self.layers = []
        for i, layer in enumerate(model.model.layers):
            attn, mlp = layer.self_attn, layer.mlp
            prefix = f"model.layers.{i}"
            self.layers.append((
                layer.input_layernorm.weight.to(dtype),
                self._linear([attn.q_proj, attn.k_proj, attn.v_proj], lora, [f"{prefix}.self_attn.{p}_proj"
                                                                              for p in "qkv"]),
                self._linear([attn.o_proj], lora, [f"{prefix}.self_attn.o_proj"]),
                layer.post_attention_layernorm.weight.to(dtype),
                self._linear([mlp.gate_proj, mlp.up_proj], lora, [f"{prefix}.mlp.gate_proj", f"{prefix}.mlp.up_proj"]),
                self._linear([mlp.down_proj], lora, [f"{prefix}.mlp.down_proj"]),
            ))
        self.norm = model.model.norm.weight.to(dtype)
        self.embed = model.model.embed_tokens.weight.to(dtype)
        self.head = self._linear([model.lm_head], {}, [])
        rotary = model.model.rotary_emb
        self.inv_freq, self.rope_scale = rotary.inv_freq.float().clone(), float(rotary.attention_scaling)
        self.has_lora = bool(lora)
        self.keys = self.values = None
        self.pos = 0

    def _linear(self, modules, lora: dict[str, tuple], names: list[str]) -> tuple:
        """Packed int4 weight of the output-concatenated modules, plus their LoRA as (A, block-diagonal B) or None."""
        import torch  # lazy: torch takes ~2 s to import

        weight = torch.cat([m.weight.detach().float() for m in modules])
        rows, cols = weight.shape
        groups = weight.view(rows, cols // self.GROUP, self.GROUP)
        low, high = groups.amin(-1), groups.amax(-1)
        scale = ((high - low) / 15).clamp(min=1e-8)
        q = torch.clamp(torch.round((groups - low[..., None]) / scale[..., None]), 0, 15).to(torch.int32)
        # the kernel computes (q - 8) * scale + zero per group
        scales_zeros = torch.stack([scale.t(), (low + 8 * scale).t()], -1).to(self.dtype).contiguous()
        packed = torch.ops.aten._convert_weight_to_int4pack_for_cpu(q.view(rows, cols), 2)
        pairs = [lora.get(name) for name in names]
        if not any(pairs):
            return packed, scales_zeros, None
        a_rows, b_blocks, offset = [], [], 0
        for module, pair in zip(modules, pairs, strict=True):
            out = module.weight.shape[0]
            if pair:
                a, b, s = pair
                a_rows.append(a.float())
                b_blocks.append((offset, b.float() * s))
            offset += out
        a = torch.cat(a_rows)
        b = torch.zeros(rows, a.shape[0])
        col = 0
        for start, block in b_blocks:
            b[start:start + block.shape[0], col:col + block.shape[1]] = block
            col += block.shape[1]
        return packed, scales_zeros, (a.to(self.dtype), b.to(self.dtype))

    def _mm(self, x, linear):
        import torch  # lazy: torch takes ~2 s to import

        packed, scales_zeros, lora = linear
        y = torch.ops.aten._weight_int4pack_mm_for_cpu(x, packed, self.GROUP, scales_zeros)
        if lora is not None:
            y = y + (x @ lora[0].t()) @ lora[1].t()
        return y

    def _rms(self, x, weight):
        import torch  # lazy: torch takes ~2 s to import

        x32 = x.float()
        return (x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)).to(self.dtype) * weight

    def start(self, cache, capacity: int) -> None:
        """Take over the prompt's keys and values from an HF cache, with room for `capacity` positions."""
        import torch  # lazy: torch takes ~2 s to import

        first = cache.layers[0].keys
        n = first.shape[-2]
        shape = (len(self.layers), self.n_kv, capacity, self.head_dim)
        self.keys = torch.zeros(shape, dtype=self.dtype)
        self.values = torch.zeros(shape, dtype=self.dtype)
        for i, layer in enumerate(cache.layers):
            self.keys[i, :, :n] = layer.keys[0]
            self.values[i, :, :n] = layer.values[0]
        positions = torch.arange(capacity, dtype=torch.float32)
        angles = torch.outer(positions, self.inv_freq)
        angles = torch.cat([angles, angles], -1)
        self.cos = (angles.cos() * self.rope_scale).to(self.dtype)
        self.sin = (angles.sin() * self.rope_scale).to(self.dtype)
        self.pos = n

    def step(self, token: int):
        """Logits after feeding one token at the next position."""
        import torch  # lazy: torch takes ~2 s to import
        import torch.nn.functional as F  # lazy: torch takes ~2 s to import

        p, hd, n_kv = self.pos, self.head_dim, self.n_kv
        n_q, n_k, group = self.n_head * hd, n_kv * hd, self.n_head // n_kv
        cos, sin, half = self.cos[p], self.sin[p], hd // 2
        x = self.embed[token].view(1, -1)
        for i, (norm1, qkv, out, norm2, gate_up, down) in enumerate(self.layers):
            h = self._mm(self._rms(x, norm1), qkv)[0]
            q, k = h[:n_q].view(self.n_head, hd), h[n_q:n_q + n_k].view(n_kv, hd)
            q = q * cos + torch.cat([-q[:, half:], q[:, :half]], -1) * sin
            self.keys[i, :, p] = k * cos + torch.cat([-k[:, half:], k[:, :half]], -1) * sin
            self.values[i, :, p] = h[n_q + n_k:].view(n_kv, hd)
            keys, values = self.keys[i, :, :p + 1], self.values[i, :, :p + 1]
            # grouped-query attention by matmul: faster on CPU than SDPA's kernels for a single query
            scores = torch.matmul(q.view(n_kv, group, hd), keys.transpose(1, 2)).float() * hd ** -0.5
            attended = torch.matmul(torch.softmax(scores, -1).to(self.dtype), values)
            x = x + self._mm(attended.reshape(1, n_q), out)
            gate, up = self._mm(self._rms(x, norm2), gate_up).chunk(2, -1)
            x = x + self._mm(F.silu(gate) * up, down)
        self.pos += 1
        return self._mm(self._rms(x, self.norm), self.head)[0]
