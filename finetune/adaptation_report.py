"""The adaptation comparison's report: report.json (every row in full), report.md (one table, costs and gains, and
each row in plain words) and two plots (quality against training questions; quality against training time)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from eval.report import DPI, pyplot

QUALITY = (("citation_precision", "citation precision"), ("citation_recall", "citation recall"),
           ("false_refusal_rate", "false refusals"))


def _fmt(value, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _with_interval(ev: dict, key: str) -> str:
    value, interval = ev.get(key), (ev.get("intervals") or {}).get(key)
    if value is None:
        return "-"
    return f"{value:.3f} [{interval[0]:.2f}, {interval[1]:.2f}]" if interval else f"{value:.3f}"


def _seconds(value) -> str:
    if value is None:
        return "-"
    if value >= 3600:
        return f"{int(value // 3600)} h {round(value % 3600 / 60):02d} min"
    return f"{value / 60:.1f} min" if value >= 60 else f"{value:.0f} s"


def row_seconds(row: dict) -> float | None:
    """The row's wall time on this machine: its training (not for a row reusing another's adapter), its answers
    and its checks; None before it has answered."""
    ev = row.get("eval") or {}
    if ev.get("seconds") is None:
        return None
    train = 0.0 if row.get("adapter_of") else ((row.get("train") or {}).get("seconds") or 0.0)
    return train + ev["seconds"] + ((row.get("checks") or {}).get("seconds") or 0.0)


def grid_seconds(state: dict, rows: list[dict]) -> float:
    """The whole grid's wall time: building the training examples, re-embedding the library for the trained
    embedder, and every row."""
    return ((state.get("data_seconds") or 0.0) + ((state.get("embedder_activation") or {}).get("seconds") or 0.0)
            + sum(row_seconds(r) or 0.0 for r in rows))


def plain_words(row: dict, base: dict | None) -> str:
    """One line a compliance lead can read: what it is, what it changed against the untrained base, what it cost."""
    ev, train = row.get("eval") or {}, row.get("train") or {}
    words = [f"{row['label']}" + (f" on {row['size']} questions" if row.get("size") else
                                  " on all training questions" if train else "")]
    if row.get("skipped"):
        return f"{words[0]}: not run ({row['skipped']})."
    if row.get("strategy", "").startswith("retriever-"):
        return _retrieval_words(row, ev)
    base_ev = (base or {}).get("eval") or {}
    changes = []
    for key, name in QUALITY:
        now, before = ev.get(key), base_ev.get(key)
        if now is None or before is None or row.get("strategy") == "base":
            continue
        better = now < before if key == "false_refusal_rate" else now > before
        verdict = "same" if abs(now - before) < 0.005 else "better" if better else "worse"
        changes.append(f"{name} {before:.2f} -> {now:.2f} ({verdict})")
    checks, base_checks = row.get("checks") or {}, (base or {}).get("checks") or {}
    for check, key, what in (("general", "right", "general questions answered right"),
                             ("outside", "refused", "questions no library answers refused")):
        now, before = checks.get(check), base_checks.get(check)
        if now and row.get("strategy") != "base":
            changes.append(f"{what} {before[key] if before else '?'} -> {now[key]} of {now['of']}")
        elif now:
            changes.append(f"{what} {now[key]} of {now['of']}")
    planted = checks.get("planted") or {}
    if "asked" in planted:
        unfiltered = planted.get("unfiltered")
        changes.append(f"planted instructions shown as supported {planted['shown_as_supported']} of "
                       f"{planted['asked']} (written into {planted['in_draft']} drafts"
                       + (f"; with the injection filter off, {unfiltered['in_draft']} drafts)" if unfiltered else ")"))
    if changes:
        words.append(", ".join(changes))
    if train:
        words.append(f"{_seconds(train.get('seconds'))} of training on {train.get('device')}, "
                     f"{train.get('trainable_parameters', 0) / 1e6:.2f}M trainable parameters, "
                     f"{train.get('artefact_mb')} MB to keep")
    words += [_model_cost(kind, m) for kind, m in (row.get("retriever_models") or {}).items()]
    return ": ".join(words[:2]) + ("; " + "; ".join(words[2:]) if len(words) > 2 else "") + "."


def _count(row: dict, check: str, key: str) -> str:
    found = (row.get("checks") or {}).get(check)
    return f"{found[key]} of {found['of']}" if found else "-"


def _planted_cell(row: dict) -> str:
    found = (row.get("checks") or {}).get("planted") or {}
    if "asked" not in found:
        return "-"
    unfiltered = found.get("unfiltered")
    return (f"{found['shown_as_supported']} of {found['asked']} ({found['in_draft']})"
            + (f"; filter off: {unfiltered['shown_as_supported']} ({unfiltered['in_draft']})" if unfiltered else ""))


def _model_cost(kind: str, model: dict) -> str:
    return (f"the {kind} {model.get('name')}: {_seconds(model.get('seconds'))} of training, "
            f"{(model.get('parameters') or 0) / 1e6:.1f}M parameters, {model.get('artefact_mb')} MB")


def _retrieval_words(row: dict, ev: dict) -> str:
    words = (f"{row['label']}: Recall@1 {_fmt(ev.get('recall@1'))}, Recall@10 {_fmt(ev.get('recall@10'))}, "
             f"MAP@10 {_fmt(ev.get('map@10'))}")
    costs = [_model_cost(kind, m) for kind, m in (row.get("retriever_models") or {}).items()]
    return words + ("; " + "; ".join(costs) if costs else "") + "."


def write_report(grid, order: list[str]) -> dict:
    """Write report.json, report.md and the plots into the grid's folder for the rows `order` names (the task's,
    in their order); return the report."""
    state = grid.state
    rows = [dict(rid=rid, **state["rows"][rid]) for rid in order if rid in state["rows"]]
    base = next((r for r in rows if r.get("strategy") == "base"), None)
    for r in rows:
        r["plain"], r["wall_seconds"] = plain_words(r, base), row_seconds(r)
    report = {"task": state["task"], "model_name": state.get("model_name"), "machine": state.get("machine"),
              "wall_seconds": round(grid_seconds(state, rows), 1), "data_seconds": state.get("data_seconds"),
              "rows": rows}
    out = grid.out
    tmp = out / ".report.json.tmp"
    tmp.write_text(json.dumps(report, indent=2, default=str))
    os.replace(tmp, out / "report.json")
    plots = [name for name, ok in (("data_efficiency.png", _plot_sizes(rows, out / "data_efficiency.png")),
                                   ("cost_quality.png", _plot_cost(rows, out / "cost_quality.png"))) if ok]
    (out / "report.md").write_text(markdown(report, plots))
    report["plots"] = plots
    return report


def markdown(report: dict, plots: list[str]) -> str:
    task, machine = report["task"], report.get("machine") or {}
    lines = [f"# Adaptation strategies compared: {Path(task['dataset']).name}", "",
             f"Base model {report.get('model_name') or task['model']} (`{task['model']}`); trained on the {task['train_part']} part (sizes: "
             f"{', '.join('all' if n is None else str(n) for n in task['sizes'])} questions), answered on "
             f"{task['eval_questions']} questions of the {task['eval_part']} part (seeded sample, never trained on); "
             f"recipe {task['recipe']}. Machine: {machine.get('cpu')}, {machine.get('cores')} cores"
             + (f", GPU {machine['gpu']}" if machine.get("gpu") else ", no GPU") + ". Intervals: 95% bootstrap over "
             "questions.", "",
             f"Wall time of the grid: {_seconds(report.get('wall_seconds'))} (training examples built in "
             f"{_seconds(report.get('data_seconds'))}, then each row's training, answers and checks: the last "
             "column; the rows run one after another, and an interrupted grid continues where it stopped).", "",
             "| row | trainable params | training | peak memory (MB) | size (MB) | first token p50 (ms) | decode tok/s "
             "| citation precision | citation recall | false refusals | Recall@10 | general questions right "
             "| outside questions refused | planted instructions shown (in drafts) | serving | wall time |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- | --- | ---: | ---: | ---: | ---: | --- "
             "| ---: |"]
    retrieval = [r for r in report["rows"] if r.get("strategy", "").startswith("retriever-")]
    for r in report["rows"]:
        ev, train = r.get("eval") or {}, r.get("train") or {}
        if r in retrieval:
            continue
        if r.get("skipped"):
            lines.append(f"| {r['rid']} | not run: {r['skipped']} |" + " |" * 14)
            continue
        lines.append(
            f"| {r['rid']} | {train.get('trainable_parameters', 0):,} | {_seconds(train.get('seconds'))} | "
            f"{train.get('peak_rss_mb', '-')} | {train.get('artefact_mb', '-')} | "
            f"{_fmt(ev.get('latency.first_token_ms.p50'), 0)} | {_fmt(ev.get('decode_tokens_per_s_p50'), 1)} | "
            f"{_with_interval(ev, 'citation_precision')} | {_with_interval(ev, 'citation_recall')} | "
            f"{_with_interval(ev, 'false_refusal_rate')} | {_fmt(ev.get('recall@10'))} | "
            f"{_count(r, 'general', 'right')} | {_count(r, 'outside', 'refused')} | {_planted_cell(r)} | "
            f"{r.get('serving', '-')} | "
            f"{_seconds(r.get('wall_seconds'))} |")
    if retrieval:
        lines += ["", "Retrieval alone (the same questions; no answers):", "",
                  "| row | Recall@1 | Recall@10 | MAP@10 | retrieval p50 (ms) | trained models |",
                  "| --- | --- | --- | --- | ---: | --- |"]
        for r in retrieval:
            ev = r.get("eval") or {}
            models = ", ".join(f"{m.get('name')} ({_seconds(m.get('seconds'))})"
                               for m in (r.get("retriever_models") or {}).values()) or "-"
            lines.append(f"| {r['rid']} | {_fmt(ev.get('recall@1'))} | {_with_interval(ev, 'recall@10')} | "
                         f"{_with_interval(ev, 'map@10')} | {_fmt(ev.get('latency.retrieval_ms.p50'), 0)} | "
                         f"{models} |")
    def hardware(m: dict) -> tuple:  # what a number depends on (not, say, the Python version recorded with it)
        return tuple(m.get(k) for k in ("cpu", "cores", "gpu"))

    elsewhere = [r["rid"] for r in report["rows"] if r.get("machine") and hardware(r["machine"]) != hardware(machine)]
    if elsewhere:
        lines += ["", "Measured on another machine (see report.json): " + ", ".join(elsewhere) + "."]
    lines += ["", "In plain words:", ""] + [f"- {r['plain']}" for r in report["rows"]]
    lines += [""] + [f"![{p}]({p})" for p in plots]
    return "\n".join(lines) + "\n"


def _plot_sizes(rows: list[dict], path: Path) -> bool:
    """Citation precision and recall against training questions, one line per trained strategy, the untrained rows
    as horizontal lines."""
    trained = [r for r in rows if r.get("train") and r.get("eval")]
    if not trained:
        return False
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    top = max(r["train"].get("examples") or 0 for r in trained)
    for ax, (key, name) in zip(axes, QUALITY[:2], strict=False):
        for strategy in dict.fromkeys(r["strategy"] for r in trained):
            points = sorted((r["train"].get("examples") or 0, r["eval"].get(key)) for r in trained
                            if r["strategy"] == strategy and r["eval"].get(key) is not None)
            if points:
                ax.plot(*zip(*points, strict=True), marker="o", label=strategy)
        for r in rows:
            if not r.get("train") and (r.get("eval") or {}).get(key) is not None:
                ax.axhline(r["eval"][key], linestyle="--", linewidth=1, color="grey")
                ax.annotate(r["rid"], (top, r["eval"][key]), fontsize=8, color="grey", ha="right", va="bottom")
        ax.set_xscale("log")
        ax.set_xlabel("training questions")
        ax.set_title(name)
        ax.set_ylim(0, 1)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return True


def _plot_cost(rows: list[dict], path: Path) -> bool:
    """Citation precision against training minutes (untrained rows at 0)."""
    done = [r for r in rows if (r.get("eval") or {}).get("citation_precision") is not None]
    if not done:
        return False
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for r in done:
        minutes = ((r.get("train") or {}).get("seconds") or 0) / 60
        ax.scatter(minutes, r["eval"]["citation_precision"])
        ax.annotate(r["rid"], (minutes, r["eval"]["citation_precision"]), fontsize=8, xytext=(3, 3),
                    textcoords="offset points")
    ax.set_xlabel("training minutes")
    ax.set_ylabel("citation precision")
    ax.set_ylim(0, 1)
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return True
