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
from finetune.dataset import TARGET_FORMAT, DataConfig, DataError, build_dataset, load_manifest
from finetune.train import TrainConfig, train

ROWS = (("answers with citations (answerable)", "cited_answer_rate_answerable"),
        ("... with a [n] the model wrote itself", "model_cited_rate_answerable"),
        ("citation precision", "citation_precision"), ("citation recall", "citation_recall"),
        ("abstention (answerable questions)", "false_refusal_rate"))


def markdown_rows(before: dict, after: dict, n: int) -> str:
    """The docs/benchmarks.md table: base vs adapter on the validation sample."""
    def cell(v):
        return "-" if v is None else f"{v:.3f}"

    lines = [f"| metric ({n} validation questions) | base model | with adapter |", "| --- | --- | --- |"]
    lines += [f"| {label} | {cell(before.get(key))} | **{cell(after.get(key))}** |" for label, key in ROWS]
    return "\n".join(lines)


def _data_is_current(data_dir: Path, config: DataConfig) -> bool:
    """Whether data_dir holds data built with this config and the current target format (else it is rebuilt)."""
    try:
        manifest = load_manifest(data_dir)
    except DataError:
        return False
    built = manifest.get("config", {})
    return (manifest.get("target_format") == TARGET_FORMAT and built.get("p_abstain") == config.p_abstain
            and built.get("val_fraction") == config.val_fraction and built.get("seed") == config.seed
            and built.get("order", "shuffled") == config.order)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--obliqa", type=Path, default=Path("../shared/corpora/obliqa"))
    parser.add_argument("--home", type=Path, default=Path(".comply-bench/obliqa"))
    parser.add_argument("--questions", type=int, default=600, help="first N dev questions used (0 = all)")
    parser.add_argument("--val-fraction", type=float, default=0.2)
    parser.add_argument("--p-abstain", type=float, default=0.2)
    parser.add_argument("--order", choices=("retrieval", "shuffled"), default="retrieval",
                        help="source order in the prompts (see finetune.dataset.DataConfig)")
    parser.add_argument("--name", default="obliqa-raft")
    parser.add_argument("--max-examples", type=int, default=None, help="training examples used (default: all)")
    parser.add_argument("--steps", type=int, default=None, help="optimizer steps (default: 1 epoch)")
    parser.add_argument("--grad-accum", type=int, default=4)
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--rank", type=int, default=16, help="LoRA rank (alpha = 2 x rank)")
    parser.add_argument("--save-every", type=int, default=10, help="checkpoint every N steps")
    parser.add_argument("--eval-limit", type=int, default=100, help="fixed sample of validation questions")
    parser.add_argument("--skip-eval", action="store_true")
    parser.add_argument("--ship", type=Path, default=None, help="copy the adapter (no checkpoints) here")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)

    library = ingest_obliqa(args.obliqa, args.home)
    settings = library.settings
    docs = args.obliqa / "StructuredRegulatoryDocuments"
    config = DataConfig(p_abstain=args.p_abstain, val_fraction=args.val_fraction, order=args.order)
    data_dir = args.home / "finetune" / f"obliqa-dev-{args.questions or 'all'}-{args.order}"
    if not _data_is_current(data_dir, config):
        shutil.rmtree(data_dir, ignore_errors=True)
        questions = load_obliqa(args.obliqa / "ObliQA_dev.json", documents_dir=docs)
        if args.questions:
            questions = questions[: args.questions]
        build_dataset(library, questions, data_dir, config, name="obliqa-dev",
                      progress=lambda qs, part: tqdm(qs, desc=f"data {part}", file=sys.stderr))
    manifest = load_manifest(data_dir)

    target = settings.adapters_dir / args.name
    recipe = TrainConfig(max_steps=args.steps, max_examples=args.max_examples, grad_accum=args.grad_accum,
                         lr=args.lr, save_every=args.save_every, rank=args.rank, alpha=2 * args.rank)
    if not (target / adapters.CARD).is_file():
        result = train(settings, data_dir, target, recipe, resume=True)
        training = {k: v for k, v in asdict(result).items() if k != "losses"}
        training["loss_every_10_steps"] = result.losses[::10]
        command = (f"python -m finetune.bench --obliqa {args.obliqa} --home {args.home} --questions {args.questions} "
                   f"--p-abstain {args.p_abstain} --order {args.order} "
                   f"--name {args.name} --grad-accum {args.grad_accum} --lr {args.lr} --rank {args.rank}"
                   + (f" --steps {args.steps}" if args.steps else "")
                   + (f" --max-examples {args.max_examples}" if args.max_examples else ""))
        card = adapters.make_card(args.name, settings, manifest, data_dir, recipe.to_dict(), training, command)
        adapters.write_card(target, card)
        shutil.rmtree(target / "checkpoints", ignore_errors=True)
    out = {"data": manifest, "adapter": str(target), "card": adapters.read_card(target)}
    if not args.skip_eval:
        from eval.compare import compare_runs

        runs = settings.eval_dir / f"adapter-{args.name}-{args.eval_limit}"
        evaluation = adapters.evaluate(settings, args.name, data_dir / "val_questions.jsonl", runs,
                                       limit=args.eval_limit, sample_seed=0, library=library)
        out["compare"] = compare_runs(runs / "before", runs / "after")
        out["markdown"] = markdown_rows(evaluation["before"], evaluation["after"],
                                        evaluation["after"].get("n_questions") or 0)
    if args.ship:
        shutil.rmtree(args.ship, ignore_errors=True)
        shutil.copytree(target, args.ship, ignore=shutil.ignore_patterns("checkpoints"))
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
