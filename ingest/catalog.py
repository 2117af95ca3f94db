"""The document catalog (SQLite): the source of truth for documents, versions, status and chunk texts.

Chroma and BM25 are derived from it. A document version is written as `pending` with its chunks, pushed to
Chroma, then flipped to `active` in one transaction; anything still `pending` at start-up is an interrupted
ingest and is rolled back, which is what makes kill -9 at any moment safe.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable
from contextlib import contextmanager
from datetime import UTC, date, datetime
from pathlib import Path

from ingest.types import Chunk, DocumentRecord, doc_key

_SCHEMA = """
CREATE TABLE IF NOT EXISTS documents (
    document_id TEXT NOT NULL,
    version INTEGER NOT NULL,
    title TEXT NOT NULL,
    file_name TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    status TEXT NOT NULL,
    effective_date TEXT,
    pages INTEGER NOT NULL,
    chunks INTEGER NOT NULL,
    ingested_at TEXT NOT NULL,
    source_path TEXT,
    stored_path TEXT,
    kind TEXT,
    external_id TEXT,
    supersedes TEXT,
    errors TEXT NOT NULL DEFAULT '[]',
    PRIMARY KEY (document_id, version)
);
CREATE INDEX IF NOT EXISTS documents_sha ON documents(sha256);
CREATE TABLE IF NOT EXISTS chunks (
    chunk_id TEXT PRIMARY KEY,
    doc_key TEXT NOT NULL,
    seq INTEGER NOT NULL,
    data TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS chunks_doc ON chunks(doc_key);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""

_COLUMNS = ("document_id", "version", "title", "file_name", "sha256", "status", "effective_date", "pages", "chunks",
            "ingested_at", "source_path", "stored_path", "kind", "external_id", "supersedes", "errors")


def now_iso() -> str:
    """UTC time in ISO 8601, seconds precision."""
    return datetime.now(UTC).replace(microsecond=0).isoformat()


class Catalog:
    """SQLite-backed library of document versions and their chunks."""

    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.db = sqlite3.connect(str(path), timeout=60, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.executescript(_SCHEMA)

    def close(self) -> None:
        self.db.close()

    @contextmanager
    def transaction(self):
        """BEGIN IMMEDIATE ... COMMIT, rolled back on any exception."""
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield self.db
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    # documents
    def documents(self, status: str | None = None, include_deleted: bool = False) -> list[DocumentRecord]:
        """All document versions, newest first within a document."""
        sql = f"SELECT {', '.join(_COLUMNS)} FROM documents"
        args: tuple = ()
        if status:
            sql += " WHERE status = ?"
            args = (status,)
        elif not include_deleted:
            sql += " WHERE status != 'deleted'"
        sql += " ORDER BY document_id, version DESC"
        return [_record(row) for row in self.db.execute(sql, args)]

    def versions(self, document_id: str) -> list[DocumentRecord]:
        """Every version of one document, newest first."""
        rows = self.db.execute(f"SELECT {', '.join(_COLUMNS)} FROM documents WHERE document_id = ? "
                               "ORDER BY version DESC", (document_id,))
        return [_record(r) for r in rows]

    def get(self, document_id: str, version: int | None = None) -> DocumentRecord | None:
        """One version (default: the active one, else the newest)."""
        versions = self.versions(document_id)
        if version is not None:
            return next((v for v in versions if v.version == version), None)
        return next((v for v in versions if v.status == "active"), versions[0] if versions else None)

    def find_sha(self, sha256: str) -> DocumentRecord | None:
        """A live (active or superseded) version with exactly these bytes, if any."""
        row = self.db.execute(f"SELECT {', '.join(_COLUMNS)} FROM documents WHERE sha256 = ? "
                              "AND status IN ('active', 'superseded') ORDER BY version DESC LIMIT 1",
                              (sha256,)).fetchone()
        return _record(row) if row else None

    def next_version(self, document_id: str) -> int:
        row = self.db.execute("SELECT MAX(version) FROM documents WHERE document_id = ?", (document_id,)).fetchone()
        return (row[0] or 0) + 1

    def add_pending(self, record: DocumentRecord, chunks: Iterable[Chunk]) -> None:
        """Write a new version as pending together with its chunks, atomically."""
        with self.transaction() as db:
            db.execute(f"INSERT INTO documents ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' * len(_COLUMNS))})",
                       _row(record))
            db.executemany("INSERT OR REPLACE INTO chunks (chunk_id, doc_key, seq, data) VALUES (?, ?, ?, ?)",
                           [(c.chunk_id, c.doc_key, c.seq, json.dumps(c.to_dict())) for c in chunks])

    def activate(self, record: DocumentRecord) -> list[DocumentRecord]:
        """Make a pending version live, atomically. The version in force today becomes active and every other live
        version superseded, so an older version ingested late (earlier effective date) does not take over.

        Returns the versions that were active before and are superseded now."""
        before = [v for v in self.versions(record.document_id) if v.status == "active"]
        with self.transaction() as db:
            winner = self._settle(db, record.document_id, also=record.version)
            self._bump_generation(db)
        return [v for v in before if v.version != winner]

    def settle(self, document_id: str) -> None:
        """Re-decide which live version of a document is in force (after a version was deleted)."""
        with self.transaction() as db:
            if db.execute("SELECT 1 FROM documents WHERE document_id = ? AND status IN ('active', 'superseded')",
                          (document_id,)).fetchone():
                self._settle(db, document_id)
                self._bump_generation(db)

    @staticmethod
    def _settle(db: sqlite3.Connection, document_id: str, also: int | None = None) -> int:
        """Set active = the live version in force today (latest effective date on or before today, undated
        versions counting from their ingestion day, ties to the higher version; the newest when all lie in the
        future); the other live versions become superseded. Returns the active version."""
        rows = db.execute("SELECT version, effective_date, ingested_at FROM documents WHERE document_id = ? "
                          "AND (status IN ('active', 'superseded') OR version = ?)",
                          (document_id, -1 if also is None else also)).fetchall()
        dated = [((eff or ingested[:10]), version) for version, eff, ingested in rows]
        today = date.today().isoformat()
        winner = max([d for d in dated if d[0] <= today] or dated)[1]
        for _, version in dated:
            db.execute("UPDATE documents SET status = ? WHERE document_id = ? AND version = ?",
                       ("active" if version == winner else "superseded", document_id, version))
        return winner

    def set_status(self, document_id: str, version: int, status: str) -> None:
        with self.transaction() as db:
            db.execute("UPDATE documents SET status = ? WHERE document_id = ? AND version = ?",
                       (status, document_id, version))
            self._bump_generation(db)

    def update_effective_date(self, document_id: str, version: int, effective_date: str | None) -> None:
        """Record a (corrected) effective date; which version is in force may change with it."""
        with self.transaction() as db:
            db.execute("UPDATE documents SET effective_date = ? WHERE document_id = ? AND version = ?",
                       (effective_date, document_id, version))
            self._settle(db, document_id)
            self._bump_generation(db)

    def set_supersedes(self, document_id: str, version: int, supersedes: str | None) -> None:
        with self.transaction() as db:
            db.execute("UPDATE documents SET supersedes = ? WHERE document_id = ? AND version = ?",
                       (supersedes, document_id, version))

    def remove_version(self, document_id: str, version: int) -> None:
        """Delete a version row and its chunks (used to roll back an interrupted ingest)."""
        with self.transaction() as db:
            db.execute("DELETE FROM chunks WHERE doc_key = ?", (doc_key(document_id, version),))
            db.execute("DELETE FROM documents WHERE document_id = ? AND version = ?", (document_id, version))
            self._bump_generation(db)

    def delete_chunks(self, key: str) -> None:
        with self.transaction() as db:
            db.execute("DELETE FROM chunks WHERE doc_key = ?", (key,))
            self._bump_generation(db)

    # chunks
    def chunks(self, ids: Iterable[str]) -> dict[str, Chunk]:
        """Chunks by id (missing ids are left out)."""
        ids = list(ids)
        out: dict[str, Chunk] = {}
        for i in range(0, len(ids), 500):
            part = ids[i:i + 500]
            rows = self.db.execute(f"SELECT chunk_id, data FROM chunks WHERE chunk_id IN ({','.join('?' * len(part))})",
                                   part)
            out.update({cid: Chunk(**json.loads(data)) for cid, data in rows})
        return out

    def chunks_of(self, key: str) -> list[Chunk]:
        rows = self.db.execute("SELECT data FROM chunks WHERE doc_key = ? ORDER BY seq", (key,))
        return [Chunk(**json.loads(data)) for (data,) in rows]

    def all_chunk_rows(self) -> list[tuple[str, str, str]]:
        """(chunk_id, doc_key, text) for every chunk of every non-pending version, in a stable order."""
        rows = self.db.execute(
            "SELECT c.chunk_id, c.doc_key, c.data FROM chunks c JOIN documents d "
            "ON c.doc_key = d.document_id || '@v' || d.version WHERE d.status IN ('active', 'superseded') "
            "ORDER BY c.chunk_id")
        return [(cid, key, json.loads(data)["text"]) for cid, key, data in rows]

    def has_documents(self) -> bool:
        """Whether any document version was ever added (in any status)."""
        return self.db.execute("SELECT 1 FROM documents LIMIT 1").fetchone() is not None

    def count_chunks(self, status: str = "active") -> int:
        row = self.db.execute("SELECT COALESCE(SUM(chunks), 0) FROM documents WHERE status = ?", (status,)).fetchone()
        return int(row[0])

    # index generation: bumped whenever the set of searchable chunks changes, so BM25 knows when to rebuild
    def generation(self) -> int:
        row = self.db.execute("SELECT value FROM meta WHERE key = 'generation'").fetchone()
        return int(row[0]) if row else 0

    @staticmethod
    def _bump_generation(db: sqlite3.Connection) -> None:
        db.execute("INSERT INTO meta (key, value) VALUES ('generation', '1') ON CONFLICT(key) "
                   "DO UPDATE SET value = CAST(value AS INTEGER) + 1")

    def searchable_keys(self, as_of: str | None = None, include_superseded: bool = False,
                        document_ids: Iterable[str] | None = None, since: str | None = None) -> set[str]:
        """doc_keys that retrieval may return: active versions by default; with `as_of` the version in force on
        that date (latest effective date on or before it), and with `since` as well every version in force at some
        time from `since` to `as_of` (a month or a year); superseded versions too when asked."""
        wanted = set(document_ids) if document_ids else None
        keys: set[str] = set()
        by_doc: dict[str, list[DocumentRecord]] = {}
        for rec in self.documents():
            if rec.status not in ("active", "superseded"):
                continue
            if wanted is not None and rec.document_id not in wanted:
                continue
            by_doc.setdefault(rec.document_id, []).append(rec)
        for versions in by_doc.values():
            if include_superseded:
                keys.update(v.doc_key for v in versions)
            elif as_of:
                start = min(since or as_of, as_of)
                # a version without an effective date is in force from the day it was ingested
                took_effect = {v.doc_key: v.effective_date or v.ingested_at[:10] for v in versions}
                dated = [v for v in versions if took_effect[v.doc_key] <= start]
                if dated:
                    best = max(dated, key=lambda v: (took_effect[v.doc_key], v.version))
                    keys.add(best.doc_key)
                keys.update(v.doc_key for v in versions if start < took_effect[v.doc_key] <= as_of)
            else:
                keys.update(v.doc_key for v in versions if v.status == "active")
        return keys


def _row(r: DocumentRecord) -> tuple:
    d = r.to_dict()
    d["errors"] = json.dumps(d["errors"])
    return tuple(d[c] for c in _COLUMNS)


def _record(row) -> DocumentRecord:
    d = dict(zip(_COLUMNS, row, strict=True))
    d["errors"] = json.loads(d["errors"] or "[]")
    return DocumentRecord(**d)
