"""Gold loaders (JSON Lines, ObliQA), sampling and splitting."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from eval.datasets import (
    DatasetError,
    Evidence,
    GoldQuestion,
    load_dataset,
    load_jsonl,
    load_obliqa,
    sample,
    split,
)
from tests.library import GOLD

GOOD = {
    "id": "q1",
    "question": "Above what amount?",
    "answerable": True,
    "answer": "EUR 10,000",
    "evidence": [{"document": "aml.pdf", "page": 4, "passage_id": "3.1.(c)", "quote": "above EUR 10,000"}],
    "also": [{"document": "aml.pdf", "page": 2, "passage_id": None}],
}
NONE = {"id": "q2", "question": "Crypto custody?", "answerable": False, "answer": None, "evidence": [], "also": []}


def write_lines(path: Path, rows) -> Path:
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    return path


def write_json(path: Path, data) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


# ---------- JSON Lines ----------

def test_load_jsonl_reads_every_field(tmp_path):
    qs = load_jsonl(write_lines(tmp_path / "g.jsonl", [GOOD, "", NONE]))
    assert qs == [
        GoldQuestion("q1", "Above what amount?", True, "EUR 10,000",
                     [Evidence("aml.pdf", 4, "3.1.(c)", "above EUR 10,000")], [Evidence("aml.pdf", 2)]),
        GoldQuestion("q2", "Crypto custody?", False, None, [], []),
    ]


def test_optional_fields_default(tmp_path):
    row = {"id": 7, "question": "?", "answerable": True, "evidence": [{"document": 9, "passage_id": 12}]}
    (q,) = load_jsonl(write_lines(tmp_path / "g.jsonl", [row]))
    assert (q.id, q.answer, q.also) == ("7", None, [])
    assert q.evidence == [Evidence("9", passage_id="12")]


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        ("{not json", "invalid JSON"),
        ("[1, 2]", "JSON object"),
        ({k: v for k, v in GOOD.items() if k != "answerable"}, "missing 'answerable'"),
        ({**GOOD, "answerable": "yes"}, "'answerable' must be true or false"),
        ({**GOOD, "evidence": []}, "answerable question 'q1' has no evidence"),
        ({k: v for k, v in GOOD.items() if k != "evidence"}, "has no evidence"),
        ({**NONE, "id": "q3", "evidence": GOOD["evidence"]}, "unanswerable question 'q3' lists evidence"),
        ({**GOOD, "question": ""}, "'question'"),
        ({**GOOD, "id": None}, "'id'"),
        ({**GOOD, "id": "q2"}, "duplicate id 'q2' (first on line 1)"),
        ({**GOOD, "answer": 10}, "'answer' must be a string"),
        ({**GOOD, "evidence": [{"page": 3}]}, "evidence[0] needs a non-empty 'document'"),
        ({**GOOD, "evidence": [{"document": "a", "page": "4"}]}, "invalid 'page'"),
        ({**GOOD, "evidence": [{"document": "a", "page": 0}]}, "invalid 'page'"),
        ({**GOOD, "evidence": [{"document": "a", "pasage_id": "1"}]}, "unknown field(s) pasage_id"),
        ({**GOOD, "also": {"document": "a"}}, "'also' must be a list"),
        ({**GOOD, "also": ["a.pdf"]}, "also[0] must be an object"),
        ({**GOOD, "evidense": []}, "unknown field(s) evidense"),
    ],
)
def test_bad_lines_name_the_file_line_and_reason(tmp_path, bad, reason):
    path = write_lines(tmp_path / "g.jsonl", [NONE, "", bad])
    with pytest.raises(DatasetError) as e:
        load_jsonl(path)
    assert e.value.line_no == 3
    assert reason in e.value.reason
    assert str(e.value).startswith(f"{path}:3: ")


def test_sample_gold_file_loads():
    qs = load_jsonl(GOLD)
    assert len(qs) == 35 and sum(not q.answerable for q in qs) == 8
    assert load_dataset(GOLD) == qs


# ---------- ObliQA ----------

OBLIQA = [
    {
        "QuestionID": "u1",
        "Question": "Shari'a approval?",
        "Passages": [
            {"DocumentID": 9, "PassageID": "6.1.3.(a)", "Passage": "The Fund Manager of a Domestic Fund ..."},
            {"DocumentID": 9, "PassageID": "6.1.3.(b)", "Passage": "The Fund Manager of an Exempt Fund ..."},
        ],
        "Group": 2,
    },
    {"QuestionID": "u2", "Question": "Second section?",
     "Passages": [{"DocumentID": 7, "PassageID": "2.1", "Passage": "Second paragraph."}], "Group": 1},
]
# DocumentID 7 has two records keyed "2.1" (a multi-paragraph section), as 17 keys in the real corpus do.
CORPUS = {
    "9.json": [
        {"ID": "u-a", "DocumentID": 9, "PassageID": "6.1.3.(a)", "Passage": "The Fund Manager of a Domestic Fund ..."},
        {"ID": "u-b", "DocumentID": 9, "PassageID": "6.1.3.(b)", "Passage": "The Fund Manager of an Exempt Fund ..."},
    ],
    "7.json": [
        {"ID": "u-1", "DocumentID": 7, "PassageID": "2.1", "Passage": "First paragraph."},
        {"ID": "u-2", "DocumentID": 7, "PassageID": "2.1", "Passage": "Second paragraph."},
    ],
}


def write_corpus(folder: Path) -> Path:
    for name, records in CORPUS.items():
        write_json(folder / name, records)
    return folder


def test_load_obliqa(tmp_path):
    path = write_json(tmp_path / "dev.json", OBLIQA)
    qs = load_obliqa(path)
    assert [q.id for q in qs] == ["u1", "u2"]
    assert all(q.answerable and q.answer is None and q.also == [] for q in qs)
    assert qs[0].evidence == [Evidence("9", None, "6.1.3.(a)", "The Fund Manager of a Domestic Fund ..."),
                              Evidence("9", None, "6.1.3.(b)", "The Fund Manager of an Exempt Fund ...")]
    # the quote is what tells the gold "2.1" record from its sibling
    assert qs[1].evidence == [Evidence("7", None, "2.1", "Second paragraph.")]
    assert load_dataset(path) == load_dataset(path, format="obliqa") == qs


def test_load_obliqa_resolves_gold_against_the_corpus(tmp_path):
    docs = write_corpus(tmp_path / "docs")
    good = write_json(tmp_path / "dev.json", OBLIQA)
    assert load_obliqa(good, docs) == load_obliqa(good)
    assert load_dataset(good, documents_dir=docs) == load_obliqa(good)
    # a garbled gold text (one real dev passage is) takes its key's only record's text
    garbled = [{**OBLIQA[0], "Passages": [{"DocumentID": 9, "PassageID": "6.1.3.(a)", "Passage": "The Fund Ma###"}]}]
    (q,) = load_obliqa(write_json(tmp_path / "garbled.json", garbled), docs)
    assert q.evidence == [Evidence("9", passage_id="6.1.3.(a)", quote="The Fund Manager of a Domestic Fund ...")]
    # ... but on a shared key an unknown text cannot be resolved
    shared = [{**OBLIQA[1], "Passages": [{"DocumentID": 7, "PassageID": "2.1", "Passage": "Third paragraph."}]}]
    with pytest.raises(DatasetError, match="matches none of the 2 records"):
        load_obliqa(write_json(tmp_path / "shared.json", shared), docs)
    missing = [{**OBLIQA[1], "Passages": [{"DocumentID": 7, "PassageID": "9.9", "Passage": "x"}]}]
    with pytest.raises(DatasetError, match="passage 7/9.9 is not in"):
        load_obliqa(write_json(tmp_path / "missing.json", missing), docs)
    with pytest.raises(DatasetError, match="no ObliQA document files"):
        load_obliqa(good, tmp_path / "empty")


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        ({"QuestionID": "x"}, "JSON array of questions"),
        ([{"QuestionID": "x", "Question": "q", "Passages": []}], "non-empty Passages"),
        ([{"Question": "q", "Passages": []}], "needs a QuestionID"),
        ([{"QuestionID": "x", "Question": "q", "Passages": [{"DocumentID": 1}]}], "needs DocumentID and PassageID"),
        ([OBLIQA[0], OBLIQA[0]], "duplicate QuestionID 'u1'"),
    ],
)
def test_load_obliqa_errors(tmp_path, content, reason):
    with pytest.raises(DatasetError, match=reason.replace("(", r"\(")):
        load_obliqa(write_json(tmp_path / "bad.json", content))


def test_load_obliqa_invalid_json_names_the_line(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("[\n{", encoding="utf-8")
    with pytest.raises(DatasetError, match="invalid JSON") as e:
        load_obliqa(bad)
    assert e.value.line_no == 2


def test_load_dataset_formats(tmp_path):
    lines = write_lines(tmp_path / "gold.txt", [GOOD])
    assert load_dataset(lines) == load_jsonl(lines)  # sniffed from the first character
    array = write_json(tmp_path / "dev.data", OBLIQA)
    assert load_dataset(array) == load_obliqa(array)
    (tmp_path / "notes.txt").write_text("hello", encoding="utf-8")
    with pytest.raises(DatasetError, match="cannot tell the format"):
        load_dataset(tmp_path / "notes.txt")
    with pytest.raises(ValueError, match="unknown dataset format"):
        load_dataset(GOLD, format="csv")
    with pytest.raises(ValueError, match="ObliQA files only"):
        load_dataset(GOLD, documents_dir=tmp_path)
    with pytest.raises(DatasetError, match="cannot read"):
        load_jsonl(tmp_path / "missing.jsonl")


# ---------- sampling and splitting ----------

def questions(n: int, start: int = 0) -> list[GoldQuestion]:
    return [GoldQuestion(f"q{i}", f"question {i}", True, None, [Evidence("d")], []) for i in range(start, n)]


def test_sample_is_fixed_by_seed_and_keeps_input_order():
    qs = questions(50)
    a = sample(qs, 10, seed=1)
    assert a == sample(qs, 10, seed=1) == sample(list(reversed(qs)), 10, seed=1)[::-1]
    assert len({q.id for q in a}) == 10 and a == sorted(a, key=qs.index)
    assert sample(qs, 10, seed=2) != a
    assert sample(qs, 100) == qs and sample(qs, 0) == []
    # adding questions keeps the sample except where a new question outranks an old one
    assert len({q.id for q in a} & {q.id for q in sample(questions(55), 10, seed=1)}) >= 5


def test_split_is_stable_when_questions_are_added():
    qs = questions(200)
    train, val = split(qs, 0.2, seed=0)
    assert len(train) + len(val) == 200 and {q.id for q in train}.isdisjoint({q.id for q in val})
    assert 20 <= len(val) <= 60
    train2, val2 = split(qs + questions(400, start=200), 0.2, seed=0)
    assert {q.id for q in val} <= {q.id for q in val2} and {q.id for q in train} <= {q.id for q in train2}
    assert split(qs, 0.2, seed=1)[1] != val
    assert split(qs, 0.0)[1] == [] and split(qs, 1.0)[0] == []
    with pytest.raises(ValueError):
        split(qs, 1.5)


def test_the_fixed_parts_split_a_set_once_by_id_and_never_overlap():
    from eval.datasets import GoldQuestion, part_of, select_part

    questions = [GoldQuestion(id=f"q{i}", question=f"question {i}?", answerable=True) for i in range(2000)]
    parts = {name: select_part(questions, name) for name in ("train", "tune", "report")}
    ids = [q.id for part in parts.values() for q in part]
    assert sorted(ids) == sorted(q.id for q in questions)  # every question in exactly one part
    assert 0.65 < len(parts["train"]) / 2000 < 0.75 and 0.07 < len(parts["tune"]) / 2000 < 0.13
    assert part_of("q7") == part_of("q7") and all(part_of(q.id) == "report" for q in parts["report"])
    assert [q.id for q in select_part(questions[::-1], "tune")] == [q.id for q in parts["tune"]][::-1]  # input order
    with pytest.raises(ValueError, match="train, tune, report"):
        select_part(questions, "test")


def test_the_recorded_obliqa_parts_are_the_ones_the_rule_gives():
    from eval.datasets import PARTS_SEED, part_of
    from tests.library import ROOT

    recorded = json.loads((ROOT / "data" / "splits" / "obliqa_dev_parts.json").read_text())
    assert recorded["parts_seed"] == PARTS_SEED and len(recorded["parts"]["report"]) >= 500
    for name, ids in recorded["parts"].items():
        assert all(part_of(qid) == name for qid in ids), name
