"""Gold question sets: the project's JSON Lines format and ObliQA, plus deterministic sampling and splitting.

Formats and rules: docs/evaluation.md.
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from ingest.types import ComplyError

QUESTION_KEYS = ("id", "question", "answerable", "answer", "evidence", "also")
EVIDENCE_KEYS = ("document", "page", "passage_id", "quote")


@dataclass(frozen=True)
class Evidence:
    """One place in a document that supports an answer.

    `document` is a document id or a file name (ObliQA: the DocumentID as a string). `page` is the physical 1-based
    page. `passage_id` is a clause or passage number. `quote` is text found there (ObliQA: the whole passage).
    """

    document: str
    page: int | None = None
    passage_id: str | None = None
    quote: str | None = None


@dataclass
class GoldQuestion:
    """A question with its gold places: `evidence` must be found/cited; `also` are other places stating the same."""

    id: str
    question: str
    answerable: bool
    answer: str | None = None
    evidence: list[Evidence] = field(default_factory=list)
    also: list[Evidence] = field(default_factory=list)


class DatasetError(ComplyError):
    """A gold file could not be read: the file, the 1-based line (None when not line-based) and the reason."""

    def __init__(self, path: str | Path, line_no: int | None, reason: str):
        self.path = str(path)
        self.line_no = line_no
        self.reason = reason
        where = f"{self.path}:{line_no}" if line_no is not None else self.path
        super().__init__(f"{where}: {reason}")


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _evidence(obj: object, path: Path, line_no: int, what: str) -> Evidence:
    if not isinstance(obj, dict):
        raise DatasetError(path, line_no, f"{what} must be an object like {{\"document\": ...}}")
    unknown = sorted(set(obj) - set(EVIDENCE_KEYS))
    if unknown:
        # A misspelt locator ("pasage_id") would silently widen the place to the whole document.
        raise DatasetError(path, line_no, f"{what} has unknown field(s) {', '.join(unknown)} "
                                          f"(allowed: {', '.join(EVIDENCE_KEYS)})")
    doc = obj.get("document")
    if not (isinstance(doc, str) or _is_int(doc)) or str(doc).strip() == "":
        raise DatasetError(path, line_no, f"{what} needs a non-empty 'document' (a file name or document id)")
    page = obj.get("page")
    if page is not None and (not _is_int(page) or page < 1):
        raise DatasetError(path, line_no, f"{what} has an invalid 'page' {page!r} (a 1-based integer or null)")
    pid = obj.get("passage_id")
    if pid is not None and not (isinstance(pid, str) or _is_int(pid)):
        raise DatasetError(path, line_no, f"{what} has an invalid 'passage_id' {pid!r} (a string or null)")
    quote = obj.get("quote")
    if quote is not None and not isinstance(quote, str):
        raise DatasetError(path, line_no, f"{what} has an invalid 'quote' (a string or null)")
    return Evidence(
        document=str(doc).strip(),
        page=page,
        passage_id=None if pid is None or str(pid).strip() == "" else str(pid).strip(),
        quote=quote if quote and quote.strip() else None,
    )


def _evidence_list(value: object, path: Path, line_no: int, key: str) -> list[Evidence]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise DatasetError(path, line_no, f"'{key}' must be a list")
    return [_evidence(v, path, line_no, f"{key}[{i}]") for i, v in enumerate(value)]


def _question(obj: object, path: Path, line_no: int) -> GoldQuestion:
    if not isinstance(obj, dict):
        raise DatasetError(path, line_no, "each line must be a JSON object")
    unknown = sorted(set(obj) - set(QUESTION_KEYS))
    if unknown:
        raise DatasetError(path, line_no, f"unknown field(s) {', '.join(unknown)} (allowed: {', '.join(QUESTION_KEYS)})")
    qid = obj.get("id")
    if not (isinstance(qid, str) or _is_int(qid)) or str(qid).strip() == "":
        raise DatasetError(path, line_no, "missing or empty 'id'")
    qid = str(qid).strip()
    question = obj.get("question")
    if not isinstance(question, str) or not question.strip():
        raise DatasetError(path, line_no, f"question {qid!r}: missing or empty 'question'")
    if "answerable" not in obj:
        raise DatasetError(path, line_no, f"question {qid!r}: missing 'answerable' (true or false)")
    answerable = obj["answerable"]
    if not isinstance(answerable, bool):
        raise DatasetError(path, line_no, f"question {qid!r}: 'answerable' must be true or false, not {answerable!r}")
    answer = obj.get("answer")
    if answer is not None and not isinstance(answer, str):
        raise DatasetError(path, line_no, f"question {qid!r}: 'answer' must be a string or null")
    evidence = _evidence_list(obj.get("evidence"), path, line_no, "evidence")
    also = _evidence_list(obj.get("also"), path, line_no, "also")
    if answerable and not evidence:
        raise DatasetError(path, line_no, f"answerable question {qid!r} has no evidence")
    if not answerable and (evidence or also):
        raise DatasetError(path, line_no, f"unanswerable question {qid!r} lists evidence or also places")
    return GoldQuestion(qid, question.strip(), answerable, answer, evidence, also)


def load_jsonl(path: str | Path) -> list[GoldQuestion]:
    """Read the project's gold format: one JSON object per line; blank lines are skipped.

    Raises DatasetError with the 1-based line number on invalid JSON, missing, unknown or mistyped fields,
    duplicate ids, an answerable question without evidence and an unanswerable one with evidence.
    """
    path = Path(path)
    try:
        raw = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as e:
        raise DatasetError(path, None, f"cannot read: {e}") from e
    out: list[GoldQuestion] = []
    first_line: dict[str, int] = {}
    for line_no, text in enumerate(raw.splitlines(), start=1):
        if not text.strip():
            continue
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as e:
            raise DatasetError(path, line_no, f"invalid JSON: {e.msg} (column {e.colno})") from e
        q = _question(obj, path, line_no)
        if q.id in first_line:
            raise DatasetError(path, line_no, f"duplicate id {q.id!r} (first on line {first_line[q.id]})")
        first_line[q.id] = line_no
        out.append(q)
    return out


def _read_json(path: Path) -> object:
    try:
        return json.loads(path.read_text(encoding="utf-8-sig"))
    except (OSError, UnicodeDecodeError) as e:
        raise DatasetError(path, None, f"cannot read: {e}") from e
    except json.JSONDecodeError as e:
        raise DatasetError(path, e.lineno, f"invalid JSON: {e.msg} (column {e.colno})") from e


def _obliqa_corpus(documents_dir: Path) -> dict[tuple[str, str], list[str]]:
    """(DocumentID, PassageID) -> the texts of every passage record with that key."""
    files = sorted(documents_dir.glob("*.json"))
    if not files:
        raise DatasetError(documents_dir, None, "no ObliQA document files (*.json) in this folder")
    texts: dict[tuple[str, str], list[str]] = defaultdict(list)
    for f in files:
        records = _read_json(f)
        if not isinstance(records, list):
            raise DatasetError(f, None, "an ObliQA document file must hold a JSON array of passage records")
        for i, rec in enumerate(records):
            if not isinstance(rec, dict) or "DocumentID" not in rec or "PassageID" not in rec:
                raise DatasetError(f, None, f"record {i} needs DocumentID and PassageID")
            texts[(str(rec["DocumentID"]), str(rec["PassageID"]))].append(str(rec.get("Passage") or ""))
    return texts


def _resolve_quote(texts: list[str], gold_text: str | None) -> str | None:
    """The corpus text a gold passage stands for: the record with the same text, else the key's only record."""
    if gold_text is not None and gold_text in texts:
        return gold_text
    if len(texts) == 1:
        return texts[0] or None
    return None


def load_obliqa(path: str | Path, documents_dir: str | Path | None = None) -> list[GoldQuestion]:
    """Read an ObliQA split: a JSON array of {QuestionID, Question, Passages[{DocumentID, PassageID, Passage}]}.

    Every question is answerable; each gold passage becomes Evidence(str(DocumentID), passage_id=PassageID,
    quote=Passage), the quote telling apart records that share one (DocumentID, PassageID). With `documents_dir`
    (StructuredRegulatoryDocuments/) every gold passage is resolved against the corpus and its quote replaced by the
    text of the record it stands for; a passage that resolves to no record, or to several, is a DatasetError.
    """
    path = Path(path)
    records = _read_json(path)
    if not isinstance(records, list):
        raise DatasetError(path, None, "an ObliQA file must hold a JSON array of questions")
    corpus = _obliqa_corpus(Path(documents_dir)) if documents_dir is not None else None
    out: list[GoldQuestion] = []
    seen: set[str] = set()
    for i, rec in enumerate(records):
        where = f"question {i}"
        if not isinstance(rec, dict):
            raise DatasetError(path, None, f"{where} is not an object")
        qid, question, passages = rec.get("QuestionID"), rec.get("Question"), rec.get("Passages")
        if qid in (None, "") or not isinstance(question, str) or not question.strip():
            raise DatasetError(path, None, f"{where} needs a QuestionID and a non-empty Question")
        qid = str(qid)
        if qid in seen:
            raise DatasetError(path, None, f"{where}: duplicate QuestionID {qid!r}")
        seen.add(qid)
        if not isinstance(passages, list) or not passages:
            raise DatasetError(path, None, f"{where} ({qid}) needs a non-empty Passages list")
        evidence = []
        for j, p in enumerate(passages):
            if not isinstance(p, dict) or p.get("DocumentID") in (None, "") or p.get("PassageID") in (None, ""):
                raise DatasetError(path, None, f"{where} ({qid}) passage {j} needs DocumentID and PassageID")
            doc, pid = str(p["DocumentID"]), str(p["PassageID"])
            text = p.get("Passage")
            quote = text if isinstance(text, str) and text.strip() else None
            if corpus is not None:
                texts = corpus.get((doc, pid))
                if not texts:
                    raise DatasetError(path, None, f"{where} ({qid}): passage {doc}/{pid} is not in {documents_dir}")
                quote = _resolve_quote(texts, quote)
                if quote is None and len(texts) > 1:
                    raise DatasetError(path, None, f"{where} ({qid}): passage {doc}/{pid} matches none of the "
                                                   f"{len(texts)} records with that key by text")
            evidence.append(Evidence(document=doc, passage_id=pid, quote=quote))
        out.append(GoldQuestion(qid, question.strip(), True, None, evidence, []))
    return out


def load_dataset(path: str | Path, format: str = "auto", *,
                 documents_dir: str | Path | None = None) -> list[GoldQuestion]:
    """Load gold questions; format "jsonl", "obliqa" or "auto" (.jsonl / .json, else the first character)."""
    path = Path(path)
    if format == "auto":
        format = _sniff_format(path)
    if format == "jsonl":
        if documents_dir is not None:
            raise ValueError("documents_dir applies to ObliQA files only")
        questions = load_jsonl(path)
    elif format == "obliqa":
        questions = load_obliqa(path, documents_dir)
    else:
        raise ValueError(f"unknown dataset format {format!r} (auto, jsonl, obliqa)")
    if not questions:
        raise DatasetError(path, None, "no questions in this file")
    return questions


def _sniff_format(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        return "jsonl"
    if suffix == ".json":
        return "obliqa"
    try:
        with path.open(encoding="utf-8-sig") as f:
            head = f.read(4096).lstrip()
    except (OSError, UnicodeDecodeError) as e:
        raise DatasetError(path, None, f"cannot read: {e}") from e
    if head.startswith("["):
        return "obliqa"
    if head.startswith("{"):
        return "jsonl"
    raise DatasetError(path, None, "cannot tell the format (neither a JSON array nor JSON Lines); pass format=")


def _unit(qid: str, seed: int) -> float:
    """A uniform number in [0, 1) fixed by (seed, id) alone, the same on every machine and Python version."""
    digest = hashlib.sha256(f"{seed}\x00{qid}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def sample(questions: list[GoldQuestion], n: int, seed: int = 0) -> list[GoldQuestion]:
    """The n questions with the smallest hash of (seed, id), in input order; all of them when n >= len."""
    if n >= len(questions):
        return list(questions)
    if n <= 0:
        return []
    picked = set(sorted(range(len(questions)), key=lambda i: (_unit(questions[i].id, seed), i))[:n])
    return [q for i, q in enumerate(questions) if i in picked]


def split(questions: list[GoldQuestion], val_fraction: float = 0.2,
          seed: int = 0) -> tuple[list[GoldQuestion], list[GoldQuestion]]:
    """(train, val): a question goes to val when the hash of (seed, id) falls below val_fraction.

    A question's side depends only on its id and the seed, so adding questions never moves the others.
    Input order is kept on both sides.
    """
    if not 0.0 <= val_fraction <= 1.0:
        raise ValueError("val_fraction must be between 0 and 1")
    train: list[GoldQuestion] = []
    val: list[GoldQuestion] = []
    for q in questions:
        (val if _unit(q.id, seed) < val_fraction else train).append(q)
    return train, val


# The fixed parts of a gold set that is used to train, to tune and to report (ObliQA dev): a question's part is
# decided by the hash of (PARTS_SEED, id) alone, so every tool and machine agrees on it and no step that trains or
# tunes on one part can see another. Report numbers come from the `report` part only.
PARTS = (("train", 0.70), ("tune", 0.10), ("report", 0.20))
PARTS_SEED = 14


def part_of(qid: str, seed: int = PARTS_SEED) -> str:
    """The part ("train", "tune" or "report") a question id belongs to."""
    u, edge = _unit(qid, seed), 0.0
    for name, share in PARTS:
        edge += share
        if u < edge:
            return name
    return PARTS[-1][0]


def select_part(questions: list[GoldQuestion], part: str, seed: int = PARTS_SEED) -> list[GoldQuestion]:
    """The questions of one part, in input order."""
    names = [name for name, _ in PARTS]
    if part not in names:
        raise ValueError(f"part must be one of {', '.join(names)}, not '{part}'")
    return [q for q in questions if part_of(q.id, seed) == part]
