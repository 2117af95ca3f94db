"""Decompression bombs: a PDF page or DOCX part that inflates past its cap is refused with the file and the reason
before a parser inflates it, the batch goes on, the cited-page view refuses it too, and ingesting the bombs keeps the
process under 1 GB (measured in a real subprocess)."""

import json
import os
import subprocess
import sys
import zipfile

import pytest

from assistant.pdf_view import SourceViewError, render_pdf_page
from ingest.decompression import DecompressionLimit, check_pdf
from ingest.readers import read_file
from ingest.settings import Settings
from ingest.types import IngestError
from tests.fixtures.make_bad_inputs import bomb_pdf, encrypted_bomb_pdf, raw_pdf, stream_object, text_pdf
from tests.library import CORPUS, ROOT

GB = 1 << 30
MB = 1 << 20


@pytest.fixture(scope="module")
def bombs(tmp_path_factory):
    """The two bombs of issue 17: 1 MB inflating to 1 GB of blanks, and 2.6 MB inflating to 1 GB of text operators
    (2.1 GB and 3.7 GB of RSS at ingest before the caps); plus 3 KB compressed twice that inflates to 1 GB."""
    folder = tmp_path_factory.mktemp("bombs")
    (folder / "bomb_1gb.pdf").write_bytes(bomb_pdf(GB))
    (folder / "bomb_text.pdf").write_bytes(bomb_pdf(GB, unit=b"BT /F1 1 Tf 9 9 Td (A) Tj ET\n"))
    (folder / "bomb_twice.pdf").write_bytes(bomb_pdf(GB, times=2))
    return folder


def test_a_1_gb_flate_bomb_is_refused_naming_the_file_and_the_page(bombs):
    path = bombs / "bomb_1gb.pdf"
    assert path.stat().st_size < 1.2 * MB
    with pytest.raises(IngestError) as caught:
        read_file(path)
    assert caught.value.file == str(path)
    assert caught.value.reason.startswith("page 1 inflates to more than 64 MB of decompressed data"), caught.value
    assert "max_decompressed_page_mb" in caught.value.reason


def test_a_stream_compressed_twice_is_measured_through_both_layers(bombs):
    path = bombs / "bomb_twice.pdf"
    assert path.stat().st_size < 10_000
    with pytest.raises(DecompressionLimit, match="page 1 inflates to more than 64 MB"):
        read_file(path)


def test_the_caps_are_settings_per_page_and_per_file(tmp_path):
    path = tmp_path / "three_pages.pdf"
    path.write_bytes(bomb_pdf(12 * MB, pages=3))  # each page inflates to 12 MB; 36 MB in all
    doc = read_file(path)  # under the defaults (64 MB a page, 1024 MB a file) it is an ordinary document
    assert len(doc.pages) == 3 and "Decompression bomb" in doc.pages[0].text
    with pytest.raises(DecompressionLimit, match=r"page 1 inflates to more than 10 MB .*max_decompressed_page_mb"):
        read_file(path, max_decompressed_page_mb=10)
    with pytest.raises(DecompressionLimit, match=r"by page 3\) to more than 30 MB .*max_decompressed_file_mb"):
        read_file(path, max_decompressed_page_mb=16, max_decompressed_file_mb=30)
    settings = Settings(home=tmp_path / "home", max_decompressed_page_mb=10, max_decompressed_file_mb=30)
    assert (settings.max_decompressed_page_mb, settings.max_decompressed_file_mb) == (10, 30)
    assert Settings(home=tmp_path / "home").max_decompressed_page_mb == 64


def test_environment_variables_set_the_caps(tmp_path, monkeypatch):
    monkeypatch.setenv("COMPLY_MAX_DECOMPRESSED_PAGE_MB", "8")
    monkeypatch.setenv("COMPLY_MAX_DECOMPRESSED_FILE_MB", "100")
    settings = Settings(home=tmp_path)
    assert (settings.max_decompressed_page_mb, settings.max_decompressed_file_mb) == (8, 100)


def test_real_regulation_pdfs_pass_the_default_caps():
    for path in sorted(CORPUS.glob("*.pdf")):
        assert check_pdf(path, page_limit_mb=64, file_limit_mb=1024) < 64 * MB


def test_a_docx_whose_part_inflates_past_the_cap_is_refused(tmp_path):
    path = tmp_path / "bomb.docx"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("[Content_Types].xml", "<Types/>")
        archive.writestr("word/document.xml", b"<w:document>" + b" " * (3 * MB) + b"</w:document>")
    assert path.stat().st_size < 20_000
    with pytest.raises(DecompressionLimit) as caught:
        read_file(path, max_decompressed_page_mb=2)
    assert caught.value.reason.startswith("the part word/document.xml inflates to 3 MB, over the 2 MB limit")


def test_the_cited_page_view_refuses_a_bomb_page(bombs, tmp_path):
    with pytest.raises(SourceViewError, match=r"bomb_1gb.pdf: page 1 cannot be shown: page 1 inflates to more "
                                              r"than 64 MB"):
        render_pdf_page(bombs / "bomb_1gb.pdf", 1, 0, 10)
    ordinary = tmp_path / "ordinary.pdf"
    ordinary.write_bytes(text_pdf(["Clause 1.1 applies to every employee of the firm."]))
    image, _ = render_pdf_page(ordinary, 1, 0, 6)
    assert image.size[0] > 100


def test_a_batch_with_bombs_goes_on_and_stays_under_1_gb(bombs, tmp_path):
    """Bombs and a good file in one `Library.ingest` in a fresh process: each bomb fails with its reason, the good
    file is added, and the process's peak RSS (embedding model loaded) stays under 1 GB."""
    good = CORPUS / "complaints_handling_policy.pdf"
    script = ("import json, sys\n"
              "from tests.fixtures.make_bad_inputs import peak_rss\n"
              "from ingest.pipeline import Library\nfrom ingest.settings import Settings\n"
              "lib = Library(Settings(home=sys.argv[1]))\n"
              "report = lib.ingest(sys.argv[2:]).to_dict()\n"
              # VmHWM, not ru_maxrss: Linux keeps ru_maxrss across exec, so it would report the forking pytest's size
              "report['peak_rss'] = peak_rss()\n"
              "print(json.dumps(report))\n")
    files = [bombs / "bomb_1gb.pdf", bombs / "bomb_text.pdf", bombs / "bomb_twice.pdf", good]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    done = subprocess.run([sys.executable, "-c", script, str(tmp_path / "home"), *map(str, files)],
                          capture_output=True, cwd=ROOT, env=env, timeout=600)
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    report = json.loads(done.stdout.decode().strip().splitlines()[-1])
    outcomes = {os.path.basename(f["file"]): f for f in report["files"]}
    assert outcomes["complaints_handling_policy.pdf"]["status"] == "added"
    for name in ("bomb_1gb.pdf", "bomb_text.pdf", "bomb_twice.pdf"):
        assert outcomes[name]["status"] == "failed"
        assert "inflates to more than 64 MB" in outcomes[name]["error"], outcomes[name]
    assert report["peak_rss"] < GB, f"peak RSS {report['peak_rss'] / MB:.0f} MB"


@pytest.mark.parametrize("algorithm", ["AES-128", "AES-256"])
def test_an_aes_encrypted_bomb_that_opens_without_a_password_is_refused(tmp_path, algorithm):
    """Its streams are ciphertext: the bytes scan cannot see through them, so pypdf decrypts them (with the
    cryptography package) and the page is measured as any other."""
    path = tmp_path / f"bomb_{algorithm.lower()}.pdf"
    path.write_bytes(encrypted_bomb_pdf(256 * MB, algorithm))
    assert path.stat().st_size < 2 * MB
    with pytest.raises(DecompressionLimit, match="page 1 inflates to more than 64 MB"):
        read_file(path)
    with pytest.raises(SourceViewError, match="page 1 inflates to more than 64 MB"):
        render_pdf_page(path, 1, 0, 10)


def test_the_page_view_counts_an_image_as_the_raster_it_declares(tmp_path):
    """A few bytes of JPEG data declaring 30,000 x 30,000 RGB pixels (2.5 GB once decoded): reading the text never
    decodes it, so ingest takes the page; drawing the page would, so the cited-page view refuses it."""
    text = b"BT /F1 12 Tf 72 720 Td (Clause 2.1: a page with a very large picture.) Tj ET\nq 200 0 0 200 72 300 cm /Im1 Do Q\n"
    path = tmp_path / "huge_image.pdf"
    path.write_bytes(raw_pdf([
        b"<< /Type /Catalog /Pages 2 0 R >>", b"<< /Type /Pages /Kids [5 0 R] /Count 1 >>",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
        stream_object(b"\xff\xd8\xff\xd9", b"/Type /XObject /Subtype /Image /Width 30000 /Height 30000 "
                                           b"/ColorSpace /DeviceRGB /BitsPerComponent 8 /Filter /DCTDecode"),
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 3 0 R >> "
        b"/XObject << /Im1 4 0 R >> >> /Contents 6 0 R >>",
        stream_object(text)]))
    assert "Clause 2.1" in read_file(path).pages[0].text
    with pytest.raises(SourceViewError, match="page 1 inflates to more than 64 MB"):
        render_pdf_page(path, 1, 0, 10)
