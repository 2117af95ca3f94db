"""Shared test helpers: one ingested copy of the sample corpus per test process."""

from __future__ import annotations

import functools
import tempfile
from pathlib import Path

from ingest.embedding import load_embedder
from ingest.pipeline import Library
from ingest.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT / "data" / "corpus"
GOLD = ROOT / "data" / "gold" / "sample_gold.jsonl"
FIXTURES = ROOT / "tests" / "fixtures"


@functools.lru_cache(maxsize=1)
def sample_home() -> Path:
    """A state directory with the sample corpus ingested (built once per process)."""
    home = Path(tempfile.mkdtemp(prefix="comply-sample-"))
    settings = Settings(home=home)
    lib = Library(settings, embedder=load_embedder(settings))
    report = lib.ingest([CORPUS])
    assert not report.failed, report.to_dict()
    lib.close()
    return home


def sample_library(**overrides) -> Library:
    """A Library over the shared sample home (read-only use)."""
    settings = Settings(home=sample_home(), **overrides)
    return Library(settings, embedder=load_embedder(settings))
