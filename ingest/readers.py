"""Read a file into pages of text: PDF (pypdfium2, page by page), DOCX, HTML, Markdown, text, passage JSON/JSONL.

The file type is decided by the content, not only the extension, so a renamed file gets a specific error. Every
failure to read one file, including a parser library's own exception, is an IngestError naming the file.
"""

from __future__ import annotations

import codecs
import hashlib
import json
import re
import zipfile
import zlib
from pathlib import Path

from lxml import etree

from ingest.decompression import check_pdf, check_zip
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


def read_file(path: str | Path, *, max_file_mb: float = 100.0, min_chars_per_page: int = 16,
              max_decompressed_page_mb: float = 64.0, max_decompressed_file_mb: float = 1024.0) -> SourceDocument:
    """Read one file into a SourceDocument, or raise IngestError naming the file and the reason (a PDF page or
    DOCX part inflating past `max_decompressed_page_mb`, or the whole file past `max_decompressed_file_mb`, is
    refused before it is parsed)."""
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
    try:
        with open(path, "rb") as f:
            head = f.read(4096)
    except OSError as e:
        raise IngestError(path, f"cannot open the file ({e.strerror or e})") from e
    _check_content_matches(path, kind, head)
    if kind == "pdf":
        check_pdf(path, page_limit_mb=max_decompressed_page_mb, file_limit_mb=max_decompressed_file_mb)
    elif kind == "docx":
        check_zip(path, part_limit_mb=max_decompressed_page_mb, file_limit_mb=max_decompressed_file_mb)

    try:
        pages, meta_title, external_id = _READERS[kind](path)
    except (IngestError, MemoryError):
        raise
    except Exception as e:  # a parser library's own error type: this one file fails, the batch goes on
        raise IngestError(path, f"could not read it as {_KIND_NAMES[kind]} ({type(e).__name__}: {e})") from e
    empty = [p.number for p in pages if p.number is not None and len(p.text.strip()) < min_chars_per_page]
    if not any(p.text.strip() for p in pages) or (kind == "pdf" and len(empty) == len(pages)):
        if kind == "pdf":
            raise IngestError(path, f"no text layer on any page ({_page_ranges(empty)}): a scanned PDF? "
                                    "run OCR on it first", pages=empty)
        raise IngestError(path, "no text found in the file")
    title = _choose_title(path, meta_title, pages)
    return SourceDocument(path=path, title=title, kind=kind, pages=pages, sha256=sha256_file(path), size=size,
                          empty_pages=empty, external_id=external_id)


_KIND_NAMES = {"pdf": "a PDF", "docx": "a DOCX", "html": "HTML", "markdown": "Markdown", "text": "text",
               "passages": "passage JSON"}

# Known binary formats by their first bytes. A PDF may start with junk, so it is looked for in the first 1 KB instead.
_MAGIC = (
    (b"PK\x03\x04", "zip"), (b"PK\x05\x06", "zip"), (b"PK\x07\x08", "zip"),  # a member, an empty archive, spanned
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "ole"),
    (b"\x89PNG\r\n\x1a\n", "png"), (b"\xff\xd8\xff", "jpeg"), (b"GIF87a", "gif"), (b"GIF89a", "gif"),
)
_DESCRIBED = {
    "pdf": "a PDF", "zip": "a ZIP archive", "json": "JSON", "text": "text/HTML", "binary": "binary data",
    "ole": "an OLE compound file (a legacy .doc/.xls, or a password-protected Office file)",
    "png": "a PNG image", "jpeg": "a JPEG image", "gif": "a GIF image",
}
# UTF-32 before UTF-16: the UTF-32-LE mark begins with the UTF-16-LE one.
_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32-le"), (codecs.BOM_UTF32_BE, "utf-32-be"), (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"), (codecs.BOM_UTF16_BE, "utf-16-be"),
)
# Control characters that real text files do hold: tabs, line and page breaks, DOS end-of-file, terminal colours.
_TEXT_CONTROLS = frozenset("\t\n\r\f\v\x1a\x1b")


def _check_content_matches(path: Path, kind: str, head: bytes) -> None:
    looks = _sniff(head)
    expected = {"pdf": "pdf", "docx": "zip", "passages": "json"}.get(kind, "text")
    if looks == expected:
        return
    if expected == "text" and looks in ("text", "json"):
        return
    raise IngestError(path, f"content does not match the '{path.suffix}' extension: "
                            f"the file looks like {_DESCRIBED[looks]}")


def _sniff(head: bytes) -> str:
    """What a file's first bytes look like: pdf, zip, ole, png, jpeg, gif, json, text or binary.

    Only real binary markers make text "binary": a known magic number, NUL bytes where the text is not UTF-16/32
    (with or without a byte-order mark), or many control characters. Bytes that are not UTF-8 are not one of them
    (a latin-1 file is text)."""
    if b"%PDF-" in head[:1024]:
        return "pdf"
    for magic, looks in _MAGIC:
        if head.startswith(magic):
            return looks
    codec, body = _text_codec(head)
    if codec is None and b"\x00" in head:
        return "binary"
    # latin-1 maps byte to character one to one, so control bytes count the same in any single-byte encoding.
    text = body.decode(codec or "latin-1", errors="ignore")  # "ignore": the head may end inside a character
    controls = sum(1 for ch in text if (ch < " " and ch not in _TEXT_CONTROLS) or ch == "\x7f")
    if controls > 0.05 * len(text):
        return "binary"
    return "json" if text.lstrip(" \t\r\n")[:1] in ("[", "{") else "text"


def _split_bom(raw: bytes) -> tuple[str | None, bytes]:
    """The codec a byte-order mark names and the bytes after it, or (None, raw) without one."""
    for bom, codec in _BOMS:
        if raw.startswith(bom):
            return codec, raw[len(bom):]
    return None, raw


def _text_codec(raw: bytes) -> tuple[str | None, bytes]:
    """Like `_split_bom`, and without a mark, UTF-16 recognised by its zero bytes: text in a Latin script written as
    UTF-16 has a NUL in every other byte (the high byte of each character), at odd offsets for little-endian."""
    codec, body = _split_bom(raw)
    if codec is not None or b"\x00" not in raw[:4096]:
        return codec, body
    head = raw[:4096]
    head = head[: len(head) - len(head) % 2]
    if len(head) < 4:
        return None, raw
    even, odd = head[0::2], head[1::2]
    for codec, zeros, other in (("utf-16-le", odd, even), ("utf-16-be", even, odd)):
        if zeros.count(0) >= 0.6 * len(zeros) and other.count(0) <= 0.02 * len(other):
            try:
                head.decode(codec)
            except UnicodeDecodeError:
                continue
            return codec, raw
    return None, raw


def _decode_text(raw: bytes, declared: str | None = None) -> str:
    """Decode a text-like file: a byte-order mark (UTF-8/16/32) first, then UTF-8, then the charset the file declares
    (HTML), else cp1252, or latin-1 where cp1252 leaves a byte undefined.

    UTF-8 comes before a declared charset because non-ASCII text that happens to be valid UTF-8 is almost never
    anything else, while pages saying iso-8859-1 but holding UTF-8 are common."""
    codec, body = _text_codec(raw)
    if codec is not None:
        return body.decode(codec, errors="replace")  # a damaged character stays one "\ufffd"
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        pass
    if declared is not None and declared != "utf-8":
        try:
            return raw.decode(declared, errors="replace")
        except (LookupError, UnicodeError):  # a bytes-to-bytes codec such as "zip", or one that cannot decode at all
            pass
    try:
        return raw.decode("cp1252")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


# Python codecs that are transforms, not character sets: a page naming one is not taken at its word.
_NOT_CHARSETS = frozenset({"unicode-escape", "raw-unicode-escape", "undefined", "idna", "punycode", "utf-7"})
_CHARSET = re.compile(rb"""<meta[^>]*?charset\s*=\s*["']?\s*([A-Za-z0-9_.:-]+)"""
                      rb"""|<\?xml[^>]*?encoding\s*=\s*["']([A-Za-z0-9_.:-]+)""", re.I)


def _declared_charset(raw: bytes) -> str | None:
    """The codec an HTML file's <meta charset> (or XML declaration) names in its first 4 KB, if Python knows it."""
    match = _CHARSET.search(raw[:4096])
    if match is None:
        return None
    try:
        codec = codecs.lookup((match[1] or match[2]).decode("ascii")).name
    except LookupError:
        return None
    if codec in ("iso8859-1", "ascii"):  # browsers read these labels as windows-1252, and so do authors' tools
        return "cp1252"
    if codec.startswith(("utf-16", "utf-32")) or codec in _NOT_CHARSETS:  # UTF-16 needs a byte-order mark
        return None
    return codec


def _read_pdf(path: Path) -> tuple[list[Page], str | None, None]:
    import pypdfium2 as pdfium  # lazy: pypdfium2 loads its native library; only PDFs need it

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
    try:
        with zipfile.ZipFile(path) as archive:
            names = set(archive.namelist())
    except (zipfile.BadZipFile, NotImplementedError) as e:  # NotImplementedError: a ZIP feature Python lacks
        raise IngestError(path, f"corrupt DOCX: not a readable ZIP archive ({e})") from e
    try:
        return _docx_pages(path)
    except MemoryError:
        raise
    except Exception as e:  # python-docx and lxml raise many types (even AttributeError) on a damaged package
        # Word always writes word/document.xml; python-docx only needs the part the package points to, so the name
        # explains a failure but is not required up front.
        if "word/document.xml" not in names:
            raise IngestError(path, "a ZIP archive but not a Word document (no word/document.xml)") from e
        raise IngestError(path, f"corrupt DOCX: {_docx_problem(path, names, e)}") from e


# What zipfile raises for one damaged member: a bad CRC, broken deflate data, a cut-off stream, an unknown method.
_ZIP_MEMBER_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError)


def _docx_problem(path: Path, names: set[str], error: Exception) -> str:
    from docx.opc.exceptions import OpcError  # lazy: python-docx, ~0.1 s; only DOCX files need it

    if isinstance(error, etree.XMLSyntaxError):
        detail = error.msg or str(error)  # lxml's str() adds a "(<string>, line n)" that repeats the position
        parser = etree.XMLParser(resolve_entities=False, no_network=True)  # as strict as python-docx's own
        with zipfile.ZipFile(path) as archive:
            for name in sorted(n for n in names if n.endswith((".xml", ".rels"))):
                try:
                    etree.fromstring(archive.read(name), parser)
                except etree.XMLSyntaxError:
                    return f"{name} is not well-formed XML ({detail})"
                except _ZIP_MEMBER_ERRORS:
                    continue  # a damaged member is a different problem; keep looking for the XML one
        return f"a part is not well-formed XML ({detail})"
    if isinstance(error, KeyError):
        return f"a part it refers to is missing ({error.args[0] if error.args else error})"
    if isinstance(error, _ZIP_MEMBER_ERRORS):
        return f"a compressed part cannot be read ({error})"
    if isinstance(error, OpcError | ValueError):  # python-docx's own words, e.g. "not a Word file, content type is ..."
        return str(error)
    return f"{type(error).__name__}: {error}"


def _docx_pages(path: Path) -> tuple[list[Page], str | None, None]:
    import docx  # lazy: python-docx takes ~0.1 s to import; only DOCX files need it

    document = docx.Document(str(path))
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
    from bs4 import (  # lazy: bs4 takes ~0.2 s to import; only HTML files need it
        BeautifulSoup,
        ParserRejectedMarkup,
    )

    raw = path.read_bytes()
    try:
        soup = BeautifulSoup(_decode_text(raw, _declared_charset(raw)), "html.parser")
    except ParserRejectedMarkup as e:
        raise IngestError(path, f"malformed HTML that the parser rejected ({e})") from e
    except RecursionError as e:
        raise IngestError(path, "HTML nested too deeply to read") from e
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
    # Chunks store character spans of this decoded text, never byte offsets, so any encoding keeps them consistent.
    text = _decode_text(path.read_bytes()).replace("\r\n", "\n")
    return [Page(number=None, text=text)], None, None


_ID_KEYS = ("ID", "id", "uuid")
_TEXT_KEYS = ("Passage", "text", "passage", "content")
_PASSAGE_KEYS = ("PassageID", "passage_id", "clause", "clause_id")


def _read_passages(path: Path) -> tuple[list[Page], str | None, str | None]:
    """Passage records from JSON or JSONL, which must be UTF-8 (a UTF-8/16/32 byte-order mark is honoured).

    JSON is UTF-8 by definition (RFC 8259) and passage files are machine exports quoted verbatim in citations, so a
    byte that is not UTF-8 means a wrong export or a damaged file: it is refused with its offset, never guessed."""
    content = _decode_json(path, path.read_bytes())
    if path.suffix.lower() == ".jsonl":
        # Split on "\n" only: str.splitlines also splits inside strings holding U+2028 and other line separators.
        lines = enumerate(content.split("\n"), 1)
        records = [_parse_json(path, line, lineno) for lineno, line in lines if line.strip()]
    else:
        records = _parse_json(path, content)
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


def _decode_json(path: Path, raw: bytes) -> str:
    codec, body = _text_codec(raw)
    try:
        return body.decode(codec or "utf-8")
    except UnicodeDecodeError as e:
        at = len(raw) - len(body) + e.start
        line = body[:e.start].decode(codec or "utf-8", errors="replace").count("\n") + 1
        encoding = (codec or "utf-8").upper().replace("-LE", "").replace("-BE", "")
        raise IngestError(path, f"not valid {encoding} JSON at byte {at}, line {line} (0x{raw[at]:02x}: {e.reason}); "
                                "save it as UTF-8") from e


def _parse_json(path: Path, text: str, lineno: int | None = None) -> object:
    """One JSON value; `lineno` is the line of a JSONL record, so the error names the file's line, not the record's."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise IngestError(path, f"invalid JSON at line {lineno or e.lineno}: {e.msg}") from e


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
    return _title_from_name(path.stem) or path.name


def _title_from_name(stem: str) -> str:
    """A title from a file name: separators become spaces and lower-case words are capitalised, while words already
    written with capitals keep them ("GDPR.pdf" -> "GDPR", "SP800-66-Revision1" -> "SP800 66 Revision1")."""
    words = re.sub(r"[_\-]+", " ", stem).split()
    return " ".join(w.capitalize() if w == w.lower() else w for w in words)


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
