"""Fine-tuning benchmark on ObliQA dev: build RAFT data (train part >= 80%, validation >= 20% by question id), train
the default recipe, evaluate base model vs adapter on a fixed sample of the validation questions, compare.

    python -m finetune.bench --obliqa ../shared/corpora/obliqa [--home .comply-bench/obliqa] [--questions 600]
        [--eval-limit 100] [--name obliqa-raft] [--ship data/adapters/NAME [--ship-rank 8]] [--json]

The citation gate (assistant/gate.py; --no-gate skips it) is fitted on the training questions by retrieval alone
and calibrated with the confidence gate on the next --calibrate-questions dev questions, for the adapter that
ships. With --ship the adapter is cut to --ship-rank by SVD (a shipped file under 5 MB), and that cut adapter is
calibrated and evaluated again before it is exported: the numbers on a shipped card are those of its weights.

Stages are reused when their output is already there (data folder, trained adapter, evaluation runs), so an
interrupted run continues; training resumes from its last checkpoint. Prints the Markdown rows for
docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from dataclasses import asdict
from pathlib import Path

from tqdm import tqdm

from eval.bench.retrieval import ingest_obliqa
from eval.compare import compare_runs
from eval.datasets import load_obliqa
from eval.runner import run_eval
from finetune import adapters
from finetune.calibrate import calibrate
from finetune.dataset import (
    LAYOUTS,
    ORDERS,
    TARGET_FORMAT,
    DataConfig,
    DataError,
    build_dataset,
    load_manifest,
    write_eval_jsonl,
)
from finetune.train import TrainConfig, train

ROWS = (("answers with citations (answerable)", "cited_answer_rate_answerable"),
        ("... with a [n] the model wrote itself", "model_cited_rate_answerable"),
        ("citation precision", "citation_precision"), ("citation recall", "citation_recall"),
        ("abstention (answerable questions)", "false_refusal_rate"))


def markdown_rows(columns: list[tuple[str, dict]], n: int) -> str:
    """The docs/benchmarks.md table: one column of metrics per (label, metrics) run on the validation sample."""
    def cell(v):
        return "-" if v is None else f"{v:.3f}"

    lines = [f"| metric ({n} validation questions) | " + " | ".join(label for label, _ in columns) + " |",
             "| --- |" + " --- |" * len(columns)]
    lines += [f"| {label} | " + " | ".join(cell(m.get(key)) for _, m in columns) + " |" for label, key in ROWS]
    lines.append("| citations counted | " + " | ".join(str(m.get("n_citations")) for _, m in columns) + " |")
    return "\n".join(lines)


def _data_is_current(data_dir: Path, config: DataConfig) -> bool:
    """Whether data_dir holds data built with this config and the current target format (else it is rebuilt)."""
    try:
        manifest = load_manifest(data_dir)
    except DataError:
        return False
    built = manifest.get("config", {})
    wanted = {**asdict(config), "pii_kinds": list(config.pii_kinds)}
    if config.k is None:  # resolved to the settings' top_k when built
        wanted["k"] = built.get("k")
    return manifest.get("target_format") == TARGET_FORMAT and built == wanted


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--obliqa", type=Path, default=Path("../shared/corpora/obliqa"))
    parser.add_argument("--home", type=Path, default=Path(".comply-bench/obliqa"))
    parser.add_argument("--questions", type=int, default=600, help="first N dev questions used (0 = all)")
    parser.add_argument("--val-fraction", type=float, default=0.2)
    parser.add_argument("--p-abstain", type=float, default=0.0)
    parser.add_argument("--layout", choices=LAYOUTS, default="prompt",
                        help="which sources a prompt holds (see finetune.dataset.DataConfig)")
    parser.add_argument("--order", choices=ORDERS, default="retrieval",
                        help="source order with --layout raft (see finetune.dataset.DataConfig)")
    parser.add_argument("--name", default="obliqa-raft")
    parser.add_argument("--max-examples", type=int, default=None, help="training examples used (default: all)")
    parser.add_argument("--steps", type=int, default=None, help="optimizer steps (default: 1 epoch)")
    parser.add_argument("--grad-accum", type=int, default=4)
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--rank", type=int, default=16, help="LoRA rank (alpha = 2 x rank)")
    parser.add_argument("--save-every", type=int, default=10, help="checkpoint every N steps")
    parser.add_argument("--eval-limit", type=int, default=100, help="fixed sample of validation questions")
    parser.add_argument("--calibrate-questions", type=int, default=200,
                        help="dev questions after the first --questions (never trained or validated on) on which "
                             "the confidence gate is calibrated (0 = no gate)")
    parser.add_argument("--target-precision", type=float, default=0.8, help="the gates' calibration target")
    parser.add_argument("--gate", action=argparse.BooleanOptionalAction, default=True,
                        help="fit the citation gate on the training questions and calibrate it with the confidence "
                             "gate (assistant.gate)")
    parser.add_argument("--skip-eval", action="store_true")
    parser.add_argument("--strict", action=argparse.BooleanOptionalAction, default=True,
                        help="also evaluate base and adapter with strict citations (consensus_citations)")
    parser.add_argument("--ship", type=Path, default=None, help="export the adapter here (comply adapters export)")
    parser.add_argument("--ship-rank", type=int, default=8,
                        help="with --ship: first cut the LoRA rank to this by SVD (comply adapters reduce-rank) so "
                             "the shipped file stays small, then calibrate and evaluate the cut adapter again "
                             "(0 = ship it as trained)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)

    library = ingest_obliqa(args.obliqa, args.home)
    settings = library.settings
    docs = args.obliqa / "StructuredRegulatoryDocuments"
    config = DataConfig(p_abstain=args.p_abstain, val_fraction=args.val_fraction, layout=args.layout,
                        order=args.order)
    arranged = args.layout if args.layout == "prompt" else args.order
    data_dir = args.home / "finetune" / f"obliqa-dev-{args.questions or 'all'}-{arranged}-p{args.p_abstain:g}"
    questions = load_obliqa(args.obliqa / "ObliQA_dev.json", documents_dir=docs)
    if not _data_is_current(data_dir, config):
        shutil.rmtree(data_dir, ignore_errors=True)
        build_dataset(library, questions[: args.questions] if args.questions else questions, data_dir, config,
                      name="obliqa-dev", progress=lambda qs, part: tqdm(qs, desc=f"data {part}", file=sys.stderr))
    manifest = load_manifest(data_dir)

    target = settings.adapters_dir / args.name
    recipe = TrainConfig(max_steps=args.steps, max_examples=args.max_examples, grad_accum=args.grad_accum,
                         lr=args.lr, save_every=args.save_every, rank=args.rank, alpha=2 * args.rank)
    if not (target / adapters.CARD).is_file():
        result = train(settings, data_dir, target, recipe, resume=True)
        training = {k: v for k, v in asdict(result).items() if k != "losses"}
        training["loss_every_10_steps"] = result.losses[::10]
        command = (f"python -m finetune.bench --obliqa {args.obliqa} --home {args.home} --questions {args.questions} "
                   f"--p-abstain {args.p_abstain} --layout {args.layout} --order {args.order} "
                   f"--name {args.name} --grad-accum {args.grad_accum} --lr {args.lr} --rank {args.rank}"
                   + (f" --steps {args.steps}" if args.steps else "")
                   + (f" --max-examples {args.max_examples}" if args.max_examples else ""))
        card = adapters.make_card(args.name, settings, manifest, data_dir, recipe.to_dict(), training, command)
        adapters.write_card(target, card)
        shutil.rmtree(target / "checkpoints", ignore_errors=True)
    calibration_set = questions[args.questions: args.questions + args.calibrate_questions] if args.questions else []
    calibration = (write_eval_jsonl(calibration_set, data_dir / f"calibration_questions-{len(calibration_set)}.jsonl")
                   if calibration_set else None)
    gate = None  # the citation gate is fitted on the training questions (retrieval only)
    if args.gate:
        train_ids = {json.loads(line)["id"] for line in (data_dir / "train.jsonl").read_text().splitlines() if line}
        gate = write_eval_jsonl([q for q in questions if q.id in train_ids], data_dir / "train_questions.jsonl")
    cut = bool(args.ship) and 0 < args.ship_rank < args.rank
    # the citation gate is calibrated for the adapter that ships: the cut one when the rank is cut
    _calibrate(settings, args.name, calibration, len(calibration_set), args.target_precision, library,
               None if cut else gate)
    shipped = args.name
    if cut:  # cut to a smaller rank, then calibrate and evaluate again
        shipped = f"{args.name}-r{args.ship_rank}"
        if not (settings.adapters_dir / shipped / adapters.CARD).is_file():
            adapters.reduce_rank(settings, args.name, args.ship_rank, shipped)
            card = adapters.read_card(settings.adapters_dir / shipped)
            card["reproduce"] = f"{card.get('reproduce')} --ship {args.ship} --ship-rank {args.ship_rank}"
            adapters.write_card(settings.adapters_dir / shipped, card)
        _calibrate(settings, shipped, calibration, len(calibration_set), args.target_precision, library, gate)
    out = {"data": manifest, "adapter": str(target), "card": adapters.read_card(target)}
    if not args.skip_eval:
        val = data_dir / "val_questions.jsonl"
        runs = settings.eval_dir / f"adapter-{args.name}-{args.eval_limit}"
        columns, evaluation = _evaluate(settings, args.name, val, runs, args.eval_limit, args.strict, library)
        out["compare"] = compare_runs(runs / "before", runs / "after")
        if shipped != args.name:
            shipped_runs = settings.eval_dir / f"adapter-{shipped}-{args.eval_limit}"
            if not (shipped_runs / "before").exists():  # the same base-model run: resumed, not answered again
                shutil.copytree(runs / "before", shipped_runs / "before")
            more, _ = _evaluate(settings, shipped, val, shipped_runs, args.eval_limit, args.strict, library,
                                base=False, label=f"rank {args.ship_rank} (shipped)")
            columns += more
            out["shipped_card"] = adapters.read_card(settings.adapters_dir / shipped)
        out["markdown"] = markdown_rows(columns, evaluation["after"].get("n_questions") or 0)
    if args.ship:
        adapters.export(settings, shipped, args.ship)
    library.close()
    if args.json:
        print(json.dumps(out, indent=2, default=str))
    else:
        card = out["card"]
        print(f"data: {manifest['train']['examples']} train / {manifest['val']['examples']} validation examples, "
              f"sha256 {manifest['sha256'][:12]}")
        t = card.get("training") or {}
        print(f"training: {t.get('steps')} steps, {t.get('seconds')} s ({t.get('seconds_per_step')} s/step), "
              f"loss {t.get('first_loss')} -> {t.get('last_loss')}, device {t.get('device')}, bf16 {t.get('bf16')}")
        if "markdown" in out:
            print()
            print(out["markdown"])
    return 0


def _calibrate(settings, name: str, questions: Path | None, n: int, target_precision: float, library,
               gate_questions: Path | None = None) -> None:
    """Calibrate adapter `name`'s confidence gate (and fit and calibrate its citation gate on `gate_questions`) on
    the n held-out questions, unless its card already has them."""
    card = adapters.read_card(settings.adapters_dir / name)
    if questions is None or ("calibration" in card and (gate_questions is None or "citation_gate" in card)):
        return
    folder = f"calibrate-{name}-{n}" + ("-gate" if gate_questions else "")
    calibrate(settings, name, questions, settings.eval_dir / folder, format="jsonl",
              target_precision=target_precision, gate_questions=gate_questions, gate_format="jsonl", library=library)


def _evaluate(settings, name: str, val: Path, runs: Path, limit: int, strict: bool, library, *, base: bool = True,
              label: str = "with adapter") -> tuple[list[tuple[str, dict]], dict]:
    """Evaluate base model and adapter `name` on the validation sample (metrics into its card), the adapter without
    its calibrated gate when it has one, and both with strict citations. Returns the table's columns (the base
    model's only when `base`) and the card's evaluation."""
    target = settings.adapters_dir / name
    evaluation = adapters.evaluate(settings, name, val, runs, limit=limit, sample_seed=0, library=library)
    columns = [("base model", evaluation["before"])] if base else []
    card = adapters.read_card(target)
    if (card.get("calibration") or {}).get("min_confidence") or (card.get("citation_gate") or {}).get("threshold"):
        ungated = run_eval(settings.model_copy(update={"min_confidence": 0.0, "min_citation_score": 0.0}), val,
                           runs / "after-ungated", format="jsonl", limit=limit, adapter=str(target), sample_seed=0,
                           library=library)
        columns += [(f"{label}, no gate", ungated), (f"{label} + calibrated gate", evaluation["after"])]
    else:
        columns.append((label, evaluation["after"]))
    if strict:  # the same questions with strict citations (consensus_citations)
        settings_strict = settings.model_copy(update={"consensus_citations": True})
        runs_strict = [("base, strict citations", "none", "before-strict")] if base else []
        for column, adapter, folder in [*runs_strict, (f"{label}, strict citations", str(target), "after-strict")]:
            columns.append((column, run_eval(settings_strict, val, runs / folder, format="jsonl", limit=limit,
                                             adapter=adapter, sample_seed=0, library=library)))
    return columns, evaluation


if __name__ == "__main__":
    sys.exit(main())
