"""The near-copy check (`assistant.citations.substitution`) on real regulatory text: how often it flags a sentence
that changes one word of its source, and how often it flags one that does not.

    python -m eval.bench.verifier --obliqa ../shared/corpora/obliqa [--passages 2000] [--seed 0] [--json]

From every ObliQA passage with at least two sentences (a sample of `--passages`, fixed by `--seed`) it takes the
passage's longest sentence X and writes, against the passage as the cited chunk:
- faithful variants, which must not be flagged: X verbatim; X without its last third; X behind a framing phrase
  ("According to the rules, ..."); another sentence of the passage verbatim;
- changed variants, which should be: X with one content word replaced by a content word of another sentence of the
  passage that X lacks (a splice of the kind a small model writes), and X with one number replaced by another number
  of the passage.
No model runs: this measures the rule itself. What it does to real answers is measured by `comply eval` (see
docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import json
import random
import re
from pathlib import Path

from tqdm import tqdm

from assistant.citations import _WORD, _is_content, _stem, _tokens, substitution
from ingest.chunking import sentence_spans

FRAMING = "According to the rules, "


def passages(obliqa: Path) -> list[str]:
    """The text of every passage of the 40 structured ObliQA documents, in file order."""
    out = []
    for path in sorted((obliqa / "StructuredRegulatoryDocuments").glob("*.json"), key=lambda p: int(p.stem)):
        out.extend(p["Passage"] for p in json.loads(path.read_text()) if p.get("Passage"))
    return out


def _words(sentence: str) -> list[str]:
    return [w for w in _WORD.findall(sentence) if _is_content(_stem(w.lower()))]


def _replace(sentence: str, old: str, new: str) -> str:
    return re.sub(rf"(?<![\w.]){re.escape(old)}(?![\w]|\.\d)", new, sentence, count=1)


def cases(text: str, rng: random.Random) -> dict[str, str | None]:
    """The variants of one passage (None where the passage offers none of that kind)."""
    spans = [text[s:e] for s, e in sentence_spans(text) if len(_tokens(text[s:e])) >= 6]
    if len(spans) < 2:
        return {}
    x = max(spans, key=len)
    others = [s for s in spans if s is not x]
    in_x = {_stem(w.lower()) for w in _WORD.findall(x)}
    cut = x.split()
    out: dict[str, str | None] = {
        "verbatim": x, "omission": " ".join(cut[: max(4, 2 * len(cut) // 3)]),
        "framing": FRAMING + x[0].lower() + x[1:], "other sentence": rng.choice(others),
        "word substituted": None, "number substituted": None,
    }
    candidates = [w for s in others for w in _words(s) if not w[0].isdigit() and _stem(w.lower()) not in in_x]
    targets = [w for w in _words(x) if not w[0].isdigit()]
    if candidates and targets:
        old, new = rng.choice(targets), rng.choice(candidates)
        out["word substituted"] = _replace(x, old, new)
    numbers_x = [w for w in _WORD.findall(x) if w[0].isdigit()]
    numbers_other = [w for s in others for w in _WORD.findall(s) if w[0].isdigit() and w not in numbers_x]
    if numbers_x and numbers_other:
        out["number substituted"] = _replace(x, rng.choice(numbers_x), rng.choice(numbers_other))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--obliqa", type=Path, default=Path("../shared/corpora/obliqa"))
    parser.add_argument("--passages", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)

    rng = random.Random(args.seed)
    texts = passages(args.obliqa)
    multi = [t for t in texts if len(sentence_spans(t)) >= 2]
    sample = rng.sample(multi, min(args.passages, len(multi)))
    counts: dict[str, list[int]] = {}  # kind -> [flagged, total]
    examples: dict[str, str] = {}
    for text in tqdm(sample, desc="passages", unit="passage"):
        chunk_words = set(_tokens(text))
        sentences = [text[s:e] for s, e in sentence_spans(text)]
        for kind, claim in cases(text, rng).items():
            if claim is None:
                continue
            found = substitution(claim, sentences, chunk_words)
            tally = counts.setdefault(kind, [0, 0])
            tally[0] += found is not None
            tally[1] += 1
            if found is not None and kind not in examples:
                examples[kind] = f"{claim[:160]} -> {found[1]}"
    result = {"passages_with_two_sentences": len(multi), "sampled": len(sample), "seed": args.seed,
              "flagged": {k: {"flagged": f, "total": n, "rate": round(f / n, 4)} for k, (f, n) in counts.items()},
              "examples": examples}
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"{len(sample)} of {len(multi)} ObliQA passages with two or more sentences (seed {args.seed})\n")
    print("| variant of the passage's longest sentence | should be flagged | flagged | of | rate |")
    print("| --- | --- | ---: | ---: | ---: |")
    for kind, (f, n) in counts.items():
        should = "yes" if kind.endswith("substituted") else "no"
        print(f"| {kind} | {should} | {f} | {n} | {f / n:.3f} |")
    for kind, text in examples.items():
        print(f"\nfirst flagged ({kind}): {text}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
