"""Re-verify an evaluation run's answers with today's checks, without generating anything again.

    python -m eval.replay RUN OUT [--home HOME] [--set name=value ...] [--json]

Reads RUN/run_config.json and RUN/results.jsonl, and runs `eval.runner.run_eval` again on the same questions (the
same dataset, part, limit and sample) with a generator that gives back, for each question, the raw answer the run
recorded: retrieval, the verifier, the gates and the scoring are today's (with `--set` overriding settings, e.g.
`--set entailment_check=true`), the model's words are the run's. So a change to verification is measured on real
answers in a minute instead of hours of generation (docs/benchmarks.md, "On real answers"). Retrieval must give
the same sources as in the run for the replayed answers' citations to mean the same: use the run's home and do not
change retrieval settings.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from assistant.pipeline import Assistant
from eval.runner import run_eval
from ingest.settings import Settings
from ingest.types import ComplyError


class ReplayError(ComplyError):
    """A run cannot be replayed: the reason."""


class ReplayGenerator:
    """Stands in for the generator: the answer the run recorded for the question in the prompt's last message."""

    tokenizer = None

    def __init__(self, answers: dict[str, str], model_name: str):
        self.answers = answers
        self.model_name = f"replay of {model_name}"

    def stream(self, messages: list[dict], max_new_tokens: int | None = None, trace=None):
        prompt = messages[-1]["content"]
        found = [answer for question, answer in self.answers.items() if question in prompt]
        if len(found) != 1:
            raise ReplayError(f"{len(found)} recorded answers match the prompt ending {prompt[-160:]!r}")
        yield found[0]


def replay(run: Path, out: Path, settings: Settings) -> dict:
    """Metrics of `run`'s recorded answers verified with `settings`, written to `out` as a run of its own."""
    config_path, results_path = run / "run_config.json", run / "results.jsonl"
    if not config_path.is_file() or not results_path.is_file():
        raise ReplayError(f"{run} is not an evaluation run (no run_config.json and results.jsonl)")
    config = json.loads(config_path.read_text(encoding="utf-8"))
    if config.get("retrieval_only"):
        raise ReplayError(f"{run} is a retrieval-only run: it recorded no answers")
    answers = {}
    for line in results_path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            record = json.loads(line)
            answers[record["question"]] = record.get("raw_answer") or ""
    assistant = Assistant(settings, adapter=config.get("adapter") or "none")
    assistant._generator = ReplayGenerator(answers, config.get("model") or "the run's model")
    return run_eval(settings, config["dataset"], out, format=config.get("format", "auto"), limit=config.get("limit"),
                    sample_seed=config.get("sample_seed"), documents_dir=config.get("documents_dir"),
                    part=config.get("part"), assistant=assistant, adapter=config.get("adapter") or "none",
                    progress=False)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--home", type=Path, default=None, help="comply's state directory (the run's library)")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                        help="a setting for the replay (JSON value), e.g. entailment_check=true")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    overrides = {}
    for item in args.set:
        name, _, value = item.partition("=")
        try:
            overrides[name] = json.loads(value)
        except json.JSONDecodeError:
            overrides[name] = value
    settings = Settings(**({"home": args.home} if args.home else {}), **overrides)
    try:
        metrics = replay(args.run, args.out, settings)
    except ReplayError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    keys = ("citation_precision", "citation_recall", "false_refusal_rate", "support_rate")
    shown = {k: metrics.get(k) for k in keys}
    print(json.dumps(metrics, indent=2, default=str) if args.json else
          " ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in shown.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
