"""The generator with the real packaged model: conversion once, streaming, a LoRA adapter on top."""

import tempfile
from pathlib import Path

import pytest

from assistant.generation import Generator, load_generator
from assistant.models import PACKAGED_NAME, resolve_generator
from ingest.settings import Settings

pytestmark = pytest.mark.slow
MESSAGES = [{"role": "user", "content": "Name one duty of a compliance officer."}]


@pytest.fixture(scope="module")
def settings():
    return Settings(home=Path(tempfile.mkdtemp(prefix="comply-gen-")))


def test_packaged_gguf_is_converted_once_to_a_loadable_folder(settings):
    folder = Path(resolve_generator(settings))
    assert folder == settings.models_dir / PACKAGED_NAME
    assert (folder / "config.json").is_file() and (folder / "model.safetensors").is_file()
    stamp = (folder / "model.safetensors").stat().st_mtime_ns
    assert Path(resolve_generator(settings)) == folder
    assert (folder / "model.safetensors").stat().st_mtime_ns == stamp


def test_stream_yields_pieces_that_add_up_to_generate(settings):
    gen = load_generator(settings)
    pieces = list(gen.stream(MESSAGES, 24))
    assert len(pieces) >= 5
    assert "".join(pieces) == gen.generate(MESSAGES, 24)
    assert gen.model_name == PACKAGED_NAME and gen.adapter is None


def test_lora_adapter_loads_on_top_and_changes_nothing_when_zero(settings, tmp_path):
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(resolve_generator(settings), dtype=torch.float32)
    peft_model = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]))
    peft_model.save_pretrained(tmp_path / "adapter")
    plain = load_generator(settings)
    tuned = Generator(resolve_generator(settings), name=PACKAGED_NAME, adapter=str(tmp_path / "adapter"),
                      bf16=plain.dtype == torch.bfloat16)
    assert tuned.adapter == str(tmp_path / "adapter")
    assert type(tuned.model).__name__.startswith("Peft")
    # a fresh LoRA has B = 0, so it must not change greedy output
    assert tuned.generate(MESSAGES, 12) == plain.generate(MESSAGES, 12)
