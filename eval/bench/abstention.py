"""When to abstain before drafting: the cosine gate alone against the cosine gate + the reranker's "no source
addresses the question" rule, chosen on ObliQA dev's tune part and reported on what was not used to choose it.

    python -m eval.bench.abstention --obliqa ../shared/corpora/obliqa --home .comply-bench/obliqa \
        --sample-home .comply-bench/sample-retrieval [--max-false-refusals 0.01] [--write-card] [--json]

Every question is retrieved as the assistant retrieves it (its sources: the home's `top_k`), and two numbers are kept:
the best cosine relevance of the sources (`Retriever.relevance`, what `abstain_threshold` gates) and the reranker's
best logit over them. Two libraries: the 40 ADGM rulebooks of ObliQA (`--home`, where every ObliQA question is
answerable) and the sample bank manual of `data/corpus` (`--sample-home`, where none is).

- **Choosing** (`assistant.rerank.AbstainRule`: ask the reranker when the cosine is below `cosine`, abstain when
  the best logit is below `logit`): on the tune part only, every pair of the grid that refuses at most
  `--max-false-refusals` of the tune questions over ADGM (answerable) is a candidate, and the one refusing the most
  tune questions over the bank manual (unanswerable there) wins; ties go to the pair that asks the reranker least
  (lower `cosine`), then to the lower `logit`.
- **Reporting**, with today's cosine gate alone beside it: the report part over both libraries, the 12 questions
  of data/adaptation/outside_questions.jsonl (no library here answers them) over both, and the sample gold set
  (27 answerable, 8 not). None of these is looked at while choosing.

`--write-card` writes the chosen pair into the reranker's card.json (`abstain`), which is where the assistant reads it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from assistant.rerank import AbstainRule, Reranker, current_reranker
from eval.datasets import load_jsonl, load_obliqa, select_part
from eval.machine import cpu_model
from eval.metrics import percentiles
from finetune.abstain_calibration import OUTSIDE_QUESTIONS, choose, features, refused
from ingest.embedding import cpu_supports_bf16
from ingest.pipeline import Library
from ingest.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
SAMPLE_GOLD = ROOT / "data" / "gold" / "sample_gold.jsonl"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--obliqa", type=Path, default=Path("../shared/corpora/obliqa"))
    parser.add_argument("--home", type=Path, default=Path(".comply-bench/obliqa"), help="the ADGM library")
    parser.add_argument("--sample-home", type=Path, default=Path(".comply-bench/sample-retrieval"),
                        help="a home with data/corpus ingested (the sample bank manual)")
    parser.add_argument("--max-false-refusals", type=float, default=0.01,
                        help="the share of answerable tune questions the rule may refuse")
    parser.add_argument("--limit", type=int, default=None, help="questions per part (a quick look)")
    parser.add_argument("--write-card", action="store_true", help="write the chosen rule into the reranker's card")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)

    adgm_settings, sample_settings = Settings(home=args.home), Settings(home=args.sample_home)
    adgm, sample = Library(adgm_settings), Library(sample_settings)
    for lib, home in ((adgm, args.home), (sample, args.sample_home)):
        if not lib.catalog.has_documents():
            parser.error(f"{home} holds no documents: ingest them first (make bench-abstention does)")
    path = current_reranker(adgm_settings)
    bf16 = cpu_supports_bf16()
    reranker = Reranker(path, bf16=bf16, batch_size=adgm_settings.rerank_batch_size)
    questions = load_obliqa(args.obliqa / "ObliQA_dev.json", documents_dir=args.obliqa / "StructuredRegulatoryDocuments")
    tune, report = (select_part(questions, p)[:args.limit] if args.limit else select_part(questions, p)
                    for p in ("tune", "report"))
    outside, gold = load_jsonl(OUTSIDE_QUESTIONS), load_jsonl(SAMPLE_GOLD)
    q = args.json
    sets = {
        "tune over ADGM (answerable)": features(adgm, adgm_settings, reranker, tune, True, "tune/ADGM", q),
        "tune over the bank manual (unanswerable)": features(sample, sample_settings, reranker, tune, False,
                                                             "tune/bank", q),
        "report over ADGM (answerable)": features(adgm, adgm_settings, reranker, report, True, "report/ADGM", q),
        "report over the bank manual (unanswerable)": features(sample, sample_settings, reranker, report, False,
                                                               "report/bank", q),
        "outside questions over ADGM (unanswerable)": features(adgm, adgm_settings, reranker, outside, False,
                                                               "outside/ADGM", q),
        "outside questions over the bank manual (unanswerable)": features(sample, sample_settings, reranker, outside,
                                                                          False, "outside/bank", q),
        "sample gold, answerable": None, "sample gold, unanswerable": None,
    }
    gold_rows = features(sample, sample_settings, reranker, gold, None, "sample gold", q)
    sets["sample gold, answerable"] = [r for r in gold_rows if r["answerable"]]
    sets["sample gold, unanswerable"] = [r for r in gold_rows if not r["answerable"]]
    threshold = adgm_settings.abstain_threshold
    picked = choose(sets["tune over ADGM (answerable)"], sets["tune over the bank manual (unanswerable)"], threshold,
                    args.max_false_refusals)
    rule = AbstainRule(logit=picked["chosen"]["logit"], cosine=picked["chosen"]["cosine"])
    table = {name: {"questions": len(rows), "answerable": all(r["answerable"] for r in rows),
                    "refused_cosine_gate": refused(rows, threshold, None),
                    "refused_with_rule": refused(rows, threshold, rule),
                    "refused_gold_shown": sum(1 for r in rows if r["gold_shown"]
                                              and refused([r], threshold, rule)),
                    "gold_shown": sum(r["gold_shown"] for r in rows)}
             for name, rows in sets.items()}
    asked = [r["ms"] for rows in sets.values() for r in rows if rule.asks(r["cosine"])]
    p = percentiles(asked) or [None, None]
    out = {"cpu": f"{cpu_model()}, {len(os.sched_getaffinity(0))} cores", "bf16": bf16, "reranker": str(path),
           "abstain_threshold": threshold, "top_k": adgm_settings.top_k,
           "max_false_refusals": args.max_false_refusals, "chosen": picked["chosen"], "sets": table,
           "reranker_ms": {"asked": len(asked), "of": sum(len(r) for r in sets.values()),
                           "p50": round(p[0], 1) if p[0] is not None else None,
                           "p95": round(p[1], 1) if p[1] is not None else None},
           "grid": picked["grid"]}
    if args.write_card:
        card_path = path / "card.json"
        card = json.loads(card_path.read_text()) if card_path.is_file() else {}
        card["abstain"] = {"logit": rule.logit, "cosine": rule.cosine,
                           "chosen_on": "ObliQA dev tune part: answerable over the ADGM rulebooks, unanswerable over "
                                        "the sample bank manual (python -m eval.bench.abstention)",
                           "max_false_refusals": args.max_false_refusals,
                           "tune_false_refusals": round(picked["chosen"]["false_refusals"], 4),
                           "tune_refusals_unanswerable": round(picked["chosen"]["refusals_unanswerable"], 4)}
        card_path.write_text(json.dumps(card, indent=2) + "\n")
    adgm.close()
    sample.close()
    if args.json:
        print(json.dumps(out, indent=2))
        return 0
    c = out["chosen"]
    print(f"{out['cpu']}; bf16 {bf16}; reranker {path.name}; top_k {out['top_k']}; cosine gate {threshold}\n")
    print(f"chosen on the tune part: ask the reranker below cosine {c['cosine']}, abstain below logit {c['logit']} "
          f"(tune: {c['false_refusals']:.3f} of answerable refused, {c['refusals_unanswerable']:.3f} of "
          f"unanswerable)\n")
    print("| questions | n | refused, cosine gate alone | refused, with the reranker rule | of which the gold passage "
          "was shown |\n| --- | ---: | ---: | ---: | ---: |")
    for name, t in table.items():
        n = t["questions"]
        print(f"| {name} | {n} | {t['refused_cosine_gate']} ({t['refused_cosine_gate'] / n:.3f}) | "
              f"{t['refused_with_rule']} ({t['refused_with_rule'] / n:.3f}) | "
              f"{t['refused_gold_shown'] if t['answerable'] or name.startswith('sample gold, a') else '-'} |")
    lat = out["reranker_ms"]
    print(f"\nreranker asked for {lat['asked']} of {lat['of']} questions: p50 {lat['p50']} / p95 {lat['p95']} ms "
          f"for {out['top_k']} sources")
    return 0


if __name__ == "__main__":
    sys.exit(main())
