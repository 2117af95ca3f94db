"""Memory of the answering process: resident set size with the default generator loaded, over many answers.

    python -m eval.bench.memory --home .comply [--answers 200] [--warmup 20] [--concurrent 4] [--json]

The home must hold an ingested library (`make run` or `comply ingest data/corpus` makes one). The questions of the
sample gold set are asked in turn, `--concurrent` at a time (as users of `comply serve` would), through the same
`Assistant` the server uses. RSS is read from /proc after the warm-up answers and every 10 answers after that; the
result is flat when the last reading is within 10% of the first one after warm-up.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from assistant.pipeline import Assistant
from eval.datasets import load_jsonl
from eval.machine import cpu_model
from ingest.settings import load_settings

GOLD = Path(__file__).resolve().parents[2] / "data" / "gold" / "sample_gold.jsonl"


def rss_mb(pid: int | str = "self") -> float:
    """The resident set size in MB (VmRSS) of process `pid`, by default this one."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS in /proc/{pid}/status")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--home", type=Path, default=Path(os.environ.get("COMPLY_HOME", ".comply")))
    parser.add_argument("--answers", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--concurrent", type=int, default=4)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    settings = load_settings(home=args.home, adapter="none")
    questions = [q.question for q in load_jsonl(GOLD)]
    assistant = Assistant(settings)
    before_load = rss_mb()
    assistant.ask(questions[0])
    loaded = rss_mb()
    readings: list[tuple[int, float]] = []
    t0 = time.perf_counter()
    done = 0
    with ThreadPoolExecutor(args.concurrent) as pool:
        while done < args.warmup + args.answers:
            batch = [questions[(done + i) % len(questions)] for i in range(args.concurrent)]
            list(pool.map(assistant.ask, batch))
            done += len(batch)
            if done >= args.warmup and (not readings or done - readings[-1][0] >= 10):
                readings.append((done, round(rss_mb(), 1)))
    first, last = readings[0][1], readings[-1][1]
    out = {"machine": cpu_model(), "model": assistant.generator.model_name, "answers": done,
           "warmup": args.warmup, "concurrent": args.concurrent, "seconds": round(time.perf_counter() - t0),
           "rss_mb": {"before_model": round(before_load, 1), "model_loaded_one_answer": round(loaded, 1),
                      "after_warmup": first, "end": last, "peak_reading": max(r for _, r in readings)},
           "growth_after_warmup": round(last / first - 1, 3), "flat_within_10pct": abs(last / first - 1) <= 0.10,
           "readings": readings}
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        print(f"{out['machine']}, {out['model']}: {done} answers ({args.concurrent} at a time) in {out['seconds']} s")
        print(f"RSS MB: {out['rss_mb']}; growth after warm-up {out['growth_after_warmup']:+.1%} "
              f"({'flat' if out['flat_within_10pct'] else 'NOT flat'} within 10%)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
