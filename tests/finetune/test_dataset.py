"""RAFT data on the sample corpus: gold sources numbered exactly as the inference prompt numbers them, abstention
targets when the gold is left out, and a split that never leaks validation questions into training."""

from __future__ import annotations

import json

import pytest

from assistant.citations import parse_markers
from assistant.prompt import ABSTAIN_REPLIES, PROMPT_VERSION, build_messages
from eval.datasets import load_dataset, load_jsonl, select_part, split
from eval.metrics import ranked_item_from_chunk, relevant
from finetune.dataset import DataConfig, ExampleBuilder, build_dataset, load_examples, sha256_files
from tests.library import GOLD, copy_sample_home

ABSTAIN_TEXT = ABSTAIN_REPLIES[PROMPT_VERSION]  # what new training data teaches the model to say


@pytest.fixture(scope="module")
def questions():
    return load_dataset(GOLD)


@pytest.fixture(scope="module")
def built(library, questions, tmp_path_factory):
    out = tmp_path_factory.mktemp("data")
    manifest = build_dataset(library, questions, out, DataConfig(p_abstain=0.2, val_fraction=0.25), name="sample")
    return out, manifest


def _sources(library, example):
    chunks = library.catalog.chunks(example.source_chunks)
    return [chunks[cid] for cid in example.source_chunks]


def test_gold_sources_are_cited_with_the_prompt_numbering(library, questions, built):
    out, _ = built
    by_id = {q.id: q for q in questions}
    examples = load_examples(out / "train.jsonl") + load_examples(out / "val.jsonl")
    cited = [ex for ex in examples if not ex.abstain]
    assert len(cited) >= 15
    for ex in cited:
        q = by_id[ex.id]
        sources = _sources(library, ex)
        assert len(sources) == library.settings.top_k
        # exactly the messages the assistant sends at inference, plus the target
        assert ex.messages[:-1] == build_messages(q.question, sources)
        assert ex.messages[-1]["role"] == "assistant"
        target = ex.messages[-1]["content"]
        assert ex.gold_sources and parse_markers(target) == ex.gold_sources
        for n in ex.gold_sources:
            assert relevant(ranked_item_from_chunk(sources[n - 1]), q), (ex.id, n)
            assert f"[{n}]" in ex.messages[-2]["content"]
        others = [c for i, c in enumerate(sources, start=1) if i not in ex.gold_sources]
        assert not any(relevant(ranked_item_from_chunk(c), q) for c in others)


def test_cash_threshold_target_quotes_the_gold_sentence(library, questions):
    q = next(q for q in questions if q.id == "aml-cash-threshold")
    ex = ExampleBuilder(library, DataConfig(p_abstain=0.0)).build(q)
    n = ex.gold_sources[0]
    assert ex.messages[-1]["content"].startswith(f"According to [{n}], ")
    assert "above EUR 10,000" in ex.messages[-1]["content"]


def test_gold_left_out_gives_the_abstention_target(library, questions, built):
    out, manifest = built
    by_id = {q.id: q for q in questions}
    examples = load_examples(out / "train.jsonl") + load_examples(out / "val.jsonl")
    abstained = [ex for ex in examples if ex.abstain]
    assert abstained and manifest["train"]["abstain"] + manifest["val"]["abstain"] == len(abstained)
    for ex in abstained:
        assert ex.messages[-1]["content"] == ABSTAIN_TEXT
        assert ex.gold_sources == []
        assert not any(relevant(ranked_item_from_chunk(c), by_id[ex.id]) for c in _sources(library, ex))
    # every unanswerable question abstains, and p_abstain=1 leaves every gold out
    assert all(ex.abstain for ex in examples if not by_id[ex.id].answerable)
    always = ExampleBuilder(library, DataConfig(p_abstain=1.0)).build(by_id["aml-cash-threshold"])
    assert always.abstain and always.messages[-1]["content"] == ABSTAIN_TEXT


def test_split_never_leaks_and_the_manifest_hashes_the_data(questions, built):
    out, manifest = built
    train_ids = [ex.id for ex in load_examples(out / "train.jsonl")]
    val_ids = [ex.id for ex in load_examples(out / "val.jsonl")]
    assert not set(train_ids) & set(val_ids)
    expected_train, expected_val = split(questions, 0.25, 0)
    assert train_ids == [q.id for q in expected_train]
    assert val_ids == [q.id for q in expected_val]
    assert len(val_ids) >= 0.15 * len(questions)
    assert [q.id for q in load_jsonl(out / "val_questions.jsonl")] == val_ids
    assert manifest["sha256"] == sha256_files([out / "train.jsonl", out / "val.jsonl"])
    assert json.loads((out / "manifest.json").read_text())["config"]["k"] == 3
    assert manifest["pii_replacements"] == {}


def test_build_data_takes_one_fixed_part_of_the_gold_set(questions, tmp_path):
    """`comply finetune build-data --part train` builds from that part alone (the tune and report parts an adapter
    is chosen and reported on stay unseen) and records it in the manifest."""
    from typer.testing import CliRunner  # here: only this test drives the CLI

    from assistant.app.cli.main import app as cli

    home, out = copy_sample_home(tmp_path / "home"), tmp_path / "data"
    result = CliRunner().invoke(cli, ["--home", str(home), "finetune", "build-data", "--dataset", str(GOLD),
                                      "--part", "train", "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "manifest.json").read_text())
    built = [ex.id for side in ("train", "val") for ex in load_examples(out / f"{side}.jsonl")]
    expected = [q.id for q in select_part(questions, "train")]
    assert manifest["part"] == "train" and manifest["questions"] == len(expected)
    assert sorted(built) == sorted(expected) and 0 < len(expected) < len(questions)
    result = CliRunner().invoke(cli, ["--home", str(home), "finetune", "build-data", "--dataset", str(GOLD),
                                      "--part", "holdout", "--out", str(tmp_path / "x"), "--json"])
    assert result.exit_code == 1 and "part must be one of train, tune, report" in result.output


def test_building_is_deterministic(library, questions):
    config = DataConfig(p_abstain=0.5, seed=7)
    first = [ExampleBuilder(library, config).build(q).to_json() for q in questions[:6]]
    second = [ExampleBuilder(library, config).build(q).to_json() for q in questions[:6]]
    assert first == second


def test_prompt_layout_gives_exactly_the_assistants_sources(library, questions):
    """Layout "prompt" (the default): the sources are the retriever's top k as the assistant's prompt shows them;
    the target cites the gold among them, and abstains when the retriever did not put the gold in the top k."""
    from assistant.retrieval import Retriever

    retriever = Retriever(library)
    k = library.settings.top_k
    builder = ExampleBuilder(library, DataConfig(p_abstain=0.0, layout="prompt"))
    kinds = set()
    for q in questions:
        ex = builder.build(q)
        top = [r.chunk for r in retriever.retrieve(q.question, k)]
        gold = [i for i, c in enumerate(top, start=1) if relevant(ranked_item_from_chunk(c), q)]
        if q.answerable and gold:
            assert not ex.abstain and ex.source_chunks == [c.chunk_id for c in top], q.id
            assert ex.gold_sources == gold and parse_markers(ex.messages[-1]["content"]) == gold
            kinds.add("cited")
        else:
            assert ex.abstain and ex.gold_sources == [] and ex.messages[-1]["content"] == ABSTAIN_TEXT, q.id
            assert ex.gold_found_by == "none"
            assert not any(relevant(ranked_item_from_chunk(c), q) for c in _sources(library, ex))
            kinds.add("abstain")
    assert kinds == {"cited", "abstain"}
    # left out for abstention: the gold's places go to the next distractors, the others keep their rank
    q = next(q for q in questions if q.id == "aml-cash-threshold")
    ex = ExampleBuilder(library, DataConfig(p_abstain=1.0, layout="prompt")).build(q)
    ranked = [r.chunk for r in retriever.retrieve(q.question, 50)]
    distractors = [c.chunk_id for c in ranked if not relevant(ranked_item_from_chunk(c), q)]
    assert ex.abstain and ex.source_chunks == distractors[:k]


def test_raft_layout_keeps_the_retrievers_order_unless_shuffled(library, questions):
    """Layout "raft": gold plus distractors, numbered best-ranked first with order="retrieval"; with
    order="shuffled" (RAFT's recipe) some example departs from that order."""
    from assistant.retrieval import Retriever

    retriever = Retriever(library)
    answerable = [q for q in questions if q.answerable]
    departs = 0
    for order in ("retrieval", "shuffled"):
        builder = ExampleBuilder(library, DataConfig(p_abstain=0.0, layout="raft", order=order))
        for q in answerable:
            ex = builder.build(q)
            rank = {r.chunk.chunk_id: i for i, r in enumerate(retriever.retrieve(q.question, 50))}
            ranks = [rank.get(cid, len(rank)) for cid in ex.source_chunks]
            if order == "retrieval":
                assert ranks == sorted(ranks), (q.id, ranks)
            else:
                departs += ranks != sorted(ranks)
    assert departs >= 3
