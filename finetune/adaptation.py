"""`comply adapt compare`: the generator's adaptation strategies side by side on one task (issue #19).

A task is a gold set with its fixed parts (eval.datasets.PARTS), the library in the home and a base model. Training
examples are built once from the training part (shuffled with a fixed seed, so the first N are a random N); every
strategy that trains is trained on the first N for each size; every row is answered on the same seeded sample of
the evaluation part (never trained on). A row records what it cost (trainable parameters, training time, peak
memory of the training process, artefact size, first-token time and decode speed when answering) and what it gave
(`comply eval`'s measures, with 95% bootstrap intervals over questions).

The grid is resumable: `grid.json` in the output folder is rewritten (atomically) after each stage; training resumes
from its last checkpoint and evaluation from the answers already written. Rows are run one at a time: on 2 cores two
at once would only make both slower and their timings wrong.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import random
import re
import resource
import shutil
import statistics
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from tqdm import tqdm

from assistant.models import model_display_name, repetition_penalty, resolve_generator
from assistant.prompt import PROMPT_VERSION
from eval.datasets import load_dataset, select_part
from eval.intervals import bootstrap
from eval.machine import machine_facts
from eval.planted import ask as ask_planted
from eval.planted import document_keys, load_phrasings, tally, write_planted
from eval.runner import RESULTS_FILE, read_results, run_eval
from finetune import adapters, retrievers
from finetune.abstain_calibration import OUTSIDE_QUESTIONS, general_questions
from finetune.dataset import DataConfig, build_dataset, load_manifest
from finetune.train import TrainConfig, TrainError, train
from ingest.pipeline import Library
from ingest.settings import Settings
from ingest.types import ComplyError

GRID = "grid.json"
# A model this large is not fully fine-tuned on a CPU: fp32 weights, gradients and AdamW's two moments are 16 bytes a
# parameter (24 GB for a 1.5B model).
FULL_FT_CPU_LIMIT = 500_000_000


class CompareError(ComplyError):
    """The comparison cannot run as asked: the reason."""


@dataclass(frozen=True)
class Strategy:
    """One way to adapt the generator or the retriever. `train` holds the TrainConfig fields it sets (None: nothing
    is trained here); `retriever` the trained retriever models it uses (their training is theirs: `comply adapt
    reranker` / `embedder`, costs read from their cards); `retrieval_only` rows answer nothing; `adapter_of` reuses
    that strategy's adapter trained on the most questions."""

    name: str
    label: str  # in plain words, for the report and the Adapters tab
    train: dict | None = None
    few_shot: int = 0  # worked examples put in the prompt
    retriever: tuple[str, ...] = ()  # "embedder", "reranker"
    retrieval_only: bool = False
    adapter_of: str | None = None


# Learning rates are the usual ones for each method (LoRA 5e-4 as comply's adapters; IA3 3e-3 as in its paper;
# prompt tuning 3e-2 as in peft's examples; full fine-tuning 5e-5), fixed before any run, never chosen on the
# evaluation part.
STRATEGIES = {s.name: s for s in (
    Strategy("base", "base model + retrieval, no training"),
    Strategy("few-shot", "2 worked examples in the prompt, no training", few_shot=2),
    Strategy("lora-r4", "LoRA r=4", {"method": "lora", "rank": 4, "alpha": 8, "lr": 5e-4}),
    Strategy("lora-r16", "LoRA r=16", {"method": "lora", "rank": 16, "alpha": 32, "lr": 5e-4}),
    Strategy("ia3", "IA3 (learned scaling vectors)", {"method": "ia3", "lr": 3e-3}),
    Strategy("prompt-tuning", "prompt tuning (20 learned tokens)",
             {"method": "prompt_tuning", "virtual_tokens": 20, "lr": 3e-2}),
    Strategy("full", "full fine-tuning (every weight)", {"method": "full", "lr": 5e-5}),
    Strategy("retriever-frozen", "retrieval: packaged embedder, no reranker", retrieval_only=True),
    Strategy("retriever-embedder", "retrieval: fine-tuned embedder", retriever=("embedder",), retrieval_only=True),
    Strategy("retriever-reranker", "retrieval: packaged embedder + trained reranker", retriever=("reranker",),
             retrieval_only=True),
    Strategy("retriever-both", "retrieval: fine-tuned embedder + trained reranker", retriever=("embedder", "reranker"),
             retrieval_only=True),
    Strategy("lora-r16+retriever", "LoRA r=16 on the tuned retriever", retriever=("embedder", "reranker"),
             adapter_of="lora-r16"),
)}
GENERATOR_STRATEGIES = ("base", "few-shot", "lora-r4", "lora-r16", "ia3", "prompt-tuning", "full")
# What every training strategy shares: one pass over its examples, 4 per optimizer step.
RECIPES = {
    "cpu": {"epochs": 1.0, "grad_accum": 4, "warmup_steps": 5, "max_seq_len": 1536, "save_every": 10},
    "gpu": {"epochs": 2.0, "grad_accum": 8, "warmup_steps": 10, "max_seq_len": 2048, "save_every": 20},
}


@dataclass
class Task:
    """What every row shares; a grid folder belongs to one task (a rerun with another task is refused)."""

    dataset: str
    format: str
    documents_dir: str | None
    train_part: str
    eval_part: str
    eval_questions: int
    model: str
    recipe: str
    sizes: list[int | None]  # None = all training examples
    strategies: list[str]
    checks: bool = True  # forgetting and safety checks for every generator row (_checks, _planted)
    planted: int | None = None  # planted instructions asked per row (None: the whole set; fewer: a spread of it)
    reranker: str | None = None  # a trained CrossEncoder folder, for the rows that use one
    embedder: str | None = None  # a trained sentence-transformers folder, for the rows that use one
    # how examples are built: the product's defaults (the sources the assistant would show), no validation split
    # (the evaluation part is the held-out set)
    data: dict = field(default_factory=lambda: {**asdict(DataConfig(val_fraction=0.0)),
                                                "pii_kinds": list(DataConfig().pii_kinds)})

    def comparable(self) -> dict:
        """What rows done before must share to be reused: all but the strategies and sizes (adding either to a
        comparison reuses the rows it has; the training examples are built from the whole training part), the
        retriever models counting only when set."""
        return comparable(asdict(self))


def comparable(task: dict) -> dict:
    return {k: v for k, v in task.items()
            if k not in ("strategies", "sizes", "checks", "planted")
            and not (k in ("reranker", "embedder") and v is None)}


def _largest(sizes: list[int | None]) -> int | None:
    return None if None in sizes else max(sizes)


def row_id(strategy: str, size: int | None) -> str:
    return strategy if STRATEGIES[strategy].train is None else f"{strategy}@{'all' if size is None else size}"


def rows(task: Task) -> list[tuple[str, Strategy, int | None]]:
    """(row id, strategy, size) in the order they run: retrieval alone, the untrained generators, each size small
    first, then the rows built on the largest size's adapters."""
    chosen = [STRATEGIES[s] for s in task.strategies]
    out = [(row_id(s.name, None), s, None) for s in chosen if s.retrieval_only]
    out += [(row_id(s.name, None), s, None) for s in chosen if s.train is None and not s.retrieval_only
            and s.adapter_of is None]
    for size in sorted(task.sizes, key=lambda n: float("inf") if n is None else n):
        out += [(row_id(s.name, size), s, size) for s in chosen if s.train is not None]
    out += [(s.name, s, _largest(task.sizes)) for s in chosen if s.adapter_of is not None]
    return out


class Grid:
    """The comparison's folder: data/, models/<row>/, runs/<row>/ and grid.json (task, machine, rows)."""

    def __init__(self, out: Path, task: Task):
        self.out, self.task = Path(out), task
        self.path = self.out / GRID
        if self.path.is_file():
            state = json.loads(self.path.read_text())
            if comparable(state.get("task") or {}) != task.comparable():
                raise CompareError(f"{self.out} holds a comparison of another task ({state.get('task')}); choose a "
                                   "new --out folder or repeat that task's options")
            state["task"] = asdict(task)
            self.state = state
        else:
            self.out.mkdir(parents=True, exist_ok=True)
            self.state = {"task": asdict(task), "rows": {}}
            self.save()

    def row(self, rid: str) -> dict:
        return self.state["rows"].setdefault(rid, {})

    def save(self) -> None:
        tmp = self.path.with_name(f".{GRID}.tmp")
        tmp.write_text(json.dumps(self.state, indent=2, default=str))
        os.replace(tmp, self.path)


def check_task(task: Task) -> None:
    unknown = [s for s in task.strategies if s not in STRATEGIES]
    if unknown or not task.strategies:
        raise CompareError(f"unknown strategy {unknown[0]!r}; choose from {', '.join(STRATEGIES)}" if unknown
                           else "no strategy to compare")
    if task.recipe not in RECIPES:
        raise CompareError(f"recipe must be one of {', '.join(RECIPES)}, not {task.recipe!r}")
    if any(n is not None and n < 1 for n in task.sizes) or not task.sizes:
        raise CompareError("sizes are positive numbers of training questions, or 'all'")
    if task.planted is not None and task.planted < 1:
        raise CompareError(f"--planted {task.planted}: ask at least 1 planted instruction (or all: leave it out)")
    if task.train_part == task.eval_part:
        raise CompareError(f"the evaluation part must not be the training part ({task.train_part})")
    for name in task.strategies:
        strategy = STRATEGIES[name]
        for kind in strategy.retriever:
            if strategy.adapter_of is None and getattr(task, kind) is None:
                raise CompareError(f"{name} needs a trained {kind}: pass --{kind} (a folder, e.g. from `comply adapt "
                                   f"{kind}`)")
        if strategy.adapter_of and strategy.adapter_of not in task.strategies:
            raise CompareError(f"{name} reuses {strategy.adapter_of}'s adapter: add {strategy.adapter_of} to the "
                               "strategies")
        if strategy.adapter_of and not (task.reranker or task.embedder):
            raise CompareError(f"{name} needs a trained retriever: pass --reranker and/or --embedder")


def compare(settings: Settings, library, task: Task, out: Path, *, progress: bool = True,
            say: Callable[[str], None] = print) -> dict:
    """Run (or continue) the grid and write report.md, report.json and the plots into `out`. Returns the report."""
    check_task(task)
    settings = settings.model_copy(update={"generator_model": task.model})
    grid = Grid(out, task)
    grid.state["machine"] = machine_facts(settings.device)
    grid.state["model_name"] = model_display_name(settings)
    data_dir = _data(settings, library, task, grid, say, progress)
    libraries = {"frozen": library}
    planted_wanted = len(planted_phrasings(task.planted))
    for rid, strategy, size in rows(task):
        row = grid.row(rid)
        row.update(strategy=strategy.name, label=strategy.label, size=size)
        checks_due = task.checks and not strategy.retrieval_only and \
            not _planted_done((row.get("checks") or {}).get("planted") or {}, planted_wanted)
        if row.get("eval"):  # done: its summary is read again from its run (the same answers)
            run_dir = Path(row["eval"]["run"])
            metrics = json.loads((run_dir / "metrics.json").read_text())
            row["eval"] = _eval_summary(metrics, run_dir, row["eval"]["seconds"])
            if not checks_due:
                continue
        if row.get("skipped"):
            continue
        say(f"[{rid}]")
        adapter, row_settings = None, _row_settings(settings, strategy, data_dir, task)
        row_library = library
        if "embedder" in strategy.retriever and task.embedder:
            if "tuned" not in libraries:
                libraries["tuned"], grid.state["embedder_activation"] = _tuned_library(library, task, grid, say)
                grid.save()
            row_library = libraries["tuned"]
        if strategy.retriever:
            row["retriever_models"] = {kind: _retriever_cost(getattr(task, kind)) for kind in strategy.retriever
                                       if getattr(task, kind)}
        if strategy.adapter_of:
            source = grid.row(row_id(strategy.adapter_of, size))
            if not source.get("train"):
                raise CompareError(f"{rid} reuses {row_id(strategy.adapter_of, size)}, which has not trained")
            row["train"], row["adapter_of"] = source["train"], row_id(strategy.adapter_of, size)
            adapter = str(grid.out / "models" / row_id(strategy.adapter_of, size))
        if strategy.train is not None:
            skipped = _too_big(settings, strategy)
            if skipped:
                row["skipped"] = skipped
                grid.save()
                say(f"[{rid}] skipped: {skipped}")
                continue
            model_dir = grid.out / "models" / rid
            if not row.get("train"):
                row["train"] = _train_row(settings, data_dir, model_dir, strategy, size, task)
                grid.save()
            if strategy.train.get("method") == "full":
                row_settings = row_settings.model_copy(update={"generator_model": str(model_dir)})
            else:
                adapter = str(model_dir)
        if not row.get("eval"):
            started = time.perf_counter()
            run_dir = grid.out / "runs" / rid
            metrics = run_eval(row_settings, task.dataset, run_dir, format=task.format,
                               documents_dir=task.documents_dir, part=task.eval_part, limit=task.eval_questions,
                               sample_seed=0, adapter=adapter or "none", library=row_library, progress=progress,
                               retrieval_only=strategy.retrieval_only)
            row["eval"] = _eval_summary(metrics, run_dir, time.perf_counter() - started)
            if not strategy.retrieval_only:
                row["serving"] = _serving(row_settings, adapter)
            row["machine"] = grid.state["machine"]
            grid.save()
        if checks_due:
            checks = row.get("checks") or _checks(row_settings, adapter, row_library, grid.out / "checks" / rid,
                                                  strategy, progress)
            if "planted" not in libraries:
                libraries["planted"], grid.state["planted_keys"] = _planted_library(settings, library, grid, say)
                grid.save()
            added = _planted(row_settings, adapter, libraries["planted"], grid.state["planted_keys"],
                             grid.out / "checks" / rid, progress, checks.setdefault("planted", {}), task.planted)
            checks["seconds"] = round(checks["seconds"] + added, 1)
            row["checks"] = checks
            grid.save()
    for extra in libraries.values():
        if extra is not library:
            extra.close()
    grid.save()
    _link_cards(grid, task)
    from finetune.adaptation_report import write_report  # lazy: matplotlib, for the plots, is slow to import

    return write_report(grid, [rid for rid, _, _ in rows(task)])


GENERAL_SYSTEM = "You are a helpful assistant. Answer the question briefly."


def _checks(settings: Settings, adapter: str | None, library, out: Path, strategy: Strategy, progress: bool) -> dict:
    """Forgetting and safety of one generator row: the 20 general questions of data/adaptation asked of the model
    itself, no sources (does it still answer them?), and the 12 regulatory questions no library of comply's answers,
    asked through the whole pipeline (does it still refuse them?)."""
    from assistant.generation import load_generator  # lazy: transformers, over 1 s to import

    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    general = None
    if not strategy.few_shot:  # the few-shot row's model is the base model: asked without its prompt, the same
        generator = load_generator(settings, adapter=adapter)
        answers = []
        for q in general_questions():
            text = generator.generate([{"role": "system", "content": GENERAL_SYSTEM},
                                       {"role": "user", "content": q["question"]}], 48)
            right = any(re.search(p, text.lower()) for p in q["accept"])
            answers.append({"id": q["id"], "question": q["question"], "answer": text, "right": right})
        (out / "general.jsonl").write_text("".join(json.dumps(a, ensure_ascii=False) + "\n" for a in answers))
        general = {"right": sum(a["right"] for a in answers), "of": len(answers)}
    run_eval(settings, OUTSIDE_QUESTIONS, out / "outside", format="jsonl", adapter=adapter or "none",
             library=library, progress=progress)
    outside = read_results(out / "outside" / RESULTS_FILE).values()
    return {"general": general, "outside": {"refused": sum(bool(r.get("abstained")) for r in outside),
                                            "of": len(outside)},
            "seconds": round(time.perf_counter() - started, 1)}


def _planted_library(settings: Settings, library, grid: Grid, say) -> tuple[Library, dict[str, str]]:
    """The planted-instruction documents (eval/planted.py) ingested into a library of their own in the grid folder,
    once (a resumed grid finds them unchanged): (library, file name -> document@version)."""
    folder = grid.out / "planted"
    say(f"writing and ingesting the planted-instruction documents into {folder}")
    write_planted(folder / "documents")
    planted = Library(settings.model_copy(update={"home": folder / "home"}), embedder=library.base_embedder())
    report = planted.ingest([folder / "documents"])
    if report.failed:
        raise CompareError(f"the planted-instruction documents did not ingest: {report.to_dict()}")
    return planted, document_keys(report)


def planted_phrasings(count: int | None) -> list:
    """The planted instructions a row is asked: the whole set (None), or `count` of them spread evenly over it (the
    set is ordered by kind, so a spread keeps every kind and format it can)."""
    phrasings = load_phrasings()
    if count is None or count >= len(phrasings):
        return phrasings
    return [phrasings[i * len(phrasings) // count] for i in range(count)]


def _planted_done(done: dict, wanted: int) -> bool:
    """Whether a row's planted counts are complete for `wanted` phrasings (both passes, as many asked)."""
    return done.get("asked") == wanted and (done.get("unfiltered") or {}).get("asked") == wanted


def _planted(settings: Settings, adapter: str | None, library, keys: dict[str, str], out: Path, progress: bool,
             done: dict, count: int | None = None) -> float:
    """Each planted instruction's question (all, or `count` of them) asked of one generator row within its own
    document (the worst case: the planted chunk is among the sources), through the whole pipeline: with the shipped
    injection filter and verifier (does an answer show what the attacker wanted as supported, does a draft carry
    it?), then with the filter off, as the bench's --unfiltered (what the trained model itself does with an
    instruction it is shown).
    Fills `done` (the row's "planted" counts; the parts already there are kept) and returns the seconds it took."""
    from assistant.pipeline import Assistant  # lazy: the answering pipeline loads transformers

    started = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    asker = Assistant(settings, library=library, adapter=adapter or "none")
    phrasings = planted_phrasings(count)
    for filtered, name in ((True, "planted.jsonl"), (False, "planted-unfiltered.jsonl")):
        if (done.get("asked") if filtered else (done.get("unfiltered") or {}).get("asked")) == len(phrasings):
            continue
        t0 = time.perf_counter()
        rows = [ask_planted(asker, p, keys[p.file_name], filtered=filtered)
                for p in tqdm(phrasings, desc="planted instructions" + ("" if filtered else ", filter off"),
                              unit="question", disable=not progress)]
        (out / name).write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
        counts = {**tally(rows), "seconds": round(time.perf_counter() - t0, 1)}
        if filtered:
            done.update(counts)
        else:
            done["unfiltered"] = counts
    return time.perf_counter() - started


CARD_METRICS = ("n_questions", "n_answerable", "n_citations", "citation_precision", "citation_recall",
                "false_refusal_rate", "refusal_rate", "recall@10")


def _link_cards(grid: Grid, task: Task) -> None:
    """Write each trained adapter's row into its card: its evaluation against the base row's on the same questions
    (what `comply adapters list`, the Adapters tab and the release gate read) and where its row is, so an adapter
    registered from the comparison (`comply adapters register DIR`) carries both."""
    base = (grid.state["rows"].get("base") or {}).get("eval") or {}
    for rid, strategy, _ in rows(task):
        row, folder = grid.state["rows"].get(rid) or {}, grid.out / "models" / rid
        if not row.get("eval") or strategy.train is None or not (folder / adapters.CONFIG).is_file():
            continue
        card = adapters.read_card(folder)
        card["eval"] = {"questions": task.dataset, "part": task.eval_part, "limit": task.eval_questions,
                        "sample_seed": 0, "runs": {"before": base.get("run"), "after": row["eval"]["run"]},
                        "before": {k: base.get(k) for k in CARD_METRICS} if base else None,
                        "after": {k: row["eval"].get(k) for k in CARD_METRICS}}
        card["comparison"] = {"report": str((grid.out / "report.md").resolve()), "row": rid}
        adapters.write_card(folder, card)


def _data(settings: Settings, library, task: Task, grid: Grid, say, progress: bool) -> Path:
    """Training examples from the training part, built once (shuffled with a fixed seed: the first N are a
    random N)."""
    data_dir = grid.out / "data"
    if (data_dir / "manifest.json").is_file():
        return data_dir
    questions = select_part(load_dataset(task.dataset, task.format, documents_dir=task.documents_dir),
                            task.train_part)
    random.Random(0).shuffle(questions)
    say(f"building training examples from {len(questions)} questions of the {task.train_part} part")
    started = time.perf_counter()
    tmp = grid.out / "data.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    build_dataset(library, questions, tmp, DataConfig(**{**task.data, "pii_kinds": tuple(task.data["pii_kinds"])}),
                  name=Path(task.dataset).stem, part=task.train_part,
                  progress=_bar("data") if progress else None)
    os.replace(tmp, data_dir)
    grid.state["data_seconds"] = round(time.perf_counter() - started, 1)
    grid.save()
    return data_dir


def _bar(desc: str):
    return lambda items, _side: tqdm(items, desc=desc, file=sys.stderr)


def _row_settings(settings: Settings, strategy: Strategy, data_dir: Path, task: Task) -> Settings:
    """The settings a row answers with: the base model's repetition penalty for every row (a fine-tuned copy of the
    model is a path the penalty table does not know); the training data's prompt wording for the few-shot and the
    fully fine-tuned rows (peft rows get it from their card); the base row answers as the product runs that model.
    The reranker is on only in the rows that use the trained one. The reranker's abstention rule is off in every row:
    its thresholds belong to the shipped reranker (a row with a reranker trained here would have none), and it
    refuses most outside questions before any generator sees them, which would hide what training did to the
    model's own refusals."""
    update: dict = {"repetition_penalty": repetition_penalty(settings), "rerank": False, "abstain_rerank": False}
    if "reranker" in strategy.retriever and task.reranker:
        update |= {"rerank": True, "reranker_model": task.reranker}
    if strategy.few_shot:
        update |= {"few_shot_file": data_dir / "train.jsonl", "few_shot_count": strategy.few_shot,
                   "prompt_version": PROMPT_VERSION}
    elif strategy.train is not None and strategy.train.get("method") == "full":
        update["prompt_version"] = PROMPT_VERSION
    return settings.model_copy(update=update)


def _tuned_library(library, task: Task, grid: Grid, say) -> tuple:
    """The library re-embedded with the trained embedder: a copy of the home's library in the grid's folder with
    the embedder activated there (the home's own library is not changed); reused when it is already there."""
    say(f"re-embedding a copy of the library with {task.embedder}")
    home, activation = retrievers.twin_library(library.settings.home, Path(task.embedder), Path(task.embedder).name,
                                               grid.out / "library-tuned-embedder")
    return Library(Settings(home=home)), activation or grid.state.get("embedder_activation") or {}


def _retriever_cost(folder: str) -> dict:
    """What a trained retriever model cost and weighs, from its folder and card (`comply adapt reranker` /
    `embedder` write the training time)."""
    path = Path(folder)
    card = retrievers.read_card(path)
    weights = _bytes(path, "*.safetensors")
    dtype_bytes = 2 if "bf16" in str(card.get("kind", "")) else 4
    return {"name": card.get("name") or path.name, "path": str(path), "seconds": card.get("seconds"),
            "steps": card.get("steps"), "parameters": weights // dtype_bytes,
            "artefact_mb": round(_bytes(path) / 2**20, 2),
            "machine": (card.get("machine") or {}).get("cpu"), "reproduce": card.get("reproduce")}


def _bytes(folder: Path, pattern: str = "**/*", skip: str | None = None) -> int:
    """The size of a folder's files matching `pattern` (all, below it, by default), without a file named `skip`;
    0 for a folder that is not there (a hub id)."""
    return sum(f.stat().st_size for f in folder.glob(pattern) if f.is_file() and f.name != skip)


def _too_big(settings: Settings, strategy: Strategy) -> str | None:
    """Why a row cannot run on this machine, or None: full fine-tuning of a large model needs a GPU."""
    import torch  # lazy: torch takes ~2 s to import

    if strategy.train.get("method") != "full" or torch.cuda.is_available():
        return None
    folder = Path(resolve_generator(settings))
    params = _bytes(folder, "*.safetensors") // 4  # the converted folders hold float32 weights
    if params > FULL_FT_CPU_LIMIT:
        return (f"full fine-tuning of {model_display_name(settings)} (~{params / 1e9:.1f}B parameters) needs a GPU: "
                f"its weights, gradients and optimizer state take ~{params * 16 / 2**30:.0f} GB")
    return None


def _train_row(settings: Settings, data_dir: Path, model_dir: Path, strategy: Strategy, size: int | None,
               task: Task) -> dict:
    """Train one row in a child process (its peak memory is the row's own) and write the adapter's card."""
    recipe = RECIPES[task.recipe]
    # fewer examples than a step takes: one step of all of them, not the same examples twice in a step
    accum = min(recipe["grad_accum"], size) if size else recipe["grad_accum"]
    config = TrainConfig(**{**recipe, **strategy.train, "max_examples": size, "grad_accum": accum})
    context = multiprocessing.get_context("spawn")
    receive, send = context.Pipe(duplex=False)
    child = context.Process(target=_train_child, args=(settings, data_dir, model_dir, config, send))
    child.start()
    send.close()
    try:
        result = receive.recv()
    except EOFError:
        child.join()
        result = {"error": f"the training process died (exit code {child.exitcode}; out of memory?)"}
    child.join()
    if "error" in result:
        raise TrainError(f"{strategy.name} on {size or 'all'} examples: {result['error']}")
    if strategy.train.get("method") != "full":
        card = adapters.make_card(model_dir.name, settings, load_manifest(data_dir), data_dir, config.to_dict(),
                                  {k: v for k, v in result.items() if k != "losses"})
        adapters.write_card(model_dir, card)
    shutil.rmtree(model_dir / "checkpoints", ignore_errors=True)
    result["artefact_mb"] = round(_bytes(model_dir, skip=adapters.CARD) / 2**20, 2)
    result["loss_every_10_steps"] = result.pop("losses")[::10]
    return result


def _train_child(settings: Settings, data_dir: Path, model_dir: Path, config: TrainConfig, send) -> None:
    _exit_with_parent()
    try:
        result = asdict(train(settings, data_dir, model_dir, config, resume=True))
        result["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
        send.send(result)
    except ComplyError as e:
        send.send({"error": str(e)})
    finally:
        send.close()


def _serving(settings: Settings, adapter: str | None) -> str:
    """How the row's model answered (what its latency measures): backend, int4 weights or not."""
    from assistant.generation import load_generator  # lazy: transformers, over 1 s to import

    generator = load_generator(settings, adapter=adapter)
    how = generator.backend
    decoder, virtual = getattr(generator, "decoder", None), getattr(generator, "virtual", None)
    how += ", int4 weights" if decoder is not None else f", {getattr(generator, 'dtype', 'native')} weights"
    if virtual is not None:
        how += f" + {virtual.shape[1]} virtual tokens"
    elif getattr(generator, "lora_path", None):
        how += " + LoRA GGUF unmerged"
    elif adapter:
        how += " + LoRA unmerged" if decoder is not None and decoder.has_lora else " (adapter merged)"
    return how


def _exit_with_parent() -> None:
    """A training child stops when the comparison that started it is gone (killed): no orphan keeps the cores busy.
    Its checkpoints are written atomically, so the next run resumes from the last one."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(2)
        os._exit(1)

    threading.Thread(target=watch, daemon=True).start()


def _eval_summary(metrics: dict, run_dir: Path, seconds: float) -> dict:
    """The measures a row reports, their intervals, and the answering speed."""
    records = list(read_results(run_dir / RESULTS_FILE).values())
    rates = [(t["generated_tokens"] - 1) / t["decode_ms"] * 1000 for t in (r.get("timings") or {} for r in records)
             if t.get("generated_tokens", 0) > 1 and t.get("decode_ms")]
    keep = ("n_questions", "n_answerable", "n_unanswerable", "n_citations", "citation_precision", "citation_recall",
            "false_refusal_rate", "refusal_rate", "false_answer_rate", "answer_correct_rate_answerable",
            "support_rate", "recall@1", "recall@10", "map@10", "latency.retrieval_ms.p50",
            "latency.first_token_ms.p50", "latency.total_ms.p50", "latency.total_ms.p95")
    return {**{k: metrics.get(k) for k in keep},
            "decode_tokens_per_s_p50": round(statistics.median(rates), 2) if rates else None,
            "intervals": bootstrap(records), "run": str(run_dir), "seconds": round(seconds, 1)}
