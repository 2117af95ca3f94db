"""The two search indexes fed with the same chunks: Chroma (dense vectors) and a persisted BM25 (bm25s).

Both are derived from the catalog. Chroma is written per document version (upsert by deterministic chunk ids,
delete by doc_key); BM25 is rebuilt from the catalog's chunk table whenever the catalog's generation moves on, into
a new folder that a pointer file then names, so a crash mid-build leaves the previous index in place.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
from filelock import FileLock

try:
    import Stemmer
except ImportError:  # pragma: no cover - PyStemmer is a dependency; keep BM25 usable without it
    Stemmer = None

from ingest.types import Chunk, ComplyError


def _open_persistent(chromadb, path: Path, settings, attempts: int = 20):
    """PersistentClient, retried while another process holds Chroma's SQLite write lock."""
    for attempt in range(attempts):
        try:
            return chromadb.PersistentClient(path=str(path), settings=settings)
        except chromadb.errors.InternalError as exc:
            if "database is locked" not in str(exc) or attempt == attempts - 1:
                raise
            # Chroma caches the system before starting it: drop the half-started one so the retry starts afresh.
            from chromadb.api.shared_system_client import SharedSystemClient  # lazy: chromadb, ~1 s to import
            SharedSystemClient._identifier_to_system.pop(str(path), None)
            time.sleep(min(0.1 * 2 ** attempt, 3.0))


class VectorStore:
    """A Chroma collection holding our embeddings; embedded PersistentClient or a server through HttpClient."""

    def __init__(self, path: Path, collection: str, url: str | None = None):
        import chromadb  # lazy: chromadb takes ~1 s to import
        from chromadb.config import Settings as ChromaSettings  # lazy: chromadb takes ~1 s to import

        chroma_settings = ChromaSettings(anonymized_telemetry=False, allow_reset=False)
        if url:
            parsed = urlparse(url if "://" in url else f"http://{url}")
            self.client = chromadb.HttpClient(host=parsed.hostname or "127.0.0.1", port=parsed.port or 8000,
                                              ssl=parsed.scheme == "https", settings=chroma_settings)
            self.location = url
        else:
            path.mkdir(parents=True, exist_ok=True)
            # Chroma creates its SQLite schema on first open and two processes opening a fresh folder at once
            # collide ("table collections already exists", "database is locked"): opening is serialised.
            with FileLock(str(path.parent / f".{path.name}.open.lock"), timeout=300):
                self.client = _open_persistent(chromadb, path, chroma_settings)
                self.collection = self._collection(collection)
            self.location = str(path)
            return
        self.collection = self._collection(collection)

    def _collection(self, name: str):
        # embedding_function=None: we always pass vectors; Chroma's default would fetch an ONNX model.
        return self.client.get_or_create_collection(
            name, embedding_function=None, configuration={"hnsw": {"space": "cosine"}})

    def collection_names(self) -> list[str]:
        """Every collection in this Chroma (embedded folder or server)."""
        return [c if isinstance(c, str) else c.name for c in self.client.list_collections()]

    def drop_collection(self, name: str) -> None:
        """Delete a collection of this Chroma if it exists (not this store's own)."""
        if name == self.collection.name:
            raise ValueError(f"will not drop the collection in use: {name}")
        if name in self.collection_names():
            self.client.delete_collection(name)

    def upsert(self, chunks: list[Chunk], vectors: np.ndarray, batch: int = 1000) -> None:
        """Insert or overwrite chunks with their vectors (idempotent: ids are deterministic)."""
        for i in range(0, len(chunks), batch):
            part = chunks[i:i + batch]
            self.collection.upsert(
                ids=[c.chunk_id for c in part],
                embeddings=vectors[i:i + batch].tolist(),
                documents=[c.text for c in part],
                metadatas=[_metadata(c) for c in part],
            )

    def delete_key(self, key: str) -> None:
        """Remove every chunk of one document version."""
        self.collection.delete(where={"doc_key": key})

    def count(self, key: str | None = None) -> int:
        if key is None:
            return self.collection.count()
        return len(self.collection.get(where={"doc_key": key}, include=[])["ids"])

    def keys(self) -> dict[str, int]:
        """Chunk counts per doc_key (for consistency checks)."""
        counts: dict[str, int] = {}
        total = self.collection.count()
        for offset in range(0, total, 5000):
            got = self.collection.get(include=["metadatas"], limit=5000, offset=offset)
            for meta in got["metadatas"]:
                counts[meta["doc_key"]] = counts.get(meta["doc_key"], 0) + 1
        return counts

    def query(self, vector: np.ndarray, n: int, keys: Iterable[str] | None = None) -> list[tuple[str, float]]:
        """Nearest chunks as (chunk_id, cosine similarity), restricted to the given doc_keys."""
        where = None
        if keys is not None:
            keys = sorted(keys)
            if not keys:
                return []
            where = {"doc_key": keys[0]} if len(keys) == 1 else {"doc_key": {"$in": keys}}
        n = min(n, max(1, self.collection.count()))
        res = self.collection.query(query_embeddings=[vector.tolist()], n_results=n, where=where,
                                    include=["distances"])
        return [(cid, 1.0 - float(d)) for cid, d in zip(res["ids"][0], res["distances"][0], strict=True)]


@dataclass(frozen=True)
class VectorPointer:
    """Which Chroma collection holds the library's vectors and which embedding model made them, read from
    `vectors.json` in the home. Re-embedding with another model builds a new collection beside the served one and
    then replaces this file atomically (ingest/reembed.py): a crash before that leaves the old one serving.
    Without the file, the caller's default (ingest/pipeline.py `default_pointer`: a new library is built with
    index_embedding_model, one from before the file existed was built with embedding_model)."""

    collection: str
    model: str  # what load_embedder is given: the packaged name, a folder or an HF id
    name: str | None = None  # the retriever registry's name of the model; None for the configured base model
    build: int = 0  # how many re-embeddings this library has had; collection names carry it
    built: str | None = None
    chunks: int | None = None

    @classmethod
    def read(cls, path: Path, default: VectorPointer) -> VectorPointer:
        try:
            data = json.loads(path.read_text())
            return cls(collection=str(data["collection"]), model=str(data["model"]), name=data.get("name"),
                       build=int(data.get("build") or 0), built=data.get("built"), chunks=data.get("chunks"))
        except FileNotFoundError:
            return default
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise IndexStateError(f"{path} cannot be read ({e}); it names the collection and embedding model of "
                                  f"the index: restore it, or remove it to serve collection '{default.collection}' "
                                  f"with '{default.model}'") from e

    def write(self, path: Path) -> None:
        """Replace the pointer atomically (fsynced temp file, then rename)."""
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2) + "\n")
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)


class IndexStateError(ComplyError):
    """The index's own state files are damaged: which, and what to do."""


def generation_collection(base: str, build: int) -> str:
    """The Chroma collection of the library's `build`-th re-embedding (build 0: `base` itself)."""
    return base if build == 0 else f"{base}-e{build}"


def _metadata(c: Chunk) -> dict:
    # llama-index reserves doc_id/document_id/ref_doc_id, so ours use other names.
    meta = {
        "doc_key": c.doc_key,
        "comply_document": c.document_id,
        "version": c.version,
        "title": c.title,
        "source_file": c.source_file,
        "seq": c.seq,
        "char_start": c.char_start,
        "char_end": c.char_end,
        "content_hash": c.content_hash,
        "heading_path": " > ".join(c.heading_path),
    }
    for key, value in (("page", c.page), ("page_label", c.page_label), ("clause", c.clause),
                       ("passage_id", c.passage_id)):
        if value is not None:
            meta[key] = value
    for key, value in c.extra.items():
        if isinstance(value, str | int | float | bool) and key not in meta:
            meta[key] = value
    return meta


def _stemmer():
    return Stemmer.Stemmer("english") if Stemmer is not None else None


class BM25Index:
    """bm25s over every live chunk; queries are masked to the allowed doc_keys."""

    def __init__(self, root: Path):
        self.root = root
        self._lock = threading.Lock()
        self._loaded_generation: int | None = None
        self._model = None
        self._ids: list[str] = []
        self._keys: np.ndarray = np.array([], dtype=object)
        self._stemmer = _stemmer()

    @property
    def _pointer(self) -> Path:
        return self.root / "CURRENT"

    def built_generation(self) -> int | None:
        try:
            return int(json.loads(self._pointer.read_text())["generation"])
        except (OSError, ValueError, KeyError):
            return None

    def rebuild(self, rows: list[tuple[str, str, str]], generation: int) -> None:
        """Build from (chunk_id, doc_key, text) rows and publish atomically as `generation`."""
        import bm25s  # lazy: bm25s takes ~0.7 s to import

        self.root.mkdir(parents=True, exist_ok=True)
        folder = self.root / f"gen-{generation}-{os.getpid()}"
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir()
        ids = [r[0] for r in rows]
        if rows:
            tokens = bm25s.tokenize([r[2] for r in rows], stopwords="en", stemmer=self._stemmer,
                                    show_progress=False)
            model = bm25s.BM25()
            model.index(tokens, show_progress=False)
            model.save(str(folder / "model"))
        (folder / "ids.json").write_text(json.dumps({"ids": ids, "keys": [r[1] for r in rows]}))
        tmp = self.root / f"CURRENT.{os.getpid()}.tmp"
        tmp.write_text(json.dumps({"generation": generation, "folder": folder.name}))
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, self._pointer)
        for old in self.root.glob("gen-*"):
            if old != folder:
                shutil.rmtree(old, ignore_errors=True)
        with self._lock:
            self._loaded_generation = None

    def _load(self) -> None:
        import bm25s  # lazy: bm25s takes ~0.7 s to import

        pointer = json.loads(self._pointer.read_text())
        if pointer["generation"] == self._loaded_generation:
            return
        folder = self.root / pointer["folder"]
        meta = json.loads((folder / "ids.json").read_text())
        self._ids = meta["ids"]
        self._keys = np.array(meta["keys"], dtype=object)
        self._model = bm25s.BM25.load(str(folder / "model")) if self._ids else None
        self._loaded_generation = pointer["generation"]

    def query(self, text: str, n: int, keys: Iterable[str] | None = None) -> list[tuple[str, float]]:
        """Top chunks as (chunk_id, BM25 score), restricted to the given doc_keys."""
        import bm25s  # lazy: bm25s takes ~0.7 s to import

        with self._lock:
            if not self._pointer.exists():
                return []
            self._load()
            if self._model is None:
                return []
            mask = None
            if keys is not None:
                mask = np.isin(self._keys, list(keys)).astype(np.float32)
                if not mask.any():
                    return []
            tokens = bm25s.tokenize([text], stopwords="en", stemmer=self._stemmer, show_progress=False)
            if not tokens.vocab:
                return []
            k = min(n, len(self._ids) if mask is None else int(mask.sum()))
            docs, scores = self._model.retrieve(tokens, k=k, show_progress=False, weight_mask=mask, n_threads=1)
        return [(self._ids[int(i)], float(s)) for i, s in zip(docs[0], scores[0], strict=True) if s > 0]
