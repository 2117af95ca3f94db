"""The Evaluation tab (admins): run a gold question set through the real pipeline with progress, see the metrics,
plots and per-question results, and compare two stored runs."""

import json
import shutil
from datetime import UTC, datetime
from pathlib import Path

import gradio as gr
import pandas as pd

from assistant.app import actions_admin
from assistant.app.ui.services import Services, audit_shown, stored_gold_sets

PLOTS = ("metrics.png", "latency.png", "per_document.png", "correctness.png", "compare.png")
QUESTION_COLUMNS = ["Question id", "Question", "Answerable", "Abstained", "Recall@10", "Reciprocal rank",
                    "Citations (correct)", "Sentences (supported)", "Correct vs gold answer (entailed / covers)",
                    "Total ms"]


def runs_dir(services: Services) -> Path:
    """Where evaluation runs are kept: <home>/eval/runs/<run>."""
    return services.settings.eval_dir / "runs"


def stored_runs(services: Services) -> list[str]:
    """Names of the finished runs (those with metrics.json), newest first."""
    root = runs_dir(services)
    if not root.is_dir():
        return []
    return sorted((p.name for p in root.iterdir() if (p / "metrics.json").is_file()), reverse=True)


def metrics_table(metrics: dict) -> pd.DataFrame:
    """The flat metrics (counts, retrieval, answers, latency) as a two-column table."""
    rows = []
    for key, value in metrics.items():
        if isinstance(value, dict | list):
            continue
        shown = "not measured" if value is None else (f"{value:.3f}" if isinstance(value, float) else str(value))
        rows.append([key, shown])
    return pd.DataFrame(rows, columns=["Metric", "Value"])


def questions_table(results_path: Path) -> pd.DataFrame:
    """One row per question from results.jsonl."""
    rows = []
    if results_path.is_file():
        for line in results_path.read_text(encoding="utf-8").splitlines():
            if not line.strip():
                continue
            r = json.loads(line)
            s = r.get("scores") or {}
            rows.append([r.get("id"), r.get("question"), r.get("answerable"),
                         "" if r.get("abstained") is None else r.get("abstained"),
                         _num(s.get("recall@10")), _num(s.get("rr")), _pair(s, "citations", "correct_citations"),
                         _pair(s, "sentences", "supported_sentences"), correctness_cell(r),
                         _num((r.get("timings") or {}).get("total_ms"))])
    return pd.DataFrame(rows, columns=QUESTION_COLUMNS)


def correctness_cell(record: dict) -> str:
    """'yes (0.97 / 0.91)' or 'no (0.12 / 0.80)' for a scored answer, 'yes' / 'no' for an abstention or an
    unanswerable question; empty when not scored."""
    correct = record.get("answer_correct")
    if correct is None:
        return ""
    verdict = "yes" if correct else "no"
    if record.get("answer_entailed") is None:
        return verdict
    return f"{verdict} ({record['answer_entailed']:.2f} / {record['answer_covers']:.2f})"


def _pair(scores: dict, total: str, good: str) -> str:
    return "" if scores.get(total) is None else f"{scores[total]} ({scores.get(good, 0)})"


def _num(value) -> str:
    return "" if value is None else (f"{value:.3f}" if isinstance(value, float) else str(value))


def load_image(path: Path):
    """A PNG as a PIL image (handed to Gradio as pixels, so no folder of the home is exposed as files)."""
    from PIL import Image

    with Image.open(path) as image:
        return image.copy()


def run_outputs(out: Path) -> tuple[pd.DataFrame, list, pd.DataFrame]:
    """Metrics table, plots and per-question table of a finished run folder."""
    metrics = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    plots = [(load_image(out / name), name.removesuffix(".png").replace("_", " "))
             for name in PLOTS if (out / name).is_file()]
    return metrics_table(metrics), plots, questions_table(out / "results.jsonl")


def compare_table(result: dict) -> pd.DataFrame:
    """compare_runs' rows: each metric in run A, run B and the change B - A."""
    rows = [[r["metric"], _num(r.get("a")), _num(r.get("b")), _num(r.get("delta"))] for r in result.get("rows", [])]
    return pd.DataFrame(rows, columns=["Metric", "Run A", "Run B", "Change (B - A)"])


class EvalTab:
    """Builds the Evaluation tab and holds its handlers."""

    def __init__(self, services: Services):
        self.services = services

    def build(self) -> None:
        """Create the components and wire the events (inside a gr.Tab)."""
        gold = [(p.name, str(p)) for p in stored_gold_sets(self.services.settings)]
        with gr.Row():
            self.gold = gr.Dropdown(label="Stored gold question set", choices=gold,
                                    value=gold[0][1] if gold else None)
            self.upload = gr.File(label="…or upload a gold set (JSON Lines)", file_types=[".jsonl", ".json"],
                                  file_count="single")
        with gr.Row():
            self.limit = gr.Number(label="Questions (empty: all)", value=10, precision=0, minimum=1)
            self.retrieval_only = gr.Checkbox(label="Retrieval only (no answers; fast)")
            self.run_button = gr.Button("Run evaluation", variant="primary")
        self.status = gr.Markdown("Choose a gold set and press Run evaluation; progress shows here.")
        with gr.Row():
            self.past = gr.Dropdown(label="Show a stored run", choices=[])
            self.show_button = gr.Button("Show", size="sm", scale=0)
        self.metrics = gr.Dataframe(value=pd.DataFrame(columns=["Metric", "Value"]), label="Metrics",
                                    interactive=False)
        self.plots = gr.Gallery(label="Plots (click to enlarge)", columns=3, height=380, object_fit="contain")
        self.questions = gr.Dataframe(value=pd.DataFrame(columns=QUESTION_COLUMNS), label="Per-question results",
                                      interactive=False, wrap=True)
        gr.Markdown("### Compare two runs")
        with gr.Row():
            self.run_a = gr.Dropdown(label="Run A (before)", choices=[])
            self.run_b = gr.Dropdown(label="Run B (after)", choices=[])
            self.compare_button = gr.Button("Compare", scale=0)
        self.compare_metrics = gr.Dataframe(value=pd.DataFrame(columns=["Metric", "Run A", "Run B", "Change (B - A)"]),
                                            label="Comparison", interactive=False)
        self.compare_plot = gr.Image(label="Comparison plot", type="pil", interactive=False)

        pickers = [self.past, self.run_a, self.run_b]
        self.run_button.click(self.run, [self.gold, self.upload, self.limit, self.retrieval_only],
                              [self.status, self.metrics, self.plots, self.questions, self.gold, *pickers],
                              api_name="run_eval", show_progress_on=[self.status, self.metrics])
        self.show_button.click(self.show, [self.past], [self.status, self.metrics, self.plots, self.questions],
                               api_name="show_eval_run")
        self.compare_button.click(self.compare, [self.run_a, self.run_b],
                                  [self.status, self.compare_metrics, self.compare_plot], api_name="compare_runs")

    def on_load(self, request: gr.Request) -> tuple:
        """Stored runs for the pickers (admins only)."""
        self.services.authorize(request, "eval")
        runs = stored_runs(self.services)
        return tuple(gr.update(choices=runs) for _ in range(3))

    def run(self, gold: str | None, upload: str | None, limit: float | None, retrieval_only: bool,
            request: gr.Request, progress=gr.Progress()) -> tuple:
        """Run the chosen (or uploaded) gold set and show its results."""
        user = self.services.authorize(request, "eval")
        from eval.datasets import DatasetError, load_dataset
        from eval.runner import RunError

        dataset = Path(upload or gold or "")
        if not dataset.is_file():
            raise gr.Error("Choose a stored gold set or upload one.")
        try:
            load_dataset(dataset)
        except DatasetError as e:
            raise gr.Error(f"The gold set is not valid: {e.reason} (line {e.line_no or '-'})") from e
        self.services.ready("eval.run")  # fail closed: no run (nor a stored gold set) that the trail cannot record
        if upload:  # keep uploaded gold sets, so the run can be repeated and compared later
            stored = self.services.settings.eval_dir / "datasets" / Path(upload).name
            stored.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(upload, stored)
            dataset = stored
        stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
        name = f"{stamp}-{dataset.stem}" + ("-retrieval" if retrieval_only else "")
        out = runs_dir(self.services) / name
        limit = int(limit) if limit else None

        def on_progress(done: int, total: int) -> None:
            progress(done / total if total else None, desc=f"Question {done} of {total}")

        progress(0, desc="Loading the model…" if not retrieval_only else "Retrieving…")
        try:  # answers go on meanwhile: the generator batches them with the run's
            with audit_shown():
                actions_admin.run_evaluation(self.services, user, dataset, out, loaded=True, limit=limit,
                                             retrieval_only=retrieval_only, progress=False, on_progress=on_progress)
        except (RunError, ValueError, DatasetError) as e:
            raise gr.Error(f"The evaluation could not run: {e}") from e
        metrics, plots, questions = run_outputs(out)
        runs = stored_runs(self.services)
        stored = [(p.name, str(p)) for p in stored_gold_sets(self.services.settings)]
        return (f"Run **{name}** finished.", metrics, plots, questions, gr.update(choices=stored, value=str(dataset)),
                gr.update(choices=runs, value=name), gr.update(choices=runs), gr.update(choices=runs, value=name))

    def show(self, run: str | None, request: gr.Request) -> tuple:
        """Show a stored run."""
        self.services.authorize(request, "eval")
        if not run or run not in stored_runs(self.services):
            raise gr.Error("Choose a stored run.")
        return (f"Run **{run}**.", *run_outputs(runs_dir(self.services) / run))

    def compare(self, run_a: str | None, run_b: str | None, request: gr.Request) -> tuple:
        """Compare two stored runs: metric changes and the comparison plot."""
        self.services.authorize(request, "eval")
        runs = stored_runs(self.services)
        if run_a not in runs or run_b not in runs or run_a == run_b:
            raise gr.Error("Choose two different stored runs.")
        try:
            from eval.compare import compare_runs
        except ImportError as e:
            raise gr.Error("Comparing runs is not available in this installation.") from e
        out = self.services.settings.eval_dir / "compare" / f"{run_a}--{run_b}"
        root = runs_dir(self.services)
        result = compare_runs(root / run_a, root / run_b, out)
        plot = out / "compare.png"
        labels = f"A = {run_a} ({result['a']['label']}), B = {run_b} ({result['b']['label']})"
        return (f"Comparison: {labels}.", compare_table(result),
                load_image(plot) if plot.is_file() else None)
