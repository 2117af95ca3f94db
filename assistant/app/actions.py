"""The audited actions that the app's tabs, the REST API and the CLI call: answer a question, list the library, view
a cited page, add files to the library, delete a document, and a user's own conversations (answers saved in them, rename, delete, export, feedback). Each
checks that the audit trail can record it before acting (fail closed), acts under the library lock (answers share
it, changes take it alone) and records what it did, with the caller's `context` (where the request came from: the
API adds `via`, `token_id` and `request_id`). Each checks the caller's permission first (a refusal is recorded
as `access.denied`; the app and the API have refused it at their door already, the CLI acts as an admin)."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from assistant.app.conversations import (
    Conversation,
    ConversationError,
    Turn,
    conversation_json,
    conversation_markdown,
    new_id,
)
from assistant.pdf_view import PageView, citation_view, page_view
from assistant.types import Answer, Citation, Reading
from ingest.pipeline import IngestReport
from ingest.types import DocumentRecord

if TYPE_CHECKING:  # the doors make the Services (assistant/app/services.py) these functions work on
    from assistant.app.services import Services
    from assistant.app.users import User


class Waiting:
    """Yielded by `answer_stream` when a change to the library or the adapter is in progress and the answer waits."""


WAITING = Waiting()


@dataclass
class Kept:
    """Yielded by `answer_stream` after the Answer when it was asked in a conversation: the turn it was saved as, or
    why it could not be saved (the answer is recorded in the audit trail either way)."""

    turn: Turn | None
    error: str | None = None


def answer_stream(services: Services, user: User, question: str, *, documents: list[str] | None = None,
                  as_of: str | None = None, strict: bool | None = None, history: list[tuple[str, str]] | None = None,
                  k: int | None = None, context: dict | None = None,
                  conversation: str | None = None) -> Iterator[str | Waiting | Reading | Answer | Kept]:
    """Answer `question` as `user`: a Waiting while a library change holds the lock, a Reading once the passages are
    found (not for an early abstention), the draft's text pieces, then the checked Answer once it is recorded in the
    audit trail (and, with `conversation`, saved as that conversation's next turn: a Kept follows). Raises
    AuditUnavailable at once (before anything is drafted) when the trail cannot record an answer, and
    ConversationError when `conversation` is another user's; while iterating, a ValueError for a request that cannot
    be answered as asked and an AuditError when the answer could not be recorded (it must then not be shown)."""
    services.permit(user, "chat", **(context or {}))
    services.audit.ready("answer")
    owner = None
    if conversation is not None:
        owner = _user(services, user.name)
        services.conversations.check(owner, conversation)
    return _answer(services, user.name, question, documents, as_of, strict, history or [], k, context or {},
                   (owner, conversation) if owner else None)


def _answer(services: Services, user: str, question: str, documents: list[str] | None, as_of: str | None,
            strict: bool | None, history: list[tuple[str, str]], k: int | None,
            context: dict, keep: tuple[User, str] | None) -> Iterator[str | Waiting | Reading | Answer | Kept]:
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
    turn_id = new_id()
    where = {"conversation": keep[1], "turn": turn_id} if keep else {}  # the trail says where the answer was kept
    services.audit.record_answer(user, answer, index_generation=generation, documents=in_force,
                                 filters={"documents": documents or [], "as_of": as_of, "strict": strict},
                                 **context, **where)
    kept = None
    if keep:  # saved only once recorded: the store never holds an answer the trail does not
        try:
            kept = Kept(services.conversations.add_turn(keep[0], keep[1], turn_id, question, answer.to_record()))
        except (ConversationError, sqlite3.Error) as e:
            kept = Kept(None, str(e))
    yield answer
    if kept:
        yield kept


def answer(services: Services, user: User, question: str, **options) -> Answer:
    """`answer_stream` to its end: the recorded Answer."""
    return answer_kept(services, user, question, **options)[0]


def answer_kept(services: Services, user: User, question: str, **options) -> tuple[Answer, Kept | None]:
    """`answer_stream` to its end: the recorded Answer and, when asked in a `conversation`, where it was kept."""
    answer, kept = None, None
    for item in answer_stream(services, user, question, **options):
        if isinstance(item, Answer):
            answer = item
        elif isinstance(item, Kept):
            kept = item
    assert answer is not None
    return answer, kept


def conversation_for(conversation: str | None) -> str | None:
    """The conversation an API request names: `new` starts one (a fresh id), else one of the caller's ids (checked
    when the answer is kept) or None (not kept)."""
    return new_id() if conversation == "new" else conversation


def add_documents(services: Services, user: User, paths: list[str], action: str = "document.upload", *,
                  progress: Callable | None = None, context: dict | None = None, **options) -> IngestReport:
    """Ingest files (each succeeds or fails on its own) and record one `action` per file; `options` go to
    Library.ingest (supersedes, effective_date). A request that cannot be done as asked is a ValueError."""
    services.permit(user, "documents.write", **(context or {}))
    with services.lock:
        services.audit.ready(action)  # fail closed: nothing is ingested that the trail cannot record
        report = services.library.ingest(paths, progress=progress, **options)
    for f in report.files:
        services.audit.record_document(user.name, action, document_id=f.document_id, version=f.version,
                                       file=Path(f.file).name, ok=f.status != "failed", error=f.error,
                                       **(context or {}))
    return report


def delete_document(services: Services, user: User, document_id: str, version: int | None = None, *,
                    context: dict | None = None) -> list[str]:
    """Delete a document (or one version) from search, recorded either way; a KeyError when there is no such live
    document (recorded as a failed `document.delete`)."""
    services.permit(user, "documents.write", **(context or {}))
    with services.lock:
        services.audit.ready("document.delete")  # fail closed: nothing is deleted that the trail cannot record
        try:
            keys = services.library.delete(document_id, version)
        except KeyError:
            services.audit.record_document(user.name, "document.delete", document_id=document_id, version=version,
                                           file=None, ok=False, error="no such live document", **(context or {}))
            raise
        services.audit.record_document(user.name, "document.delete", document_id=document_id, version=version,
                                       file=None, ok=True, **(context or {}))
    return keys


def list_documents(services: Services, user: User, *, all_versions: bool = False,
                   context: dict | None = None) -> list[DocumentRecord]:
    """The documents in force (or, with `all_versions`, every version, superseded and deleted ones too); recorded as
    `library.list` with how many."""
    services.permit(user, "documents.read", **(context or {}))
    with services.audit.recorded(user.name, "library.list", failures=True, all_versions=all_versions,
                                 **(context or {})) as outcome:
        catalog = services.library.catalog
        records = catalog.documents(include_deleted=True) if all_versions else catalog.documents(status="active")
        outcome["documents"] = len(records)
    return records


def document_versions(services: Services, user: User, document_id: str, *,
                      context: dict | None = None) -> list[DocumentRecord]:
    """Every version of one document, the oldest first; recorded as `library.show` (ValueError when there is no
    document of that id)."""
    services.permit(user, "documents.read", **(context or {}))
    with services.audit.recorded(user.name, "library.show", failures=True, document_id=document_id,
                                 **(context or {})) as outcome:
        versions = services.library.catalog.versions(document_id)
        if not versions:
            raise ValueError(f"no document with id '{document_id}'")
        outcome["versions"] = len(versions)
    return versions


def view_page(services: Services, user: User, document_id: str, page: int, *, version: int | None = None,
              highlight: str | None = None, context: dict | None = None) -> PageView:
    """A page of a stored document drawn with `highlight` marked (assistant/pdf_view.py); recorded as `page.view`
    (refusals too: a page that is not there, a file too large to draw)."""
    services.permit(user, "chat", **(context or {}))
    settings = services.settings
    with services.audit.recorded(user.name, "page.view", failures=True, document_id=document_id, version=version,
                                 page=page, **(context or {})) as outcome:
        view = page_view(services.library.catalog, document_id, page, version=version, highlight=highlight,
                         max_decompressed_page_mb=settings.max_decompressed_page_mb,
                         max_decompressed_file_mb=settings.max_decompressed_file_mb)
        outcome["highlighted"] = view.highlighted
    return view


def view_citation(services: Services, user: User, citation: Citation, *, context: dict | None = None) -> PageView:
    """The page (or passage) behind a citation with its span marked, as the chat's source panel shows it
    (assistant/pdf_view.py); recorded as `page.view` (refusals too: a document gone, a page too large to draw)."""
    services.permit(user, "chat", **(context or {}))
    settings = services.settings
    with services.audit.recorded(user.name, "page.view", failures=True, document_id=citation.document_id,
                                 version=citation.version, page=citation.page, **(context or {})) as outcome:
        view = citation_view(services.library.catalog, citation,
                             max_decompressed_page_mb=settings.max_decompressed_page_mb,
                             max_decompressed_file_mb=settings.max_decompressed_file_mb)
        outcome["highlighted"] = view.highlighted
    return view


def list_conversations(services: Services, user: User, *, context: dict | None = None) -> list[Conversation]:
    """`user`'s own conversations, the most recently updated first; recorded as `conversation.list`."""
    services.permit(user, "chat", **(context or {}))
    with services.audit.recorded(user.name, "conversation.list", failures=True, **(context or {})) as outcome:
        found = services.conversations.list(user)
        outcome["conversations"] = len(found)
    return found


def read_conversation(services: Services, user: User, conversation_id: str, *,
                      context: dict | None = None) -> Conversation:
    """One of `user`'s conversations with its answers; recorded as `conversation.read` (ConversationError when
    `user` has none of that id)."""
    services.permit(user, "chat", **(context or {}))
    with services.audit.recorded(user.name, "conversation.read", failures=True, conversation=conversation_id,
                                 **(context or {})):
        return services.conversations.get(user, conversation_id)


def _user(services: Services, name: str) -> User:
    user = services.users.get(name)
    if user is None:
        raise ConversationError(f"no user '{name}'")
    return user


def rename_conversation(services: Services, user: User, conversation_id: str, title: str, *,
                        context: dict | None = None) -> Conversation:
    """Rename one of `user`'s conversations; recorded as `conversation.rename` (refusals too)."""
    services.permit(user, "chat", **(context or {}))
    with services.audit.recorded(user.name, "conversation.rename", failures=True, conversation=conversation_id,
                                 title=title, **(context or {})):
        return services.conversations.rename(user, conversation_id, title)


def delete_conversation(services: Services, user: User, conversation_id: str, *,
                        context: dict | None = None) -> Conversation:
    """Delete one of `user`'s conversations from the store; `conversation.delete` records that it was (its title and
    how many answers it held; the answers themselves are in the trail's `answer` records)."""
    services.permit(user, "chat", **(context or {}))
    with services.audit.recorded(user.name, "conversation.delete", failures=True, conversation=conversation_id,
                                 **(context or {})) as outcome:
        gone = services.conversations.delete(user, conversation_id)
        outcome.update(title=gone.title, turns=gone.size)
    return gone


def export_conversation(services: Services, user: User, conversation_id: str, fmt: str, *,
                        context: dict | None = None) -> tuple[Conversation, str]:
    """One of `user`'s conversations as Markdown (`md`) or JSON (`json`) text with its answers' citations; recorded
    as `conversation.export` before it is handed out (AuditUnavailable, and no text, when it cannot be)."""
    services.permit(user, "chat", **(context or {}))
    if fmt not in ("md", "json"):
        raise ValueError(f"unknown export format '{fmt}' (md or json)")
    with services.audit.recorded(user.name, "conversation.export", failures=True, conversation=conversation_id,
                                 format=fmt, **(context or {})):
        conversation = services.conversations.get(user, conversation_id)
    return conversation, (conversation_markdown if fmt == "md" else conversation_json)(conversation)


def rate_answer(services: Services, user: User, turn_id: str, verdict: str, comment: str | None = None, *,
                context: dict | None = None) -> Turn:
    """`user`'s thumbs up or down, with an optional comment, on one of their saved answers; recorded as
    `answer.feedback` (the answer's `turn` and `conversation`, the verdict and the comment)."""
    services.permit(user, "chat", **(context or {}))
    with services.audit.recorded(user.name, "answer.feedback", failures=True, turn=turn_id, verdict=verdict,
                                 comment=(comment or "").strip() or None, **(context or {})) as outcome:
        turn = services.conversations.rate(user, turn_id, verdict, comment)
        outcome["conversation"] = turn.conversation
    return turn
