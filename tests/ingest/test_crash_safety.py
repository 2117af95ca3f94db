"""kill -9 at any moment of an ingest, then run it again: no chunk lost, none duplicated, and the same chunk ids
as an ingest that was never interrupted."""

import json
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from filelock import FileLock
from typer.testing import CliRunner

from assistant.cli import app
from ingest.catalog import now_iso
from ingest.chunking import chunk_document
from ingest.pipeline import Library
from ingest.readers import read_file
from ingest.settings import Settings
from ingest.types import DocumentRecord, doc_key
from tests.library import CORPUS, FIXTURES

COMPLY = Path(sys.executable).parent / "comply"
FILES = [CORPUS / "complaints_handling_policy.pdf", CORPUS / "gifts_entertainment_policy.pdf",
         FIXTURES / "good" / "policy.md", FIXTURES / "good" / "passages.json"]


def statuses(home: Path) -> list[str] | None:
    """The status of every document version in the catalog, read as another process would; None before it exists."""
    path = home / "catalog.sqlite3"
    if not path.exists():
        return None
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=0.1)
        try:
            return [status for (status,) in db.execute("SELECT status FROM documents")]
        finally:
            db.close()
    except sqlite3.Error:  # the schema is not written yet, or the writer holds the lock
        return None


# When to pull the plug, judged from the catalog as it was when this run started and as it is now.
MOMENTS = [
    ("while starting up", lambda before, now: True, 0.0),
    ("as the first version is written", lambda before, now: len(now) > len(before), 0.0),
    ("while embedding the next file", lambda before, now: now.count("active") > before.count("active"), 0.5),
    ("as the last version is activated", lambda before, now: now.count("active") == len(FILES), 0.0),
]


def ingest_and_kill(home: Path, moment) -> int:
    """Start `comply ingest` on FILES, SIGKILL it at the moment given; returns its exit status."""
    _, reached, delay = moment
    before = statuses(home) or []
    proc = subprocess.Popen([str(COMPLY), "--home", str(home), "ingest", "--json", *map(str, FILES)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 240
    while proc.poll() is None and time.monotonic() < deadline:
        now = statuses(home)
        if now is not None and reached(before, now):
            time.sleep(delay)
            break
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    return proc.wait()


def bm25_contents(settings: Settings) -> tuple[list[str], list[str]]:
    """(chunk ids, doc_keys) of the published BM25 index: the folder that the CURRENT pointer names."""
    pointer = json.loads((settings.bm25_dir / "CURRENT").read_text())
    data = json.loads((settings.bm25_dir / pointer["folder"] / "ids.json").read_text())
    return data["ids"], data["keys"]


def assert_indexes_agree(library: Library) -> set[str]:
    """Per live version: chunks in the catalog == in Chroma == in BM25, with no duplicates; returns the ids."""
    catalog_ids, chroma_ids = set(), set(library.vectors.collection.get(include=[])["ids"])
    bm25_ids, bm25_keys = bm25_contents(library.settings)
    assert len(bm25_ids) == len(set(bm25_ids)), "duplicated chunks in BM25"
    per_key = Counter(bm25_keys)
    for record in library.catalog.documents():
        ids = [c.chunk_id for c in library.catalog.chunks_of(record.doc_key)]
        assert record.chunks == len(ids) == library.vectors.count(record.doc_key) == per_key[record.doc_key], record
        catalog_ids.update(ids)
    assert catalog_ids == chroma_ids == set(bm25_ids)
    return catalog_ids


def test_kill_9_at_several_moments_then_rerun(tmp_path, embedder):
    home = tmp_path / "killed"
    exits = [ingest_and_kill(home, moment) for moment in MOMENTS]
    # The first three moments come before the batch ends, so those runs really died mid-ingest.
    assert exits[:3] == [-signal.SIGKILL] * 3, exits
    assert exits[3] in (-signal.SIGKILL, 0)

    result = CliRunner().invoke(app, ["--home", str(home), "ingest", "--json", *map(str, FILES)])
    assert result.exit_code == 0, result.output
    assert {f["status"] for f in json.loads(result.stdout)["files"]} <= {"added", "new_version", "unchanged"}
    check = CliRunner().invoke(app, ["--home", str(home), "docs", "check", "--json"])
    assert check.exit_code == 0 and json.loads(check.stdout)["ok"], check.output

    killed = Library(Settings(home=home), embedder=embedder)
    clean = Library(Settings(home=tmp_path / "clean"), embedder=embedder)
    clean.ingest(FILES)
    assert {r.doc_key for r in killed.catalog.documents()} == {r.doc_key for r in clean.catalog.documents()}
    assert assert_indexes_agree(killed) == assert_indexes_agree(clean)
    assert killed.catalog.documents(status="pending") == []
    killed.close()
    clean.close()


def write_pending(library: Library, path: Path) -> tuple[DocumentRecord, list]:
    """Do what an ingest does up to the Chroma upsert, and stop there: the version stays pending."""
    doc = read_file(path)
    embedder = library.embedder
    chunks = chunk_document(doc, "passages", 1, embedder.count_tokens, budget=library.settings.chunk_tokens)
    record = DocumentRecord(document_id="passages", version=1, title=doc.title, file_name=path.name,
                            sha256=doc.sha256, status="pending", effective_date=None, pages=len(doc.pages),
                            chunks=len(chunks), ingested_at=now_iso(), kind=doc.kind)
    library.catalog.add_pending(record, chunks)
    library.vectors.upsert(chunks, embedder.encode([c.text for c in chunks]))
    return record, chunks


def test_a_version_written_to_chroma_but_never_activated_is_rolled_back(new_library):
    library = new_library()
    library.ingest([FIXTURES / "good" / "policy.md"])
    record, chunks = write_pending(library, FIXTURES / "good" / "passages.json")
    assert library.vectors.count(record.doc_key) == len(chunks)
    library.close()  # the process dies here

    library = new_library()  # opening the library recovers
    assert library.catalog.get("passages") is None
    assert library.vectors.count(record.doc_key) == 0
    assert library.check_consistency()["ok"]
    [outcome] = library.ingest([FIXTURES / "good" / "passages.json"]).files
    assert (outcome.status, outcome.document_id, outcome.version) == ("added", "passages", 1)
    assert [c.chunk_id for c in library.catalog.chunks_of(record.doc_key)] == [c.chunk_id for c in chunks]
    assert_indexes_agree(library)


def test_an_activation_not_yet_in_bm25_is_caught_up_on_open(new_library):
    library = new_library()
    record, chunks = write_pending(library, FIXTURES / "good" / "passages.json")
    library.catalog.activate(record)  # the process dies before BM25 is rebuilt
    assert library.check_consistency()["bm25_current"] is False
    library.close()

    library = new_library()
    assert library.check_consistency()["ok"]
    assert library.catalog.get("passages").status == "active"
    assert set(assert_indexes_agree(library)) == {c.chunk_id for c in chunks}


def test_a_delete_interrupted_before_chroma_is_finished_on_open(new_library):
    library = new_library()
    library.ingest([FIXTURES / "good" / "policy.md"])
    key = doc_key("conflicts-of-interest-policy", 1)
    library.catalog.set_status("conflicts-of-interest-policy", 1, "deleted")  # the process dies here
    library.close()

    library = new_library()
    assert library.vectors.count(key) == 0
    assert library.catalog.chunks_of(key) == []
    assert library.check_consistency()["ok"]
    assert_indexes_agree(library)


def test_opening_the_library_while_another_process_ingests_leaves_its_work_alone(new_library):
    library = new_library()
    writer = FileLock(str(library.settings.home / "library.lock"))  # stands for another process mid-ingest
    with writer:
        record, chunks = write_pending(library, FIXTURES / "good" / "passages.json")
        reader = new_library()  # must not roll back the other writer's pending version
        assert reader.catalog.get("passages").status == "pending"
        assert reader.vectors.count(record.doc_key) == len(chunks)
    library.close()
    assert new_library().catalog.get("passages") is None  # the writer is gone: now it is an interrupted ingest


def test_two_processes_ingesting_one_home_at_once_both_finish(tmp_path):
    home = tmp_path / "home"
    procs = [subprocess.Popen([str(COMPLY), "--home", str(home), "ingest", str(path), "--json"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for path in (CORPUS / "complaints_handling_policy.pdf", FIXTURES / "good" / "policy.md")]
    finished = [p.communicate(timeout=600) for p in procs]  # both open a fresh home (Chroma schema) at once
    assert [p.returncode for p in procs] == [0, 0], [err[-2000:] for _, err in finished]
    outputs = [json.loads(out) for out, _ in finished]
    assert sorted(f["status"] for out in outputs for f in out["files"]) == ["added", "added"]
    library = Library(Settings(home=home))
    assert len(library.catalog.documents(status="active")) == 2
    assert library.check_consistency()["ok"]
