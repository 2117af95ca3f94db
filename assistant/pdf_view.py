"""Show a citation where it stands: the stored PDF page rendered to an image with the cited span highlighted, or,
for other documents, the cited passage as text with the span marked.

Offsets line up with ingestion: `ingest/readers.py` reads a PDF page with pdfium's `get_text_range()` and
normalises line breaks (`_clean_pdf_text`); a chunk's `char_start..char_end` are offsets in that cleaned text. We
map them back to pdfium's raw text indexes, then to pdfium char indexes, whose boxes are drawn on the page.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass, field, replace
from pathlib import Path

from assistant.types import Citation
from ingest.catalog import Catalog
from ingest.decompression import check_pdf
from ingest.types import ComplyError, IngestError

HIGHLIGHT_FILL = (255, 214, 0, 110)  # translucent marker yellow
HIGHLIGHT_EDGE = (200, 120, 0, 255)


class SourceViewError(ComplyError):
    """A cited source cannot be shown (document or stored file gone, page out of range); the reason says which."""


@dataclass
class PageView:
    """What the UI shows for one citation: a page image (PDFs) or marked-up text (other documents)."""

    title: str
    file: str
    page: int | None
    page_label: str | None
    clause: str | None
    image: object | None = None  # PIL.Image with the span highlighted
    html: str | None = None  # the passage with the span marked
    highlighted: bool = False  # whether the span was found and marked
    boxes: list[tuple[float, float, float, float]] = field(default_factory=list)  # pixel boxes on the image

    @property
    def where(self) -> str:
        """'page 4 (printed page iv), clause 3.1.(c)' — the place in words."""
        return describe_place(self.page, self.page_label, self.clause)


def describe_place(page: int | None, page_label: str | None, clause: str | None) -> str:
    """'page 4 (printed page iv), clause 3.1.(c)': a page, its printed label when it differs, and the clause."""
    parts = []
    if page is not None:
        label = f" (printed page {page_label})" if page_label and page_label != str(page) else ""
        parts.append(f"page {page}{label}")
    if clause:
        parts.append(f"clause {clause}")
    return ", ".join(parts) or "whole document"


def cleaned_to_raw(raw: str) -> list[int]:
    """For each character of `_clean_pdf_text(raw)`, its index in `raw` (plus one final entry for the end)."""
    index: list[int] = []
    i = 0
    while i < len(raw):
        ch = raw[i]
        if ch == "\ufffe":
            i += 1
            continue
        if ch == "\r" and i + 1 < len(raw) and raw[i + 1] == "\n":
            i += 1  # "\r\n" became the "\n"
            continue
        index.append(i)
        i += 1
    index.append(len(raw))
    return index


def span_boxes(textpage, page_text: str, start: int, end: int) -> list[tuple[float, float, float, float]]:
    """PDF-space boxes (left, bottom, right, top) covering cleaned-text offsets start..end of one page."""
    import pypdfium2.raw as pdfium_c  # lazy: comply --help loads this module; only images need it

    mapping = cleaned_to_raw(page_text)
    start, end = max(0, start), min(end, len(mapping) - 1)
    if end <= start:
        return []
    t_start, t_end = mapping[start], mapping[end - 1]
    c_start = pdfium_c.FPDFText_GetCharIndexFromTextIndex(textpage, t_start)
    c_end = pdfium_c.FPDFText_GetCharIndexFromTextIndex(textpage, t_end)
    if c_start < 0 or c_end < c_start:
        return []
    n = textpage.count_rects(c_start, c_end - c_start + 1)
    return [textpage.get_rect(i) for i in range(n)]


def render_pdf_page(path: str | Path, page: int, start: int, end: int, *, scale: float = 1.5,
                    max_decompressed_page_mb: float = 64.0, max_decompressed_file_mb: float = 1024.0):
    """Render 1-based `page` of the PDF at `path` with cleaned-text offsets start..end highlighted; a page whose
    streams inflate past the caps is refused before pdfium reads it. Returns (PIL image, pixel boxes drawn)."""
    import pypdfium2 as pdfium  # lazy: comply --help loads this module; only images need it
    from PIL import Image, ImageDraw  # lazy: comply --help loads this module; only images need it

    try:
        check_pdf(Path(path), page_limit_mb=max_decompressed_page_mb, file_limit_mb=max_decompressed_file_mb,
                  pages=[page], rendered=True)
    except IngestError as e:
        raise SourceViewError(f"{Path(path).name}: page {page} cannot be shown: {e.reason}") from e
    pdf = pdfium.PdfDocument(str(path))
    try:
        if not 1 <= page <= len(pdf):
            raise SourceViewError(f"{Path(path).name} has {len(pdf)} pages; page {page} does not exist")
        pdf_page = pdf[page - 1]
        textpage = pdf_page.get_textpage()
        raw = textpage.get_text_range()
        boxes = span_boxes(textpage, raw, start, end) if end > start else []
        left, bottom, _, top = pdf_page.get_bbox()  # the box pdfium renders
        image = pdf_page.render(scale=scale).to_pil().convert("RGBA")
        textpage.close()
        pdf_page.close()
    except pdfium.PdfiumError as e:
        raise SourceViewError(f"{Path(path).name}: page {page} could not be rendered ({e})") from e
    finally:
        pdf.close()
    pixels = [((lft - left) * scale - 2, (top - t) * scale - 2, (r - left) * scale + 2, (top - b) * scale + 2)
              for lft, b, r, t in boxes]
    overlay = Image.new("RGBA", image.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(overlay)
    for box in pixels:
        draw.rectangle(box, fill=HIGHLIGHT_FILL, outline=HIGHLIGHT_EDGE, width=1)
    return Image.alpha_composite(image, overlay).convert("RGB"), pixels


def mark_text(text: str, start: int, end: int) -> str:
    """HTML-escaped `text` with start..end wrapped in <mark>, line breaks kept."""
    start, end = max(0, min(start, len(text))), max(0, min(end, len(text)))
    if end < start:
        start, end = end, start
    before, span, after = (html.escape(part) for part in (text[:start], text[start:end], text[end:]))
    marked = f'<mark class="cited-span">{span}</mark>' if span else ""
    return f'<div class="source-text">{before}{marked}{after}</div>'.replace("\n", "<br>")


def citation_view(catalog: Catalog, citation: Citation, *, max_decompressed_page_mb: float = 64.0,
                  max_decompressed_file_mb: float = 1024.0) -> PageView:
    """The page (or passage) behind a citation, from our own stored copy of the document, with its span marked
    (a PDF page that inflates past the caps is refused: SourceViewError)."""
    record = catalog.get(citation.document_id, citation.version)
    if record is None:
        raise SourceViewError(f"document '{citation.document_id}' version {citation.version} is not in the library")
    view = PageView(title=citation.title, file=citation.file, page=citation.page, page_label=citation.page_label,
                    clause=citation.clause)
    if not citation.char_end and citation.chunk_id and citation.quote:
        citation = _located(catalog, citation)
    if record.kind == "pdf" and citation.page is not None:
        view.image, view.boxes = render_pdf_page(_stored_pdf(record), citation.page, citation.char_start,
                                                 citation.char_end,
                                                 max_decompressed_page_mb=max_decompressed_page_mb,
                                                 max_decompressed_file_mb=max_decompressed_file_mb)
        view.highlighted = bool(view.boxes)
        return view
    view.html, view.highlighted = _passage_html(catalog, record.doc_key, citation)
    return view


def page_view(catalog: Catalog, document_id: str, page: int, *, version: int | None = None,
              highlight: str | None = None, max_decompressed_page_mb: float = 64.0,
              max_decompressed_file_mb: float = 1024.0) -> PageView:
    """A page of a stored PDF (the version in force, or `version`) as an image, with the first place on it where
    `highlight` occurs (ignoring case and line breaks) marked; `highlighted` says whether it was found."""
    record = catalog.get(document_id, version)
    if record is None or record.status in ("deleted", "pending"):
        which = f" version {version}" if version is not None else ""
        raise SourceViewError(f"there is no document '{document_id}'{which} in the library")
    if record.kind != "pdf":
        raise SourceViewError(f"{record.file_name} is not a PDF, so it has no page images (answers quote its "
                              "passages in their citations)")
    on_page = [c for c in catalog.chunks_of(record.doc_key) if c.page == page]
    start = end = 0
    words = (highlight or "").split()
    if words:
        pattern = re.compile(r"\s+".join(map(re.escape, words)), re.IGNORECASE)
        found = next(((c, m) for c in on_page if (m := pattern.search(c.text))), None)
        if found:
            chunk, match = found
            start, end = chunk.char_start + match.start(), chunk.char_start + match.end()
    view = PageView(title=record.title, file=record.file_name, page=page,
                    page_label=on_page[0].page_label if on_page else None, clause=None)
    view.image, view.boxes = render_pdf_page(_stored_pdf(record), page, start, end,
                                             max_decompressed_page_mb=max_decompressed_page_mb,
                                             max_decompressed_file_mb=max_decompressed_file_mb)
    view.highlighted = bool(view.boxes)
    return view


def _located(catalog: Catalog, citation: Citation) -> Citation:
    """A citation from a saved answer (its record keeps no offsets) with its quote's offsets found in its chunk."""
    chunk = catalog.chunks([citation.chunk_id]).get(citation.chunk_id)
    # the quote's spaces were closed up, and a long one (a nearest passage) was cut after a word with an ellipsis
    pattern = r"\s+".join(map(re.escape, citation.quote.removesuffix("…").split()))
    found = re.search(pattern, chunk.text) if chunk else None
    if found is None:
        return citation
    return replace(citation, char_start=chunk.char_start + found.start(), char_end=chunk.char_start + found.end())


def _stored_pdf(record) -> Path:
    """comply's own copy of a PDF in the library's files (never the path it was uploaded from)."""
    stored = Path(record.stored_path) if record.stored_path else None
    if stored is None or not stored.is_file():
        raise SourceViewError(f"the stored copy of {record.file_name} is missing from the library's files")
    return stored


def _passage_html(catalog: Catalog, key: str, citation: Citation) -> tuple[str, bool]:
    """The cited chunk with its neighbours for context, the cited span marked."""
    chunks = catalog.chunks_of(key)
    at = next((i for i, c in enumerate(chunks) if c.chunk_id == citation.chunk_id), None)
    if at is None:
        return mark_text(citation.quote, 0, len(citation.quote)), True
    chunk = chunks[at]
    start, end = citation.char_start - chunk.char_start, citation.char_end - chunk.char_start
    parts = []
    if at > 0 and chunks[at - 1].page == chunk.page:
        parts.append(f'<div class="source-context">{html.escape(chunks[at - 1].text)}</div>'.replace("\n", "<br>"))
    parts.append(mark_text(chunk.text, start, end))
    if at + 1 < len(chunks) and chunks[at + 1].page == chunk.page:
        parts.append(f'<div class="source-context">{html.escape(chunks[at + 1].text)}</div>'.replace("\n", "<br>"))
    return "\n".join(parts), end > start
