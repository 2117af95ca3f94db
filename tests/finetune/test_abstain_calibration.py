"""Choosing the reranker's abstention rule: the grid pair that refuses most unanswerable questions without refusing
more answerable ones than allowed; and the questions no library answers, as the library calibration reads them."""

from finetune.abstain_calibration import LOGITS, WIDE_LOGITS, choose, no_library_answers


def _row(cosine: float, logit: float) -> dict:
    return {"cosine": cosine, "logit": logit}


def test_the_rule_refuses_most_unanswerable_without_refusing_an_answerable_question():
    answerable = [_row(0.52, 2.1), _row(0.48, 3.0), _row(0.80, -3.5)]  # the last is not asked: its cosine is high
    unanswerable = [_row(0.45, -3.2), _row(0.50, 1.0), _row(0.62, 1.9), _row(0.30, 3.5)]
    chosen = choose(answerable, unanswerable, threshold=0.35, max_false=0.0, logits=WIDE_LOGITS)["chosen"]
    # the cosine gate refuses 0.30; asking below 0.70 and abstaining below 2.0 refuses the others; 2.2 would refuse
    # the answerable 2.1; a lower cosine would let 0.62 through
    assert (chosen["cosine"], chosen["logit"]) == (0.65, 2.0)
    assert chosen["false_refusals"] == 0.0 and chosen["refusals_unanswerable"] == 1.0
    # the shipped reranker's grid stops at -1.0: the same rows then refuse only what a logit below -1 refuses,
    # with the least asking (cosine 0.50) and the lowest logit that does it
    narrow = choose(answerable, unanswerable, threshold=0.35, max_false=0.0, logits=LOGITS)["chosen"]
    assert (narrow["cosine"], narrow["logit"]) == (0.50, -3.0) and narrow["refusals_unanswerable"] == 0.5


def test_questions_no_library_answers_are_unanswerable():
    questions = no_library_answers()
    assert len(questions) == 32 and not any(q.answerable or q.evidence for q in questions)
    assert len({q.id for q in questions}) == 32
