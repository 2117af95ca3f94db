"""Files that are text in another encoding read with their accents intact; damaged JSON and DOCX files, and files that
are not what their extension says, fail with an IngestError naming the problem instead of a parser's traceback."""

import json
import zipfile

import docx
import pytest

from ingest.chunking import chunk_document
from ingest.readers import read_file
from ingest.types import IngestError

POLICY_FR = ("Politique de conformité\n\n"
             "1.1 Les employés déclarent à la conformité tout conflit d'intérêts.\n"
             "1.2 La façade reçoit les déclarations écrites.\n")


def test_latin1_text_reads_with_its_accents(tmp_path):
    path = tmp_path / "politique.txt"
    path.write_bytes(POLICY_FR.encode("latin-1"))
    doc = read_file(path)
    assert doc.kind == "text"
    assert doc.pages[0].text == POLICY_FR


def test_cp1252_punctuation_is_not_read_as_control_characters(tmp_path):
    path = tmp_path / "notice.txt"
    path.write_bytes("Le «\u00a0délai\u00a0» est de 30 jours – voir l’article 2.\n".encode("cp1252"))
    assert read_file(path).pages[0].text == "Le «\u00a0délai\u00a0» est de 30 jours – voir l’article 2.\n"


def test_utf16_text_with_a_byte_order_mark_reads(tmp_path):
    path = tmp_path / "politique.txt"
    path.write_bytes(POLICY_FR.replace("\n", "\r\n").encode("utf-16"))  # BOM + little-endian, as Notepad writes it
    assert read_file(path).pages[0].text == POLICY_FR


def test_utf8_with_a_byte_order_mark_loses_the_mark(tmp_path):
    path = tmp_path / "politique.md"
    path.write_bytes(("# " + POLICY_FR).encode("utf-8-sig"))
    assert read_file(path).pages[0].text == "# " + POLICY_FR


def test_html_is_decoded_with_its_declared_charset(tmp_path):
    path = tmp_path / "politique.html"
    path.write_bytes(('<html><head><meta charset="iso-8859-1"><title>Politique de conformité</title></head><body>'
                      "<h1>Politique de conformité</h1><p>Les employés déclarent à la conformité tout conflit.</p>"
                      "<p>La façade reçoit les déclarations.</p></body></html>").encode("latin-1"))
    doc = read_file(path)
    assert doc.title == "Politique de conformité"
    assert doc.pages[0].text.splitlines() == ["# Politique de conformité",
                                              "Les employés déclarent à la conformité tout conflit.",
                                              "La façade reçoit les déclarations."]


def test_html_declaring_a_multibyte_charset_uses_it(tmp_path):
    path = tmp_path / "kisoku.html"
    path.write_bytes('<meta http-equiv="Content-Type" content="text/html; charset=Shift_JIS">'
                     "<p>コンプライアンス規程: 利益相反を申告すること。</p>".encode("shift_jis"))
    assert read_file(path).pages[0].text == "コンプライアンス規程: 利益相反を申告すること。"


def test_chunk_spans_point_into_the_decoded_latin1_text(tmp_path, embedder):
    path = tmp_path / "politique.txt"
    path.write_bytes((POLICY_FR * 20).encode("latin-1"))
    doc = read_file(path)
    chunks = chunk_document(doc, "politique", 1, embedder.count_tokens, budget=64)
    assert len(chunks) > 1
    for chunk in chunks:
        assert doc.pages[0].text[chunk.char_start:chunk.char_end] == chunk.text
    assert any("déclarent à la conformité" in chunk.text for chunk in chunks)


@pytest.mark.parametrize("name, content, looks_like", [
    ("image.txt", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)), "a PNG image"),
    ("photo.md", b"\xff\xd8\xff\xe0\x00\x10JFIF" + bytes(64), "a JPEG image"),
    ("legacy.html", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(512), "an OLE compound file"),
    ("nul.txt", b"text with a NUL\x00 byte in it", "binary data"),
    ("controls.txt", bytes(range(1, 32)) * 8 + b"a few letters", "binary data"),
])
def test_real_binary_content_is_still_refused_as_text(tmp_path, name, content, looks_like):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(IngestError) as caught:
        read_file(path)
    assert "does not match" in caught.value.reason and looks_like in caught.value.reason, caught.value.reason
    assert caught.value.file.endswith(name)


def test_json_with_a_bad_byte_after_the_first_4_kb_names_the_byte(tmp_path):
    records = [{"PassageID": f"1.{i}", "Passage": f"Passage {i} of the rulebook, quoted verbatim."} for i in range(200)]
    raw = bytearray(json.dumps(records).encode("utf-8"))
    raw[5020] = 0xE9  # a latin-1 "é" well past the sniffed head
    path = tmp_path / "rulebook.json"
    path.write_bytes(bytes(raw))
    with pytest.raises(IngestError) as caught:
        read_file(path)
    assert caught.value.file.endswith("rulebook.json")
    assert "not valid UTF-8 JSON at byte 5020" in caught.value.reason, caught.value.reason
    assert "0xe9" in caught.value.reason


def test_jsonl_errors_name_the_line_of_the_file(tmp_path):
    path = tmp_path / "rulebook.jsonl"
    path.write_bytes(b'{"passage_id": "1", "text": "First."}\n{"passage_id": "2", "text": "Second."}\n'
                     b'{"passage_id": "3", "text": "Caf\xe9"}\n')
    with pytest.raises(IngestError, match=r"not valid UTF-8 JSON at byte \d+, line 3"):
        read_file(path)
    path.write_text('{"passage_id": "1", "text": "First."}\n{"passage_id": "2", "text": }\n')
    with pytest.raises(IngestError, match="invalid JSON at line 2"):
        read_file(path)


def test_jsonl_text_may_hold_a_unicode_line_separator(tmp_path):
    path = tmp_path / "rulebook.jsonl"
    records = [{"passage_id": "1", "text": "Clause one\u2028continues here."}, {"passage_id": "2", "text": "Two."}]
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in records) + "\n", encoding="utf-8")
    assert [p.text for p in read_file(path).pages] == ["Clause one\u2028continues here.", "Two."]


def test_json_with_a_utf16_byte_order_mark_reads(tmp_path):
    path = tmp_path / "rulebook.json"  # what Windows PowerShell's Out-File writes by default
    path.write_bytes(json.dumps([{"PassageID": "1", "Passage": "Conformité générale."}]).encode("utf-16"))
    assert read_file(path).pages[0].text == "Conformité générale."


@pytest.fixture
def good_docx(tmp_path):
    path = tmp_path / "good.docx"
    document = docx.Document()
    document.add_heading("Conflicts of Interest Policy", 0)
    document.add_paragraph("1.1 Employees declare every outside interest to Compliance within 10 days.")
    document.save(str(path))
    return path


def rewrite_member(source, target, member, data):
    """Copy a DOCX (a ZIP) replacing one member's bytes."""
    with zipfile.ZipFile(source) as old, zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as new:
        for info in old.infolist():
            new.writestr(info, data if info.filename == member else old.read(info))
    return target


def test_the_good_docx_reads(good_docx):
    doc = read_file(good_docx)
    assert doc.title == "Conflicts of Interest Policy"
    assert "1.1 Employees declare every outside interest" in doc.pages[0].text


def test_truncated_document_xml_is_a_corrupt_docx(good_docx, tmp_path):
    with zipfile.ZipFile(good_docx) as archive:
        xml = archive.read("word/document.xml")
    path = rewrite_member(good_docx, tmp_path / "truncated.docx", "word/document.xml", xml[: len(xml) // 2])
    with pytest.raises(IngestError) as caught:
        read_file(path)
    assert caught.value.reason.startswith("corrupt DOCX: word/document.xml is not well-formed XML"), caught.value
    assert caught.value.file.endswith("truncated.docx")


def test_content_types_that_are_not_xml_are_a_corrupt_docx(good_docx, tmp_path):
    path = rewrite_member(good_docx, tmp_path / "types.docx", "[Content_Types].xml", b"<not xml")
    with pytest.raises(IngestError) as caught:
        read_file(path)
    assert caught.value.reason.startswith("corrupt DOCX: [Content_Types].xml is not well-formed XML"), caught.value


def test_docx_cut_short_is_not_a_readable_zip(good_docx, tmp_path):
    path = tmp_path / "cut.docx"
    data = good_docx.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(IngestError, match="corrupt DOCX: not a readable ZIP archive"):
        read_file(path)


def test_docx_missing_a_part_it_refers_to_is_corrupt(good_docx, tmp_path):
    path = tmp_path / "no_styles.docx"
    with zipfile.ZipFile(good_docx) as old, zipfile.ZipFile(path, "w") as new:
        for info in old.infolist():
            if info.filename != "word/styles.xml":
                new.writestr(info, old.read(info))
    with pytest.raises(IngestError, match="corrupt DOCX: a part it refers to is missing .*word/styles.xml"):
        read_file(path)


def test_empty_zip_named_docx_is_not_a_word_document(tmp_path):
    path = tmp_path / "empty.docx"
    with zipfile.ZipFile(path, "w"):
        pass
    with pytest.raises(IngestError) as caught:
        read_file(path)
    assert caught.value.reason == "a ZIP archive but not a Word document (no word/document.xml)"


def test_other_zip_named_docx_is_not_a_word_document(tmp_path):
    path = tmp_path / "spreadsheet.docx"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("[Content_Types].xml", '<?xml version="1.0"?><Types xmlns="x"/>')
        archive.writestr("xl/workbook.xml", "<workbook/>")
    with pytest.raises(IngestError, match=r"not a Word document \(no word/document.xml\)"):
        read_file(path)


@pytest.mark.parametrize("codec", ["utf-16-le", "utf-16-be"])
def test_utf16_text_without_a_byte_order_mark_reads(tmp_path, codec):
    path = tmp_path / "politique.txt"
    path.write_bytes(POLICY_FR.replace("\n", "\r\n").encode(codec))  # what some exporters write: no mark
    doc = read_file(path)
    assert doc.pages[0].text == POLICY_FR


def test_utf16_passage_json_without_a_byte_order_mark_reads(tmp_path):
    path = tmp_path / "rulebook.json"
    path.write_bytes(json.dumps([{"PassageID": "1", "Passage": "Conformité générale."}]).encode("utf-16-le"))
    assert read_file(path).pages[0].text == "Conformité générale."
