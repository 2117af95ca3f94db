"""What a folder or a file name can do to an ingest: symbolic links are refused (and never followed out of the
folder), skipped files are named with the reason, a file name cannot forge report lines, and the home is private."""

import json
import os
import stat

import pytest
from typer.testing import CliRunner

from assistant.app.cli.main import app
from ingest.pipeline import Library, scan_paths
from ingest.settings import Settings
from tests.fixtures.make_bad_inputs import policy_text

SECRET = "root:x:0:0:root:/root:/bin/bash\nSECRET-TOKEN-7731 must never be indexed\n"


def comply(home, *args: str, as_json: bool = True):
    """Run `comply --home HOME ...` in-process; returns (exit code, output: parsed JSON or text)."""
    result = CliRunner().invoke(app, ["--home", str(home), *args] + (["--json"] if as_json else []))
    return result.exit_code, json.loads(result.stdout) if as_json else result.stdout


@pytest.fixture
def outside(tmp_path):
    """A file outside the folder being ingested, as /etc/passwd is."""
    secret = tmp_path / "elsewhere" / "passwd"
    secret.parent.mkdir()
    secret.write_text(SECRET)
    return secret


def test_a_symlink_in_a_folder_is_refused_and_its_target_never_read(tmp_path, outside, new_library):
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "policy.txt").write_text(policy_text())
    (folder / "x.txt").symlink_to(outside)
    library = new_library()
    report = library.ingest([folder])
    outcomes = {os.path.basename(f.file): f for f in report.files}
    assert outcomes["policy.txt"].status == "added"
    assert outcomes["x.txt"].status == "skipped"
    assert outcomes["x.txt"].error.startswith(f"a symbolic link (to {outside}): not followed")
    texts = " ".join(text for _, _, text in library.catalog.all_chunk_rows())
    assert "SECRET-TOKEN" not in texts
    assert all("SECRET-TOKEN" not in p.read_text() for p in library.settings.files_dir.iterdir())


def test_a_named_symlink_fails_unless_links_are_followed(tmp_path, outside):
    link = tmp_path / "x.txt"
    link.symlink_to(outside)
    code, out = comply(tmp_path / "home", "ingest", str(link))
    assert code == 1
    assert out["files"][0]["status"] == "failed"
    assert "symbolic link" in out["files"][0]["error"] and "--follow-symlinks" in out["files"][0]["error"]
    code, out = comply(tmp_path / "home", "ingest", "--follow-symlinks", str(link))
    assert code == 0 and out["files"][0]["status"] == "added"  # named by the user, who asked for links


def test_following_links_in_a_folder_stays_inside_the_folder(tmp_path, outside):
    folder = tmp_path / "docs"
    (folder / "sub").mkdir(parents=True)
    (folder / "sub" / "policy.txt").write_text(policy_text())
    (folder / "inside.txt").symlink_to(folder / "sub" / "policy.txt")
    (folder / "x.txt").symlink_to(outside)
    (folder / "linked").symlink_to(outside.parent, target_is_directory=True)
    files, refused = scan_paths([folder], follow_symlinks=True)
    assert files == [folder / "inside.txt", folder / "sub" / "policy.txt"]
    reasons = {path.name: reason for path, reason, _ in refused}
    assert reasons["x.txt"] == f"a symbolic link to {outside}, outside the folder: never followed"
    assert reasons["linked"] == "a symbolic link to a folder: not followed"


def test_a_folder_of_unsupported_files_names_each_and_exits_non_zero(tmp_path):
    folder = tmp_path / "exports"
    folder.mkdir()
    (folder / "book.xlsx").write_bytes(b"PK\x03\x04 spreadsheet")
    (folder / "setup.exe").write_bytes(b"MZ\x90\x00")
    (folder / "notes").write_text("no extension")
    code, out = comply(tmp_path / "home", "ingest", str(folder))
    assert code == 1 and out["ok"] is False  # the report and the exit status agree
    assert out["counts"] == {"skipped": 3}
    reasons = {os.path.basename(f["file"]): f["error"] for f in out["files"]}
    assert reasons["book.xlsx"].startswith("unsupported file type '.xlsx' (supported: .docx,")
    assert reasons["setup.exe"].startswith("unsupported file type '.exe'")
    assert reasons["notes"].startswith("unsupported file type '(none)'")
    code, text = comply(tmp_path / "home", "ingest", str(folder), as_json=False)
    assert code == 1
    assert "SKIPPED     " in text and "book.xlsx: unsupported file type '.xlsx'" in text
    assert text.strip().splitlines()[-1].startswith("3 files: 3 skipped;")


def test_skipped_files_next_to_good_ones_do_not_fail_the_batch(tmp_path):
    folder = tmp_path / "mixed"
    folder.mkdir()
    (folder / "policy.txt").write_text(policy_text())
    (folder / "book.xlsx").write_bytes(b"PK\x03\x04 spreadsheet")
    code, out = comply(tmp_path / "home", "ingest", str(folder))
    assert code == 0 and out["ok"] is True, out
    assert out["counts"] == {"skipped": 1, "added": 1}


def test_control_characters_in_a_file_name_cannot_forge_report_lines(tmp_path):
    folder = tmp_path / "names"
    folder.mkdir()
    forged = "a.txt\n  added       shadow.txt -> shadow v1, 1 page, 1 chunk\x1b[2K"
    (folder / (forged + ".txt")).write_text(policy_text())
    (folder / "evil\u202etxt.exe").write_bytes(b"MZ")
    code, text = comply(tmp_path / "home", "ingest", str(folder), as_json=False)
    assert code == 0
    lines = text.strip().splitlines()
    assert len(lines) == 3, lines  # two files and the summary: the name's newline is shown as \n
    assert not any(line.lstrip().startswith("added       shadow.txt") for line in lines)
    assert "a.txt\\n  added       shadow.txt" in text and "\\x1b[2K" in text and "\x1b" not in text
    assert "evil\\u202etxt.exe" in text


def test_a_new_home_is_private_and_an_old_one_is_made_private(tmp_path, embedder):
    home = tmp_path / "home"
    library = Library(Settings(home=home), embedder=embedder)
    library.ingest([_policy(tmp_path)])
    library.close()
    _assert_private(home)
    # a home made before: world-readable catalog, copies and index
    for path in [home, *home.rglob("*")]:
        if not path.is_symlink():
            path.chmod(0o755 if path.is_dir() else 0o644)
    Library(Settings(home=home), embedder=embedder).close()
    _assert_private(home)


def _policy(tmp_path):
    path = tmp_path / "policy.txt"
    path.write_text(policy_text())
    return path


def _assert_private(home):
    assert stat.S_IMODE(home.stat().st_mode) == 0o700
    paths = list(home.rglob("*"))
    assert any(p.parent.name == "files" for p in paths) and any(p.name == "catalog.sqlite3" for p in paths)
    assert any(p.parts[-2:-1] == ("chroma",) for p in paths)
    for path in paths:
        mode = stat.S_IMODE(path.lstat().st_mode)
        assert mode & 0o077 == 0, f"{path.relative_to(home)} is {oct(mode)}"
        if path.is_file():
            assert mode == 0o600, f"{path.relative_to(home)} is {oct(mode)}"
