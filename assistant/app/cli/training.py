"""`comply finetune ...` and `comply adapters ...` commands (registered on the main app by assistant.app.cli.main)."""

from __future__ import annotations

import shlex
import shutil
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer
from tqdm import tqdm

from assistant.app.audit import AuditError
from assistant.app.cli.common import JsonOpt, acting, app, cli_admin, emit, fail, open_services, settings
from eval.datasets import DatasetError, load_dataset, select_part

finetune_app = typer.Typer(help="Build grounded training data, train a LoRA adapter, evaluate it.",
                           no_args_is_help=True)
adapters_app = typer.Typer(help="The adapter registry: list, activate (with a release gate), roll back.",
                           no_args_is_help=True)
app.add_typer(finetune_app, name="finetune")
app.add_typer(adapters_app, name="adapters")


def _bar(items, desc: str):

    return tqdm(items, desc=desc, unit="q", file=sys.stderr)


@finetune_app.command("build-data")
def build_data(
    dataset: Annotated[Path, typer.Option(help="Gold questions: the project's JSONL or an ObliQA JSON file.")],
    format: Annotated[str, typer.Option(help="auto, jsonl or obliqa.")] = "auto",
    documents_dir: Annotated[Path | None, typer.Option(help="ObliQA: StructuredRegulatoryDocuments/ to resolve "
                                                            "gold passages.")] = None,
    out: Annotated[Path | None, typer.Option(help="Output folder (default <home>/finetune/<dataset name>).")] = None,
    limit: Annotated[int | None, typer.Option(help="Use only the first N questions.")] = None,
    p_abstain: Annotated[float, typer.Option(help="Share of examples whose gold source is left out (on top of "
                                                  "those whose gold the retriever missed).")] = 0.0,
    val_fraction: Annotated[float, typer.Option(help="Share of question ids held out for validation.")] = 0.2,
    k: Annotated[int | None, typer.Option(help="Sources per prompt (default: the top_k setting).")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the split, the abstention draw and the source order.")] = 0,
    layout: Annotated[str, typer.Option(help="prompt: the top k retrieved, exactly as the assistant's prompt; "
                                             "raft: gold plus distractors, arranged by --order.")] = "prompt",
    order: Annotated[str, typer.Option(help="With --layout raft: retrieval (rank order) or shuffled.")] = "retrieval",
    part: Annotated[str | None, typer.Option(help="Only one fixed part of the set: train, tune or report (as comply "
                                                  "eval --part), so the parts an adapter is tuned and reported on "
                                                  "are never trained on.")] = None,
    as_json: JsonOpt = False,
):
    """Build RAFT examples (train.jsonl, val.jsonl, val_questions.jsonl, manifest.json) from the loaded library."""
    from finetune.dataset import (  # lazy: the training code takes ~0.5 s to import
        DataConfig,
        DataError,
        build_dataset,
    )
    from ingest.pipeline import Library  # lazy: the library's code takes ~0.3 s to import

    try:
        questions = load_dataset(dataset, format, documents_dir=documents_dir)
        if part:
            questions = select_part(questions, part)
    except (DatasetError, ValueError) as e:
        fail(str(e), as_json)
    if limit:
        questions = questions[:limit]
    s = settings()
    out = out or s.home / "finetune" / (dataset.stem + (f"-{part}" if part else ""))
    library = Library(s)
    if not library.catalog.count_chunks():
        fail(f"the library in {s.home} is empty: ingest the documents the questions are about first", as_json)
    try:
        config = DataConfig(k=k, p_abstain=p_abstain, val_fraction=val_fraction, seed=seed, layout=layout,
                            order=order)
    except DataError as e:
        fail(str(e), as_json)
    manifest = build_dataset(library, questions, out, config, name=dataset.stem, part=part,
                             progress=None if as_json else _bar)
    library.close()
    manifest["out"] = str(out)
    emit(manifest, as_json, f"{manifest['train']['examples']} train / {manifest['val']['examples']} validation "
                            f"examples in {out} (sha256 {manifest['sha256'][:12]}, PII replaced: "
                            f"{manifest['pii_replacements'] or 'none'})")


@finetune_app.command("generate-questions")
def generate_questions(
    out: Annotated[Path, typer.Option(help="Gold JSONL file to write.")],
    limit: Annotated[int | None, typer.Option(help="At most this many chunks are tried.")] = 50,
    seed: Annotated[int, typer.Option(help="Seed of the chunk sample.")] = 0,
    as_json: JsonOpt = False,
):
    """Write gold questions for your own corpus with the configured generator (keeps those that retrieve their
    chunk); then run build-data on the file."""
    from finetune.questions import generate_gold  # lazy: the training code takes ~0.5 s to import
    from ingest.pipeline import Library  # lazy: the library's code takes ~0.3 s to import

    library = Library(settings())
    report = generate_gold(library, out, limit=limit, seed=seed, progress=not as_json)
    library.close()
    emit(report, as_json, f"{report['kept']} of {report['tried']} generated questions kept in {out}")


@finetune_app.command("train")
def train_cmd(
    data: Annotated[Path, typer.Option(help="Folder written by build-data.")],
    name: Annotated[str, typer.Option(help="Adapter name in the registry.")],
    steps: Annotated[int | None, typer.Option(help="Optimizer steps (overrides --epochs).")] = None,
    epochs: Annotated[float, typer.Option(help="Passes over the training examples.")] = 1.0,
    max_examples: Annotated[int | None, typer.Option(help="Use only the first N training examples.")] = None,
    rank: Annotated[int, typer.Option(help="LoRA rank.")] = 16,
    alpha: Annotated[int, typer.Option(help="LoRA alpha.")] = 32,
    dropout: Annotated[float, typer.Option(help="LoRA dropout.")] = 0.05,
    target_modules: Annotated[str, typer.Option(help="Comma-separated module names.")] =
        "q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj",
    lr: Annotated[float, typer.Option(help="Peak learning rate.")] = 5e-4,
    grad_accum: Annotated[int, typer.Option(help="Examples per optimizer step.")] = 4,
    max_seq_len: Annotated[int, typer.Option(help="Longer examples are skipped.")] = 1024,
    save_every: Annotated[int, typer.Option(help="Checkpoint every N steps.")] = 20,
    seed: Annotated[int, typer.Option(help="Seed.")] = 0,
    base_dtype: Annotated[str, typer.Option(help="The frozen base weights: float32 or bfloat16 (half the memory; "
                                                 "docs/finetuning.md).")] = "float32",
    resume: Annotated[bool, typer.Option("--resume", help="Continue from the last checkpoint.")] = False,
    activate_after: Annotated[bool, typer.Option("--activate", help="Activate it when done (release gate "
                                                                     "applies).")] = False,
    as_json: JsonOpt = False,
):
    """Train a LoRA adapter into the registry (<home>/adapters/NAME) and write its card."""
    from finetune import adapters  # lazy: the training code takes ~0.5 s to import; other commands need none
    from finetune.dataset import DataError, load_manifest  # lazy: the training code takes ~0.5 s to import
    from finetune.train import (  # lazy: the training code takes ~0.5 s to import
        TrainConfig,
        TrainError,
        train,
    )

    s = settings()
    config = TrainConfig(rank=rank, alpha=alpha, dropout=dropout,
                         target_modules=tuple(m.strip() for m in target_modules.split(",") if m.strip()), lr=lr,
                         epochs=epochs, max_steps=steps, grad_accum=grad_accum, max_seq_len=max_seq_len,
                         max_examples=max_examples, save_every=save_every, seed=seed, base_dtype=base_dtype)
    target = s.adapters_dir / name
    try:
        manifest = load_manifest(data)
        result = train(s, data, target, config, resume=resume, progress=not as_json)
    except (DataError, TrainError) as e:
        fail(str(e), as_json)
    training = {k: v for k, v in asdict(result).items() if k != "losses"}
    training["loss_every_10_steps"] = result.losses[::10]
    command = "comply finetune train " + " ".join(shlex.quote(a) for a in sys.argv[sys.argv.index("train") + 1:]
                                                  if a != "--resume") if "train" in sys.argv else None
    card = adapters.make_card(name, s, manifest, data, config.to_dict(), training, reproduce=command)
    adapters.write_card(target, card)

    shutil.rmtree(target / "checkpoints", ignore_errors=True)
    data_out = {"adapter": name, "path": str(target), **training}
    if activate_after:
        from assistant.app import actions_admin  # here: it loads the answering pipeline's code

        try:  # the audited action of `comply adapters activate`
            data_out["activation"] = actions_admin.activate_adapter(open_services(), cli_admin(), name)
        except (adapters.AdapterError, AuditError) as e:
            data_out["activation"] = {"refused": str(e)}
    emit(data_out, as_json, f"adapter '{name}' trained: {result.steps} steps on {result.examples} examples in "
                            f"{result.seconds:.0f}s ({result.seconds_per_step} s/step), loss {result.first_loss} -> "
                            f"{result.last_loss}; evaluate it with `comply finetune evaluate {name}`")


@finetune_app.command("evaluate")
def evaluate_cmd(
    name: Annotated[str, typer.Argument(help="Registered adapter name.")],
    questions: Annotated[Path | None, typer.Option(help="Gold JSONL (default: its data set's validation "
                                                        "questions).")] = None,
    limit: Annotated[int | None, typer.Option(help="Evaluate a fixed sample of N questions.")] = None,
    sample_seed: Annotated[int, typer.Option(help="Seed of that sample.")] = 0,
    out: Annotated[Path | None, typer.Option(help="Run folder (default <home>/eval/adapter-NAME).")] = None,
    as_json: JsonOpt = False,
):
    """Evaluate base model vs adapter on the validation questions and write the metrics into its card."""
    from eval.runner import RunError  # lazy: the evaluation runner takes ~0.4 s to import
    from finetune import adapters  # lazy: the training code takes ~0.5 s to import; other commands need none

    try:
        result = adapters.evaluate(settings(), name, questions, out, limit=limit, sample_seed=sample_seed,
                                   progress=not as_json)
    except (adapters.AdapterError, DatasetError, RunError, ValueError) as e:
        fail(str(e), as_json)
    rows = [f"{m:<30} {result['before'].get(m)!s:>8} -> {result['after'].get(m)!s:>8}"
            for m in ("cited_answer_rate_answerable", "model_cited_rate_answerable", "citation_precision",
                      "citation_recall", "refusal_rate", "false_refusal_rate")]
    emit(result, as_json, "\n".join([f"{'metric':<30} {'base':>8}    {'adapter':>8}", *rows]))


@adapters_app.command("calibrate")
def adapters_calibrate(
    name: Annotated[str, typer.Argument(help="Registered adapter name.")],
    dataset: Annotated[Path, typer.Option(help="Gold questions the adapter was neither trained nor validated on.")],
    format: Annotated[str, typer.Option(help="auto, jsonl or obliqa.")] = "auto",
    documents_dir: Annotated[Path | None, typer.Option(help="ObliQA: StructuredRegulatoryDocuments/.")] = None,
    limit: Annotated[int | None, typer.Option(help="Use a fixed sample of N questions.")] = None,
    target_precision: Annotated[float, typer.Option(help="Citation precision the kept answers must reach.")] = 0.8,
    gate_dataset: Annotated[Path | None, typer.Option(
        help="Gold questions of the corpus (not --dataset; e.g. the training questions) to fit the citation gate "
             "on, from retrieval alone.")] = None,
    gate_format: Annotated[str, typer.Option(help="Format of --gate-dataset: auto, jsonl or obliqa.")] = "auto",
    out: Annotated[Path | None, typer.Option(help="Run folder (default <home>/eval/calibrate-NAME).")] = None,
    as_json: JsonOpt = False,
):
    """Choose the adapter's answer-confidence gate (and citation gate) on held-out questions; write them into its
    card."""
    from eval.runner import RunError  # lazy: the evaluation runner takes ~0.4 s to import
    from finetune import adapters  # lazy: the training code takes ~0.5 s to import; other commands need none
    from finetune.calibrate import (  # lazy: the training code takes ~0.5 s to import
        CalibrationError,
        calibrate,
    )

    try:
        result = calibrate(settings(), name, dataset, out, format=format, documents_dir=documents_dir, limit=limit,
                           target_precision=target_precision, gate_questions=gate_dataset, gate_format=gate_format,
                           progress=not as_json)
    except (adapters.AdapterError, CalibrationError, DatasetError, RunError, ValueError) as e:
        fail(str(e), as_json)

    def pct(v):
        return "-" if v is None else f"{v:.3f}"

    emit(result, as_json,
         f"min_confidence {result['min_confidence']:.4f} (target precision {target_precision}: "
         f"{'met' if result['target_met'] else 'NOT met'}): answers {result['answered_before']} -> "
         f"{result['answered_after']}, citation precision {pct(result['precision_before'])} -> "
         f"{pct(result['precision_after'])} on {result['questions']} questions"
         + ("" if result["target_met"] else f"; no gate set (the best threshold, {result['best_threshold']:.4f}, "
                                            f"gave {pct(result['best_precision'])})")
         + ("" if not (gate := result.get("citation_gate")) else
            f"\ncitation gate {gate['threshold']:.4f} ({'met' if gate['target_met'] else 'NOT met'}): answers "
            f"{gate['answered_before']} -> {gate['answered_after']}, citation precision "
            f"{pct(gate['precision_before'])} -> {pct(gate['precision_after'])}"))


@adapters_app.command("export")
def adapters_export(
    name: Annotated[str, typer.Argument(help="Registered adapter name.")],
    dest: Annotated[Path, typer.Argument(help="Folder to write (replaced), e.g. data/adapters/NAME.")],
    fp32: Annotated[bool, typer.Option("--fp32", help="Keep fp32 LoRA weights (default: bf16, half the size).")] = False,
    as_json: JsonOpt = False,
):
    """Write an adapter as a self-contained folder to ship or share: peft files, card, README."""
    from finetune import adapters  # lazy: the training code takes ~0.5 s to import; other commands need none

    try:
        path = adapters.export(settings(), name, dest, bf16=not fp32)
    except adapters.AdapterError as e:
        fail(str(e), as_json)
    size = sum(f.stat().st_size for f in path.iterdir())
    emit({"name": name, "path": str(path), "bytes": size}, as_json, f"exported {name} to {path} ({size / 1e6:.1f} MB)")


@adapters_app.command("reduce-rank")
def adapters_reduce_rank(
    name: Annotated[str, typer.Argument(help="Registered adapter name.")],
    rank: Annotated[int, typer.Option(help="The new LoRA rank (below the adapter's).")] = 8,
    new_name: Annotated[str | None, typer.Option("--name", help="Name of the new adapter (default NAME-rRANK).")] = None,
    as_json: JsonOpt = False,
):
    """Register a smaller copy of an adapter: each LoRA update cut to RANK by SVD. Evaluate it before use."""
    from finetune import adapters  # lazy: the training code takes ~0.5 s to import; other commands need none

    try:
        path = adapters.reduce_rank(settings(), name, rank, new_name)
    except adapters.AdapterError as e:
        fail(str(e), as_json)
    reduced = adapters.read_card(path)["reduced_from"]
    emit({"name": path.name, "path": str(path), **reduced}, as_json,
         f"registered {path.name}: rank {reduced['rank']} -> {reduced['to_rank']}, update energy kept "
         f"{reduced['energy_kept_mean']:.1%} on average (lowest {reduced['energy_kept_min']:.1%}); its card has no "
         f"evaluation yet: run `comply finetune evaluate {path.name}`")


@adapters_app.command("list")
def adapters_list(as_json: JsonOpt = False):
    """The registered adapters; * marks the active one, and a damaged one says why it cannot be activated."""
    from finetune import adapters  # lazy: the training code takes ~0.5 s to import; other commands need none

    rows = [{**asdict(a), "summary": adapters.describe(Path(a.path))} for a in adapters.list_adapters(settings())]
    text = "\n".join(f"{'*' if r['active'] else ' '} {r['name']:<28} precision {r['citation_precision']!s:<6} "
                     f"{r['base_model'] or '-'}  {r['dataset'] or '-'}  {r['created'] or ''}\n    {r['summary']}"
                     + (f"\n    DAMAGED: {r['error']}" if r["error"] else "") for r in rows)
    emit(rows, as_json, text or "(no adapters; the base model answers)")


@adapters_app.command("activate")
def adapters_activate(
    name: str,
    force: Annotated[bool, typer.Option("--force", help="Skip the release gate.")] = False,
    as_json: JsonOpt = False,
):
    """Make NAME the adapter the assistant uses (refused if its validation citation precision is lower)."""
    # imported here, not at the top: it loads the answering pipeline's code (0.2 s)
    from assistant.app import actions_admin  # lazy: loads the answering and training code (~0.5 s)

    with acting(as_json):  # recorded either way, as the app's Adapters tab records it
        result = actions_admin.activate_adapter(open_services(), cli_admin(), name, force=force)
    emit(result, as_json, f"active adapter: {result['active']} (was {result['previous'] or 'none'})")


@adapters_app.command("rollback")
def adapters_rollback(as_json: JsonOpt = False):
    """Go back to the adapter that was active before (or the base model)."""
    # imported here, not at the top: it loads the answering pipeline's code (0.2 s)
    from assistant.app import actions_admin  # lazy: loads the answering and training code (~0.5 s)

    with acting(as_json):
        result = actions_admin.rollback_adapter(open_services(), cli_admin())
    emit(result, as_json, f"active adapter: {result['active'] or 'none (base model)'} (was {result['previous']})")


@adapters_app.command("register")
def adapters_register(
    path: Path,
    name: Annotated[str | None, typer.Option(help="Name in the registry (default: the folder's name).")] = None,
    as_json: JsonOpt = False,
):
    """Copy an adapter folder (peft format + card.json) into the registry (recorded as adapter.register)."""
    from assistant.app import actions_admin  # lazy: loads the answering pipeline's code (0.2 s)

    with acting(as_json):
        target = actions_admin.register_adapter(open_services(), cli_admin(), path, name)
    emit({"name": target.name, "path": str(target)}, as_json, f"registered {target.name}")


@adapters_app.command("ensure-default")
def adapters_ensure_default(as_json: JsonOpt = False):
    """Register and activate the adapter shipped in data/adapters/ when the registry is empty (idempotent; recorded
    as adapter.register and adapter.activate when it did something)."""
    from assistant.app import actions_admin  # lazy: loads the answering pipeline's code (0.2 s)
    from finetune import adapters  # lazy: loads the training code (peft, torch)

    s = settings()
    with acting(as_json):
        name = actions_admin.ensure_default_adapter(open_services(), cli_admin())
    emit({"activated": name, "active": adapters.active(s)}, as_json,
         f"activated the shipped adapter {name}" if name else f"active adapter: {adapters.active(s) or 'none'}")
