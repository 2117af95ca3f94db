"""A short memory soak against the real server (`comply serve` in a child process, the small model): its RSS stays
flat over 40 answers after a warm-up of 8. The long one (500 answers) and the load run are `make bench-security`."""

from __future__ import annotations

from contextlib import closing

import pytest

from eval.bench.security import CORPUS, ask, log_in, prepare_home, serving, soak

pytestmark = pytest.mark.slow

DOCUMENTS = [CORPUS / "information_security_policy.pdf", CORPUS / "whistleblowing_policy.md"]
BOUND = 0.10  # every reading after the warm-up within 10% of the first one


def test_the_servers_memory_is_flat_over_40_answers(tmp_path):
    questions = prepare_home(tmp_path, DOCUMENTS)
    assert len(questions) >= 4, questions
    with serving(tmp_path) as (url, pid), closing(log_in(url, "admin")) as admin:
        assert ask(admin, questions[0]) is None  # the model is loaded before the warm-up
        result = soak(url, pid, answers=40, warmup=8, questions=questions)
    assert result["errors"] == 0, result["error_samples"]
    assert result["max_deviation"] <= BOUND, result["readings"]
