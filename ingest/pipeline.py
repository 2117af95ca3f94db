"""Ingest files into the library: read -> chunk -> embed -> catalog (pending) -> Chroma -> catalog (active) -> BM25.

`Library` owns the catalog and both indexes; `Library.ingest` takes files and folders and never lets one bad file
abort the batch or touch what is already ingested.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import threading
import time
import unicodedata
from collections.abc import Callable, Iterable, Iterator
from contextlib import closing, contextmanager
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path

from filelock import FileLock, Timeout

from ingest.catalog import Catalog, now_iso
from ingest.chunking import chunk_document
from ingest.embedding import Embedder, load_embedder
from ingest.index import BM25Index, VectorPointer, VectorStore
from ingest.readers import SUPPORTED_SUFFIXES, is_supported, read_file
from ingest.settings import BASE_MODEL, Settings
from ingest.types import DocumentRecord, IngestError, SourceDocument, display_name, doc_key, iso_date, plural

log = logging.getLogger(__name__)

# (stage, done, total, detail): stage "file" (files started, of all), then for each file "pages" (pages read) and
# "embed" (chunks embedded so far, of the file's chunks), all from the calling thread
ProgressFn = Callable[[str, int, int, str], None]


@dataclass
class FileOutcome:
    """What happened to one input file."""

    file: str
    status: str  # added | new_version | unchanged | failed | skipped (found in a folder, not read: `error` says why)
    document_id: str | None = None
    version: int | None = None
    title: str | None = None
    pages: int = 0
    chunks: int = 0
    superseded: list[str] = field(default_factory=list)
    error: str | None = None
    warnings: list[str] = field(default_factory=list)


@dataclass
class IngestReport:
    """The summary of one ingest call."""

    files: list[FileOutcome] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def failed(self) -> list[FileOutcome]:
        return [f for f in self.files if f.status == "failed"]

    @property
    def skipped(self) -> list[FileOutcome]:
        return [f for f in self.files if f.status == "skipped"]

    @property
    def nothing_ingested(self) -> bool:
        """No file ended up in the library (added, a new version or already there)."""
        return not any(f.status in ("added", "new_version", "unchanged") for f in self.files)

    @property
    def ok(self) -> bool:
        """No file failed, and something was ingested unless nothing was offered (what `comply ingest` exits 0 on)."""
        return not self.failed and not (self.nothing_ingested and self.skipped)

    @property
    def chunks_added(self) -> int:
        return sum(f.chunks for f in self.files if f.status in ("added", "new_version"))

    @property
    def pages_read(self) -> int:
        return sum(f.pages for f in self.files if f.status in ("added", "new_version"))

    def to_dict(self) -> dict:
        counts: dict[str, int] = {}
        for f in self.files:
            counts[f.status] = counts.get(f.status, 0) + 1
        return {"files": [asdict(f) for f in self.files], "counts": counts, "chunks_added": self.chunks_added,
                "pages_read": self.pages_read, "seconds": round(self.seconds, 2), "ok": self.ok}


def slugify(text: str) -> str:
    """A stable, readable document id from a title; accented letters keep their base letter ("conformité" ->
    "conformite")."""
    text = "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))
    slug = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    if len(slug) > 60:
        slug = slug[:60].rsplit("-", 1)[0]
    return slug or "document"


def expand_paths(paths: Iterable[str | Path], *, follow_symlinks: bool = False) -> list[Path]:
    """Files as given plus supported files found (recursively, sorted) inside given folders."""
    return scan_paths(paths, follow_symlinks=follow_symlinks)[0]


def scan_paths(paths: Iterable[str | Path], *,
               follow_symlinks: bool = False) -> tuple[list[Path], list[tuple[Path, str, bool]]]:
    """(files to read, (path, reason, named) of what is not read): files as given, and the supported files found
    (recursively, sorted) inside given folders; hidden names inside a folder are passed over. `named` is True for a
    path given itself, False for one found in a folder.

    A symbolic link is refused unless `follow_symlinks`, and even then one found in a folder is followed only to a
    file inside that folder, and a link to a folder never: nothing outside the given paths is read."""
    files: list[Path] = []
    refused: list[tuple[Path, str, bool]] = []
    for p in map(Path, paths):
        if p.is_symlink():
            if not follow_symlinks:
                refused.append((p, f"a symbolic link (to {os.readlink(p)}): not followed; name the file it points "
                                   "to, or pass --follow-symlinks", True))
                continue
            if p.is_dir():
                refused.append((p, "a symbolic link to a folder: not followed; name the folder itself", True))
                continue
        if not p.is_dir():
            files.append(p)
            continue
        root = p.resolve()
        found: list[Path] = []
        for folder, dirs, names in os.walk(p):  # never descends into linked folders
            base = Path(folder)
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            for d in dirs:
                if (base / d).is_symlink():
                    refused.append((base / d, "a symbolic link to a folder: not followed", False))
            for name in names:
                f = base / name
                if name.startswith("."):
                    continue
                reason = _not_read(f, root, follow_symlinks)
                if reason:
                    refused.append((f, reason, False))
                else:
                    found.append(f)
        files.extend(sorted(found))
    return files, refused


def _not_read(f: Path, root: Path, follow_symlinks: bool) -> str | None:
    """Why a file found in a folder is not read, or None."""
    if f.is_symlink():
        target = f.resolve()
        if not follow_symlinks:
            return f"a symbolic link (to {os.readlink(f)}): not followed (--follow-symlinks follows links to files " \
                   "inside the folder)"
        if not target.is_relative_to(root):
            return f"a symbolic link to {target}, outside the folder: never followed"
        if not target.is_file():
            return "a symbolic link to something that is not a file"
    elif not f.is_file():
        return "not a regular file"
    if not is_supported(f):
        supported = ", ".join(sorted(SUPPORTED_SUFFIXES))
        return f"unsupported file type '{f.suffix or '(none)'}' (supported: {supported})"
    return None


def index_model(settings: Settings) -> str:
    """The model a new library's dense index is built with: index_embedding_model ('base': embedding_model)."""
    model = settings.index_embedding_model.strip()
    return settings.embedding_model if model in ("", BASE_MODEL) else model


def default_pointer(settings: Settings, catalog: Catalog | None = None) -> VectorPointer:
    """What serves a library whose home has no vectors.json yet: a new one (no document in its catalog) is built
    with `index_model`; one with documents was built before the file existed, with embedding_model."""
    if catalog is None and settings.catalog_path.exists():
        with closing(Catalog(settings.catalog_path)) as own:
            return default_pointer(settings, own)
    if catalog is not None and catalog.has_documents():
        return VectorPointer(settings.collection, settings.embedding_model)
    model = index_model(settings)
    return VectorPointer(settings.collection, model, name=None if model == settings.embedding_model else model)


class Library:
    """The document library: catalog + Chroma + BM25, kept consistent with each other."""

    def __init__(self, settings: Settings, embedder: Embedder | None = None):
        self.settings = settings
        settings.ensure_home()
        self.catalog = Catalog(settings.catalog_path)
        self._vectors: VectorStore | None = None
        self._pointer_stamp: tuple | None = None
        self._sync_lock = threading.Lock()
        self.pointer = default_pointer(settings, self.catalog)
        self._sync_vectors()
        self.bm25 = BM25Index(settings.bm25_dir)
        self._embedder = embedder
        # One writer per home across processes (CLI, app, benchmarks): ingest, delete, recovery and re-embedding
        # hold it.
        self._lock = FileLock(str(settings.home / "library.lock"))
        self._recover_if_idle()
        if self.pointer.name is None and self.pointer.model != settings.embedding_model:
            log.warning("the library's vectors were made by %s, not by embedding_model %s: searching with %s (to "
                        "re-embed with it: comply retrievers activate embedder base)", self.pointer.model,
                        settings.embedding_model, self.pointer.model)

    @property
    def vectors(self) -> VectorStore:
        """The Chroma collection serving the library: the one vectors.json names, followed when another process
        re-embeds into a new one."""
        self._sync_vectors()
        return self._vectors

    def _sync_vectors(self) -> None:
        path = self.settings.vectors_pointer_path
        try:
            st = path.stat()
            stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
        except FileNotFoundError:
            stamp = None
        if self._vectors is not None and stamp == self._pointer_stamp:
            return
        with self._sync_lock:
            pointer = VectorPointer.read(path, default_pointer(self.settings, self.catalog))
            if self._vectors is None or pointer.collection != self._vectors.collection.name:
                self._vectors = VectorStore(self.settings.chroma_dir, pointer.collection,
                                            url=self.settings.chroma_url)
            self.pointer, self._pointer_stamp = pointer, stamp

    @property
    def embedder(self) -> Embedder:
        """The model that made the served vectors (and embeds questions and new documents): the configured
        embedding_model, or the registry model the library was re-embedded with."""
        self._sync_vectors()
        if self.pointer.name is None and self.pointer.model == self.settings.embedding_model:
            return self.base_embedder()
        return load_embedder(self.settings, self.pointer.model)

    def base_embedder(self) -> Embedder:
        """The configured embedding_model, whichever model serves the vectors: the verifier's support scores are
        calibrated on it."""
        if self._embedder is None:
            self._embedder = load_embedder(self.settings)
        return self._embedder

    def close(self) -> None:
        self.catalog.close()

    # consistency
    def _recover_if_idle(self) -> None:
        """Recover on open unless another process is writing (its pending version is work in progress)."""
        try:
            self._lock.acquire(timeout=0)
        except Timeout:
            return
        try:
            self.recover()
        finally:
            self._lock.release()

    @contextmanager
    def writing(self) -> Iterator[None]:
        """Hold the library's writer lock (across processes), the index recovered first: for work that changes the
        index as a whole (ingest/reembed.py)."""
        with self._lock:
            self._recover()
            yield

    def recover(self) -> list[str]:
        """Roll back versions left pending by an interrupted ingest and bring BM25 up to date."""
        with self._lock:
            return self._recover()

    def _recover(self) -> list[str]:
        rolled = []
        for rec in self.catalog.documents(status="pending"):
            self.vectors.delete_key(rec.doc_key)
            self.catalog.remove_version(rec.document_id, rec.version)
            rolled.append(rec.doc_key)
        for rec in self.catalog.documents(status="deleted"):
            if self.catalog.chunks_of(rec.doc_key):  # a delete interrupted between Chroma and the catalog
                self.vectors.delete_key(rec.doc_key)
                self.catalog.delete_chunks(rec.doc_key)
                self.catalog.settle(rec.document_id)
        self._drop_unfinished_reembedding()
        self.refresh_bm25()
        return rolled

    def _drop_unfinished_reembedding(self) -> None:
        """A re-embedding that died before switching (kill -9, power loss) left its state file and a partial
        collection: both go; the served collection was never touched."""
        state_path = self.settings.reembed_state_path
        if not state_path.exists():
            return
        try:
            collection = json.loads(state_path.read_text()).get("collection")
        except (OSError, ValueError):
            collection = None
        if collection and collection != self.vectors.collection.name:
            self.vectors.drop_collection(collection)
            log.warning("dropped the unfinished re-embedding into %s (the library kept serving %s)", collection,
                        self.vectors.collection.name)
        state_path.unlink(missing_ok=True)

    def refresh_bm25(self) -> bool:
        """Rebuild BM25 if the catalog changed since it was built; True when rebuilt."""
        generation = self.catalog.generation()
        if self.bm25.built_generation() == generation:
            return False
        self.bm25.rebuild(self.catalog.all_chunk_rows(), generation)
        return True

    def check_consistency(self) -> dict:
        """Compare catalog, Chroma and BM25 chunk counts per live version; `ok` is True when all agree."""
        expected = {r.doc_key: r.chunks for r in self.catalog.documents() if r.status in ("active", "superseded")}
        in_chroma = self.vectors.keys()
        rows = self.catalog.all_chunk_rows()
        in_catalog: dict[str, int] = {}
        for _, key, _ in rows:
            in_catalog[key] = in_catalog.get(key, 0) + 1
        problems = []
        for key in sorted(set(expected) | set(in_chroma) | set(in_catalog)):
            want = expected.get(key, 0)
            if in_chroma.get(key, 0) != want or in_catalog.get(key, 0) != want:
                problems.append({"doc_key": key, "catalog": want, "chunks": in_catalog.get(key, 0),
                                 "chroma": in_chroma.get(key, 0)})
        bm25_ok = self.bm25.built_generation() == self.catalog.generation()
        return {"ok": not problems and bm25_ok, "problems": problems, "bm25_current": bm25_ok,
                "chunks": sum(expected.values())}

    # ingest
    def ingest(self, paths: Iterable[str | Path], *, supersedes: str | None = None,
               effective_date: str | None = None, title: str | None = None,
               progress: ProgressFn | None = None, follow_symlinks: bool = False) -> IngestReport:
        """Ingest files and folders; each file succeeds or fails on its own. Symbolic links are refused unless
        `follow_symlinks` (see `scan_paths`)."""
        with self._lock:
            return self._ingest(paths, supersedes=supersedes, effective_date=effective_date, title=title,
                                progress=progress, follow_symlinks=follow_symlinks)

    def _ingest(self, paths: Iterable[str | Path], *, supersedes: str | None, effective_date: str | None,
                title: str | None, progress: ProgressFn | None, follow_symlinks: bool) -> IngestReport:
        start = time.perf_counter()
        report = IngestReport()
        effective_date = iso_date(effective_date, "effective date")
        files, refused = scan_paths(paths, follow_symlinks=follow_symlinks)
        for path, reason, named in refused:  # in the report in the order found; the files are read after them
            report.files.append(FileOutcome(file=display_name(str(path)), status="failed" if named else "skipped",
                                            error=reason))
        if supersedes and len(files) != 1:
            raise ValueError("--supersedes takes exactly one file")
        if title and len(files) != 1:
            raise ValueError("--title takes exactly one file (one title for several files would make each a new "
                             "version of the one before)")
        for i, path in enumerate(files):
            if progress:
                progress("file", i, len(files), display_name(path.name))
            try:
                outcome = self._ingest_one(path, supersedes=supersedes, effective_date=effective_date,
                                           title=title, progress=progress)
            except IngestError as e:
                outcome = FileOutcome(file=display_name(str(path)), status="failed", error=e.reason)
            except Exception as e:  # a bug or a library's surprise on one file: roll it back, go on with the rest
                self._recover()
                outcome = FileOutcome(file=display_name(str(path)), status="failed",
                                      error=f"unexpected error while ingesting: {type(e).__name__}: {e}")
            report.files.append(outcome)
        if progress:
            progress("file", len(files), len(files), "updating BM25")
        self.refresh_bm25()
        report.seconds = time.perf_counter() - start
        return report

    def _ingest_one(self, path: Path, *, supersedes: str | None, effective_date: str | None, title: str | None,
                    progress: ProgressFn | None) -> FileOutcome:
        doc = read_file(path, max_file_mb=self.settings.max_file_mb,
                        min_chars_per_page=self.settings.min_chars_per_page,
                        max_decompressed_page_mb=self.settings.max_decompressed_page_mb,
                        max_decompressed_file_mb=self.settings.max_decompressed_file_mb)
        doc.title = display_name(title or doc.title)  # a title taken from an odd file name is stored as text
        existing = self.catalog.find_sha(doc.sha256)
        if existing is not None:
            # Unchanged content: only a date given on purpose (--effective-date) changes anything; the date found
            # in the file is the one recorded when it was first ingested.
            if effective_date and existing.effective_date != effective_date:
                self.catalog.update_effective_date(existing.document_id, existing.version, effective_date)
            return FileOutcome(file=display_name(str(path)), status="unchanged", document_id=existing.document_id,
                               version=existing.version, title=existing.title, pages=existing.pages)
        document_id = supersedes or self._document_id(doc)
        if supersedes and self.catalog.get(supersedes) is None:
            raise IngestError(path, f"--supersedes names an unknown document id '{supersedes}'")
        effective_date = effective_date or find_effective_date(doc)
        version = self.catalog.next_version(document_id)
        budget = min(self.settings.chunk_tokens, self.embedder.max_tokens - 2)
        chunks = chunk_document(doc, document_id, version, self.embedder.count_tokens, budget=budget,
                                min_tokens=self.settings.chunk_min_tokens, max_chars=self.settings.max_chunk_chars)
        if not chunks:
            raise IngestError(path, "no text could be chunked")
        on_batch = None
        if progress:
            name, pages = display_name(path.name), len(doc.pages)
            progress("pages", pages, pages, f"{name}: {plural(pages, 'page')} read, embedding {len(chunks)} chunks")

            def on_batch(done: int, total: int) -> None:
                progress("embed", done, total, f"{name}: embedded {done} of {total} chunks")

        vectors = self.embedder.encode([embedding_text(c.title, c.clause, c.heading_path, c.text) for c in chunks],
                                       on_batch=on_batch)
        warnings = []
        if doc.empty_pages and doc.kind == "pdf":
            warnings.append(f"no text layer on page(s) {', '.join(map(str, doc.empty_pages))}: "
                            "scanned pages? their content is not searchable")
        stored = self._store_file(doc)
        record = DocumentRecord(
            document_id=document_id, version=version, title=doc.title, file_name=display_name(path.name),
            sha256=doc.sha256,
            status="pending", effective_date=effective_date, pages=len(doc.pages), chunks=len(chunks),
            ingested_at=now_iso(), source_path=display_name(str(path.resolve())), stored_path=str(stored), kind=doc.kind,
            external_id=doc.external_id, supersedes=None, errors=warnings)
        previous = self.catalog.get(document_id)
        if previous is not None and previous.status == "active":
            record.supersedes = previous.doc_key
        if not self.settings.vectors_pointer_path.exists():
            # record which model made the vectors, before the catalog has a document: from then on a home without
            # the file is taken for a library from before it existed (default_pointer)
            self.pointer.write(self.settings.vectors_pointer_path)
        self.catalog.add_pending(record, chunks)  # record.errors: the reading warnings only, not the notes below
        warnings = list(warnings)
        cut = sum(1 for c in chunks if c.extra.get("hard_split"))
        if cut:
            warnings.append(f"{plural(cut, 'chunk')} hard-split at {self.settings.max_chunk_chars} characters "
                            "(a run of text without spaces, not prose?): search and citations there may be poor")
        if previous is not None and not supersedes and previous.file_name != record.file_name:
            warnings.append(f"taken as version {version} of '{document_id}' because its title matches "
                            f"{previous.file_name} (v{previous.version}); if it is a different document, delete "
                            f"this version and ingest the file again with --title")
        self.vectors.upsert(chunks, vectors)
        superseded = self.catalog.activate(record)
        in_force = self.catalog.get(document_id)
        if in_force is not None and in_force.version != version:
            # An older version ingested late, or one that takes effect in the future: kept, searchable with
            # --as-of, but not the version in force.
            self.catalog.set_supersedes(document_id, version, None)
            warnings.append(f"not in force: version {in_force.version} (effective "
                            f"{in_force.effective_date or 'undated'}) stays active; this version is effective "
                            f"{effective_date or 'undated'}")
        return FileOutcome(file=display_name(str(path)), status="new_version" if version > 1 else "added",
                           document_id=document_id, version=version, title=doc.title, pages=len(doc.pages),
                           chunks=len(chunks), superseded=[s.doc_key for s in superseded], warnings=warnings)

    def _document_id(self, doc: SourceDocument) -> str:
        return slugify(doc.title if doc.kind != "passages" else f"{doc.title}")

    def _store_file(self, doc: SourceDocument) -> Path:
        """Keep our own copy of the source so citations can be opened even if the original moves."""
        self.settings.files_dir.mkdir(parents=True, exist_ok=True)
        target = self.settings.files_dir / f"{doc.sha256[:16]}{doc.path.suffix.lower()}"
        if not target.exists():
            tmp = target.with_suffix(target.suffix + ".tmp")
            shutil.copyfile(doc.path, tmp)
            tmp.replace(target)
        return target

    # library management
    def delete(self, document_id: str, version: int | None = None) -> list[str]:
        """Mark a document (all versions, or one) deleted and drop its chunks from both indexes."""
        with self._lock:
            return self._delete(document_id, version)

    def _delete(self, document_id: str, version: int | None) -> list[str]:
        targets = [v for v in self.catalog.versions(document_id) if v.status != "deleted"
                   and (version is None or v.version == version)]
        if not targets:
            raise KeyError(document_id)
        for rec in targets:
            self.catalog.set_status(rec.document_id, rec.version, "deleted")
            self.vectors.delete_key(rec.doc_key)
            self.catalog.delete_chunks(rec.doc_key)
        self.catalog.settle(document_id)  # deleting the version in force puts the next one in force
        self.refresh_bm25()
        return [r.doc_key for r in targets]


_EFFECTIVE = re.compile(r"effective(?:\s+date)?(?:\s+from)?\s*[:\-]?\s*"
                        r"(\d{4}-\d{2}-\d{2}|\d{1,2}\s+[A-Z][a-z]+\s+\d{4}|[A-Z][a-z]+\s+\d{1,2},\s*\d{4})", re.I)


def find_effective_date(doc: SourceDocument) -> str | None:
    """An effective date stated on the first pages ("Effective date: 2025-03-01", "Effective date 1 March 2025"),
    as ISO YYYY-MM-DD, if any."""
    for page in doc.pages[:2]:
        for m in _EFFECTIVE.finditer(page.text):
            raw = " ".join(m.group(1).replace(",", " ").split())
            for fmt in ("%Y-%m-%d", "%d %B %Y", "%d %b %Y", "%B %d %Y", "%b %d %Y"):
                try:
                    return datetime.strptime(raw, fmt).date().isoformat()
                except ValueError:
                    continue
    return None


def embedding_text(title: str, clause: str | None, heading_path: list[str], text: str) -> str:
    """What we embed: the chunk text behind a short header naming where it sits, so a clause out of context
    still matches questions about its document and section."""
    header = " > ".join([title, *heading_path[-1:]])
    if clause and clause not in header:
        header += f" > {clause}"
    return f"{header}\n{text}"


__all__ = ["Library", "IngestReport", "FileOutcome", "expand_paths", "scan_paths", "slugify", "doc_key", "embedding_text"]
