"""Shared test helpers: one ingested copy of the sample corpus per test process."""

from __future__ import annotations

import atexit
import functools
import shutil
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
    atexit.register(shutil.rmtree, home, ignore_errors=True)  # half a GB with its converted model: not left behind
    settings = Settings(home=home)
    lib = Library(settings, embedder=load_embedder(settings))
    report = lib.ingest([CORPUS])
    assert not report.failed, report.to_dict()
    lib.close()
    return home


def copy_sample_home(dest: Path) -> Path:
    """A writable copy of the sample home at dest; its converted models (half a GB) are linked, not copied."""
    from assistant.models import resolve_generator

    source = sample_home()
    resolve_generator(Settings(home=source))  # the default generator converted once, in the shared home
    shutil.copytree(source, dest, ignore=shutil.ignore_patterns("models"))
    (dest / "models").symlink_to(source / "models", target_is_directory=True)
    return dest


def sample_library(**overrides) -> Library:
    """A Library over the shared sample home (read-only use)."""
    settings = Settings(home=sample_home(), **overrides)
    return Library(settings, embedder=load_embedder(settings))
