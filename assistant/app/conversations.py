"""Conversations: each user's questions and the answers they got, in a local SQLite store (mode 0600), so that a chat
survives a reload or a restart; a thumbs up or down with a comment on each answer; one conversation exported with its
answers' citations (Markdown, JSON), and every rated answer as evaluation JSON Lines.

A conversation belongs to one user, as the user store knows them (name and creation time, so a user removed and added
again under the same name does not get the old conversations back); every read and change names that user, and
another user's conversation is answered as one that does not exist. An answer is stored as `Answer.to_record()`."""

from __future__ import annotations

import json
import re
import secrets
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from assistant.app.users import User, immediate_transaction, private_store
from assistant.pdf_view import describe_place
from ingest.types import ComplyError

MAX_TITLE = 80
MAX_COMMENT = 2000
VERDICTS = ("up", "down")


class ConversationError(ComplyError, ValueError):
    """A conversation or answer this user has none of, or a title, verdict or comment that cannot be stored."""


class NotFound(ConversationError):
    """No conversation or answer of this user has that id (another user's is not told apart from none)."""


@dataclass
class Turn:
    """One question of a conversation and the answer it got (`record`: `Answer.to_record()`), with its feedback."""

    id: str
    conversation: str
    question: str
    record: dict
    time: str
    verdict: str | None = None  # "up" or "down", None until the user rates the answer
    comment: str | None = None
    feedback_time: str | None = None


@dataclass
class Conversation:
    """A user's conversation: its title (the first question, trimmed), times and, when read whole, its turns."""

    id: str
    owner: str
    title: str
    created: str
    updated: str
    turns: list[Turn] = field(default_factory=list)
    size: int = 0  # how many turns it holds (also when read without them)

    def to_dict(self) -> dict:
        return asdict(self)


def new_id() -> str:
    """A fresh conversation or turn id: 16 hex digits, not guessable (another user's is refused anyway)."""
    return secrets.token_hex(8)


def title_of(question: str) -> str:
    """The title a conversation gets from its first question: one line, cut at a word under MAX_TITLE characters."""
    text = " ".join(question.split())
    if len(text) <= MAX_TITLE:
        return text
    cut = text[:MAX_TITLE - 1].rsplit(" ", 1)[0] or text[:MAX_TITLE - 1]
    return cut + "…"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def _check_id(value: str, what: str) -> str:
    if not isinstance(value, str) or not re.fullmatch(r"[0-9a-f]{16}", value):
        raise NotFound(f"no such {what}")
    return value


_CONVERSATION = "id, owner, title, created, updated, (SELECT COUNT(*) FROM turns t WHERE t.conversation = c.id)"
_TURN = "id, conversation, question, record, time, verdict, comment, feedback_time"


class ConversationStore:
    """Conversations and their turns in one SQLite file (`settings.conversations_path`, mode 0600)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        with private_store(self.path) as db:  # questions and answers: nobody else's business
            db.execute("""CREATE TABLE IF NOT EXISTS conversations (
                              id TEXT PRIMARY KEY,
                              owner TEXT NOT NULL COLLATE NOCASE,
                              owner_created TEXT NOT NULL,
                              title TEXT NOT NULL,
                              created TEXT NOT NULL,
                              updated TEXT NOT NULL)""")
            db.execute("""CREATE TABLE IF NOT EXISTS turns (
                              id TEXT PRIMARY KEY,
                              conversation TEXT NOT NULL REFERENCES conversations(id),
                              question TEXT NOT NULL,
                              record TEXT NOT NULL,
                              time TEXT NOT NULL,
                              verdict TEXT CHECK (verdict IN ('up', 'down')),
                              comment TEXT,
                              feedback_time TEXT)""")
            db.execute("CREATE INDEX IF NOT EXISTS turns_of ON turns (conversation, time)")
            db.execute("CREATE INDEX IF NOT EXISTS conversations_of ON conversations (owner, updated)")

    def _transaction(self):
        return immediate_transaction(self.path)

    def list(self, user: User) -> list[Conversation]:
        """`user`'s conversations, the most recently updated first (without their turns)."""
        with self._transaction() as db:
            rows = db.execute(f"SELECT {_CONVERSATION} FROM conversations c WHERE owner = ? AND owner_created = ? "
                              "ORDER BY updated DESC, rowid DESC", (user.name, user.created)).fetchall()
        return [Conversation(*row[:5], size=row[5]) for row in rows]

    def get(self, user: User, conversation_id: str) -> Conversation:
        """One of `user`'s conversations with its turns, oldest first; ConversationError for any other id."""
        with self._transaction() as db:
            conversation = self._owned(db, user, conversation_id)
            rows = db.execute(f"SELECT {_TURN} FROM turns WHERE conversation = ? ORDER BY time, rowid",
                              (conversation.id,)).fetchall()
        conversation.turns = [_turn(row) for row in rows]
        return conversation

    def check(self, user: User, conversation_id: str) -> None:
        """Raise ConversationError unless `conversation_id` is `user`'s or not used yet (a new conversation)."""
        _check_id(conversation_id, "conversation")
        with self._transaction() as db:
            if db.execute("SELECT 1 FROM conversations WHERE id = ?", (conversation_id,)).fetchone():
                self._owned(db, user, conversation_id)

    def add_turn(self, user: User, conversation_id: str, turn_id: str, question: str, record: dict) -> Turn:
        """Save an answer as the next turn of `user`'s conversation, which its first turn creates (titled after
        the question)."""
        _check_id(turn_id, "answer")
        now = _now()
        with self._transaction() as db:
            if db.execute("SELECT 1 FROM conversations WHERE id = ?", (_check_id(conversation_id, "conversation"),)
                          ).fetchone():
                self._owned(db, user, conversation_id)
                db.execute("UPDATE conversations SET updated = ? WHERE id = ?", (now, conversation_id))
            else:
                db.execute("INSERT INTO conversations VALUES (?, ?, ?, ?, ?, ?)",
                           (conversation_id, user.name, user.created, title_of(question), now, now))
            db.execute("INSERT INTO turns (id, conversation, question, record, time) VALUES (?, ?, ?, ?, ?)",
                       (turn_id, conversation_id, question, json.dumps(record, ensure_ascii=False), now))
        return Turn(turn_id, conversation_id, question, record, now)

    def rename(self, user: User, conversation_id: str, title: str) -> Conversation:
        """Give `user`'s conversation a new title (one line, at most MAX_TITLE characters)."""
        title = " ".join((title or "").split())
        if not title or len(title) > MAX_TITLE or not title.isprintable():
            raise ConversationError(f"a title is 1 to {MAX_TITLE} printable characters")
        with self._transaction() as db:
            conversation = self._owned(db, user, conversation_id)
            db.execute("UPDATE conversations SET title = ? WHERE id = ?", (title, conversation.id))
        conversation.title = title
        return conversation

    def delete(self, user: User, conversation_id: str) -> Conversation:
        """Delete `user`'s conversation and its turns from the store for good; returns what it was."""
        with self._transaction() as db:
            conversation = self._owned(db, user, conversation_id)
            db.execute("DELETE FROM turns WHERE conversation = ?", (conversation.id,))
            db.execute("DELETE FROM conversations WHERE id = ?", (conversation.id,))
        return conversation

    def rate(self, user: User, turn_id: str, verdict: str, comment: str | None = None) -> Turn:
        """Set `user`'s verdict ("up" or "down") and optional comment on one of their answers (again replaces)."""
        if verdict not in VERDICTS:
            raise ConversationError(f"a verdict is one of {', '.join(VERDICTS)}, not {verdict!r}")
        comment = (comment or "").strip() or None
        if comment is not None and len(comment) > MAX_COMMENT:
            raise ConversationError(f"a comment is at most {MAX_COMMENT} characters")
        with self._transaction() as db:
            row = db.execute(f"SELECT {_TURN} FROM turns WHERE id = ?", (_check_id(turn_id, "answer"),)).fetchone()
            if row is None:
                raise NotFound("no such answer")
            try:
                self._owned(db, user, row[1])
            except NotFound:
                raise NotFound("no such answer") from None
            now = _now()
            db.execute("UPDATE turns SET verdict = ?, comment = ?, feedback_time = ? WHERE id = ?",
                       (verdict, comment, now, turn_id))
        turn = _turn(row)
        turn.verdict, turn.comment, turn.feedback_time = verdict, comment, now
        return turn

    def rated(self, since: str | None = None) -> list[tuple[str, Turn]]:
        """Every rated answer of every user, (owner, turn), in the order they were rated; `since` an ISO date or
        time (UTC): only feedback given from then on. For the administrator's export, not for the app."""
        sql = (f"SELECT c.owner, {', '.join('t.' + c for c in _TURN.split(', '))} FROM turns t "
               "JOIN conversations c ON c.id = t.conversation WHERE t.verdict IS NOT NULL")
        args: tuple = ()
        if since:
            sql, args = sql + " AND t.feedback_time >= ?", (since,)
        with self._transaction() as db:
            rows = db.execute(sql + " ORDER BY t.feedback_time, t.rowid", args).fetchall()
        return [(row[0], _turn(row[1:])) for row in rows]

    @staticmethod
    def _owned(db, user: User, conversation_id: str) -> Conversation:
        row = db.execute(f"SELECT {_CONVERSATION}, owner_created FROM conversations c WHERE id = ?",
                         (_check_id(conversation_id, "conversation"),)).fetchone()
        if row is None or row[1].lower() != user.name.lower() or row[6] != user.created:
            raise NotFound("no such conversation")  # another user's is not told apart from none
        return Conversation(*row[:5], size=row[5])


def _turn(row) -> Turn:
    return Turn(row[0], row[1], row[2], json.loads(row[3]), *row[4:])


def conversation_record(conversation: Conversation) -> dict:
    """One conversation as plain data: its id, title and times, and each turn's id, question, answer record
    (`Answer.to_record()`) and feedback (null until rated)."""
    return {
        "id": conversation.id, "title": conversation.title, "owner": conversation.owner,
        "created": conversation.created, "updated": conversation.updated,
        "turns": [{"id": t.id, "time": t.time, "question": t.question, "answer": t.record,
                   "feedback": {"verdict": t.verdict, "comment": t.comment, "time": t.feedback_time}
                   if t.verdict else None} for t in conversation.turns],
    }


def conversation_json(conversation: Conversation) -> str:
    """One conversation as JSON text (`conversation_record`)."""
    return json.dumps(conversation_record(conversation), indent=2, ensure_ascii=False)


def conversation_markdown(conversation: Conversation) -> str:
    """One conversation as Markdown: each question, the checked answer, its cited sources with their quotes, and the
    feedback given."""
    lines = [f"# {conversation.title}", "",
             f"Conversation {conversation.id} of {conversation.owner}, {conversation.created} to "
             f"{conversation.updated}.", ""]
    for i, turn in enumerate(conversation.turns, start=1):
        record = turn.record
        lines += [f"## {i}. {turn.question}", "", f"_{turn.time}_", "", record.get("answer", ""), ""]
        if record.get("abstained"):
            lines += [f"(Not answered: {record.get('abstain_reason') or 'the documents do not say'}.)", ""]
        for c in record.get("citations", []):
            place = describe_place(c.get("page"), c.get("page_label"), c.get("clause"))
            lines.append(f"- [{c['n']}] {c.get('title')} ({c.get('file')}, version {c.get('version')}), {place}: "
                         f"\"{c.get('quote', '')}\"")
        if record.get("citations"):
            lines.append("")
        if turn.verdict:
            verdict = "helpful" if turn.verdict == "up" else "not helpful"
            lines += [f"Feedback: {verdict}" + (f": {turn.comment}" if turn.comment else ""), ""]
    return "\n".join(lines)


def feedback_line(owner: str, turn: Turn) -> dict:
    """A rated answer as an evaluation record. `id`, `question`, `answer` and `evidence` (the cited places:
    document, page, passage_id = clause, quote) mean what they mean in a gold file (eval/datasets.py); the rest is
    the feedback: the user's `verdict` and `comment`, and the answer's provenance."""
    record = turn.record
    return {
        "id": f"feedback-{turn.id}",
        "question": turn.question,
        "answer": record.get("answer"),
        # a quote cut after a word ends in "…", which the source does not say: the gold reader compares the text
        "evidence": [{"document": c["document_id"], "page": c.get("page"), "passage_id": c.get("clause"),
                      "quote": c["quote"].removesuffix("…") if c.get("quote") else c.get("quote")}
                     for c in record.get("citations", [])],
        "verdict": turn.verdict,
        "comment": turn.comment,
        "abstained": record.get("abstained"),
        "abstain_reason": record.get("abstain_reason"),
        "model": record.get("model"),
        "adapter": record.get("adapter"),
        "user": owner,
        "conversation": turn.conversation,
        "answered": turn.time,
        "rated": turn.feedback_time,
    }


def gold_line(owner: str, turn: Turn) -> dict | None:
    """A liked answer as a gold question in the exact gold format (eval/datasets.py): answered -> answerable with
    the cited places as evidence and the answer as the reference; a liked abstention -> not answerable. None for an
    answer rated down (it says what is wrong, not what is right)."""
    if turn.verdict != "up":
        return None
    line = feedback_line(owner, turn)
    answerable = not line["abstained"] and bool(line["evidence"])
    return {"id": line["id"], "question": line["question"], "answerable": answerable,
            "answer": line["answer"] if answerable else None, "evidence": line["evidence"] if answerable else []}
