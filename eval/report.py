"""The report of one evaluation run: report.md (metrics with their definitions, worst questions, per-document
table) and PNG plots (metrics.png, latency.png, per_document.png, correctness.png), from metrics.json and
results.jsonl."""

from __future__ import annotations

import json
import os
from pathlib import Path

from assistant.words import parse_markers
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

# What each metric means, in one line of plain words (the app shows these beside the values).
MEANINGS = {
    "n_questions": "questions in this run",
    "n_answerable": "questions the documents answer",
    "n_unanswerable": "questions the documents do not answer (the assistant should say so)",
    "recall@1": "share of the gold passages that come first among the passages retrieved",
    "recall@5": "share of the gold passages among the first 5 retrieved",
    "recall@10": "share of the gold passages among the first 10 retrieved (for a question with one gold passage: "
                 "whether it is there)",
    "map@10": "how near the top the gold passages are in the first 10 (1 = all of them first)",
    "ndcg@10": "the same, counting a lower rank less: 1 = every gold passage ranked first",
    "mrr": "how high the first gold passage ranks: 1 = first, 0.5 = second, 0.33 = third, ...",
    "hit@10": "share of questions with at least one gold passage among the first 10 retrieved",
    "citation_precision": "share of the answers' citations that point to a gold passage",
    "citation_recall": "share of answerable questions whose answer cites a gold passage",
    "support_rate": "share of answer sentences that the passage they cite supports",
    "answer_correct_rate": "share of answers (to answerable questions) that say what the gold answer says",
    "answer_correct_rate_answerable": "the same over every answerable question (a refusal counts as not correct)",
    "cited_answer_rate": "share of answers that cite at least one source",
    "cited_answer_rate_answerable": "the same, answers to answerable questions only",
    "model_cited_rate_answerable": "share of answers to answerable questions in which the model itself cited a source",
    "refusal_rate": "share of unanswerable questions the assistant rightly declined",
    "false_refusal_rate": "share of answerable questions the assistant declined or withheld",
    "false_answer_rate": "share of unanswerable questions the assistant answered anyway",
    "n_citations": "citations in all the answers together",
}
TIMING_WORDS = {"retrieval_ms": "finding the passages", "first_token_ms": "until the answer starts",
                "total_ms": "the whole answer"}


def meaning(key: str) -> str:
    """The plain-words line for a metric key of metrics.json (latency percentiles included); '' when unknown."""
    if key.startswith("latency."):
        _, timing, p = key.split(".")
        share = "half of the questions" if p == "p50" else "95 in 100 questions"
        return f"{share} took at most this many milliseconds for {TIMING_WORDS.get(timing, timing)}"
    return MEANINGS.get(key, "")


# ---------- one question's verdict ----------

# What the assistant did with a question, in the words a reviewer uses (from a results.jsonl record).
CORRECT, WRONG_CITATION, NO_CITATION, UNSUPPORTED = "correct", "wrong citation", "no citation", "unsupported sentence"
DIFFERS, WITHHELD, FALSE_REFUSAL = "differs from gold answer", "withheld", "false refusal"
CORRECT_REFUSAL, ANSWERED_UNANSWERABLE = "correct refusal", "answered unanswerable"
GOLD_FOUND, GOLD_PARTLY_FOUND, GOLD_MISSED, NOT_JUDGED = "gold found", "gold partly found", "gold missed", "not judged"
VERDICTS = (CORRECT, WRONG_CITATION, NO_CITATION, UNSUPPORTED, DIFFERS, WITHHELD, FALSE_REFUSAL, CORRECT_REFUSAL,
            ANSWERED_UNANSWERABLE, GOLD_FOUND, GOLD_PARTLY_FOUND, GOLD_MISSED, NOT_JUDGED)
# Why no answer was given (assistant.types.AbstainReason's values), in words.
ABSTAIN_WORDS = {
    "no_sources": "nothing was retrieved",
    "low_relevance": "the best passage found was too far from the question to ask the model",
    "not_addressed": "the reranker found no passage that addresses the question, so the model was not asked",
    "model": "the model said the sources do not answer it",
    "low_confidence": "an answer was written, but the model was unsure of it",
    "unsupported": "an answer was written, but no sentence of it is stated in the passage it cites",
    "low_citation_score": "an answer was written, but the passage it cites is not clearly the one that answers it",
    "no_consensus": "an answer was written, but the two searches do not both rank its cited passage first "
                    "(strict citations)",
}
WITHHELD_REASONS = ("low_confidence", "unsupported", "low_citation_score", "no_consensus")


def verdict(record: dict) -> tuple[str, str]:
    """(verdict, reason) of one results.jsonl record: for an answer run correct / wrong citation / no citation /
    unsupported sentence / differs from gold answer / withheld / false refusal / correct refusal / answered
    unanswerable; for a retrieval-only run gold found / gold partly found / gold missed; `not judged` otherwise.
    The reason says why no answer was given, or everything that failed (records of older runs read the same)."""
    abstained, answerable = record.get("abstained"), record.get("answerable")
    if abstained is None:
        return _retrieval_verdict(record)
    reason = record.get("abstain_reason")
    words = ABSTAIN_WORDS.get(reason or "", "")
    if abstained:
        if not answerable:
            return CORRECT_REFUSAL, words
        draft = draft_cited(record)
        if draft:
            right = any(s.get("correct") for s in draft)
            words += f"; the draft cited {'a' if right else 'no'} gold passage ({cited_pages(record)})"
        return (WITHHELD if reason in WITHHELD_REASONS else FALSE_REFUSAL), words or "no answer was given"
    if not answerable:
        return ANSWERED_UNANSWERABLE, "the documents do not answer this question, but an answer was given"
    failed = []
    citations = record.get("citations") or []
    if not citations:
        failed.append((NO_CITATION, "the answer cites no source"))
    elif not any(c.get("correct") for c in citations):
        failed.append((WRONG_CITATION, f"cites {cited_pages(record)}, not a gold passage"))
    sentences = record.get("sentences") or []
    unsupported = [s for s in sentences if not s.get("supported")]
    if unsupported:
        issue = next((s["issue"] for s in unsupported if s.get("issue")), None)
        failed.append((UNSUPPORTED, f"{len(unsupported)} of {len(sentences)} sentences not supported by the passage "
                                    f"they cite" + (f" ({issue})" if issue else "")))
    if record.get("answer_correct") is False:
        failed.append((DIFFERS, f"differs from the gold answer (entailed {fmt(record.get('answer_entailed'), 2)}, "
                                f"covers {fmt(record.get('answer_covers'), 2)})"))
    if not failed:
        return CORRECT, "cites a gold passage" + ("" if record.get("answer_correct") else
                                                  " (not checked against a gold answer)")
    return failed[0][0], "; ".join(why for _, why in failed)


def _retrieval_verdict(record: dict) -> tuple[str, str]:
    recall = (record.get("scores") or {}).get("recall@10")
    if not record.get("answerable"):
        return NOT_JUDGED, "the documents do not answer it: retrieval is not scored (run with answers to judge it)"
    if recall is None:
        return NOT_JUDGED, "no gold passage given"
    retrieved = record.get("retrieved") or []
    ranks = [r["rank"] for r in retrieved if r.get("relevant")]
    if not ranks:
        first = f"; first retrieved: {_page(retrieved[0])}" if retrieved else ""
        return GOLD_MISSED, f"no gold passage among the first {len(retrieved) or 10} retrieved{first}"
    at = "rank " + ", ".join(str(r) for r in ranks)
    if recall < 1:
        found = len(ranks)
        return GOLD_PARTLY_FOUND, f"{found} of {len(record.get('evidence') or [])} gold passages found (at {at})"
    return GOLD_FOUND, f"gold passage at {at}"


def _page(place: dict) -> str:
    """'aml_kyc_policy.pdf p. 4 (3.1.(c))': a document (its file name where known), page and clause or passage."""
    name = Path(place["file"]).name if place.get("file") else str(place.get("document") or place.get("document_id"))
    text = name + (f" p. {place['page']}" if place.get("page") is not None else "")
    where = place.get("passage_id") or place.get("clause")
    return text + (f" ({where})" if where else "")


def draft_cited(record: dict) -> list[dict]:
    """The recorded sources that the draft of an answer not shown names with [n] (raw_answer); [] for an answer
    shown, a draft without citations, or a run that did not record its sources."""
    if not record.get("abstained") or not record.get("sources"):
        return []
    by_n = {s["n"]: s for s in record["sources"]}
    return [by_n[n] for n in dict.fromkeys(parse_markers(record.get("raw_answer") or "")) if n in by_n]


def cited_pages(record: dict) -> str:
    """The places an answer cites (for an answer not shown: those its draft cited, as 'draft: ...'), '; '-joined
    without repeats ('' for none, or a retrieval-only run)."""
    citations = record.get("citations") or []
    draft = [] if citations else draft_cited(record)
    pages = "; ".join(dict.fromkeys(_page(c) for c in citations or draft))
    return f"draft: {pages}" if draft else pages


def gold_pages(record: dict) -> str:
    """The question's gold places, '; '-joined without repeats ('' for an unanswerable question)."""
    return "; ".join(dict.fromkeys(_page(e) for e in record.get("evidence") or []))


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


def run_records(run_dir: str | Path) -> list[dict]:
    """The records of a run's questions: those of results.jsonl whose metrics are in metrics.json (its run's `ids`,
    in that order), or every complete record when the run is not finished or predates `ids`."""
    run_dir = Path(run_dir)
    records = load_records(run_dir / "results.jsonl")
    try:
        ids = (json.loads((run_dir / "metrics.json").read_text(encoding="utf-8")).get("run") or {}).get("ids")
    except (OSError, ValueError):
        ids = None
    if ids is None:
        return records
    by_id = {str(r.get("id")): r for r in records}
    return [by_id[i] for i in ids if i in by_id]


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

DPI = 130  # with FONT_SIZE: a plot shown at about its own width (700-900 px) reads like the page's text
FONT_SIZE = 11
SMALL = 10  # tick labels and legends


def pyplot():
    """matplotlib's pyplot on the Agg backend (files only, no display), with comply's readable font sizes."""
    import matplotlib  # here, not at the top: a heavy optional dependency that only the plots need

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # here too, and after the backend is chosen

    plt.rcParams.update({"font.size": FONT_SIZE, "axes.titlesize": FONT_SIZE + 1, "axes.labelsize": FONT_SIZE,
                         "xtick.labelsize": SMALL, "ytick.labelsize": SMALL, "legend.fontsize": SMALL})
    return plt


def plot_metrics(metrics: dict, path: Path) -> bool:
    """Horizontal bars of every measured rate metric (0-1); False when none was measured."""
    rows = [(key, metrics[key]) for key in RATE_KEYS if isinstance(metrics.get(key), int | float)]
    if not rows:
        return False
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 0.4 * len(rows) + 1.2))
    names, values = zip(*rows, strict=True)
    bars = ax.barh(range(len(rows)), values, color=["#4c72b0" if k in RETRIEVAL_KEYS else "#dd8452" for k in names])
    ax.set_yticks(range(len(rows)), names)
    ax.invert_yaxis()
    ax.set_xlim(0, 1.1)
    ax.bar_label(bars, fmt="%.3f", padding=2, fontsize=SMALL)
    ax.set_title(f"{metrics.get('n_questions')} questions")
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return True


def plot_latency(records: list[dict], path: Path) -> bool:
    """Histograms of total_ms and retrieval_ms over the questions; False when no timings were recorded."""
    series = [(name, [r["timings"][name] for r in records if (r.get("timings") or {}).get(name) is not None])
              for name in ("total_ms", "retrieval_ms")]
    series = [(name, values) for name, values in series if values]
    if not series:
        return False
    plt = pyplot()
    fig, axes = plt.subplots(1, len(series), figsize=(5 * len(series), 3.8), squeeze=False)
    for ax, (name, values) in zip(axes[0], series, strict=True):
        ax.hist(values, bins=min(30, max(5, len(values) // 3)), color="#4c72b0")
        ax.set_xlabel(f"{name} (ms): {TIMING_WORDS.get(name, name)}")
        ax.set_ylabel("questions")
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return True


def plot_per_document(per_document: dict, path: Path) -> bool:
    """Grouped bars per gold document: recall@10 and citation precision; False when there is no document."""
    if not per_document:
        return False
    plt = pyplot()
    docs = list(per_document)
    series = [(key, [per_document[d][key] for d in docs]) for key in ("recall@10", "citation_precision")]
    series = [(key, values) for key, values in series if any(v is not None for v in values)]
    if not series:
        return False
    fig, ax = plt.subplots(figsize=(max(7, 0.55 * len(docs) + 2), 4.8))
    width = 0.8 / len(series)
    for i, (key, values) in enumerate(series):
        ax.bar([x + i * width for x in range(len(docs))], [v or 0 for v in values], width, label=key)
    ax.set_xticks([x + width * (len(series) - 1) / 2 for x in range(len(docs))], [d[:28] for d in docs],
                  rotation=45, ha="right")
    ax.set_ylim(0, 1.2)
    ax.legend(loc="upper center", ncol=len(series))
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return True


def plot_correctness(records: list[dict], path: Path, threshold: float | None = None) -> bool:
    """Each scored answer as a point: answer_entailed (is what it says in the gold answer?) against answer_covers
    (does it say what the gold answer says?), correct ones in green, the threshold dashed; False when no answer
    was scored."""
    rows = [r for r in records if r.get("answer_entailed") is not None and r.get("answer_covers") is not None]
    if not rows:
        return False
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 6))
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
    ax.xaxis.label.set_fontsize(SMALL)
    ax.yaxis.label.set_fontsize(SMALL)
    ax.set_title(f"{len(rows)} answers scored against the gold answer")
    ax.legend(loc="lower left")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return True
