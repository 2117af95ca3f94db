"""The audited actions that the app's tabs and the REST API both call: answer a question, add files to the library,
delete a document. Each checks that the audit trail can record it before acting (fail closed), acts under the
library lock (answers share it, changes take it alone) and records what it did, with the caller's `context` (where
the request came from: the API adds `via`, `token_id` and `request_id`). The caller checks the permission first."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from assistant.types import Answer
from ingest.pipeline import IngestReport

if TYPE_CHECKING:  # the app's services import Gradio; these functions need only their parts
    from assistant.ui_services import Services


class Waiting:
    """Yielded by `answer_stream` when a change to the library or the adapter is in progress and the answer waits."""


WAITING = Waiting()


def answer_stream(services: Services, user: str, question: str, *, documents: list[str] | None = None,
                  as_of: str | None = None, strict: bool | None = None, history: list[tuple[str, str]] | None = None,
                  k: int | None = None, context: dict | None = None) -> Iterator[str | Waiting | Answer]:
    """Answer `question` as `user`: the draft's text pieces, then the checked Answer once it is recorded in the
    audit trail. Raises AuditUnavailable at once (before anything is drafted) when the trail cannot record an
    answer; while iterating, a ValueError for a request that cannot be answered as asked and an AuditError when the
    answer could not be recorded (it must then not be shown)."""
    services.audit.ready("answer")
    return _answer(services, user, question, documents, as_of, strict, history or [], k, context or {})


def _answer(services: Services, user: str, question: str, documents: list[str] | None, as_of: str | None,
            strict: bool | None, history: list[tuple[str, str]], k: int | None,
            context: dict) -> Iterator[str | Waiting | Answer]:
    lock = services.lock
    if not lock.acquire_shared(blocking=False):
        yield WAITING
        lock.acquire_shared()
    answer = None
    try:
        for item in services.assistant.stream(question, document_ids=documents or None, as_of=as_of,
                                              history=history, k=k, consensus=strict):
            if isinstance(item, Answer):
                answer = item
                break
            yield item
        catalog = services.library.catalog
        generation, in_force = catalog.generation(), len(catalog.documents(status="active"))
    finally:
        lock.release_shared()
    assert answer is not None
    services.audit.record_answer(user, answer, index_generation=generation, documents=in_force,
                                 filters={"documents": documents or [], "as_of": as_of, "strict": strict}, **context)
    yield answer


def answer(services: Services, user: str, question: str, **options) -> Answer:
    """`answer_stream` to its end: the recorded Answer."""
    return next(item for item in answer_stream(services, user, question, **options) if isinstance(item, Answer))


def add_documents(services: Services, user: str, paths: list[str], action: str = "document.upload", *,
                  progress: Callable | None = None, context: dict | None = None, **options) -> IngestReport:
    """Ingest files (each succeeds or fails on its own) and record one `action` per file; `options` go to
    Library.ingest (supersedes, effective_date). A request that cannot be done as asked is a ValueError."""
    with services.lock:
        services.audit.ready(action)  # fail closed: nothing is ingested that the trail cannot record
        report = services.library.ingest(paths, progress=progress, **options)
    for f in report.files:
        services.audit.record_document(user, action, document_id=f.document_id, version=f.version,
                                       file=Path(f.file).name, ok=f.status != "failed", error=f.error,
                                       **(context or {}))
    return report


def delete_document(services: Services, user: str, document_id: str, version: int | None = None, *,
                    context: dict | None = None) -> list[str]:
    """Delete a document (or one version) from search, recorded either way; a KeyError when there is no such live
    document (recorded as a failed `document.delete`)."""
    with services.lock:
        services.audit.ready("document.delete")  # fail closed: nothing is deleted that the trail cannot record
        try:
            keys = services.library.delete(document_id, version)
        except KeyError:
            services.audit.record_document(user, "document.delete", document_id=document_id, version=version,
                                           file=None, ok=False, error="no such live document", **(context or {}))
            raise
        services.audit.record_document(user, "document.delete", document_id=document_id, version=version,
                                       file=None, ok=True, **(context or {}))
    return keys
