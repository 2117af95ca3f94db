"""Fixtures shared by every test package: one real embedder per session, and fresh libraries in temp homes."""

from __future__ import annotations

import pytest

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
