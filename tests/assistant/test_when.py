"""The period a question names for its documents: which phrases count, and which do not."""

import time

import pytest

from assistant.when import Period, named_period


@pytest.mark.parametrize("question, start, end", [
    ("How long were customer records kept under the Data Retention Policy in force in 2023?", "2023-01-01", "2023-12-31"),
    ("What did the policy require as at 1 March 2024?", "2024-03-01", "2024-03-01"),
    ("Which rules were effective on March 5, 2024?", "2024-03-05", "2024-03-05"),
    ("What does the 2023 version of the AML policy say about PEPs?", "2023-01-01", "2023-12-31"),
    ("Which retention periods were in effect in June 2022?", "2022-06-01", "2022-06-30"),
    ("What was applicable as of 2024-01-15?", "2024-01-15", "2024-01-15"),
    ("What was valid during Feb. 2024?", "2024-02-01", "2024-02-29"),
])
def test_a_date_tied_to_the_documents_is_a_period(question, start, end):
    period = named_period(question)
    assert period is not None and (period.start, period.end) == (start, end)
    assert period.words.lower() in " ".join(question.lower().split())


@pytest.mark.parametrize("question", [
    "What do the Money Laundering Regulations 2017 require?",  # a year in a title
    "How many complaints were received in 2023?",  # a year the documents are not asked at
    "Is the licence valid for 1000 users?",
    "What was in force as of 2024-02-30?",  # no such day
    "What is in force today?",
    "",
])
def test_other_years_and_non_dates_name_no_period(question):
    assert named_period(question) is None


def test_the_patterns_take_linear_time_on_long_questions():
    start = time.perf_counter()
    assert named_period("in force " * 20000 + "in 2023") == Period("2023-01-01", "2023-12-31", "in force in 2023")
    assert named_period("as of " * 20000) is None
    assert time.perf_counter() - start < 5
