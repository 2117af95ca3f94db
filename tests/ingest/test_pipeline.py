"""The ingestion pipeline end to end: a corpus in, consistent indexes out; re-ingest, versions, deletes, and a
batch in which bad files fail on their own."""

import json
import re
import threading
import time

import pytest
from typer.testing import CliRunner

from assistant.app.cli.main import app
from ingest.pipeline import Library, expand_paths
from ingest.settings import Settings
from tests.library import CORPUS, FIXTURES

GOOD = FIXTURES / "good"
BAD = FIXTURES / "bad"
RETENTION = "data-retention-policy"


def comply(*args: str) -> tuple[int, dict | list]:
    """Run the `comply` CLI in-process with --json after the command; returns (exit code, parsed output)."""
    result = CliRunner().invoke(app, list(args) + ["--json"])
    return result.exit_code, json.loads(result.stdout)


def chunk_ids(library: Library, key: str) -> list[str]:
    return [c.chunk_id for c in library.catalog.chunks_of(key)]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, embedder):
    """The sample corpus ingested once into a fresh home: (library, report)."""
    library = Library(Settings(home=tmp_path_factory.mktemp("corpus")), embedder=embedder)
    report = library.ingest([CORPUS])
    yield library, report
    library.close()


def test_every_corpus_file_is_ingested_and_the_indexes_agree(corpus):
    library, report = corpus
    assert report.failed == []
    assert [f.file for f in report.files] == [str(p) for p in expand_paths([CORPUS])]
    assert len(report.files) == 8
    statuses = {f.file.rsplit("/", 1)[1]: f.status for f in report.files}
    assert statuses.pop("data_retention_policy_v2.pdf") == "new_version"  # same title as v1
    assert set(statuses.values()) == {"added"}
    assert all(f.chunks > 0 and f.pages > 0 for f in report.files)

    check = library.check_consistency()
    assert check["ok"], check
    assert check["chunks"] == report.chunks_added
    assert library.vectors.count() == report.chunks_added
    aml = library.catalog.get("anti-money-laundering-and-know-your-customer-policy")
    assert (aml.status, aml.pages, aml.kind) == ("active", 7, "pdf")
    assert library.vectors.count(aml.doc_key) == aml.chunks == len(library.catalog.chunks_of(aml.doc_key))


def test_ingesting_the_same_files_again_changes_nothing(corpus):
    library, _ = corpus
    generation, total = library.catalog.generation(), library.vectors.count()
    again = library.ingest([CORPUS])
    assert {f.status for f in again.files} == {"unchanged"}
    assert again.chunks_added == 0
    assert library.catalog.generation() == generation
    assert library.vectors.count() == total
    assert library.check_consistency()["ok"]


def test_searches_find_the_ingested_chunks(corpus, embedder):
    library, _ = corpus
    question = "Within what time must a complaint be acknowledged?"
    dense = library.catalog.chunks([cid for cid, _ in library.vectors.query(embedder.encode_query(question), 3)])
    assert "complaints_handling_policy.pdf" in {c.source_file for c in dense.values()}
    keyword = library.catalog.chunks([cid for cid, _ in library.bm25.query("acknowledge complaint", 3)])
    assert "complaints_handling_policy.pdf" in {c.source_file for c in keyword.values()}


def test_a_new_version_supersedes_the_old_one(new_library):
    library = new_library()
    first = library.ingest([CORPUS / "data_retention_policy_v1.pdf"]).files[0]
    assert (first.status, first.document_id, first.version) == ("added", RETENTION, 1)
    second = library.ingest([CORPUS / "data_retention_policy_v2.pdf"]).files[0]
    assert (second.status, second.document_id, second.version) == ("new_version", RETENTION, 2)
    assert second.superseded == [f"{RETENTION}@v1"]

    v2, v1 = library.catalog.versions(RETENTION)
    assert (v1.status, v2.status) == ("superseded", "active")
    assert v2.supersedes == f"{RETENTION}@v1"
    # Effective dates come from the text of the PDFs ("Effective date 1 January 2023").
    assert (v1.effective_date, v2.effective_date) == ("2023-01-01", "2025-03-01")

    assert library.catalog.searchable_keys() == {f"{RETENTION}@v2"}
    assert library.catalog.searchable_keys(as_of="2024-06-01") == {f"{RETENTION}@v1"}
    assert library.catalog.searchable_keys(as_of="2025-06-01") == {f"{RETENTION}@v2"}
    assert library.catalog.searchable_keys(as_of="2022-06-01") == set()
    # a period: every version in force at some time in it (v2 took effect on 2025-03-01)
    assert library.catalog.searchable_keys(as_of="2025-12-31", since="2025-01-01") == {f"{RETENTION}@v1",
                                                                                       f"{RETENTION}@v2"}
    assert library.catalog.searchable_keys(as_of="2023-12-31", since="2023-01-01") == {f"{RETENTION}@v1"}
    assert library.catalog.searchable_keys(as_of="2022-12-31", since="2022-01-01") == set()
    assert library.catalog.searchable_keys(include_superseded=True) == {f"{RETENTION}@v1", f"{RETENTION}@v2"}
    # Both versions stay in the indexes, so an as-of question can still be answered from v1.
    assert library.vectors.count(v1.doc_key) == v1.chunks > 0
    assert library.check_consistency()["ok"]


def test_the_version_in_force_follows_effective_dates_not_ingestion_order(new_library):
    library = new_library()
    library.ingest([CORPUS / "data_retention_policy_v2.pdf"])  # effective 2025-03-01
    late = library.ingest([CORPUS / "data_retention_policy_v1.pdf"]).files[0]  # effective 2023-01-01
    assert (late.status, late.version, late.superseded) == ("new_version", 2, [])
    assert any("not in force" in w for w in late.warnings)
    newer, older = library.catalog.versions(RETENTION)
    assert (newer.version, newer.status, newer.effective_date) == (2, "superseded", "2023-01-01")
    assert (older.version, older.status, older.effective_date) == (1, "active", "2025-03-01")
    assert newer.supersedes is None
    assert library.catalog.searchable_keys() == {f"{RETENTION}@v1"}
    assert library.catalog.searchable_keys(as_of="2024-01-01") == {f"{RETENTION}@v2"}

    # Deleting the version in force puts the remaining one in force.
    assert library.delete(RETENTION, version=1) == [f"{RETENTION}@v1"]
    assert [(v.version, v.status) for v in library.catalog.versions(RETENTION)] == [(2, "active"), (1, "deleted")]
    assert library.check_consistency()["ok"]


def test_supersedes_names_the_document_a_file_replaces(tmp_path, embedder):
    home = str(tmp_path / "home")
    code, added = comply("--home", home, "ingest", str(GOOD / "policy.md"))
    assert code == 0 and added["files"][0]["document_id"] == "conflicts-of-interest-policy"

    # The text file has another title ("Policy"), so only --supersedes makes it the next version.
    code, report = comply("--home", home, "ingest", str(GOOD / "policy.txt"),
                          "--supersedes", "conflicts-of-interest-policy", "--effective-date", "2025-06-01")
    assert code == 0, report
    [outcome] = report["files"]
    assert (outcome["status"], outcome["document_id"], outcome["version"]) == \
        ("new_version", "conflicts-of-interest-policy", 2)
    code, versions = comply("--home", home, "docs", "show", "conflicts-of-interest-policy")
    assert [(v["version"], v["status"], v["effective_date"]) for v in versions] == \
        [(2, "active", "2025-06-01"), (1, "superseded", "2025-02-01")]  # v1 says "effective 1 February 2025"

    code, report = comply("--home", home, "ingest", str(GOOD / "policy.html"), "--supersedes", "no-such-policy")
    assert code == 1
    assert "unknown document id 'no-such-policy'" in report["files"][0]["error"]
    code, report = comply("--home", home, "ingest", str(GOOD / "policy.html"), str(GOOD / "policy.docx"),
                          "--supersedes", "conflicts-of-interest-policy")
    assert code == 1 and "exactly one file" in report["error"]
    code, check = comply("--home", home, "docs", "check")
    assert code == 0 and check["ok"]


def test_delete_removes_a_document_from_both_indexes(tmp_path, embedder):
    home = str(tmp_path / "home")
    comply("--home", home, "ingest", str(GOOD / "policy.md"), str(GOOD / "injected_policy.pdf"))
    library = Library(Settings(home=home), embedder=embedder)
    doomed = library.catalog.get("conflicts-of-interest-policy")
    kept = library.catalog.get("travel-expense-policy")
    ids = set(chunk_ids(library, doomed.doc_key))
    assert ids & {cid for cid, _ in library.bm25.query("pre-clearance personal account dealing", 5)}
    assert library.vectors.count(doomed.doc_key) == doomed.chunks
    library.close()

    code, deleted = comply("--home", home, "docs", "delete", "conflicts-of-interest-policy")
    assert code == 0 and deleted == {"deleted": [doomed.doc_key]}

    library = Library(Settings(home=home), embedder=embedder)
    assert library.catalog.get("conflicts-of-interest-policy").status == "deleted"
    assert library.vectors.count(doomed.doc_key) == 0
    assert library.catalog.chunks_of(doomed.doc_key) == []
    assert not ids & {cid for cid, _ in library.bm25.query("pre-clearance personal account dealing", 50)}
    assert library.vectors.count(kept.doc_key) == kept.chunks
    assert library.bm25.query("hotel costs reimbursed per night", 1)[0][0].startswith(kept.doc_key)
    assert library.check_consistency()["ok"]
    code, listed = comply("--home", home, "docs", "list")
    assert [d["document_id"] for d in listed] == ["travel-expense-policy"]
    library.close()
    code, _ = comply("--home", home, "docs", "delete", "conflicts-of-interest-policy")
    assert code == 1


BAD_REASONS = {
    "corrupt.pdf": "corrupt",
    "encrypted.pdf": "encrypted",
    "empty.pdf": "empty",
    "not_really.pdf": "does not match",
    "scanned.pdf": "no text layer",
    "unsupported.xyz": "unsupported",
}


def test_bad_files_fail_alone_and_harm_nothing(tmp_path, embedder):
    home = tmp_path / "home"
    library = Library(Settings(home=home), embedder=embedder)
    library.ingest([GOOD / "passages.json"])
    before = library.catalog.get("passages")
    before_ids = chunk_ids(library, before.doc_key)
    library.close()

    good = [GOOD / "policy.md", GOOD / "injected_policy.pdf", BAD / "partly_scanned.pdf"]
    bad = [BAD / name for name in BAD_REASONS]
    code, report = comply("--home", str(home), "ingest", *map(str, good[:2] + bad + good[2:]))

    assert code == 1
    assert report["ok"] is False
    assert report["counts"] == {"added": 3, "failed": len(bad)}
    outcomes = {f["file"].rsplit("/", 1)[1]: f for f in report["files"]}
    for name, word in BAD_REASONS.items():
        assert outcomes[name]["status"] == "failed"
        assert word in outcomes[name]["error"], outcomes[name]["error"]
    for path in good:
        assert outcomes[path.name]["status"] == "added" and outcomes[path.name]["chunks"] > 0
    assert "page(s) 2, 3" in outcomes["partly_scanned.pdf"]["warnings"][0]

    library = Library(Settings(home=home), embedder=embedder)
    after = library.catalog.get("passages")
    assert after == before
    assert chunk_ids(library, after.doc_key) == before_ids
    assert library.vectors.count(after.doc_key) == before.chunks
    assert library.catalog.count_chunks() == before.chunks + sum(outcomes[p.name]["chunks"] for p in good)
    assert library.check_consistency()["ok"]
    library.close()


def test_progress_follows_each_file_through_reading_and_embedding(new_library):
    """A long PDF's time is spent embedding: progress reports its pages, then its chunks batch by batch, always
    from the calling thread (the UI's progress is bound to the request's thread; embedding runs on a pool)."""
    events, threads = [], set()

    def progress(*event):
        events.append(event)
        threads.add(threading.get_ident())

    files = [CORPUS / "aml_kyc_policy.pdf", BAD / "empty.pdf", GOOD / "policy.md"]
    report = new_library().ingest(files, progress=progress)
    assert threads == {threading.get_ident()}
    aml, empty, md = report.files
    assert (aml.status, empty.status, md.status) == ("added", "failed", "added")

    starts = [i for i, e in enumerate(events) if e[0] == "file"]
    assert [events[i][1:3] for i in starts] == [(0, 3), (1, 3), (2, 3), (3, 3)]
    first, failed, last = (events[a + 1:b] for a, b in zip(starts, starts[1:], strict=False))
    assert failed == []  # the empty file is refused before anything is read
    assert first[0] == ("pages", 7, 7, f"aml_kyc_policy.pdf: 7 pages read, embedding {aml.chunks} chunks")
    embedded = [e[1] for e in first[1:]]
    assert {e[0] for e in first[1:]} == {"embed"} and {e[2] for e in first[1:]} == {aml.chunks}
    assert len(embedded) > 1 and embedded == sorted(set(embedded)) and embedded[-1] == aml.chunks
    assert first[-1][3] == f"aml_kyc_policy.pdf: embedded {aml.chunks} of {aml.chunks} chunks"
    assert last[0][3].startswith("policy.md: 1 page read") and last[-1][1:3] == (md.chunks, md.chunks)


def test_the_cli_report_lines_up_and_counts_in_words(tmp_path, embedder):
    files = [GOOD / "policy.md", BAD / "empty.pdf", GOOD / "policy.html"]
    result = CliRunner().invoke(app, ["--home", str(tmp_path), "ingest", *map(str, files)])
    assert result.exit_code == 1
    lines = result.stdout.splitlines()
    assert lines[0].startswith(f"  added       {GOOD / 'policy.md'} -> conflicts-of-interest-policy v1, 1 page, ")
    assert lines[1] == f"  FAILED      {BAD / 'empty.pdf'}: empty file (0 bytes)"
    assert lines[2].startswith(f"  new_version {GOOD / 'policy.html'} -> conflicts-of-interest-policy v2, 1 page, ")
    assert lines[3].startswith("              warning: taken as version 2")
    per_file = [int(re.search(r", (\d+) chunks\b", lines[i]).group(1)) for i in (0, 2)]
    assert lines[-1].startswith(f"3 files: 1 added, 1 failed, 1 new_version; 2 pages, {sum(per_file)} chunks added in ")
    assert "policy.html: embedded" in result.stderr  # the progress bar, on stderr


def test_a_file_over_the_size_limit_fails_with_the_limit(new_library):
    library = new_library(max_file_mb=0.0001)
    [outcome] = library.ingest([GOOD / "policy.md"]).files
    assert outcome.status == "failed" and "MB limit" in outcome.error
    assert library.catalog.documents() == []


def test_re_ingesting_an_unchanged_file_keeps_a_date_set_on_purpose(new_library):
    library = new_library()
    library.ingest([CORPUS / "data_retention_policy_v1.pdf"])  # effective 2023-01-01 by its text
    later = library.ingest([CORPUS / "data_retention_policy_v2.pdf"], effective_date="2030-01-01").files[0]
    assert later.version == 2 and any("not in force" in w for w in later.warnings)
    again = library.ingest([CORPUS / "data_retention_policy_v2.pdf"]).files[0]  # its text says 2025-03-01
    assert again.status == "unchanged"
    v2, v1 = library.catalog.versions(RETENTION)
    assert (v2.effective_date, v2.status, v1.status) == ("2030-01-01", "superseded", "active")
    # Given on purpose, a date does change an unchanged file's record.
    library.ingest([CORPUS / "data_retention_policy_v2.pdf"], effective_date="2024-01-01")
    v2, v1 = library.catalog.versions(RETENTION)
    assert (v2.effective_date, v2.status, v1.status) == ("2024-01-01", "active", "superseded")


def test_dates_and_titles_that_would_corrupt_versions_are_refused(new_library):
    library = new_library()
    with pytest.raises(ValueError, match="YYYY-MM-DD"):
        library.ingest([GOOD / "policy.md"], effective_date="01/06/2024")
    with pytest.raises(ValueError, match="--title takes exactly one file"):
        library.ingest([GOOD / "policy.md", CORPUS / "data_retention_policy_v1.pdf"], title="Group Policy")
    assert library.catalog.documents() == []


def test_a_file_name_that_is_not_utf8_is_ingested_with_the_rest_of_the_batch(new_library, tmp_path):
    import os

    folder = tmp_path / "mixed"
    folder.mkdir()
    odd = folder / os.fsdecode(b"caf\xe9_policy.md")  # a Latin-1 name from an old file share
    odd.write_text("# Cafe Expenses Policy\n\nStaff may claim coffee with clients up to EUR 10 per person.\n")
    (folder / os.fsdecode(b"r\xe8gles.txt")).write_text("Staff must report every gift above EUR 50.\n")  # title from name
    (folder / "policy.md").write_bytes((GOOD / "policy.md").read_bytes())
    report = new_library().ingest([folder])
    assert report.failed == [], report.failed
    assert sorted(f.status for f in report.files) == ["added", "added", "added"]
    assert any("caf\ufffd_policy.md" in f.file for f in report.files)  # shown, stored and printed as text


def test_document_ids_keep_the_base_letter_of_accented_titles():
    from ingest.pipeline import slugify

    assert slugify("Politique de conformité") == "politique-de-conformite"
    assert slugify("Règles générales: Übersicht") == "regles-generales-ubersicht"


def test_a_run_without_spaces_is_hard_split_and_the_report_says_so(new_library, tmp_path):
    """A 2 MB "word" (the tokenizer counts it as one token) is cut into chunks of at most max_chunk_chars, all
    embedded and indexed, and the file's report counts the hard splits."""
    path = tmp_path / "dump.txt"
    path.write_text("Export log\n1.1 Backups are tested every quarter.\n" + "QmFzZTY0" * 250_000 + "\n")
    library = new_library()
    start = time.perf_counter()
    [outcome] = library.ingest([path]).files
    assert time.perf_counter() - start < 120  # about 3 s here (20 MB: 30 s)
    assert outcome.status == "added" and outcome.chunks == 501
    assert outcome.warnings == ["499 chunks hard-split at 4000 characters (a run of text without spaces, not prose?): "
                                "search and citations there may be poor"]
    rows = library.catalog.chunks_of(f"{outcome.document_id}@v1")
    assert max(len(c.text) for c in rows) == 4000
    check = library.check_consistency()
    assert check["ok"] and check["chunks"] == 501
