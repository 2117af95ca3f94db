"""An adapter folder as the assistant reads it: its card (card.json), whether peft can load it, which base model and
prompt wording it was trained for. The read side of the registry, which answering needs; the write side (register,
activate, roll back, reduce rank, export) is finetune/adapters.py.
"""

from __future__ import annotations

import json
from pathlib import Path

from safetensors import SafetensorError, safe_open

from ingest.settings import Settings
from ingest.types import ComplyError

CARD = "card.json"
CONFIG = "adapter_config.json"
WEIGHTS = "adapter_model.safetensors"  # the only weights format the assistant, export and reduce-rank read
ACTIVE = "ACTIVE"
GATE_METRIC = "citation_precision"


class AdapterError(ComplyError, ValueError):
    """A registry operation was refused or failed: the reason."""


def is_adapter(path: Path) -> bool:
    """A folder holding a peft adapter."""
    return (path / CONFIG).is_file()


def load_card(path: Path, error: type[ComplyError]) -> dict:
    """The card.json of a model folder (adapter, embedder, reranker) as a dict, {} when it has none; `error`
    naming the folder when it cannot be read or is not a JSON object."""
    file = Path(path) / CARD
    if not file.is_file():
        return {}
    try:
        card = json.loads(file.read_text())
    except (OSError, ValueError) as e:
        raise error(f"{path}: {CARD} cannot be read as JSON ({e})") from e
    if not isinstance(card, dict):
        raise error(f"{path}: {CARD} is not a JSON object")
    return card


def read_card(path: Path) -> dict:
    """The card of an adapter folder ({} when it has none); AdapterError when it is not a JSON object or a part the
    registry and the assistant read (dataset, eval, calibration, citation_gate) is not an object."""
    card = load_card(path, AdapterError)
    for key in ("dataset", "eval", "calibration", "citation_gate"):
        if not isinstance(card.get(key) or {}, dict):
            raise AdapterError(f"{path}: '{key}' in {CARD} is not an object")
    after = (card.get("eval") or {}).get("after") or {}
    if not isinstance(after, dict) or not isinstance(after.get(GATE_METRIC) or 0, int | float):
        raise AdapterError(f"{path}: eval.after.{GATE_METRIC} in {CARD} is not a number")
    return card


def check_adapter(path: Path) -> None:
    """Refuse (AdapterError naming the folder and the reason) an adapter folder peft could not load: its config not
    a JSON object with `peft_type` (and a positive `r` for LoRA), its weights missing or unreadable, or its card
    damaged. Reads only the header of the weights: cheap, no model is loaded."""
    path = Path(path)
    try:
        config = json.loads((path / CONFIG).read_text())
    except (OSError, ValueError) as e:
        raise AdapterError(f"{path}: {CONFIG} cannot be read as JSON ({e})") from e
    if not isinstance(config, dict) or not isinstance(config.get("peft_type"), str):
        raise AdapterError(f"{path}: {CONFIG} has no peft_type")
    rank = config.get("r")
    if config["peft_type"] == "LORA" and (not isinstance(rank, int) or isinstance(rank, bool) or rank < 1):
        raise AdapterError(f"{path}: {CONFIG} has no LoRA rank r (a positive integer), found {rank!r}")
    if not (path / WEIGHTS).is_file():
        raise AdapterError(f"{path}: no {WEIGHTS} (the adapter's weights)")
    try:
        with safe_open(str(path / WEIGHTS), framework="numpy") as f:
            tensors = list(f.keys())
    except (OSError, SafetensorError) as e:
        raise AdapterError(f"{path}: {WEIGHTS} is damaged or truncated ({e})") from e
    if not tensors:
        raise AdapterError(f"{path}: {WEIGHTS} holds no tensors")
    read_card(path)


def check_base(path: Path, settings: Settings) -> None:
    """Refuse (AdapterError) an adapter trained for another base model than the configured generator: a LoRA only
    means something on the weights it was trained on. Adapters whose card names no base are not checked."""
    base = adapter_base(path)
    if base is not None and base != settings.generator_model:
        card = read_card(path)
        raise AdapterError(f"{Path(path).name} was trained for {card.get('base_model') or base}, but the generator "
                           f"is {settings.generator_model}; set generator_model to {base!r} to use it")


def prompt_version(path: Path) -> int:
    """The prompt version an adapter was trained on: its card's `prompt_version`, else 1 (cards from before the
    field, all trained on version 1)."""
    return int(read_card(Path(path)).get("prompt_version") or 1)


def adapter_base(path: Path) -> str | None:
    """The generator setting an adapter was trained for (its card's base_model_setting), or None if unknown."""
    try:
        return read_card(Path(path)).get("base_model_setting")
    except AdapterError:
        return None
