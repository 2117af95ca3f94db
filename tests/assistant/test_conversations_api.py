"""The REST API's conversation routes, in process on the real routes, services, stores and audit trail: a user lists
and reads their own conversations and rates their answers; another user's are answered 404, and every call is in
the trail once."""

from __future__ import annotations

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from assistant.app.api.main import ApiRoutes
from assistant.app.conversations import new_id
from assistant.app.tokens import TokenStore
from tests.assistant.test_conversations import record


@pytest.fixture
def api(new_library):
    """(client, services, {user: bearer header}) over a fresh home with alice (viewer) and bob (admin)."""
    from assistant.app.ui.services import Services

    library = new_library()
    services = Services(library.settings, library)
    app = FastAPI()
    ApiRoutes(app, services).install()
    tokens = TokenStore(library.settings.tokens_path)
    headers = {}
    for name, role in (("alice", "viewer"), ("bob", "admin")):
        services.users.add(name, role, f"{name}-password-1")
        headers[name] = {"Authorization": f"Bearer {tokens.issue(services.users.get(name))[1]}"}
    with TestClient(app) as client:
        yield client, services, headers


def test_conversations_and_feedback_over_the_api(api):
    client, services, auth = api
    alice, bob = services.users.get("alice"), services.users.get("bob")
    cid, tid, bob_cid = new_id(), new_id(), new_id()
    services.conversations.add_turn(alice, cid, tid, "What is the minimum password length?", record("q"))
    services.conversations.add_turn(bob, bob_cid, new_id(), "bob's question", record("b"))

    listed = client.get("/v1/conversations", headers=auth["alice"])
    assert listed.status_code == 200, listed.text
    assert [(c["id"], c["title"], c["size"]) for c in listed.json()["conversations"]] == [
        (cid, "What is the minimum password length?", 1)]
    opened = client.get(f"/v1/conversations/{cid}", headers=auth["alice"]).json()
    assert opened["turns"][0]["id"] == tid and opened["turns"][0]["answer"]["citations"][0]["page"] == 2

    rated = client.post(f"/v1/answers/{tid}/feedback", json={"verdict": "down", "comment": "wrong page"},
                        headers=auth["alice"])
    assert rated.status_code == 200, rated.text
    assert (rated.json()["verdict"], rated.json()["conversation"]) == ("down", cid)
    assert services.conversations.get(alice, cid).turns[0].comment == "wrong page"
    bad = client.post(f"/v1/answers/{tid}/feedback", json={"verdict": "meh"}, headers=auth["alice"])
    assert bad.status_code == 400 and "verdict" in bad.json()["detail"]

    # bob, an admin, reads and rates none of alice's: 404, as for an id nobody has
    for call in (lambda: client.get(f"/v1/conversations/{cid}", headers=auth["bob"]),
                 lambda: client.post(f"/v1/answers/{tid}/feedback", json={"verdict": "up"}, headers=auth["bob"]),
                 lambda: client.get(f"/v1/conversations/{new_id()}", headers=auth["bob"])):
        refused = call()
        assert refused.status_code == 404 and "no such" in refused.json()["detail"], refused.text
    assert [c["id"] for c in client.get("/v1/conversations", headers=auth["bob"]).json()["conversations"]] == [
        bob_cid]
    assert services.conversations.get(alice, cid).turns[0].verdict == "down"
    assert client.get("/v1/conversations").status_code == 401
    assert "/v1/answers/{answer_id}/feedback" in client.get("/api/docs").text

    records = [(r["user"], r["action"], r["ok"]) for r in services.audit.records()]
    assert records == [("alice", "conversation.list", True), ("alice", "conversation.read", True),
                       ("alice", "answer.feedback", True), ("alice", "answer.feedback", False),
                       ("bob", "conversation.read", False), ("bob", "answer.feedback", False),
                       ("bob", "conversation.read", False), ("bob", "conversation.list", True)]
    assert all(r["via"] == "api" and r["request_id"] for r in services.audit.records())
