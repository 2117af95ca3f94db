"""Citation parsing and sentence verification against real retrieved sources and the real embedding model."""

import pytest

from assistant.app.ui.chat import plain
from assistant.citations import Verifier, clip, content_words, make_citation, parse_markers, split_sentences
from assistant.retrieval import Retriever
from ingest.settings import Settings
from tests.library import sample_library


@pytest.fixture(scope="module")
def setup():
    lib = sample_library()
    sources = Retriever(lib).retrieve("Within what time must a complaint be acknowledged and answered?", 5)
    return Verifier(lib.base_embedder(), Settings().support_threshold), sources


def test_parse_markers_in_all_common_shapes():
    assert parse_markers("A [1]. B [2, 3]. C [3][4]. D [1; 5]") == [1, 2, 3, 4, 5]
    assert parse_markers("no citations here") == []


def test_split_sentences_keeps_trailing_markers_with_their_sentence():
    parts = split_sentences("Complaints are acknowledged quickly. [1] The final answer follows later [2].")
    assert len(parts) == 2 and parts[0].endswith("[1]")


def test_supported_sentence_passes_and_quotes_the_source(setup):
    verifier, sources = setup
    n = next(i for i, s in enumerate(sources, 1) if "acknowledges every complaint" in s.chunk.text)
    sentences, quotes = verifier.verify(f"Complaints must be acknowledged within 5 business days [{n}].", sources)
    assert sentences[0].supported, sentences[0]
    cite = make_citation(n, sources[n - 1], quotes[n])
    assert cite.file == "complaints_handling_policy.pdf" and cite.page >= 1
    assert "business days" in cite.quote
    page_text_span = cite.char_end - cite.char_start
    assert 0 < page_text_span <= len(sources[n - 1].chunk.text)


def test_planted_unsupported_sentence_is_flagged(setup):
    verifier, sources = setup
    n = next(i for i, s in enumerate(sources, 1) if "acknowledges every complaint" in s.chunk.text)
    answer = (f"Complaints must be acknowledged within 5 business days [{n}]. "
              f"Customers who complain receive a free upgrade to a premium credit card [{n}].")
    sentences, _ = verifier.verify(answer, sources)
    assert sentences[0].supported
    assert not sentences[1].supported


def test_wrong_number_is_not_supported(setup):
    verifier, sources = setup
    n = next(i for i, s in enumerate(sources, 1) if "acknowledges every complaint" in s.chunk.text)
    sentences, _ = verifier.verify(f"Complaints must be acknowledged within 45 business days [{n}].", sources)
    assert not sentences[0].supported


def test_uncited_supported_sentence_gets_a_citation_attached(setup):
    verifier, sources = setup
    sentences, quotes = verifier.verify("Complaints must be acknowledged within 5 business days.", sources)
    s = sentences[0]
    assert s.supported and s.attached == s.citations and len(s.citations) == 1
    assert "business days" in sources[s.citations[0] - 1].chunk.text


def test_out_of_range_citation_is_ignored_and_not_supported(setup):
    verifier, sources = setup
    sentences, _ = verifier.verify("The bank is headquartered on the Moon [9].", sources)
    assert sentences[0].citations == [] and not sentences[0].supported


@pytest.mark.parametrize("claim, said, meant", [
    # a deadline taken from the next sentence of the same clause: the number is in the chunk, so only the
    # near-copy check can see that this sentence of the source says otherwise
    ("Complaints about payment services are answered within 35 business days of receipt", "35", "15"),
    ("The Bank sends a final response to every other complaint within 6 weeks of receipt", "6", "8"),
])
def test_a_near_copy_that_changes_a_word_of_its_source_is_not_supported(setup, claim, said, meant):
    verifier, sources = setup
    n = next(i for i, s in enumerate(sources, 1) if claim.split()[-5] in s.chunk.text and meant in s.chunk.text)
    changed, = verifier.verify(f"{claim} [{n}].", sources)[0]
    assert not changed.supported and changed.issue == f"it says '{said}' where the source says '{meant}'", changed
    faithful, = verifier.verify(f"{claim.replace(f' {said} ', f' {meant} ')} [{n}].", sources)[0]
    assert faithful.supported and faithful.issue is None, faithful


def test_the_near_copy_check_leaves_paraphrases_and_omissions_alone():
    from assistant.citations import substitution

    source = ["In the case of a personal data breach, the controller shall without undue delay and, where feasible, "
              "not later than 72 hours after having become aware of it, notify the personal data breach to the "
              "supervisory authority competent in accordance with Article 55.",
              "The processor shall notify the controller without undue delay after becoming aware of a personal "
              "data breach."]
    words = {w for s in source for w in content_words(s)} | {"in", "the", "case", "of", "a", "it", "to"}
    spliced = ("According to the GDPR, the processor shall not later than 72 hours after having become aware of it, "
               "notify the personal data breach to the supervisory authority.")
    assert substitution(spliced, source, words) == (0, "it says 'processor' where the source says 'controller'")
    for faithful in ("The controller shall notify the supervisory authority of a personal data breach not later "
                     "than 72 hours after having become aware of it.",  # reordered: not a near-copy
                     "The controller shall, where feasible, notify the breach to the supervisory authority.",
                     "A controller must tell the regulator about a breach within three days.",  # its own words
                     source[1]):  # a copy of the other sentence is judged against that one
        assert substitution(faithful, source, words) is None, faithful


def _header(n: int, source) -> str:
    """The lead-in the shipped adapter writes: a copy of the source's header in the prompt."""
    from assistant.prompt import source_header

    return "According to " + source_header(n, source.chunk).replace(f"[{n}] ", f"[{n}], ", 1) + ":"


def test_a_lead_in_that_only_names_its_source_is_not_a_claim_and_passes_its_citation_on(setup):
    verifier, sources = setup
    n = next(i for i, s in enumerate(sources, 1) if "acknowledges every complaint" in s.chunk.text)
    quote = next(q for q in split_sentences(sources[n - 1].chunk.text) if "5 business days" in q)
    sentences, quotes = verifier.verify(f"{_header(n, sources[n - 1])}\n{quote}", sources)
    assert [s.text for s in sentences] == [f"{quote} [{n}]"]  # the lead-in is neither shown nor scored
    assert sentences[0].supported and sentences[0].citations == [n] and sentences[0].attached == []
    assert "5 business days" in quotes[n].quote

    # a lead-in naming the wrong source: the quote is cited by the verifier with the source it is in
    other = next(i for i, s in enumerate(sources, 1) if "5 business days" not in s.chunk.text)
    sentences, _ = verifier.verify(f"{_header(other, sources[other - 1])}\n{quote}", sources)
    assert [(s.citations, s.attached) for s in sentences] == [([n], [n])]
    assert verifier.verify(_header(n, sources[n - 1]), sources) == ([], {})  # nothing but a lead-in: no answer


def test_a_sentence_with_content_is_never_taken_for_a_lead_in(setup):
    from assistant.citations import is_lead_in

    titles = content_words("Complaints Handling Policy")
    assert is_lead_in("According to [1], Complaints Handling Policy, page 2, clause 4.2:", titles)
    assert is_lead_in("As set out in [2], page ii.", titles)
    assert not is_lead_in("According to [1], complaints are acknowledged within 5 business days.", titles)
    assert not is_lead_in("Complaints Handling Policy, page 2, clause 4.2:", titles)  # cites nothing


def test_a_claim_that_names_a_page_or_clause_the_source_is_not_is_unsupported(setup):
    verifier, sources = setup
    n = next(i for i, s in enumerate(sources, 1) if "acknowledges every complaint" in s.chunk.text)
    source = sources[n - 1].chunk
    claim = "the Bank acknowledges every complaint in writing within 5 business days of receipt"
    right, = verifier.verify(f"Under clause {source.clause}, {claim} [{n}].", sources)[0]
    assert right.supported and right.issue is None, right
    wrong_clause = "9.9" if source.clause != "9.9" else "8.8"
    wrong, = verifier.verify(f"Under clause {wrong_clause}, {claim} [{n}].", sources)[0]
    assert not wrong.supported, wrong
    assert wrong.issue == f"it names clause {wrong_clause}, but the source is clause {source.clause}", wrong
    page = source.page_label or str(source.page)
    off_page, = verifier.verify(f"On page {int(page) + 3} of the policy, {claim} [{n}].", sources)[0]
    assert not off_page.supported and off_page.issue == f"it names page {int(page) + 3}, but the source is page {page}"
    assert verifier.verify(f"On page {page} of the policy, {claim} [{n}].", sources)[0][0].supported


def test_clauses_are_compared_as_parts_of_one_another():
    from assistant.citations import _same_clause, places

    assert _same_clause("3.1", "3.1.(b)") and _same_clause("3.1.(b)", "3.1") and _same_clause("Article 33", "33")
    assert _same_clause("33(1)", "Article 33") and _same_clause("4.2.", "4.2")
    assert not _same_clause("3.1", "3.10") and not _same_clause("4.4", "4.1") and not _same_clause("3", "33")
    assert places("Under Article 33(1) and clause 4.2 [1], see page ii.") == [
        ("article", "33(1)"), ("clause", "4.2"), ("page", "ii")]


def test_markers_written_in_front_of_each_sentence_belong_to_that_sentence():
    parts = split_sentences("[1] Complaints are acknowledged quickly. [2] The final answer follows later.")
    assert parts == ["[1] Complaints are acknowledged quickly.", "[2] The final answer follows later."]


def test_a_sentence_citing_the_wrong_number_cites_the_source_it_copies(setup):
    verifier, sources = setup
    n = next(i for i, s in enumerate(sources, 1) if "acknowledges every complaint" in s.chunk.text)
    wrong = next(i for i, s in enumerate(sources, 1) if "business days" not in s.chunk.text)
    sentences, quotes = verifier.verify(f"Complaints must be acknowledged within 5 business days [{wrong}].", sources)
    s = sentences[0]
    assert s.supported and s.citations == [n] and s.corrected == [wrong], s
    assert s.text == f"Complaints must be acknowledged within 5 business days. [{n}]" and n in quotes
    assert wrong not in quotes
    kept = Verifier(verifier.embedder, verifier.threshold, realign_margin=None)
    sentences, _ = kept.verify(f"Complaints must be acknowledged within 5 business days [{wrong}].", sources)
    assert sentences[0].citations == [wrong] and not sentences[0].corrected


def test_a_cited_source_that_does_not_support_the_sentence_is_dropped_beside_one_that_does(setup):
    verifier, sources = setup
    n = next(i for i, s in enumerate(sources, 1) if "acknowledges every complaint" in s.chunk.text)
    other = next(i for i, s in enumerate(sources, 1) if "business days" not in s.chunk.text)
    sentences, quotes = verifier.verify(f"Complaints must be acknowledged within 5 business days [{n}][{other}].",
                                        sources)
    assert sentences[0].supported and sentences[0].citations == [n] and other not in quotes
    assert sentences[0].text == f"Complaints must be acknowledged within 5 business days. [{n}]"  # its marker too


def test_a_sentence_that_only_says_where_the_answer_is_is_not_shown_or_scored(setup):
    verifier, sources = setup
    n = next(i for i, s in enumerate(sources, 1) if "acknowledges every complaint" in s.chunk.text)
    answer = (f"Complaints must be acknowledged within 5 business days [{n}]. "
              "This is stated in clause 4.2 of the document. This is outlined in the guidance.")
    sentences, _ = verifier.verify(answer, sources)
    assert [s.text for s in sentences] == [f"Complaints must be acknowledged within 5 business days [{n}]."]
    # a sentence with a claim of its own is never taken for a pointer
    sentences, _ = verifier.verify(f"{answer[:-len('This is outlined in the guidance.')]}The document must be "
                                   "kept for five years.", sources)
    assert len(sentences) == 2 and not sentences[1].supported


def test_the_verifiers_cache_of_source_sentences_is_bounded(setup):
    verifier, sources = setup
    bounded = Verifier(verifier.embedder, verifier.threshold, realign_margin=None)  # only the cited source is read
    bounded.CACHE_CHUNKS = 2
    for n in range(1, 4):
        bounded.verify(f"Complaints must be acknowledged within 5 business days [{n}].", sources)
        assert len(bounded._cache) == min(n, 2) and next(reversed(bounded._cache)) == sources[n - 1].chunk.chunk_id
    assert sources[0].chunk.chunk_id not in bounded._cache  # the oldest dropped


def test_a_long_quote_is_cut_after_a_whole_word_with_an_ellipsis():
    text = "Records of every complaint are kept for five years after the complaint is closed. " * 6
    short = clip(text, 100)
    assert len(short) <= 101 and short.endswith("…") and text.startswith(short[:-1])
    assert text[len(short) - 1] == " "  # the word before the ellipsis is whole
    assert clip("Kept for five years.", 100) == "Kept for five years."


def test_a_source_card_shows_markdown_as_text():
    assert plain("## 2. Personal Account Dealing **Staff** must pre-clear trades.") == \
        "2. Personal Account Dealing Staff must pre-clear trades."
