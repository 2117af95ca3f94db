"""Concurrent clients against the REST API of a real server (`make bench-api`).

    python -m eval.bench.api [--clients 10] [--duration 180] [--json] [--home DIR]

Serves `comply serve` in a child process over a fresh home (the sample corpus and the payments policy of
eval/bench/security.py, the small model with max_new_tokens 48), issues one API token per client with
`comply users token`, and runs `--clients` clients for `--duration` seconds. Each loops over the routes a client of
the API uses: a chat completion, /v1/ask, a streamed chat completion (read to `data: [DONE]`), the library listing
and a cited page drawn with its highlight, with 0.5-1.5 s between calls. Errors are any status other than 200 and a
stream that does not end with `data: [DONE]` or carries an error event. Then the audit trail is read: every call must
be in it exactly once (its `request_id`, the `X-Request-Id` the client got). Targets: 0 errors, every call recorded
exactly once.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from pathlib import Path

import httpx

from assistant.app.audit import AuditLog
from eval.bench.security import MODEL, cpu, prepare_home, serving
from eval.metrics import percentiles
from ingest.settings import Settings

PAGE = ("/v1/documents/information-security-policy/pages/2", {"highlight": "at least 14 characters"})
RATE = 600  # api_rate_per_minute of the served app: above what the clients send, so nothing is throttled
OPERATIONS = ("chat", "ask", "stream", "documents", "page")


def issue_tokens(home: Path, users: list[str]) -> list[str]:
    """One token per user, as an administrator issues them (`comply users token NAME --json`)."""
    comply = Path(sys.executable).with_name("comply")
    tokens = []
    for user in users:
        out = subprocess.run([str(comply), "--home", str(home), "users", "token", user, "--name", "bench", "--json"],
                             capture_output=True, text=True, check=True).stdout
        tokens.append(json.loads(out)["token"])
    return tokens


def call(client: httpx.Client, operation: str, question: str) -> tuple[int, str | None, str | None]:
    """One API call: (HTTP status, its request id, what went wrong or None)."""
    messages = [{"role": "user", "content": question}]
    if operation == "stream":
        with client.stream("POST", "/v1/chat/completions", json={"stream": True, "messages": messages}) as response:
            lines = [line for line in response.iter_lines() if line.startswith("data: ")]
            rid = response.headers.get("x-request-id")
            if response.status_code != 200:
                return response.status_code, rid, f"stream: HTTP {response.status_code}"
        if not lines or lines[-1] != "data: [DONE]" or any('"error"' in line[:20] for line in lines):
            return 200, rid, f"stream: {lines[-2:] if lines else 'no events'}"
        return 200, rid, None
    if operation == "chat":
        response = client.post("/v1/chat/completions", json={"model": "comply", "messages": messages})
    elif operation == "ask":
        response = client.post("/v1/ask", json={"question": question})
    elif operation == "documents":
        response = client.get("/v1/documents")
    else:
        response = client.get(PAGE[0], params=PAGE[1])
    problem = None if response.status_code == 200 else f"{operation}: HTTP {response.status_code} {response.text[:200]}"
    return response.status_code, response.headers.get("x-request-id"), problem


def run(url: str, tokens: list[str], duration_s: float, questions: list[str]) -> dict:
    """The clients for `duration_s` seconds: calls, errors and latencies per operation, request ids."""
    stop = time.monotonic() + duration_s
    lock = threading.Lock()
    latencies: dict[str, list[float]] = defaultdict(list)
    errors: list[str] = []
    request_ids: list[str] = []

    def client(i: int, token: str) -> None:
        rng = random.Random(i)
        with httpx.Client(base_url=url, timeout=600, headers={"Authorization": f"Bearer {token}"}) as http:
            n = i  # the clients start at different operations
            while time.monotonic() < stop:
                operation = OPERATIONS[n % len(OPERATIONS)]
                n += 1
                started = time.perf_counter()
                try:
                    _, rid, problem = call(http, operation, rng.choice(questions))
                except httpx.HTTPError as e:
                    rid, problem = None, f"{operation}: {type(e).__name__} {e}"
                with lock:
                    latencies[operation].append(time.perf_counter() - started)
                    if rid:
                        request_ids.append(rid)
                    if problem:
                        errors.append(problem)
                time.sleep(rng.uniform(0.5, 1.5))

    threads = [threading.Thread(target=client, args=(i, token)) for i, token in enumerate(tokens)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    per_operation = {}
    for operation in OPERATIONS:
        p50, p95 = percentiles(latencies[operation], (50, 95)) if latencies[operation] else (None, None)
        per_operation[operation] = {"calls": len(latencies[operation]), "p50_s": _r(p50), "p95_s": _r(p95)}
    return {"clients": len(tokens), "duration_s": duration_s, "operations": per_operation, "errors": len(errors),
            "error_samples": errors[:10], "request_ids": request_ids}


def audit_check(home: Path, request_ids: list[str]) -> dict:
    """How many calls the trail holds exactly once, and which it holds not at all, twice, or without a caller."""
    recorded = Counter(r.get("request_id") for r in AuditLog(Settings(home=home).audit_path).records()
                       if r.get("via") == "api")
    sent = Counter(request_ids)
    return {"calls": len(sent), "recorded_once": sum(1 for rid in sent if recorded[rid] == 1),
            "missing": [rid for rid in sent if recorded[rid] == 0][:10],
            "more_than_once": [rid for rid in sent if recorded[rid] > 1][:10],
            "not_sent": [rid for rid in recorded if rid not in sent][:10]}


def _r(x: float | None) -> float | None:
    return None if x is None else round(x, 3)


def table(out: dict) -> str:
    """The results as a Markdown table."""
    load, audit = out["load"], out["audit"]
    rows = [f"CPU: {out['cpu']}; model {MODEL} (max_new_tokens 48)", "", "| measure | value | target |",
            "| --- | ---: | --- |", f"| clients x seconds | {load['clients']} x {load['duration_s']:g} | 10 x 180 |"]
    rows += [f"| {op}: calls, p50 / p95 (s) | {v['calls']}, {v['p50_s']} / {v['p95_s']} | |"
             for op, v in load["operations"].items()]
    rows += [f"| errors | {load['errors']} | 0 |",
             f"| calls in the audit trail exactly once | {audit['recorded_once']} of {audit['calls']} | all |",
             "", "targets " + ("MET" if out["met"] else "NOT met")]
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=10)
    parser.add_argument("--duration", type=float, default=180.0, help="seconds of load")
    parser.add_argument("--home", type=Path, help="a folder to build the home in (default: a temporary one)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    home = args.home or Path(tempfile.mkdtemp(prefix="comply-bench-api-"))
    out: dict = {"cpu": cpu(), "model": MODEL}
    os.environ["COMPLY_API_RATE_PER_MINUTE"] = str(RATE)  # the served app inherits it
    try:
        questions = prepare_home(home, users=args.clients)
        tokens = issue_tokens(home, [f"user{i}" for i in range(1, args.clients + 1)])
        with serving(home) as (url, _):
            with httpx.Client(base_url=url, timeout=600, headers={"Authorization": f"Bearer {tokens[0]}"}) as warm:
                first = warm.post("/v1/ask", json={"question": questions[0]})  # the model loaded before timing
                first.raise_for_status()
            out["load"] = run(url, tokens, args.duration, questions)
        out["audit"] = audit_check(home, [first.headers["x-request-id"], *out["load"]["request_ids"]])
    finally:
        if args.home is None:
            shutil.rmtree(home, ignore_errors=True)
    out["load"].pop("request_ids")
    audit = out["audit"]
    out["met"] = out["load"]["errors"] == 0 and audit["recorded_once"] == audit["calls"] and not audit["not_sent"]
    print(json.dumps(out, indent=2) if args.json else table(out))
    return 0 if out["met"] else 1


if __name__ == "__main__":
    sys.exit(main())
