"""The audit trail: an append-only JSON Lines file in which every record carries the hash of the one before it, and
whose head (seq, hash) is anchored outside the file on every append, signed with a key only the trail's writer holds."""

from __future__ import annotations

import csv
import hashlib
import hmac
import json
import os
import secrets
import shutil
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path

from filelock import FileLock, Timeout

from assistant.types import Answer
from ingest.types import ComplyError

GENESIS = "0" * 64  # prev_hash of the first record
RESERVED = ("seq", "time", "user", "action", "prev_hash", "hash")
DOCUMENT_ACTIONS = ("document.upload", "document.supersede", "document.delete")
LOCK_TIMEOUT_S = 30
_CSV_ESCAPE = ("=", "+", "-", "@", "\t", "\r", "'")  # spreadsheet formula starts (and the escape itself)


class AuditError(ComplyError):
    """The audit trail cannot be written or read as asked (lock timeout, incomplete last record, bad filter)."""


class AuditUnavailable(AuditError):
    """An audited action was refused because the trail cannot record it (fail closed): what and why, in words."""

    def __init__(self, action: str, reason: str, *, done: bool = False):
        self.action, self.reason, self.done = action, reason, done
        if done:  # the record is written after the action: the rare case where only that last write failed
            text = (f"'{action}' was done, but the audit trail could not record it: {reason}. Tell an administrator; "
                    "nothing else will be done until the trail is repaired.")
        else:
            text = (f"Not done: '{action}' must be recorded in the audit trail, and the trail cannot take a record "
                    f"now ({reason}). Nothing was changed. An administrator can run `comply audit verify` "
                    "(docs/security.md says how to repair the trail).")
        super().__init__(text)


@dataclass
class AuditCheck:
    """Result of verifying the chain: records 1 .. first_bad_seq-1 are intact; `last_hash` anchors the head."""

    ok: bool
    records: int
    first_bad_seq: int | None
    reason: str | None
    last_hash: str | None = None
    anchored_seq: int | None = None  # the head comply last wrote, as its signed anchor says
    note: str | None = None  # e.g. that the anchor was created just now for an older trail


def canonical(record: dict) -> bytes:
    """The bytes that are hashed: JSON with sorted keys, no spaces, UTF-8."""
    return json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def record_hash(record: dict) -> str:
    """sha256 (hex) of the canonical JSON of `record` without its "hash" field."""
    return hashlib.sha256(canonical({k: v for k, v in record.items() if k != "hash"})).hexdigest()


class AuditLog:
    """The hash-chained trail at `settings.audit_path`. Appends are serialised across threads and processes; each one
    first checks that the file still ends where the signed anchor says comply left it, then moves the anchor."""

    def __init__(self, path: Path, key_path: Path | None = None, anchor_path: Path | None = None):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.anchor = Anchor(Path(anchor_path) if anchor_path else self.path.parent / "audit.anchor",
                             Path(key_path) if key_path else self.path.parent / "keys" / "audit.key")
        self._file_lock = FileLock(str(self.path) + ".lock", timeout=LOCK_TIMEOUT_S)
        self._thread_lock = threading.Lock()

    @classmethod
    def open(cls, settings) -> AuditLog:
        """The trail of a comply home, with its anchor and key where `settings` put them."""
        return cls(settings.audit_path, settings.audit_key_path, settings.audit_anchor_path)

    def append(self, user: str, action: str, **data) -> dict:
        """Append one record {seq, time, user, action, **data, prev_hash, hash}, fsync'd, and return it. Raises
        AuditError, and writes nothing, when the trail does not end where its anchor says (cut, added to, rewritten)."""
        clash = [k for k in data if k in RESERVED]
        if clash:
            raise ValueError(f"audit data may not use the reserved keys {clash}")
        with self._locked():
            last = self._checked_head()
            record = {"seq": (last["seq"] + 1) if last else 1, "time": _now(), "user": user, "action": action,
                      **data, "prev_hash": last["hash"] if last else GENESIS}
            record = json.loads(json.dumps(record, default=str))  # hash exactly what a reader will parse back
            record["hash"] = record_hash(record)
            head = (record["seq"], record["hash"])
            previous = (last["seq"], last["hash"]) if last else (0, GENESIS)
            # pending first: a crash after it leaves either state explainable (the record written or not), and a
            # record nobody anchored (added by hand) is told apart from one whose anchor update was cut short
            self.anchor.write(head, previous, pending=True)
            line = _line(record)
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                while line:  # a regular file takes it in one write; loop in case it does not
                    line = line[os.write(fd, line):]
                os.fsync(fd)
            finally:
                os.close(fd)
            self.anchor.write(head, previous, pending=False)
        return record

    def ready(self, action: str = "this action") -> None:
        """Raise AuditUnavailable unless a record could be appended now (the last record is complete, the file ends
        where its anchor says, the file, anchor and key are writable): call it before doing an audited action."""
        try:
            with self._locked():
                self._checked_head()
                for target in (self.path if self.path.exists() else self.path.parent, self.anchor.path.parent):
                    if not os.access(target, os.W_OK):
                        raise AuditError(f"{target} is not writable")
        except AuditError as e:
            raise AuditUnavailable(action, str(e)) from e

    @contextmanager
    def recorded(self, user: str, action: str, *, failures: bool = False, **data) -> Iterator[dict]:
        """Fail closed around one audited action: `with log.recorded(user, "user.remove", name=n) as outcome:`.
        The block runs only if the trail can take its record (else AuditUnavailable); the record (`data` plus what
        the block put into `outcome`) is appended after it. With `failures`, a block that raises is recorded too,
        with ok=False and the error, and successes with ok=True."""
        self.ready(action)
        outcome = dict(data)
        try:
            yield outcome
        except Exception as e:
            if failures:
                outcome.setdefault("ok", False)
                outcome.setdefault("error", str(e))
                self.append_after(user, action, **outcome)
            raise
        if failures:
            outcome.setdefault("ok", True)
        self.append_after(user, action, **outcome)

    def append_after(self, user: str, action: str, **data) -> dict:
        """Append the record of an action already done; an AuditError becomes AuditUnavailable(done=True), which
        says in words that the action happened but is not recorded."""
        try:
            return self.append(user, action, **data)
        except AuditError as e:
            raise AuditUnavailable(action, str(e), done=True) from e

    def record_answer(self, user: str, answer: Answer, *, index_generation: int, documents: int | None = None,
                      filters: dict | None = None, **context) -> dict:
        """Record a question and its answer: model, adapter, index version, cited chunks with hashes, verdicts, and
        for a withheld answer the reason and the gates' scores; `context` says where the request came from (the
        API's `via`, `token_id`, `request_id`)."""
        # the answer as everything else serialises it (Answer.to_record: cited chunks with their hashes, sentence
        # verdicts, and for a withheld answer the reason and the gates' scores), then where it came from
        return self.append(user, "answer", **answer.to_record(), index_generation=index_generation,
                           documents=documents, filters=filters or {}, **context)

    def record_document(self, user: str, action: str, *, document_id: str | None, version: int | None,
                        file: str | None, ok: bool, error: str | None = None, **context) -> dict:
        """Record a document upload, supersede or delete once done (also when it failed, with the error); check
        `ready()` before doing it. `context` as for `record_answer`."""
        if action not in DOCUMENT_ACTIONS:
            raise ValueError(f"unknown document action '{action}' (known: {', '.join(DOCUMENT_ACTIONS)})")
        return self.append_after(user, action, document_id=document_id, version=version, file=file, ok=ok,
                                 error=error, **context)

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
        """Check every record's hash, its link to the previous record and the seq order, then that the trail ends
        where the signed anchor says comply left it (a cut tail, added records, a rewritten chain, a deleted or
        emptied trail); report the first break. An older trail without an anchor is anchored now, and says so."""
        with self._locked():
            try:
                state = self.anchor.read()
            except AuditError as e:
                chain, _ = self._verify_chain(None)
                return AuditCheck(False, chain.records, 1, str(e), chain.last_hash)
            chain, anchored_hash = self._verify_chain(state["seq"] if state else None)
            return self._verify_anchor(chain, state, anchored_hash)

    def _verify_chain(self, anchored_seq: int | None) -> tuple[AuditCheck, str | None]:
        """The chain alone, and the hash of the intact record at `anchored_seq` (to compare with the anchor)."""
        hashes: dict[int, str] = {}
        expected_seq, prev, count = 1, GENESIS, 0
        for lineno, record, error in self._lines():
            where = f"line {lineno}"
            if record is None:
                return AuditCheck(False, count, expected_seq, f"{where}: {error}", prev), None
            if not isinstance(record, dict) or not isinstance(record.get("seq"), int) or "hash" not in record:
                return AuditCheck(False, count, expected_seq, f"{where}: not an audit record", prev), None
            seq = record["seq"]
            if seq != expected_seq:
                what = (f"record {expected_seq} is missing or moved" if seq > expected_seq
                        else "a record is repeated or out of order")
                return AuditCheck(False, count, expected_seq, f"{where}: expected seq {expected_seq}, found {seq} "
                                  f"({what})", prev), None
            if record.get("prev_hash") != prev:
                return AuditCheck(False, count, seq, f"{where}: seq {seq} does not link to the record before it "
                                  "(a record before it was changed, removed or inserted)", prev), None
            if record_hash(record) != record["hash"]:
                return AuditCheck(False, count, seq, f"{where}: seq {seq} was modified (its hash does not match)",
                                  prev), None
            expected_seq, prev, count = seq + 1, record["hash"], count + 1
            if seq == anchored_seq:
                hashes[seq] = prev
        return AuditCheck(True, count, None, None, prev if count else None), hashes.get(anchored_seq)

    def _verify_anchor(self, chain: AuditCheck, state: dict | None, anchored_hash: str | None) -> AuditCheck:
        if state is None:
            if self.anchor.key_path.exists():
                return AuditCheck(False, chain.records, 1, f"the anchor {self.anchor.path} is missing, but this trail "
                                  "was anchored before (its key exists): deleting the anchor hides a cut or "
                                  "rewritten trail", chain.last_hash)
            if not chain.ok:
                return chain
            if chain.records == 0:
                chain.note = "the trail is empty and was never written"
                return chain
            self.anchor.adopt(chain.records, chain.last_hash)
            chain.anchored_seq = chain.records
            chain.note = (f"this trail had no anchor: one was created now at record {chain.records}; changes made "
                          "to those records before now cannot be detected by it")
            return chain
        chain.anchored_seq = state["seq"]
        if state["since"]:
            chain.note = f"anchored since record {state['since']} (records before it predate the anchor)"
        if chain.records == 0 and state["seq"] > 0 and not (state["pending"] and state["prev_seq"] == 0):
            what = "missing" if not self.path.exists() else "empty"
            return AuditCheck(False, 0, 1, f"the trail is {what}, but comply wrote {state['seq']} record(s) to it "
                              "(its anchor says so)", None, state["seq"], chain.note)
        if not chain.ok:
            return chain
        heads = [(state["seq"], state["hash"])]
        if state["pending"]:  # an append was cut short: the record is either there or not
            heads.append((state["prev_seq"], state["prev_hash"]))
        if (chain.records, chain.last_hash or GENESIS) in heads:
            if state["pending"] and chain.records == state["prev_seq"]:
                chain.note = "the last append was interrupted before its record was written (nothing is lost)"
            return chain
        if chain.records < state["seq"] and not (chain.records == state["prev_seq"]
                                                 and chain.last_hash != state["prev_hash"]):
            return AuditCheck(False, chain.records, chain.records + 1, f"records {chain.records + 1} to "
                              f"{state['seq']} were removed from the end (comply wrote {state['seq']}, the file "
                              f"holds {chain.records})", chain.last_hash, state["seq"], chain.note)
        if chain.records > state["seq"] and (anchored_hash or GENESIS) == state["hash"]:
            return AuditCheck(False, state["seq"], state["seq"] + 1, f"records {state['seq'] + 1} to "
                              f"{chain.records} were added by something other than comply (its anchor ends at "
                              f"record {state['seq']})", chain.last_hash, state["seq"], chain.note)
        return AuditCheck(False, 0, 1, f"the trail was rewritten: its record {state['seq']} is not the one comply "
                          "wrote (the chain was recomputed), so any record up to it may have been changed; compare "
                          "with an archived export", chain.last_hash, state["seq"], chain.note)

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

    def _checked_head(self) -> dict | None:
        """The last record, after checking (under the lock) that the trail ends where the anchor says; an older trail
        without anchor or key is anchored at its current head."""
        last = self._last_record()
        head = (last["seq"], last["hash"]) if last else (0, GENESIS)
        state = self.anchor.read()
        if state is None:
            if self.anchor.key_path.exists():
                raise AuditError(f"the anchor {self.anchor.path} is missing although the trail was anchored before")
            self.anchor.adopt(*head)
            return last
        heads = [(state["seq"], state["hash"])]
        if state["pending"]:
            heads.append((state["prev_seq"], state["prev_hash"]))
        if head not in heads:
            raise AuditError(f"the trail ends at record {head[0]}, but its anchor says comply last wrote record "
                             f"{state['seq']}: it was cut, added to or rewritten; run `comply audit verify`")
        return last

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


class Anchor:
    """Where comply last left the trail: {seq, hash} of its last record (and while an append is in progress the
    head before it), signed with HMAC-SHA256 under a random key only the trail's writer can read (mode 0600, in its
    own 0700 folder). Someone who can change the trail but not read the key cannot move the anchor with it."""

    def __init__(self, path: Path, key_path: Path):
        self.path, self.key_path = path, key_path

    def read(self) -> dict | None:
        """The verified anchor, or None when there is none; AuditError when it is unreadable, unsigned or forged."""
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return None
        try:
            state = json.loads(raw)
            mac = state.pop("mac")
            key = self.key_path.read_bytes()
        except FileNotFoundError as e:
            raise AuditError(f"the anchor key {self.key_path} is missing, so the anchor cannot be checked") from e
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            raise AuditError(f"the anchor {self.path} is unreadable ({e})") from e
        except OSError as e:
            raise AuditError(f"the anchor key {self.key_path} cannot be read ({e})") from e
        if not isinstance(mac, str) or not hmac.compare_digest(mac, _mac(key, state)):
            raise AuditError(f"the anchor {self.path} was changed by something other than comply (its signature "
                             "does not match the key)")
        return state

    def adopt(self, seq: int, last_hash: str | None) -> None:
        """Start anchoring a trail (new, or older than anchors) at its current head: create the key, then sign."""
        self._write({"seq": seq, "hash": last_hash or GENESIS, "prev_seq": seq, "prev_hash": last_hash or GENESIS,
                     "pending": False, "since": seq}, self._key(create=True))

    def write(self, head: tuple[int, str], previous: tuple[int, str], *, pending: bool) -> None:
        """Move the anchor to `head` (pending: the record is being written after `previous`)."""
        since = self.read()["since"]
        self._write({"seq": head[0], "hash": head[1], "prev_seq": previous[0], "prev_hash": previous[1],
                     "pending": pending, "since": since}, self._key())

    def _key(self, create: bool = False) -> bytes:
        if create and not self.key_path.exists():
            self.key_path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            os.chmod(self.key_path.parent, 0o700)
            fd = os.open(self.key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                os.write(fd, secrets.token_bytes(32))
                os.fsync(fd)
            finally:
                os.close(fd)
        try:
            return self.key_path.read_bytes()
        except OSError as e:
            raise AuditError(f"the anchor key {self.key_path} cannot be read ({e})") from e

    def _write(self, state: dict, key: bytes) -> None:
        state = {**state, "time": _now()}
        data = json.dumps({**state, "mac": _mac(key, state)}, sort_keys=True).encode() + b"\n"
        tmp = self.path.with_name(self.path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, self.path)
        dir_fd = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)  # the rename itself survives a crash
        finally:
            os.close(dir_fd)


def _mac(key: bytes, state: dict) -> str:
    return hmac.new(key, canonical(state), hashlib.sha256).hexdigest()


def _line(record: dict) -> bytes:
    # Field order (seq, time, user, action, ...) for people reading the file; the hash is over the sorted form.
    return json.dumps(record, separators=(",", ":"), ensure_ascii=False).encode("utf-8") + b"\n"


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
