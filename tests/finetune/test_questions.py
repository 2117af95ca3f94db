"""Question generation helpers: what counts as a usable generated question."""

from finetune.questions import clean_question


def test_the_first_question_is_kept_and_framing_is_dropped():
    assert clean_question("The question is: What does the policy say about passports?\nMore text") == \
        "What does the policy say about passports?"
    assert clean_question('"Question: How long are customer records kept? And why?"') == \
        "How long are customer records kept?"


def test_statements_and_fragments_are_not_questions():
    assert clean_question("Customer records are kept for seven years.") is None
    assert clean_question("Why?") is None
    assert clean_question("") is None
