"""Answer a question: retrieve -> (abstain early?) -> generate with numbered sources -> verify -> Answer.

`Assistant.stream` yields text pieces as the model writes them (`Draft`: each says whether the draft so far looks
likely to pass the checks) and finally the verified `Answer`; `Assistant.ask` returns only the Answer.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

from assistant.adapters import adapter_base, check_adapter, check_base, prompt_version, read_card
from assistant.citations import build_verifier, is_abstention, make_citation, valid_markers
from assistant.gate import CitationGate
from assistant.models import base_prompt_version
from assistant.prompt import ABSTAIN_TEXT, PROMPT_VERSION, build_messages, load_few_shot
from assistant.rerank import abstain_rule, load_abstain_model
from assistant.retrieval import RetrievalFilter, Retriever, dated_filter
from assistant.types import AbstainReason, Answer, Reading, Retrieved
from assistant.words import parse_markers
from ingest.pipeline import Library
from ingest.settings import Settings
from ingest.types import iso_date


def resolve_adapter(settings: Settings, adapter: str | None) -> str | None:
    """An adapter argument or setting -> a peft folder path or None.

    'none' means the base model; a path is used as is; a name is looked up in the adapter registry
    (`<home>/adapters/<name>`); unset means the registry's active adapter, if any and if it was trained for the
    configured generator."""
    choice = adapter if adapter is not None else settings.adapter
    if choice is not None and choice.lower() == "none":
        return None
    if choice:
        path = Path(choice)
        if path.is_dir():
            return str(path)
        named = settings.adapters_dir / choice
        if named.is_dir():
            return str(named)
        raise FileNotFoundError(f"adapter '{choice}' is neither a folder nor a registered adapter name")
    active = settings.adapters_dir / "ACTIVE"
    if active.is_file():
        name = active.read_text().strip()
        if name and (settings.adapters_dir / name).is_dir():
            # an adapter of another base model (e.g. the 135M one after the default became the 1.5B) is left out
            base = adapter_base(settings.adapters_dir / name)
            if base is None or base == settings.generator_model:
                return str(settings.adapters_dir / name)
    return None


def _prompt_version(settings: Settings, adapter: str | None) -> int:
    """The prompt wording to use: the one the adapter was trained on, else the one measured for the base model."""
    if not adapter:
        return settings.prompt_version or base_prompt_version(settings, PROMPT_VERSION)
    return prompt_version(Path(adapter))


def min_confidence(settings: Settings, adapter: str | None) -> float:
    """The answer confidence below which the assistant abstains: the setting when set, else the threshold
    calibrated for the adapter (its card's `calibration.min_confidence`), else 0 (no gate)."""
    if settings.min_confidence is not None:
        return settings.min_confidence
    if adapter:
        value = (read_card(Path(adapter)).get("calibration") or {}).get("min_confidence")
        if value is not None:
            return float(value)
    return 0.0


def citation_gate(settings: Settings, adapter: str | None) -> CitationGate | None:
    """The citation gate in effect: the one fitted on the adapter's card (`citation_gate`), with the
    `min_citation_score` setting as its threshold when set, else the card's calibrated one. None without a fitted
    gate: the setting alone has no model to score with. A gate of threshold 0 scores answers and withholds none."""
    if not adapter:
        return None
    fitted = read_card(Path(adapter)).get("citation_gate")
    if not fitted:
        return None
    gate = CitationGate.from_dict(fitted)
    if settings.min_citation_score is not None:
        gate.threshold = settings.min_citation_score
    return gate


def answer_confidence(tokenizer, trace: list[tuple[int, float]], n_sources: int) -> float | None:
    """The probability the model gave its answer's opening up to and including its first citation marker `[n]`
    naming one of the n_sources (the product of the token probabilities in `trace`); None when it wrote none."""
    ids: list[int] = []
    p = 1.0
    for token, prob in trace:
        ids.append(token)
        p *= prob
        if "]" in tokenizer.decode([token]) and valid_markers(tokenizer.decode(ids, skip_special_tokens=True),
                                                             n_sources):
            return p
    return None


class Draft(str):
    """A piece of the answer's text as the model writes it: a str, as `Assistant.stream` has always yielded, which
    also says whether the draft so far is `likely` to stand (`DraftCheck`), so that a chat can hide a draft that its
    checks will withhold."""

    likely: bool

    def __new__(cls, piece: str, likely: bool) -> Draft:
        draft = super().__new__(cls, piece)
        draft.likely = likely
        return draft


class DraftCheck:
    """Whether the answer written so far looks likely to pass the checks that can be judged while it is written: it
    cites only sources it was given; with a confidence gate, the model's confidence (known at its first citation,
    `answer_confidence`) is at or above its threshold; with the citation gate or strict citations, it cites a source
    and every source it cites so far passes them. What a check needs to judge and is not written yet counts as not
    likely. Without gates a draft is likely from its first word: the sentence checks run only on the finished
    answer, so a draft that looked likely may still be flagged or withheld."""

    def __init__(self, assistant: Assistant, sources: list[Retrieved], strict: bool,
                 trace: list[tuple[int, float]]):
        self.assistant, self.sources, self.strict, self.trace = assistant, sources, strict, trace
        gate = assistant.gate
        self.needs_citation = strict or bool(gate and gate.threshold)
        self.confidence: float | None = None  # known once the first citation is written
        self.passed: dict[int, bool] = {}  # source number -> whether it passes the gates

    def likely(self, text: str) -> bool:
        """Whether the draft `text` (all of it so far) looks likely to stand."""
        cited = parse_markers(text)
        if any(not 1 <= n <= len(self.sources) for n in cited) or (self.needs_citation and not cited):
            return False
        threshold = self.assistant.min_confidence
        if threshold:
            if self.confidence is None and self.trace:
                self.confidence = answer_confidence(self.assistant.generator.tokenizer, self.trace,
                                                    len(self.sources))
            if self.confidence is None or self.confidence < threshold:
                return False
        return all(self._passes(n) for n in cited)

    def _passes(self, n: int) -> bool:
        if n not in self.passed:
            gate = self.assistant.gate
            self.passed[n] = not (gate and gate.threshold and gate.probability(self.sources, n) < gate.threshold) \
                and not (self.strict and not _consensus(self.sources[n - 1]))
        return self.passed[n]


class Assistant:
    """Grounded question answering over a Library with a local generator."""

    def __init__(self, settings: Settings, library: Library | None = None, adapter: str | None = None,
                 retrieval_mode: str = "hybrid"):
        self.settings = settings
        self.library = library or Library(settings)
        self.retriever = Retriever(self.library, mode=retrieval_mode, settings=settings)
        self.verifier = build_verifier(settings, self.library.base_embedder())  # calibrated on it
        self.adapter = resolve_adapter(settings, adapter)
        if self.adapter:  # a damaged or foreign adapter is a clear AdapterError here, not an error mid-answer
            check_adapter(Path(self.adapter))
            check_base(Path(self.adapter), settings)
        self.prompt_version = _prompt_version(settings, self.adapter)
        self.examples = load_few_shot(settings.few_shot_file, settings.few_shot_count)
        self.min_confidence = min_confidence(settings, self.adapter)
        self.gate = citation_gate(settings, self.adapter)
        self.abstain_rule = abstain_rule(settings)
        self._generator = None

    @property
    def generator(self):
        if self._generator is None:
            # only when the first answer is written, never for an Assistant that only retrieves
            from assistant.generation import load_generator  # lazy: transformers, over 1 s to import

            self._generator = load_generator(self.settings, adapter=self.adapter)
        return self._generator

    def _check_request(self, question: str, document_ids: list[str] | None, as_of: str | None,
                       k: int | None) -> str | None:
        if not (question or "").strip():
            raise ValueError("the question is empty")
        if k is not None and k < 1:
            raise ValueError(f"k must be at least 1 (got {k})")
        as_of = iso_date(as_of, "as-of date")
        catalog = self.library.catalog
        unknown = [d for d in document_ids or [] if not catalog.versions(d)]
        if unknown:
            raise ValueError(f"unknown document id(s): {', '.join(unknown)} (see `comply docs list`)")
        if not catalog.documents(status="active") and not catalog.documents(status="superseded"):
            raise ValueError("the library has no documents yet: ingest some first (`comply ingest PATH`)")
        return as_of

    def ask(self, question: str, **kwargs) -> Answer:
        """The verified answer to one question."""
        answer = None
        for item in self.stream(question, **kwargs):
            if isinstance(item, Answer):
                answer = item
        assert answer is not None
        return answer

    def stream(self, question: str, *, document_ids: list[str] | None = None, as_of: str | None = None,
               include_superseded: bool = False, history: list[tuple[str, str]] | None = None,
               k: int | None = None, consensus: bool | None = None) -> Iterator[Draft | Reading | Answer]:
        """Yield a Reading once the passages are found (unless the answer is an early abstention), the answer's text
        pieces as generated (`Draft`s, each saying whether the draft so far looks likely to stand), then the final
        Answer. `consensus` overrides the
        `consensus_citations` setting for this question (strict citations). A request that cannot be answered as
        asked (empty question, a date that is not YYYY-MM-DD, unknown document ids, k < 1, an empty library) is a
        ValueError saying which, not an abstention."""
        as_of = self._check_request(question, document_ids, as_of, k)
        t0 = time.perf_counter()
        query = retrieval_query(question, history)
        # a question that names its documents' date ("the policy in force in 2023") is answered from that date's
        # versions when no as-of date was given; the answer says so
        flt = dated_filter(query, RetrievalFilter(document_ids=document_ids, as_of=as_of,
                                                  include_superseded=include_superseded))
        sources = self.retriever.retrieve(query, k or self.settings.top_k, flt)
        for item in self._answer(question, query, history, sources, t0, consensus):
            if isinstance(item, Answer) and flt.named is not None:
                item.in_force = flt.named.record()
            yield item

    def _answer(self, question: str, query: str, history: list[tuple[str, str]] | None, sources: list[Retrieved],
                t0: float, consensus: bool | None) -> Iterator[Draft | Reading | Answer]:
        relevance = self.retriever.relevance(question, sources)
        timings = {"retrieval_ms": _ms(t0)}
        if not sources or relevance < self.settings.abstain_threshold:
            timings.update(first_token_ms=0.0, total_ms=_ms(t0))
            yield self._abstain(question, sources, timings, raw="",
                                reason=AbstainReason.NO_SOURCES if not sources else AbstainReason.LOW_RELEVANCE)
            return
        if self.abstain_rule and self.abstain_rule.asks(relevance):
            t1 = time.perf_counter()
            best = self._best_logit(query, sources)
            timings["addressed_ms"] = _ms(t1)
            if best is not None and best < self.abstain_rule.logit:
                timings.update(first_token_ms=0.0, total_ms=_ms(t0))
                yield self._abstain(question, sources, timings, raw="", reason=AbstainReason.NOT_ADDRESSED)
                return
        yield Reading(len(sources), query)
        # the conversation goes into the prompt only when it went into the search: a question that stands on its own
        # is answered alone, so the model is not led to repeat the previous answer
        context = history if query != question else None
        messages = build_messages(question, [s.chunk for s in sources], context, version=self.prompt_version,
                                  examples=self.examples)
        pieces: list[str] = []
        first = None
        trace: list[tuple[int, float]] = []
        check = DraftCheck(self, sources, self.settings.consensus_citations if consensus is None else consensus, trace)
        written = ""
        for piece in self.generator.stream(messages, self.settings.max_new_tokens, trace):
            if first is None:
                first = _ms(t0)
            pieces.append(piece)
            written += piece
            yield Draft(piece, check.likely(written))
        raw = "".join(pieces).strip()
        timings["first_token_ms"] = first or _ms(t0)
        # decoding speed: the tokens after the first, over the time they took
        timings.update(decode_ms=round(_ms(t0) - timings["first_token_ms"], 1), generated_tokens=len(trace))
        confidence = answer_confidence(self.generator.tokenizer, trace, len(sources)) if trace else None
        answer = self._finish(question, raw, sources, timings, confidence, consensus)
        answer.timings["total_ms"] = _ms(t0)
        yield answer

    def _best_logit(self, query: str, sources: list[Retrieved]) -> float | None:
        """The reranker's best score of the sources for the query (the search query: a follow-up is judged with the
        question it follows); the scores retrieval already has when it reranked with the same model."""
        if all(s.rerank_score is not None for s in sources) and self.settings.rerank:
            return max(s.rerank_score for s in sources)
        model = load_abstain_model(self.settings)
        return max(model.score(query, [s.chunk.text for s in sources])) if model else None

    def _finish(self, question: str, raw: str, sources: list[Retrieved], timings: dict,
                confidence: float | None = None, consensus: bool | None = None) -> Answer:
        if not raw or is_abstention(raw):
            return self._abstain(question, sources, timings, raw, confidence=confidence, reason=AbstainReason.MODEL)
        if self.min_confidence and (confidence is None or confidence < self.min_confidence):
            return self._abstain(question, sources, timings, raw, confidence=confidence, reason=AbstainReason.LOW_CONFIDENCE)
        sentences, quotes = self.verifier.verify(raw, sources, question)
        if not any(s.supported for s in sentences):
            return self._abstain(question, sources, timings, raw, sentences=sentences, confidence=confidence,
                                 reason=AbstainReason.UNSUPPORTED)
        cited = sorted({n for s in sentences for n in s.citations})
        score = self.gate.score(sources, cited) if self.gate else None
        if self.gate and self.gate.threshold and (score is None or score < self.gate.threshold):
            return self._abstain(question, sources, timings, raw, sentences=sentences, confidence=confidence,
                                 reason=AbstainReason.LOW_CITATION_SCORE, citation_score=score)
        strict = self.settings.consensus_citations if consensus is None else consensus
        if strict and not all(_consensus(sources[n - 1]) for n in cited):
            return self._abstain(question, sources, timings, raw, sentences=sentences, confidence=confidence,
                                 reason=AbstainReason.NO_CONSENSUS, citation_score=score)
        citations = [make_citation(n, sources[n - 1], quotes.get(n)) for n in cited]
        text = " ".join(_with_markers(s.text, s.attached) for s in sentences)
        return Answer(question=question, answer=text, abstained=False, sentences=sentences, citations=citations,
                      model=self.generator.model_name, adapter=self.adapter, timings=timings,
                      sources=[make_citation(n, s, None) for n, s in enumerate(sources, start=1)], raw_answer=raw,
                      confidence=confidence, citation_score=score)

    def _abstain(self, question: str, sources: list[Retrieved], timings: dict, raw: str,
                 sentences=None, confidence: float | None = None, reason: AbstainReason | None = None,
                 citation_score: float | None = None) -> Answer:
        model = self._generator.model_name if self._generator is not None else self.settings.generator_model
        text = WITHHELD_TEXT if reason is not None and reason.withheld else ABSTAIN_TEXT
        return Answer(question=question, answer=text, abstained=True, sentences=sentences or [],
                      citations=[], model=model, adapter=self.adapter, timings=timings,
                      sources=[make_citation(n, s, None) for n, s in enumerate(sources, start=1)], raw_answer=raw,
                      confidence=confidence, abstain_reason=reason, citation_score=citation_score)


_FOLLOW_UP = re.compile(r"^(and|but|also|then|so|what about|how about|what if|for)\b"
                        r"|\b(it|its|they|them|their|this|these|those)\b", re.I)


def retrieval_query(question: str, history: list[tuple[str, str]] | None) -> str:
    """What to search for: a follow-up ("and for employees?", "when does it apply?", "for contractors?", any
    question of three words or fewer) is searched together with the previous question; a question that stands on
    its own ("What is the minimum password length?") is searched alone, so the last topic does not crowd out the new
    one."""
    if not history or (len(question.split()) > 3 and not _FOLLOW_UP.search(question)):
        return question
    return f"{history[-1][0]} {question}"


# Abstentions after the model wrote an answer that a check then refused: the documents may well answer the question,
# so the user is told the answer was withheld, not that the documents are silent.
WITHHELD_TEXT = "An answer was drafted, but it is withheld because it did not pass comply's checks."


def _consensus(source: Retrieved) -> bool:
    """Whether both retrievers rank this source first (hybrid retrieval; a single retriever has no consensus)."""
    return source.dense_rank == 1 and source.bm25_rank == 1


def _with_markers(text: str, attached: list[int]) -> str:
    """Append the citations the verifier attached, before the sentence's final punctuation is kept as is."""
    if not attached:
        return text
    return f"{text} " + "".join(f"[{n}]" for n in attached)


def _ms(t0: float) -> float:
    return round((time.perf_counter() - t0) * 1000, 1)
