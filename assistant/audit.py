"""The audit trail: an append-only JSON Lines file in which every record carries the hash of the one before it."""

from __future__ import annotations

import csv
import hashlib
import json
import os
import shutil
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path

from filelock import FileLock, Timeout

from assistant.types import Answer, Citation

GENESIS = "0" * 64  # prev_hash of the first record
RESERVED = ("seq", "time", "user", "action", "prev_hash", "hash")
DOCUMENT_ACTIONS = ("document.upload", "document.supersede", "document.delete")
LOCK_TIMEOUT_S = 30
_CSV_ESCAPE = ("=", "+", "-", "@", "\t", "\r", "'")  # spreadsheet formula starts (and the escape itself)


class AuditError(Exception):
    """The audit trail cannot be written or read as asked (lock timeout, incomplete last record, bad filter)."""


@dataclass
class AuditCheck:
    """Result of verifying the chain: records 1 .. first_bad_seq-1 are intact; `last_hash` anchors the head."""

    ok: bool
    records: int
    first_bad_seq: int | None
    reason: str | None
    last_hash: str | None = None


def canonical(record: dict) -> bytes:
    """The bytes that are hashed: JSON with sorted keys, no spaces, UTF-8."""
    return json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def record_hash(record: dict) -> str:
    """sha256 (hex) of the canonical JSON of `record` without its "hash" field."""
    return hashlib.sha256(canonical({k: v for k, v in record.items() if k != "hash"})).hexdigest()


class AuditLog:
    """The hash-chained trail at `settings.audit_path`. Appends are serialised across threads and processes."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file_lock = FileLock(str(self.path) + ".lock", timeout=LOCK_TIMEOUT_S)
        self._thread_lock = threading.Lock()

    def append(self, user: str, action: str, **data) -> dict:
        """Append one record {seq, time, user, action, **data, prev_hash, hash}, fsync'd, and return it."""
        clash = [k for k in data if k in RESERVED]
        if clash:
            raise ValueError(f"audit data may not use the reserved keys {clash}")
        with self._locked():
            last = self._last_record()
            record = {"seq": (last["seq"] + 1) if last else 1, "time": _now(), "user": user, "action": action,
                      **data, "prev_hash": last["hash"] if last else GENESIS}
            record = json.loads(json.dumps(record, default=str))  # hash exactly what a reader will parse back
            record["hash"] = record_hash(record)
            line = _line(record)
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                while line:  # a regular file takes it in one write; loop in case it does not
                    line = line[os.write(fd, line):]
                os.fsync(fd)
            finally:
                os.close(fd)
        return record

    def record_answer(self, user: str, answer: Answer, *, index_generation: int, documents: int | None = None,
                      filters: dict | None = None) -> dict:
        """Record a question and its answer: model, adapter, index version, cited chunks with hashes, verdicts, and
        for a withheld answer the reason and the gates' scores."""
        return self.append(
            user, "answer",
            question=answer.question,
            answer=answer.answer,
            abstained=answer.abstained,
            model=answer.model,
            adapter=answer.adapter,
            index_generation=index_generation,
            documents=documents,
            filters=filters or {},
            citations=[_citation(c) for c in answer.citations],
            sources=[{**_citation(c), "score": c.score} for c in answer.sources],
            sentences=[{"text": s.text, "supported": s.supported, "support_score": s.support_score,
                        "citations": list(s.citations), "issue": s.issue} for s in answer.sentences],
            timings=dict(answer.timings),
            # why an answer was withheld, and the scores the gates compared (None where a gate did not apply)
            abstain_reason=answer.abstain_reason,
            confidence=answer.confidence,
            citation_score=answer.citation_score,
        )

    def record_document(self, user: str, action: str, *, document_id: str | None, version: int | None,
                        file: str | None, ok: bool, error: str | None = None) -> dict:
        """Record a document upload, supersede or delete (also when it failed, with the error)."""
        if action not in DOCUMENT_ACTIONS:
            raise ValueError(f"unknown document action '{action}' (known: {', '.join(DOCUMENT_ACTIONS)})")
        return self.append(user, action, document_id=document_id, version=version, file=file, ok=ok, error=error)

    def records(self, since: str | None = None, until: str | None = None, action: str | None = None) -> list[dict]:
        """The records in order, optionally from `since` to `until` (ISO dates or times, UTC, inclusive) and of
        one action (`document` matches every document.* action). Unreadable lines are skipped: see verify()."""
        start = _bound(since, upper=False)
        end = _bound(until, upper=True)
        out = []
        for _, record, _ in self._lines():
            if record is None:
                continue
            if action and record.get("action") != action and not str(record.get("action", "")).startswith(
                    action + "."):
                continue
            if start or end:
                when = _parse_time(record.get("time"))
                if when is None or (start and when < start) or (end and when > end):
                    continue
            out.append(record)
        return out

    def verify(self) -> AuditCheck:
        """Check every record's hash, its link to the previous record and the seq order; report the first break."""
        expected_seq, prev, count = 1, GENESIS, 0
        for lineno, record, error in self._lines():
            where = f"line {lineno}"
            if record is None:
                return AuditCheck(False, count, expected_seq, f"{where}: {error}", prev)
            if not isinstance(record, dict) or not isinstance(record.get("seq"), int) or "hash" not in record:
                return AuditCheck(False, count, expected_seq, f"{where}: not an audit record", prev)
            seq = record["seq"]
            if seq != expected_seq:
                what = (f"record {expected_seq} is missing or moved" if seq > expected_seq
                        else "a record is repeated or out of order")
                return AuditCheck(False, count, expected_seq, f"{where}: expected seq {expected_seq}, found {seq} "
                                  f"({what})", prev)
            if record.get("prev_hash") != prev:
                return AuditCheck(False, count, seq, f"{where}: seq {seq} does not link to the record before it "
                                  "(a record before it was changed, removed or inserted)", prev)
            if record_hash(record) != record["hash"]:
                return AuditCheck(False, count, seq, f"{where}: seq {seq} was modified (its hash does not match)",
                                  prev)
            expected_seq, prev, count = seq + 1, record["hash"], count + 1
        return AuditCheck(True, count, None, None, prev if count else None)

    def export(self, dest: Path, fmt: str = "jsonl", *, since: str | None = None, until: str | None = None,
               action: str | None = None) -> Path:
        """Write the trail (or the filtered records) to `dest` as jsonl or csv (one column per field, nested values
        as JSON text) and return `dest`. An unfiltered jsonl export is a byte-for-byte copy that verifies as is."""
        if fmt not in ("jsonl", "csv"):
            raise ValueError(f"unknown export format '{fmt}': use jsonl or csv")
        dest = Path(dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(dest.name + ".part")
        if fmt == "jsonl" and not (since or until or action):
            with self._locked():  # a consistent snapshot: no half-written record at the end
                if self.path.exists():
                    shutil.copyfile(self.path, tmp)
                else:
                    tmp.write_bytes(b"")
        else:
            rows = self.records(since, until, action)
            if fmt == "jsonl":
                tmp.write_bytes(b"".join(_line(r) for r in rows))
            else:
                _write_csv(tmp, rows)
        os.replace(tmp, dest)
        return dest

    # -- internals

    @contextmanager
    def _locked(self) -> Iterator[None]:
        with self._thread_lock:
            try:
                self._file_lock.acquire()
            except Timeout as e:
                raise AuditError(f"the audit trail {self.path} is locked by another process") from e
            try:
                yield
            finally:
                self._file_lock.release()

    def _last_record(self) -> dict | None:
        """The last record, read backwards from the end of the file (the trail can be large)."""
        if not self.path.exists():
            return None
        with open(self.path, "rb") as f:
            size = f.seek(0, os.SEEK_END)
            if size == 0:
                return None
            f.seek(size - 1)
            if f.read(1) != b"\n":
                raise AuditError(f"the audit trail {self.path} ends with an incomplete record (an interrupted "
                                 "write); run `comply audit verify` and see docs/security.md")
            pos, tail = size - 1, b""  # tail: the bytes before the final newline, read in blocks from the end
            while b"\n" not in tail and pos > 0:
                step = min(65536, pos)
                pos -= step
                f.seek(pos)
                tail = f.read(step) + tail
            line = tail.rsplit(b"\n", 1)[-1]
        try:
            record = json.loads(line)
        except ValueError as e:
            raise AuditError(f"the last record of {self.path} is unreadable ({e}); run `comply audit verify`") from e
        if not isinstance(record, dict) or "seq" not in record or "hash" not in record:
            raise AuditError(f"the last line of {self.path} is not an audit record; run `comply audit verify`")
        return record

    def _lines(self):
        """(line number, parsed record or None, error) for every line of the trail."""
        if not self.path.exists():
            return
        with open(self.path, "rb") as f:
            for lineno, raw in enumerate(f, start=1):
                if not raw.endswith(b"\n"):
                    yield lineno, None, "incomplete last record (no newline)"
                    continue
                try:
                    yield lineno, json.loads(raw), None
                except ValueError as e:
                    yield lineno, None, f"not valid JSON ({e})"


def _line(record: dict) -> bytes:
    # Field order (seq, time, user, action, ...) for people reading the file; the hash is over the sorted form.
    return json.dumps(record, separators=(",", ":"), ensure_ascii=False).encode("utf-8") + b"\n"


def _citation(c: Citation) -> dict:
    return {"n": c.n, "chunk_id": c.chunk_id, "document_id": c.document_id, "version": c.version, "page": c.page,
            "clause": c.clause, "content_hash": c.content_hash}


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def _parse_time(value) -> datetime | None:
    try:
        when = datetime.fromisoformat(value)
    except (TypeError, ValueError):
        return None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def _bound(value: str | None, upper: bool) -> datetime | None:
    """A filter bound: a date covers its whole (UTC) day; a time without a zone is UTC."""
    if not value:
        return None
    try:
        if len(value) == 10:
            day = date.fromisoformat(value)
            start = datetime.combine(day, time(0), tzinfo=UTC)
            return start + timedelta(days=1, microseconds=-1) if upper else start
        when = datetime.fromisoformat(value)
    except ValueError as e:
        raise AuditError(f"bad date or time '{value}': use YYYY-MM-DD or an ISO time") from e
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def _write_csv(dest: Path, rows: list[dict]) -> None:
    first = [k for k in ("seq", "time", "user", "action") if any(k in r for r in rows)] or list(RESERVED[:4])
    last = ["prev_hash", "hash"]
    middle = sorted({k for r in rows for k in r} - set(first) - set(last))
    columns = first + middle + last
    with open(dest, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(columns)
        for r in rows:
            writer.writerow([csv_cell(r.get(k)) for k in columns])


def csv_cell(value) -> str:
    """One CSV cell: strings as they are (with a leading ' when they could start a spreadsheet formula), None
    empty, everything else as JSON text."""
    if value is None:
        return ""
    if isinstance(value, str):
        return "'" + value if value.startswith(_CSV_ESCAPE) else value
    return json.dumps(value, ensure_ascii=False, sort_keys=True)
