"""The verifier on the labelled verification set: how many wrong answer sentences it flags, how many faithful ones
it flags by mistake, which check flagged them, and what a check costs.

    python -m eval.bench.verification [--checks lexical|default|all|both|three] [--limit N] [--seed 0] [--json]

`--checks lexical` is the verifier without the second pass (word overlap, embedding similarity, the number, place
and near-copy rules); `default` is the verifier the settings build (`assistant.citations.build_verifier`); `all`
the same with every check on (the rules, the entailment model, the reranker's relevance test); `both` runs lexical
and all, `three` (the default) all three, on the same items, the lexical column being the baseline. Every item's
sentence is verified against its own sources with its question (`Verifier.verify(sentence, sources, question)`). An
item counts as flagged when the verifier shows no supported sentence for it; a wrong item also counts as caught
when the verifier replaced its wrong citation by a source that supports it (`Sentence.corrected`: the reader sees
that one). The set and its kinds: docs/evaluation.md.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections import Counter
from pathlib import Path

import numpy as np

from assistant import citations
from eval.machine import cpu_model
from eval.verification_set import PATH, SUPPORTED_KINDS, WRONG_KINDS, Item, load_items, to_retrieved
from ingest.embedding import load_embedder
from ingest.settings import Settings
from ingest.types import ComplyError

BOOTSTRAP_SAMPLES = 2000


class ChecksUnavailable(ComplyError, RuntimeError):
    """`--checks all` asked for a verifier builder this version of comply does not have."""


def make_verifier(checks: str, settings: Settings):
    """The verifier for one column: `lexical` is `Verifier` with the settings' thresholds and no second pass;
    `default` is what `build_verifier` makes of the settings; `all` the same with every check on."""
    embedder = load_embedder(settings)
    if checks == "lexical":
        return citations.Verifier(embedder, settings.support_threshold, settings.citation_realign_margin)
    if checks == "all":  # every check on, whatever the defaults
        settings = settings.model_copy(update={"answer_rules": True, "entailment_check": True,
                                               "relevance_check": True})
    build = getattr(citations, "build_verifier", None)
    if build is None:
        raise ChecksUnavailable("assistant.citations has no build_verifier: the model checks are not in this version")
    return build(settings, embedder)


def run_column(verifier, items: list[Item]) -> list[dict]:
    """Per item: whether it was flagged, the flags of its sentences and how long verify() took."""
    out = []
    if items:  # the embedding model's first call is slow: not part of any item's time
        verifier.verify(items[0].sentence, to_retrieved(items[0]), question=items[0].question)
    for item in items:
        sources = to_retrieved(item)
        start = time.perf_counter()
        sentences, _ = verifier.verify(item.sentence, sources, question=item.question)
        seconds = time.perf_counter() - start
        flags = sorted({f for s in sentences for f in s.flags})
        supported = bool(sentences) and all(s.supported for s in sentences)
        # a wrong citation the verifier replaced by the source the sentence is in is caught: the reader sees the
        # right source (Sentence.corrected); a faithful sentence's citation moved is not counted either way
        corrected = item.wrong and supported and any(s.corrected for s in sentences)
        out.append({"id": item.id, "flagged": not supported or corrected, "corrected": corrected, "flags": flags,
                    "seconds": seconds, "issue": next((s.issue for s in sentences if s.issue), None)})
    return out


def three_sentence_answers(items: list[Item]) -> list[tuple[str, list, str]]:
    """(answer, sources, question) for every group of items that share a question and sources: three of their
    sentences joined, the shape of a typical answer, for timing what the checks add."""
    groups: dict[tuple, list[Item]] = {}
    for item in items:
        groups.setdefault((item.question, tuple(s.text for s in item.sources)), []).append(item)
    return [(" ".join(i.sentence for i in group[:3]), to_retrieved(group[0]), group[0].question)
            for group in groups.values() if len(group) >= 3]


def added_latency(lexical, checked, answers, repeats: int = 3) -> dict:
    """What the checks add to verifying a 3-sentence answer: per answer and repeat, the time of the checked
    verifier minus the lexical one's on the same answer, both with their caches warm (a first untimed pass)."""
    for answer, sources, question in answers:
        lexical.verify(answer, sources, question)
        checked.verify(answer, sources, question)
    added = []
    for _ in range(repeats):
        for answer, sources, question in answers:
            start = time.perf_counter()
            lexical.verify(answer, sources, question)
            middle = time.perf_counter()
            checked.verify(answer, sources, question)
            added.append((time.perf_counter() - middle) - (middle - start))
    ms = np.array(added) * 1000
    return {"answers": len(answers), "repeats": repeats, "p50": round(float(np.percentile(ms, 50)), 1),
            "p95": round(float(np.percentile(ms, 95)), 1)}


def _rate_ci(hits: np.ndarray, rng: np.random.Generator) -> tuple[float, float, float]:
    """The share of hits and its 95% bootstrap interval (items resampled with replacement)."""
    if len(hits) == 0:
        return float("nan"), float("nan"), float("nan")
    means = rng.choice(hits, size=(BOOTSTRAP_SAMPLES, len(hits)), replace=True).mean(axis=1)
    return float(hits.mean()), float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def summarise(items: list[Item], results: list[dict], seed: int) -> dict:
    """Per-kind flag rates, overall recall and false flags with CIs, per-flag precision and recall, latency."""
    rng = np.random.default_rng(seed)
    wrong = np.array([r["flagged"] for i, r in zip(items, results, strict=True) if i.wrong], dtype=float)
    right = np.array([r["flagged"] for i, r in zip(items, results, strict=True) if not i.wrong], dtype=float)
    kinds: dict[str, dict] = {}
    for item, r in zip(items, results, strict=True):
        k = kinds.setdefault(item.kind, {"label": item.label, "n": 0, "flagged": 0})
        k["n"] += 1
        k["flagged"] += r["flagged"]
    for k in kinds.values():
        k["rate"] = round(k["flagged"] / k["n"], 4)
    n_wrong = int(len(wrong))
    codes = sorted({f for r in results for f in r["flags"]})
    flags = {}
    for code in codes:
        on = [i.wrong for i, r in zip(items, results, strict=True) if code in r["flags"]]
        flags[code] = {"items": len(on), "precision": round(sum(on) / len(on), 4),
                       "recall": round(sum(on) / n_wrong, 4) if n_wrong else None}
    ms = np.array([r["seconds"] for r in results]) * 1000
    recall, rlo, rhi = _rate_ci(wrong, rng)
    false, flo, fhi = _rate_ci(right, rng)
    return {
        "recall_wrong": {"rate": round(recall, 4), "ci95": [round(rlo, 4), round(rhi, 4)], "n": n_wrong},
        "false_flags_supported": {"rate": round(false, 4), "ci95": [round(flo, 4), round(fhi, 4)],
                                  "n": int(len(right))},
        "kinds": kinds, "flags": flags,
        "latency_ms": {"p50": round(float(np.percentile(ms, 50)), 2), "p95": round(float(np.percentile(ms, 95)), 2)},
    }


def _kind_order(kinds: dict) -> list[str]:
    return [k for k in (*WRONG_KINDS, *SUPPORTED_KINDS) if k in kinds]


def markdown(result: dict) -> str:
    """The report as Markdown tables, one column per verifier."""
    cols = list(result["columns"])
    head = " | ".join(cols)
    lines = [f"{result['items']} items ({result['wrong']} wrong, {result['supported']} supported) of "
             f"{result['set']}; CPU: {result['cpu']}\n",
             f"| | {head} |", "| --- |" + " ---: |" * len(cols)]
    for name, key in (("wrong flagged (recall)", "recall_wrong"), ("supported flagged (false flags)",
                                                                     "false_flags_supported")):
        cells = [f"{c[key]['rate']:.3f} [{c[key]['ci95'][0]:.3f}, {c[key]['ci95'][1]:.3f}]"
                 for c in result["columns"].values()]
        lines.append(f"| {name}, 95% CI | " + " | ".join(cells) + " |")
    for p in ("p50", "p95"):
        lines.append(f"| verify() per item, {p} ms | "
                     + " | ".join(f"{c['latency_ms'][p]:.1f}" for c in result["columns"].values()) + " |")
    added = result.get("added_ms_3_sentences")
    if added:
        lines.append(f"| added by every check to a 3-sentence answer, p50 / p95 ms ({added['answers']} answers x "
                     f"{added['repeats']}, caches warm) |" + " |" * (len(cols) - 1)
                     + f" {added['p50']:.0f} / {added['p95']:.0f} |")
    first = next(iter(result["columns"].values()))
    lines += ["", f"| kind | label | items | {' | '.join(c + ' flagged' for c in cols)} |",
              "| --- | --- | ---: |" + " ---: |" * len(cols)]
    for kind in _kind_order(first["kinds"]):
        k = first["kinds"][kind]
        cells = [f"{c['kinds'][kind]['flagged']} ({c['kinds'][kind]['rate']:.2f})" for c in result["columns"].values()]
        lines.append(f"| {kind} | {k['label']} | {k['n']} | " + " | ".join(cells) + " |")
    lines += ["", "| check (flag) | verifier | items flagged | precision | recall on wrong |",
              "| --- | --- | ---: | ---: | ---: |"]
    for col, c in result["columns"].items():
        for code, f in c["flags"].items():
            lines.append(f"| {code} | {col} | {f['items']} | {f['precision']:.3f} | {f['recall']:.3f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--set", type=Path, default=PATH, help="the labelled JSONL file")
    parser.add_argument("--checks", choices=("lexical", "default", "all", "both", "three"), default="three",
                        help="lexical: no second pass; default: what the settings build; all: every check on; "
                             "both: lexical and all; three: lexical, default and all")
    parser.add_argument("--limit", type=int, default=None, help="only the first N items (a quick run)")
    parser.add_argument("--seed", type=int, default=0, help="for the bootstrap intervals")
    parser.add_argument("--home", type=Path, default=None, help="comply's state directory (models, settings)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)

    items = load_items(args.set)[: args.limit]
    settings = Settings(home=args.home) if args.home else Settings()
    columns, per_item = {}, {}
    names = {"both": ("lexical", "all"), "three": ("lexical", "default", "all")}.get(args.checks, (args.checks,))
    for checks in names:
        try:
            verifier = make_verifier(checks, settings)
        except ChecksUnavailable as e:
            print(f"--checks {checks}: {e}")
            return 2
        results = run_column(verifier, items)
        columns[checks] = summarise(items, results, args.seed)
        per_item[checks] = results
    counts = Counter(i.label for i in items)
    result = {"set": str(args.set), "items": len(items), "wrong": counts["wrong"], "supported": counts["supported"],
              "cpu": f"{cpu_model()}, {len(os.sched_getaffinity(0))} cores, load average {os.getloadavg()[0]:.1f}",
              "seed": args.seed, "columns": columns}
    if args.checks in ("both", "three"):
        result["added_ms_3_sentences"] = added_latency(make_verifier("lexical", settings),
                                                       make_verifier("all", settings), three_sentence_answers(items))
    if args.json:
        print(json.dumps({**result, "per_item": per_item}, indent=2))
    else:
        print(markdown(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
