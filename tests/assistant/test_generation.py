"""The generator with the real packaged model: conversion once, streaming, the int4 CPU decoder, a LoRA adapter."""

from pathlib import Path

import pytest
import torch

from assistant.generation import Int4Decoder, TransformersGenerator, load_generator
from assistant.models import PACKAGED_NAME, GeneratorError, lora_tensors, pick_backend, resolve_generator
from ingest.embedding import cpu_supports_bf16
from ingest.settings import Settings

pytestmark = pytest.mark.slow
MESSAGES = [{"role": "user", "content": "Name one duty of a compliance officer."}]


@pytest.fixture(scope="module")
def settings(tmp_path_factory):
    return Settings(home=tmp_path_factory.mktemp("comply-gen"))


@pytest.fixture(scope="module")
def adapter(settings, tmp_path_factory):
    """A LoRA adapter with random, non-zero B, so it really changes the model."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_pretrained(resolve_generator(settings), dtype=torch.float32)
    model = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "down_proj"]))
    for name, param in model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(param, std=0.02)
    folder = tmp_path_factory.mktemp("adapter") / "random-lora"
    model.save_pretrained(folder)
    return str(folder)


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


def _teacher_forced_logits(model, ids: list[int], continuation: list[int]) -> torch.Tensor:
    """Full-precision next-token logits at every step of `continuation` after `ids` (one forward, no cache)."""
    with torch.inference_mode():
        logits = model(input_ids=torch.tensor([ids + continuation])).logits[0].float()
    return logits[len(ids) - 1:len(ids) - 1 + len(continuation)]


@pytest.mark.skipif(not cpu_supports_bf16(), reason="the int4 decoder runs with bf16 activations only")
@pytest.mark.parametrize("with_adapter", [False, True])
def test_int4_decoder_follows_the_full_precision_model(settings, adapter, with_adapter):
    """Every token the int4 decode path (the LoRA kept unmerged beside the int4 weights) picks is the fp32 HF
    model's choice at that point, up to bf16 near-ties."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    lora = adapter if with_adapter else None
    gen = TransformersGenerator(resolve_generator(settings), name=PACKAGED_NAME, adapter=lora, bf16=True)
    assert gen.decoder is not None
    gen.repetition_penalty = 1.0  # plain greedy, as the reference
    base = AutoModelForCausalLM.from_pretrained(resolve_generator(settings), dtype=torch.float32).eval()
    ref = PeftModel.from_pretrained(base, lora).merge_and_unload().eval() if lora else base
    ids = gen.encode_chat(MESSAGES)
    got = list(gen.tokens(MESSAGES, 16))
    logits = _teacher_forced_logits(ref, ids, got)
    margins = logits.max(-1).values - logits[torch.arange(len(got)), torch.tensor(got)]
    assert len(got) >= 8 and float(margins.max()) < 0.5, margins.tolist()
    if lora:  # the adapter really changes the model
        plain = _teacher_forced_logits(AutoModelForCausalLM.from_pretrained(
            resolve_generator(settings), dtype=torch.float32).eval(), ids, got)
        assert float((plain - logits).abs().max()) > 0.5


def test_adapter_through_load_generator(settings, adapter):
    gen = load_generator(settings, adapter=adapter)
    assert gen.adapter == adapter and gen.backend in ("transformers", "llamacpp")
    assert len(gen.generate(MESSAGES, 6)) > 0


def test_only_plain_lora_adapters_are_accepted_for_export(tmp_path, adapter):
    assert set(lora_tensors(adapter)) >= {"model.layers.0.self_attn.q_proj", "model.layers.0.mlp.down_proj"}
    with pytest.raises(GeneratorError, match="not a peft adapter"):
        lora_tensors(tmp_path)
    with pytest.raises(GeneratorError, match="unknown generator backend"):
        pick_backend(Settings(home=tmp_path, generator_backend="vllm"))
    assert Int4Decoder.GROUP == 32
