"""Plain data passed between the ingestion steps and on to the assistant."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path


class IngestError(Exception):
    """A file could not be ingested; carries the file and a specific, human-readable reason."""

    def __init__(self, file: str | Path, reason: str, *, pages: list[int] | None = None):
        self.file = str(file)
        self.reason = reason
        self.pages = pages or []
        super().__init__(f"{self.file}: {reason}")


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


@dataclass
class DocumentRecord:
    """A catalog row: one version of one document."""

    document_id: str
    version: int
    title: str
    file_name: str
    sha256: str
    status: str  # pending | active | superseded | deleted
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

    def to_dict(self) -> dict:
        return asdict(self)
