"""kill -9 at any moment of an ingest, then run it again: no chunk lost, none duplicated, and the same chunk ids
as an ingest that was never interrupted."""

import json
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from filelock import FileLock
from typer.testing import CliRunner

from assistant.app.cli.main import app
from ingest.catalog import now_iso
from ingest.chunking import chunk_document
from ingest.pipeline import Library
from ingest.readers import read_file
from ingest.settings import Settings
from ingest.types import DocumentRecord, doc_key
from tests.ingest.crash_batch import write_batch
from tests.library import CORPUS, FIXTURES

COMPLY = Path(sys.executable).parent / "comply"
LIVE = ("active", "superseded")


def versions(home: Path) -> list[tuple] | None:
    """(document_id, version, status, ingested_at) of every document version in the catalog, read as another
    process would; None before it exists."""
    path = home / "catalog.sqlite3"
    if not path.exists():
        return None
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=0.1)
        try:
            return db.execute("SELECT document_id, version, status, ingested_at FROM documents").fetchall()
        finally:
            db.close()
    except sqlite3.Error:  # the schema is not written yet, or the writer holds the lock
        return None


def live(rows: list[tuple]) -> list[tuple]:
    return sorted(r for r in rows if r[2] in LIVE)


def new_pending(before: list[tuple], now: list[tuple]) -> bool:
    """A version this run wrote to the catalog as pending: its chunks are being upserted into Chroma."""
    return any(r[2] == "pending" and r not in before for r in now)


# The batch (tests/ingest/crash_batch.py): 10 PDFs; the 3rd and the 7th are versions 1 and 2 of the retention
# policy, the 10th is the largest (AML, 7 pages). When to pull the plug, judged from the catalog as it was when the
# run started (`before`) and as it is now; then wait `delay` seconds. Each run resumes where the one before died, so
# the moments come in the order of the batch, and each must be reached by the run itself (not true at its start).
MOMENTS = [
    ("while starting up, before the catalog exists", lambda before, now: True, 0.3),
    ("as the 1st version is written (pending, its chunks going into Chroma)", new_pending, 0.0),
    ("just after the 1st document is activated", lambda before, now: len(live(now)) >= 1, 0.0),
    ("after the 3rd document, while the 4th is read and embedded", lambda before, now: len(live(now)) >= 3, 0.3),
    ("in the middle of a document's Chroma upsert (pending, after the 3rd)", new_pending, 0.0),
    ("just after the 5th document is activated", lambda before, now: len(live(now)) >= 5, 0.0),
    ("as a new version is activated (retention v2 supersedes v1)",
     lambda before, now: any(r[2] == "superseded" for r in now), 0.0),
    ("just after the 8th document is activated", lambda before, now: len(live(now)) >= 8, 0.0),
    ("after the 9th document, while the last (56 chunks) is embedded", lambda before, now: len(live(now)) >= 9, 0.5),
    ("as the last version is activated, just before the run ends (BM25 rebuild, report)",
     lambda before, now: len(live(now)) >= 10, 0.0),
]


def ingest_and_kill(home: Path, files: list[Path], moment) -> tuple[int, list[tuple], list[tuple] | None]:
    """Start `comply ingest` on files, SIGKILL it at the moment given; returns (its exit status, the catalog when
    it started, the catalog when the moment was seen; None if it never was)."""
    _, reached, delay = moment
    before = versions(home) or []
    seen = None
    proc = subprocess.Popen([str(COMPLY), "--home", str(home), "ingest", "--json", *map(str, files)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 240
    while proc.poll() is None and time.monotonic() < deadline:
        now = versions(home) or []  # [] also while the writer holds the lock: no moment is seen then
        if reached(before, now):
            seen = now
            time.sleep(delay)
            break
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    return proc.wait(), before, seen


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


def contents(library: Library) -> dict:
    """Per version: (status, sha256, chunk count, {chunk id: text}), as a clean and a killed home must share."""
    return {r.doc_key: (r.status, r.sha256, r.chunks, {c.chunk_id: c.text for c in library.catalog.chunks_of(r.doc_key)})
            for r in library.catalog.documents()}


def test_kill_9_at_several_moments_then_rerun(tmp_path, embedder):
    files = write_batch(tmp_path / "pdfs")
    assert len(files) == len(set(files)) == 10 and all(f.suffix == ".pdf" for f in files)
    home = tmp_path / "killed"
    for i, moment in enumerate(MOMENTS):
        start = versions(home) or []
        if i and moment[1](start, start):
            # The kill before came after this moment: on a fast CPU several small PDFs are ingested while the
            # writer holds the catalog and this test cannot look. This moment starts again from an empty home, so
            # that the run reaches it itself.
            shutil.rmtree(home)
        status, before, seen = ingest_and_kill(home, files, moment)
        # It died of the kill, mid-ingest, at a moment this run reached itself.
        assert seen is not None, f"{moment[0]}: never reached"
        assert status == -signal.SIGKILL, (moment[0], status)
        assert i == 0 or not moment[1](before, before), f"{moment[0]}: already true when the run started"
        at_death = versions(home) or []
        # Opening the home (here `comply docs check`) recovers: the pending version is rolled back, every version
        # live at the kill is still live (nothing lost) and the catalog, Chroma and BM25 agree.
        check = subprocess.run([str(COMPLY), "--home", str(home), "docs", "check", "--json"],
                               capture_output=True, text=True, timeout=240)
        assert check.returncode == 0 and json.loads(check.stdout)["ok"], (moment[0], check.stdout, check.stderr[-2000:])
        recovered = versions(home)
        assert live(recovered) == live(at_death), (moment[0], at_death, recovered)
        # (a version live before may have become superseded since, when a newer version was activated)
        assert {(r[0], r[1], r[3]) for r in live(before)} <= {(r[0], r[1], r[3]) for r in live(recovered)}, (
            moment[0], before, recovered)
        assert all(r[2] in LIVE for r in recovered), (moment[0], recovered)
    assert len(live(at_death)) == 10  # the last kill came after the last activation

    result = CliRunner().invoke(app, ["--home", str(home), "ingest", "--json", *map(str, files)])
    assert result.exit_code == 0, result.output
    assert [f["status"] for f in json.loads(result.stdout)["files"]] == ["unchanged"] * 10
    check = CliRunner().invoke(app, ["--home", str(home), "docs", "check", "--json"])
    assert check.exit_code == 0 and json.loads(check.stdout)["ok"], check.output

    killed = Library(Settings(home=home), embedder=embedder)
    clean = Library(Settings(home=tmp_path / "clean"), embedder=embedder)
    assert not clean.ingest(files).failed
    assert contents(killed) == contents(clean)  # same versions, same chunk ids, texts and counts per document
    assert len(contents(clean)) == 10 and sum(r.status == "superseded" for r in clean.catalog.documents()) == 1
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
