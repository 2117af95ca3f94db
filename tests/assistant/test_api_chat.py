"""The parts of the REST API that need no server: the OpenAI request read as a question and a conversation, the
stream's events, the per-token rate limit on a clock the test moves, and the names uploaded files are saved under."""

import json
from pathlib import Path

import pytest

from assistant.app.api.chat import DONE, ChatRequest, chunk, error_event
from assistant.app.api.main import RateLimit


def test_the_last_user_message_is_the_question_and_earlier_pairs_the_conversation():
    request = ChatRequest.model_validate({"model": "gpt-4o", "temperature": 0.2, "messages": [
        {"role": "system", "content": "You are helpful."},
        {"role": "user", "content": "How long are emails kept?"},
        {"role": "assistant", "content": "Seven years [1]."},
        {"role": "user", "content": [{"type": "text", "text": "And"}, {"type": "text", "text": "chat messages?"}]},
    ]})
    assert request.question() == ("And chat messages?", [("How long are emails kept?", "Seven years [1].")])
    with pytest.raises(ValueError, match="no user message"):
        ChatRequest.model_validate({"messages": [{"role": "system", "content": "hi"}]}).question()


def test_stream_events_are_openai_chunks_then_done():
    event = chunk("abc", 1, "SmolLM2-135M-Instruct", {"content": "Hi"}, "stop", abstained=False)
    assert event.startswith("data: ") and event.endswith("\n\n")
    data = json.loads(event.removeprefix("data: "))
    assert (data["object"], data["id"], data["choices"][0]["delta"], data["abstained"]) == \
        ("chat.completion.chunk", "chatcmpl-abc", {"content": "Hi"}, False)
    assert json.loads(error_event("Not done", 503).removeprefix("data: "))["error"]["code"] == 503
    assert DONE == "data: [DONE]\n\n"


def test_the_rate_limit_allows_a_burst_then_one_call_per_interval_per_token():
    now = [0.0]
    limit = RateLimit(6, clock=lambda: now[0])  # 6 a minute: one every 10 s after the burst
    assert [limit.take(1) for _ in range(6)] == [(0.0, False)] * 6
    wait, first = limit.take(1)
    assert wait == pytest.approx(10.0) and first
    assert limit.take(1)[1] is False  # the same run of refusals
    assert limit.take(2) == (0.0, False)  # another token
    now[0] = 10.0
    assert limit.take(1) == (0.0, False)
    assert limit.take(1)[1] is True  # a new run of refusals after a call that went ahead


def test_uploaded_files_are_saved_under_plain_names_each_in_its_own_folder(tmp_path):
    import io
    from types import SimpleNamespace

    from assistant.app.api.main import _save_uploads

    names = ["..", "../../etc/passwd", "a\\b\\policy.txt", "é" * 200 + ".pdf", None, "policy.txt"]
    paths = _save_uploads([SimpleNamespace(filename=n, file=io.BytesIO(b"x")) for n in names], tmp_path)
    saved = [Path(p).relative_to(tmp_path) for p in paths]
    assert [p.parts[:1] for p in saved] == [(str(i),) for i in range(len(names))]
    assert [p.name for p in saved][:3] + [p.name for p in saved][4:] == ["upload", "passwd", "policy.txt", "upload",
                                                                        "policy.txt"]
    assert saved[3].suffix == ".pdf" and len(saved[3].name.encode()) <= 200
