"""95% bootstrap intervals of a run's main metrics, from its results.jsonl records: questions are resampled with
replacement and each ratio is recomputed over the resample (citation precision as all correct citations over all
citations of the resample, not a mean of per-question precisions), as aggregate() computes it on the whole run."""

from __future__ import annotations

import numpy as np

SAMPLES = 2000


def _parts(record: dict) -> dict[str, tuple[float, float] | None]:
    """Per question, (numerator, denominator) of each metric, or None where the question does not count."""
    scores = record.get("scores") or {}
    answerable, abstained = record.get("answerable"), record.get("abstained")
    judged = abstained is not None
    cited = "citations" in scores  # the run measured citations for it
    answered = judged and not abstained
    parts: dict[str, tuple[float, float] | None] = {
        "citation_precision": (scores.get("correct_citations", 0), scores["citations"]) if cited and answered
        else None,
        "citation_recall": (float(answered and scores.get("correct_citations", 0) > 0), 1.0)
        if cited and answerable else None,
        "false_refusal_rate": (float(abstained), 1.0) if judged and answerable else None,
        "refusal_rate": (float(abstained), 1.0) if judged and not answerable else None,
        "answer_correct_rate_answerable": (float(record["answer_correct"]), 1.0)
        if answerable and record.get("answer_correct") is not None else None,
    }
    for key in ("recall@10", "map@10"):
        parts[key] = (float(scores[key]), 1.0) if answerable and scores.get(key) is not None else None
    retrieved = record.get("retrieved")
    parts["hit@1"] = (float(bool(retrieved[0].get("relevant"))), 1.0) if answerable and retrieved else None
    return parts


def bootstrap(records: list[dict], samples: int = SAMPLES, seed: int = 0) -> dict[str, list[float] | None]:
    """{metric: [low, high]} (2.5th and 97.5th percentiles over `samples` resamples; seeded), None where no question
    counts for the metric."""
    if not records:
        return {}
    parts = [_parts(r) for r in records]
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(records), size=(samples, len(records)))
    out: dict[str, list[float] | None] = {}
    for key in parts[0]:
        num = np.array([p[key][0] if p[key] else 0.0 for p in parts])
        den = np.array([p[key][1] if p[key] else 0.0 for p in parts])
        if den.sum() == 0:
            out[key] = None
            continue
        nums, dens = num[picks].sum(axis=1), den[picks].sum(axis=1)
        ratios = nums[dens > 0] / dens[dens > 0]
        out[key] = [round(float(np.percentile(ratios, 2.5)), 4), round(float(np.percentile(ratios, 97.5)), 4)]
    return out
