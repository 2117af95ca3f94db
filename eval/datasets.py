"""Gold question sets: the project's JSON Lines format and ObliQA, plus deterministic sampling and splitting.

See docs/evaluation.md for the formats.
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Evidence:
    """One place in a document that supports an answer.

    `document` is a document id, a file name or (ObliQA) the DocumentID as a string. `page` is 1-based.
    `passage_id` is a clause/section number. `quote` is text found there (for ObliQA, the whole passage).
    """

    document: str
    page: int | None = None
    passage_id: str | None = None
    quote: str | None = None


@dataclass
class GoldQuestion:
    id: str
    question: str
    answerable: bool
    answer: str | None = None
    evidence: list[Evidence] = field(default_factory=list)
    also: list[Evidence] = field(default_factory=list)


class DatasetError(Exception):
    """A gold file could not be read; carries the file, the 1-based line (None: whole file) and the reason."""

    def __init__(self, path: str | Path, line: int | None, reason: str):
        self.path = str(path)
        self.line = line
        self.reason = reason
        where = f"{self.path}:{line}" if line is not None else self.path
        super().__init__(f"{where}: {reason}")


def _evidence(obj: object, path: Path, line: int, what: str) -> Evidence:
    if not isinstance(obj, dict):
        raise DatasetError(path, line, f"{what} must be an object")
    doc = obj.get("document")
    if not isinstance(doc, str | int) or isinstance(doc, bool) or str(doc).strip() == "":
        raise DatasetError(path, line, f"{what} needs a non-empty 'document'")
    page = obj.get("page")
    if page is not None and (not isinstance(page, int) or isinstance(page, bool) or page < 1):
        raise DatasetError(path, line, f"{what} has an invalid 'page' {page!r} (a 1-based integer or null)")
    pid = obj.get("passage_id")
    if pid is not None and not isinstance(pid, str | int):
        raise DatasetError(path, line, f"{what} has an invalid 'passage_id' {pid!r}")
    quote = obj.get("quote")
    if quote is not None and not isinstance(quote, str):
        raise DatasetError(path, line, f"{what} has an invalid 'quote' (a string or null)")
    return Evidence(
        document=str(doc),
        page=page,
        passage_id=None if pid is None or str(pid) == "" else str(pid),
        quote=quote or None,
    )


def _evidence_list(value: object, path: Path, line: int, key: str) -> list[Evidence]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise DatasetError(path, line, f"'{key}' must be a list")
    return [_evidence(v, path, line, f"{key}[{i}]") for i, v in enumerate(value)]


def load_jsonl(path: str | Path) -> list[GoldQuestion]:
    """Read the project's gold format: one JSON object per line; blank lines are skipped.

    Raises DatasetError (with the 1-based line number) on invalid JSON, missing or mistyped fields,
    duplicate ids, and answerable questions without evidence.
    """
    path = Path(path)
    try:
        raw = path.read_text(encoding="utf-8-sig")
    except OSError as e:
        raise DatasetError(path, None, f"cannot read: {e.strerror or e}") from e
    out: list[GoldQuestion] = []
    seen: dict[str, int] = {}
    for n, text in enumerate(raw.splitlines(), start=1):
        if not text.strip():
            continue
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as e:
            raise DatasetError(path, n, f"invalid JSON: {e.msg} (column {e.colno})") from e
        if not isinstance(obj, dict):
            raise DatasetError(path, n, "each line must be a JSON object")
        qid = obj.get("id")
        if not isinstance(qid, str | int) or isinstance(qid, bool) or str(qid).strip() == "":
            raise DatasetError(path, n, "missing or empty 'id'")
        qid = str(qid)
        if qid in seen:
            raise DatasetError(path, n, f"duplicate id {qid!r} (first on line {seen[qid]})")
        seen[qid] = n
        question = obj.get("question")
        if not isinstance(question, str) or not question.strip():
            raise DatasetError(path, n, "missing or empty 'question'")
        answerable = obj.get("answerable")
        if not isinstance(answerable, bool):
            raise DatasetError(path, n, "'answerable' must be true or false")
        answer = obj.get("answer")
        if answer is not None and not isinstance(answer, str):
            raise DatasetError(path, n, "'answer' must be a string or null")
        evidence = _evidence_list(obj.get("evidence"), path, n, "evidence")
        also = _evidence_list(obj.get("also"), path, n, "also")
        if answerable and not evidence:
            raise DatasetError(path, n, f"answerable question {qid!r} has no evidence")
        out.append(GoldQuestion(qid, question, answerable, answer, evidence, also))
    return out


def load_obliqa(path: str | Path) -> list[GoldQuestion]:
    """Read an ObliQA split (a JSON array of {QuestionID, Question, Passages[{DocumentID, PassageID, Passage}]}).

    Every question is answerable; each gold passage becomes Evidence(document=str(DocumentID),
    passage_id=PassageID, quote=Passage). The quote lets metrics tell apart the records that share one
    (DocumentID, PassageID) key but hold different text.
    """
    path = Path(path)
    try:
        records = json.loads(path.read_text(encoding="utf-8-sig"))
    except OSError as e:
        raise DatasetError(path, None, f"cannot read: {e.strerror or e}") from e
    except json.JSONDecodeError as e:
        raise DatasetError(path, e.lineno, f"invalid JSON: {e.msg}") from e
    if not isinstance(records, list):
        raise DatasetError(path, None, "an ObliQA file must hold a JSON array of questions")
    out: list[GoldQuestion] = []
    for i, rec in enumerate(records):
        where = f"question {i}"
        if not isinstance(rec, dict):
            raise DatasetError(path, None, f"{where} is not an object")
        qid, question, passages = rec.get("QuestionID"), rec.get("Question"), rec.get("Passages")
        if qid in (None, "") or not isinstance(question, str) or not isinstance(passages, list) or not passages:
            raise DatasetError(path, None, f"{where} needs QuestionID, Question and a non-empty Passages list")
        evidence = []
        for j, p in enumerate(passages):
            if not isinstance(p, dict) or p.get("DocumentID") in (None, "") or p.get("PassageID") in (None, ""):
                raise DatasetError(path, None, f"{where} ({qid}) passage {j} needs DocumentID and PassageID")
            quote = p.get("Passage")
            evidence.append(
                Evidence(
                    document=str(p["DocumentID"]),
                    passage_id=str(p["PassageID"]),
                    quote=quote if isinstance(quote, str) and quote else None,
                )
            )
        out.append(GoldQuestion(str(qid), question, True, None, evidence, []))
    return out


def load_dataset(path: str | Path, format: str = "auto") -> list[GoldQuestion]:
    """Load gold questions. format: "jsonl", "obliqa" or "auto" (.jsonl -> jsonl, .json -> obliqa)."""
    path = Path(path)
    if format == "auto":
        suffix = path.suffix.lower()
        if suffix == ".jsonl":
            format = "jsonl"
        elif suffix == ".json":
            format = "obliqa"
        else:
            raise DatasetError(path, None, f"cannot tell the format from {suffix or 'no suffix'!r}; pass format=")
    if format == "jsonl":
        return load_jsonl(path)
    if format == "obliqa":
        return load_obliqa(path)
    raise ValueError(f"unknown dataset format {format!r} (auto, jsonl, obliqa)")


def sample(questions: list[GoldQuestion], n: int, seed: int = 0) -> list[GoldQuestion]:
    """n questions drawn without replacement, the same ones for the same input and seed (all when n >= len)."""
    if n >= len(questions):
        return list(questions)
    if n <= 0:
        return []
    picked = sorted(random.Random(seed).sample(range(len(questions)), n))
    return [questions[i] for i in picked]


def _unit(qid: str, seed: int) -> float:
    digest = hashlib.sha256(f"{seed}\x00{qid}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def split(
    questions: list[GoldQuestion], val_fraction: float = 0.2, seed: int = 0
) -> tuple[list[GoldQuestion], list[GoldQuestion]]:
    """(train, val): a question goes to val when the hash of (seed, id) falls below val_fraction.

    Each question's side depends only on its id and the seed, so adding questions never moves existing ones.
    Input order is kept on both sides.
    """
    if not 0.0 <= val_fraction <= 1.0:
        raise ValueError("val_fraction must be between 0 and 1")
    train, val = [], []
    for q in questions:
        (val if _unit(q.id, seed) < val_fraction else train).append(q)
    return train, val
