"""Real LoRA training on a few short sample examples: the loss goes down, checkpoints resume, and the adapter
loads through the assistant's generator."""

from __future__ import annotations

import json

import pytest

from assistant.generation import load_generator
from assistant.prompt import build_messages
from finetune.dataset import Example, load_examples
from finetune.train import TrainConfig, TrainError, encode_example, loss_on, train
from ingest.embedding import cpu_supports_bf16
from ingest.settings import Settings
from ingest.types import Chunk

TINY = dict(max_steps=4, grad_accum=1, lr=3e-3, warmup_steps=1, max_seq_len=320, save_every=2, dropout=0.0)

FACTS = [
    ("How long are customer records kept?", "Data Retention Policy", "4.1",
     "Customer records are retained for ten years after the account is closed."),
    ("Who approves gifts above GBP 100?", "Gifts and Entertainment Policy", "5.2",
     "Gifts worth more than GBP 100 may only be accepted with the written approval of Compliance."),
    ("When must a data breach be reported?", "Information Security Policy", "7.3",
     "A personal data breach is reported to the supervisory authority within 72 hours of discovery."),
]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    """Three short examples in the real prompt format (one source each keeps the steps fast)."""
    out = tmp_path_factory.mktemp("tiny-data")
    lines = []
    for i, (question, title, clause, text) in enumerate(FACTS):
        chunk = Chunk(chunk_id=f"c{i}", document_id=f"doc{i}", version=1, title=title, source_file=f"doc{i}.md",
                      text=text, seq=0, page=2, clause=clause)
        messages = build_messages(question, [chunk]) + [{"role": "assistant", "content": f"{text[:-1]} [1]."}]
        lines.append(Example(id=f"q{i}", messages=messages, gold_sources=[1]).to_json() + "\n")
    (out / "train.jsonl").write_text("".join(lines))
    (out / "manifest.json").write_text(json.dumps({"name": "tiny", "sha256": "-"}))
    return out


@pytest.fixture(scope="module")
def settings(tmp_path_factory):
    """The sample home: the converted base model is shared with the other tests of the process."""
    from tests.library import sample_home

    return Settings(home=sample_home())


@pytest.fixture(scope="module")
def trained(settings, data_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "adapter"
    return out, train(settings, data_dir, out, TrainConfig(**TINY), progress=False)


def test_labels_cover_only_the_target(settings, data_dir):
    from transformers import AutoTokenizer

    from assistant.models import resolve_generator

    tokenizer = AutoTokenizer.from_pretrained(resolve_generator(settings))
    ex = load_examples(data_dir / "train.jsonl")[0]
    ids, labels = encode_example(tokenizer, ex.messages)
    start = next(i for i, t in enumerate(labels) if t != -100)
    assert all(t == -100 for t in labels[:start]) and labels[start:] == ids[start:]
    target = tokenizer.decode(ids[start:])
    assert target.startswith(ex.messages[-1]["content"]) and target.endswith("<|im_end|>")
    prompt = tokenizer.apply_chat_template(ex.messages[:-1], add_generation_prompt=True, tokenize=True,
                                           return_dict=True)["input_ids"]
    assert list(prompt) == ids[:start]  # the prompt is exactly what inference encodes


def test_a_few_steps_lower_the_loss(settings, data_dir, trained):
    out, result = trained
    examples = load_examples(data_dir / "train.jsonl")
    before = loss_on(settings, examples)
    after = loss_on(settings, examples, adapter=str(out))
    assert result.steps == 4 and len(result.losses) == 4
    assert after < before * 0.9, (before, after)
    assert (out / "adapter_config.json").is_file() and (out / "adapter_model.safetensors").is_file()


def test_a_bf16_base_trains_float32_lora_weights_that_lower_the_loss(settings, data_dir, tmp_path):
    """--base-dtype bfloat16: the frozen base is stored in bf16, the LoRA weights stay float32 and learn. Two steps
    (a bf16 step takes ~25 s on a CPU without native bf16; two already bring the loss down to a fraction)."""
    from safetensors.torch import load_file

    out = tmp_path / "adapter"
    result = train(settings, data_dir, out, TrainConfig(**{**TINY, "max_steps": 2, "base_dtype": "bfloat16"}),
                   progress=False)
    weights = load_file(str(out / "adapter_model.safetensors"))
    assert weights and {str(t.dtype) for t in weights.values()} == {"torch.float32"}
    examples = load_examples(data_dir / "train.jsonl")
    assert loss_on(settings, examples, adapter=str(out)) < loss_on(settings, examples) * 0.9, result.losses
    with pytest.raises(TrainError, match="base_dtype must be float32 or bfloat16"):
        train(settings, data_dir, tmp_path / "bad", TrainConfig(**{**TINY, "base_dtype": "float16"}), progress=False)


def test_resume_continues_from_the_last_checkpoint(settings, data_dir, tmp_path):
    out = tmp_path / "adapter"
    config = TrainConfig(**{**TINY, "max_steps": 2, "save_every": 1})
    first = train(settings, data_dir, out, config, progress=False)
    assert (out / "checkpoints" / "step-2" / "state.json").is_file()
    with pytest.raises(TrainError, match="already exists"):
        train(settings, data_dir, out, config, progress=False)
    resumed = train(settings, data_dir, out, TrainConfig(**{**TINY, "max_steps": 3}), resume=True, progress=False)
    assert resumed.resumed_from == 2 and resumed.steps == 3
    assert resumed.losses[:2] == first.losses and len(resumed.losses) == 3


def test_the_adapter_loads_in_the_assistants_generator(settings, data_dir, trained):
    out, _ = trained
    generator = load_generator(settings, adapter=str(out))
    assert generator.adapter == str(out)  # whichever backend runs it (transformers + peft, or llama.cpp LoRA)
    messages = load_examples(data_dir / "train.jsonl")[0].messages
    assert generator.generate(messages[:-1], 8).strip()


def test_a_step_weighs_every_target_token_the_same(settings):
    """The accumulated gradient of a step is the gradient of the mean over all its target tokens, whatever the
    targets' lengths (a per-example mean would overweight the short abstention targets)."""
    import contextlib

    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from assistant.models import resolve_generator
    from assistant.prompt import ABSTAIN_TEXT
    from finetune.train import _target_loss, backward_step

    base = resolve_generator(settings)
    tokenizer = AutoTokenizer.from_pretrained(base)
    torch.manual_seed(0)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32),
                           LoraConfig(r=2, lora_alpha=4, lora_dropout=0.0, target_modules=["q_proj"],
                                      task_type="CAUSAL_LM"))
    for name, p in model.named_parameters():  # LoRA B starts at zero: give it values so A gets a gradient too
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=0.02)
    question, title, clause, text = FACTS[0]
    chunk = Chunk(chunk_id="c", document_id="d", version=1, title=title, source_file="d.md", text=text, seq=0,
                  page=1, clause=clause)
    prompt = build_messages(question, [chunk])
    examples = [encode_example(tokenizer, prompt + [{"role": "assistant", "content": target}])
                for target in (f"According to [1], {text[0].lower()}{text[1:]}", ABSTAIN_TEXT)]
    lengths = [sum(t != -100 for t in labels) for _, labels in examples]
    assert lengths[0] > lengths[1]
    params = [p for p in model.parameters() if p.requires_grad]

    loss_sum, tokens = backward_step(model, examples, "cpu", contextlib.nullcontext())
    stepped = [p.grad.clone() for p in params]
    model.zero_grad()
    total = sum(_target_loss(model, ids, labels, "cpu")[0] for ids, labels in examples)
    (total / sum(lengths)).backward()
    assert tokens == sum(lengths) and loss_sum == pytest.approx(float(total.detach()), rel=1e-4)
    for got, want in zip(stepped, [p.grad for p in params], strict=True):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("method, lr", [("ia3", 3e-2), ("prompt_tuning", 1e-1), ("full", 1e-4)])
def test_every_method_lowers_the_loss_and_answers_through_the_generator(settings, data_dir, tmp_path, method, lr):
    """IA3 and prompt tuning (peft folders) and full fine-tuning (a model folder) train, resume from a checkpoint
    and run in the assistant's generator; prompt tuning's virtual tokens go before the prompt there exactly as peft
    puts them in training (the next-token logits agree)."""
    import torch

    from assistant.generation.transformers import TransformersGenerator
    from assistant.models import resolve_generator

    out = tmp_path / method
    config = TrainConfig(**{**TINY, "lr": lr, "method": method, "max_steps": 2})  # one checkpoint, at step 2
    train(settings, data_dir, out, config, progress=False)
    result = train(settings, data_dir, out, TrainConfig(**{**TINY, "lr": lr, "method": method}), resume=True,
                   progress=False)
    assert result.resumed_from == 2 and result.steps == 4 and result.method == method
    assert 0 < result.trainable_parameters <= result.total_parameters
    assert (result.trainable_parameters == result.total_parameters) == (method == "full")
    examples = load_examples(data_dir / "train.jsonl")
    trained_settings = settings.model_copy(update={"generator_model": str(out)}) if method == "full" else settings
    after = loss_on(trained_settings, examples, adapter=None if method == "full" else str(out))
    assert after < loss_on(settings, examples) * 0.9, result.losses
    adapter = None if method == "full" else str(out)
    generator = load_generator(trained_settings, adapter=adapter)
    messages = examples[0].messages[:-1]
    assert generator.generate(messages, 8).strip()
    if method == "full":
        return
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    reference = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(resolve_generator(settings)),
                                          str(out)).eval()
    if method == "prompt_tuning":
        plain = TransformersGenerator(resolve_generator(settings), name="t", adapter=str(out), int4_decode=False)
        ids = plain.encode_chat(messages)
        ours = plain._prefill(ids, 4)
        with torch.inference_mode():
            theirs = reference(input_ids=torch.tensor([ids])).logits[0, -1].float().numpy()
        assert abs(ours - theirs).max() < 1e-3
        assert plain.virtual.shape[1] == TINY.get("virtual_tokens", 20)
    if cpu_supports_bf16():
        # served as the product serves it on CPU: int4 decoding (IA3 merged into the weights, prompt tuning's
        # virtual tokens in the cache); every token it picks is the fp32 peft model's choice up to the near-ties of
        # int4 and bf16 rounding (under a logit; a wrong position or cache gives margins of several logits)
        fast = TransformersGenerator(resolve_generator(settings), name="t", adapter=str(out), bf16=True)
        assert fast.decoder is not None and not fast.decoder.has_lora
        fast.repetition_penalty = 1.0  # plain greedy, as the reference
        ids = fast.encode_chat(messages)
        got = list(fast.tokens(messages, 12))
        with torch.inference_mode():  # peft puts the virtual tokens first: the last positions are the answer's
            logits = reference(input_ids=torch.tensor([ids + got])).logits[0, -len(got) - 1:-1].float()
        margins = logits.max(-1).values - logits[torch.arange(len(got)), torch.tensor(got)]
        assert len(got) >= 4 and float(margins.max()) < 1.0, margins.tolist()


def test_full_fine_tuning_refuses_a_bf16_base(settings, data_dir, tmp_path):
    with pytest.raises(TrainError, match="full fine-tuning trains the base weights"):
        train(settings, data_dir, tmp_path / "f", TrainConfig(**{**TINY, "method": "full", "base_dtype": "bfloat16"}),
              progress=False)
    with pytest.raises(TrainError, match="method must be one of"):
        train(settings, data_dir, tmp_path / "g", TrainConfig(**{**TINY, "method": "qlora"}), progress=False)
