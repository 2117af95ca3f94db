"""The REST API, served by the app's own server beside the Gradio app (`ApiRoutes(app, services).install()` after
Gradio built it): OpenAI-compatible chat completions, comply's own /v1/ask, the library, page images, the audit
trail, health; OpenAPI docs at /api/docs.

Every call but /v1/health carries `Authorization: Bearer <token>` (assistant/app/tokens.py) and acts as the token's
user with the role the user store gives them at call time; calls are rate limited per token; each call is recorded
in the audit trail with `via: "api"`, the token's id and the request's id (the `X-Request-Id` header), by the same
functions the app's tabs call (assistant/app/actions.py), failing closed (503 with the reason). Blocking work (answers,
ingest, rendering, the audit trail's fsync) runs in worker threads, never on the event loop that serves everyone."""

from __future__ import annotations

import asyncio
import functools
import io
import math
import secrets
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import anyio
from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from fastapi.security import HTTPBearer
from pydantic import BaseModel, Field

from assistant.app import actions, actions_admin
from assistant.app.api.chat import DONE, ChatRequest, chunk, completion, comply_fields, error_event
from assistant.app.api.docs import docs_html
from assistant.app.audit import AuditError
from assistant.app.conversations import NotFound, conversation_record
from assistant.app.tokens import ApiToken, TokenStore
from assistant.app.users import PERMISSIONS, User, allowed
from assistant.pdf_view import SourceViewError
from assistant.types import Answer, Reading
from ingest.types import iso_date

MB = 1024 * 1024
# Worker threads for blocking work; calls beyond them wait on the event loop without blocking it. Answers, ingest
# and deletions (which wait for the generator and the library lock) have their own, so that they cannot hold up the
# token checks, audit records, listings and page images of other calls.
SLOW_WORKERS = 8
QUICK_WORKERS = 16
MAX_FILES = 100  # files in one upload
NOT_A_USER = {"WWW-Authenticate": "Bearer"}


class RateLimit:
    """A token bucket per API token: `per_minute` calls at once, then one every 60/per_minute seconds."""

    def __init__(self, per_minute: int, clock=time.monotonic):
        self.capacity, self.per_s, self.clock = float(per_minute), per_minute / 60.0, clock
        self._buckets: dict[int, tuple[float, float, bool]] = {}  # token id -> (calls left, when, refusing)
        self._lock = threading.Lock()

    def take(self, key: int) -> tuple[float, bool]:
        """(0, False) when a call may go ahead; else (seconds until one may, whether this is the first refusal
        since the last call that went ahead)."""
        now = self.clock()
        with self._lock:
            left, then, refusing = self._buckets.get(key, (self.capacity, now, False))
            left = min(self.capacity, left + (now - then) * self.per_s)
            if left >= 1:
                self._buckets[key] = (left - 1, now, False)
                return 0.0, False
            self._buckets[key] = (left, now, True)
            return (1 - left) / self.per_s, not refusing


@dataclass
class Caller:
    """Who makes an API call: the token's user as the user store has them now, the token, and the call's id."""

    user: User
    token: ApiToken
    request_id: str
    action_ms: float | None = None  # how long the action itself took (in its worker thread), once it ran

    @property
    def context(self) -> dict:
        """What the audit records of this call carry besides their own data."""
        return {"via": "api", "token_id": self.token.id, "request_id": self.request_id}

    @property
    def headers(self) -> dict:
        """The call's id, and (once an action ran) `Server-Timing: action;dur=<ms>`: the time the action took, so a
        client can tell the API's own share of a call's time (eval/bench/api_overhead.py measures it)."""
        timing = {} if self.action_ms is None else {"Server-Timing": f"action;dur={self.action_ms:.2f}"}
        return {"X-Request-Id": self.request_id, **timing}


CONVERSATION = ("Keep the answer in one of your conversations (its id), or `new` to start one; the response says "
                "`conversation` and `answer_id` (to rate it with /v1/answers/{id}/feedback). It then shows in the "
                "app's sidebar too.")


class AskRequest(BaseModel):
    """comply's own question: the answer comes back as `comply ask --json` prints it."""

    question: str
    documents: list[str] | None = Field(default=None, description="Only these document ids.")
    as_of: str | None = Field(default=None, description="Answer from the versions in force on this date.")
    strict: bool | None = Field(default=None, description="Strict citations (default: the consensus_citations "
                                                          "setting).")
    k: int | None = Field(default=None, ge=1, description="Sources to retrieve (default: the top_k setting).")
    conversation: str | None = Field(default=None, description=CONVERSATION)


class FeedbackRequest(BaseModel):
    """A thumbs up or down on one of your saved answers, with an optional comment (again replaces it)."""

    verdict: str = Field(description="up or down")
    comment: str | None = Field(default=None, description="What was right or wrong (at most 2000 characters).")


UPLOAD_BODY = {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
    "type": "object", "required": ["files"], "properties": {
        "files": {"type": "array", "items": {"type": "string", "format": "binary"}},
        "effective_date": {"type": "string", "description": "YYYY-MM-DD (default: read from the document)"},
        "supersedes": {"type": "string", "description": "The document id one file is a new version of"}}}}}}}


class ApiRoutes:
    """The /v1 routes and /api/docs of one app over the app's Services."""

    def __init__(self, app, services):
        self.app, self.services, self.settings = app, services, services.settings
        self.tokens = TokenStore(self.settings.tokens_path)
        self.rate = RateLimit(self.settings.api_rate_per_minute)
        self.quick, self.slow = anyio.CapacityLimiter(QUICK_WORKERS), anyio.CapacityLimiter(SLOW_WORKERS)
        self._uploading: dict[str, int] = {}  # user -> bytes of API uploads being received or ingested
        self._upload_lock = threading.Lock()
        self._streams: set[asyncio.Task] = set()  # answers still being written for a stream whose client left
        self.api = FastAPI(title="comply API", version="1", docs_url=None, openapi_url="/api/openapi.json",
                           redoc_url=None, description="Answers from your policies with checked citations. "
                           "Authorization: Bearer <token> (`comply users token NAME`). See docs/api.md.")
        self.api.add_api_route("/api/docs", self.docs, methods=["GET"], include_in_schema=False)
        self.api.add_api_route("/v1/health", self.health, methods=["GET"],
                               summary="Whether the server can answer and audit")
        # the token is read by `caller`; this only tells the docs (their Authorize button) how it is sent
        route = functools.partial(self.api.add_api_route, dependencies=[Depends(HTTPBearer(auto_error=False))])
        route("/v1/chat/completions", self.chat_completions, methods=["POST"],
              summary="OpenAI-compatible chat completion with citations (role: viewer)")
        route("/v1/models", self.models, methods=["GET"],
              summary="OpenAI-compatible: the one model that answers, comply's generator (role: viewer)")
        route("/v1/ask", self.ask, methods=["POST"], summary="An answer as `comply ask --json` (role: viewer)")
        route("/v1/documents", self.list_documents, methods=["GET"], summary="The library (role: viewer)")
        route("/v1/documents", self.upload, methods=["POST"], openapi_extra=UPLOAD_BODY,
              summary="Add files to the library, each on its own (role: editor)")
        route("/v1/documents/{document_id}", self.delete, methods=["DELETE"],
              summary="Delete a document or one version from search (role: editor)")
        route("/v1/documents/{document_id}/pages/{page}", self.page, methods=["GET"],
              responses={200: {"content": {"image/png": {}}}},
              summary="A page of a PDF as PNG, with a passage highlighted (role: viewer)")
        route("/v1/audit", self.audit, methods=["GET"], summary="Records of the audit trail (role: admin)")
        route("/v1/conversations", self.conversations, methods=["GET"],
              summary="Your conversations from the app, newest first (role: viewer)")
        route("/v1/conversations/{conversation_id}", self.conversation, methods=["GET"],
              summary="One of your conversations with its answers and their feedback (role: viewer)")
        route("/v1/answers/{answer_id}/feedback", self.feedback, methods=["POST"],
              summary="Thumbs up or down, with a comment, on one of your saved answers (role: viewer)")

    def install(self) -> None:
        """Put these routes (and the docs) before Gradio's."""
        self.app.router.routes[0:0] = self.api.routes

    # -- who is calling --------------------------------------------------------------------------------------------

    async def run(self, fn, *args, **kwargs):
        """`fn(*args, **kwargs)` in a worker thread for quick work."""
        return await anyio.to_thread.run_sync(functools.partial(fn, *args, **kwargs), limiter=self.quick)

    async def run_slow(self, fn, *args, **kwargs):
        """`fn(*args, **kwargs)` in a worker thread for answers, ingest and deletions."""
        return await anyio.to_thread.run_sync(functools.partial(fn, *args, **kwargs), limiter=self.slow)

    async def caller(self, request: Request, permission: str) -> Caller:
        """The token's user, if the token is valid, within its rate and allowed `permission`; else the refusal
        (401 not audited: nobody is known; 429 audited once per run of refusals; 403 audited as access.denied)."""
        scheme, _, secret = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not secret.strip():
            raise HTTPException(401, "An API token is needed: send 'Authorization: Bearer <token>' (an administrator "
                                     "issues one with `comply users token NAME`).", headers=NOT_A_USER)
        token, user = await self.run(self._identify, secret.strip())
        refusal = "the API token is not valid" if token is None else token.refusal(user)
        if refusal:
            raise HTTPException(401, f"Not allowed: {refusal}.", headers=NOT_A_USER)
        who = Caller(user, token, secrets.token_hex(8))
        wait, first = self.rate.take(token.id)
        if wait > 0:
            retry = max(1, math.ceil(wait))  # rounded up: a client told 1 s for 1.4 s would be refused again
            if first:
                await self.run(self._note, user.name, "api.throttled", retry_after_s=retry,
                               per_minute=self.settings.api_rate_per_minute, **who.context)
            raise HTTPException(429, f"Too many calls with this token: at most {self.settings.api_rate_per_minute} a "
                                     f"minute (api_rate_per_minute). Try again in {retry} s.",
                                headers={"Retry-After": str(retry), **who.headers})
        if not allowed(user.role, permission):
            await self.run(self._note, user.name, "access.denied", permission=permission, role=user.role,
                           **who.context)
            raise HTTPException(403, f"Permission denied: your role ({user.role}) may not do this; it needs the "
                                     f"{PERMISSIONS[permission]} role.", headers=who.headers)
        return who

    def _identify(self, secret: str) -> tuple[ApiToken | None, User | None]:
        token = self.tokens.find(secret)
        return token, self.services.users.get(token.user) if token else None

    def _note(self, user: str, action: str, **data) -> None:
        try:
            self.services.audit.append(user, action, **data)
        except AuditError:
            pass  # refused either way

    async def act(self, who: Caller, fn, *args, bad: dict | None = None, slow: bool = False, **kwargs):
        """Run an audited action in a worker thread (`slow`: one for answers, ingest, deletions); its refusals as
        HTTP errors. A request it cannot do as asked (ValueError) before it recorded anything is recorded as `bad`
        says (`{"action": ..., **data}`)."""
        def timed():
            started = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                who.action_ms = (time.perf_counter() - started) * 1000

        try:
            return await (self.run_slow if slow else self.run)(timed)
        except ValueError as e:
            if bad:
                await self.reject(who, e, **bad)
            refuse(e, who)
        except Exception as e:
            refuse(e, who)

    async def reject(self, who: Caller, error: Exception, action: str, **data) -> NoReturn:
        """Record a call that was let in but cannot be done as asked (`ok: false` and why), then refuse it: every
        call let in is in the trail once."""
        http = error if isinstance(error, HTTPException) else http_error(error, who)
        await self.run(self._note, who.user.name, action, ok=False, error=http.detail if http else str(error),
                       **data, **who.context)
        if isinstance(error, HTTPException):
            raise error
        refuse(error, who)

    # -- routes ----------------------------------------------------------------------------------------------------

    async def docs(self) -> HTMLResponse:
        """The routes as a page drawn from the OpenAPI schema, offline (assistant/app/api/docs.py)."""
        return HTMLResponse(docs_html(self.api.openapi()))

    async def health(self) -> JSONResponse:
        """`{"status": "ok"}` when the audit trail can take records (so every audited call can be done); else 503."""
        try:
            await self.run(self.services.audit.ready, "api")
        except AuditError:
            return JSONResponse({"status": "unavailable", "audit": "cannot record"}, status_code=503)
        return JSONResponse({"status": "ok", "audit": "ok"})

    async def models(self, request: Request) -> JSONResponse:
        """OpenAI's model list, for clients that ask for it before chatting: comply's generator, whatever `model`
        a chat completion names."""
        who = await self.caller(request, "chat")

        def listed() -> str:
            with self.services.audit.recorded(who.user.name, "models.list", failures=True, **who.context):
                return self.services.assistant.generator.model_name

        model = await self.act(who, listed)
        return JSONResponse({"object": "list", "data": [{"id": model, "object": "model", "created": 0,
                                                          "owned_by": "comply"}]}, headers=who.headers)

    async def ask(self, body: AskRequest, request: Request) -> JSONResponse:
        """Answer a question: the record `comply ask --json` prints (answer, sentences with their verdicts,
        citations, sources, model, timings, abstain_reason)."""
        who = await self.caller(request, "chat")
        answer, kept = await self.act(who, actions.answer_kept, self.services, who.user, body.question,
                                      documents=body.documents, as_of=body.as_of, strict=body.strict, k=body.k,
                                      context=who.context, conversation=actions.conversation_for(body.conversation),
                                      bad={"action": "answer.refused", "question": body.question}, slow=True)
        return JSONResponse({**answer.to_record(), **kept_fields(kept)}, headers=who.headers)

    async def chat_completions(self, body: ChatRequest, request: Request):
        """OpenAI-compatible: the last user message is the question; `citations`, `abstained` and `abstain_reason`
        come as extra fields; with `stream`, server-sent `data:` chunks and `data: [DONE]`."""
        who = await self.caller(request, "chat")
        try:
            question, history = body.question()
        except ValueError as e:
            await self.reject(who, e, "answer.refused", question=None)
        options = {"documents": body.documents, "as_of": body.as_of, "strict": body.strict, "history": history,
                   "context": who.context, "conversation": actions.conversation_for(body.conversation)}
        created = int(time.time())
        if not body.stream:
            answer, kept = await self.act(who, actions.answer_kept, self.services, who.user, question,
                                          **options, bad={"action": "answer.refused", "question": question}, slow=True)
            return JSONResponse({**completion(answer, who.request_id, created), **kept_fields(kept)},
                                headers=who.headers)
        return await self._stream(who, question, options, created)

    async def _stream(self, who: Caller, question: str, options: dict, created: int) -> StreamingResponse:
        """The answer's events. The answer is written in a worker thread to its end (and recorded) even if the
        client leaves; a refusal before the first piece (the trail cannot record, a bad request) is an HTTP error."""
        loop = asyncio.get_running_loop()
        items: asyncio.Queue = asyncio.Queue()
        end = object()

        def produce() -> None:
            try:
                model = self.services.assistant.generator.model_name
                loop.call_soon_threadsafe(items.put_nowait, model)
                for item in actions.answer_stream(self.services, who.user, question, **options):
                    loop.call_soon_threadsafe(items.put_nowait, item)
            except Exception as e:
                loop.call_soon_threadsafe(items.put_nowait, e)
            finally:
                loop.call_soon_threadsafe(items.put_nowait, end)

        task = asyncio.ensure_future(self.run_slow(produce))
        self._streams.add(task)
        task.add_done_callback(self._streams.discard)
        model = await items.get()
        first = await items.get()
        failed = model if isinstance(model, Exception) else first if isinstance(first, Exception) else None
        if isinstance(failed, ValueError):
            await self.reject(who, failed, "answer.refused", question=question)
        if failed is not None:
            refuse(failed, who)

        def event(delta: dict, finish: str | None = None, **extra) -> str:
            return chunk(who.request_id, created, model, delta, finish, **extra)

        async def events():
            yield event({"role": "assistant", "content": ""})
            item, answer = first, None
            while item is not end:
                if answer is not None and not isinstance(item, actions.Kept):  # nothing more was kept
                    yield event({}, "stop", **comply_fields(answer))
                    answer = None
                if isinstance(item, Answer):
                    yield event({"content": item.answer})
                    answer = item  # its last chunk waits for where it was kept, if it was asked in a conversation
                elif isinstance(item, actions.Kept):
                    yield event({}, "stop", **comply_fields(answer), **kept_fields(item))
                    answer = None
                elif isinstance(item, Exception):
                    error = http_error(item, who) or HTTPException(500, f"The answer failed: {item}")
                    yield error_event(error.detail, error.status_code)
                elif item is actions.WAITING:
                    yield event({}, waiting="a change to the library or the adapter is in progress")
                elif isinstance(item, Reading):
                    yield event({}, reading={"passages": item.passages, "query": item.query})
                else:  # a piece of the draft, and whether the draft so far looks likely to stand (a chat may
                    # hide it until then, as comply's does)
                    yield event({}, draft=str(item), draft_likely=getattr(item, "likely", True))
                item = await items.get()
            if answer is not None:
                yield event({}, "stop", **comply_fields(answer))
            yield DONE

        return StreamingResponse(events(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", **who.headers})

    async def list_documents(self, request: Request, all_versions: bool = Query(
            default=False, alias="all", description="Also superseded and deleted versions.")) -> JSONResponse:
        """The documents in force (or every version), as `comply docs list --json` lists them, without the
        server's file paths."""
        who = await self.caller(request, "documents.read")
        records = await self.act(who, actions.list_documents, self.services, who.user, all_versions=all_versions,
                                 context=who.context)
        return JSONResponse([{k: v for k, v in r.to_dict().items() if k not in ("source_path", "stored_path")}
                             for r in records], headers=who.headers)

    async def upload(self, request: Request) -> JSONResponse:
        """Add files (multipart `files`, optional `effective_date`, `supersedes` with one file) to the library;
        each succeeds or fails on its own (`files[i].status`, `.error`), as in the Documents tab. The request must
        say its length and may be at most upload_quota_mb (with the caller's other uploads in progress)."""
        who = await self.caller(request, "documents.write")
        nothing = {"document_id": None, "version": None, "file": None}  # what a refused upload's record names
        size = request.headers.get("content-length")
        if size is None or not size.isdigit():
            await self.reject(who, HTTPException(411, "Upload refused: the request must say its length "
                                                      "(Content-Length).", headers=who.headers),
                              "document.upload", **nothing)
        quota = int(self.settings.upload_quota_mb * MB)
        with self._upload_lock:
            held = self._uploading.get(who.user.name, 0)
            if held + int(size) <= quota:
                self._uploading[who.user.name] = held + int(size)
        if held + int(size) > quota:
            await self.reject(who, HTTPException(413, f"Upload refused: this upload is {int(size) / MB:.1f} MB and "
                                                      f"{who.user.name} has {held / MB:.1f} MB of uploads in "
                                                      f"progress; the limit is {quota / MB:g} MB a user "
                                                      "(upload_quota_mb).", headers=who.headers),
                              "document.upload", **nothing)
        folder = Path(tempfile.mkdtemp(prefix="comply-api-"))  # 0700; deleted once ingested
        try:
            form = await request.form(max_files=MAX_FILES, max_fields=10)
            uploads = [f for f in form.getlist("files") if hasattr(f, "filename")]
            supersedes = str(form.get("supersedes") or "").strip() or None
            action = "document.supersede" if supersedes else "document.upload"
            try:
                if not uploads:
                    raise ValueError("choose one or more files to add first (multipart field 'files')")
                if supersedes and len(uploads) != 1:
                    raise ValueError("a new version ('supersedes') is one file")
                effective = iso_date(str(form.get("effective_date") or "").strip() or None, "effective date")
            except ValueError as e:
                await self.reject(who, e, action, **nothing)
            paths = await self.run(_save_uploads, uploads, folder)
            options = {"supersedes": supersedes} if supersedes else {}
            report = await self.act(who, actions.add_documents, self.services, who.user, paths, action,
                                    context=who.context, effective_date=effective, **options,
                                    bad={"action": action, **nothing}, slow=True)
        finally:
            with self._upload_lock:
                self._uploading[who.user.name] -= int(size)
            await anyio.to_thread.run_sync(shutil.rmtree, folder, True)
        data = report.to_dict()
        for f in data["files"]:
            f["file"] = Path(f["file"]).name  # the name it was uploaded with, not the server's temporary path
        return JSONResponse(data, headers=who.headers)

    async def delete(self, request: Request, document_id: str, version: int | None = Query(
            default=None, ge=1, description="Only this version (default: every version).")) -> JSONResponse:
        """Delete a document (or one version) from search; the catalog keeps it as deleted, the trail records it."""
        who = await self.caller(request, "documents.write")
        try:
            keys = await self.run_slow(actions.delete_document, self.services, who.user, document_id, version,
                                  context=who.context)
        except KeyError as e:
            which = f" version {version}" if version is not None else ""
            raise HTTPException(404, f"There is no live document '{document_id}'{which}.",
                                headers=who.headers) from e
        except Exception as e:
            refuse(e, who)
        return JSONResponse({"deleted": keys}, headers=who.headers)

    async def page(self, request: Request, document_id: str, page: int, version: int | None = Query(
            default=None, ge=1, description="The version (default: the one in force)."), highlight: str | None = Query(
            default=None, max_length=2000, description="Text to mark on the page (e.g. a citation's quote).")):
        """A page of a stored PDF as PNG with `highlight` marked where it occurs (header X-Comply-Highlighted)."""
        who = await self.caller(request, "chat")

        def render() -> tuple[bytes, bool]:
            view = actions.view_page(self.services, who.user, document_id, page, version=version, highlight=highlight,
                                     context=who.context)
            png = io.BytesIO()
            view.image.save(png, format="PNG")
            return png.getvalue(), view.highlighted

        png, highlighted = await self.act(who, render)
        return Response(png, media_type="image/png",
                        headers={"X-Comply-Highlighted": str(highlighted).lower(), **who.headers})

    async def audit(self, request: Request,
                    since: str | None = Query(default=None, description="From this date/time (UTC, inclusive)."),
                    until: str | None = Query(default=None, description="Up to this date/time (UTC, inclusive)."),
                    action: str | None = Query(default=None, description="Only this action, e.g. answer or "
                                                                         "document (every document.* action)."),
                    user: str | None = Query(default=None, description="Only records of this user."),
                    limit: int = Query(default=1000, ge=1, le=100_000, description="The last this many "
                                                                                   "matching records.")):
        """Records of the audit trail, filtered as `comply audit export` does (plus `user`); the call itself is
        recorded as an `audit.export` after the records were read, and they are returned only if it was."""
        who = await self.caller(request, "audit.export")
        records = await self.act(who, actions_admin.read_audit, self.services, who.user, since=since, until=until,
                                 action=action, user=user, limit=limit, context=who.context)
        return JSONResponse({"records": records}, headers=who.headers)


    # -- the caller's own conversations (assistant/app/conversations.py): nobody reads another's -------------------------

    async def conversations(self, request: Request) -> JSONResponse:
        """Your conversations (id, title, created, updated, size), the most recently updated first."""
        who = await self.caller(request, "chat")
        found = await self.act(who, actions.list_conversations, self.services, who.user, context=who.context)
        return JSONResponse({"conversations": [{k: v for k, v in c.to_dict().items() if k != "turns"} for c in found]},
                            headers=who.headers)

    async def conversation(self, request: Request, conversation_id: str) -> JSONResponse:
        """One of your conversations: each turn's id, question, answer (as /v1/ask returns it) and feedback."""
        who = await self.caller(request, "chat")
        found = await self.act(who, actions.read_conversation, self.services, who.user, conversation_id,
                               context=who.context)
        return JSONResponse(conversation_record(found), headers=who.headers)

    async def feedback(self, body: FeedbackRequest, request: Request, answer_id: str) -> JSONResponse:
        """Rate one of your saved answers (a turn's id); recorded as `answer.feedback`."""
        who = await self.caller(request, "chat")
        turn = await self.act(who, actions.rate_answer, self.services, who.user, answer_id, body.verdict,
                              body.comment, context=who.context)
        return JSONResponse({"answer": turn.id, "conversation": turn.conversation, "verdict": turn.verdict,
                             "comment": turn.comment, "time": turn.feedback_time}, headers=who.headers)


def kept_fields(kept: actions.Kept | None) -> dict:
    """Where an answer asked in a conversation was kept: `conversation` and `answer_id`, or `kept_error`."""
    if kept is None:
        return {}
    if kept.turn is None:
        return {"kept_error": kept.error}
    return {"conversation": kept.turn.conversation, "answer_id": kept.turn.id}


def http_error(e: Exception, who: Caller) -> HTTPException | None:
    """The HTTP error for what an action raised: the trail cannot record it 503, a bad request 400, something that
    is not there 404; None for anything else (the server's fault: 500)."""
    if isinstance(e, AuditError):
        return HTTPException(503, str(e), headers=who.headers)
    if isinstance(e, NotFound):  # a conversation or answer the caller has none of (another's is not told apart)
        return HTTPException(404, f"There is {e} of yours.", headers=who.headers)
    if isinstance(e, ValueError):
        return HTTPException(400, str(e)[0].upper() + str(e)[1:] + ".", headers=who.headers)
    if isinstance(e, KeyError | SourceViewError):
        return HTTPException(404, str(e.args[0] if isinstance(e, KeyError) else e), headers=who.headers)
    return None


def refuse(e: Exception, who: Caller) -> NoReturn:
    """Raise `e` as its HTTP error (or as it is, when it is the server's fault)."""
    error = http_error(e, who)
    if error is None:
        raise e
    raise error from e


def _save_uploads(uploads: list, folder: Path) -> list[str]:
    """Write each uploaded file under its own name (no folders) in a subfolder of `folder`: their paths."""
    paths = []
    for i, upload in enumerate(uploads):
        name = Path(str(upload.filename or "").replace("\\", "/")).name.strip()
        if name in ("", ".", "..") or "\x00" in name:  # not a file name: the report names it "upload"
            name = "upload"
        if len(name.encode()) > 200:  # file systems take 255 bytes a name: keep the start and the suffix
            suffix = Path(name).suffix[:16]
            name = name.encode()[:180].decode(errors="ignore") + suffix
        dest = folder / str(i) / name
        dest.parent.mkdir()
        with open(dest, "wb") as out:
            upload.file.seek(0)
            shutil.copyfileobj(upload.file, out)
        paths.append(str(dest))
    return paths
