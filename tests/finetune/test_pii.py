"""PII scrubbing: each kind of personal data is replaced and counted; regulation numbers survive."""

import pytest

from finetune.pii import Scrubber, scrub


@pytest.mark.parametrize("text, kind", [
    ("Write to jane.doe@example.co.uk for details.", "EMAIL"),
    ("Call +44 20 7946 0958 before noon.", "PHONE"),
    ("Call (020) 7946 0958 before noon.", "PHONE"),
    ("Pay into GB29 NWBK 6016 1331 9268 19 today.", "IBAN"),
    ("Pay into DE89370400440532013000 today.", "IBAN"),
    ("Her SSN is 123-45-6789.", "SSN"),
    ("NI number JG 12 34 56 C on file.", "UK_NINO"),
    ("NI number AB123456C on file.", "UK_NINO"),
    ("Debit account number 12345678 monthly.", "ACCOUNT"),
])
def test_each_kind_is_replaced_and_counted(text, kind):
    clean, counts = scrub(text)
    assert f"[{kind}]" in clean
    assert counts == {kind: 1}


def test_regulation_numbers_are_left_alone():
    text = ("Under Article 33(1) and clause 3.1.(c), transactions above EUR 10,000 are reported within 72 hours; "
            "records are kept for 5 years from 2024-01-01 (see section 4.2.1, page 12, [1]).")
    clean, counts = scrub(text)
    assert clean == text
    assert counts == {}


def test_counts_accumulate_over_messages_and_kinds_are_configurable():
    scrubber = Scrubber(kinds=("EMAIL",))
    messages = [{"role": "user", "content": "a@b.com and c@d.org, SSN 123-45-6789"},
                {"role": "assistant", "content": "Mail a@b.com [1]."}]
    out = scrubber.scrub_messages(messages)
    assert out[0]["content"] == "[EMAIL] and [EMAIL], SSN 123-45-6789"
    assert out[1]["content"] == "Mail [EMAIL] [1]."
    assert dict(scrubber.counts) == {"EMAIL": 3}
    assert messages[0]["content"].startswith("a@b.com")  # the input is not modified


def test_extra_patterns_and_unknown_kinds():
    scrubber = Scrubber(kinds=(), extra={"STAFF_ID": r"\bEMP-\d{5}\b"})
    assert scrubber.scrub("Employee EMP-12345 approved.") == "Employee [STAFF_ID] approved."
    with pytest.raises(ValueError, match="unknown PII kind"):
        Scrubber(kinds=("PASSPORT",))
