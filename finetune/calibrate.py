"""Calibrate an adapter's answer-confidence gate: the lowest confidence at which the assistant still answers.

The assistant records each answer's confidence: the generator's probability of its answer's opening up to and
including its first citation marker (`assistant.pipeline.answer_confidence`; for an adapter trained on
"According to [n], ..." targets, the probability of answering at all times the probability of citing that source).
Answers below the adapter's `min_confidence` become abstentions. The threshold is chosen on questions the adapter
never trained on and that are not the validation questions it is judged on, from one evaluation run with the gate
off: the lowest threshold at which the citations of the answers kept reach the target precision. Where no
threshold reaches it there is no gate (0): the card says the target was not met and what the best threshold would
have given, because a threshold that trades answers for a small gain on a few hundred questions is fitted noise.

    comply adapters calibrate NAME --dataset QUESTIONS [--target-precision 0.8] [--limit N]
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from tqdm import tqdm

from assistant.gate import CitationGate, fit_logistic, source_features
from assistant.retrieval import Retriever
from eval.datasets import load_dataset
from eval.metrics import ranked_item_from_chunk, relevant
from eval.runner import RESULTS_FILE, read_results, run_eval, select_questions
from finetune import adapters
from ingest.pipeline import Library
from ingest.settings import Settings
from ingest.types import ComplyError

DEFAULT_TARGET = 0.8
MIN_KEPT = 10  # a threshold must keep at least this many answers: precision over fewer is noise


class CalibrationError(ComplyError):
    """The threshold could not be calibrated: the reason."""


@dataclass
class Calibration:
    """The chosen threshold and what it does on the calibration questions."""

    threshold: float  # answers scoring below it are withheld (0 = no gate)
    target_precision: float
    target_met: bool
    questions: int
    answered_before: int  # answers (not abstentions) with the gate off
    citations_before: int
    precision_before: float | None
    answered_after: int  # answers the gate keeps
    citations_after: int
    precision_after: float | None
    best_threshold: float | None = None  # target not met: the threshold with the best precision, and that precision
    best_precision: float | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def _precision(kept: list[tuple[float, int, int]]) -> float | None:
    cites = sum(n for _, _, n in kept)
    return sum(c for _, c, _ in kept) / cites if cites else None


def choose_threshold(records: list[dict], target_precision: float = DEFAULT_TARGET,
                     min_kept: int = MIN_KEPT, key: str = "confidence") -> Calibration:
    """The lowest threshold on each answer's `key` score (`confidence`, or the citation gate's `citation_score`)
    whose kept answers' citation precision is >= target_precision, from eval result records (`results.jsonl` of a
    run with the gates off: `abstained`, the score, `citations[].correct`).

    Answers without a score (no citation marker of the model's own; no citation) are dropped by any gate above 0."""
    if not 0.0 < target_precision <= 1.0:
        raise CalibrationError(f"target precision must be in (0, 1], not {target_precision}")
    answers = [r for r in records if not r.get("abstained")]
    if any(key not in r for r in answers):
        raise CalibrationError(f"these results carry no {key}: they were made before it was recorded; evaluate "
                               f"again into a new folder")
    scored = [(r[key], sum(bool(c.get("correct")) for c in r.get("citations", [])),
               len(r.get("citations", []))) for r in answers]
    gated = sorted((s for s in scored if s[0] is not None), key=lambda s: s[0])
    if len(gated) < min_kept:
        raise CalibrationError(f"only {len(gated)} answers carry a {key} (need {min_kept}): calibrate on more "
                               f"questions")
    best: tuple[float, float] | None = None  # (precision, threshold)
    chosen = None
    for i in range(len(gated) - min_kept + 1):
        kept = gated[i:]
        precision = _precision(kept)
        if precision is None:
            continue
        threshold = gated[i][0]
        if precision >= target_precision:
            chosen = threshold
            break
        if best is None or precision > best[0]:
            best = (precision, threshold)
    met = chosen is not None
    if not met and best is None:
        raise CalibrationError("the answers cite nothing: there is no precision to calibrate")
    kept = [s for s in gated if s[0] >= chosen] if met else scored
    return Calibration(threshold=chosen if met else 0.0, target_precision=target_precision, target_met=met,
                       questions=len(records), answered_before=len(scored),
                       citations_before=sum(n for _, _, n in scored), precision_before=_precision(scored),
                       answered_after=len(kept), citations_after=sum(n for _, _, n in kept),
                       precision_after=_precision(kept), best_threshold=None if met else best[1],
                       best_precision=None if met else best[0])


def gate_samples(library, questions, k: int, progress: bool = False) -> tuple[list[list[float]], list[bool]]:
    """Features and right/wrong labels of every source the retriever gives the generator (the top k) for gold
    questions: retrieval only, exactly as the assistant retrieves (answerable questions; a source is right when it
    matches the question's evidence as in the evaluation)."""
    retriever = Retriever(library)
    rows, labels = [], []
    todo = [q for q in questions if q.answerable and q.evidence]
    if progress:
        todo = tqdm(todo, desc="citation gate data", unit="q")
    for q in todo:
        sources = retriever.retrieve(q.question, k)
        for n, source in enumerate(sources, start=1):
            rows.append(source_features(sources, n))
            labels.append(relevant(ranked_item_from_chunk(source.chunk), q))
    return rows, labels


def fit_gate(settings: Settings, questions: Path, *, format: str = "auto", documents_dir: Path | None = None,
             library=None, progress: bool = False) -> dict:
    """Fit the citation gate's weights on gold questions (`assistant.gate`); its threshold is calibrated apart."""
    own = library is None
    library = library or Library(settings)
    try:
        rows, labels = gate_samples(library, load_dataset(questions, format, documents_dir=documents_dir),
                                    settings.top_k, progress)
    finally:
        if own:
            library.close()
    if len(set(labels)) < 2 or len(rows) < 50:
        raise CalibrationError(f"{questions}: {len(rows)} retrieved sources, {sum(labels)} right: the citation gate "
                               f"needs at least 50, right and wrong ones")
    coef, intercept = fit_logistic(rows, labels)
    return {**CitationGate(coef, intercept).to_dict(), "fitted_on": {
        "dataset": str(Path(questions).resolve()), "sources": len(rows), "right": int(sum(labels)),
        "k": settings.top_k}}


def calibrate(settings: Settings, name: str, questions: Path, out: Path | None = None, *, format: str = "auto",
              documents_dir: Path | None = None, limit: int | None = None, sample_seed: int | None = 0,
              target_precision: float = DEFAULT_TARGET, gate_questions: Path | None = None,
              gate_format: str = "auto", library=None, progress: bool = True) -> dict:
    """Evaluate adapter `name` with the gates off on `questions` (never its training or validation questions),
    choose the confidence threshold and write it into its card's `calibration`. With `gate_questions` (gold
    questions of the corpus other than `questions`, e.g. the training questions), first fit the citation gate on
    them; the threshold of the card's citation gate, if it has one, is chosen on the same run. Returns the card's
    calibration entry."""
    path = adapters.adapter_path(settings, name)
    if gate_questions is not None:  # on the card before the run, so that the run records each answer's score
        card = adapters.read_card(path)
        card["citation_gate"] = fit_gate(settings, gate_questions, format=gate_format, library=library,
                                         progress=progress)
        adapters.write_card(path, card)
    out = Path(out or settings.eval_dir / f"calibrate-{name}")
    ungated = settings.model_copy(update={"min_confidence": 0.0, "min_citation_score": 0.0})
    metrics = run_eval(ungated, questions, out, format=format, limit=limit, adapter=str(path),
                       documents_dir=documents_dir, sample_seed=sample_seed if limit else None, library=library,
                       progress=progress)
    # a reused run folder may hold more questions than this selection (an earlier, larger --limit): only these count
    seed = sample_seed if limit else None
    wanted = {q.id for q in select_questions(load_dataset(questions, format, documents_dir=documents_dir), limit,
                                             seed)}
    records = [r for qid, r in read_results(out / RESULTS_FILE).items() if qid in wanted]
    chosen = choose_threshold(records, target_precision).to_dict()
    card = adapters.read_card(path)
    card["calibration"] = {"min_confidence": chosen.pop("threshold"), **chosen,
                           "dataset": str(Path(questions).resolve()),
                           "dataset_sha256": metrics["run"].get("dataset_sha256"), "limit": limit,
                           "sample_seed": seed, "run": str(out.resolve()), "created": adapters.now()}
    if "citation_gate" in card:
        gate = choose_threshold(records, target_precision, key="citation_score")
        card["citation_gate"]["threshold"] = gate.threshold
        card["calibration"]["citation_gate"] = gate.to_dict()
    adapters.write_card(path, card)
    return card["calibration"]
