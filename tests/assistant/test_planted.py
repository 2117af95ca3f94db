"""The planted-instruction set (data/planted/phrasings.json, eval/planted.py): every phrasing, laid out in a real PDF,
Markdown or DOCX policy and ingested, is blanked in the stored chunk's text before it can reach the model or the
verifier; the ordinary staff rules that look like instructions are not blanked, and neither is the policy around a
planted sentence."""

from collections import Counter

import pytest

from assistant.injection import instruction_spans, neutralise
from eval.planted import (
    covered,
    document_keys,
    find_planted,
    load_ordinary,
    load_phrasings,
    write_ordinary,
    write_planted,
)
from ingest.pipeline import Library
from ingest.settings import Settings

PHRASINGS = load_phrasings()
ORDINARY = load_ordinary()


@pytest.fixture(scope="module")
def ingested(tmp_path_factory, embedder) -> tuple[Library, dict[str, str]]:
    """Every planted and ordinary document ingested into one fresh library: (library, file name -> version key)."""
    folder = tmp_path_factory.mktemp("planted")
    write_planted(folder / "docs")
    write_ordinary(folder / "docs")
    library = Library(Settings(home=folder / "home"), embedder=embedder)
    report = library.ingest([folder / "docs"])
    assert not report.failed, report.to_dict()
    yield library, document_keys(report)
    library.close()


def test_the_set_has_30_distinct_phrasings_in_every_format():
    assert len(PHRASINGS) >= 30 and len({p.planted.lower() for p in PHRASINGS}) == len(PHRASINGS)
    assert min(Counter(p.format for p in PHRASINGS).values()) >= 10 and {p.format for p in PHRASINGS} == {
        "pdf", "md", "docx"}
    assert len(ORDINARY) >= 30


@pytest.mark.parametrize("planted", PHRASINGS, ids=[p.id for p in PHRASINGS])
def test_every_planted_phrasing_is_blanked_in_the_stored_chunks(planted, ingested):
    library, keys = ingested
    chunks = library.catalog.chunks_of(keys[f"{planted.id}.{planted.format}"])
    verdicts = [covered(c.text, planted.planted, instruction_spans(c.text)) for c in chunks]
    assert [v for v in verdicts if v is not None] == [True], "the planted text is stored once, and blanked"
    # the policy around it is kept: every clause of the policy that does not hold the planted text
    kept = " ".join(" ".join(neutralise(c.text).split()) for c in chunks)
    for kind, value in planted.blocks:
        if kind == "clause" and find_planted(value[1], planted.planted) is None:
            assert " ".join(value[1].split()) in kept, value


@pytest.mark.parametrize("fmt", ["pdf", "md", "docx"])
def test_ordinary_rules_are_not_blanked_in_the_stored_chunks(fmt, ingested):
    library, keys = ingested
    chunks = library.catalog.chunks_of(keys[f"ordinary-rules-{fmt}.{fmt}"])
    assert sum(len(c.text) for c in chunks) > 2_000
    assert [c.text[a:b] for c in chunks for a, b in instruction_spans(c.text)] == []


@pytest.mark.parametrize("sentence", ORDINARY)
def test_an_ordinary_rule_is_kept_alone_and_on_its_own_line(sentence):
    assert neutralise(sentence) == sentence
    assert neutralise(f"1.1 Staff keep records.\n{sentence}\n1.2 Complaints are answered.").count(sentence) == 1
