"""The adapter registry under `settings.adapters_dir`: each adapter is a peft folder with a `card.json`; the
active one's name is in `ACTIVE` (read by `assistant.pipeline.resolve_adapter`); `history.jsonl` records every
activation and rollback, append-only.

Release gate: an adapter whose validation citation precision is below the active adapter's is not activated
unless forced.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from assistant.adapters import (  # noqa: F401 - the registry's names, read side included
    ACTIVE,
    CARD,
    CONFIG,
    GATE_METRIC,
    WEIGHTS,
    AdapterError,
    adapter_base,
    check_adapter,
    check_base,
    is_adapter,
    prompt_version,
    read_card,
)
from assistant.models import lora_scale, model_display_name, public_model_id
from assistant.prompt import PROMPT_VERSION
from eval.runner import run_eval
from ingest.settings import Settings

HISTORY = "history.jsonl"
SHIPPED_DIR = Path(__file__).resolve().parent.parent / "data" / "adapters"  # default adapter(s) in the repo
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


@dataclass
class AdapterInfo:
    """One registered adapter as `comply adapters list` shows it."""

    name: str
    path: str
    active: bool
    base_model: str | None
    dataset: str | None
    citation_precision: float | None  # on the validation split, with the adapter
    created: str | None
    error: str | None = None  # why it cannot be activated (damaged files; see check_adapter), None when sound
    comparison: dict | None = None  # the card's link to its row of an adaptation comparison: {"report", "row"}


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def write_card(path: Path, card: dict) -> None:
    """Write card.json atomically."""
    tmp = Path(path) / f".{CARD}.tmp"
    tmp.write_text(json.dumps(card, indent=2, ensure_ascii=False) + "\n")
    os.replace(tmp, Path(path) / CARD)


def validation_precision(card: dict) -> float | None:
    """The adapter's citation precision on its validation split (card["eval"]["after"])."""
    return ((card.get("eval") or {}).get("after") or {}).get(GATE_METRIC)


# what the plain-words comparison reports, as (card metric, words, higher is better)
_SAID = (("citation_precision", "citation precision", True), ("citation_recall", "citation recall", True),
         ("false_refusal_rate", "false refusals", False))


def describe(path: Path) -> str:
    """One adapter in plain words for a compliance lead: the method, what it changed on its validation questions
    against the base model measured in the same evaluation, and what it cost (training time, device, size).

    "LoRA r=8 on SmolLM2-135M-Instruct: citation precision 0.42 -> 0.82 (+0.40), ... on 100 validation questions;
    24 min of training on cpu, 4.9 MB." Parts the card does not hold are said to be missing, never guessed."""
    path = Path(path)
    try:
        card = read_card(path)
    except AdapterError:
        card = {}
    try:
        config = json.loads((path / CONFIG).read_text())
    except (OSError, ValueError):
        config = {}
    kind = str(config.get("peft_type") or "adapter")
    method = {"LORA": "LoRA", "PROMPT_TUNING": "prompt tuning"}.get(kind, kind)
    if config.get("r"):
        method += f" r={config['r']}"
    if (card.get("reduced_from") or {}).get("rank"):
        method += f" (cut by SVD from r={card['reduced_from']['rank']})"
    head = f"{method} on {card.get('base_model') or 'an unrecorded base model'}"
    ev = card.get("eval") or {}
    before, after = ev.get("before") or {}, ev.get("after") or {}
    changes = []
    for key, words, higher in _SAID:
        b, a = before.get(key), after.get(key)
        if isinstance(b, int | float) and isinstance(a, int | float):
            verdict = "" if abs(a - b) < 0.005 else (" better" if (a > b) == higher else " worse")
            changes.append(f"{words} {b:.2f} -> {a:.2f} ({a - b:+.2f}{verdict})")
    n = after.get("n_questions")
    measured = (f"{', '.join(changes)} on {f'{n} ' if n else 'its '}validation questions" if changes else
                "not evaluated yet (comply finetune evaluate)")
    training = card.get("training") or {}
    cost = []
    if isinstance(training.get("seconds"), int | float):
        minutes = training["seconds"] / 60
        where = training.get("device") or "an unrecorded device"
        cost.append(f"{minutes:.0f} min of training on {where}" + (" (bf16)" if training.get("bf16") else ""))
    weights = path / WEIGHTS
    if weights.is_file():
        cost.append(f"{weights.stat().st_size / 1e6:.1f} MB")
    comparison = card.get("comparison") or {}
    link = f" Row {comparison['row']} of {comparison['report']}." if comparison.get("row") else ""
    return f"{head}: {measured}" + (f"; {', '.join(cost)}." if cost else ".") + link


def comparisons(listed: list[AdapterInfo]) -> list[dict]:
    """The adaptation comparisons (`comply adapt compare`) that the cards of `listed` adapters link to, each once:
    {"report": its report.md, "title", "rows": [(row id, plain words, names registered from that row)], "error"}.
    A comparison whose report.json is gone or unreadable is listed with `error` saying so, and no rows."""
    linked: dict[str, dict[str, list[str]]] = {}
    for a in listed:
        comparison = a.comparison if isinstance(a.comparison, dict) else {}
        if comparison.get("report") and comparison.get("row"):
            linked.setdefault(comparison["report"], {}).setdefault(comparison["row"], []).append(a.name)
    out = []
    for report, registered in linked.items():
        entry = {"report": report, "title": None, "rows": [], "error": None}
        try:
            data = json.loads(Path(report).with_name("report.json").read_text(encoding="utf-8"))
            task, machine = data["task"], data.get("machine") or {}
            entry["title"] = (f"{Path(task['dataset']).name}, {data.get('model_name') or task['model']}, "
                              f"{task['eval_questions']} questions of the {task['eval_part']} part, on "
                              f"{machine.get('gpu') or machine.get('cpu')}")
            entry["rows"] = [(r["rid"], r["plain"], registered.get(r["rid"], [])) for r in data["rows"]
                             if r.get("plain")]
        except (OSError, ValueError, KeyError, TypeError) as e:
            entry["error"] = f"its report cannot be read ({e})"
        out.append(entry)
    return out


def adapter_path(settings: Settings, name: str) -> Path:
    """The folder of a registered adapter; AdapterError when there is none."""
    path = settings.adapters_dir / name
    if not _NAME.match(name) or not is_adapter(path):
        raise AdapterError(f"no registered adapter named '{name}' (see `comply adapters list`)")
    return path


def active(settings: Settings) -> str | None:
    """The active adapter's name, or None (base model)."""
    path = settings.adapters_dir / ACTIVE
    if not path.is_file():
        return None
    name = path.read_text().strip()
    return name if name and is_adapter(settings.adapters_dir / name) else None


def list_adapters(settings: Settings) -> list[AdapterInfo]:
    """Every registered adapter, by name. A damaged one is listed too, with `error` saying why it cannot be
    activated (None for a sound one); when its card cannot be read, the card's fields (base_model, dataset,
    citation_precision, created) are None."""
    root = settings.adapters_dir
    if not root.is_dir():
        return []
    current = active(settings)
    out = []
    for path in sorted(p for p in root.iterdir() if p.is_dir() and is_adapter(p)):
        try:
            check_adapter(path)
            error = None
        except AdapterError as e:
            error = str(e)
        try:
            card = read_card(path)
        except AdapterError:
            card = {}
        out.append(AdapterInfo(name=path.name, path=str(path), active=path.name == current,
                               base_model=card.get("base_model"), dataset=(card.get("dataset") or {}).get("name"),
                               citation_precision=validation_precision(card), created=card.get("created"),
                               error=error, comparison=card.get("comparison") or None))
    return out


def register(settings: Settings, source: Path, name: str | None = None, *, move: bool = False) -> Path:
    """Copy (or move) an adapter folder into the registry as `name` (default: the folder's name). A folder that
    check_adapter refuses is not copied."""
    source = Path(source)
    name = name or source.name
    if not _NAME.match(name) or name == ACTIVE:
        raise AdapterError(f"'{name}' is not a valid adapter name (letters, digits, '.', '_', '-')")
    if not is_adapter(source):
        raise AdapterError(f"{source} is not a peft adapter folder (no {CONFIG})")
    target = settings.adapters_dir / name
    if target.exists():
        raise AdapterError(f"an adapter named '{name}' is already registered")
    check_adapter(source)
    settings.adapters_dir.mkdir(parents=True, exist_ok=True)
    ignore = shutil.ignore_patterns("checkpoints", ".*.tmp")
    if move:
        shutil.move(str(source), target)
        shutil.rmtree(target / "checkpoints", ignore_errors=True)
    else:
        shutil.copytree(source, target, ignore=ignore)
    return target


def history(settings: Settings) -> list[dict]:
    """The activation history, oldest first."""
    path = settings.adapters_dir / HISTORY
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _append_history(settings: Settings, event: dict) -> None:
    with open(settings.adapters_dir / HISTORY, "a", encoding="utf-8") as f:
        f.write(json.dumps({"time": now(), **event}) + "\n")


def _set_active(settings: Settings, name: str | None) -> None:
    path = settings.adapters_dir / ACTIVE
    if name is None:
        path.unlink(missing_ok=True)
        return
    tmp = settings.adapters_dir / f".{ACTIVE}.tmp"
    tmp.write_text(name + "\n")
    os.replace(tmp, path)


def activate(settings: Settings, name: str, force: bool = False) -> dict:
    """Make `name` the active adapter. Refused (AdapterError saying both numbers) when its validation citation
    precision is below the active adapter's, or unknown while the active one's is known, unless `force`; refused
    even with `force` when check_adapter finds it damaged."""
    path = adapter_path(settings, name)
    check_adapter(path)  # it may have been damaged on disk since it was registered
    check_base(path, settings)
    current = active(settings)
    if current == name:
        return {"active": name, "previous": current, "changed": False}
    new_p = validation_precision(read_card(path))
    try:
        old_p = validation_precision(read_card(settings.adapters_dir / current)) if current else None
    except AdapterError:  # a damaged card of the active adapter must not keep it active
        old_p = None
    if not force and old_p is not None:
        if new_p is None:
            raise AdapterError(f"'{name}' has no validation citation precision in its card, and the active adapter "
                               f"'{current}' has {old_p:.3f}; evaluate it (comply finetune evaluate {name}) or use "
                               f"--force")
        if new_p < old_p:
            raise AdapterError(f"release gate: '{name}' has validation citation precision {new_p:.3f}, below "
                               f"{old_p:.3f} of the active adapter '{current}'; use --force to activate it anyway")
    _set_active(settings, name)
    _append_history(settings, {"action": "activate", "name": name, "previous": current, "forced": bool(force),
                               "citation_precision": new_p, "previous_citation_precision": old_p})
    return {"active": name, "previous": current, "changed": True, "forced": bool(force),
            "citation_precision": new_p, "previous_citation_precision": old_p}


def _stack(settings: Settings) -> list[str | None]:
    """The activation stack replayed from the history: activate pushes, rollback pops."""
    stack: list[str | None] = []
    for event in history(settings):
        if event.get("action") == "activate":
            if not stack:
                stack.append(event.get("previous"))
            stack.append(event["name"])
        elif event.get("action") == "rollback" and len(stack) > 1:
            stack.pop()
    return stack


def rollback(settings: Settings) -> dict:
    """Return to the adapter that was active before the current one (None = the base model)."""
    stack = _stack(settings)
    if len(stack) < 2:
        raise AdapterError("nothing to roll back to: no earlier activation in the history")
    current, previous = stack[-1], stack[-2]
    if previous is not None and not is_adapter(settings.adapters_dir / previous):
        raise AdapterError(f"cannot roll back to '{previous}': it is no longer registered")
    if previous is not None:
        check_adapter(settings.adapters_dir / previous)
    _set_active(settings, previous)
    _append_history(settings, {"action": "rollback", "name": previous, "previous": current})
    return {"active": previous, "previous": current}


def ensure_default(settings: Settings, shipped: Path = SHIPPED_DIR) -> str | None:
    """When the registry holds no adapter, register and activate the adapter shipped in `data/adapters/` for the
    configured generator (the first by name). Returns the name it activated, or None when nothing was needed or
    shipped for this generator."""
    if list_adapters(settings) or not shipped.is_dir():
        return None
    candidates = sorted(p for p in shipped.iterdir()
                        if p.is_dir() and is_adapter(p) and adapter_base(p) in (None, settings.generator_model))
    if not candidates:
        return None
    register(settings, candidates[0])
    activate(settings, candidates[0].name, force=True)
    return candidates[0].name


def make_card(name: str, settings: Settings, manifest: dict, data_dir: Path, hyperparameters: dict,
              training: dict, reproduce: str | None = None) -> dict:
    """The card of a freshly trained adapter: base model, data set and hash, recipe, training, PII counts."""
    return {
        "name": name,
        "created": now(),
        "prompt_version": PROMPT_VERSION,  # the prompt wording its training data used: the assistant gives it that
        "base_model": model_display_name(settings),
        "base_model_setting": settings.generator_model,
        "dataset": {"name": manifest.get("name"), "path": str(Path(data_dir).resolve()),
                    "sha256": manifest.get("sha256"), "train_examples": manifest.get("train", {}).get("examples"),
                    "val_examples": manifest.get("val", {}).get("examples"), "build": manifest.get("config")},
        "hyperparameters": hyperparameters,
        "training": training,
        "pii_replacements": manifest.get("pii_replacements", {}),
        "eval": None,
        "reproduce": reproduce,
    }


def evaluate(settings: Settings, name: str, questions: Path | None = None, out: Path | None = None, *,
             limit: int | None = None, sample_seed: int | None = 0, library=None, progress: bool = True) -> dict:
    """Evaluate the base model and the adapter on the adapter's validation questions (`val_questions.jsonl` of
    its data set unless given) with `eval.runner.run_eval`, and write both metric sets into its card."""
    path = adapter_path(settings, name)
    card = read_card(path)
    if questions is None:
        data = (card.get("dataset") or {}).get("path")
        if not data or not (Path(data) / "val_questions.jsonl").is_file():
            raise AdapterError(f"the card of '{name}' names no data folder with val_questions.jsonl; pass the "
                               f"questions file")
        questions = Path(data) / "val_questions.jsonl"
    out = Path(out or settings.eval_dir / f"adapter-{name}")
    runs = {}
    for label, adapter in (("before", "none"), ("after", str(path))):
        runs[label] = run_eval(settings, questions, out / label, format="jsonl", limit=limit, adapter=adapter,
                               sample_seed=sample_seed if limit else None, library=library, progress=progress)
    keep = ("n_questions", "n_answerable", "n_unanswerable", "n_citations", "citation_precision",
            "citation_recall", "support_rate", "cited_answer_rate", "cited_answer_rate_answerable", "model_cited_rate_answerable", "refusal_rate",
            "false_refusal_rate", "false_answer_rate", "recall@10")
    card["eval"] = {"questions": str(Path(questions).resolve()), "limit": limit, "sample_seed": sample_seed,
                    "runs": {k: str((out / k).resolve()) for k in runs},
                    **{k: {m: v.get(m) for m in keep} for k, v in runs.items()}}
    write_card(path, card)
    return card["eval"]


def reduce_rank(settings: Settings, name: str, rank: int, new_name: str | None = None) -> Path:
    """Register a copy of adapter `name` whose LoRA updates are cut to `rank` by SVD, as `new_name` (default
    `NAME-rRANK`): each module's update scale * B @ A is replaced by its best rank-`rank` approximation
    (Eckart-Young), stored as B' = U_r sqrt(S_r), A' = sqrt(S_r) Vh_r with alpha = rank (scale 1). Half the
    rank is half the file. The card keeps the recipe, records the reduction and the share of each update's
    energy (squared singular values) kept, and drops the evaluation and calibration of the original: they
    must be measured again on the new weights. A citation gate keeps its weights (they come from retrieval
    alone) with its threshold reset to 0 until it is calibrated again."""
    from safetensors.torch import load_file, save_file  # lazy: safetensors.torch loads torch (~2 s)

    source = adapter_path(settings, name)
    config = json.loads((source / CONFIG).read_text())
    old_rank = int(config.get("r", 0))
    if not 0 < rank < old_rank:
        raise AdapterError(f"rank must be between 1 and {old_rank - 1} (the rank of '{name}'), not {rank}")
    if config.get("use_dora") or config.get("rank_pattern") or config.get("alpha_pattern"):
        raise AdapterError(f"'{name}' is not a plain LoRA adapter with one rank; its rank cannot be reduced")
    scale = lora_scale(config)
    new_name = new_name or f"{name}-r{rank}"
    if not _NAME.match(new_name) or new_name == ACTIVE:
        raise AdapterError(f"'{new_name}' is not a valid adapter name (letters, digits, '.', '_', '-')")
    if (settings.adapters_dir / new_name).exists():
        raise AdapterError(f"an adapter named '{new_name}' is already registered")
    weights = load_file(source / WEIGHTS)
    out, kept = {}, []
    for key, a in weights.items():
        if ".lora_A." not in key:
            if ".lora_B." not in key:
                out[key] = a  # e.g. modules_to_save: copied unchanged
            continue
        b = weights[key.replace(".lora_A.", ".lora_B.")]
        u, s, vh = _low_rank_svd(scale * b.double(), a.double())
        kept.append(float((s[:rank] ** 2).sum() / (s ** 2).sum().clamp_min(1e-30)))
        root = s[:rank].sqrt()
        out[key] = (root[:, None] * vh[:rank]).to(a.dtype).contiguous()
        out[key.replace(".lora_A.", ".lora_B.")] = (u[:, :rank] * root).to(b.dtype).contiguous()
    tmp = settings.adapters_dir / f".{new_name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for extra in source.iterdir():  # tokenizer or other files saved beside the adapter
        if extra.is_file() and extra.name not in (CONFIG, WEIGHTS, CARD, "README.md"):
            shutil.copy2(extra, tmp / extra.name)
    config.update(r=rank, lora_alpha=rank, use_rslora=False)
    (tmp / CONFIG).write_text(json.dumps(config, indent=2) + "\n")
    save_file(out, tmp / WEIGHTS, metadata={"format": "pt"})
    card = {k: v for k, v in read_card(source).items() if k not in ("eval", "calibration")}
    if card.get("citation_gate"):  # its weights come from retrieval alone; its threshold from the old weights' answers
        card["citation_gate"] = {**card["citation_gate"], "threshold": 0.0}
    card.update(name=new_name, created=now(), eval=None, reduced_from={
        "adapter": name, "rank": old_rank, "to_rank": rank, "method": "svd",
        "energy_kept_min": round(min(kept), 4), "energy_kept_mean": round(sum(kept) / len(kept), 4)})
    write_card(tmp, card)
    os.replace(tmp, settings.adapters_dir / new_name)
    return settings.adapters_dir / new_name


def _low_rank_svd(b, a):
    """The thin SVD of the product b @ a (b: out x r, a: r x in) from QR factors of b and a^T and the SVD of an
    r x r core, without forming the out x in product: b a = Qb (Rb Ra^T) Qa^T. Seconds for a 1.5B model's LoRA where
    the SVD of each full product took 21 minutes on 2 cores."""
    import torch  # lazy: torch takes ~2 s to import

    qb, rb = torch.linalg.qr(b)
    qa, ra = torch.linalg.qr(a.T)
    u, s, vh = torch.linalg.svd(rb @ ra.T)
    return qb @ u, s, vh @ qa.T


def export(settings: Settings, name: str, dest: Path, *, bf16: bool = True) -> Path:
    """Write adapter `name` as a self-contained folder to ship or share (e.g. `data/adapters/NAME`): the peft
    files (LoRA weights in bf16 unless `bf16=False`: half the size, and the assistant computes in bf16 anyway),
    `card.json` without paths of this machine, and a README generated from the card. The peft config names the
    base model by its public id when it is a packaged model, instead of a local conversion folder."""
    from safetensors.torch import load_file, save_file  # lazy: safetensors.torch loads torch (~2 s)

    source = adapter_path(settings, name)
    dest = Path(dest)
    tmp = dest.with_name(f".{dest.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    config = json.loads((source / CONFIG).read_text())
    if public_model_id(settings) != settings.generator_model:  # a packaged model: its public id, not a local folder
        config["base_model_name_or_path"] = public_model_id(settings)
    (tmp / CONFIG).write_text(json.dumps(config, indent=2) + "\n")
    tensors = load_file(source / WEIGHTS)
    if bf16:
        import torch  # lazy: torch takes ~2 s to import

        tensors = {k: v.to(torch.bfloat16) for k, v in tensors.items()}
    save_file(tensors, tmp / WEIGHTS, metadata={"format": "pt"})
    card = _portable(read_card(source))
    write_card(tmp, card)
    (tmp / "README.md").write_text(card_markdown(card))
    shutil.rmtree(dest, ignore_errors=True)
    os.replace(tmp, dest)
    return dest


def _portable(card: dict) -> dict:
    """The card with this machine's absolute paths reduced to file names."""
    def strip(value):
        if isinstance(value, dict):
            return {k: strip(v) for k, v in value.items()}
        if isinstance(value, list):
            return [strip(v) for v in value]
        if isinstance(value, str) and os.path.isabs(value):
            return Path(value).name
        return value

    return strip(card)


def card_markdown(card: dict) -> str:
    """A human-readable model card from card.json."""
    ev, cal, tr = card.get("eval") or {}, card.get("calibration") or {}, card.get("training") or {}
    data = card.get("dataset") or {}

    def num(v):
        return "-" if v is None else (f"{v:.3f}" if isinstance(v, float) else str(v))

    lines = [f"# {card.get('name')}: LoRA adapter for {card.get('base_model')}", "",
             "Trained by comply's fine-tuning pipeline (docs/finetuning.md) to answer from numbered sources as "
             "\"According to [n], <quoted sentence>.\" and to abstain when the sources do not hold the answer.", "",
             f"- data: {data.get('name')} (sha256 {str(data.get('sha256'))[:12]}), {data.get('train_examples')} "
             f"training / {data.get('val_examples')} validation examples, build {json.dumps(data.get('build'))}",
             f"- training: {tr.get('steps')} steps in {tr.get('seconds') or 0:.0f} s on {tr.get('device')} "
             f"(bf16 {tr.get('bf16')}), loss {num(tr.get('first_loss'))} -> {num(tr.get('last_loss'))}",
             f"- hyperparameters: {json.dumps(card.get('hyperparameters'))}",
             f"- personal data replaced in the training data: {card.get('pii_replacements') or 'none'}",
             f"- reproduce: `{card.get('reproduce')}`", ""]
    if cut := card.get("reduced_from"):
        lines[-1:-1] = [f"- rank: cut from {cut.get('rank')} to {cut.get('to_rank')} by SVD after training "
                        f"(`comply adapters reduce-rank`), keeping {num(cut.get('energy_kept_mean'))} of the "
                        f"updates' energy on average (lowest {num(cut.get('energy_kept_min'))}); calibrated and "
                        f"evaluated again after the cut"]
    if cal and cal.get("target_met"):
        lines += [f"Confidence gate: answers whose probability up to their first citation is below "
                  f"{cal.get('min_confidence'):.4f} are abstentions (calibrated on {cal.get('questions')} held-out "
                  f"questions for citation precision {cal.get('target_precision')}: there "
                  f"{num(cal.get('precision_before'))} -> {num(cal.get('precision_after'))}, answers "
                  f"{cal.get('answered_before')} -> {cal.get('answered_after')}).", ""]
    elif cal:
        lines += [f"No confidence gate: on {cal.get('questions')} held-out questions its citations were "
                  f"{num(cal.get('precision_before'))} precise over {cal.get('answered_before')} answers, and no "
                  f"confidence threshold reached {cal.get('target_precision')} (the best, "
                  f"{num(cal.get('best_threshold'))}, gave {num(cal.get('best_precision'))}).", ""]
    gate, gate_cal = card.get("citation_gate") or {}, cal.get("citation_gate") or {}
    if gate:
        fitted = gate.get("fitted_on") or {}
        lines += [f"Citation gate (assistant/gate.py): fitted on {fitted.get('sources')} retrieved sources of "
                  f"{Path(str(fitted.get('dataset'))).name}; "
                  + (f"answers whose cited source scores below {gate.get('threshold'):.4f} are withheld "
                     f"(calibrated on {gate_cal.get('questions')} held-out questions for citation precision "
                     f"{gate_cal.get('target_precision')}: there {num(gate_cal.get('precision_before'))} -> "
                     f"{num(gate_cal.get('precision_after'))}, answers {gate_cal.get('answered_before')} -> "
                     f"{gate_cal.get('answered_after')})." if gate.get("threshold") else
                     "no threshold set (answers are scored, none withheld)."), ""]
    if ev.get("before") and ev.get("after"):
        lines += [f"Validation ({ev['after'].get('n_questions')} questions never trained on):", "",
                  "| metric | base model | with adapter |", "| --- | --- | --- |"]
        lines += [f"| {m} | {num(ev['before'].get(m))} | {num(ev['after'].get(m))} |" for m in ev["after"]
                  if m not in ("n_questions", "n_answerable", "n_unanswerable")]
        lines.append("")
    return "\n".join(lines)
