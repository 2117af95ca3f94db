"""A run cancelled between two questions (a threading.Event, as the app's Cancel button sets it): it stops with
RunCancelled, keeps what it did (no metrics.json), goes on from there when run again, and the audited action records
it as a cancelled eval.run with how many questions were done."""

import json
import threading
from collections.abc import Callable

import pytest

from assistant.app import actions_admin
from assistant.app.audit import AuditLog
from assistant.app.services import Services, cli_user
from eval.report import load_records, run_records
from eval.runner import RunCancelled, run_eval
from ingest.settings import Settings
from tests.library import GOLD


def cancel_after(n: int) -> tuple[threading.Event, Callable[[int, int], None]]:
    """An event and a progress callback that sets it once n questions are done."""
    event = threading.Event()

    def on_progress(done: int, total: int) -> None:
        if done >= n:
            event.set()

    return event, on_progress


def test_a_cancelled_run_keeps_its_questions_and_resumes_from_there(library, tmp_path):
    out = tmp_path / "run"
    cancel, on_progress = cancel_after(5)
    with pytest.raises(RunCancelled) as stopped:
        run_eval(library.settings, GOLD, out, retrieval_only=True, library=library, progress=False,
                 on_progress=on_progress, cancel=cancel)
    assert (stopped.value.done, stopped.value.total) == (5, 35)
    assert "cancelled after 5 of 35 questions" in str(stopped.value)
    assert len((out / "results.jsonl").read_text(encoding="utf-8").splitlines()) == 5
    assert not (out / "metrics.json").exists()

    # taken up again for fewer questions than were done: the run is those, though results.jsonl keeps all five
    metrics = run_eval(library.settings, GOLD, out, retrieval_only=True, library=library, progress=False, limit=2)
    assert (metrics["run"]["resumed"], metrics["run"]["new"], metrics["n_questions"]) == (2, 0, 2)
    first = [json.loads(line)["id"] for line in (out / "results.jsonl").read_text(encoding="utf-8").splitlines()]
    assert metrics["run"]["ids"] == first[:2] and [r["id"] for r in run_records(out)] == first[:2]
    assert len(load_records(out / "results.jsonl")) == 5

    metrics = run_eval(library.settings, GOLD, out, retrieval_only=True, library=library, progress=False)
    assert (metrics["run"]["resumed"], metrics["run"]["new"], metrics["n_questions"]) == (5, 30, 35)
    assert len(run_records(out)) == 35


def test_the_audited_action_records_a_cancelled_run(library, tmp_path):
    services = Services(Settings(home=tmp_path / "home"), library)
    cancel, on_progress = cancel_after(3)
    with pytest.raises(RunCancelled):
        actions_admin.run_evaluation(services, cli_user("cli:tester"), GOLD, tmp_path / "run", loaded=True,
                                     retrieval_only=True, progress=False, on_progress=on_progress, cancel=cancel)
    record = AuditLog.open(services.settings).records(action="eval.run")[-1]
    assert (record["user"], record["cancelled"], record["done"], record["total"]) == ("cli:tester", True, 3, 35)
    assert record["run"] == "run" and record["retrieval_only"] is True
    assert json.loads((tmp_path / "run" / "run_config.json").read_text())["retrieval_only"] is True
