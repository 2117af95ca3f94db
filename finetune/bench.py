"""Fine-tuning benchmark on ObliQA dev: build RAFT data (train part >= 80%, validation >= 20% by question id), train
the default recipe, evaluate base model vs adapter on a fixed sample of the validation questions, compare.

    python -m finetune.bench --obliqa ../shared/corpora/obliqa [--home .comply-bench/obliqa] [--questions 600]
        [--eval-limit 100] [--name obliqa-raft] [--ship data/adapters/NAME] [--json]

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

from eval.bench_retrieval import ingest_obliqa
from eval.datasets import load_obliqa
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
    parser.add_argument("--target-precision", type=float, default=0.8, help="the gate's calibration target")
    parser.add_argument("--skip-eval", action="store_true")
    parser.add_argument("--strict", action=argparse.BooleanOptionalAction, default=True,
                        help="also evaluate base and adapter with strict citations (consensus_citations)")
    parser.add_argument("--ship", type=Path, default=None, help="export the adapter here (comply adapters export)")
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
    if calibration_set and "calibration" not in adapters.read_card(target):
        path = write_eval_jsonl(calibration_set, data_dir / f"calibration_questions-{len(calibration_set)}.jsonl")
        calibrate(settings, args.name, path, settings.eval_dir / f"calibrate-{args.name}-{len(calibration_set)}",
                  format="jsonl", target_precision=args.target_precision, library=library)
    out = {"data": manifest, "adapter": str(target), "card": adapters.read_card(target)}
    if not args.skip_eval:
        from eval.compare import compare_runs
        from eval.runner import run_eval

        runs = settings.eval_dir / f"adapter-{args.name}-{args.eval_limit}"
        val = data_dir / "val_questions.jsonl"
        evaluation = adapters.evaluate(settings, args.name, val, runs, limit=args.eval_limit, sample_seed=0,
                                       library=library)
        out["compare"] = compare_runs(runs / "before", runs / "after")
        columns = [("base model", evaluation["before"]), ("with adapter", evaluation["after"])]
        if (out["card"].get("calibration") or {}).get("min_confidence"):
            ungated = run_eval(settings.model_copy(update={"min_confidence": 0.0}), val, runs / "after-ungated",
                               format="jsonl", limit=args.eval_limit, adapter=str(target), sample_seed=0,
                               library=library)
            columns = [columns[0], ("adapter, no confidence gate", ungated),
                       ("adapter + calibrated gate", evaluation["after"])]
        if args.strict:  # the same questions with strict citations (consensus_citations), base and adapter
            strict = settings.model_copy(update={"consensus_citations": True})
            for label, adapter, folder in (("base, strict citations", "none", "before-strict"),
                                           ("adapter, strict citations", str(target), "after-strict")):
                columns.append((label, run_eval(strict, val, runs / folder, format="jsonl", limit=args.eval_limit,
                                                adapter=adapter, sample_seed=0, library=library)))
        out["markdown"] = markdown_rows(columns, evaluation["after"].get("n_questions") or 0)
    if args.ship:
        adapters.export(settings, args.name, args.ship)
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


if __name__ == "__main__":
    sys.exit(main())
