"""The hash-chained audit trail on real files: appends, tamper detection, concurrent writers, exports."""

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

from assistant.app.audit import GENESIS, AuditError, AuditLog, AuditUnavailable, record_hash
from assistant.types import Answer, Citation, Sentence

ROOT = Path(__file__).resolve().parents[2]


def an_answer() -> Answer:
    cite = Citation(n=1, document_id="data-retention-policy", file="retention.pdf", title="Data Retention Policy",
                    page=3, clause="4.2", quote="Customer records are kept for five years.", score=0.81,
                    chunk_id="data-retention-policy@v2#7", content_hash="ab" * 32, version=2)
    return Answer(question="How long are customer records kept?",
                  answer="Customer records are kept for five years [1]. They are then shredded.",
                  abstained=False,
                  sentences=[Sentence("Customer records are kept for five years [1].", [1], True, 0.91),
                             Sentence("They are then shredded.", [], False, 0.12)],
                  citations=[cite], model="smollm2-135m", adapter="retention-v1",
                  timings={"retrieval_ms": 12.5, "first_token_ms": 80.0, "total_ms": 950.0}, sources=[cite])


@pytest.fixture
def log(tmp_path):
    return AuditLog(tmp_path / "audit.jsonl")


def fill(log: AuditLog, n: int = 5) -> list[dict]:
    return [log.append(f"user{i}", "note", i=i, text=f"record number {i}") for i in range(1, n + 1)]


def test_append_chains_records_and_verifies(log):
    first = log.append("alice", "login")
    second = log.append("alice", "note", text="héllo", nested={"a": [1, 2]})
    assert (first["seq"], first["prev_hash"]) == (1, GENESIS)
    assert (second["seq"], second["prev_hash"]) == (2, first["hash"])
    assert second["hash"] == record_hash(second)
    assert first["time"].endswith("+00:00")
    lines = log.path.read_text(encoding="utf-8").splitlines()
    assert [json.loads(line) for line in lines] == [first, second]
    check = log.verify()
    assert (check.ok, check.records, check.first_bad_seq, check.last_hash) == (True, 2, None, second["hash"])
    with pytest.raises(ValueError):
        log.append("alice", "note", hash="forged")


def test_records_larger_than_the_tail_block(log):
    big = log.append("alice", "note", text="x" * 200_000)
    after = log.append("alice", "note")
    assert after["prev_hash"] == big["hash"] and log.verify().ok


def test_answer_and_document_records(log):
    record = log.record_answer("bob", an_answer(), index_generation=7, documents=12,
                               filters={"document_ids": ["data-retention-policy"], "as_of": None})
    assert record["action"] == "answer" and record["user"] == "bob"
    assert record["index_generation"] == 7 and record["model"] == "smollm2-135m" and record["adapter"] == "retention-v1"
    assert record["citations"] == an_answer().to_record()["citations"]  # the one serialisation of an answer
    assert {k: record["citations"][0][k] for k in ("chunk_id", "document_id", "version", "page", "clause",
                                                   "content_hash")} == \
        {"chunk_id": "data-retention-policy@v2#7", "document_id": "data-retention-policy", "version": 2, "page": 3,
         "clause": "4.2", "content_hash": "ab" * 32}
    assert Answer.from_record(record).to_record() == an_answer().to_record()  # the trail's record reads back
    assert [s["supported"] for s in record["sentences"]] == [True, False]
    assert record["timings"]["total_ms"] == 950.0
    assert (record["abstain_reason"], record["confidence"], record["citation_score"]) == (None, None, None)
    withheld = an_answer()
    withheld.abstained, withheld.abstain_reason, withheld.confidence, withheld.citation_score = (
        True, "low_citation_score", 0.61, 0.22)
    kept = log.record_answer("bob", withheld, index_generation=7)
    assert (kept["abstain_reason"], kept["confidence"], kept["citation_score"]) == ("low_citation_score", 0.61, 0.22)

    doc = log.record_document("ed", "document.upload", document_id="aml-policy", version=1, file="aml.pdf", ok=True)
    failed = log.record_document("ed", "document.delete", document_id=None, version=None, file=None, ok=False,
                                 error="no live document with id 'x'")
    assert doc["action"] == "document.upload" and failed["error"].startswith("no live")
    with pytest.raises(ValueError):
        log.record_document("ed", "document.rename", document_id="a", version=1, file=None, ok=True)
    assert [r["action"] for r in log.records(action="document")] == ["document.upload", "document.delete"]
    assert log.verify().ok


def rewrite(log: AuditLog, lines: list[bytes]) -> None:
    log.path.write_bytes(b"".join(lines))


def test_one_changed_byte_in_a_middle_record_is_found(log):
    fill(log)
    lines = log.path.read_bytes().splitlines(keepends=True)
    lines[2] = lines[2].replace(b"record number 3", b"record number 8")
    rewrite(log, lines)
    check = log.verify()
    assert (check.ok, check.first_bad_seq, check.records) == (False, 3, 2)
    assert "modified" in check.reason


def test_a_byte_that_breaks_the_json_is_found(log):
    fill(log)
    raw = bytearray(log.path.read_bytes())
    third = raw.index(b'"seq":3')
    raw[third - 1] = ord("[")  # the opening brace of record 3
    log.path.write_bytes(bytes(raw))
    check = log.verify()
    assert (check.ok, check.first_bad_seq) == (False, 3) and "JSON" in check.reason


def test_a_deleted_line_is_found(log):
    fill(log)
    lines = log.path.read_bytes().splitlines(keepends=True)
    del lines[3]
    rewrite(log, lines)
    check = log.verify()
    assert (check.ok, check.first_bad_seq) == (False, 4) and "missing" in check.reason


def test_reordered_lines_are_found(log):
    fill(log)
    lines = log.path.read_bytes().splitlines(keepends=True)
    lines[1], lines[2] = lines[2], lines[1]
    rewrite(log, lines)
    check = log.verify()
    assert (check.ok, check.first_bad_seq) == (False, 2)


def test_a_rewritten_record_with_a_fresh_hash_breaks_the_next_link(log):
    fill(log)
    lines = log.path.read_bytes().splitlines(keepends=True)
    record = json.loads(lines[1])
    record["text"] = "something else"
    record["hash"] = record_hash(record)
    lines[1] = (json.dumps(record) + "\n").encode()
    rewrite(log, lines)
    check = log.verify()
    assert (check.ok, check.first_bad_seq) == (False, 3) and "link" in check.reason


def test_an_interrupted_last_write_stops_appends(log):
    fill(log, 2)
    with open(log.path, "ab") as f:
        f.write(b'{"seq":3,"ti')
    with pytest.raises(AuditError, match="incomplete"):
        log.append("alice", "note")
    check = log.verify()
    assert (check.ok, check.first_bad_seq, check.records) == (False, 3, 2)


WRITER = """
import sys
from assistant.app.audit import AuditLog
log = AuditLog(sys.argv[1])
for i in range(int(sys.argv[3])):
    log.append(sys.argv[2], "note", i=i, text="x" * 2000)
"""


def test_two_processes_appending_at_once_keep_the_chain_valid(log):
    n = 60
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(log.path), name, str(n)], cwd=ROOT)
             for name in ("p1", "p2")]
    for p in procs:
        assert p.wait(timeout=60) == 0
    check = log.verify()
    assert check.ok, check.reason
    assert check.records == 2 * n
    users = [r["user"] for r in log.records()]
    assert users.count("p1") == n and users.count("p2") == n


def test_jsonl_export_is_a_copy_that_verifies(log, tmp_path):
    fill(log)
    log.record_answer("bob", an_answer(), index_generation=1)
    dest = log.export(tmp_path / "out" / "audit.jsonl")
    assert dest.read_bytes() == log.path.read_bytes()
    assert AuditLog(dest).verify().ok


def test_csv_export_round_trip(log, tmp_path):
    fill(log, 2)
    log.record_answer("bob", an_answer(), index_generation=1, filters={"as_of": "2025-01-01"})
    log.append("=cmd|' /C calc'!A0", "note", text="-2+3", flag=True, nothing=None)
    records = log.records()
    with open(log.export(tmp_path / "audit.csv", "csv"), newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(records)
    assert list(rows[0])[:4] == ["seq", "time", "user", "action"] and list(rows[0])[-2:] == ["prev_hash", "hash"]
    for record, row in zip(records, rows, strict=True):
        back = {k: decode(v) for k, v in row.items() if v != ""}
        assert back == {k: v for k, v in record.items() if v not in (None, "")}  # CSV: an empty cell is either
    assert rows[-1]["user"].startswith("'=")  # a spreadsheet would otherwise run it as a formula


def decode(cell: str):
    """How a reader turns a cell of the CSV export back into the value."""
    if cell.startswith("'"):
        return cell[1:]
    try:
        return json.loads(cell)
    except ValueError:
        return cell


def test_records_filter_by_time_and_action(log, tmp_path):
    lines = []
    prev = GENESIS
    for seq, (when, action) in enumerate([("2025-03-01T23:59:59+00:00", "answer"),
                                          ("2025-03-02T00:00:00+00:00", "answer"),
                                          ("2025-03-02T12:00:00+00:00", "document.upload"),
                                          ("2025-03-03T08:00:00+00:00", "answer")], start=1):
        record = {"seq": seq, "time": when, "user": "u", "action": action, "prev_hash": prev}
        record["hash"] = prev = record_hash(record)
        lines.append(json.dumps(record) + "\n")
    log.path.write_text("".join(lines))
    assert log.verify().ok
    assert [r["seq"] for r in log.records(since="2025-03-02")] == [2, 3, 4]
    assert [r["seq"] for r in log.records(until="2025-03-02")] == [1, 2, 3]
    assert [r["seq"] for r in log.records(since="2025-03-02", until="2025-03-02", action="answer")] == [2]
    assert [r["seq"] for r in log.records(until="2025-03-02T06:00:00")] == [1, 2]
    with pytest.raises(AuditError):
        log.records(since="yesterday")
    assert [r["seq"] for r in json.loads("[" + ",".join(
        log.export(tmp_path / "f.jsonl", since="2025-03-03").read_text().splitlines()) + "]")] == [4]


# -- the anchor: the head comply last wrote, signed, outside the trail file (docs/security.md, "Tamper cases")

def rechain(records: list[dict]) -> list[bytes]:
    """Recompute every prev_hash and hash, as someone rewriting the trail with this file's documented format would."""
    prev, lines = GENESIS, []
    for record in records:
        record = {**record, "prev_hash": prev}
        record["hash"] = prev = record_hash(record)
        lines.append((json.dumps(record) + "\n").encode())
    return lines


def test_the_anchor_is_signed_with_a_private_key_outside_the_trail(log):
    fill(log, 3)
    assert log.anchor.path != log.path and log.anchor.key_path.parent != log.path.parent
    assert (log.anchor.key_path.stat().st_mode & 0o777, log.anchor.key_path.parent.stat().st_mode & 0o777) == (
        0o600, 0o700)
    assert log.anchor.path.stat().st_mode & 0o777 == 0o600
    state = log.anchor.read()
    assert (state["seq"], state["hash"], state["pending"]) == (3, log.records()[-1]["hash"], False)
    check = log.verify()
    assert (check.ok, check.records, check.anchored_seq) == (True, 3, 3)


@pytest.mark.parametrize("how", ["deleted", "emptied"])
def test_a_deleted_or_emptied_trail_is_an_error(log, how):
    fill(log)
    log.path.unlink() if how == "deleted" else log.path.write_bytes(b"")
    check = log.verify()
    assert (check.ok, check.records, check.first_bad_seq) == (False, 0, 1)
    assert ("missing" if how == "deleted" else "empty") in check.reason and "5 record(s)" in check.reason
    with pytest.raises(AuditError):  # and nothing is appended on top of it, which would hide the loss
        log.append("alice", "note")


def cut_tail(log: AuditLog) -> None:
    rewrite(log, log.path.read_bytes().splitlines(keepends=True)[:3])


def append_forged_record(log: AuditLog) -> None:
    records = log.records()
    forged = {"seq": 6, "time": records[-1]["time"], "user": "mallory", "action": "note", "text": "all fine"}
    rewrite(log, [*log.path.read_bytes().splitlines(keepends=True), *rechain([*records, forged])[-1:]])


def rewrite_and_rechain(log: AuditLog) -> None:
    records = log.records()
    records[1]["text"] = "something else"
    rewrite(log, rechain(records))


@pytest.mark.parametrize("tamper, intact, first_bad, says", [
    (cut_tail, 3, 4, "removed from the end"),
    (append_forged_record, 5, 6, "added by something other than comply"),
    (rewrite_and_rechain, 0, 1, "rewritten"),
])
def test_a_chain_that_is_whole_but_not_the_one_comply_wrote_is_found(log, tamper, intact, first_bad, says):
    fill(log)
    tamper(log)
    assert log._verify_chain(None)[0].ok  # each record links to the one before: the chain alone sees nothing
    check = log.verify()
    assert (check.ok, check.records, check.first_bad_seq) == (False, intact, first_bad)
    assert says in check.reason


def test_a_deleted_or_forged_anchor_is_found(log):
    fill(log)
    lines = log.path.read_bytes().splitlines(keepends=True)
    state = json.loads(log.anchor.path.read_bytes())
    log.anchor.path.unlink()
    check = log.verify()
    assert not check.ok and "anchor" in check.reason and "missing" in check.reason
    rewrite(log, lines[:3])  # cut, and move the anchor along without the key
    state.update(seq=3, hash=json.loads(lines[2])["hash"], prev_seq=2, prev_hash=json.loads(lines[1])["hash"])
    log.anchor.path.write_text(json.dumps(state))
    check = log.verify()
    assert not check.ok and "signature" in check.reason
    log.anchor.key_path.unlink()
    assert "key" in log.verify().reason


def test_a_trail_from_before_anchors_is_anchored_on_first_verify_and_then_protected(log):
    lines = rechain([{"seq": i, "time": "2025-01-01T00:00:00+00:00", "user": "u", "action": "note"}
                     for i in (1, 2, 3)])
    rewrite(log, lines)
    assert not log.anchor.path.exists()
    check = log.verify()
    assert (check.ok, check.records, check.anchored_seq) == (True, 3, 3) and "created now" in check.note
    assert "since record 3" in log.verify().note
    log.append("alice", "note")  # appends go on
    rewrite(log, lines[:2])
    assert log.verify().first_bad_seq == 3


def test_a_trail_from_before_anchors_is_anchored_on_first_append(log):
    rewrite(log, rechain([{"seq": 1, "time": "2025-01-01T00:00:00+00:00", "user": "u", "action": "note"}]))
    assert log.append("alice", "note")["seq"] == 2
    assert log.anchor.read()["since"] == 1 and log.verify().ok


def test_an_append_cut_short_around_the_record_is_not_tampering(log):
    """The anchor is marked pending before the record is written and committed after it: a crash leaves either
    the record written or not, and both verify (a crash never looks like a forged or cut record)."""
    fill(log, 2)
    head = log.records()[-1]
    log.anchor.write((3, "f" * 64), (2, head["hash"]), pending=True)  # stopped before the record was written
    check = log.verify()
    assert check.ok and "interrupted" in check.note
    record = log.append("alice", "note")  # the next append takes seq 3 and goes on
    log.anchor.write((4, "e" * 64), (3, record["hash"]), pending=True)
    rewrite(log, [*log.path.read_bytes().splitlines(keepends=True)])
    log.anchor.write((3, record["hash"]), (2, head["hash"]), pending=True)  # stopped after writing record 3
    assert log.verify().ok
    log.anchor.write((3, "d" * 64), (2, head["hash"]), pending=False)
    assert not log.verify().ok


def test_ready_refuses_when_the_trail_cannot_take_a_record(log):
    fill(log, 2)
    log.ready("document.delete")
    with open(log.path, "ab") as f:
        f.write(b'{"seq":3,"ti')
    with pytest.raises(AuditUnavailable) as refused:
        log.ready("document.delete")
    assert "Not done" in str(refused.value) and "document.delete" in str(refused.value)
    assert "incomplete" in refused.value.reason


def test_recorded_runs_the_action_only_when_it_can_be_recorded(log):
    done: list[str] = []
    with log.recorded("admin", "user.remove", name="bob") as outcome:
        done.append("bob")
        outcome["sessions_revoked"] = True
    assert log.records()[-1].items() >= {"action": "user.remove", "name": "bob", "sessions_revoked": True}.items()
    with pytest.raises(RuntimeError), log.recorded("admin", "adapter.rollback", failures=True):
        raise RuntimeError("no previous adapter")
    assert (log.records()[-1]["ok"], log.records()[-1]["error"]) == (False, "no previous adapter")

    lines = log.path.read_bytes().splitlines(keepends=True)
    rewrite(log, lines[:1])  # cut: the trail no longer ends where comply left it
    with pytest.raises(AuditUnavailable), log.recorded("admin", "user.remove", name="carol"):
        done.append("carol")
    assert done == ["bob"]


def test_cli_verify_reports_each_tamper_case(tmp_path):
    from typer.testing import CliRunner

    from assistant.app.cli.main import app
    from ingest.settings import Settings

    log = AuditLog.open(Settings(home=tmp_path))
    fill(log, 3)

    def verify() -> tuple[int, dict]:
        result = CliRunner().invoke(app, ["--home", str(tmp_path), "audit", "verify", "--json"])
        return result.exit_code, json.loads(result.output)

    assert verify()[0] == 0
    lines = log.path.read_bytes().splitlines(keepends=True)
    rewrite(log, lines[:2])
    code, data = verify()
    assert (code, data["ok"], data["first_bad_seq"]) == (1, False, 3)
    log.path.unlink()
    code, data = verify()
    assert code == 1 and "missing" in data["reason"]
