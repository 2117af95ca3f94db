"""Clause-aware chunking: clause ids, the token budget, one page per chunk, exact character spans, whole
sentences, passage records kept apart, and a character bound that no run of text escapes."""

import json
import re
import time
from pathlib import Path

import pytest

from ingest.chunking import chunk_document, clause_at, recognise_clause, sentence_spans
from ingest.readers import read_file
from ingest.types import Page, SourceDocument
from tests.fixtures.make_bad_inputs import text_pdf
from tests.library import CORPUS, FIXTURES

DEFAULT_BUDGET = 224  # Settings.chunk_tokens
SENTENCE_END = re.compile(r"""[.!?;:][)\]"']*$""")


@pytest.mark.parametrize("line, clause, level", [
    ("Article 33 Notification of a personal data breach", "Article 33", 3),
    ("3.5.2 Records are kept for seven years.", "3.5.2", None),
    ("1.1.2.(a) identify the customer;", "1.1.2.(a)", None),
    ("3.1.(c) opens an account", "3.1.(c)", None),
    ("AC-2 Account management. Every account has an owner.", "AC-2", None),
    ("Section 3 - Customer Due Diligence", "Section 3", 2),
    ("Annex A - Customers Eligible for Simplified Due Diligence", "Annex A", 1),
    ("A.2 Simplified due diligence reduces the extent of verification", "A.2", None),
    ("A.1.(c) credit and financial institutions", "A.1.(c)", None),
])
def test_recognise_clause(line, clause, level):
    found, found_level, heading = recognise_clause(line)
    assert (found, found_level) == (clause, level)
    assert heading == (line if level is not None else None)


def test_markdown_heading_is_a_heading_and_may_name_a_clause():
    assert recognise_clause("## 2. Personal Account Dealing") == (None, 1, "2. Personal Account Dealing")
    assert recognise_clause("### Article 5 Principles") == ("Article 5", 2, "Article 5 Principles")


@pytest.mark.parametrize("line", ["The Bank keeps records for 5 years.", "2024 was a year of change.",
                                  "1. Purpose and Scope", "- Identify and verify every customer", "",
                                  "Article 2(2) applies to the processing of personal data by the Union.",
                                  "Article 6 of Directive 95/46/EC is repealed."])
def test_ordinary_lines_open_no_clause(line):
    assert recognise_clause(line) == (None, None, None)


def page_of(doc, chunk):
    """The page a chunk was cut from."""
    if doc.kind == "passages":
        return next(p for p in doc.pages if p.passage_id == chunk.passage_id)
    return next(p for p in doc.pages if p.number == chunk.page)


def ends_cleanly(text: str, end: int) -> bool:
    """A chunk ending at `end` of its page text ends a sentence or a line."""
    return bool(SENTENCE_END.search(text[:end])) or text[end:end + 1] in ("", "\n") or not text[end:].strip()


def in_a_sentence_over_budget(text: str, end: int, embedder, budget: int) -> bool:
    """Whether `end` falls inside one sentence that alone exceeds the budget (only such a sentence may be cut)."""
    for s, e in sentence_spans(text):
        if s < end < e:
            return embedder.count_tokens([text[s:e]])[0] > budget
    return False


@pytest.mark.parametrize("name", ["aml_kyc_policy.pdf", "information_security_policy.pdf",
                                  "data_retention_policy_v2.pdf", "whistleblowing_policy.md"])
@pytest.mark.parametrize("budget", [DEFAULT_BUDGET, 64])
def test_chunks_respect_budget_pages_spans_and_sentences(name, budget, embedder):
    doc = read_file(CORPUS / name)
    chunks = chunk_document(doc, "doc", 1, embedder.count_tokens, budget=budget)
    assert len(chunks) >= 8
    assert [c.seq for c in chunks] == list(range(len(chunks)))
    assert [c.chunk_id for c in chunks] == [f"doc@v1#{i:05d}" for i in range(len(chunks))]
    counts = embedder.count_tokens([c.text for c in chunks])
    for chunk, tokens in zip(chunks, counts, strict=True):
        assert tokens <= budget, (tokens, chunk.text)
        page = page_of(doc, chunk)
        # One page per chunk, and the span on that page is exactly the chunk text.
        assert page.text[chunk.char_start:chunk.char_end] == chunk.text
        assert chunk.page_label == page.label
        assert chunk.text == chunk.text.strip() and chunk.text
        if not ends_cleanly(page.text, chunk.char_end):
            assert in_a_sentence_over_budget(page.text, chunk.char_end, embedder, budget), chunk.text
    if budget == DEFAULT_BUDGET:
        assert all(ends_cleanly(page_of(doc, c).text, c.char_end) for c in chunks)
    else:  # the small budget really splits clauses at sentence ends
        assert len(chunks) > len(chunk_document(doc, "doc", 1, embedder.count_tokens, budget=DEFAULT_BUDGET))


@pytest.mark.parametrize("budget", [DEFAULT_BUDGET, 64])
def test_chunks_carry_the_clause_found_in_their_text(embedder, budget):
    doc = read_file(CORPUS / "aml_kyc_policy.pdf")
    chunks = chunk_document(doc, "aml", 1, embedder.count_tokens, budget=budget)
    in_force = None  # the last clause opened before the current chunk
    for chunk in chunks:
        opened = [cid for cid, _, _ in map(recognise_clause, chunk.text.splitlines()) if cid is not None]
        if chunk.clause is not None:
            # The clause opens in this chunk, or the chunk continues the clause in force before it.
            assert chunk.clause in opened or chunk.clause == in_force, (chunk.clause, in_force, chunk.text[:80])
        in_force = opened[-1] if opened else in_force
    clauses = {c.clause for c in chunks} | {cid for c in chunks for _, cid in c.extra.get("clauses", [])}
    assert {"1.1", "3.1.(c)", "4.2.1", "6.1", "7.1"} <= clauses or budget != DEFAULT_BUDGET
    assert {"3.3.2", "6.1", "8.2"} <= clauses


@pytest.mark.parametrize("budget", [DEFAULT_BUDGET, 64])
def test_every_clause_line_is_cited_as_its_own_clause(embedder, budget):
    """Where a clause's text starts inside a chunk, clause_at (what citations name) gives that clause, also when
    a short clause, a section heading and the next clause share one chunk ("6.5 ... Section 7 ... 7.1 ...": the
    chunk is 6.5 from its start, 7.1 from the heading on). Headings themselves take the clause they introduce."""
    checked = 0
    for path in sorted(CORPUS.iterdir()):
        for chunk in chunk_document(read_file(path), "doc", 1, embedder.count_tokens, budget=budget):
            offset = 0
            for line in chunk.text.split("\n"):
                cid, level, _ = recognise_clause(line.strip())
                if cid is not None and level is None:
                    at = offset + len(line) - len(line.lstrip())
                    assert clause_at(chunk, at) == cid, (path.name, cid, chunk.clause, chunk.text[:80])
                    checked += 1
                offset += len(line) + 1
    assert checked > 150


def test_a_chunk_of_several_short_clauses_is_named_by_its_first(embedder):
    doc = read_file(CORPUS / "data_retention_policy_v2.pdf")
    chunks = chunk_document(doc, "dr", 2, embedder.count_tokens, budget=DEFAULT_BUDGET)
    deletion = next(c for c in chunks if "6.3 Deletion runs automatically" in c.text)
    assert deletion.text.startswith("6.3") and deletion.clause == "6.3"
    # the clauses merged after the first are recorded with their offsets, so a quote is cited by its own clause
    certificate = deletion.text.index("6.4 ")
    assert [cid for _, cid in deletion.extra["clauses"]][:2] == ["6.3", "6.4"]
    assert (clause_at(deletion, 0), clause_at(deletion, certificate + 5)) == ("6.3", "6.4")


def test_a_one_sentence_clause_is_a_chunk_of_its_own(embedder):
    """A clause of one full sentence is not folded into the next: "4.4 ... any counterparty" and "4.5 Any gift ...
    to a public official" sharing a chunk made the question about the second find the first."""
    doc = read_file(CORPUS / "gifts_entertainment_policy.pdf")
    chunks = chunk_document(doc, "gifts", 1, embedder.count_tokens, budget=DEFAULT_BUDGET)
    by_clause = {c.clause: c for c in chunks}
    assert by_clause["4.4"].text.startswith("4.4 Compliance reviews any counterparty")
    assert "public official" not in by_clause["4.4"].text
    assert by_clause["4.5"].text.startswith("4.5 Any gift, entertainment or hospitality given to a public official")
    assert "clauses" not in by_clause["4.4"].extra and "clauses" not in by_clause["4.5"].extra
    # a short clause at the end of a section is not carried over the next section's heading
    assert by_clause["5.3"].text.rstrip().endswith("from the date of the entry.")
    assert by_clause["6.1"].text.startswith("Section 6 - Travel and Accommodation")


def test_chunks_know_their_section_and_printed_page(embedder):
    doc = read_file(CORPUS / "aml_kyc_policy.pdf")
    chunks = chunk_document(doc, "aml", 1, embedder.count_tokens, budget=DEFAULT_BUDGET)
    sar = next(c for c in chunks if "6.1 Any employee" in c.text)
    assert (sar.clause, sar.page, sar.page_label) == ("6.1", 6, "4")
    assert sar.heading_path == ["Section 6 - Suspicious Activity Reporting"]
    body = [c for c in chunks if c.page >= 3]
    assert all(c.heading_path and c.heading_path[-1].startswith(("Section ", "Annex ")) for c in body)
    # The lettered annex after section 8 is cited as the annex, not as clause 8.3.
    annex = next(c for c in chunks if "A.2 Simplified due diligence" in c.text)
    assert annex.clause.startswith("A.") and annex.page == 7
    assert annex.heading_path == ["Annex A - Customers Eligible for Simplified Due Diligence"]


def test_control_ids_are_clauses(embedder):
    doc = read_file(CORPUS / "information_security_policy.pdf")
    chunks = chunk_document(doc, "infosec", 1, embedder.count_tokens, budget=DEFAULT_BUDGET)
    by_clause = {c.clause: c for c in chunks}
    assert {"AC-2", "IA-5", "SI-2", "CP-9"} <= set(by_clause)
    assert by_clause["IA-5"].page == 2
    assert by_clause["IA-5"].heading_path == ["Section 3 - Identification and Authentication (IA)"]


def test_markdown_heading_path_nests(embedder):
    doc = read_file(FIXTURES / "good" / "policy.md")
    chunks = chunk_document(doc, "coi", 1, embedder.count_tokens, budget=DEFAULT_BUDGET)
    dealing = next(c for c in chunks if "2.1 Employees must obtain pre-clearance" in c.text)
    # The heading opens the chunk of the clause it introduces; the short clause 1.2 before it is not carried over.
    assert dealing.text.startswith("## 2. Personal Account Dealing")
    assert dealing.heading_path == ["Conflicts of Interest Policy", "2. Personal Account Dealing"]
    assert dealing.page is None and dealing.clause == "2.1"
    assert clause_at(dealing, dealing.text.index("2.1 Employees")) == "2.1"
    scope = next(c for c in chunks if c.clause == "1.2")
    assert scope.heading_path == ["Conflicts of Interest Policy", "1. Purpose and Scope"]
    assert "## 2." not in scope.text


def test_passage_records_become_one_chunk_each_never_merged(embedder):
    doc = read_file(FIXTURES / "good" / "passages.json")
    # Passages shorter than the merge threshold (here 40 tokens) still stay one chunk each.
    chunks = chunk_document(doc, "rulebook", 1, embedder.count_tokens, budget=DEFAULT_BUDGET, min_tokens=40)
    assert min(embedder.count_tokens([p.text for p in doc.pages])) < 40
    assert [c.passage_id for c in chunks] == [p.passage_id for p in doc.pages]
    assert [c.text for c in chunks] == [p.text for p in doc.pages]
    assert [c.clause for c in chunks] == [p.passage_id for p in doc.pages]
    assert all(c.extra["DocumentID"] == 901 and c.page is None for c in chunks)


def test_a_passage_over_budget_is_split_at_sentences(tmp_path, embedder):
    sentence = "An Authorised Person must keep a record of each customer due diligence check it performs. "
    long_text = (sentence * 30).strip()
    path = tmp_path / "rulebook.json"
    path.write_text(json.dumps([
        {"DocumentID": 7, "PassageID": "1.1", "Passage": "This Rulebook applies to every Authorised Person."},
        {"DocumentID": 7, "PassageID": "1.2", "Passage": long_text},
        {"DocumentID": 7, "PassageID": "1.3", "Passage": "Guidance may be issued by the Regulator."},
    ]))
    doc = read_file(path)
    budget = 100
    chunks = chunk_document(doc, "rulebook", 1, embedder.count_tokens, budget=budget)
    assert [c.passage_id for c in chunks][0] == "1.1" and chunks[-1].passage_id == "1.3"
    pieces = [c for c in chunks if c.passage_id == "1.2"]
    assert len(pieces) >= 3
    assert all(n <= budget for n in embedder.count_tokens([c.text for c in pieces]))
    assert all(c.text.endswith("performs.") for c in pieces)
    assert " ".join(c.text for c in pieces) == long_text
    assert all(long_text[c.char_start:c.char_end] == c.text for c in pieces)
    assert len(chunks) == len(pieces) + 2


@pytest.mark.parametrize("path", sorted(CORPUS.glob("*.pdf")), ids=lambda p: p.name)
def test_every_corpus_pdf_chunks_within_budget_with_clauses_and_sections(path, embedder):
    doc = read_file(path)
    chunks = chunk_document(doc, "doc", 1, embedder.count_tokens, budget=DEFAULT_BUDGET)
    assert chunks
    assert max(embedder.count_tokens([c.text for c in chunks])) <= DEFAULT_BUDGET
    for chunk in chunks:
        assert page_of(doc, chunk).text[chunk.char_start:chunk.char_end] == chunk.text
        assert chunk.content_hash and chunk.title == doc.title and chunk.source_file == path.name
    with_clause = [c for c in chunks if c.clause]
    assert len(with_clause) >= 0.6 * len(chunks), [(c.clause, c.text[:40]) for c in chunks]
    assert sum(bool(c.heading_path) for c in chunks) >= 0.6 * len(chunks)
    assert len({c.content_hash for c in chunks}) == len(chunks)


def text_document(tmp_path, text: str):
    """A plain-text document read the way ingest reads it."""
    path = tmp_path / "long.txt"
    path.write_text(text, encoding="utf-8")
    return read_file(path, max_file_mb=100)


def test_a_20_mb_word_becomes_many_chunks_within_the_character_bound(tmp_path, embedder):
    """The tokenizer counts a run of letters over 100 characters as one token: without a character bound this
    20 MB "word" was one chunk. It is hard-split every 4,000 characters, each piece marked, in one linear pass."""
    word = "x" * 20_000_000
    doc = text_document(tmp_path, f"1.1 Passwords have at least 12 characters.\n{word}\n1.2 Keys are rotated yearly.\n")
    page = doc.pages[0].text
    start = time.perf_counter()
    chunks = chunk_document(doc, "long", 1, embedder.count_tokens, budget=DEFAULT_BUDGET, max_chars=4000)
    seconds = time.perf_counter() - start
    assert seconds < 60  # about 6 s here, nearly all of it the tokenizer reading each character once
    assert len(chunks) == 5002 and max(len(c.text) for c in chunks) == 4000
    assert all(page[c.char_start:c.char_end] == c.text for c in chunks)
    assert chunks[0].text == "1.1 Passwords have at least 12 characters." and chunks[-1].text.startswith("1.2 Keys")
    pieces = chunks[1:-1]
    assert "".join(c.text for c in pieces) == word  # cut, not lost: every piece ends where the next starts
    assert [c.extra.get("hard_split", False) for c in pieces] == [False] + [True] * (len(pieces) - 1)
    assert {c.clause for c in pieces} == {"1.1"}  # still the clause it was written under


def test_long_words_within_the_token_budget_are_cut_at_blanks_not_inside_words(tmp_path, embedder):
    # 150 words of 150 letters: 150 tokens, under the budget, but 22,650 characters
    words = [("abcdefghijklmnopqrstuvwxy"[i % 25] * 150) for i in range(150)]
    doc = text_document(tmp_path, " ".join(words) + ".\n")
    chunks = chunk_document(doc, "long", 1, embedder.count_tokens, budget=DEFAULT_BUDGET, max_chars=1000)
    assert len(chunks) == 25 and all(len(c.text) <= 1000 for c in chunks)
    assert all(doc.pages[0].text[c.char_start:c.char_end] == c.text for c in chunks)
    assert " ".join(c.text for c in chunks) == " ".join(words) + "."
    assert not any(c.extra.get("hard_split") for c in chunks)


def test_a_passage_over_the_character_bound_is_split_and_keeps_its_id(tmp_path, embedder):
    path = tmp_path / "rulebook.json"
    path.write_text(json.dumps([{"DocumentID": 7, "PassageID": "9.1", "Passage": "Z" * 9000},
                                {"DocumentID": 7, "PassageID": "9.2", "Passage": "A short rule."}]))
    chunks = chunk_document(read_file(path), "rulebook", 1, embedder.count_tokens, budget=DEFAULT_BUDGET,
                            max_chars=4000)
    assert [(c.passage_id, len(c.text), c.extra.get("hard_split", False)) for c in chunks] == [
        ("9.1", 4000, False), ("9.1", 4000, True), ("9.1", 1000, True), ("9.2", 13, False)]


def test_lines_that_differ_in_their_numbers_are_content_not_a_running_header(tmp_path, embedder):
    path = tmp_path / "fees.pdf"
    path.write_bytes(text_pdf(["Clause 4.1 The annual fee is 120 pounds.", "Clause 4.2 The annual fee is 340 pounds.",
                               "Clause 4.3 The annual fee is 560 pounds."]))
    chunks = chunk_document(read_file(path), "fees", 1, embedder.count_tokens)
    assert [c.text for c in chunks] == ["Clause 4.1 The annual fee is 120 pounds.",
                                        "Clause 4.2 The annual fee is 340 pounds.",
                                        "Clause 4.3 The annual fee is 560 pounds."]


def test_running_headers_and_page_numbers_are_dropped_only_in_their_place(tmp_path, embedder):
    pages = [f"Northwind Conduct Manual\n{body}\nPage {n + 4} of 9" for n, body in enumerate((
        "1.1 Staff declare gifts over 50 pounds.", "1.2 Staff keep a register.\nNorthwind Conduct Manual",
        "1.3 Compliance reviews the register."), 1)]
    path = tmp_path / "manual.pdf"
    path.write_bytes(text_pdf(pages))
    doc = read_file(path)
    text = " ".join(c.text for c in chunk_document(doc, "manual", 1, embedder.count_tokens))
    assert "Page" not in text and text.count("Northwind Conduct Manual") == 1  # the one mid-page is content
    assert all(f"1.{n} " in text for n in (1, 2, 3))


def test_a_document_of_only_repeated_lines_is_kept_rather_than_emptied(tmp_path, embedder):
    path = tmp_path / "rules.pdf"
    path.write_bytes(text_pdf(["Rule 1 applies to staff.", "Rule 2 applies to staff.",
                                           "Rule 3 applies to staff."]))  # counts with the page
    chunks = chunk_document(read_file(path), "rules", 1, embedder.count_tokens)
    assert "Rule 2 applies to staff." in " ".join(c.text for c in chunks)


def test_eu_recitals_are_labelled_recitals_not_the_article_a_line_of_their_prose_names():
    """GDPR's recital 85 read "clause Article 2": a wrapped line of recital prose began "Article 2(2)"."""
    text = ("Whereas:\n(84) In order to enhance compliance with this Regulation where processing operations are likely"
            " to result in a high risk, the controller should be responsible for an impact assessment.\n"
            "(85) A personal data breach may, if not addressed in an appropriate and timely manner, result in damage "
            "to natural persons, as referred to in\nArticle 2(2) of this Regulation and elsewhere.\n"
            "HAVE ADOPTED THIS REGULATION:\nArticle 2\nMaterial scope\n(1) This Regulation applies to the "
            "processing of personal data wholly or partly by automated means.\n")
    doc = SourceDocument(path=Path("gdpr.txt"), title="GDPR", kind="text", pages=[Page(number=1, text=text)],
                         sha256="x", size=len(text))
    chunks = chunk_document(doc, "gdpr", 1, lambda texts: [len(t.split()) for t in texts], budget=30, min_tokens=1)
    where = {c.text.split()[0]: clause_at(c, 0) for c in chunks}
    assert where["(84)"] == "Recital 84" and where["(85)"] == "Recital 85"
    assert [clause_at(c, 0) for c in chunks if "automated means" in c.text] == ["Article 2"]
