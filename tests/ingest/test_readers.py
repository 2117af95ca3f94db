"""Reading files into pages: PDF page numbers and labels, other formats with their headings, passage ids, and a
specific reason for every file that cannot be read."""

import pytest

from ingest.readers import read_file
from ingest.types import IngestError
from tests.library import CORPUS, FIXTURES

GOOD = FIXTURES / "good"
BAD = FIXTURES / "bad"


def test_pdf_pages_are_one_based_and_keep_their_printed_labels():
    doc = read_file(CORPUS / "aml_kyc_policy.pdf")
    assert doc.kind == "pdf"
    assert doc.title == "Anti-Money Laundering and Know Your Customer Policy"
    assert [p.number for p in doc.pages] == [1, 2, 3, 4, 5, 6, 7]
    # The cover and contents are printed as i and ii; the body starts again at 1.
    assert [p.label for p in doc.pages] == ["i", "ii", "1", "2", "3", "4", "5"]
    assert "6.1 Any employee" in doc.pages[5].text  # physical page 6, printed page 4
    assert doc.empty_pages == []
    assert len(doc.sha256) == 64 and doc.size == (CORPUS / "aml_kyc_policy.pdf").stat().st_size


def test_pdf_without_page_labels_has_numbers_only():
    doc = read_file(CORPUS / "information_security_policy.pdf")
    assert [p.number for p in doc.pages] == [1, 2, 3]
    assert all(p.label is None for p in doc.pages)
    assert "AC-2 Account management" in doc.pages[0].text


@pytest.mark.parametrize("name, kind", [("policy.docx", "docx"), ("policy.html", "html"),
                                        ("policy.md", "markdown")])
def test_structured_formats_read_as_one_page_with_markdown_headings(name, kind):
    doc = read_file(GOOD / name)
    assert doc.kind == kind
    assert doc.title == "Conflicts of Interest Policy"
    [page] = doc.pages
    assert page.number is None and page.label is None
    lines = [line for line in page.text.splitlines() if line.strip()]
    assert lines[0] == "# Conflicts of Interest Policy"
    assert "## 2. Personal Account Dealing" in lines
    assert any(line.startswith("2.1 Employees must obtain pre-clearance from Compliance") for line in lines)


def test_plain_text_keeps_its_lines():
    doc = read_file(GOOD / "policy.txt")
    assert doc.kind == "text"
    lines = doc.pages[0].text.splitlines()
    assert lines[0] == "CONFLICTS OF INTEREST POLICY"
    assert "2. Personal Account Dealing" in lines
    assert any(line.startswith("2.1 Employees must obtain pre-clearance") for line in lines)


def test_html_script_and_style_are_not_text():
    text = read_file(GOOD / "policy.html").pages[0].text
    assert "SCRIPT TEXT MUST NOT BE INDEXED" not in text
    assert "ignore this script too" not in text
    assert "font-family" not in text
    assert "Compliance reviews the register of outside interests every 12 months." in text


def test_passage_json_keeps_document_and_passage_ids():
    doc = read_file(GOOD / "passages.json")
    assert doc.kind == "passages"
    assert doc.external_id == "901"
    assert [p.passage_id for p in doc.pages] == ["1.1.1", "1.1.2", "2.1.1", "2.1.2", "3.2.1", "3.2.1.(a)",
                                                 "3.2.1.Guidance.1", "4.3.5"]
    first = doc.pages[0]
    assert first.number is None
    assert first.text.startswith("This Rulebook applies to every Authorised Person")
    assert first.extra["DocumentID"] == 901
    assert first.extra["PassageID"] == "1.1.1"
    assert first.extra["ID"] == "ff3e127c-7562-5bc7-a788-25a1edbf5ff0"
    assert "Passage" not in first.extra  # the text is the page, not metadata


def test_passage_jsonl_reads_the_lower_case_fields():
    doc = read_file(GOOD / "passages.jsonl")
    assert doc.external_id is None
    assert doc.pages[5].passage_id == "3.2.1.(a)"
    assert doc.pages[5].text.startswith("Customer Due Diligence includes identifying the customer")
    assert doc.pages[5].extra["id"] == read_file(GOOD / "passages.json").pages[5].extra["ID"]


@pytest.mark.parametrize("name, words", [
    ("encrypted.pdf", ["encrypted", "password"]),
    ("corrupt.pdf", ["corrupt"]),
    ("empty.pdf", ["empty", "0 bytes"]),
    ("not_really.pdf", ["does not match", "'.pdf'", "text/HTML"]),
    ("scanned.pdf", ["no text layer", "pages 1-2", "OCR"]),
    ("unsupported.xyz", ["unsupported", "'.xyz'"]),
])
def test_bad_input_is_refused_with_a_specific_reason(name, words):
    with pytest.raises(IngestError) as caught:
        read_file(BAD / name)
    error = caught.value
    assert error.file.endswith(name)
    for word in words:
        assert word in error.reason, error.reason
    assert name in str(error)


def test_scanned_pdf_error_lists_the_pages_without_text():
    with pytest.raises(IngestError) as caught:
        read_file(BAD / "scanned.pdf")
    assert caught.value.pages == [1, 2]


def test_file_over_the_size_limit_is_refused():
    size_mb = (GOOD / "policy.md").stat().st_size / 1024 / 1024
    with pytest.raises(IngestError) as caught:
        read_file(GOOD / "policy.md", max_file_mb=size_mb / 2)
    assert "over the" in caught.value.reason and "MB limit" in caught.value.reason
    assert read_file(GOOD / "policy.md", max_file_mb=size_mb * 2).title == "Conflicts of Interest Policy"


def test_missing_file_is_refused(tmp_path):
    with pytest.raises(IngestError, match="file not found"):
        read_file(tmp_path / "nowhere.pdf")


def test_partly_scanned_pdf_reads_and_reports_its_empty_pages():
    doc = read_file(BAD / "partly_scanned.pdf")
    assert [p.number for p in doc.pages] == [1, 2, 3]
    assert doc.empty_pages == [2, 3]
    assert "signed Board minutes" in doc.pages[0].text


def test_a_tiny_size_limit_refuses_a_real_pdf():
    with pytest.raises(IngestError) as caught:
        read_file(CORPUS / "aml_kyc_policy.pdf", max_file_mb=0.001)
    assert "0.001 MB limit" in caught.value.reason and "COMPLY_MAX_FILE_MB" in caught.value.reason


def test_a_title_from_the_file_name_keeps_acronyms(tmp_path):
    # a text file's first line is not taken as its title, so the name is; "GDPR" must not become "Gdpr"
    path = tmp_path / "GDPR_breach-notification_notes.txt"
    path.write_text("Notes on Article 33.\nThe controller notifies the supervisory authority within 72 hours.\n")
    assert read_file(path).title == "GDPR Breach Notification Notes"
