"""The library against a real Chroma server (`chroma run`) instead of the embedded client: same ingest, same
counts, and retrieval finds the right file."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from assistant.retrieval import Retriever
from ingest.pipeline import Library
from ingest.settings import Settings
from tests.library import CORPUS, ROOT

CHROMA = ROOT / ".venv" / "bin" / "chroma"
if not CHROMA.exists():
    CHROMA = Path(sys.executable).with_name("chroma")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_heartbeat(port: int, server: subprocess.Popen, timeout: float = 60.0) -> None:
    url = f"http://127.0.0.1:{port}/api/v2/heartbeat"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"chroma server exited with {server.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.3)
    raise TimeoutError(f"no heartbeat from {url} within {timeout:g}s")


@pytest.fixture
def chroma_server(tmp_path):
    assert CHROMA.exists(), f"the chroma CLI that chromadb installs is missing at {CHROMA}"
    port = free_port()
    log = open(tmp_path / "chroma.log", "wb")
    server = subprocess.Popen([str(CHROMA), "run", "--path", str(tmp_path / "chroma-data"), "--host", "127.0.0.1",
                               "--port", str(port)], stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for_heartbeat(port, server)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.terminate()
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=15)
        log.close()


def test_ingest_and_retrieve_through_a_chroma_server(tmp_path, embedder, chroma_server):
    settings = Settings(home=tmp_path / "home", chroma_url=chroma_server)
    lib = Library(settings, embedder=embedder)
    try:
        assert lib.vectors.location == chroma_server
        assert not (settings.chroma_dir / "chroma.sqlite3").exists()  # nothing embedded on disk
        report = lib.ingest([CORPUS / "information_security_policy.pdf", CORPUS / "complaints_handling_policy.pdf"])
        assert not report.failed, report.to_dict()
        assert {f.status for f in report.files} == {"added"}
        total = sum(r.chunks for r in lib.catalog.documents())
        assert lib.vectors.count() == total == report.chunks_added > 0
        for record in lib.catalog.documents():
            assert lib.vectors.count(record.doc_key) == record.chunks
        assert lib.check_consistency()["ok"]

        retriever = Retriever(lib)
        for query, file in [("How often must backups be tested under CP-9?", "information_security_policy.pdf"),
                            ("How many days do we have to resolve a customer complaint?",
                             "complaints_handling_policy.pdf")]:
            results = retriever.retrieve(query, k=3)
            assert results and results[0].chunk.source_file == file, [r.chunk.source_file for r in results]
            assert retriever.retrieve(query, k=3, mode="dense")[0].chunk.source_file == file

        # A second Library on the same server and home sees the same collection (the server holds the vectors).
        again = Library(settings, embedder=embedder)
        try:
            assert again.vectors.count() == total and again.check_consistency()["ok"]
        finally:
            again.close()
    finally:
        lib.close()
