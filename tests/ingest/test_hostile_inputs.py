"""The hostile-input suite (tests/fixtures/make_bad_inputs.py `hostile_inputs`, docs/security.md): 40+ files that
are damaged, disguised, bombs, links out of the folder or not documents, ingested as one folder into a library that
already holds documents, in a fresh process. Every file is refused with its name and its reason, the batch goes on,
what was in the library is unchanged, nothing outside the folder is read, and the process stays under 1 GB."""

import json
import os
import subprocess
import sys

from tests.fixtures.make_bad_inputs import MAX_FILE_MB, hostile_inputs, write_hostile_inputs
from tests.library import FIXTURES, ROOT

SCRIPT = """
import json, sys
from tests.fixtures.make_bad_inputs import peak_rss
from ingest.pipeline import Library
from ingest.settings import Settings

home, good, suite = sys.argv[1:4]
library = Library(Settings(home=home, max_file_mb=float(sys.argv[4])))

def snapshot():
    docs = sorted((r.doc_key, r.status, r.chunks, r.sha256) for r in library.catalog.documents(include_deleted=True))
    chunks = sorted(chunk_id for chunk_id, _, _ in library.catalog.all_chunk_rows())
    return {"documents": docs, "chunks": chunks, "vectors": library.vectors.count()}

first = library.ingest([good]).to_dict()
before = snapshot()
report = library.ingest([suite]).to_dict()
after = snapshot()
texts = " ".join(text for _, _, text in library.catalog.all_chunk_rows())
print(json.dumps({"first": first, "report": report, "before": before, "after": after,
                  "consistent": library.check_consistency()["ok"], "secret_indexed": "SECRET-7731" in texts,
                  "peak_rss": peak_rss()}))
"""


def test_every_hostile_file_is_refused_by_name_and_reason_and_nothing_else_changes(tmp_path):
    outside = tmp_path / "outside" / "passwd"
    outside.parent.mkdir()
    outside.write_text("root:x:0:0:root:/root:/bin/bash SECRET-7731\n")
    expected = write_hostile_inputs(tmp_path / "suite", outside)
    assert len(expected) >= 40

    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    done = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path / "home"), str(FIXTURES / "good"),
                           str(tmp_path / "suite"), str(MAX_FILE_MB)],
                          capture_output=True, cwd=ROOT, env=env, timeout=600)
    assert done.returncode == 0, done.stderr.decode()[-3000:]
    result = json.loads(done.stdout.decode().strip().splitlines()[-1])

    assert result["first"]["ok"] and len(result["first"]["files"]) == 7
    outcomes = {os.path.basename(f["file"]): f for f in result["report"]["files"]}
    assert set(outcomes) == set(expected)  # one outcome per file, each naming it
    unclear = {name: outcomes[name]["error"] for name, reason in expected.items()
               if outcomes[name]["status"] not in ("failed", "skipped") or reason not in (outcomes[name]["error"] or "")}
    assert not unclear, json.dumps(unclear, indent=1)
    assert result["before"] == result["after"]  # the documents already in the library are untouched
    assert result["consistent"] and not result["secret_indexed"]
    assert result["peak_rss"] < 1 << 30, f"peak RSS {result['peak_rss'] >> 20} MB"


def test_the_suite_is_described_for_the_security_docs():
    entries = hostile_inputs()
    assert len({name for name, _, _, _ in entries}) == len(entries) >= 40
    table = (ROOT / "docs" / "security.md").read_text()
    for name, what, reason, _ in entries:
        assert f"| `{name.encode('unicode_escape').decode()}` | {what} | {reason} |" in table, name
        assert f"`{name.encode('unicode_escape').decode()}`" in table, name
