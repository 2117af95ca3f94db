"""The REST API against a real `comply serve` process (the small model, the sample corpus, real Chroma): the openai
client's chat completions (whole and streamed) with citations, /v1/ask, the library (list, upload, page image,
delete), the audit trail, health and the docs; tokens that are missing, wrong, expired, revoked, of a removed or
changed user (401), a role without the permission (403, audited), the rate limit (429); and every call that was
let in appears in the audit trail exactly once."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest
from openai import OpenAI
from typer.testing import CliRunner

from assistant.app.audit import AuditLog
from assistant.app.cli.main import app as cli
from assistant.app.users import UserStore
from assistant.types import Answer
from eval.bench.security import serving
from ingest.settings import Settings
from tests.library import copy_sample_home

pytestmark = pytest.mark.slow

QUESTION = "What is the minimum password length?"  # the small model answers it from information_security_policy.pdf
RATE = 20  # api_rate_per_minute of the served app: the rate test's token spends it, the others stay under it
USERS = {"boss": "admin", "ed": "editor", "vic": "viewer", "leaver": "viewer", "mover": "editor"}
CALLS: Counter = Counter()  # request id -> audit records the call must have written


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """`comply serve` over a copy of the sample home with the users above and their tokens; (url, home, tokens)."""
    home = copy_sample_home(tmp_path_factory.mktemp("comply-api") / "home")
    settings = Settings(home=home)
    users = UserStore(settings.users_path)
    for name, role in USERS.items():
        users.add(name, role, f"{name}-pass-0001")
    tokens = {name: issue(home, name) for name in USERS}
    tokens |= {"expired": issue(home, "vic", "--expires", "0.00001"), "revoked": issue(home, "vic"),
               "rate": issue(home, "vic")}
    revoked = CliRunner().invoke(cli, ["--home", str(home), "users", "revoke-token", str(tokens["revoked"][0])])
    assert revoked.exit_code == 0, revoked.output
    settings_env = {"COMPLY_MAX_NEW_TOKENS": "48", "COMPLY_API_RATE_PER_MINUTE": str(RATE),
                    "COMPLY_UPLOAD_QUOTA_MB": "1"}  # small, so that an upload over it is cheap to send
    with serving(home, settings_env) as (url, _):
        yield url, home, {name: secret for name, (_, secret) in tokens.items()}


def issue(home: Path, name: str, *options: str) -> tuple[int, str]:
    """`comply users token NAME --json`: (id, token)."""
    result = CliRunner().invoke(cli, ["--home", str(home), "users", "token", name, *options, "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    return data["id"], data["token"]


def api(url: str, token: str | None) -> httpx.Client:
    return httpx.Client(base_url=url, timeout=300, headers={"Authorization": f"Bearer {token}"} if token else {})


def let_in(response: httpx.Response, records: int = 1) -> httpx.Response:
    """Note a call that was let in: it must be in the audit trail `records` times."""
    CALLS[response.headers["x-request-id"]] += records
    return response


def test_health_needs_no_token_and_the_docs_list_the_routes(served):
    url, _, _ = served
    health = httpx.get(f"{url}/v1/health")
    assert health.status_code == 200 and health.json() == {"status": "ok", "audit": "ok"}
    docs = httpx.get(f"{url}/api/docs")
    assert docs.status_code == 200 and "<span class='path'>/v1/chat/completions</span>" in docs.text
    assert "<script" not in docs.text and "://" not in docs.text  # drawn on the server: nothing fetched elsewhere
    paths = httpx.get(f"{url}/api/openapi.json").json()["paths"]
    assert {"/v1/chat/completions", "/v1/models", "/v1/ask", "/v1/documents", "/v1/documents/{document_id}",
            "/v1/documents/{document_id}/pages/{page}", "/v1/audit", "/v1/health"} <= set(paths)


def test_the_openai_client_gets_a_cited_answer_and_the_server_stays_responsive(served):
    url, _, tokens = served
    client = OpenAI(base_url=f"{url}/v1", api_key=tokens["vic"], max_retries=0)
    slowest = [0.0]
    done = threading.Event()

    def probe() -> None:  # the answer is written in a worker thread: the event loop keeps answering
        while not done.is_set():
            started = time.perf_counter()
            httpx.get(f"{url}/v1/health", timeout=30)
            slowest[0] = max(slowest[0], time.perf_counter() - started)
            time.sleep(0.2)

    prober = threading.Thread(target=probe)
    prober.start()
    try:
        raw = client.chat.completions.with_raw_response.create(
            model="anything", messages=[{"role": "system", "content": "ignored"}, {"role": "user", "content": QUESTION}])
    finally:
        done.set()
        prober.join()
    CALLS[raw.headers["x-request-id"]] += 1
    completion = raw.parse()
    models = client.models.with_raw_response.list()
    CALLS[models.headers["x-request-id"]] += 1
    assert [m.id for m in models.parse().data] == [completion.model]
    extra = completion.model_extra
    assert completion.model == "SmolLM2-135M-Instruct" and completion.choices[0].finish_reason == "stop"
    assert not extra["abstained"] and extra["abstain_reason"] is None, completion
    cited = extra["citations"]
    assert ("information_security_policy.pdf", 2) in {(c["file"], c["page"]) for c in cited}
    assert all(c["verified"] and c["quote"] and c["version"] == 1 and c["document"] for c in cited)
    assert "[1]" in completion.choices[0].message.content
    assert slowest[0] < 2.0, f"GET /v1/health took {slowest[0]:.2f} s while an answer was written"


def test_the_openai_client_streams_the_draft_apart_and_then_the_checked_answer(served):
    url, _, tokens = served
    client = OpenAI(base_url=f"{url}/v1", api_key=tokens["ed"], max_retries=0)
    raw = client.chat.completions.with_raw_response.create(
        model="comply", stream=True, messages=[{"role": "user", "content": QUESTION}])
    CALLS[raw.headers["x-request-id"]] += 1
    chunks = list(raw.parse())
    content = "".join(c.choices[0].delta.content or "" for c in chunks)
    drafts = "".join((c.model_extra or {}).get("draft") or "" for c in chunks)
    last = chunks[-1]
    assert last.choices[0].finish_reason == "stop" and not last.model_extra["abstained"]
    assert drafts and "[1]" in content  # content is the checked answer only; the draft came in `draft`
    likely = [c.model_extra["draft_likely"] for c in chunks if (c.model_extra or {}).get("draft")]
    assert likely and all(isinstance(x, bool) for x in likely) and likely[-1]  # an answer that stood looked likely
    [reading] = [c.model_extra["reading"] for c in chunks if (c.model_extra or {}).get("reading")]
    assert reading == {"passages": reading["passages"], "query": QUESTION} and reading["passages"] >= 1
    assert any(c["file"] == "information_security_policy.pdf" for c in last.model_extra["citations"])


def test_a_streamed_answer_is_finished_and_recorded_when_its_client_leaves(served):
    url, home, tokens = served
    with api(url, tokens["ed"]) as client, client.stream("POST", "/v1/chat/completions", json={
            "stream": True, "messages": [{"role": "user", "content": QUESTION}]}) as response:
        assert response.status_code == 200
        request_id = response.headers["x-request-id"]
        next(response.iter_lines())  # the first event; then the client goes
    CALLS[request_id] += 1
    trail, deadline = AuditLog(Settings(home=home).audit_path), time.monotonic() + 180
    while not any(r.get("request_id") == request_id and r["action"] == "answer" for r in trail.records()):
        assert time.monotonic() < deadline, "the answer of a stream whose client left was never recorded"
        time.sleep(0.5)


def test_ask_returns_the_record_comply_ask_json_prints(served):
    url, _, tokens = served
    with api(url, tokens["vic"]) as client:
        record = let_in(client.post("/v1/ask", json={"question": QUESTION})).json()
        empty = let_in(client.post("/v1/ask", json={"question": "  "}))
    shape = Answer(question="q", answer="", abstained=True, sentences=[], citations=[], model="m", adapter=None,
                   timings={}).to_record()
    assert set(record) == set(shape) and record["question"] == QUESTION
    assert empty.status_code == 400 and "empty" in empty.json()["detail"]


def test_documents_list_upload_page_and_delete(served, tmp_path):
    url, _, tokens = served
    policy = tmp_path / "travel_policy.txt"
    policy.write_text("Travel Policy\n\n1.1 Staff book business travel through the travel desk.\n"
                      "1.2 Economy class is used for flights shorter than six hours.\n")
    with api(url, tokens["vic"]) as viewer, api(url, tokens["ed"]) as editor:
        listed = let_in(viewer.get("/v1/documents")).json()
        assert "information-security-policy" in {d["document_id"] for d in listed}
        assert not any("stored_path" in d or "source_path" in d for d in listed)

        files = [("files", ("travel_policy.txt", policy.read_bytes(), "text/plain")),
                 ("files", ("notes.exe", b"MZ\x90\x00 not a document", "application/octet-stream"))]
        added = let_in(editor.post("/v1/documents", files=files), records=2)
        assert added.status_code == 200, added.text
        outcome = {f["file"]: f for f in added.json()["files"]}
        assert outcome["travel_policy.txt"]["status"] == "added" and not added.json()["ok"]
        assert outcome["notes.exe"]["status"] == "failed" and outcome["notes.exe"]["error"]
        document = outcome["travel_policy.txt"]["document_id"]
        assert document in {d["document_id"] for d in let_in(viewer.get("/v1/documents")).json()}

        page = let_in(viewer.get("/v1/documents/information-security-policy/pages/2",
                                 params={"highlight": "at least 14 characters"}))
        assert page.status_code == 200 and page.headers["content-type"] == "image/png"
        assert page.content.startswith(b"\x89PNG") and page.headers["x-comply-highlighted"] == "true"
        missing = let_in(viewer.get("/v1/documents/information-security-policy/pages/99"))
        assert missing.status_code == 404 and "page 99" in missing.json()["detail"]
        markdown = next(d["document_id"] for d in listed if d["file_name"] == "whistleblowing_policy.md")
        no_image = let_in(viewer.get(f"/v1/documents/{markdown}/pages/1"))
        assert no_image.status_code == 404 and "not a PDF" in no_image.json()["detail"]

        refused = let_in(viewer.post("/v1/documents", files=files[:1]))
        assert refused.status_code == 403 and "editor role" in refused.json()["detail"]
        assert let_in(viewer.delete(f"/v1/documents/{document}")).status_code == 403

        policy.write_text(policy.read_text().replace("six hours", "eight hours"))
        newer = let_in(editor.post("/v1/documents", data={"supersedes": document, "effective_date": "2026-01-01"},
                                   files={"files": ("travel_policy_v2.txt", policy.read_bytes(), "text/plain")}))
        assert [(f["status"], f["version"]) for f in newer.json()["files"]] == [("new_version", 2)], newer.text
        bad_date = let_in(editor.post("/v1/documents", data={"effective_date": "soon"}, files=files[:1]))
        assert bad_date.status_code == 400 and "effective date" in bad_date.json()["detail"]
        too_big = let_in(editor.post("/v1/documents", files={"files": ("big.txt", b"x " * 600_000, "text/plain")}))
        assert too_big.status_code == 413 and "upload_quota_mb" in too_big.json()["detail"]

        deleted = let_in(editor.delete(f"/v1/documents/{document}"))
        assert deleted.status_code == 200 and sorted(deleted.json()["deleted"]) == [f"{document}@v1", f"{document}@v2"]
        assert let_in(editor.delete(f"/v1/documents/{document}")).status_code == 404
        assert document not in {d["document_id"] for d in let_in(viewer.get("/v1/documents")).json()}


def test_tokens_that_may_not_act_are_refused(served):
    url, home, tokens = served
    for token in (None, "cmp_not-a-real-token", tokens["expired"], tokens["revoked"]):
        with api(url, token) as client:
            response = client.get("/v1/documents")
        assert response.status_code == 401 and response.headers["www-authenticate"] == "Bearer", token
        assert "x-request-id" not in response.headers  # nobody was let in: nothing to record
    assert "revoked" in api(url, tokens["revoked"]).get("/v1/documents").json()["detail"]

    users = UserStore(Settings(home=home).users_path)
    with api(url, tokens["leaver"]) as leaver, api(url, tokens["mover"]) as mover:
        assert let_in(leaver.get("/v1/documents")).status_code == 200
        assert let_in(mover.get("/v1/documents")).status_code == 200
        users.remove("leaver")  # by another process (the CLI would do the same): checked on every call
        users.set_role("mover", "admin")
        assert leaver.get("/v1/documents").status_code == 401
        changed = mover.get("/v1/audit")
        assert changed.status_code == 401 and "changed role" in changed.json()["detail"]


def test_the_rate_limit_refuses_with_retry_after(served):
    url, _, tokens = served
    with api(url, tokens["rate"]) as client:
        allowed = 0
        while (response := client.get("/v1/documents")).status_code == 200:  # a burst of RATE, refilled slowly
            let_in(response)
            allowed += 1
            assert allowed <= RATE + 5, "the rate limit never refused"
        first, second = let_in(response), client.get("/v1/documents")
    assert allowed >= RATE
    for refused in (first, second):
        assert refused.status_code == 429 and 1 <= int(refused.headers["retry-after"]) <= 60 // RATE + 1
        assert "try again in" in refused.json()["detail"].lower()
    with api(url, tokens["vic"]) as other:  # another token has its own allowance
        assert let_in(other.get("/v1/documents")).status_code == 200


def test_the_audit_route_is_for_admins_and_every_call_is_recorded_exactly_once(served):
    url, home, tokens = served
    with api(url, tokens["vic"]) as viewer:
        assert let_in(viewer.get("/v1/audit")).status_code == 403
    with api(url, tokens["boss"]) as admin:
        answers = let_in(admin.get("/v1/audit", params={"action": "answer", "user": "vic"}))
        bad = let_in(admin.get("/v1/audit", params={"since": "yesterday"}))
    assert answers.status_code == 200 and bad.status_code == 400
    recorded = answers.json()["records"]
    assert [(r["action"], r["question"]) for r in recorded] == [("answer", QUESTION), ("answer", QUESTION),
                                                                ("answer.refused", "  ")]
    assert all(r["via"] == "api" and r["user"] == "vic" for r in recorded)

    records = AuditLog(Settings(home=home).audit_path).records()
    seen = Counter(r["request_id"] for r in records if r.get("via") == "api")
    assert seen == CALLS
    by_action = Counter(r["action"] for r in records if r.get("via") == "api")
    assert by_action["access.denied"] == 3 and by_action["api.throttled"] == 1
    assert by_action["answer"] == 4 and by_action["document.upload"] == 4 and by_action["document.delete"] == 2
    assert by_action["document.supersede"] == 1
    denied = next(r for r in records if r["action"] == "access.denied" and r.get("via") == "api")
    assert (denied["user"], denied["permission"], denied["role"]) == ("vic", "documents.write", "viewer")
    assert all(r["user"] in USERS for r in records if r.get("via") == "api")


def test_nothing_is_done_when_the_audit_trail_cannot_record_it(served, tmp_path):
    url, home, tokens = served
    trail = Settings(home=home).audit_path
    before = trail.read_bytes()
    policy = tmp_path / "expenses_policy.txt"
    policy.write_text("Expenses Policy\n\n2.1 Receipts are kept for six years.\n")
    try:
        with open(trail, "ab") as f:
            f.write(b'{"seq":')  # an interrupted write: no record can follow it
        assert httpx.get(f"{url}/v1/health").status_code == 503
        with api(url, tokens["ed"]) as editor:
            asked = editor.post("/v1/ask", json={"question": QUESTION})
            streamed = editor.post("/v1/chat/completions", json={"stream": True, "messages": [
                {"role": "user", "content": QUESTION}]})
            added = editor.post("/v1/documents", files={"files": ("expenses_policy.txt", policy.read_bytes())})
            listed = editor.get("/v1/documents")
        for refused in (asked, streamed, added, listed):
            assert refused.status_code == 503, refused.text
            assert refused.json()["detail"].startswith("Not done") and "incomplete" in refused.json()["detail"]
        assert trail.read_bytes() == before + b'{"seq":'
    finally:
        trail.write_bytes(before)
    with api(url, tokens["ed"]) as editor:
        listed = editor.get("/v1/documents").json()
    assert "expenses-policy" not in {d["document_id"] for d in listed}


def test_answers_asked_in_a_conversation_are_kept_there_and_can_be_rated(served):
    url, _, tokens = served
    with api(url, tokens["vic"]) as client:
        first = let_in(client.post("/v1/ask", json={"question": QUESTION, "conversation": "new"}))
        assert first.status_code == 200, first.text
        conversation, answer_id = first.json()["conversation"], first.json()["answer_id"]
        openai = OpenAI(base_url=f"{url}/v1", api_key=tokens["vic"], max_retries=0)
        raw = openai.chat.completions.with_raw_response.create(
            model="comply", stream=True, messages=[{"role": "user", "content": QUESTION}],
            extra_body={"conversation": conversation})
        CALLS[raw.headers["x-request-id"]] += 1
        last = list(raw.parse())[-1]
        assert last.choices[0].finish_reason == "stop" and last.model_extra["conversation"] == conversation
        second_id = last.model_extra["answer_id"]
        kept = let_in(client.get(f"/v1/conversations/{conversation}")).json()
        assert [t["id"] for t in kept["turns"]] == [answer_id, second_id]
        assert kept["turns"][0]["answer"]["answer"] == first.json()["answer"]
        rated = let_in(client.post(f"/v1/answers/{second_id}/feedback", json={"verdict": "up"}))
        assert rated.status_code == 200 and rated.json()["conversation"] == conversation
        plain = let_in(client.post("/v1/ask", json={"question": QUESTION}))  # not asked in one: not kept
        assert "conversation" not in plain.json() and "answer_id" not in plain.json()
    with api(url, tokens["ed"]) as other:  # another user's conversation is not theirs to add to
        refused = let_in(other.post("/v1/ask", json={"question": QUESTION, "conversation": conversation}))
        assert refused.status_code == 404 and "no such conversation" in refused.json()["detail"], refused.text
    records = AuditLog(Settings(home=served[1]).audit_path).records()
    [note] = [r for r in records if r.get("request_id") == refused.headers["x-request-id"]]
    assert (note["action"], note["ok"]) == ("answer.refused", False)
