"""The retriever-model registry, beside the generator adapters: embedders and rerankers comply trained (or any
sentence-transformers folder), each with its card, activated and rolled back through a release gate.

    <home>/retrievers/embedder/<name>/   a SentenceTransformer folder + card.json
    <home>/retrievers/reranker/<name>/   a CrossEncoder folder + card.json
    <home>/retrievers/<kind>/ACTIVE      the active reranker's name (embedders: vectors.json, see below)
    <home>/retrievers/<kind>/history.jsonl   every registration, activation and rollback, append-only

Activating a reranker names it in ACTIVE: retrieval (with `rerank` on) and the relevance check load it from the
next question on (assistant/rerank.py `current_reranker`). Activating an embedder re-embeds the whole library into
a new index generation and switches to it atomically (ingest/reembed.py): the active embedder is the one
vectors.json names, so there is one truth. "base" is the configured model (embedding_model; for rerankers the
reranker_model setting, by default the shipped one). An embedder in data/embedders/<name> (`make embedder` writes
one there; index_embedding_model may name it) is found by its name without being registered, and listed as such.

Release gate, on the card's validation numbers (MAP@10 on the questions held out of training, measured by the
training run against the model it started from on the same lists): refused, unless forced, when the candidate
ranks its validation questions worse than what it would replace there (the frozen embedder, the fused order
without a reranker), when the active model's card has MAP@10 on the same validation lists (same sha256) and the
candidate's is lower, or when the card has no validation MAP@10 at all.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from assistant.adapters import load_card
from assistant.rerank import current_reranker, registry_reranker
from ingest.catalog import Catalog
from ingest.embedding import EMBEDDERS_DIR, named_embedder
from ingest.index import VectorPointer
from ingest.pipeline import Library, default_pointer
from ingest.reembed import reembed
from ingest.settings import BASE_MODEL, Settings
from ingest.types import ComplyError

KINDS = ("embedder", "reranker")
BASE = BASE_MODEL
ACTIVE = "ACTIVE"
HISTORY = "history.jsonl"
METRIC = "map@10"
IN_DATA = "in data/embedders"  # the `registered` of an embedder found there by name, not copied into the home
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


class RetrieverError(ComplyError, ValueError):
    """A registry operation was refused or failed: the reason."""


@dataclass
class Validation:
    """A model's validation numbers from its card: MAP@10 with it, and without it (what it replaces) on the same
    held-out lists; `lists` is the sha256 of those lists (None when unknown)."""

    value: float | None
    baseline: float | None
    lists: str | None
    questions: int | None


@dataclass
class RetrieverInfo:
    """One registered retriever model as `comply retrievers list` and the Adapters tab show it."""

    kind: str
    name: str
    path: str
    active: bool
    base_model: str | None
    dataset: str | None
    map10: float | None  # validation MAP@10 with this model
    baseline_map10: float | None  # validation MAP@10 without it (frozen embedder / fused order)
    val_questions: int | None
    trained_seconds: float | None
    registered: str | None
    error: str | None = None  # why it cannot be activated, None when sound

    def to_dict(self) -> dict:
        return asdict(self)


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _kind(kind: str) -> str:
    if kind not in KINDS:
        raise RetrieverError(f"unknown kind of retriever model '{kind}' (one of: {', '.join(KINDS)})")
    return kind


def root(settings: Settings, kind: str) -> Path:
    return settings.retrievers_dir / _kind(kind)


def read_card(path: Path) -> dict:
    """The card of a model folder ({} without one); RetrieverError when it is not a JSON object."""
    return load_card(path, RetrieverError)


def validation(card: dict, kind: str) -> Validation:
    """The validation MAP@10 with and without the model, from the card comply's training writes (`best`: the
    kept step's numbers; embedders also `frozen`: the model they started from)."""
    best = card.get("best") if isinstance(card.get("best"), dict) else {}
    if kind == "reranker":
        value, baseline = (best.get("reranked") or {}).get(METRIC), (best.get("fused") or {}).get(METRIC)
    else:
        value = (best.get("embedder") or {}).get(METRIC)
        baseline = ((card.get("frozen") or {}).get("embedder") or {}).get(METRIC)
    data = card.get("data") if isinstance(card.get("data"), dict) else {}
    return Validation(_number(value), _number(baseline), data.get("mined_val_sha256"),
                      card.get("val_questions") if isinstance(card.get("val_questions"), int) else None)


def _number(v) -> float | None:
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else None


def check_model(path: Path, kind: str) -> None:
    """Refuse (RetrieverError naming the folder and the reason) a folder sentence-transformers could not load as
    this kind: no config.json, no weights, no tokenizer; an embedder needs modules.json (its pooling)."""
    path = Path(path)
    if not (path / "config.json").is_file():
        raise RetrieverError(f"{path}: not a model folder (no config.json)")
    if not (list(path.glob("*.safetensors")) or list(path.glob("*.bin"))):
        raise RetrieverError(f"{path}: no weights (model.safetensors)")
    if not any((path / f).is_file() for f in ("tokenizer.json", "vocab.txt", "tokenizer_config.json")):
        raise RetrieverError(f"{path}: no tokenizer")
    try:
        architectures = json.loads((path / "config.json").read_text()).get("architectures") or []
    except (OSError, ValueError, AttributeError) as e:
        raise RetrieverError(f"{path}: config.json cannot be read as a JSON object ({e})") from e
    scores_pairs = any(str(a).endswith("ForSequenceClassification") for a in architectures)
    if kind == "embedder" and (scores_pairs or not (path / "modules.json").is_file()):
        raise RetrieverError(f"{path}: not a sentence-transformers embedder ("
                             + ("a cross-encoder: register it as a reranker)" if scores_pairs else "no modules.json)"))
    if kind == "reranker" and not scores_pairs:
        raise RetrieverError(f"{path}: not a cross-encoder (config.json names no *ForSequenceClassification "
                             f"architecture): an embedder is registered as an embedder")
    read_card(path)


def _pointer(settings: Settings) -> VectorPointer:
    return VectorPointer.read(settings.vectors_pointer_path, default_pointer(settings))


def active(settings: Settings, kind: str) -> str | None:
    """The active model's registry name; None for the base model."""
    if _kind(kind) == "embedder":
        return _pointer(settings).name
    path = registry_reranker(settings)
    return path.name if path is not None else None


def model_path(settings: Settings, kind: str, name: str) -> Path:
    """The folder of a registered model, else of an embedder under that name in data/embedders/ (`make embedder`);
    RetrieverError when there is neither."""
    path = root(settings, kind) / name
    if _NAME.match(name) and name not in (ACTIVE, BASE) and (path / "config.json").is_file():
        return path
    shipped = named_embedder(name) if kind == "embedder" and _NAME.match(name) else None
    if shipped is None:
        raise RetrieverError(f"no registered {kind} named '{name}' (see `comply retrievers list`)")
    return shipped


def history(settings: Settings, kind: str) -> list[dict]:
    """Registrations, activations and rollbacks of this kind, oldest first."""
    path = root(settings, kind) / HISTORY
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _append_history(settings: Settings, kind: str, event: dict) -> None:
    folder = root(settings, kind)
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / HISTORY, "a", encoding="utf-8") as f:
        f.write(json.dumps({"time": now(), **event}) + "\n")


def list_models(settings: Settings, kind: str | None = None) -> list[RetrieverInfo]:
    """Every registered model (of one kind, or both), by kind and name; a damaged one is listed with `error`."""
    out = []
    for k in (kind,) if kind else KINDS:
        folder = root(settings, k)
        own = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")) if folder.is_dir() else []
        shipped = sorted(p for p in EMBEDDERS_DIR.iterdir() if named_embedder(p.name) is not None
                         and p.name not in {q.name for q in own}) if k == "embedder" and EMBEDDERS_DIR.is_dir() else []
        if not own and not shipped:
            continue
        current = active(settings, k)
        registered = {e["name"]: e["time"] for e in history(settings, k) if e.get("action") == "register"}
        registered.update({p.name: IN_DATA for p in shipped})
        for path in own + shipped:
            try:
                check_model(path, k)
                error = None
            except RetrieverError as e:
                error = str(e)
            try:
                card = read_card(path)
            except RetrieverError:
                card = {}
            v = validation(card, k)
            data = card.get("data") if isinstance(card.get("data"), dict) else {}
            out.append(RetrieverInfo(
                kind=k, name=path.name, path=str(path), active=path.name == current,
                base_model=card.get("base_model"), dataset=data.get("dataset"), map10=v.value,
                baseline_map10=v.baseline, val_questions=v.questions, trained_seconds=card.get("seconds"),
                registered=registered.get(path.name), error=error))
    return out


def register(settings: Settings, kind: str, source: Path, name: str | None = None) -> Path:
    """Copy a trained model folder (with its card) into the registry as `name` (default: the folder's name);
    a folder check_model refuses is not copied. Checkpoints are left behind."""
    source = Path(source)
    name = name or source.name
    if not _NAME.match(name) or name in (ACTIVE, BASE):
        raise RetrieverError(f"'{name}' is not a valid model name (letters, digits, '.', '_', '-'; not '{BASE}')")
    if not source.is_dir():
        raise RetrieverError(f"{source} is not a folder")
    check_model(source, kind)
    target = root(settings, kind) / name
    if target.exists():
        raise RetrieverError(f"a {kind} named '{name}' is already registered")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".{name}.{os.getpid()}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(source, tmp, ignore=shutil.ignore_patterns("checkpoints", ".*.tmp"))
    os.replace(tmp, target)  # a half-copied folder never shows up under its name
    _append_history(settings, kind, {"action": "register", "name": name, "source": str(source.resolve())})
    return target


def gate(settings: Settings, kind: str, name: str) -> tuple[list[str], Validation]:
    """The release gate's reasons to refuse activating `name` (empty: it passes) and its validation numbers."""
    new = validation(read_card(model_path(settings, kind, name)), kind)
    reasons = []
    if new.value is None:
        reasons.append(f"'{name}' has no validation MAP@10 in its card (train it with `comply adapt {kind}`, "
                       f"which measures it)")
    elif new.baseline is not None and new.value < new.baseline:
        without = "the frozen embedder it started from" if kind == "embedder" else "the fused order, not reranked"
        reasons.append(f"'{name}' ranks its {new.questions or ''} validation questions worse than {without}: "
                       f"MAP@10 {new.value:.3f} < {new.baseline:.3f}".replace("  ", " "))
    current = active(settings, kind)
    if current is not None and current != name and new.value is not None:
        try:
            old = validation(read_card(model_path(settings, kind, current)), kind)
        except RetrieverError:
            old = Validation(None, None, None, None)
        if old.value is not None and old.lists is not None and old.lists == new.lists and new.value < old.value:
            reasons.append(f"'{name}' has validation MAP@10 {new.value:.3f}, below {old.value:.3f} of the active "
                           f"{kind} '{current}' on the same validation lists")
    return reasons, new


def activate(settings: Settings, kind: str, name: str, *, force: bool = False, library: Library | None = None,
             on_progress: Callable[[int, int], None] | None = None) -> dict:
    """Make `name` (or "base") the active model of its kind, through the release gate unless `force`; refused even
    with `force` when the folder is damaged. An embedder re-embeds the library first (minutes for a large one;
    `on_progress(done, total)` in chunks) and switches only when every chunk is in the new index."""
    current = active(settings, kind)
    target = None if name == BASE else name
    stale = kind == "embedder" and target is None and _pointer(settings).model != settings.embedding_model
    if target == current and not stale:  # ("base" after embedding_model was changed: re-embed with it)
        return {"kind": kind, "active": name, "previous": current or BASE, "changed": False}
    reasons, numbers = [], None
    if target is not None:
        path = model_path(settings, kind, target)
        check_model(path, kind)
        reasons, numbers = gate(settings, kind, target)
        if reasons and not force:
            raise RetrieverError("release gate: " + "; ".join(reasons) + "; use --force to activate it anyway")
    outcome = _switch(settings, kind, target, library=library, on_progress=on_progress)
    event = {"action": "activate", "name": name, "previous": current or BASE, "forced": bool(force and reasons),
             **({"gate": reasons} if reasons else {}),
             **({"map10": numbers.value, "baseline_map10": numbers.baseline} if numbers else {}), **outcome}
    _append_history(settings, kind, event)
    return {"kind": kind, "active": name, "previous": current or BASE, "changed": True, **event}


def _switch(settings: Settings, kind: str, target: str | None, *, library: Library | None,
            on_progress: Callable[[int, int], None] | None) -> dict:
    if kind == "reranker":
        folder = root(settings, kind)
        folder.mkdir(parents=True, exist_ok=True)
        if target is None:
            (folder / ACTIVE).unlink(missing_ok=True)
        else:
            tmp = folder / f".{ACTIVE}.{os.getpid()}.tmp"
            tmp.write_text(target + "\n")
            os.replace(tmp, folder / ACTIVE)
        return {"model": str(current_reranker(settings))}
    own = library is None
    library = library or Library(settings)
    try:
        path = None if target is None else model_path(settings, kind, target)
        # one in data/embedders/ is named (vectors.json then survives moving the checkout); a registered one by path
        model = (settings.embedding_model if path is None
                 else target if path == named_embedder(target) else str(path.resolve()))
        done = reembed(library, model, target, on_progress=on_progress)
    finally:
        if own:
            library.close()
    return {"model": model, "collection": done["collection"], "chunks": done["chunks"],
            "seconds": done["seconds"]}


def _stack(settings: Settings, kind: str) -> list[str]:
    """The activation stack replayed from the history: activate pushes, rollback pops."""
    stack: list[str] = []
    for event in history(settings, kind):
        if event.get("action") == "activate":
            if not stack:
                stack.append(event.get("previous") or BASE)
            stack.append(event["name"])
        elif event.get("action") == "rollback" and len(stack) > 1:
            stack.pop()
    return stack


def rollback(settings: Settings, kind: str, *, library: Library | None = None,
             on_progress: Callable[[int, int], None] | None = None) -> dict:
    """Return to the model active before the current one (the gate does not apply: it was in service before).
    For embedders this re-embeds the library again."""
    stack = _stack(settings, kind)
    if len(stack) < 2:
        raise RetrieverError(f"nothing to roll back to: no earlier {kind} activation in the history")
    current, previous = stack[-1], stack[-2]
    if previous != BASE:
        check_model(model_path(settings, kind, previous), kind)
    outcome = _switch(settings, kind, None if previous == BASE else previous, library=library,
                      on_progress=on_progress)
    _append_history(settings, kind, {"action": "rollback", "name": previous, "previous": current, **outcome})
    return {"kind": kind, "active": previous, "previous": current, **outcome}


TWIN_COPIED = ("catalog.sqlite3", "bm25", "files", "chroma", "vectors.json")  # the library, not models or runs


def twin_library(frozen: Path, embedder: Path, name: str, home: Path,
                 on_progress: Callable[[int, int], None] | None = None) -> tuple[Path, dict]:
    """`home`: a copy of the library in the `frozen` home with `embedder` registered as `name` and activated there
    (every chunk re-embedded, as `comply retrievers activate embedder` does); the frozen home is not changed.
    Reused when it already serves that embedder. Returns the home and what the activation did ({} if reused)."""
    settings = Settings(home=home)
    if (home.is_dir() and active(settings, "embedder") == name
            and Catalog(settings.catalog_path).count_chunks()):  # not Library: Chroma would hold files deleted below
        if read_card(home / "retrievers" / "embedder" / name) == read_card(Path(embedder)):
            return home, {}
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True)
    for part in TWIN_COPIED:
        source = Path(frozen) / part
        if source.is_dir():
            shutil.copytree(source, home / part)
        elif source.is_file():
            shutil.copy2(source, home / part)
    register(settings, "embedder", Path(embedder), name)
    reasons, _ = gate(settings, "embedder", name)
    out = activate(settings, "embedder", name, force=True, on_progress=on_progress)
    return home, {"seconds": out["seconds"], "chunks": out["chunks"], "gate": reasons or "passed"}
