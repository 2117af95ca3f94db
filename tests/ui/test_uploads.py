"""Uploads against the real server: a viewer's upload is refused before anything is stored, an editor's uploads are
bounded by a per-user quota, a mixed batch adds the good files and names each refused one with its reason (all
audited), and uploads are deleted once ingested or once they are older than the age limit."""

from __future__ import annotations

import base64
import json
import os
import time
from pathlib import Path

import pytest
from gradio.utils import get_upload_folder

from assistant.app.audit import AuditLog
from assistant.app.ui.uploads import UploadTracker
from tests.fixtures.make_bad_inputs import policy_text
from tests.ui.conftest import UPLOAD_QUOTA_MB, log_in
from tests.ui.test_browser import call_endpoint

pytestmark = pytest.mark.browser

MB = 1024 * 1024


def post_upload(page, url: str, files: list[tuple[str, bytes]]) -> tuple[int, str]:
    """POST /gradio_api/upload from the page, with its session, as the browser's file picker does (a FormData of
    files); returns (status, body)."""
    status, text = page.evaluate("""async ([url, files]) => {
        const form = new FormData();
        for (const [name, b64] of files) {
            form.append("files", new Blob([Uint8Array.from(atob(b64), c => c.charCodeAt(0))]), name);
        }
        const response = await fetch(url + "/gradio_api/upload", {method: "POST", body: form});
        return [response.status, await response.text()];
    }""", [url, [[name, base64.b64encode(data).decode()] for name, data in files]])
    return status, text


def stored_with(marker: bytes) -> list[Path]:
    """Files in Gradio's upload folder that contain `marker`."""
    folder = Path(get_upload_folder())
    return [p for p in folder.rglob("*") if p.is_file() and marker in p.read_bytes()] if folder.is_dir() else []


def test_a_viewers_upload_is_refused_before_the_file_is_stored(app_url, browser, app_settings):
    context, page = log_in(browser, app_url, "viewer")
    marker = b"viewer-upload-marker-5521"
    status, text = post_upload(page, app_url, [("notes.txt", marker * 100)])
    assert status == 403, text
    assert text == "Upload refused: your role (viewer) may not add documents; it needs the editor role."
    assert stored_with(marker) == []
    denied = AuditLog(app_settings.audit_path).records(action="access.denied")
    assert ("viewer", "documents.write") in {(r["user"], r["permission"]) for r in denied}
    context.close()
    anonymous = browser.new_context()
    page = anonymous.new_page()
    page.goto(app_url)  # the login page
    status, _ = post_upload(page, app_url, [("notes.txt", marker)])
    assert status == 401 and stored_with(marker) == []
    anonymous.close()


def test_an_editors_uploads_are_bounded_by_the_quota_until_added(app_url, browser):
    context, page = log_in(browser, app_url, "editor")
    status, text = post_upload(page, app_url, [("a.txt", os.urandom(int(0.6 * UPLOAD_QUOTA_MB * MB)))])
    assert status == 200, text
    first = json.loads(text)[0]
    marker = b"over-the-quota-marker-9013"
    status, text = post_upload(page, app_url, [("b.txt", marker + os.urandom(int(0.6 * UPLOAD_QUOTA_MB * MB)))])
    assert status == 413, text
    assert text.startswith("Upload refused: editor already holds 1.2 MB of files not yet added"), text
    assert f"the limit is {UPLOAD_QUOTA_MB} MB a user (upload_quota_mb)" in text
    assert stored_with(marker) == []
    # adding the held upload to the library (it fails: random bytes) deletes it, and frees the quota
    held = {"path": first, "orig_name": "a.txt", "meta": {"_type": "gradio.FileData"}}
    event, _ = call_endpoint(page, app_url, "upload_documents", [[held], "", False])
    assert event == "complete"
    assert not Path(first).exists()
    assert post_upload(page, app_url, [("c.txt", policy_text().encode())])[0] == 200
    context.close()


def test_a_mixed_batch_adds_the_good_files_and_names_each_refused_one(app_url, browser, app_settings):
    context, page = log_in(browser, app_url, "editor")
    batch = [("mixed_policy.txt", policy_text().replace("Conflicts", "Mixed batch conflicts").encode()),
             ("setup.exe", b"MZ\x90\x00" + bytes(64)), ("book.xlsx", b"PK\x03\x04 not really a workbook"),
             ("archive.zip", b"PK\x05\x06" + bytes(18))]
    status, text = post_upload(page, app_url, batch)
    assert status == 200, text
    paths = json.loads(text)
    files = [{"path": path, "orig_name": name, "meta": {"_type": "gradio.FileData"}}
             for path, (name, _) in zip(paths, batch, strict=True)]
    event, payload = call_endpoint(page, app_url, "upload_documents", [files, "", False])
    assert event == "complete", payload
    report = payload[0]
    assert report.startswith("**1 of 4 file(s) added or already present**, **3 not added**"), report
    assert "**mixed_policy.txt**: added as" in report
    assert "**setup.exe**: NOT ADDED. unsupported file type '.exe'" in report
    assert "**book.xlsx**: NOT ADDED. unsupported file type '.xlsx'" in report
    assert "**archive.zip**: NOT ADDED. unsupported file type '.zip'" in report
    records = AuditLog(app_settings.audit_path).records(action="document.upload")[-4:]
    assert {(r["file"], r["ok"]) for r in records} == {("mixed_policy.txt", True), ("setup.exe", False),
                                                       ("book.xlsx", False), ("archive.zip", False)}
    assert all(r["error"].startswith("unsupported file type") for r in records if not r["ok"])
    assert not any(Path(p).exists() for p in paths)  # removed once ingested
    context.close()


def test_uploads_older_than_the_age_limit_are_swept(tmp_path):
    folder = tmp_path / "gradio"
    old, new = folder / "aa" / "old.pdf", folder / "bb" / "new.pdf"
    for path in (old, new):
        path.parent.mkdir(parents=True)
        path.write_bytes(b"%PDF-1.7 upload")
    an_hour_ago = time.time() - 3601
    os.utime(old, (an_hour_ago, an_hour_ago))
    tracker = UploadTracker(folder, max_age_s=3600)
    tracker.add("editor", [str(old), str(new)])
    assert tracker.held_bytes("editor") == 2 * len(b"%PDF-1.7 upload")
    assert tracker.sweep() == 1
    assert not old.exists() and not old.parent.exists() and new.exists()
    assert tracker.held_bytes("editor") == len(b"%PDF-1.7 upload")
