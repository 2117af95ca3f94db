"""The OpenAI chat-completions shapes of the REST API: the request (the last user message is the question, earlier
user/assistant pairs are the conversation), the completion and its stream of `data:` chunks, each carrying comply's
extra fields (`citations`, `abstained`, `abstain_reason`). `content` is only ever the checked answer; the model's
unchecked draft streams in a separate `draft` field that OpenAI clients ignore."""

from __future__ import annotations

import json

from pydantic import BaseModel, ConfigDict, Field

from assistant.types import Answer


class ChatMessage(BaseModel):
    """One message of the conversation; `content` as a string or OpenAI's list of text parts."""

    model_config = ConfigDict(extra="allow")
    role: str
    content: str | list[dict] | None = None

    def text(self) -> str:
        if isinstance(self.content, list):
            return " ".join(str(part.get("text", "")) for part in self.content if part.get("type") == "text")
        return self.content or ""


class ChatRequest(BaseModel):
    """OpenAI's chat-completions request. `model`, `temperature` and other sampling fields are accepted and ignored
    (comply answers with its configured generator, greedily); system messages are ignored (comply has its own
    rules); `documents`, `as_of`, `strict` and `conversation` are comply's own fields (`extra_body` in the openai
    client)."""

    model_config = ConfigDict(extra="allow")
    model: str | None = None
    messages: list[ChatMessage] = Field(min_length=1)
    stream: bool = False
    documents: list[str] | None = Field(default=None, description="Only these document ids.")
    as_of: str | None = Field(default=None, description="Answer from the versions in force on this date "
                                                        "(YYYY-MM-DD).")
    strict: bool | None = Field(default=None, description="Strict citations (default: the consensus_citations "
                                                          "setting).")
    conversation: str | None = Field(default=None, description="Keep the answer in one of your conversations (its "
                                     "id), or `new` to start one; the last chunk or the completion says "
                                     "`conversation` and `answer_id`.")

    def question(self) -> tuple[str, list[tuple[str, str]]]:
        """The last user message, and the user/assistant pairs before it (the conversation so far)."""
        turns = [m for m in self.messages if m.role in ("user", "assistant")]
        last = max((i for i, m in enumerate(turns) if m.role == "user"), default=None)
        if last is None:
            raise ValueError("the messages hold no user message: the last user message is the question")
        history = [(turns[i].text(), turns[i + 1].text()) for i in range(last - 1)
                   if turns[i].role == "user" and turns[i + 1].role == "assistant"]
        return turns[last].text(), history


def citations(answer: Answer) -> list[dict]:
    """The answer's citations as the API shows them: where each is, its quote, and whether it supports a sentence."""
    return [{"n": c.n, "document": c.document_id, "title": c.title, "file": c.file, "page": c.page,
             "page_label": c.page_label, "clause": c.clause, "version": c.version, "quote": c.quote,
             "verified": answer.verified(c.n), "score": c.score} for c in answer.citations]


def comply_fields(answer: Answer) -> dict:
    """comply's extra fields on a completion and on the last chunk of a stream."""
    return {"citations": citations(answer), "abstained": answer.abstained, "abstain_reason": answer.abstain_reason,
            "in_force": answer.in_force}


def completion(answer: Answer, request_id: str, created: int) -> dict:
    """The whole checked answer as a `chat.completion`."""
    return {"id": f"chatcmpl-{request_id}", "object": "chat.completion", "created": created, "model": answer.model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": answer.answer},
                         "finish_reason": "stop", "logprobs": None}],
            **comply_fields(answer)}


def chunk(request_id: str, created: int, model: str, delta: dict, finish: str | None = None, **extra) -> str:
    """One server-sent event of a `chat.completion.chunk` stream."""
    data = {"id": f"chatcmpl-{request_id}", "object": "chat.completion.chunk", "created": created, "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}], **extra}
    return f"data: {json.dumps(data, ensure_ascii=False)}\n\n"


def error_event(message: str, status: int) -> str:
    """An error after the stream began (the answer could not be recorded): OpenAI clients raise it."""
    return f"data: {json.dumps({'error': {'message': message, 'type': 'comply_error', 'code': status}})}\n\n"


DONE = "data: [DONE]\n\n"
