"""The retriever-model registry with real model folders: register, list, the release gate, activate and roll back
rerankers (the next retrieval loads the new one) and embedders (the library is re-embedded into a new index
generation and switched atomically; a kill -9 in the middle leaves the old index serving), the `comply retrievers`
commands and their audit records."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from assistant.app.cli.main import app
from assistant.rerank import SHIPPED_DIR, current_reranker, load_reranker
from assistant.retrieval import Retriever
from finetune import retrievers
from finetune.retrievers import RetrieverError
from ingest.embedding import load_embedder, resolve_embedding_model
from ingest.pipeline import Library, embedding_text
from ingest.settings import DEFAULT_EMBEDDING, DEFAULT_RERANKER, Settings
from tests.library import sample_home

COMPLY = Path(sys.executable).parent / "comply"
SHIPPED_RERANKER = SHIPPED_DIR / DEFAULT_RERANKER
QUESTION = "How long are customer due diligence records kept?"


def _card(folder: Path, kind: str, value: float | None, baseline: float, lists: str = "a" * 64) -> Path:
    """Give a model folder a training card with these validation numbers (the gate reads only them)."""
    card = json.loads((folder / "card.json").read_text()) if (folder / "card.json").is_file() else {}
    best = {"step": 10, **({"embedder" if kind == "embedder" else "reranked": {"map@10": value}} if value else {})}
    if kind == "reranker":
        best["fused"] = {"map@10": baseline}
    else:
        card["frozen"] = {"embedder": {"map@10": baseline}}
    card.update(best=best, val_questions=60, base_model=DEFAULT_EMBEDDING,
                data={"dataset": "test.json", "mined_val_sha256": lists})
    (folder / "card.json").write_text(json.dumps(card))
    return folder


def _reranker(tmp_path: Path, name: str, value: float | None, baseline: float = 0.5, lists: str = "a" * 64) -> Path:
    folder = tmp_path / "made" / name
    shutil.copytree(SHIPPED_RERANKER, folder)
    return _card(folder, "reranker", value, baseline, lists)


@pytest.fixture(scope="module")
def noisy_embedder(tmp_path_factory) -> Path:
    """A real sentence-transformers embedder that is not the packaged one: all-MiniLM-L6-v2 with noise added to
    its word embeddings, so its vectors differ measurably."""
    import torch
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(resolve_embedding_model(DEFAULT_EMBEDDING), device="cpu", local_files_only=True)
    words = model[0].auto_model.embeddings.word_embeddings.weight
    with torch.no_grad():
        words.add_(torch.randn(words.shape, generator=torch.Generator().manual_seed(0)) * 0.02)
    out = tmp_path_factory.mktemp("embedder") / "noisy"
    model.save(str(out))
    return _card(out, "embedder", 0.7, 0.6)


def _home(tmp_path: Path) -> Settings:
    """A writable copy of the ingested sample library (its converted generator left out: not needed here)."""
    home = tmp_path / "home"
    shutil.copytree(sample_home(), home, ignore=shutil.ignore_patterns("models"))
    return Settings(home=home)


def _own(models: list) -> list:
    """The models registered in the home: an embedder `make embedder` wrote into data/embedders is listed too, on a
    machine where it was run."""
    return [m for m in models if (m.registered if hasattr(m, "registered") else m["registered"]) != retrievers.IN_DATA]


def test_register_list_and_refusals(tmp_path):
    s = Settings(home=tmp_path / "home")
    assert _own(retrievers.list_models(s)) == []
    retrievers.register(s, "reranker", _reranker(tmp_path, "good", 0.62))
    listed = _own(retrievers.list_models(s))
    assert [(m.kind, m.name, m.active, m.map10, m.baseline_map10, m.error) for m in listed] == [
        ("reranker", "good", False, 0.62, 0.5, None)]
    assert listed[0].registered  # the history's registration time
    with pytest.raises(RetrieverError, match="already registered"):
        retrievers.register(s, "reranker", _reranker(tmp_path, "good2", 0.62), "good")
    with pytest.raises(RetrieverError, match="not a sentence-transformers embedder"):
        retrievers.register(s, "embedder", SHIPPED_RERANKER)  # a cross-encoder is not an embedder
    with pytest.raises(RetrieverError, match="unknown kind"):
        retrievers.register(s, "generator", SHIPPED_RERANKER)
    with pytest.raises(RetrieverError, match="no config.json"):
        retrievers.register(s, "reranker", tmp_path)
    with pytest.raises(RetrieverError, match="not a valid model name"):
        retrievers.register(s, "reranker", SHIPPED_RERANKER, "base")
    damaged = retrievers.register(s, "reranker", _reranker(tmp_path, "damaged", 0.7))
    (damaged / "model.safetensors").unlink()
    assert [m.error is not None for m in retrievers.list_models(s, "reranker")] == [True, False]
    with pytest.raises(RetrieverError, match="no weights"):
        retrievers.activate(s, "reranker", "damaged", force=True)  # refused even when forced


def test_reranker_gate_activate_rollback_and_the_retriever_loads_it(tmp_path):
    s = Settings(home=tmp_path / "home", rerank=True)
    for name, value, lists in (("worse-than-fused", 0.45, "a"), ("good", 0.62, "a"), ("lower", 0.58, "a"),
                               ("other-lists", 0.55, "b"), ("no-numbers", None, "a")):
        retrievers.register(s, "reranker", _reranker(tmp_path, name, value, lists=lists * 64))
    assert current_reranker(s) == SHIPPED_RERANKER  # nothing active: the shipped default
    with pytest.raises(RetrieverError, match=r"worse than the fused order.*0\.450 < 0\.500"):
        retrievers.activate(s, "reranker", "worse-than-fused")
    with pytest.raises(RetrieverError, match="no validation MAP@10"):
        retrievers.activate(s, "reranker", "no-numbers")
    out = retrievers.activate(s, "reranker", "good")
    assert out["changed"] and out["active"] == "good" and out["previous"] == "base" and not out["forced"]
    assert current_reranker(s) == s.retrievers_dir / "reranker" / "good"
    assert load_reranker(s).path == (s.retrievers_dir / "reranker" / "good").resolve()
    # below the active one on the same validation lists: refused; on other lists the numbers do not compare
    with pytest.raises(RetrieverError, match=r"0\.580, below 0\.620 of the active reranker 'good'"):
        retrievers.activate(s, "reranker", "lower")
    assert retrievers.activate(s, "reranker", "other-lists")["active"] == "other-lists"
    forced = retrievers.activate(s, "reranker", "worse-than-fused", force=True)
    assert forced["forced"] and "0.450 < 0.500" in forced["gate"][0]
    assert retrievers.activate(s, "reranker", "worse-than-fused")["changed"] is False
    # a reranker_model set by the user wins over the registry
    assert current_reranker(Settings(home=s.home, reranker_model=str(SHIPPED_RERANKER))) == SHIPPED_RERANKER
    assert [retrievers.rollback(s, "reranker")["active"] for _ in range(3)] == ["other-lists", "good", "base"]
    assert current_reranker(s) == SHIPPED_RERANKER
    with pytest.raises(RetrieverError, match="nothing to roll back to"):
        retrievers.rollback(s, "reranker")
    actions = [e["action"] for e in retrievers.history(s, "reranker")]
    assert actions.count("register") == 5 and actions.count("activate") == 3 and actions.count("rollback") == 3


def test_activating_an_embedder_reembeds_the_library_and_switches(tmp_path, noisy_embedder):
    s = _home(tmp_path)
    library = Library(s)
    before_ids = set(library.vectors.collection.get(include=[])["ids"])
    base_hits = [r.chunk.chunk_id for r in Retriever(library).retrieve(QUESTION)[:3]]
    retrievers.register(s, "embedder", noisy_embedder)
    seen = []
    out = retrievers.activate(s, "embedder", "noisy", library=library, on_progress=lambda d, t: seen.append((d, t)))
    assert out["active"] == "noisy" and out["collection"] == "comply-e1" and out["chunks"] == len(before_ids)
    assert seen[0][0] == 0 and seen[-1] == (len(before_ids), len(before_ids))
    assert library.vectors.collection_names() == ["comply-e1"]  # the old collection is gone
    assert library.pointer.name == "noisy" and library.embedder.name == str((s.retrievers_dir / "embedder" /
                                                                              "noisy").resolve())
    assert library.base_embedder().name == DEFAULT_EMBEDDING  # the verifier's model stays the calibrated one
    # every chunk is there, with the new model's vector of its text
    got = library.vectors.collection.get(include=["embeddings"], limit=5)
    assert set(library.vectors.collection.get(include=[])["ids"]) == before_ids
    chunks = library.catalog.chunks(got["ids"])
    texts = [embedding_text(chunks[i].title, chunks[i].clause, chunks[i].heading_path, chunks[i].text)
             for i in got["ids"]]
    stored = np.asarray(got["embeddings"], dtype=np.float32)
    assert np.allclose(stored, library.embedder.encode(texts), atol=2e-3)
    assert not np.allclose(stored, load_embedder(s).encode(texts), atol=2e-3)
    assert library.check_consistency()["ok"]
    # another process opening the library follows the pointer, and retrieval still finds the clause
    again = Library(s)
    assert again.pointer.collection == "comply-e1"
    assert [r.chunk.chunk_id for r in Retriever(again).retrieve(QUESTION)[:3]][0] in base_hits
    # ingesting now embeds with the active model
    new = tmp_path / "gift_register.md"
    new.write_text("# Gift register\n\n1.1 Gifts above 50 pounds are recorded in the register within 5 days.\n")
    assert again.ingest([new]).chunks_added == 1 and again.check_consistency()["ok"]
    added = again.catalog.chunks_of(again.catalog.get("gift-register").doc_key)[0]
    vector = np.asarray(again.vectors.collection.get(ids=[added.chunk_id], include=["embeddings"])["embeddings"])
    assert np.allclose(vector, again.embedder.encode([embedding_text(added.title, added.clause, added.heading_path,
                                                                      added.text)]), atol=2e-3)
    back = retrievers.rollback(s, "embedder", library=library)
    assert back["active"] == "base" and library.pointer.name is None and library.pointer.collection == "comply-e2"
    assert library.pointer.model == DEFAULT_EMBEDDING
    assert library.embedder is library.base_embedder() and library.check_consistency()["ok"]


def test_embedder_gate(tmp_path, noisy_embedder):
    s = Settings(home=tmp_path / "home")
    folder = tmp_path / "worse"
    shutil.copytree(noisy_embedder, folder)
    retrievers.register(s, "embedder", _card(folder, "embedder", 0.5, 0.6))
    with pytest.raises(RetrieverError, match=r"worse than the frozen embedder.*0\.500 < 0\.600"):
        retrievers.activate(s, "embedder", "worse")
    assert retrievers.active(s, "embedder") is None


def test_kill_9_while_reembedding_leaves_the_old_index_serving(tmp_path, noisy_embedder):
    s = _home(tmp_path)
    retrievers.register(s, "embedder", noisy_embedder)
    library = Library(s)
    ids = set(library.vectors.collection.get(include=[])["ids"])
    library.close()
    proc = subprocess.Popen([str(COMPLY), "--home", str(s.home), "retrievers", "activate", "embedder", "noisy",
                             "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    state, deadline = None, time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            state = json.loads(s.reembed_state_path.read_text())
        except (OSError, ValueError):
            state = None
        if state and 0 < state["done"] < state["total"]:
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.01)
    proc.wait(30)
    assert proc.returncode == -signal.SIGKILL, (proc.returncode, proc.stderr.read().decode()[-2000:])
    assert state["collection"] == "comply-e1"
    # reopened: the unfinished collection and its state are dropped; the old index serves as before
    library = Library(s)
    assert library.pointer.collection == "comply" and library.pointer.name is None
    assert not s.reembed_state_path.exists()
    assert library.vectors.collection_names() == ["comply"]
    assert set(library.vectors.collection.get(include=[])["ids"]) == ids and library.check_consistency()["ok"]
    assert Retriever(library).retrieve(QUESTION)
    # and the activation, run again, completes
    out = retrievers.activate(s, "embedder", "noisy", library=library)
    assert out["collection"] == "comply-e1" and out["chunks"] == len(ids)
    assert library.vectors.collection_names() == ["comply-e1"] and library.check_consistency()["ok"]


def test_cli_and_audit(tmp_path):
    s = Settings(home=tmp_path / "home")
    runner = CliRunner()

    def run(*args):
        result = runner.invoke(app, ["--home", str(s.home), "retrievers", *args, "--json"])
        return result.exit_code, json.loads(result.stdout)

    for name, value in (("good", 0.6), ("bad", 0.4)):
        code, out = run("register", "reranker", str(_reranker(tmp_path, name, value)))
        assert code == 0 and out["name"] == name
    assert run("activate", "reranker", "good")[1]["active"] == "good"
    code, out = run("activate", "reranker", "bad")
    assert code == 1 and "0.400" in out["error"] and "--force" in out["error"]
    code, listed = run("list")
    assert listed["active"] == {"embedder": "base", "reranker": "good"}
    assert [(m["name"], m["active"]) for m in _own(listed["models"])] == [("bad", False), ("good", True)]
    assert run("rollback", "reranker")[1]["active"] == "base"
    records = [json.loads(line) for line in s.audit_path.read_text().splitlines()]
    kept = [(r["action"], r.get("model"), r.get("ok")) for r in records if r["action"].startswith("retriever.")]
    assert kept == [("retriever.register", "good", True), ("retriever.register", "bad", True),
                    ("retriever.activate", "good", True), ("retriever.activate", "bad", False),
                    ("retriever.rollback", None, True)]


def test_which_embedder_builds_a_library(tmp_path, noisy_embedder):
    """A new library is built with index_embedding_model (here another real embedder), named in vectors.json at
    its first ingest; the confidence gate still scores with the packaged model; by default (`base`) it is built
    with embedding_model; a library from before vectors.json existed keeps embedding_model."""
    policy, other = tmp_path / "records.md", tmp_path / "calls.md"
    policy.write_text("# Record keeping\n\n2.1 Customer due diligence records are kept for six years after the "
                      "relationship ends.\n")
    other.write_text("# Call recording\n\n4.5 Telephone calls with clients are recorded and kept for three "
                     "years.\n")
    s = Settings(home=tmp_path / "new", index_embedding_model=str(noisy_embedder))
    library = Library(s)
    assert library.pointer.name == library.pointer.model == str(noisy_embedder)
    assert library.ingest([policy, other]).chunks_added == 2
    assert json.loads(s.vectors_pointer_path.read_text())["model"] == str(noisy_embedder)
    shipped = library.embedder
    assert shipped.name == str(noisy_embedder) and shipped is not library.base_embedder()
    got = library.vectors.collection.get(include=["embeddings"])
    chunks = library.catalog.chunks(got["ids"])
    texts = [embedding_text(chunks[i].title, chunks[i].clause, chunks[i].heading_path, chunks[i].text)
             for i in got["ids"]]
    assert np.allclose(np.asarray(got["embeddings"], dtype=np.float32), shipped.encode(texts), atol=2e-3)
    assert not np.allclose(np.asarray(got["embeddings"], dtype=np.float32),
                           library.base_embedder().encode(texts), atol=2e-3)
    retriever = Retriever(library)
    hits = retriever.retrieve(QUESTION)
    assert hits[0].chunk.title == "Record keeping"
    base = library.base_embedder()  # the gate's relevance is the packaged model's cosine, not the index's
    expected = float((base.encode([r.chunk.text for r in hits[:5]]) @ base.encode_query(QUESTION)).max())
    assert retriever.relevance(QUESTION, hits) == pytest.approx(expected, abs=1e-4)
    library.close()

    b = Settings(home=tmp_path / "base")  # the default
    library = Library(b)
    library.ingest([policy])
    assert library.pointer.name is None and library.pointer.model == DEFAULT_EMBEDDING
    assert library.embedder is library.base_embedder()
    library.close()

    # a library from before vectors.json: documents in its catalog, no pointer -> built with embedding_model
    s.vectors_pointer_path.unlink()
    old = Library(s)
    assert old.pointer.name is None and old.pointer.model == DEFAULT_EMBEDDING
    assert retrievers.active(s, "embedder") is None
    old.close()
