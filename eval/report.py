"""The report of one evaluation run: report.md (metrics with their definitions, worst questions, per-document
table) and PNG plots (metrics.png, latency.png, per_document.png, correctness.png), from metrics.json and
results.jsonl."""

from __future__ import annotations

import json
import os
from pathlib import Path

from eval.metrics import ANSWER_KEYS, LATENCY_KEYS, RETRIEVAL_KEYS

DOCS = Path(__file__).resolve().parent.parent / "docs" / "evaluation.md"
WORST = 10  # questions listed per "worst" table

# One-line definitions; the full ones are in docs/evaluation.md under the linked section.
DEFINITIONS = {
    "n_questions": ("questions in the run", "aggregateresults-k10"),
    "n_answerable": ("questions the documents answer", "aggregateresults-k10"),
    "n_unanswerable": ("questions the assistant should refuse", "aggregateresults-k10"),
    "recall@1": ("gold items found in the top 1 / gold items", "retrieval-metrics"),
    "recall@5": ("gold items found in the top 5 / gold items", "retrieval-metrics"),
    "recall@10": ("gold items found in the top 10 / gold items", "retrieval-metrics"),
    "map@10": ("mean of precision at each relevant rank <= 10, divided by the number of gold items",
               "retrieval-metrics"),
    "ndcg@10": ("binary-gain DCG of the top 10 / ideal DCG", "retrieval-metrics"),
    "mrr": ("1 / rank of the first relevant item", "retrieval-metrics"),
    "hit@10": ("share of questions with a gold item in the top 10", "retrieval-metrics"),
    "citation_precision": ("citations at a gold place / all citations in answers", "answer-metrics"),
    "citation_recall": ("answerable questions whose answer cites a gold place / judged answerable questions",
                        "answer-metrics"),
    "support_rate": ("sentences the verifier supports / all sentences of answers", "answer-metrics"),
    "answer_correct_rate": ("answers right against the gold answer (entailment both ways) / answers to answerable "
                            "questions with a gold answer", "answer-correctness"),
    "answer_correct_rate_answerable": ("the same / answerable questions with a gold answer (an abstention is not "
                                       "correct)", "answer-correctness"),
    "cited_answer_rate": ("answers with at least one citation / answers", "answer-metrics"),
    "cited_answer_rate_answerable": ("the same, answers to answerable questions only", "answer-metrics"),
    "model_cited_rate_answerable": ("answers to answerable questions in which the model itself wrote a valid [n] "
                                    "/ those answers", "answer-metrics"),
    "refusal_rate": ("abstentions / unanswerable questions", "answer-metrics"),
    "false_refusal_rate": ("abstentions / answerable questions", "answer-metrics"),
    "false_answer_rate": ("answers / unanswerable questions", "answer-metrics"),
    "n_citations": ("citations over all answers", "answer-metrics"),
}
RATE_KEYS = (*RETRIEVAL_KEYS, *ANSWER_KEYS)


def write_report(out_dir: str | Path, ids: list[str] | None = None) -> Path:
    """Write report.md and the plots of the run in out_dir (which holds metrics.json and results.jsonl).

    `ids` are the questions the metrics were computed over (default: every question in results.jsonl)."""
    out = Path(out_dir)
    metrics = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    by_id = {str(r["id"]): r for r in load_records(out / "results.jsonl")}
    records = [by_id[i] for i in (ids if ids is not None else by_id) if i in by_id]
    plots = [name for name, ok in (
        ("metrics.png", plot_metrics(metrics, out / "metrics.png")),
        ("latency.png", plot_latency(records, out / "latency.png")),
        ("per_document.png", plot_per_document(metrics.get("per_document") or {}, out / "per_document.png")),
        ("correctness.png", plot_correctness(records, out / "correctness.png",
                                             ((metrics.get("run") or {}).get("answer_correctness") or {})
                                             .get("threshold"))),
    ) if ok]
    path = out / "report.md"
    path.write_text(render_markdown(metrics, records, plots, _docs_link(out)), encoding="utf-8")
    return path


def load_records(path: Path) -> list[dict]:
    """The complete lines of a results.jsonl (an unfinished last line is skipped)."""
    if not path.is_file():
        return []
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            records.append(json.loads(line))
        except ValueError:
            continue
    return records


def _docs_link(out: Path) -> str:
    try:
        return Path(os.path.relpath(DOCS, out.resolve())).as_posix()
    except ValueError:  # another drive on Windows
        return DOCS.as_posix()


def fmt(value, digits: int = 3) -> str:
    """A metric value for a table: '-' for None, integers as is, floats rounded."""
    if value is None:
        return "-"
    if isinstance(value, bool) or isinstance(value, int):
        return str(int(value))
    return f"{value:.{digits}f}"


def render_markdown(metrics: dict, records: list[dict], plots: list[str], docs: str) -> str:
    """The Markdown report."""
    run = metrics.get("run") or {}
    lines = ["# Evaluation report", ""]
    what = "retrieval only" if run.get("retrieval_only") else (
        f"answers by {run.get('model_name') or run.get('model')}, adapter {run.get('adapter') or 'none'}")
    lines += [
        f"- dataset: `{run.get('dataset')}` ({run.get('n')} questions: {metrics.get('n_answerable')} answerable, "
        f"{metrics.get('n_unanswerable')} unanswerable){_selection(run)}",
        f"- run: {what}; retrieval `{run.get('mode')}`, {run.get('k')} ranked items per question scored",
        f"- index: generation {(run.get('index') or {}).get('generation')}, "
        f"{(run.get('index') or {}).get('documents')} documents, {(run.get('index') or {}).get('chunks')} chunks",
        f"- date: {run.get('date')}; {run.get('resumed', 0)} questions resumed from an earlier run, "
        f"{run.get('new', 0)} run now in {run.get('seconds')} s",
        *([] if run.get("retrieval_only") else [_correctness_line(run, records)]),
        "", "## Metrics", "",
        f"Definitions: [{docs}]({docs}). `-` means not measured in this run (or an empty denominator).", "",
        "| metric | value | definition |", "| --- | --- | --- |",
    ]
    for key, value in metrics.items():
        if key in ("run", "per_document") or key.startswith("latency."):
            continue
        text, anchor = DEFINITIONS.get(key, ("", "aggregateresults-k10"))
        lines.append(f"| {key} | {fmt(value)} | [{text or 'see docs'}]({docs}#{anchor}) |")
    lines += ["", "## Latency (ms)", "", "| timing | p50 | p95 |", "| --- | --- | --- |"]
    for name in LATENCY_KEYS:
        lines.append(f"| {name} | {fmt(metrics.get(f'latency.{name}.p50'), 1)} | "
                     f"{fmt(metrics.get(f'latency.{name}.p95'), 1)} |")
    lines += ["", f"Definition: [{docs}#latency]({docs}#latency)."]
    lines += _worst_retrieval(records)
    if not run.get("retrieval_only"):
        lines += _wrong_answers(records)
    lines += _per_document_table(metrics.get("per_document") or {})
    if plots:
        lines += ["", "## Plots", ""] + [f"![{name}]({name})" for name in plots]
    return "\n".join(lines) + "\n"


def _correctness_line(run: dict, records: list[dict]) -> str:
    judge = run.get("answer_correctness")
    if not judge:
        return "- answer correctness: not measured (no entailment model installed)"
    with_gold = sum(bool(r.get("gold_answer")) for r in records if r.get("answerable"))
    return (f"- answer correctness: judged by `{Path(judge['model']).name}` at threshold {judge['threshold']:.3f} "
            f"against the gold answers of {with_gold} answerable questions"
            + ("" if with_gold else " (the set has none, so it is not measured)"))


def _selection(run: dict) -> str:
    if run.get("limit") is None:
        return ""
    how = f"sample of {run['limit']}, seed {run['sample_seed']}" if run.get("sample_seed") is not None \
        else f"first {run['limit']}"
    return f", {how}"


def _cell(text: str | None, width: int = 90) -> str:
    text = " ".join(str(text or "").split()).replace("|", "\\|")
    return text if len(text) <= width else text[: width - 1] + "…"


def _worst_retrieval(records: list[dict]) -> list[str]:
    scored = [r for r in records if (r.get("scores") or {}).get("recall@10") is not None]
    scored.sort(key=lambda r: (r["scores"]["recall@10"], r["scores"]["rr"], str(r["id"])))
    worst = [r for r in scored if r["scores"]["recall@10"] < 1][:WORST]
    lines = ["", "## Worst retrieval", ""]
    if not worst:
        return lines + ["Every gold item of every answerable question is in its top 10."]
    lines += ["| id | question | recall@10 | RR | gold | top retrieved |", "| --- | --- | --- | --- | --- | --- |"]
    for r in worst:
        gold = "; ".join(_place(e) for e in r.get("evidence") or [])
        top = "; ".join(_place(x) for x in (r.get("retrieved") or [])[:3])
        lines.append(f"| {_cell(r['id'], 40)} | {_cell(r['question'])} | {fmt(r['scores']['recall@10'])} | "
                     f"{fmt(r['scores']['rr'])} | {_cell(gold, 60)} | {_cell(top, 60)} |")
    return lines


def _place(p: dict) -> str:
    parts = [str(p.get("document"))]
    if p.get("page") is not None:
        parts.append(f"p{p['page']}")
    where = p.get("passage_id") or p.get("clause")
    if where:
        parts.append(str(where))
    return " ".join(parts)


def _answer_problem(r: dict) -> str | None:
    if r.get("abstained") is None:
        return None
    if r["answerable"] and r["abstained"]:
        return "false refusal"
    if not r["answerable"] and not r["abstained"]:
        return "answered an unanswerable question"
    if r["abstained"]:
        return None
    if r.get("answer_correct") is False:
        return (f"wrong or incomplete against the gold answer (entailed {fmt(r.get('answer_entailed'), 2)}, "
                f"covers {fmt(r.get('answer_covers'), 2)})")
    citations = r.get("citations") or []
    if not citations:
        return "no citation"
    if not any(c.get("correct") for c in citations):
        return "no citation at a gold place"
    if not all(s.get("supported") for s in r.get("sentences") or []):
        return "unsupported sentence"
    return None


def _wrong_answers(records: list[dict]) -> list[str]:
    problems = [(p, r) for r in records if (p := _answer_problem(r))]
    lines = ["", "## Answers that went wrong", ""]
    if not problems:
        return lines + ["None: every answer cites a gold place with supported sentences (and agrees with the gold "
                        "answer where one was scored), and every unanswerable question was refused."]
    lines += [f"{len(problems)} of {len(records)} questions; the first {min(WORST, len(problems))}:", "",
              "| id | problem | question | answer | gold answer | citations |",
              "| --- | --- | --- | --- | --- | --- |"]
    for problem, r in problems[:WORST]:
        cites = "; ".join(f"[{c['n']}] {_place({'document': c['document_id'], 'page': c['page'], 'clause': c['clause']})}"
                          f"{' ✓' if c.get('correct') else ' ✗'}" for c in r.get("citations") or [])
        lines.append(f"| {_cell(r['id'], 40)} | {problem} | {_cell(r['question'], 70)} | {_cell(r.get('answer'), 90)} "
                     f"| {_cell(r.get('gold_answer'), 70)} | {_cell(cites, 60)} |")
    return lines


def _per_document_table(per_document: dict) -> list[str]:
    lines = ["", "## Per gold document", ""]
    if not per_document:
        return lines + ["No answerable questions."]
    lines += ["Recall@10 of the document's own gold items; citation precision over answers to its questions.", "",
              "| document | questions | recall@10 | citation precision | citations |", "| --- | --- | --- | --- | --- |"]
    for doc, row in per_document.items():
        lines.append(f"| {_cell(doc, 60)} | {row['n_questions']} | {fmt(row['recall@10'])} | "
                     f"{fmt(row['citation_precision'])} | {fmt(row['n_citations'])} |")
    return lines


# ---------- plots ----------

def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_metrics(metrics: dict, path: Path) -> bool:
    """Horizontal bars of every measured rate metric (0-1); False when none was measured."""
    rows = [(key, metrics[key]) for key in RATE_KEYS if isinstance(metrics.get(key), int | float)]
    if not rows:
        return False
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 0.35 * len(rows) + 1.2))
    names, values = zip(*rows, strict=True)
    bars = ax.barh(range(len(rows)), values, color=["#4c72b0" if k in RETRIEVAL_KEYS else "#dd8452" for k in names])
    ax.set_yticks(range(len(rows)), names)
    ax.invert_yaxis()
    ax.set_xlim(0, 1.1)
    ax.bar_label(bars, fmt="%.3f", padding=2, fontsize=8)
    ax.set_title(f"{metrics.get('n_questions')} questions")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def plot_latency(records: list[dict], path: Path) -> bool:
    """Histograms of total_ms and retrieval_ms over the questions; False when no timings were recorded."""
    series = [(name, [r["timings"][name] for r in records if (r.get("timings") or {}).get(name) is not None])
              for name in ("total_ms", "retrieval_ms")]
    series = [(name, values) for name, values in series if values]
    if not series:
        return False
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(series), figsize=(5 * len(series), 3.5), squeeze=False)
    for ax, (name, values) in zip(axes[0], series, strict=True):
        ax.hist(values, bins=min(30, max(5, len(values) // 3)), color="#4c72b0")
        ax.set_xlabel(f"{name} (ms)")
        ax.set_ylabel("questions")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def plot_per_document(per_document: dict, path: Path) -> bool:
    """Grouped bars per gold document: recall@10 and citation precision; False when there is no document."""
    if not per_document:
        return False
    plt = _pyplot()
    docs = list(per_document)
    series = [(key, [per_document[d][key] for d in docs]) for key in ("recall@10", "citation_precision")]
    series = [(key, values) for key, values in series if any(v is not None for v in values)]
    if not series:
        return False
    fig, ax = plt.subplots(figsize=(max(6, 0.45 * len(docs) + 2), 4))
    width = 0.8 / len(series)
    for i, (key, values) in enumerate(series):
        ax.bar([x + i * width for x in range(len(docs))], [v or 0 for v in values], width, label=key)
    ax.set_xticks([x + width * (len(series) - 1) / 2 for x in range(len(docs))], [d[:24] for d in docs],
                  rotation=60, ha="right", fontsize=8)
    ax.set_ylim(0, 1.2)
    ax.legend(loc="upper center", ncol=len(series), fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def plot_correctness(records: list[dict], path: Path, threshold: float | None = None) -> bool:
    """Each scored answer as a point: answer_entailed (is what it says in the gold answer?) against answer_covers
    (does it say what the gold answer says?), correct ones in green, the threshold dashed; False when no answer
    was scored."""
    rows = [r for r in records if r.get("answer_entailed") is not None and r.get("answer_covers") is not None]
    if not rows:
        return False
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 5))
    for correct, colour, label in ((True, "#55a868", "correct"), (False, "#c44e52", "not correct")):
        points = [(r["answer_covers"], r["answer_entailed"]) for r in rows if bool(r.get("answer_correct")) == correct]
        if points:
            ax.scatter(*zip(*points, strict=True), color=colour, label=f"{label} ({len(points)})", alpha=0.7)
    if threshold is not None:
        ax.axvline(threshold, color="grey", linestyle="--", linewidth=1)
        ax.axhline(threshold, color="grey", linestyle="--", linewidth=1)
    ax.set_xlim(-0.03, 1.03)
    ax.set_ylim(-0.03, 1.03)
    ax.set_xlabel("answer_covers: P(answer entails the gold answer), mean over its sentences")
    ax.set_ylabel("answer_entailed: P(gold answer entails each answer sentence), min")
    ax.xaxis.label.set_fontsize(8)
    ax.yaxis.label.set_fontsize(8)
    ax.set_title(f"{len(rows)} answers scored against the gold answer", fontsize=10)
    ax.legend(fontsize=8, loc="lower left")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True
