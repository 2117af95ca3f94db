"""Citation parsing and sentence verification against real retrieved sources and the real embedding model."""

import pytest

from assistant.citations import Verifier, make_citation, parse_markers, split_sentences
from assistant.retrieval import Retriever
from ingest.settings import Settings
from tests.library import sample_library


@pytest.fixture(scope="module")
def setup():
    lib = sample_library()
    sources = Retriever(lib).retrieve("Within what time must a complaint be acknowledged and answered?", 5)
    return Verifier(lib.embedder, Settings().support_threshold), sources


def test_parse_markers_in_all_common_shapes():
    assert parse_markers("A [1]. B [2, 3]. C [3][4]. D [1; 5]") == [1, 2, 3, 4, 5]
    assert parse_markers("no citations here") == []


def test_split_sentences_keeps_trailing_markers_with_their_sentence():
    parts = split_sentences("Complaints are acknowledged quickly. [1] The final answer follows later [2].")
    assert len(parts) == 2 and parts[0].endswith("[1]")


def test_supported_sentence_passes_and_quotes_the_source(setup):
    verifier, sources = setup
    n = next(i for i, s in enumerate(sources, 1) if "business days" in s.chunk.text)
    sentences, quotes = verifier.verify(f"Complaints must be acknowledged within 5 business days [{n}].", sources)
    assert sentences[0].supported, sentences[0]
    cite = make_citation(n, sources[n - 1], quotes[n])
    assert cite.file == "complaints_handling_policy.pdf" and cite.page >= 1
    assert "business days" in cite.quote
    page_text_span = cite.char_end - cite.char_start
    assert 0 < page_text_span <= len(sources[n - 1].chunk.text)


def test_planted_unsupported_sentence_is_flagged(setup):
    verifier, sources = setup
    n = next(i for i, s in enumerate(sources, 1) if "business days" in s.chunk.text)
    answer = (f"Complaints must be acknowledged within 5 business days [{n}]. "
              f"Customers who complain receive a free upgrade to a premium credit card [{n}].")
    sentences, _ = verifier.verify(answer, sources)
    assert sentences[0].supported
    assert not sentences[1].supported


def test_wrong_number_is_not_supported(setup):
    verifier, sources = setup
    n = next(i for i, s in enumerate(sources, 1) if "business days" in s.chunk.text)
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
