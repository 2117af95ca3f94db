"""Answer correctness against the gold reference answer (eval/correctness.py): the cases decided without the
entailment model."""

from eval import correctness
from eval.correctness import sentences
from eval.datasets import GoldQuestion

PASSWORD = GoldQuestion(id="infosec-password-length", question="What is the minimum length of a password?",
                        answerable=True, answer="Passwords must be at least 14 characters long.")
APPROVAL = GoldQuestion(id="gifts-public-official", question="May staff give a gift to a public official without "
                        "approval?", answerable=True, answer="Staff must not give any gift to a public official "
                        "without the prior written approval of Compliance.")
RETENTION = GoldQuestion(id="retention-customer-current", question="How long are customer records kept?",
                         answerable=True, answer="Customer records are kept for 7 years after the end of the "
                         "customer relationship.")
UNANSWERABLE = GoldQuestion(id="none-atm-limit", question="What is the daily ATM withdrawal limit?", answerable=False)


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
