"""The labelled verification set: the file validates and covers every kind, and the benchmark runs over it with
the real embedding model."""

from collections import Counter

from eval.bench.verification import main
from eval.verification_set import (
    ACCEPTANCE_IDS,
    MIN_ITEMS,
    MIN_PER_KIND,
    MIN_SUPPORTED_SHARE,
    SUPPORTED_KINDS,
    WRONG_KINDS,
    load_items,
    to_retrieved,
)


def test_the_set_validates_and_covers_every_kind():
    items = load_items()  # schema, labels, kinds, 2-4 sources, cited numbers among them, unique ids
    assert len(items) >= MIN_ITEMS
    kinds = Counter(i.kind for i in items)
    assert {k: kinds[k] for k in (*WRONG_KINDS, *SUPPORTED_KINDS) if kinds[k] < MIN_PER_KIND} == {}
    assert sum(not i.wrong for i in items) / len(items) >= MIN_SUPPORTED_SHARE
    assert set(ACCEPTANCE_IDS) <= {i.id for i in items}


def test_acceptance_examples_are_the_issue_s_cases():
    items = {i.id: i for i in load_items()}
    email = items["accept-email-retention"]
    assert email.wrong and email.kind == "splice" and "email archive" in email.sentence
    assert "3 years" in email.sources[0].text  # the right clause (4.4) is on screen
    assert items["accept-gdpr-consent"].sources[0].clause == "Article 8"
    assert "APPROVED" in items["accept-approved"].sources[0].text


def test_sources_become_chunks_the_verifier_can_check():
    item = load_items()[0]
    sources = to_retrieved(item)
    assert [s.chunk.text for s in sources] == [s.text for s in item.sources]
    assert len({s.chunk.chunk_id for s in sources}) == len(sources)


def test_bench_runs_on_a_subset_with_the_lexical_verifier(capsys):
    assert main(["--checks", "lexical", "--limit", "20"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("20 items")
    assert "| wrong flagged (recall), 95% CI |" in out and "| kind | label | items | lexical flagged |" in out
