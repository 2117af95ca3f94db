"""The Evaluation tab (admins): run a gold question set through the real pipeline in the background (with progress,
a time estimate beforehand and a Cancel button), see the metrics with what each means, the plots and one row per
question with its verdict (filterable; a row opens the answer and its sources), and compare two stored runs
(metric changes and the questions whose verdict changed)."""

import json
import re
import shutil
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import gradio as gr
import pandas as pd
from gradio.context import get_render_context
from PIL import Image

from assistant.app import actions_admin
from assistant.app.audit import AuditError
from assistant.app.ui.services import Services, refused, stored_gold_sets
from eval.compare import compare_runs
from eval.datasets import DatasetError, load_dataset
from eval.report import (
    VERDICTS,
    cited_pages,
    draft_cited,
    gold_pages,
    load_records,
    meaning,
    run_records,
    verdict,
)
from eval.runner import CONFIG_FILE, METRICS_FILE, RESULTS_FILE, RunCancelled, RunError

PLOTS = {"metrics.png": "Metrics", "latency.png": "Time per question", "per_document.png": "Per gold document",
         "correctness.png": "Answers against the gold answers"}
CORRECTNESS_COLUMN = "Correct vs gold answer (entailed / covers)"
QUESTION_COLUMNS = ["Id", "Question", "Verdict", "Cited page", "Gold page", "Reason", CORRECTNESS_COLUMN,
                    "Recall@10", "Time (ms)"]
METRIC_COLUMNS = ["Metric", "Value", "What it means"]
COMPARE_COLUMNS = ["Metric", "Run A", "Run B", "Change (B - A)", "What it means"]
CHANGED_COLUMNS = ["Question", "Verdict A", "Verdict B", "Why (B)"]
ALL = "All verdicts"
# Per question, when no earlier run on this server measured it (2 CPU cores: retrieval about 0.1 s; an answer by
# the 1.5B default model about 10 s, plus checking it and scoring it against the gold answer).
ROUGH_MS = {True: 200.0, False: 15_000.0}
PICK_ROW = "Select a row of the table to see that question's answer and its sources here."


def runs_dir(services: Services) -> Path:
    """Where evaluation runs are kept: <home>/eval/runs/<run>."""
    return services.settings.eval_dir / "runs"


def stored_runs(services: Services) -> list[str]:
    """Names of the finished runs (those with metrics.json), newest first."""
    root = runs_dir(services)
    if not root.is_dir():
        return []
    return sorted((p.name for p in root.iterdir() if (p / METRICS_FILE).is_file()), reverse=True)


def run_folder(services: Services, name: str | None) -> Path | None:
    """The folder of a run (finished or not) by its name; None for anything else (no paths from the browser)."""
    root = runs_dir(services)
    if not name or not root.is_dir() or name not in {p.name for p in root.iterdir() if p.is_dir()}:
        return None
    return root / name


def unfinished_run(services: Services, dataset: Path, retrieval_only: bool) -> Path | None:
    """The newest run folder of this gold set and mode that was stopped before the end (results.jsonl but no
    metrics.json): a new run goes on there."""
    root = runs_dir(services)
    if not root.is_dir():
        return None
    for folder in sorted(root.iterdir(), reverse=True):
        config = folder / CONFIG_FILE
        if (folder / METRICS_FILE).exists() or not config.is_file():
            continue
        try:
            held = json.loads(config.read_text(encoding="utf-8"))
        except ValueError:
            continue
        if held.get("dataset") == str(dataset.resolve()) and bool(held.get("retrieval_only")) == retrieval_only:
            return folder
    return None


# ---------- the time estimate ----------

def measured_ms(services: Services, retrieval_only: bool) -> tuple[float, str] | None:
    """(average time per question in ms, run name) of the newest finished run on this server in the same mode
    (retrieval only, or answers by the configured model): its questions' total_ms (retrieval_ms for retrieval
    only); None when there is none."""
    root = runs_dir(services)
    key = "retrieval_ms" if retrieval_only else "total_ms"
    for name in stored_runs(services):
        try:
            run = json.loads((root / name / METRICS_FILE).read_text(encoding="utf-8")).get("run") or {}
        except ValueError:
            continue
        if bool(run.get("retrieval_only")) != retrieval_only:
            continue
        if not retrieval_only and run.get("model") != services.settings.generator_model:
            continue
        times = [t[key] for r in run_records(root / name)
                 if (t := r.get("timings") or {}).get(key) is not None]
        if times:
            return sum(times) / len(times), name
    return None


def estimate_text(questions: int, done: int, retrieval_only: bool, measured: tuple[float, str] | None) -> str:
    """What the estimate says before a run: how many questions, about how long, and where the time per question
    comes from (a measured run, or the rough default for the mode)."""
    todo = max(questions - done, 0)
    per_ms, source = (measured if measured else (ROUGH_MS[retrieval_only], None))
    what = "retrieval only" if retrieval_only else "full answers"
    each = f"{per_ms:.0f} ms" if per_ms < 1000 else f"{per_ms / 1000:.1f} s"
    if source:
        basis = f"{each} a question, the average of the latest run of this kind on this server " \
                f"({source})"
    else:
        basis = f"{each} a question, a rough default for {what} (no earlier run of this kind on " \
                f"this server to measure)"
    resumed = f"; {done} were already done by an unfinished run, which this one continues" if done else ""
    load = "" if retrieval_only else ", plus loading the models if they are not loaded yet"
    return (f"**Estimate**: {questions} questions ({what}{resumed}): about {duration(todo * per_ms / 1000)} "
            f"at {basis}{load}.")


def question_limit(text: str | float | None) -> int | None:
    """The "Questions" box: None (all) when empty, else a whole number of at least 1 (ValueError in words)."""
    text = str(text if text is not None else "").strip()
    if not text:
        return None
    if not re.fullmatch(r"\d+", text) or int(text) < 1:
        raise ValueError(f"Questions: {text!r} is not a number of questions; leave it empty for all.")
    return int(text)


def duration(seconds: float) -> str:
    """'40 s', '3 min', '1 h 20 min'."""
    if seconds < 90:
        return f"{max(seconds, 1):.0f} s"
    minutes = round(seconds / 60)
    return f"{minutes} min" if minutes < 60 else f"{minutes // 60} h {minutes % 60} min"


# ---------- what a run shows ----------

def metrics_table(metrics: dict) -> pd.DataFrame:
    """The flat metrics (counts, retrieval, answers, latency) with their values and what each means."""
    rows = []
    for key, value in metrics.items():
        if isinstance(value, dict | list):
            continue
        shown = "not measured" if value is None else (f"{value:.3f}" if isinstance(value, float) else str(value))
        rows.append([key, shown, meaning(key)])
    return pd.DataFrame(rows, columns=METRIC_COLUMNS)


def question_row(record: dict) -> list:
    """One row of the per-question table (QUESTION_COLUMNS) from a results.jsonl record."""
    said, reason = verdict(record)
    timings = record.get("timings") or {}
    elapsed = timings.get("total_ms", timings.get("retrieval_ms"))
    return [str(record.get("id")), record.get("question"), said, cited_pages(record), gold_pages(record), reason,
            correctness_cell(record), _num((record.get("scores") or {}).get("recall@10")),
            None if elapsed is None else round(elapsed)]


def questions_table(run_dir: Path, text: str = "", verdict_shown: str | None = None) -> pd.DataFrame:
    """One row per question of a run (eval.report.run_records); with `text`, only the rows that contain it (any case,
    in the id, question, verdict, pages or reason), with `verdict_shown`, only that verdict."""
    rows = [question_row(r) for r in run_records(run_dir)]
    needle = " ".join((text or "").split()).casefold()
    if needle:
        rows = [row for row in rows if needle in " ".join(str(cell) for cell in row[:6]).casefold()]
    if verdict_shown and verdict_shown != ALL:
        rows = [row for row in rows if row[2] == verdict_shown]
    return pd.DataFrame(rows, columns=QUESTION_COLUMNS)


def verdict_choices(run_dir: Path) -> list[tuple[str, str]]:
    """The filter's choices: all, then each verdict of the run with its count, in VERDICTS order."""
    counts: dict[str, int] = {}
    for record in run_records(run_dir):
        said = verdict(record)[0]
        counts[said] = counts.get(said, 0) + 1
    return [(ALL, ALL)] + [(f"{v} ({counts[v]})", v) for v in VERDICTS if v in counts]


def correctness_cell(record: dict) -> str:
    """'yes (0.97 / 0.91)' or 'no (0.12 / 0.80)' for a scored answer, 'yes' / 'no' for an abstention or an
    unanswerable question; empty when not scored."""
    correct = record.get("answer_correct")
    if correct is None:
        return ""
    said = "yes" if correct else "no"
    if record.get("answer_entailed") is None:
        return said
    return f"{said} ({record['answer_entailed']:.2f} / {record['answer_covers']:.2f})"


def _num(value) -> str:
    return "" if value is None else (f"{value:.3f}" if isinstance(value, float) else str(value))


def load_image(path: Path):
    """A PNG as a PIL image (handed to Gradio as pixels, so no folder of the home is exposed as files)."""
    with Image.open(path) as image:
        return image.copy()


def run_outputs(out: Path) -> tuple[pd.DataFrame, list, pd.DataFrame]:
    """Metrics table, plots (image, caption) and per-question table of a finished run folder."""
    metrics = json.loads((out / METRICS_FILE).read_text(encoding="utf-8"))
    plots = [(load_image(out / name), name.removesuffix(".png").replace("_", " "))
             for name in PLOTS if (out / name).is_file()]
    return metrics_table(metrics), plots, questions_table(out)


def compare_table(result: dict) -> pd.DataFrame:
    """compare_runs' rows: each metric in run A, run B, the change B - A and what the metric means."""
    rows = [[r["metric"], _num(r.get("a")), _num(r.get("b")), _num(r.get("delta")), meaning(r["metric"])]
            for r in result.get("rows", [])]
    return pd.DataFrame(rows, columns=COMPARE_COLUMNS)


def changed_table(result: dict) -> pd.DataFrame:
    """compare_runs' questions whose verdict changed: question, verdict in A, verdict in B, why (B)."""
    rows = [[c["question"], c["a"], c["b"], c["reason_b"]] for c in result.get("changed", [])]
    return pd.DataFrame(rows, columns=CHANGED_COLUMNS)


# ---------- one question's answer and sources ----------

def _md(text) -> str:
    """Text from a document or a model as Markdown that shows it as written (no headings, emphasis or links)."""
    return re.sub(r"([\\`*_{}\[\]<>#|~])", r"\\\1", " ".join(str(text or "").split()))


def _cut(text: str, limit: int = 400) -> str:
    text = " ".join(str(text or "").split())
    return text if len(text) <= limit else text[:limit].rsplit(" ", 1)[0] + " …"


def _source(head: str, place: dict, gold: bool | None, text: str | None) -> str:
    """One source under an answer: '- [1] aml_kyc_policy.pdf p. 4 (3.1.(c)) (gold passage): “quote”' (no mark when
    `gold` is None)."""
    mark = "" if gold is None else (" (gold passage)" if gold else " (not a gold passage)")
    quote = f": “{_md(_cut(text))}”" if text else ""
    return f"- {head} {_md(gold_pages({'evidence': [place]}))}{mark}{quote}"


def answer_details(record: dict, passages: dict[str, str]) -> str:
    """A question's answer and its sources as Markdown: the verdict and why, the gold answer and places, the answer
    (or the draft that was withheld), each citation with its document, page, clause and quote, and for a question
    not answered (or a retrieval-only run) the passages retrieved first. `passages` maps chunk ids to their text."""
    said, reason = verdict(record)
    lines = [f"#### {_md(record.get('question'))}", "",
             f"**Verdict**: {said}" + (f": {_md(reason)}" if reason else "") + f" (question `{record.get('id')}`)",
             ""]
    if record.get("gold_answer"):
        lines += [f"**Gold answer**: {_md(record['gold_answer'])}", ""]
    gold = record.get("evidence") or []
    if gold:
        lines += ["**Gold passage**: " + "; ".join(
            _md(gold_pages({"evidence": [e]})) + (f": “{_md(_cut(e['quote'], 200))}”" if e.get("quote") else "")
            for e in gold), ""]
    elif record.get("answerable") is False:
        lines += ["**Gold**: the documents do not answer this question.", ""]
    if record.get("abstained") is not None:
        lines += [f"**Answer**: {_md(record.get('answer'))}", ""]
        if record.get("abstained") and record.get("raw_answer"):
            lines += [f"**Draft that was not shown**: {_md(_cut(record['raw_answer'], 600))}", ""]
        draft = draft_cited(record)
        if draft:
            lines += ["**Sources the draft cited**:", *(_source(f"[{s.get('n')}]", s, bool(s.get("correct")),
                                                                passages.get(s.get("chunk_id") or ""))
                                                        for s in draft), ""]
    citations = record.get("citations") or []
    if citations:
        lines += ["**Sources cited**:", *(_source(f"[{c.get('n')}]", c, bool(c.get("correct")), c.get("quote"))
                                          for c in citations), ""]
    if record.get("abstained") is None or record.get("abstained") or not citations:
        retrieved = (record.get("retrieved") or [])[:5]
        if retrieved:
            lines += ["**Passages retrieved first**:", *(_source(f"{r['rank']}.", r, True if r.get("relevant") else None,
                                                                 passages.get(r.get("chunk_id") or ""))
                                                         for r in retrieved)]
    return "\n".join(lines)


# ---------- a run in the background ----------

@dataclass
class EvalJob:
    """One evaluation running in its own thread: where it writes, how far it is, how it ended."""

    name: str
    out: Path
    retrieval_only: bool
    cancel: threading.Event = field(default_factory=threading.Event)
    done: int = 0
    total: int | None = None
    first: int | None = None  # questions already done when it started (resumed)
    started: float = field(default_factory=time.monotonic)
    timed_from: float | None = None  # when the first progress came (models loaded)
    metrics: dict | None = None
    cancelled: bool = False
    error: Exception | None = None
    thread: threading.Thread | None = None

    def on_progress(self, done: int, total: int) -> None:
        """The runner's progress callback."""
        if self.first is None:
            self.first, self.timed_from = done, time.monotonic()
        self.done, self.total = done, total

    def running(self) -> bool:
        return self.thread is not None and self.thread.is_alive()

    def status(self) -> str:
        """Where the run is, in words, with the time left from its own pace."""
        if self.total is None:
            what = "retrieving" if self.retrieval_only else "loading the models"
            return f"Run **{self.name}**: starting ({what})…"
        left = ""
        new = self.done - (self.first or 0)
        if new and self.timed_from is not None and self.done < self.total:
            pace = (time.monotonic() - self.timed_from) / new
            left = f", about {duration(pace * (self.total - self.done))} left"
        stopping = " Cancelling after the current question…" if self.cancel.is_set() else \
            " Cancel stops it after the current question; the chat goes on answering meanwhile."
        return f"Run **{self.name}**: {self.done} of {self.total} questions done{left}.{stopping}"


class EvalTab:
    """Builds the Evaluation tab and holds its handlers; one background run at a time per admin."""

    def __init__(self, services: Services):
        self.services = services
        self.jobs: dict[str, EvalJob] = {}  # by user name
        self._jobs_lock = threading.Lock()

    def build(self) -> None:
        """Create the components and wire the events (inside a gr.Tab, whose opening refreshes the estimate)."""
        tab = get_render_context()
        gold = [(p.name, str(p)) for p in stored_gold_sets(self.services.settings)]
        with gr.Row():
            self.gold = gr.Dropdown(label="Stored gold question set", choices=gold,
                                    value=gold[0][1] if gold else None, elem_id="eval-gold")
            self.upload = gr.File(label="…or upload a gold set (JSON Lines)", file_types=[".jsonl", ".json"],
                                  file_count="single")
        with gr.Row():
            # a text box: an empty gr.Number shows 0
            self.limit = gr.Textbox(label="Questions (empty: all)", placeholder="all", max_lines=1,
                                    elem_id="eval-limit")
            self.retrieval_only = gr.Checkbox(label="Retrieval only (no answers; fast)", elem_id="eval-retrieval")
            self.run_button = gr.Button("Run evaluation", variant="primary", elem_id="eval-run")
            self.cancel_button = gr.Button("Cancel", variant="stop", elem_id="eval-cancel", scale=0)
        self.estimate = gr.Markdown(elem_id="eval-estimate")
        self.status = gr.Markdown("Choose a gold set and press Run evaluation; progress shows here.",
                                  elem_id="eval-status")
        with gr.Row():
            self.past = gr.Dropdown(label="Show a stored run", choices=[], elem_id="eval-past")
            self.show_button = gr.Button("Show", size="sm", scale=0, elem_id="eval-show")
        self.shown = gr.State(None)  # the name of the run on screen, for the filter and the row details
        self.metrics = gr.Dataframe(value=pd.DataFrame(columns=METRIC_COLUMNS), label="Metrics", interactive=False,
                                    wrap=True, column_widths=["22%", "10%", "68%"], elem_id="eval-metrics")
        with gr.Accordion("Plots", open=True):
            self.plots = [gr.Image(label=caption, type="pil", interactive=False, visible=False,
                                   elem_id=f"eval-plot-{name.removesuffix('.png')}")
                          for name, caption in PLOTS.items()]
        gr.Markdown("### Per-question results\nClick a column's header to sort by it; select a row to see that "
                    "answer and its sources below the table.")
        with gr.Row():
            self.filter_text = gr.Textbox(label="Filter: rows containing", placeholder="a word of the question, a "
                                          "document, a reason…", elem_id="eval-filter")
            self.filter_verdict = gr.Dropdown(label="Verdict", choices=[(ALL, ALL)], value=ALL,
                                              elem_id="eval-verdict")
        self.questions = gr.Dataframe(value=pd.DataFrame(columns=QUESTION_COLUMNS), label="Per-question results",
                                      interactive=False, wrap=True, max_height=600, elem_id="eval-questions",
                                      datatype=["str"] * 8 + ["number"],
                                      column_widths=["9%", "19%", "9%", "12%", "12%", "19%", "8%", "6%", "6%"])
        self.detail = gr.Markdown(PICK_ROW, elem_id="eval-detail")
        gr.Markdown("### Compare two runs")
        with gr.Row():
            self.run_a = gr.Dropdown(label="Run A (before)", choices=[], elem_id="eval-run-a")
            self.run_b = gr.Dropdown(label="Run B (after)", choices=[], elem_id="eval-run-b")
            self.compare_button = gr.Button("Compare", scale=0, elem_id="eval-compare")
        self.compare_metrics = gr.Dataframe(value=pd.DataFrame(columns=COMPARE_COLUMNS), label="Comparison",
                                            interactive=False, wrap=True, elem_id="eval-compare-metrics",
                                            column_widths=["20%", "10%", "10%", "10%", "50%"])
        self.changed = gr.Dataframe(value=pd.DataFrame(columns=CHANGED_COLUMNS),
                                    label="Questions whose verdict changed", interactive=False, wrap=True,
                                    column_widths=["40%", "15%", "15%", "30%"], elem_id="eval-changed")
        self.compare_plot = gr.Image(label="Comparison plot", type="pil", interactive=False)

        shown = [self.metrics, *self.plots, self.questions, self.filter_text, self.filter_verdict, self.detail,
                 self.shown]
        self.run_outputs = [self.status, *shown, self.gold, self.past, self.run_a, self.run_b, self.estimate]
        inputs = [self.gold, self.upload, self.limit, self.retrieval_only]
        # its own queue: a long run holds none of the chat's workers, and a second click waits for nothing
        self.run_button.click(self.run, inputs, self.run_outputs, api_name="run_eval",
                              concurrency_limit=2, concurrency_id="evaluation", show_progress_on=[self.status])
        self.cancel_button.click(self.cancel, None, [self.status], api_name="cancel_eval", concurrency_limit=None,
                                 show_progress="hidden")
        estimate_triggers = [self.gold.change, self.upload.change, self.limit.change, self.retrieval_only.change]
        if isinstance(tab, gr.Tab):  # the estimate counts the runs made since the page was opened
            estimate_triggers.append(tab.select)
        gr.on(estimate_triggers,
              self.estimate_for, inputs, [self.estimate], api_name=False, show_progress="hidden")
        self.show_button.click(self.show, [self.past], [self.status, *shown], api_name="show_eval_run")
        gr.on([self.filter_text.submit, self.filter_verdict.change], self.filter, [self.shown, self.filter_text,
              self.filter_verdict], [self.questions], api_name=False, show_progress="hidden")
        self.questions.select(self.open_row, [self.shown], [self.detail], api_name=False)
        self.compare_button.click(self.compare, [self.run_a, self.run_b],
                                  [self.status, self.compare_metrics, self.changed, self.compare_plot],
                                  api_name="compare_runs")

    def on_load(self, request: gr.Request) -> tuple:
        """Stored runs for the pickers (admins only)."""
        self.services.authorize(request, "eval")
        runs = stored_runs(self.services)
        return tuple(gr.update(choices=runs) for _ in range(3))

    # ----- the estimate -----

    def estimate_markdown(self, dataset: Path | None, limit: str | float | None, retrieval_only: bool) -> str:
        """The estimate for a gold set, a number of questions and a mode (empty without a valid set)."""
        if dataset is None or not dataset.is_file():
            return ""
        try:
            total = len(load_dataset(dataset))
        except DatasetError as e:
            return f"The gold set is not valid: {e.reason} (line {e.line_no or '-'})."
        try:
            count = question_limit(limit)
        except ValueError as e:
            return str(e)
        questions = min(total, count) if count else total
        resumed = unfinished_run(self.services, dataset, bool(retrieval_only))
        done = len(load_records(resumed / RESULTS_FILE)) if resumed else 0
        return estimate_text(questions, min(done, questions), bool(retrieval_only),
                             measured_ms(self.services, bool(retrieval_only)))

    def estimate_for(self, gold: str | None, upload: str | None, limit: str | float | None, retrieval_only: bool,
                     request: gr.Request) -> str:
        """The estimate after the choices changed."""
        self.services.authorize(request, "eval")
        return self.estimate_markdown(Path(upload or gold or ""), limit, retrieval_only)

    # ----- running -----

    def run(self, gold: str | None, upload: str | None, limit: str | float | None, retrieval_only: bool,
            request: gr.Request, progress=gr.Progress()):
        """Run the chosen (or uploaded) gold set in the background, show its progress until it ends (finished,
        cancelled or failed), then its results. Leaving the page does not stop it."""
        user = self.services.authorize(request, "eval")
        try:
            count = question_limit(limit)
        except ValueError as e:
            yield self.not_run(str(e))
            return
        dataset = Path(upload or gold or "")
        if not dataset.is_file():
            yield self.not_run("Choose a stored gold set or upload one.")
            return
        try:
            load_dataset(dataset)
        except DatasetError as e:
            yield self.not_run(f"The gold set is not valid: {e.reason} (line {e.line_no or '-'})")
            return
        self.services.ready("eval.run")  # fail closed: no run (nor a stored gold set) that the trail cannot record
        if upload:  # keep uploaded gold sets, so the run can be repeated and compared later
            stored = self.services.settings.eval_dir / "datasets" / Path(upload).name
            stored.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(upload, stored)
            dataset = stored
        with self._jobs_lock:
            job = self.jobs.get(user.name)
            if job is not None and job.running():
                yield self.not_run(f"Your evaluation {job.name} is still running ({job.done} of {job.total or '?'} "
                                   "questions done): wait for it or cancel it first.")
                return
            resume = unfinished_run(self.services, dataset, bool(retrieval_only))
            stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
            name = resume.name if resume else f"{stamp}-{dataset.stem}" + ("-retrieval" if retrieval_only else "")
            job = EvalJob(name, runs_dir(self.services) / name, bool(retrieval_only))
            job.thread = threading.Thread(target=self._work, args=(job, user, dataset, count, resume is not None),
                                          daemon=True, name=f"comply-eval-{name}")
            self.jobs[user.name] = job
            job.thread.start()
        seen = None
        while job.running():
            now = (job.done, job.total, job.cancel.is_set(), job.name)
            if now != seen:
                seen = now
                progress(job.done / job.total if job.total else None, desc=f"{job.done} of {job.total or '?'}")
                yield {self.status: job.status()}
            job.thread.join(0.5)
        yield self.finished(job) | {self.estimate: self.estimate_markdown(dataset, limit, retrieval_only)}

    def not_run(self, message: str) -> dict:
        """A run not started (or that could not run), said in words on the status line (log: one line)."""
        return {self.status: refused(message, 1)[0]}

    def _work(self, job: EvalJob, user, dataset: Path, limit: int | None, resuming: bool) -> None:
        """The run itself, in the job's thread (into a new folder if the unfinished one it continues no longer
        matches the library or the settings)."""
        options = {"loaded": True, "limit": limit, "retrieval_only": job.retrieval_only, "progress": False,
                   "on_progress": job.on_progress, "cancel": job.cancel}
        try:
            try:
                job.metrics = actions_admin.run_evaluation(self.services, user, dataset, job.out, **options)
            except RunCancelled:
                raise
            except RunError:
                if not resuming:
                    raise
                stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
                job.name = f"{stamp}-{dataset.stem}" + ("-retrieval" if job.retrieval_only else "")
                job.out = job.out.parent / job.name
                job.metrics = actions_admin.run_evaluation(self.services, user, dataset, job.out, **options)
        except RunCancelled as e:
            job.cancelled, job.done, job.total = True, e.done, e.total
        except Exception as e:  # shown to the admin by the handler that waits for the job
            job.error = e

    def finished(self, job: EvalJob) -> dict:
        """The outputs once a job ended: its results (partial ones when cancelled) and the refreshed pickers."""
        if job.error is not None:
            e = job.error
            if isinstance(e, gr.Error):
                raise e
            if isinstance(e, AuditError):  # says in words whether the run was done
                raise gr.Error(str(e), title="Audit trail", duration=None) from e
            if isinstance(e, RunError | ValueError | DatasetError):
                return self.not_run(f"The evaluation could not run: {e}")
            raise e
        runs = stored_runs(self.services)
        stored = [(p.name, str(p)) for p in stored_gold_sets(self.services.settings)]
        outputs = {self.gold: gr.update(choices=stored), self.past: gr.update(choices=runs),
                   self.run_a: gr.update(choices=runs), self.run_b: gr.update(choices=runs)}
        if job.cancelled:
            status = (f"Run **{job.name}** was cancelled after {job.done} of {job.total} questions (recorded in the "
                      f"audit trail). The results so far are below; Run evaluation with the same gold set and mode "
                      f"goes on from there.")
            outputs |= self.partial_outputs(job.name)
        else:
            status = f"Run **{job.name}** finished: {job.metrics.get('n_questions')} questions."
            outputs |= self.shown_outputs(job.name)
            outputs |= {self.past: gr.update(choices=runs, value=job.name), self.run_b: gr.update(choices=runs,
                                                                                                 value=job.name)}
        return outputs | {self.status: status}

    def cancel(self, request: gr.Request) -> str:
        """Stop the caller's running evaluation after its current question (it is recorded as cancelled)."""
        user = self.services.authorize(request, "eval")
        job = self.jobs.get(user.name)
        if job is None or not job.running():
            return "No evaluation of yours is running."
        job.cancel.set()
        return job.status()

    # ----- showing a run -----

    def shown_outputs(self, name: str) -> dict:
        """Everything a finished run shows: metrics, plots, the per-question table (unfiltered), no row open."""
        out = runs_dir(self.services) / name
        metrics = json.loads((out / METRICS_FILE).read_text(encoding="utf-8"))
        plots = {image: gr.update(value=load_image(out / file), visible=True) if (out / file).is_file()
                 else gr.update(value=None, visible=False) for image, file in zip(self.plots, PLOTS, strict=True)}
        return {self.metrics: metrics_table(metrics), **plots, **self._table_outputs(name)}

    def partial_outputs(self, name: str) -> dict:
        """What an unfinished run shows: its questions so far, no metrics or plots."""
        return {self.metrics: pd.DataFrame(columns=METRIC_COLUMNS),
                **{image: gr.update(value=None, visible=False) for image in self.plots}, **self._table_outputs(name)}

    def _table_outputs(self, name: str) -> dict:
        folder = runs_dir(self.services) / name
        return {self.questions: questions_table(folder), self.filter_text: "",
                self.filter_verdict: gr.update(choices=verdict_choices(folder), value=ALL),
                self.detail: PICK_ROW, self.shown: name}

    def show(self, run: str | None, request: gr.Request) -> dict:
        """Show a stored run."""
        self.services.authorize(request, "eval")
        if not run or run not in stored_runs(self.services):
            return {self.status: refused("Choose a stored run.", 1)[0]}
        return {self.status: f"Run **{run}**.", **self.shown_outputs(run)}

    def filter(self, run: str | None, text: str, verdict_shown: str | None, request: gr.Request) -> pd.DataFrame:
        """The per-question table of the run on screen, only the rows with `text` and the verdict chosen."""
        self.services.authorize(request, "eval")
        folder = run_folder(self.services, run)
        if folder is None:
            return pd.DataFrame(columns=QUESTION_COLUMNS)
        return questions_table(folder, text, verdict_shown)

    def open_row(self, run: str | None, request: gr.Request, event: gr.SelectData) -> str:
        """The selected question's answer and sources (its row's id picks the record, whatever the sort)."""
        self.services.authorize(request, "eval")
        folder = run_folder(self.services, run)
        row = event.row_value or []
        if folder is None or not row:
            return PICK_ROW
        record = next((r for r in load_records(folder / RESULTS_FILE) if str(r.get("id")) == str(row[0])), None)
        if record is None:
            return PICK_ROW
        ids = [r["chunk_id"] for r in [*(record.get("retrieved") or [])[:5], *draft_cited(record)] if r.get("chunk_id")]
        passages = {cid: chunk.text for cid, chunk in self.services.library.catalog.chunks(ids).items()}
        return answer_details(record, passages)

    def compare(self, run_a: str | None, run_b: str | None, request: gr.Request) -> tuple:
        """Compare two stored runs: metric changes, the questions whose verdict changed, and the comparison plot."""
        self.services.authorize(request, "eval")
        runs = stored_runs(self.services)
        if run_a not in runs or run_b not in runs or run_a == run_b:
            return refused("Choose two different stored runs.", 4)
        out = self.services.settings.eval_dir / "compare" / f"{run_a}--{run_b}"
        root = runs_dir(self.services)
        result = compare_runs(root / run_a, root / run_b, out)
        plot = out / "compare.png"
        labels = f"A = {run_a} ({result['a']['label']}), B = {run_b} ({result['b']['label']})"
        changed = len(result["changed"])
        return (f"Comparison: {labels}. {changed} question{'s' if changed != 1 else ''} changed verdict.",
                compare_table(result), changed_table(result), load_image(plot) if plot.is_file() else None)
