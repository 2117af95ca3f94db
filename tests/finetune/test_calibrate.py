"""The answer-confidence gate: choosing its threshold from evaluation records, where the assistant reads it (the
setting, else the adapter's card), and the confidence it is compared with, on the real tokenizer."""

from __future__ import annotations

import json

import pytest

from assistant.pipeline import answer_confidence, min_confidence
from finetune.calibrate import CalibrationError, choose_threshold
from ingest.settings import Settings


def _record(confidence, correct: list[bool], abstained: bool = False) -> dict:
    return {"abstained": abstained, "confidence": confidence,
            "citations": [{"correct": c} for c in correct]}


def test_the_lowest_threshold_that_reaches_the_target_precision_is_chosen():
    # 10 answers, confidences 0.1 .. 1.0; the 4 least confident cite wrongly, the rest rightly
    records = [_record(i / 10, [i > 4]) for i in range(1, 11)] + [_record(None, [], abstained=True)]
    chosen = choose_threshold(records, target_precision=0.8, min_kept=3)
    # kept from 0.3: 6 right of 8 = 0.75; from 0.4: 6 of 7 = 0.857
    assert chosen.threshold == pytest.approx(0.4)
    assert chosen.target_met
    assert (chosen.answered_before, chosen.citations_before, chosen.precision_before) == (10, 10, 0.6)
    assert (chosen.answered_after, chosen.citations_after) == (7, 7)
    assert chosen.precision_after == pytest.approx(6 / 7)
    assert chosen.questions == 11


def test_an_unreachable_target_sets_no_gate_and_reports_the_best_there_was():
    records = [_record(i / 10, [i % 2 == 0]) for i in range(1, 11)]  # precision never above 0.6
    chosen = choose_threshold(records, target_precision=0.95, min_kept=5)
    assert not chosen.target_met and chosen.threshold == 0.0
    assert (chosen.answered_after, chosen.precision_after) == (10, chosen.precision_before) == (10, 0.5)
    assert chosen.best_precision == max(sum(i % 2 == 0 for i in range(j, 11)) / (11 - j) for j in range(1, 7))
    assert chosen.best_threshold == pytest.approx(0.6)  # 3 right of the 5 kept from 0.6 on


def test_answers_without_a_model_citation_are_dropped_by_any_gate():
    records = [_record(0.9, [True]) for _ in range(4)] + [_record(None, [False]) for _ in range(4)]
    chosen = choose_threshold(records, target_precision=0.8, min_kept=2)
    assert chosen.precision_before == 0.5 and chosen.precision_after == 1.0 and chosen.answered_after == 4


def test_calibration_refuses_too_few_answers_old_records_and_bad_targets():
    with pytest.raises(CalibrationError, match="only 2 answers carry a confidence"):
        choose_threshold([_record(0.5, [True]), _record(0.6, [True])], min_kept=10)
    with pytest.raises(CalibrationError, match="carry no confidence"):
        choose_threshold([{"abstained": False, "citations": []}])
    with pytest.raises(CalibrationError, match="target precision"):
        choose_threshold([_record(0.5, [True])], target_precision=1.5)


def test_the_gate_comes_from_the_setting_else_the_adapters_card(tmp_path):
    adapter = tmp_path / "tuned"
    adapter.mkdir()
    settings = Settings(home=tmp_path / "home")
    assert min_confidence(settings, None) == 0.0
    assert min_confidence(settings, str(adapter)) == 0.0  # no card
    (adapter / "card.json").write_text(json.dumps({"calibration": {"min_confidence": 0.42}}))
    assert min_confidence(settings, str(adapter)) == 0.42
    assert min_confidence(settings.model_copy(update={"min_confidence": 0.0}), str(adapter)) == 0.0
    assert min_confidence(Settings(home=tmp_path / "home", min_confidence=0.7), None) == 0.7


def test_confidence_multiplies_the_token_probabilities_up_to_the_first_valid_marker():
    from transformers import AutoTokenizer

    from assistant.models import resolve_generator
    from tests.library import sample_home

    tokenizer = AutoTokenizer.from_pretrained(resolve_generator(Settings(home=sample_home())))
    text = "According to [2], passwords have at least 12 characters [1]."
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    trace = [(t, 0.5) for t in ids]

    def through(marker: str) -> int:  # tokens up to and including the one that completes the marker
        return next(i + 1 for i in range(len(ids)) if marker in tokenizer.decode(ids[: i + 1]))

    assert answer_confidence(tokenizer, trace, 3) == 0.5 ** through("[2]")
    assert through("[2]") < len(ids)
    # [2] names no source when there is only one: the first valid marker is [1]
    assert answer_confidence(tokenizer, trace, 1) == 0.5 ** through("[1]")
    plain = tokenizer("Passwords have at least 12 characters.", add_special_tokens=False)["input_ids"]
    assert answer_confidence(tokenizer, [(t, 0.5) for t in plain], 3) is None


@pytest.mark.slow
def test_calibration_fits_the_citation_gate_and_counts_only_the_selected_questions_of_a_reused_run(tmp_path):
    """calibrate() fits the citation gate (retrieval only), records every answer's score in one run with the gates
    off, and chooses both thresholds from it. A run folder reused with a smaller --limit still holds the earlier
    run's other answers: they must not count."""

    from eval.datasets import load_dataset
    from finetune import adapters
    from finetune.calibrate import calibrate
    from tests.library import GOLD, ROOT, copy_sample_home

    home = tmp_path / "home"
    copy_sample_home(home)
    settings = Settings(home=home)
    shipped = next(p for p in sorted((ROOT / "data" / "adapters").iterdir()) if adapters.is_adapter(p))
    adapters.register(settings, shipped)
    out = tmp_path / "calibration-run"

    def run():
        return calibrate(settings, shipped.name, GOLD, out, format="jsonl", limit=14, gate_questions=GOLD,
                         gate_format="jsonl", progress=False)

    first = run()
    results = out / "results.jsonl"
    records = [json.loads(line) for line in results.read_text().splitlines()]
    assert len(records) == 14 and first["questions"] == 14
    answered = [r for r in records if not r["abstained"]]
    assert answered and all(0.0 < r["citation_score"] < 1.0 for r in answered)  # scored with the gates off
    card = adapters.read_card(settings.adapters_dir / shipped.name)
    gate = first["citation_gate"]
    assert card["citation_gate"]["threshold"] == gate["threshold"]
    assert card["citation_gate"]["fitted_on"]["sources"] >= 50
    assert gate["answered_before"] == len(answered)
    if gate["target_met"]:
        assert gate["threshold"] > 0 and gate["precision_after"] >= 0.8
    else:
        assert gate["threshold"] == 0.0 and gate["best_threshold"] is not None
    others = [q.id for q in load_dataset(GOLD, "jsonl") if q.id not in {r["id"] for r in records}][:15]
    with results.open("a") as f:  # what an earlier run of more questions left: confident, wrong answers
        for qid in others:
            f.write(json.dumps({"id": qid, "abstained": False, "confidence": 0.99, "citation_score": 0.99,
                                "citations": [{"correct": False}]}) + "\n")
    again = run()
    assert len(results.read_text().splitlines()) == 14 + len(others)  # nothing evaluated again
    volatile = ("created",)
    assert {k: v for k, v in again.items() if k not in volatile} == {k: v for k, v in first.items()
                                                                     if k not in volatile}
