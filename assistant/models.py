"""Where the generator comes from and what runs it: a packaged GGUF (assistant/packaged.py; the default Qwen2.5-Coder
-1.5B-Instruct is joined from its part packages once), any .gguf file, any HF id or path, or an OpenAI-compatible
server; the device, dtype and backend; and, for llama.cpp, a peft LoRA adapter exported once to LoRA GGUF."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import tempfile
from pathlib import Path

from filelock import FileLock

from assistant.packaged import SMOLLM2_135M, PackagedModelError, gguf_path, packaged_model
from ingest.embedding import pick_device, use_bf16
from ingest.settings import Settings
from ingest.types import ComplyError

PACKAGED_GGUF = SMOLLM2_135M.file
PACKAGED_NAME = SMOLLM2_135M.name
PACKAGED_HF_ID = SMOLLM2_135M.hf_id  # the public id of the small packaged weights
BACKENDS = ("auto", "llamacpp", "transformers", "openai")
# Measured on ObliQA prompts (docs/benchmarks.md): without it the 135M model often repeats itself until
# max_new_tokens. It applies to generated tokens only, so quoting the sources is not penalised. The 1.5B model quotes
# its sources and does not loop: a penalty there only pushes it off the source's own words.
REPETITION_PENALTY = 1.1
_MODEL_PENALTY = {SMOLLM2_135M.setting: REPETITION_PENALTY}
# The prompt wording each model answers best with, without an adapter (assistant/prompt.py): the 135M model answers
# the version-2 rules worse than the short version 1 (it gave "12 characters" for the sample manual's 14).
_MODEL_PROMPT = {SMOLLM2_135M.setting: 1}


class GeneratorError(ComplyError):
    """The generator cannot be set up as configured: unknown backend, missing package, unusable adapter."""


def packaged_gguf(settings: Settings | None = None) -> Path:
    """The GGUF of the packaged model `settings` names (the small SmolLM2 one when no settings are given)."""
    model = packaged_model(settings.generator_model) if settings else SMOLLM2_135M
    if model is None:
        raise GeneratorError(f"'{settings.generator_model}' is not a packaged model")
    try:
        return gguf_path(model, settings.models_dir if settings else Path("."))
    except PackagedModelError as e:
        raise GeneratorError(str(e)) from e


def generator_gguf(settings: Settings) -> Path | None:
    """The GGUF file the generator setting names (packaged, or a path ending in .gguf), else None."""
    if packaged_model(settings.generator_model):
        return packaged_gguf(settings)
    if settings.generator_model.lower().endswith(".gguf"):
        path = Path(settings.generator_model).expanduser()
        if not path.is_file():
            raise GeneratorError(f"generator model {path} does not exist")
        return path
    return None


def generator_tokenizer(settings: Settings) -> str:
    """A folder with the HF tokenizer (and chat template) of a GGUF generator, read from the GGUF once."""
    gguf = generator_gguf(settings)
    if gguf is None:
        return resolve_generator(settings)
    if packaged_model(settings.generator_model) is SMOLLM2_135M:
        return resolve_generator(settings)  # its converted folder holds the tokenizer already

    def save(tmp: Path) -> None:
        from transformers import AutoTokenizer  # lazy: transformers takes ~2.5 s to import (it loads torch)

        AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name).save_pretrained(tmp)

    return str(_build_once(settings.models_dir / f"{gguf.stem}-tokenizer", "tokenizer_config.json", save))


def _build_once(target: Path, marker: str, build) -> Path:
    """A folder written once by `build(tmp)` into a temporary folder, then renamed into place (readers see no folder
    or a complete one); a file lock keeps racing processes to one builder. `marker` is the file that means done."""
    if (target / marker).is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock"):
        if (target / marker).is_file():  # another process built it while we waited
            return target
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
        try:
            build(tmp)
            os.rename(tmp, target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def convert_gguf(gguf: Path, target: Path) -> Path:
    """Dequantise a GGUF into a normal HF folder (safetensors + tokenizer) once; safe when processes race."""

    def save(tmp: Path) -> None:
        import torch  # lazy: torch takes ~2 s to import
        from transformers import (  # lazy: transformers takes ~2.5 s to import (it loads torch)
            AutoModelForCausalLM,
            AutoTokenizer,
        )

        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
        # save_pretrained refuses quantised models; the weights are already dequantised to fp32 here.
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        tmp.chmod(0o755)

    return _build_once(target, "config.json", save)


def resolve_generator(settings: Settings) -> str:
    """A local folder or HF id ready for from_pretrained (training, the transformers backend); a packaged or other
    GGUF is dequantised into an HF folder on first use."""
    model = packaged_model(settings.generator_model)
    if model or settings.generator_model.lower().endswith(".gguf"):
        gguf = generator_gguf(settings)
        return str(convert_gguf(gguf, settings.models_dir / (model.name if model else gguf.stem)))
    return settings.generator_model


def model_display_name(settings: Settings) -> str:
    """The name shown in answers and the audit log: `Qwen2.5-Coder-1.5B-Instruct`, or the id/folder/file name."""
    model = packaged_model(settings.generator_model)
    if model:
        return model.name
    return Path(settings.generator_model).name or settings.generator_model


def public_model_id(settings: Settings) -> str:
    """The id to write into a portable adapter config: the packaged model's public HF id, else the setting."""
    model = packaged_model(settings.generator_model)
    return model.hf_id if model else settings.generator_model


def repetition_penalty(settings: Settings) -> float:
    """The setting when set, else the penalty measured for the model (1.0, none, for models not measured)."""
    if settings.repetition_penalty is not None:
        return settings.repetition_penalty
    return _MODEL_PENALTY.get(settings.generator_model, 1.0)


def base_prompt_version(settings: Settings, current: int) -> int:
    """The prompt version for the generator without an adapter: the one measured for it, else `current`."""
    return _MODEL_PROMPT.get(settings.generator_model, current)


def llamacpp_installed() -> bool:
    """True when llama-cpp-python can be imported (checked without importing it)."""
    return importlib.util.find_spec("llama_cpp") is not None


def pick_backend(settings: Settings, adapter: str | None = None) -> str:
    """The backend that runs the generator: 'auto' is llama.cpp for GGUF models except the 135M one (its int4
    transformers path measured faster, docs/benchmarks.md) and transformers for HF models; 'openai' needs
    generator_url."""
    backend = settings.generator_backend
    if backend not in BACKENDS:
        raise GeneratorError(f"unknown generator backend {backend!r}; use one of {', '.join(BACKENDS)}")
    if backend == "openai":
        if not settings.generator_url:
            raise GeneratorError("generator backend 'openai' needs generator_url (COMPLY_GENERATOR_URL), e.g. "
                                 "http://127.0.0.1:8000/v1")
        return backend
    is_gguf = bool(packaged_model(settings.generator_model)) or settings.generator_model.lower().endswith(".gguf")
    if backend == "auto":
        backend = "llamacpp" if is_gguf and settings.generator_model != SMOLLM2_135M.setting else "transformers"
    if backend == "transformers":
        return backend
    if not llamacpp_installed():
        raise GeneratorError("generator backend 'llamacpp' needs llama-cpp-python; `make install` builds it into "
                             ".venv")
    if not is_gguf:
        raise GeneratorError(f"generator backend 'llamacpp' runs GGUF models; '{settings.generator_model}' is "
                             "neither a packaged model nor a .gguf file (use 'transformers')")
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
    from safetensors.torch import load_file  # lazy: safetensors.torch loads torch (~2 s)

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
    import gguf  # lazy: gguf takes ~0.3 s to import; only GGUF models need it
    import torch  # lazy: torch takes ~2 s to import

    pairs = lora_tensors(adapter)
    reader = gguf.GGUFReader(base_gguf)
    arch_name = str(reader.fields["general.architecture"].contents())
    arch = {name: arch for arch, name in gguf.MODEL_ARCH_NAMES.items()}.get(arch_name)
    if arch not in (gguf.MODEL_ARCH.LLAMA, gguf.MODEL_ARCH.QWEN2):
        raise GeneratorError(f"{base_gguf.name}: LoRA export supports llama and qwen2 models, not {arch_name}")
    n_head = int(reader.fields[f"{arch_name}.attention.head_count"].contents())
    n_kv = int(reader.fields[f"{arch_name}.attention.head_count_kv"].contents())
    n_layer = int(reader.fields[f"{arch_name}.block_count"].contents())
    base_names = {t.name for t in reader.tensors}
    names = gguf.get_tensor_name_map(arch, n_layer)
    # llama.cpp's converter reorders llama's q/k rows for its rotary layout; qwen2's it leaves as they are
    permute = arch == gguf.MODEL_ARCH.LLAMA

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
            if permute and name.endswith("attn_q"):
                b = _permute_rows(b, n_head)
            elif permute and name.endswith("attn_k"):
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


__all__ = ["BACKENDS", "PACKAGED_HF_ID", "PACKAGED_NAME", "REPETITION_PENALTY", "GeneratorError", "adapter_hash",
           "base_prompt_version",
           "convert_gguf", "generator_gguf", "generator_tokenizer", "llamacpp_installed", "lora_gguf", "lora_scale",
           "lora_tensors", "model_display_name", "packaged_gguf", "pick_backend", "pick_device", "public_model_id",
           "repetition_penalty", "resolve_generator", "use_bf16"]
