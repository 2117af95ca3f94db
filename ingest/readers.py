"""Read a file into pages of text: PDF (pypdfium2, page by page), DOCX, HTML, Markdown, text, passage JSON/JSONL.

The file type is decided by the content, not only the extension, so a renamed file gets a specific error.
"""

from __future__ import annotations

import hashlib
import json
import re
import zipfile
from pathlib import Path

from ingest.types import IngestError, Page, SourceDocument

SUPPORTED_SUFFIXES = {
    ".pdf": "pdf",
    ".docx": "docx",
    ".html": "html",
    ".htm": "html",
    ".md": "markdown",
    ".markdown": "markdown",
    ".txt": "text",
    ".json": "passages",
    ".jsonl": "passages",
}


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def is_supported(path: Path) -> bool:
    """Whether the extension is one we read (content is checked when reading)."""
    return path.suffix.lower() in SUPPORTED_SUFFIXES


def read_file(path: str | Path, *, max_file_mb: float = 100.0, min_chars_per_page: int = 16) -> SourceDocument:
    """Read one file into a SourceDocument, or raise IngestError naming the file and the reason."""
    path = Path(path)
    if not path.exists():
        raise IngestError(path, "file not found")
    if not path.is_file():
        raise IngestError(path, "not a regular file")
    kind = SUPPORTED_SUFFIXES.get(path.suffix.lower())
    if kind is None:
        supported = ", ".join(sorted(SUPPORTED_SUFFIXES))
        raise IngestError(path, f"unsupported file type '{path.suffix or '(none)'}' (supported: {supported})")
    size = path.stat().st_size
    if size == 0:
        raise IngestError(path, "empty file (0 bytes)")
    if size > max_file_mb * 1024 * 1024:
        raise IngestError(path, f"file is {size / 1024 / 1024:.1f} MB, over the {max_file_mb:g} MB limit "
                                "(raise COMPLY_MAX_FILE_MB to allow it)")
    with open(path, "rb") as f:
        head = f.read(4096)
    _check_content_matches(path, kind, head)

    reader = _READERS[kind]
    pages, meta_title, external_id = reader(path)
    empty = [p.number for p in pages if p.number is not None and len(p.text.strip()) < min_chars_per_page]
    if not any(p.text.strip() for p in pages) or (kind == "pdf" and len(empty) == len(pages)):
        if kind == "pdf":
            raise IngestError(path, f"no text layer on any page ({_page_ranges(empty)}): a scanned PDF? "
                                    "run OCR on it first", pages=empty)
        raise IngestError(path, "no text found in the file")
    title = _choose_title(path, meta_title, pages)
    return SourceDocument(path=path, title=title, kind=kind, pages=pages, sha256=sha256_file(path), size=size,
                          empty_pages=empty, external_id=external_id)


def _check_content_matches(path: Path, kind: str, head: bytes) -> None:
    looks = _sniff(head)
    expected = {"pdf": "pdf", "docx": "zip", "passages": "json"}.get(kind, "text")
    if looks == expected:
        return
    if expected == "text" and looks in ("text", "json"):
        return
    described = {"pdf": "a PDF", "zip": "a ZIP archive", "json": "JSON", "text": "text/HTML",
                 "binary": "binary data"}[looks]
    raise IngestError(path, f"content does not match the '{path.suffix}' extension: the file looks like {described}")


def _sniff(head: bytes) -> str:
    if b"%PDF-" in head[:1024]:
        return "pdf"
    if head.startswith(b"PK\x03\x04"):
        return "zip"
    if b"\x00" in head:
        return "binary"
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        try:
            text = head[:-4].decode("utf-8")  # a multi-byte character cut at the 4096-byte boundary
        except UnicodeDecodeError:
            return "binary"
    return "json" if text.lstrip("\ufeff \t\r\n")[:1] in ("[", "{") else "text"


def _read_pdf(path: Path) -> tuple[list[Page], str | None, None]:
    import pypdfium2 as pdfium

    try:
        pdf = pdfium.PdfDocument(str(path))
    except pdfium.PdfiumError as e:
        msg = str(e)
        if "password" in msg.lower():
            raise IngestError(path, "encrypted PDF: it needs a password to open; save an unprotected copy") from e
        raise IngestError(path, f"corrupt or unreadable PDF ({msg})") from e
    try:
        if len(pdf) == 0:
            raise IngestError(path, "PDF has no pages")
        pages = []
        for i in range(len(pdf)):
            page = pdf[i]
            textpage = page.get_textpage()
            text = _clean_pdf_text(textpage.get_text_range())
            textpage.close()
            page.close()
            pages.append(Page(number=i + 1, text=text, label=pdf.get_page_label(i) or None))
        title = (pdf.get_metadata_dict().get("Title") or "").strip() or None
    except pdfium.PdfiumError as e:
        raise IngestError(path, f"corrupt PDF: a page could not be read ({e})") from e
    finally:
        pdf.close()
    return pages, title, None


def _clean_pdf_text(text: str) -> str:
    # pdfium marks soft hyphens and uses \r\n; keep offsets simple by normalising to \n only.
    return text.replace("\r\n", "\n").replace("\r", "\n").replace("\ufffe", "").replace("\x02", "-")


def _read_docx(path: Path) -> tuple[list[Page], str | None, None]:
    import docx

    try:
        document = docx.Document(str(path))
    except (zipfile.BadZipFile, KeyError, ValueError) as e:
        raise IngestError(path, f"corrupt DOCX ({e})") from e
    lines = []
    for para in document.paragraphs:
        text = para.text.strip()
        if not text:
            continue
        style = (para.style.name or "").lower() if para.style is not None else ""
        if style.startswith("heading") or style == "title":
            level = 1 if style == "title" else int(re.sub(r"\D", "", style) or 1)
            text = "#" * level + " " + text
        lines.append(text)
    for table in document.tables:
        for row in table.rows:
            lines.append(" | ".join(cell.text.strip() for cell in row.cells))
    title = (document.core_properties.title or "").strip() or None
    return [Page(number=None, text="\n".join(lines))], title, None


def _read_html(path: Path) -> tuple[list[Page], str | None, None]:
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(path.read_bytes(), "html.parser")
    for tag in soup(["script", "style", "noscript", "template"]):
        tag.decompose()
    title = soup.title.get_text(strip=True) if soup.title else None
    lines = []
    body = soup.body or soup
    for el in body.find_all(["h1", "h2", "h3", "h4", "h5", "h6", "p", "li", "td", "th", "pre", "blockquote"]):
        if el.find_parent(["p", "li", "td", "th", "pre", "blockquote"]) is not None:
            continue
        text = " ".join(el.get_text(" ", strip=True).split())
        if not text:
            continue
        if el.name.startswith("h"):
            text = "#" * int(el.name[1]) + " " + text
        lines.append(text)
    return [Page(number=None, text="\n".join(lines))], title, None


def _read_text(path: Path) -> tuple[list[Page], str | None, None]:
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError:
        text = path.read_bytes().decode("latin-1")
    text = text.replace("\r\n", "\n")
    return [Page(number=None, text=text)], None, None


_ID_KEYS = ("ID", "id", "uuid")
_TEXT_KEYS = ("Passage", "text", "passage", "content")
_PASSAGE_KEYS = ("PassageID", "passage_id", "clause", "clause_id")


def _read_passages(path: Path) -> tuple[list[Page], str | None, str | None]:
    raw = path.read_text(encoding="utf-8-sig")
    try:
        if path.suffix.lower() == ".jsonl":
            records = [json.loads(line) for line in raw.splitlines() if line.strip()]
        else:
            records = json.loads(raw)
    except json.JSONDecodeError as e:
        raise IngestError(path, f"invalid JSON at line {e.lineno}: {e.msg}") from e
    if isinstance(records, dict):
        records = records.get("passages") or records.get("records") or [records]
    if not isinstance(records, list) or not records:
        raise IngestError(path, "passage file must hold a non-empty list of records")
    pages, doc_ids = [], set()
    for i, rec in enumerate(records):
        if not isinstance(rec, dict):
            raise IngestError(path, f"record {i} is not an object")
        text = next((rec[k] for k in _TEXT_KEYS if isinstance(rec.get(k), str)), None)
        if text is None:
            raise IngestError(path, f"record {i} has no text field (one of {', '.join(_TEXT_KEYS)})")
        pid = next((str(rec[k]) for k in _PASSAGE_KEYS if rec.get(k) not in (None, "")), None)
        rid = next((str(rec[k]) for k in _ID_KEYS if rec.get(k) not in (None, "")), None)
        extra = {k: v for k, v in rec.items() if k not in _TEXT_KEYS and isinstance(v, str | int | float | bool)}
        if "DocumentID" in rec:
            doc_ids.add(str(rec["DocumentID"]))
        pages.append(Page(number=None, text=text, passage_id=pid or rid or str(i), extra=extra))
    external = doc_ids.pop() if len(doc_ids) == 1 else None
    return pages, None, external


_READERS = {
    "pdf": _read_pdf,
    "docx": _read_docx,
    "html": _read_html,
    "markdown": _read_text,
    "text": _read_text,
    "passages": _read_passages,
}


def _choose_title(path: Path, meta_title: str | None, pages: list[Page]) -> str:
    if meta_title and not re.fullmatch(r"(untitled|microsoft word.*|document\d*)", meta_title, re.I):
        return meta_title
    for page in pages[:1]:
        for line in page.text.splitlines():
            line = line.strip().lstrip("#").strip()
            if 3 <= len(line) <= 120 and re.search(r"[A-Za-z]{3}", line):
                if path.suffix.lower() in (".md", ".markdown", ".html", ".htm", ".docx"):
                    return line
                break
    return re.sub(r"[_\-]+", " ", path.stem).strip().title() or path.name


def _page_ranges(numbers: list[int]) -> str:
    """[1,2,3,7] -> 'pages 1-3, 7'."""
    if not numbers:
        return "no pages"
    parts, start, prev = [], numbers[0], numbers[0]
    for n in numbers[1:] + [None]:
        if n is not None and n == prev + 1:
            prev = n
            continue
        parts.append(f"{start}-{prev}" if prev != start else f"{start}")
        if n is not None:
            start = prev = n
    return ("page " if len(numbers) == 1 else "pages ") + ", ".join(parts)
