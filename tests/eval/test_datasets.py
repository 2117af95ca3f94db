"""Loaders, sampling and splitting."""

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

ROOT = Path(__file__).resolve().parents[2]
SAMPLE_GOLD = ROOT / "data" / "gold" / "sample_gold.jsonl"

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


def test_load_jsonl_fields(tmp_path):
    qs = load_jsonl(write_lines(tmp_path / "g.jsonl", [GOOD, "", NONE]))
    assert [q.id for q in qs] == ["q1", "q2"]
    q1, q2 = qs
    assert q1.answerable and q1.answer == "EUR 10,000"
    assert q1.evidence == [Evidence("aml.pdf", 4, "3.1.(c)", "above EUR 10,000")]
    assert q1.also == [Evidence("aml.pdf", 2, None, None)]
    assert not q2.answerable and q2.evidence == [] and q2.answer is None


def test_optional_fields_default(tmp_path):
    row = {"id": "q", "question": "?", "answerable": True, "evidence": [{"document": "x"}]}
    (q,) = load_jsonl(write_lines(tmp_path / "g.jsonl", [row]))
    assert q.answer is None and q.also == [] and q.evidence == [Evidence("x")]


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        ("{not json", "invalid JSON"),
        ("[1, 2]", "JSON object"),
        ({**GOOD, "evidence": []}, "no evidence"),
        ({k: v for k, v in GOOD.items() if k != "evidence"}, "no evidence"),
        ({**GOOD, "answerable": "yes"}, "answerable"),
        ({**GOOD, "question": ""}, "question"),
        ({**GOOD, "id": None}, "id"),
        ({**GOOD, "id": "q2"}, "duplicate id"),
        ({**GOOD, "id": "q3", "evidence": [{"page": 3}]}, "document"),
        ({**GOOD, "id": "q3", "evidence": [{"document": "a", "page": "4"}]}, "page"),
        ({**GOOD, "id": "q3", "also": {"document": "a"}}, "'also' must be a list"),
    ],
)
def test_bad_lines_report_line_number(tmp_path, bad, reason):
    path = write_lines(tmp_path / "g.jsonl", [NONE, "", bad])
    with pytest.raises(DatasetError) as e:
        load_jsonl(path)
    assert e.value.line == 3
    assert reason in e.value.reason
    assert str(path) in str(e.value) and ":3:" in str(e.value)


def test_sample_gold_file():
    qs = load_jsonl(SAMPLE_GOLD)
    assert len(qs) == 35
    assert sum(not q.answerable for q in qs) == 8
    assert all(q.evidence for q in qs if q.answerable)
    assert all(not q.evidence for q in qs if not q.answerable)
    assert load_dataset(SAMPLE_GOLD) == qs


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
    {"QuestionID": "u2", "Question": "Q2", "Passages": [{"DocumentID": 11, "PassageID": "1.1.2", "Passage": ""}],
     "Group": 1},
]


def test_load_obliqa(tmp_path):
    path = tmp_path / "dev.json"
    path.write_text(json.dumps(OBLIQA), encoding="utf-8")
    qs = load_obliqa(path)
    assert [q.id for q in qs] == ["u1", "u2"]
    assert all(q.answerable and q.answer is None and q.also == [] for q in qs)
    assert qs[0].evidence[0] == Evidence("9", None, "6.1.3.(a)", "The Fund Manager of a Domestic Fund ...")
    assert qs[1].evidence == [Evidence("11", None, "1.1.2", None)]  # empty passage text -> no quote
    assert load_dataset(path) == qs
    assert load_dataset(path, format="obliqa") == qs


def test_load_obliqa_errors(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"QuestionID": "x"}), encoding="utf-8")
    with pytest.raises(DatasetError):
        load_obliqa(bad)
    bad.write_text(json.dumps([{"QuestionID": "x", "Question": "q", "Passages": []}]), encoding="utf-8")
    with pytest.raises(DatasetError, match="Passages"):
        load_obliqa(bad)
    bad.write_text("[{", encoding="utf-8")
    with pytest.raises(DatasetError, match="invalid JSON"):
        load_obliqa(bad)


def test_load_dataset_format_errors(tmp_path):
    with pytest.raises(DatasetError):
        load_dataset(tmp_path / "gold.csv")
    with pytest.raises(ValueError):
        load_dataset(SAMPLE_GOLD, format="csv")
    with pytest.raises(DatasetError, match="cannot read"):
        load_jsonl(tmp_path / "missing.jsonl")


def _qs(n):
    return [GoldQuestion(f"q{i}", f"question {i}", True, None, [Evidence("d")], []) for i in range(n)]


def test_sample_is_deterministic():
    qs = _qs(50)
    a, b = sample(qs, 10, seed=1), sample(qs, 10, seed=1)
    assert a == b and len(a) == 10 and len({q.id for q in a}) == 10
    assert sample(qs, 10, seed=2) != a
    assert sample(qs, 100) == qs
    assert sample(qs, 0) == []


def test_split_is_stable_when_questions_are_added():
    qs = _qs(200)
    train, val = split(qs, 0.2, seed=0)
    assert len(train) + len(val) == 200
    assert {q.id for q in train}.isdisjoint({q.id for q in val})
    assert 20 <= len(val) <= 60
    train2, val2 = split(qs + _qs(400)[200:], 0.2, seed=0)
    assert {q.id for q in val} <= {q.id for q in val2}
    assert {q.id for q in train} <= {q.id for q in train2}
    assert split(qs, 0.2, seed=1)[1] != val
    assert split(qs, 0.0)[1] == [] and split(qs, 1.0)[0] == []
