"""What the REST API adds to an answer's time (`make bench-api`, after the load run of eval/bench/api.py).

    python -m eval.bench.api_overhead [--calls 100] [--model NAME] [--json] [--home DIR]

Serves `comply serve` in a child process over a fresh home (the sample corpus and the payments policy of
eval/bench/security.py; the small model by default, `--model` another, e.g. the default 1.5B; max_new_tokens 48),
issues one token, and has one client call
`POST /v1/ask` again and again, one call at a time, on two paths:
- **retrieval only**: a question the library does not answer, withheld after retrieval and reranking because the best
  passage is too far from it (`abstain_reason` `low_relevance`: no generation); the path is checked on every call;
- **end to end**: questions of the sample gold set, answered by the real model.
The server times the action itself (`actions.answer` in its worker thread) and sends it as `Server-Timing:
action;dur=<ms>`; the client times the whole call (connection reused, as a client does). The API's overhead of a call
is the difference: authentication, the rate limit, handing the action to a worker thread and back, JSON in and out,
the HTTP exchange on the loopback. Target (issue #18): p95 of the overhead at most 20 ms on 2 cores, on both paths.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

import httpx

from eval.bench.api import issue_tokens
from eval.bench.security import MODEL, SERVER_ENV, cpu, prepare_home, serving
from eval.metrics import percentiles

TARGET_MS = 20.0
OFF_TOPIC = ("What is the boiling point of tungsten in kelvin?", "Who won the 1966 football World Cup final?",
             "How many moons does the planet Neptune have?", "What is the airspeed of an unladen swallow?")
_TIMING = re.compile(r"action;dur=([0-9.]+)")


def timed_ask(client: httpx.Client, question: str) -> tuple[float, float, dict]:
    """One `/v1/ask`: (the call's time at the client, the action's time at the server, both in ms; the answer)."""
    started = time.perf_counter()
    response = client.post("/v1/ask", json={"question": question})
    total_ms = (time.perf_counter() - started) * 1000
    response.raise_for_status()
    action = _TIMING.search(response.headers.get("server-timing", ""))
    if action is None:
        raise RuntimeError(f"no Server-Timing action in the response: {dict(response.headers)}")
    return total_ms, float(action.group(1)), response.json()


def measure(client: httpx.Client, questions: list[str], calls: int, *, path: str) -> dict:
    """`calls` calls cycling over `questions`: the overhead's and the action's percentiles, and how many calls took
    another path than `path` (`low_relevance` for retrieval only; anything else: an answer or a withheld one)."""
    overhead, action, wrong_path = [], [], 0
    for i in range(calls):
        total_ms, action_ms, answer = timed_ask(client, questions[i % len(questions)])
        retrieval_only = answer.get("abstain_reason") == "low_relevance"
        wrong_path += retrieval_only != (path == "retrieval only")
        overhead.append(total_ms - action_ms)
        action.append(action_ms)
    o50, o95, omax = percentiles(overhead, (50, 95, 100))
    a50, a95 = percentiles(action, (50, 95))
    return {"path": path, "calls": calls, "other_path": wrong_path, "overhead_ms": {"p50": round(o50, 2),
            "p95": round(o95, 2), "max": round(omax, 2)}, "action_ms": {"p50": round(a50, 1), "p95": round(a95, 1)}}


def table(out: dict) -> str:
    """The results as a Markdown table."""
    rows = [f"CPU: {out['cpu']}; model {out['model']} (max_new_tokens 48); one client, calls one at a time", "",
            "| path | calls | API overhead p50 / p95 / max (ms) | action p50 / p95 (ms) | target |",
            "| --- | ---: | --- | --- | --- |"]
    rows += [f"| {r['path']} | {r['calls']} | {r['overhead_ms']['p50']} / {r['overhead_ms']['p95']} / "
             f"{r['overhead_ms']['max']} | {r['action_ms']['p50']} / {r['action_ms']['p95']} | p95 <= {TARGET_MS:g} |"
             for r in out["paths"]]
    rows += ["", f"retrieval-only question: {out['off_topic']!r}", "targets " + ("MET" if out["met"] else "NOT met")]
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=100, help="calls per path")
    parser.add_argument("--model", default=MODEL, help="the generator served (default: the small model)")
    parser.add_argument("--home", type=Path, help="a folder to build the home in (default: a temporary one)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    home = args.home or Path(tempfile.mkdtemp(prefix="comply-bench-api-overhead-"))
    out: dict = {"cpu": cpu(), "model": args.model}
    os.environ["COMPLY_API_RATE_PER_MINUTE"] = "100000"  # the served app inherits it: no call is throttled
    try:
        questions = prepare_home(home, users=1)
        (token,) = issue_tokens(home, ["user1"])
        with serving(home, {**SERVER_ENV, "COMPLY_GENERATOR_MODEL": args.model}) as (url, _), \
                httpx.Client(base_url=url, timeout=600, headers={"Authorization": f"Bearer {token}"}) as client:
            timed_ask(client, questions[0])  # the model loaded before timing
            off = [q for q in OFF_TOPIC if timed_ask(client, q)[2].get("abstain_reason") == "low_relevance"]
            if not off:
                raise RuntimeError(f"none of {OFF_TOPIC} is withheld after retrieval: no retrieval-only path")
            out["off_topic"] = off[0]
            out["paths"] = [measure(client, off[:1], args.calls, path="retrieval only"),
                            measure(client, questions, args.calls, path="end to end")]
    finally:
        if args.home is None:
            shutil.rmtree(home, ignore_errors=True)
    out["met"] = all(r["overhead_ms"]["p95"] <= TARGET_MS and r["other_path"] == 0 if r["path"] == "retrieval only"
                     else r["overhead_ms"]["p95"] <= TARGET_MS for r in out["paths"])
    print(json.dumps(out, indent=2) if args.json else table(out))
    return 0 if out["met"] else 1


if __name__ == "__main__":
    sys.exit(main())
