"""Re-embedding the library with another embedding model into a new index generation, switched atomically.

Every live chunk (active and superseded versions) is read from the catalog, embedded with the new model and
written into a new Chroma collection beside the served one; only when all are there does `vectors.json` (the
VectorPointer) name the new collection and model, in one atomic rename. The old collection is dropped after.
A kill -9 at any moment before the rename leaves the old collection serving, untouched; the partial collection
and the state file (`reembed.json`, which also shows the progress to other processes) are removed by the next
recovery (`Library.recover`, run when a library is opened and no one else is writing). The library's writer lock
is held throughout: ingestion and deletion wait until the switch.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable

from ingest.catalog import now_iso
from ingest.embedding import load_embedder
from ingest.index import IndexStateError, VectorPointer, VectorStore, generation_collection
from ingest.pipeline import Library, embedding_text

log = logging.getLogger(__name__)

BATCH = 128  # chunks per embed + upsert step (and per progress update)


def reembed(library: Library, model: str, name: str | None, *,
            on_progress: Callable[[int, int], None] | None = None) -> dict:
    """Re-embed every live chunk with `model` (registry `name`, None for the configured base model) and switch the
    library to it. Returns what it did: old and new model and collection, chunks, seconds."""
    settings = library.settings
    start = time.perf_counter()
    with library.writing():  # recovered first: the partial collection of an earlier re-embedding that died goes
        old = library.pointer
        build = old.build + 1
        collection = generation_collection(settings.collection, build)
        library.vectors.drop_collection(collection)  # left over from a build that failed before its state file
        embedder = load_embedder(settings, model)
        records = [r for r in library.catalog.documents() if r.status in ("active", "superseded")]
        total = sum(r.chunks for r in records)
        state = {"pid": os.getpid(), "collection": collection, "model": model, "name": name, "done": 0,
                 "total": total, "started": now_iso()}
        _write_state(settings.reembed_state_path, state)
        if on_progress is not None:
            on_progress(0, total)
        store = VectorStore(settings.chroma_dir, collection, url=settings.chroma_url)
        done = 0
        for rec in records:
            chunks = library.catalog.chunks_of(rec.doc_key)
            for i in range(0, len(chunks), BATCH):
                part = chunks[i:i + BATCH]
                vectors = embedder.encode([embedding_text(c.title, c.clause, c.heading_path, c.text) for c in part])
                store.upsert(part, vectors)
                done += len(part)
                _write_state(settings.reembed_state_path, {**state, "done": done})
                if on_progress is not None:
                    on_progress(done, total)
        stored = store.collection.count()
        if stored != done:
            raise IndexStateError(f"re-embedding wrote {stored} vectors into {collection} for {done} chunks; the "
                                  f"library still serves {old.collection} with {old.model}")
        new = VectorPointer(collection=collection, model=model, name=name, build=build, built=now_iso(),
                            chunks=done)
        new.write(settings.vectors_pointer_path)  # the switch
        settings.reembed_state_path.unlink(missing_ok=True)
        try:
            library.vectors.drop_collection(old.collection)
        except Exception as e:  # noqa: BLE001 - the switch is done; an old collection left behind only takes space
            log.warning("re-embedded into %s, but the old collection %s could not be dropped: %s", collection,
                        old.collection, e)
    return {"model": model, "name": name, "collection": collection, "previous_model": old.model,
            "previous_name": old.name, "previous_collection": old.collection, "chunks": done,
            "seconds": round(time.perf_counter() - start, 1)}


def progress(settings) -> dict | None:
    """The running re-embedding's state (collection, model, name, done, total, started), or None."""
    try:
        return json.loads(settings.reembed_state_path.read_text())
    except (OSError, ValueError):
        return None


def _write_state(path, state: dict) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(state))
    os.replace(tmp, path)
