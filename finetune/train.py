"""Fine-tuning of the generator on chat examples, with the loss on the assistant's target tokens only: a LoRA (the
default and what the product ships), peft's IA3 or prompt tuning, or full fine-tuning (METHODS; compared side by
side by finetune/strategies.py).

A lean loop (nanoGPT-style) rather than HF Trainer: one example per forward (no padding waste on a CPU), gradient
accumulation to the configured batch, bf16 autocast on CUDA and on CPUs with native bf16, a tqdm bar with the
loss, a checkpoint (trained weights + optimizer + step) every `save_every` optimizer steps, and `resume=True` continuing
from the last checkpoint with the same data order. Seeds are fixed.
"""

from __future__ import annotations

import json
import math
import random
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from tqdm import tqdm

from assistant.generation import quiet_loading
from assistant.models import resolve_generator
from finetune.dataset import Example, load_examples
from ingest.embedding import cpu_supports_bf16
from ingest.settings import Settings
from ingest.types import ComplyError

DEFAULT_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
# What is trained: a LoRA (the product's adapters; the only kind llama.cpp runs), peft's IA3 (learned scaling vectors
# on peft's default modules for the architecture), peft's prompt tuning (learned virtual tokens before the prompt),
# or every weight of the model (full fine-tuning; the output is a model folder, not an adapter).
METHODS = ("lora", "ia3", "prompt_tuning", "full")
# Prompt tuning starts its virtual tokens from the embedding of this text (peft's TEXT init), not from noise.
PROMPT_TUNING_INIT = "Answer only from the numbered sources and cite each fact as [n]."


class TrainError(ComplyError):
    """Training could not start or continue: the reason."""


@dataclass
class TrainConfig:
    """The recipe. Defaults are sized for SmolLM2-135M on a 2-core CPU (see docs/finetuning.md)."""

    rank: int = 16
    alpha: int = 32
    dropout: float = 0.05
    target_modules: tuple[str, ...] = DEFAULT_TARGETS
    lr: float = 5e-4
    warmup_steps: int = 5
    epochs: float = 1.0
    max_steps: int | None = None  # optimizer steps; overrides epochs when set
    batch_size: int = 1  # examples per forward
    grad_accum: int = 4  # forwards per optimizer step
    max_seq_len: int = 1024  # longer examples are skipped (their prompt would be cut)
    max_examples: int | None = None  # use only the first N training examples
    save_every: int = 20
    seed: int = 0
    weight_decay: float = 0.0
    bf16: str = "auto"  # auto | on | off
    # The frozen base weights: float32 (autocast casts them to bf16 in every forward when bf16 is on) or bfloat16
    # (stored once in bf16, half the memory; the LoRA weights stay float32, as peft keeps them).
    base_dtype: str = "float32"
    method: str = "lora"  # METHODS; rank, alpha, dropout and target_modules are LoRA's
    virtual_tokens: int = 20  # prompt tuning's learned tokens

    def to_dict(self) -> dict:
        d = asdict(self)
        d["target_modules"] = list(self.target_modules)
        return d


@dataclass
class TrainResult:
    """What a run did: steps, losses, time, and where the adapter is."""

    adapter_dir: str
    steps: int
    examples: int
    skipped_too_long: int
    seconds: float
    seconds_per_step: float | None
    first_loss: float | None
    last_loss: float | None
    losses: list[float] = field(default_factory=list)
    resumed_from: int | None = None
    device: str = "cpu"
    bf16: bool = False
    method: str = "lora"
    trainable_parameters: int = 0
    total_parameters: int = 0


def encode_example(tokenizer, messages: list[dict]) -> tuple[list[int], list[int]]:
    """(input_ids, labels) for a chat whose last message is the target; labels are -100 except on the target
    tokens and the end-of-turn token, rendered exactly as the chat template renders the assistant's turn."""
    prompt = tokenizer.apply_chat_template(messages[:-1], add_generation_prompt=True, tokenize=True,
                                           return_dict=True)["input_ids"]
    full = tokenizer.apply_chat_template(messages, tokenize=True, return_dict=True)["input_ids"]
    prompt, full = list(prompt), list(full)
    if full[: len(prompt)] != prompt:
        raise TrainError("the chat template renders the prompt differently with and without the answer")
    # The template may add a newline after the end-of-turn token; train up to and including end-of-turn only.
    end = len(full)
    eot = tokenizer.convert_tokens_to_ids("<|im_end|>")
    if isinstance(eot, int) and eot in full[len(prompt):]:
        end = len(prompt) + full[len(prompt):].index(eot) + 1
    full = full[:end]
    labels = [-100] * len(prompt) + full[len(prompt):]
    return full, labels


def _target_loss(model, ids: list[int], labels: list[int], device: str):
    """Summed cross-entropy over the target tokens and their count. The target is the end of the sequence, so only
    its logits are computed (`logits_to_keep`): the 49k-word output layer over a 700-token prompt would cost a
    fifth of the step."""
    import torch  # lazy: torch takes ~2 s to import

    n_target = sum(1 for t in labels if t != -100)
    logits = model(input_ids=torch.tensor([ids], device=device), logits_to_keep=n_target + 1).logits[0].float()
    target = torch.tensor(labels[-n_target:], device=device)
    return torch.nn.functional.cross_entropy(logits[:-1], target, reduction="sum"), n_target


def step_examples(encoded: list, order: list[int], step: int, per_step: int) -> list:
    """The examples of optimizer step `step` (0-based): the next `per_step` of the shuffled order, wrapping."""
    return [encoded[order[(step * per_step + i) % len(encoded)]] for i in range(per_step)]


def backward_step(model, examples: list[tuple[list[int], list[int]]], device: str, autocast) -> tuple[float, int]:
    """Accumulate the gradient of one optimizer step: the token-level mean loss over all target tokens of all its
    examples, so every target token weighs the same. (A mean per example gives each token of a 12-token
    abstention five times the weight of an answer's token: a model trained that way abstained on most questions
    although a fifth of its targets were abstentions.) Returns the summed loss and the number of target tokens."""
    n_target = sum(sum(1 for t in labels if t != -100) for _, labels in examples)
    step_loss, step_tokens = 0.0, 0
    for ids, labels in examples:
        with autocast:
            loss_sum, n = _target_loss(model, ids, labels, device)
        (loss_sum / max(1, n_target)).backward()
        step_loss += loss_sum.detach().item()
        step_tokens += n
    return step_loss, step_tokens


def _device_and_bf16(settings: Settings, config: TrainConfig) -> tuple[str, bool]:
    import torch  # lazy: torch takes ~2 s to import

    device = "cuda" if settings.device in ("auto", "cuda") and torch.cuda.is_available() else "cpu"
    if config.bf16 == "on":
        return device, True
    if config.bf16 == "off":
        return device, False
    return device, device == "cuda" or cpu_supports_bf16()


def _lr_at(step: int, total: int, config: TrainConfig) -> float:
    """Linear warm-up, then cosine decay to 10% of the peak."""
    if step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    progress = (step - config.warmup_steps) / max(1, total - config.warmup_steps)
    return config.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


def _last_checkpoint(out: Path) -> Path | None:
    ckpts = sorted((out / "checkpoints").glob("step-*"), key=lambda p: int(p.name.split("-")[1]))
    done = [p for p in ckpts if (p / "state.json").is_file()]
    return done[-1] if done else None


def train(settings: Settings, data_dir: Path, out: Path, config: TrainConfig | None = None, *,
          resume: bool = False, progress: bool = True) -> TrainResult:
    """Train on `data_dir/train.jsonl` into `out`: a peft folder (adapter_config.json + adapter_model.safetensors)
    for LoRA, IA3 and prompt tuning, a model folder (weights + tokenizer) for full fine-tuning; checkpointing into `out/checkpoints/`. Returns what happened."""
    import torch  # lazy: torch takes ~2 s to import
    from transformers import (  # lazy: transformers takes ~2.5 s to import (it loads torch)
        AutoModelForCausalLM,
        AutoTokenizer,
    )

    config = config or TrainConfig()
    if config.method not in METHODS:
        raise TrainError(f"method must be one of {', '.join(METHODS)}, not {config.method!r}")
    if config.base_dtype not in ("float32", "bfloat16"):
        raise TrainError(f"base_dtype must be float32 or bfloat16, not {config.base_dtype!r}")
    if config.method == "full" and config.base_dtype != "float32":
        raise TrainError("full fine-tuning trains the base weights themselves: they stay float32 (AdamW steps on "
                         "bfloat16 weights round away); drop base_dtype bfloat16")
    out = Path(out)
    if out.exists() and not resume and any(out.iterdir()):
        raise TrainError(f"{out} already exists; pass resume=True (--resume) to continue it, or pick a new name")
    out.mkdir(parents=True, exist_ok=True)
    random.seed(config.seed)
    torch.manual_seed(config.seed)

    base = resolve_generator(settings)
    tokenizer = AutoTokenizer.from_pretrained(base)
    examples: list[Example] = load_examples(Path(data_dir) / "train.jsonl")
    if config.max_examples:
        examples = examples[: config.max_examples]
    encoded, skipped = [], 0
    for ex in examples:
        ids, labels = encode_example(tokenizer, ex.messages)
        if len(ids) > config.max_seq_len:
            skipped += 1
            continue
        encoded.append((ids, labels))
    if not encoded:
        raise TrainError(f"no training example fits max_seq_len={config.max_seq_len} ({skipped} skipped)")
    order = list(range(len(encoded)))
    random.Random(config.seed).shuffle(order)
    per_step = config.batch_size * config.grad_accum
    total_steps = config.max_steps or max(1, math.ceil(len(encoded) * config.epochs / per_step))

    device, bf16 = _device_and_bf16(settings, config)
    with quiet_loading():
        model = AutoModelForCausalLM.from_pretrained(base, dtype=getattr(torch, config.base_dtype))
        model = _trainable(model, config, base).to(device)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)

    step, losses, resumed_from, seconds_before = 0, [], None, 0.0
    ckpt = _last_checkpoint(out) if resume else None
    if ckpt is not None:
        state = json.loads((ckpt / "state.json").read_text())
        _load_checkpoint_weights(model, ckpt, config.method)
        optimizer.load_state_dict(torch.load(ckpt / "optimizer.pt", weights_only=True))
        step, losses, seconds_before = state["step"], state["losses"], state["seconds"]
        resumed_from = step
        torch.set_rng_state(torch.load(ckpt / "rng.pt", weights_only=True))

    model.train()
    t0 = time.perf_counter()
    bar = tqdm(total=total_steps, initial=step, desc="train", unit="step", file=sys.stderr, disable=not progress)
    autocast = torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=bf16)
    while step < total_steps:
        for group in optimizer.param_groups:
            group["lr"] = _lr_at(step, total_steps, config)
        step_loss, step_tokens = backward_step(model, step_examples(encoded, order, step, per_step), device,
                                               autocast)
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        step += 1
        losses.append(round(step_loss / max(1, step_tokens), 4))
        bar.update(1)
        bar.set_postfix(loss=f"{losses[-1]:.3f}")
        if step % config.save_every == 0 or step == total_steps:
            _save_checkpoint(model, optimizer, out, step, losses, seconds_before + time.perf_counter() - t0)
    bar.close()
    seconds = seconds_before + time.perf_counter() - t0
    model.save_pretrained(out)
    if config.method == "full":  # a model folder from_pretrained (and so the generator setting) can load as it is
        tokenizer.save_pretrained(out)
    (out / "train_config.json").write_text(json.dumps(config.to_dict(), indent=2))
    done_here = step - (resumed_from or 0)
    return TrainResult(adapter_dir=str(out), steps=step, examples=len(encoded), skipped_too_long=skipped,
                       seconds=round(seconds, 1),
                       seconds_per_step=round((time.perf_counter() - t0) / done_here, 2) if done_here else None,
                       first_loss=losses[0] if losses else None, last_loss=losses[-1] if losses else None,
                       losses=losses, resumed_from=resumed_from, device=device, bf16=bf16, method=config.method,
                       trainable_parameters=sum(p.numel() for p in params),
                       total_parameters=sum(p.numel() for p in model.parameters()))


def _trainable(model, config: TrainConfig, base: str):
    """The model with what `config.method` trains made trainable: a peft wrapper (LoRA, IA3, prompt tuning) around
    the frozen base, or the model itself with every weight trainable (full)."""
    if config.method == "full":
        for p in model.parameters():
            p.requires_grad_(True)
        return model
    from peft import (  # lazy: peft takes ~4 s to import (it loads torch)
        IA3Config,
        LoraConfig,
        PromptTuningConfig,
        PromptTuningInit,
        get_peft_model,
    )

    if config.method == "lora":
        peft_config = LoraConfig(r=config.rank, lora_alpha=config.alpha, lora_dropout=config.dropout,
                                 target_modules=list(config.target_modules), task_type="CAUSAL_LM")
    elif config.method == "ia3":  # peft's default modules for the architecture (llama, qwen2: k, v, down_proj)
        peft_config = IA3Config(task_type="CAUSAL_LM")
    else:
        peft_config = PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=config.virtual_tokens,
                                         prompt_tuning_init=PromptTuningInit.TEXT,
                                         prompt_tuning_init_text=PROMPT_TUNING_INIT, tokenizer_name_or_path=base)
    return get_peft_model(model, peft_config)


def _load_checkpoint_weights(model, ckpt: Path, method: str) -> None:
    """Put a checkpoint's trained weights back into the model `_trainable` made."""
    from safetensors.torch import load_file  # lazy: safetensors.torch loads torch (~2 s)

    if method == "full":  # tied weights (the output layer of small models) are saved once and stay tied
        unexpected = model.load_state_dict(load_file(str(ckpt / "model.safetensors")), strict=False).unexpected_keys
        if unexpected:
            raise TrainError(f"{ckpt}: checkpoint holds weights the model does not have: {unexpected[:3]}")
        return
    from peft import set_peft_model_state_dict  # lazy: peft takes ~4 s to import (it loads torch)

    set_peft_model_state_dict(model, load_file(str(ckpt / "adapter_model.safetensors")))


def _save_checkpoint(model, optimizer, out: Path, step: int, losses: list[float], seconds: float) -> Path:
    """Write checkpoints/step-N atomically (state.json last) and keep only the two newest."""
    import torch  # lazy: torch takes ~2 s to import

    target = out / "checkpoints" / f"step-{step}"
    tmp = out / "checkpoints" / f".step-{step}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    model.save_pretrained(tmp)
    torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
    torch.save(torch.get_rng_state(), tmp / "rng.pt")
    (tmp / "state.json").write_text(json.dumps({"step": step, "losses": losses, "seconds": seconds}))
    shutil.rmtree(target, ignore_errors=True)
    tmp.rename(target)
    for old in sorted((out / "checkpoints").glob("step-*"), key=lambda p: int(p.name.split("-")[1]))[:-2]:
        shutil.rmtree(old, ignore_errors=True)
    return target


def loss_on(settings: Settings, examples: list[Example], adapter: str | None = None,
            max_seq_len: int = 1024) -> float:
    """Mean target-token loss of the base model (or with an adapter folder) on examples; for checks and tests."""
    import torch  # lazy: torch takes ~2 s to import
    from transformers import (  # lazy: transformers takes ~2.5 s to import (it loads torch)
        AutoModelForCausalLM,
        AutoTokenizer,
    )

    base = resolve_generator(settings)
    tokenizer = AutoTokenizer.from_pretrained(base)
    with quiet_loading():
        model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
        if adapter:
            from peft import PeftModel  # lazy: peft takes ~4 s to import (it loads torch)

            model = PeftModel.from_pretrained(model, adapter)
    model.eval()
    total, count = 0.0, 0
    with torch.inference_mode():
        for ex in examples:
            ids, labels = encode_example(tokenizer, ex.messages)
            if len(ids) > max_seq_len:
                continue
            loss_sum, n = _target_loss(model, ids, labels, "cpu")
            total += float(loss_sum)
            count += n
    return total / max(1, count)
