"""Answer correctness against the gold reference answer (eval/correctness.py), judged by the shipped entailment model
(data/entailment/minilm-nli) in both directions. Only what any sane entailment model gets right is asserted."""

import pytest

from eval import correctness
from eval.correctness import load_judge, sentences
from eval.datasets import GoldQuestion, load_jsonl
from ingest.settings import Settings
from tests.library import GOLD

PASSWORD = GoldQuestion(id="infosec-password-length", question="What is the minimum length of a password?",
                        answerable=True, answer="Passwords must be at least 14 characters long.")
APPROVAL = GoldQuestion(id="gifts-public-official", question="May staff give a gift to a public official without "
                        "approval?", answerable=True, answer="Staff must not give any gift to a public official "
                        "without the prior written approval of Compliance.")
RETENTION = GoldQuestion(id="retention-customer-current", question="How long are customer records kept?",
                         answerable=True, answer="Customer records are kept for 7 years after the end of the "
                         "customer relationship.")
UNANSWERABLE = GoldQuestion(id="none-atm-limit", question="What is the daily ATM withdrawal limit?", answerable=False)


@pytest.fixture(scope="module")
def judge():
    """The shipped model under the default settings (no override)."""
    found = load_judge(Settings())
    assert found is not None, "the shipped entailment model data/entailment/minilm-nli is not installed"
    return found


def test_an_answer_that_says_what_the_gold_answer_says_is_correct(judge):
    for q in (PASSWORD, APPROVAL, RETENTION):
        verdict = judge(q, abstained=False, answer=f"{q.answer} [1]")
        assert verdict.correct, (q.id, verdict)
        assert verdict.entailed >= judge.threshold and verdict.covers >= judge.threshold


def test_every_sample_gold_answer_is_correct_against_itself(judge):
    answerable = [q for q in load_jsonl(GOLD) if q.answerable]
    wrong = [(q.id, v) for q in answerable if not (v := judge(q, abstained=False, answer=q.answer)).correct]
    assert len(answerable) == 27 and wrong == []


def test_must_not_for_must_is_not_correct(judge):
    wrong = "Staff must give any gift to a public official without the prior written approval of Compliance [1]."
    verdict = judge(APPROVAL, abstained=False, answer=wrong)
    assert verdict.correct is False, verdict


def test_a_changed_number_is_not_correct(judge):
    verdict = judge(RETENTION, abstained=False, answer="Customer records are kept for 2 years after the end of the "
                    "customer relationship [1].")
    assert verdict.correct is False, verdict
    assert verdict.entailed < judge.threshold


def test_a_right_answer_followed_by_a_wrong_claim_is_not_correct(judge):
    answer = f"{PASSWORD.answer} [1] They must be changed every day by the Chief Executive [2]."
    verdict = judge(PASSWORD, abstained=False, answer=answer)
    assert verdict.correct is False and verdict.entailed < judge.threshold, verdict


def verdict_without_model(q: GoldQuestion, *, abstained: bool, answer: str) -> correctness.Correctness:
    """The cases that need no model: it is never called (None would fail if it were)."""
    return correctness.judge(None, 0.5, question=q.question, answerable=q.answerable, gold_answer=q.answer,
                             abstained=abstained, answer=answer)


def test_abstentions_and_unanswerable_questions():
    refusal = "The documents do not say."
    wrong = verdict_without_model(PASSWORD, abstained=True, answer=refusal)
    assert wrong == correctness.Correctness(correct=False)  # answerable: a refusal is not right
    assert verdict_without_model(UNANSWERABLE, abstained=True, answer=refusal).correct is True
    answered = verdict_without_model(UNANSWERABLE, abstained=False, answer="The limit is EUR 500 per day [1].")
    assert answered == correctness.Correctness(correct=False)  # scored without the model: no gold answer to compare


def test_without_a_gold_answer_the_metric_is_absent():
    obliqa = GoldQuestion(id="q", question="What must an Authorised Person do?", answerable=True)  # ObliQA: no answer
    verdict = verdict_without_model(obliqa, abstained=False, answer="It must notify the Regulator [1].")
    assert verdict == correctness.Correctness(correct=None)


def test_sentences_are_split_and_stripped_of_markers():
    assert sentences("Passwords have at least 14 characters [1]. They are checked [2][3].\n- one;\n- two") == [
        "Passwords have at least 14 characters.", "They are checked.", "- one;", "- two"]
    assert sentences("") == [] and sentences("[1]") == []
