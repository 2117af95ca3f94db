"""Compare two evaluation runs (e.g. base model vs adapter, BM25 vs hybrid): per-metric deltas as a table and a plot,
and the questions whose verdict changed from run A to run B."""

from __future__ import annotations

import json
from pathlib import Path

from eval.metrics import ANSWER_KEYS, RETRIEVAL_KEYS, aggregate
from eval.report import DPI, SMALL, pyplot, run_records, verdict
from ingest.types import ComplyError


class CompareError(ComplyError):
    """A run directory cannot be compared: the directory and the reason."""

    def __init__(self, run_dir: str | Path, reason: str):
        self.run_dir = str(run_dir)
        self.reason = reason
        super().__init__(f"{self.run_dir}: {reason}")


def load_metrics(run_dir: str | Path) -> dict:
    """metrics.json of a run directory."""
    path = Path(run_dir) / "metrics.json"
    if not path.is_file():
        raise CompareError(run_dir, "no metrics.json here: not an evaluation run directory (comply eval --out)")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except ValueError as e:
        raise CompareError(run_dir, f"metrics.json is not valid JSON: {e}") from e


def _numeric(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def compare_runs(a_dir: str | Path, b_dir: str | Path, out: Path | None = None) -> dict:
    """Deltas (a, b, b - a) for every metric both runs report with a number in at least one of them, in
    aggregate()'s key order, and the questions of both runs whose verdict changed (`changed`). With `out`, writes
    compare.json, compare.md and compare.png there."""
    a, b = load_metrics(a_dir), load_metrics(b_dir)
    order = list(aggregate([]))
    shared = [key for key in a if key in b and key not in ("run", "per_document")]
    keys = [key for key in order if key in shared] + [key for key in shared if key not in order]
    rows = []
    for key in keys:
        va, vb = a[key], b[key]
        if not (_numeric(va) or _numeric(vb)):
            continue
        delta = vb - va if _numeric(va) and _numeric(vb) else None
        rows.append({"metric": key, "a": va, "b": vb, "delta": delta})
    result = {
        "a": {"dir": str(a_dir), "label": run_label(a, a_dir), "run": a.get("run") or {}},
        "b": {"dir": str(b_dir), "label": run_label(b, b_dir), "run": b.get("run") or {}},
        "rows": rows,
        "changed": changed_verdicts(a_dir, b_dir),
    }
    result["markdown"] = render_markdown(result)
    if out is not None:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        result["files"] = {"markdown": str(out / "compare.md"), "json": str(out / "compare.json")}
        (out / "compare.md").write_text(result["markdown"], encoding="utf-8")
        if plot_compare(result, out / "compare.png"):
            result["files"]["plot"] = str(out / "compare.png")
        (out / "compare.json").write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return result


def changed_verdicts(a_dir: str | Path, b_dir: str | Path) -> list[dict]:
    """The questions of both runs (eval.report.run_records) whose verdict (eval.report.verdict) differs, in run A's
    order: {id, question, a, b, reason_a, reason_b}."""
    b_records = {str(r["id"]): r for r in run_records(b_dir)}
    changed = []
    for ra in run_records(a_dir):
        rb = b_records.get(str(ra["id"]))
        if rb is None:
            continue
        (va, why_a), (vb, why_b) = verdict(ra), verdict(rb)
        if va != vb:
            changed.append({"id": str(ra["id"]), "question": ra.get("question"), "a": va, "b": vb,
                            "reason_a": why_a, "reason_b": why_b})
    return changed


def run_label(metrics: dict, run_dir: str | Path) -> str:
    """A short name for a run: retrieval mode, then model and adapter for answer runs."""
    run = metrics.get("run") or {}
    if not run:
        return Path(run_dir).name
    if run.get("retrieval_only"):
        return f"{run.get('mode')} (retrieval only)"
    adapter = Path(run["adapter"]).name if run.get("adapter") else "no adapter"
    return f"{run.get('mode')}, {run.get('model_name') or run.get('model')}, {adapter}"


def _fmt(value, signed: bool = False) -> str:
    if value is None:
        return "-"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:+d}" if signed else str(value)
    return f"{value:+.3f}" if signed else f"{value:.3f}"


def render_markdown(result: dict) -> str:
    """The comparison as a Markdown table (A, B, B - A)."""
    a, b = result["a"], result["b"]
    lines = [f"A: `{a['dir']}` ({a['label']}, {a['run'].get('n', '?')} questions)",
             f"B: `{b['dir']}` ({b['label']}, {b['run'].get('n', '?')} questions)", "",
             "| metric | A | B | B - A |", "| --- | --- | --- | --- |"]
    lines += [f"| {r['metric']} | {_fmt(r['a'])} | {_fmt(r['b'])} | {_fmt(r['delta'], signed=True)} |"
              for r in result["rows"]]
    changed = result.get("changed") or []
    lines += ["", f"Questions whose verdict changed: {len(changed)}"]
    if changed:
        lines += ["", "| id | question | A | B |", "| --- | --- | --- | --- |"]
        lines += [f"| {c['id']} | {' '.join(str(c['question'] or '').split()).replace('|', '/')} | {c['a']} | {c['b']} |"
                  for c in changed]
    return "\n".join(lines) + "\n"


def plot_compare(result: dict, path: Path) -> bool:
    """Grouped bars of A and B for the rate metrics (0-1), plus latency percentiles in a second panel."""
    plt = pyplot()
    rates = [r for r in result["rows"] if r["metric"] in (*RETRIEVAL_KEYS, *ANSWER_KEYS)]
    latency = [r for r in result["rows"] if r["metric"].startswith("latency.")]
    panels = [(rows, title) for rows, title in ((rates, "metrics"), (latency, "latency (ms)")) if rows]
    if not panels:
        return False
    fig, axes = plt.subplots(len(panels), 1, figsize=(max(8, 0.6 * max(len(p[0]) for p in panels) + 2),
                                                      4.5 * len(panels)), squeeze=False)
    for ax, (rows, title) in zip(axes[:, 0], panels, strict=True):
        xs = range(len(rows))
        ax.bar([x - 0.2 for x in xs], [r["a"] or 0 for r in rows], 0.4, label=f"A: {result['a']['label']}")
        ax.bar([x + 0.2 for x in xs], [r["b"] or 0 for r in rows], 0.4, label=f"B: {result['b']['label']}")
        ax.set_xticks(list(xs), [r["metric"].removeprefix("latency.") for r in rows], rotation=45, ha="right",
                      fontsize=SMALL)
        ax.set_title(title)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return True
