"""Typed results of the assistant: retrieved sources, citations, verified sentences, answers."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import StrEnum

from ingest.types import Chunk


@dataclass
class Retrieved:
    """A chunk returned by retrieval, with its fused score, the per-retriever ranks behind it and, when the
    candidates were reranked, the cross-encoder's score (which then decides the order)."""

    chunk: Chunk
    score: float
    dense_rank: int | None = None
    bm25_rank: int | None = None
    dense_score: float | None = None
    bm25_score: float | None = None
    rerank_score: float | None = None
    fused_rank: int | None = None


@dataclass
class Citation:
    """A numbered source as shown to the user: where it is and the span that supports the answer."""

    n: int
    document_id: str
    file: str
    title: str
    page: int | None
    clause: str | None
    quote: str
    score: float  # the fused retrieval score (RRF)
    chunk_id: str = ""
    page_label: str | None = None
    passage_id: str | None = None
    content_hash: str = ""
    version: int = 1
    char_start: int = 0
    char_end: int = 0
    rerank_score: float | None = None  # the cross-encoder's score, when the sources were reranked


@dataclass
class Sentence:
    """One sentence of an answer with the sources it cites and the verifier's verdict."""

    text: str
    citations: list[int] = field(default_factory=list)
    supported: bool = False
    support_score: float = 0.0
    attached: list[int] = field(default_factory=list)  # citations the verifier added
    # the model's own citations when the verifier replaced them by the source the sentence is in
    corrected: list[int] = field(default_factory=list)
    issue: str | None = None  # what a specific check found wrong, e.g. a word the source does not say
    # Which checks refused the sentence, by code: "support" (the lexical/semantic score is under the threshold),
    # "changed" (a word or number the source does not say), "misplaced" (a page or clause the source is not),
    # "entailment" (the entailment model finds the cited passage does not state it), "off_question" (the cited
    # passage does not address the question, or clearly less than another source shown), "instruction" (text
    # addressed to the assistant), "incomplete" (the sentence stops mid-clause). Empty when supported.
    flags: list[str] = field(default_factory=list)
    entailment: float | None = None  # the entailment model's probability that the cited passage states the sentence


@dataclass(frozen=True)
class Reading:
    """Progress of an answer, yielded by `Assistant.stream` between the search and the draft: how many passages the
    model is reading, and the query they were searched with (the question, or a follow-up joined to the previous
    question)."""
    passages: int
    query: str


class AbstainReason(StrEnum):
    """Why the assistant gave no answer. A StrEnum: it is its value wherever it is written (JSON, the audit trail, the
    eval records) and compares equal to it."""

    NO_SOURCES = "no_sources"  # nothing retrieved (an empty library, or a filter that leaves nothing)
    LOW_RELEVANCE = "low_relevance"  # the best passage is too far from the question to ask the model
    NOT_ADDRESSED = "not_addressed"  # the reranker finds that no passage found addresses the question
    MODEL = "model"  # the model said the sources do not answer it
    LOW_CONFIDENCE = "low_confidence"  # drafted, but the model's confidence is below the minimum
    UNSUPPORTED = "unsupported"  # drafted, but no sentence is supported by the passage it cites
    LOW_CITATION_SCORE = "low_citation_score"  # drafted, but the cited passage is not clearly the right one
    NO_CONSENSUS = "no_consensus"  # drafted, but strict citations: the two retrievers do not both rank it first

    @property
    def withheld(self) -> bool:
        """An answer was drafted and then withheld by a check (as opposed to none written)."""
        return self not in (AbstainReason.NO_SOURCES, AbstainReason.LOW_RELEVANCE, AbstainReason.NOT_ADDRESSED,
                            AbstainReason.MODEL)


@dataclass
class Answer:
    """A full answer: text, verified sentences, citations, abstention, and provenance."""

    question: str
    answer: str
    abstained: bool
    sentences: list[Sentence]
    citations: list[Citation]
    model: str
    adapter: str | None
    timings: dict[str, float]
    sources: list[Citation] = field(default_factory=list)  # every retrieved source, numbered as in the prompt
    raw_answer: str = ""
    # The generator's probability of its answer up to and including its first valid citation marker (None without
    # one); answers below the minimum confidence are abstentions (`Assistant.min_confidence`).
    confidence: float | None = None
    # The citation gate's probability that the cited sources are right ones (the lowest over them; None without a
    # gate on the adapter's card or without citations); below the gate's threshold an answer is withheld.
    citation_score: float | None = None
    abstain_reason: AbstainReason | None = None  # why an abstention
    # the period the question named for its documents ({"from", "to", "words"}), whose versions were searched
    in_force: dict | None = None

    def to_dict(self) -> dict:
        return asdict(self)

    def verified(self, n: int) -> bool:
        """Whether source [n] supports at least one sentence of the answer as the verifier judged it."""
        return any(s.supported and n in s.citations for s in self.sentences)

    def to_record(self) -> dict:
        """The documented JSON shape of an answer, the one serialisation: what `comply ask --json` prints, `POST
        /v1/ask` returns, the audit trail's `answer` record and the evaluation's results.jsonl hold."""
        return {
            "question": self.question,
            "answer": self.answer,
            "abstained": self.abstained,
            "sentences": [{"text": s.text, "citations": s.citations, "supported": s.supported,
                           "support_score": s.support_score, "attached_by_verifier": s.attached,
                           "corrected_by_verifier": s.corrected, "issue": s.issue, "flags": s.flags,
                           "entailment": s.entailment}
                          for s in self.sentences],
            "citations": [{"n": c.n, "document_id": c.document_id, "version": c.version, "file": c.file,
                           "title": c.title, "page": c.page, "page_label": c.page_label, "clause": c.clause,
                           "quote": c.quote, "score": c.score, "rerank_score": c.rerank_score,
                           "chunk_id": c.chunk_id, "content_hash": c.content_hash} for c in self.citations],
            "sources": [{"n": c.n, "document_id": c.document_id, "version": c.version, "title": c.title,
                         "page": c.page, "page_label": c.page_label, "clause": c.clause, "score": c.score,
                         "rerank_score": c.rerank_score, "chunk_id": c.chunk_id, "content_hash": c.content_hash}
                        for c in self.sources],
            "model": self.model,
            "adapter": self.adapter,
            "timings": self.timings,
            "raw_answer": self.raw_answer,  # the model's text before verification
            "confidence": self.confidence,
            "citation_score": self.citation_score,
            "abstain_reason": self.abstain_reason,
            "in_force": self.in_force,
        }

    @classmethod
    def from_record(cls, record: dict) -> Answer:
        """The Answer a `to_record()` dict was made from, as far as it tells (a saved answer shown again): sources
        keep what the record lists of them (no file or quote; records saved before sources carried their version,
        page label, chunk and hash read as version 0 and empty), and citations' offsets on the page are not in it
        (0)."""
        sentences = [Sentence(s["text"], list(s["citations"]), s["supported"], s["support_score"],
                              list(s["attached_by_verifier"]), list(s["corrected_by_verifier"]), s["issue"],
                              list(s["flags"]), s["entailment"]) for s in record["sentences"]]
        citations = [Citation(c["n"], c["document_id"], c["file"], c["title"], c["page"], c["clause"], c["quote"],
                              c["score"], chunk_id=c["chunk_id"], page_label=c["page_label"],
                              content_hash=c["content_hash"], version=c["version"], rerank_score=c["rerank_score"])
                     for c in record["citations"]]
        sources = [Citation(c["n"], c["document_id"], "", c["title"], c["page"], c["clause"], "", c["score"],
                            version=c.get("version", 0), rerank_score=c["rerank_score"],
                            page_label=c.get("page_label"), chunk_id=c.get("chunk_id", ""),
                            content_hash=c.get("content_hash", "")) for c in record["sources"]]
        return cls(record["question"], record["answer"], record["abstained"], sentences, citations, record["model"],
                   record["adapter"], dict(record["timings"]), sources, record["raw_answer"], record["confidence"],
                   record["citation_score"],
                   AbstainReason(record["abstain_reason"]) if record["abstain_reason"] else None,
                   record.get("in_force"))
