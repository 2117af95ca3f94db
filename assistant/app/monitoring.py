"""Monitoring computed from the audit trail alone: per-day questions, abstentions, unsupported sentences, flagged
answers, latency."""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

BASE_MODEL = "base"  # how an answer without adapter is shown among a day's adapters


@dataclass
class DayStats:
    """One UTC day of answers. Rates are None on a day without questions (or without answered sentences)."""

    date: str
    questions: int
    abstention_rate: float | None
    unsupported_sentence_share: float | None
    latency_p95_ms: float | None
    adapters: list[str] = field(default_factory=list)
    document_changes: int = 0  # successful uploads, supersedes and deletes that day
    # answers shown (abstentions excluded) with at least one sentence a check refused
    flagged_answer_share: float | None = None


def flagged(sentence: dict) -> bool:
    """A sentence of an audited answer that a check refused: not supported, or with `flags` (records written
    before flags were audited have only `supported`)."""
    return not sentence.get("supported") or bool(sentence.get("flags"))


def p95(values: list[float]) -> float | None:
    """95th percentile by the nearest-rank method (an observed value; None for no values)."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)]


def daily_stats(records: list[dict]) -> list[DayStats]:
    """Per UTC day, oldest first: questions asked, share abstained, share of unsupported sentences among the
    sentences of answers shown (abstentions excluded), share of those answers with a flagged sentence, p95 of
    timings.total_ms, adapters used, document changes."""
    answers: dict[str, list[dict]] = defaultdict(list)
    changes: dict[str, int] = defaultdict(int)
    for r in records:
        day = str(r.get("time", ""))[:10]
        if len(day) != 10:
            continue
        action = r.get("action", "")
        if action == "answer":
            answers[day].append(r)
        elif str(action).startswith("document.") and r.get("ok", True):
            changes[day] += 1
    out = []
    for day in sorted(set(answers) | set(changes)):
        rows = answers.get(day, [])
        n = len(rows)
        answered = [r for r in rows if not r.get("abstained")]
        shown = [s for r in answered for s in r.get("sentences") or []]
        latencies = [float(r["timings"]["total_ms"]) for r in rows
                     if isinstance(r.get("timings"), dict) and r["timings"].get("total_ms") is not None]
        out.append(DayStats(
            date=day,
            questions=n,
            abstention_rate=sum(bool(r.get("abstained")) for r in rows) / n if n else None,
            unsupported_sentence_share=(sum(not s.get("supported") for s in shown) / len(shown)) if shown else None,
            flagged_answer_share=(sum(any(flagged(s) for s in r.get("sentences") or []) for r in answered)
                                  / len(answered)) if answered else None,
            latency_p95_ms=p95(latencies),
            adapters=sorted({Path(r["adapter"]).name if r.get("adapter") else BASE_MODEL for r in rows}),
            document_changes=changes.get(day, 0),
        ))
    return out


def plot_daily(stats: list[DayStats], dest: Path) -> Path:
    """Draw the daily series into one PNG (2x2 panels; unsupported sentences and flagged answers share one);
    dashed lines mark days a new adapter appears, dotted lines days the documents changed. Returns `dest`."""
    from matplotlib import dates as mdates  # lazy: matplotlib takes ~1 s to import; only a plot needs it
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # lazy: as above
    from matplotlib.figure import Figure  # no pyplot: no global state, safe from the UI's worker threads

    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fig = Figure(figsize=(10, 6), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(2, 2, sharex=True).ravel()
    days = [date.fromisoformat(s.date) for s in stats]
    nan = float("nan")
    panels = [
        ("Questions per day", [s.questions for s in stats], None),
        ("Abstention rate", [nan if s.abstention_rate is None else s.abstention_rate for s in stats], (-0.02, 1.02)),
        ("Unsupported sentences, flagged answers",
         [nan if s.unsupported_sentence_share is None else s.unsupported_sentence_share for s in stats], (-0.02, 1.02)),
        ("Latency p95 (ms)", [nan if s.latency_p95_ms is None else s.latency_p95_ms for s in stats], None),
    ]
    adapter_days, seen = [], set()
    for s, d in zip(stats, days, strict=True):
        if seen and set(s.adapters) - seen:
            adapter_days.append(d)
        seen |= set(s.adapters)
    document_days = [d for s, d in zip(stats, days, strict=True) if s.document_changes]
    for ax, (title, values, ylim) in zip(axes, panels, strict=True):
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3)
        if ylim:
            ax.set_ylim(*ylim)
        if not stats:
            ax.text(0.5, 0.5, "no answers in the audit trail yet", ha="center", va="center", transform=ax.transAxes)
            continue
        ax.plot(days, values, marker="o", markersize=5 if len(stats) <= 31 else 2, color="C0")
        if ax is axes[2]:
            ax.plot(days, [nan if s.flagged_answer_share is None else s.flagged_answer_share for s in stats],
                    marker="s", markersize=5 if len(stats) <= 31 else 2, color="C1", label="answers flagged")
            ax.lines[0].set_label("sentences unsupported")
            ax.legend(fontsize=8, loc="upper left")
        if not ylim:
            ax.set_ylim(bottom=0, top=max([v for v in values if v == v] or [0]) * 1.1 or 1)
        for i, d in enumerate(adapter_days):
            ax.axvline(d, color="C3", linestyle="--", alpha=0.7, label="new adapter" if i == 0 else None)
        for i, d in enumerate(document_days):
            ax.axvline(d, color="grey", linestyle=":", alpha=0.7, label="documents changed" if i == 0 else None)
    if adapter_days or document_days:
        axes[0].legend(fontsize=8, loc="upper left")
    if stats:
        span = (days[-1] - days[0]).days
        margin = timedelta(days=max(1, span // 20))
        axes[0].set_xlim(days[0] - margin, days[-1] + margin)
        axes[0].xaxis.set_major_locator(mdates.DayLocator() if span <= 14 else mdates.AutoDateLocator())
        axes[0].xaxis.set_major_formatter(mdates.DateFormatter("%Y-%m-%d"))
    for ax in axes[2:]:
        ax.tick_params(axis="x", labelrotation=30, labelsize=8)
    fig.savefig(dest, format="png")
    return dest
