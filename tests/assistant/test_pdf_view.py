"""Opening a citation: the real stored PDF page rendered with the cited span highlighted where pdfium itself finds
that text, and non-PDF sources shown as text with the span marked."""

import re
from dataclasses import replace

import pypdfium2 as pdfium
import pytest

from assistant.citations import Support, make_citation
from assistant.pdf_view import SourceViewError, citation_view, cleaned_to_raw, mark_text, render_pdf_page
from assistant.types import Answer, Retrieved, Sentence
from ingest.readers import read_file
from tests.library import CORPUS, sample_library

PDF = CORPUS / "information_security_policy.pdf"
QUOTE = "Passwords must be at least 14 characters long"


@pytest.fixture(scope="module")
def library():
    lib = sample_library()
    yield lib
    lib.close()


def chunk_with(library, document_id: str, text: str):
    """The chunk of the active version of `document_id` that contains `text`."""
    record = library.catalog.get(document_id)
    return next(c for c in library.catalog.chunks_of(record.doc_key) if text in " ".join(c.text.split()))


def span_of(text: str, quote: str) -> tuple[int, int]:
    """Offsets of `quote` in `text`, whatever the line breaks between its words."""
    match = re.search(r"\s+".join(map(re.escape, quote.split())), text)
    assert match, quote
    return match.span()


def overlaps(a, b) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def test_offsets_map_back_to_pdfium_text_on_every_sample_page():
    for path in sorted(CORPUS.glob("*.pdf")):
        doc = read_file(path)
        pdf = pdfium.PdfDocument(str(path))
        for i, page in enumerate(doc.pages):
            raw = pdf[i].get_textpage().get_text_range()
            mapping = cleaned_to_raw(raw)
            rebuilt = "".join(raw[j] for j in mapping[:-1]).replace("\r", "\n").replace("\x02", "-")
            assert rebuilt == page.text, (path.name, i + 1)
        pdf.close()


def test_highlight_covers_the_quote_where_pdfium_finds_it():
    page_text = read_file(PDF).pages[1].text
    start, end = span_of(page_text, QUOTE)
    scale = 1.5
    image, boxes = render_pdf_page(PDF, 2, start, end, scale=scale)
    assert boxes, "nothing highlighted"

    pdf = pdfium.PdfDocument(str(PDF))
    page = pdf[1]
    textpage = page.get_textpage()
    found = textpage.search(QUOTE.split()[0] + " " + QUOTE.split()[1]).get_next()  # "Passwords must"
    first_char = textpage.get_charbox(found[0])
    height = page.get_height()
    pdf.close()
    expected = (first_char[0] * scale, (height - first_char[3]) * scale, first_char[2] * scale,
                (height - first_char[1]) * scale)
    assert any(overlaps(expected, box) for box in boxes), (expected, boxes)
    x0, y0, x1, y1 = (int(v) for v in boxes[0])
    pixels = list(image.crop((x0 + 2, y0 + 2, x1 - 2, y1 - 2)).getdata())
    yellow = sum(1 for r, g, b in pixels if r > 200 and g > 170 and b < r - 60)
    assert yellow > 0.5 * len(pixels), "the span is not tinted yellow"
    assert image.size[0] > 800


def test_pdf_citation_opens_the_stored_copy_at_its_page(library):
    chunk = chunk_with(library, "information-security-policy", QUOTE)
    start, end = span_of(chunk.text, QUOTE)
    citation = make_citation(1, Retrieved(chunk, 0.03), Support(0.9, QUOTE, start, end))
    view = citation_view(library.catalog, citation)
    assert view.page == 2 and view.image is not None and view.html is None
    assert view.highlighted and len(view.boxes) >= 1
    assert "page 2" in view.where and chunk.clause in view.where


def test_a_saved_answers_citation_is_highlighted_where_the_fresh_one_was(library):
    """A saved answer is kept as Answer.to_record(), which has no page offsets: its quote is found in its chunk."""
    chunk = chunk_with(library, "information-security-policy", QUOTE)
    start, end = span_of(chunk.text, QUOTE)
    fresh = make_citation(1, Retrieved(chunk, 0.03), Support(0.9, QUOTE, start, end))
    answer = Answer("q", "a [1]", False, [Sentence("a [1]", [1], True, 0.9)], [fresh], "m", None, {})
    [saved] = Answer.from_record(answer.to_record()).citations
    assert (saved.char_start, saved.char_end) == (0, 0)
    assert citation_view(library.catalog, saved).boxes == citation_view(library.catalog, fresh).boxes
    assert Answer.from_record(answer.to_record()).to_record() == answer.to_record()


def test_a_saved_citation_whose_quote_was_cut_with_an_ellipsis_is_still_highlighted(library):
    """A citation without a supporting sentence quotes the start of its chunk, cut after a word with '…'; saved, it
    is found in its chunk all the same."""
    chunk = chunk_with(library, "information-security-policy", QUOTE)
    cited = make_citation(1, Retrieved(chunk, 0.03), None)
    assert cited.quote.endswith("…") and len(chunk.text) > 300
    answer = Answer("q", "a [1]", False, [Sentence("a [1]", [1], True, 0.9)], [cited], "m", None, {})
    [saved] = Answer.from_record(answer.to_record()).citations
    assert (saved.char_start, saved.char_end) == (0, 0)
    assert citation_view(library.catalog, saved).highlighted


def test_markdown_citation_is_shown_as_text_with_the_span_marked(library):
    record = library.catalog.get("whistleblowing-policy")
    chunk = library.catalog.chunks_of(record.doc_key)[2]
    citation = make_citation(1, Retrieved(chunk, 0.03), None)
    view = citation_view(library.catalog, citation)
    assert view.image is None and view.highlighted
    marked = re.search(r'<mark class="cited-span">(.*?)</mark>', view.html, re.S).group(1)
    assert " ".join(chunk.text.split()[:5]) in " ".join(marked.replace("<br>", " ").split())


def test_marked_text_is_escaped():
    html = mark_text("<script>alert(1)</script> and <b>more</b>", 0, 25)
    assert "<script>" not in html and "<b>" not in html
    assert '<mark class="cited-span">&lt;script&gt;alert(1)&lt;/script&gt;</mark>' in html


def test_missing_document_or_page_is_a_clear_error(library):
    chunk = chunk_with(library, "information-security-policy", QUOTE)
    citation = make_citation(1, Retrieved(chunk, 0.03), None)
    with pytest.raises(SourceViewError, match="not in the library"):
        citation_view(library.catalog, replace(citation, document_id="no-such-policy"))
    with pytest.raises(SourceViewError, match="page 9 does not exist"):
        render_pdf_page(PDF, 9, 0, 10)
