"""Question generation helpers: what counts as a usable generated question."""

from finetune.questions import clean_question, question_chunks
from tests.library import sample_library


def test_the_first_question_is_kept_and_framing_is_dropped():
    assert clean_question("The question is: What does the policy say about passports?\nMore text") == \
        "What does the policy say about passports?"
    assert clean_question('"Question: How long are customer records kept? And why?"') == \
        "How long are customer records kept?"


def test_statements_and_fragments_are_not_questions():
    assert clean_question("Customer records are kept for seven years.") is None
    assert clean_question("Why?") is None
    assert clean_question("") is None


def test_one_sentence_clauses_get_questions_and_a_table_of_contents_does_not():
    """With one clause per chunk the sample manual's rules are often one sentence: clause 4.2 of the retention
    policy (182 characters, what "How long must customer records be kept?" needs) is a candidate; the contents page
    and headings are not."""
    library = sample_library()
    try:
        rows = list(library.catalog.all_chunk_rows())
    finally:
        library.close()
    texts = [text for _cid, text in question_chunks(rows)]
    assert any(t.startswith("4.2 Customer records") and len(t) < 200 for t in texts)
    assert not any("......" in t for t in texts)
    assert all(len(t.strip()) >= 80 for t in texts)
    assert len(texts) > 1.5 * sum(len(text.strip()) >= 200 for _c, _k, text in rows)
