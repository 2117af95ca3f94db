"""Plain data passed between the ingestion steps and on to the assistant."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from datetime import date
from pathlib import Path


class ComplyError(Exception):
    """The base of every error comply raises on purpose: its message says, in words, what was wrong and with what
    (a file, a user, a setting, a model), so an edge (CLI, browser app, API) shows it as it is. Anything else that
    escapes is a bug."""


class IngestError(ComplyError):
    """A file could not be ingested; carries the file and a specific, human-readable reason."""

    def __init__(self, file: str | Path, reason: str, *, pages: list[int] | None = None):
        self.file = str(file)
        self.reason = reason
        self.pages = pages or []
        super().__init__(f"{self.file}: {reason}")


def iso_date(text: str | None, what: str = "date") -> str | None:
    """A YYYY-MM-DD date, normalised, or None when empty; ValueError naming `what` for anything else (dates are
    compared as text in the catalog, so "01/06/2024" must never reach it)."""
    text = (text or "").strip()
    if not text:
        return None
    try:
        return date.fromisoformat(text).isoformat()
    except ValueError:
        raise ValueError(f"the {what} '{text}' is not a date: write it as YYYY-MM-DD, e.g. 2025-01-31") from None


def plural(n: int, noun: str) -> str:
    """'1 page', '3 pages'."""
    return f"{n} {noun}{'s' * (n != 1)}"


# Characters that would move the cursor, start a line or reorder text in a terminal: C0/C1 controls, line and
# paragraph separators, bidirectional overrides.
_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def printable(text: str) -> str:
    """`text` safe to print on one line: control and text-direction characters written as escapes (a newline in a
    file name becomes `\\n` and cannot forge a line of a report)."""
    return _UNPRINTABLE.sub(lambda m: _ESCAPES.get(m[0]) or (f"\\x{ord(m[0]):02x}" if ord(m[0]) < 0x100
                                                            else f"\\u{ord(m[0]):04x}"), text)


def display_name(text: str) -> str:
    """A file name or path as text that can be stored and printed: bytes that are not UTF-8 (kept by Python as
    surrogates) become U+FFFD."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


@dataclass
class Page:
    """One physical page (1-based) of a source file, or one passage record of a passage JSON file."""

    number: int | None
    text: str
    label: str | None = None
    passage_id: str | None = None
    extra: dict = field(default_factory=dict)


@dataclass
class SourceDocument:
    """A file as read: its pages plus what we know about it before chunking."""

    path: Path
    title: str
    kind: str  # pdf | docx | html | markdown | text | passages
    pages: list[Page]
    sha256: str
    size: int
    empty_pages: list[int] = field(default_factory=list)
    external_id: str | None = None  # e.g. ObliQA DocumentID


@dataclass
class Chunk:
    """A retrievable unit of text with everything needed to cite it exactly."""

    chunk_id: str
    document_id: str
    version: int
    title: str
    source_file: str
    text: str
    seq: int
    page: int | None = None
    page_label: str | None = None
    char_start: int = 0
    char_end: int = 0
    clause: str | None = None
    heading_path: list[str] = field(default_factory=list)
    passage_id: str | None = None
    content_hash: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def doc_key(self) -> str:
        return doc_key(self.document_id, self.version)

    def to_dict(self) -> dict:
        return asdict(self)


def doc_key(document_id: str, version: int) -> str:
    """The id of one version of one document, used to filter the vector and BM25 indexes."""
    return f"{document_id}@v{version}"


# A catalog status as people read it: one word for the version that applies ("in force"), in the app and the CLI alike.
STATUS_WORDS = {"active": "in force", "superseded": "superseded", "deleted": "deleted", "pending": "being added"}


@dataclass
class DocumentRecord:
    """A catalog row: one version of one document."""

    document_id: str
    version: int
    title: str
    file_name: str
    sha256: str
    status: str  # pending | active | superseded | deleted (stored and in JSON; `status_word` is what people read)
    effective_date: str | None
    pages: int
    chunks: int
    ingested_at: str
    source_path: str | None = None
    stored_path: str | None = None
    kind: str | None = None
    external_id: str | None = None
    supersedes: str | None = None
    errors: list[str] = field(default_factory=list)

    @property
    def doc_key(self) -> str:
        return doc_key(self.document_id, self.version)

    @property
    def status_word(self) -> str:
        """The status in the words the app and the command line show: the version that applies is "in force"."""
        return STATUS_WORDS.get(self.status, self.status)

    def to_dict(self) -> dict:
        return asdict(self)
