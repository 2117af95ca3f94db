"""Citations and their verification: parse [n] markers, check every sentence against the sources it cites,
attach a citation the model left out when a source clearly supports the sentence, and decide abstention.

A sentence's support score against one source is 0.5 * lexical + 0.5 * semantic:
- lexical: share of the sentence's content words (stemmed, numbers kept) that occur in the source chunk;
- semantic: cosine similarity between the sentence and the best-matching source sentence (the same embedding
  model as retrieval).
A number in the sentence that is absent from the source halves the score: a wrong deadline or amount must not pass.
So does a changed word in a near-copy (`substitution`): a sentence that follows one source sentence word for word,
except that it puts a word taken from elsewhere in the chunk where the source sentence has another ("the processor
shall ... notify the supervisory authority" from a sentence about the controller, beside one about the processor).
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from difflib import SequenceMatcher

import numpy as np

from assistant.prompt import ABSTAIN_TEXT, neutralise
from assistant.types import Citation, Retrieved, Sentence
from ingest.chunking import clause_at, sentence_spans
from ingest.embedding import Embedder

_MARKER = re.compile(r"\[(\d{1,2}(?:\s*[,;]\s*\d{1,2})*)\]")
_LEADING_MARKERS = re.compile(r"^(?:\[\d{1,2}(?:\s*[,;]\s*\d{1,2})*\]\s*)+\.?")
_WORD = re.compile(r"[A-Za-z]+|\d+(?:[.,]\d+)*")
_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")
_STOP = set("""a an the and or of to in on for by with at from as is are was were be been being it its this that these
those which who whom whose what when where why how must may shall should will would can could not no any all each
every such than then there their they them he she his her we our you your i do does did has have had into onto
under over about above below also other more most some only same so very per via if unless whether""".split())


def _stem(word: str) -> str:
    for suffix in ("ations", "ation", "ments", "ment", "ings", "ing", "ies", "ied", "ed", "es", "s", "ly"):
        if len(word) > len(suffix) + 3 and word.endswith(suffix):
            return word[: -len(suffix)]
    return word


def content_words(text: str) -> set[str]:
    """Lower-cased, crudely stemmed content words and numbers."""
    return {_stem(w.lower()) for w in _WORD.findall(text) if w.lower() not in _STOP and (len(w) > 2 or w.isdigit())}


def numbers(text: str) -> set[str]:
    return {n.replace(",", "") for n in _NUMBER.findall(text)}


def parse_markers(text: str) -> list[int]:
    """Source numbers cited in a text, in order of first appearance: "[1]", "[1, 3]", "[2][4]"."""
    seen: list[int] = []
    for m in _MARKER.finditer(text):
        for part in re.split(r"[,;]", m.group(1)):
            n = int(part)
            if n not in seen:
                seen.append(n)
    return seen


def valid_markers(text: str, n_sources: int) -> list[int]:
    """The cited numbers that name one of sources 1..n_sources, in order of first appearance."""
    return [n for n in parse_markers(text) if 1 <= n <= n_sources]


def strip_markers(text: str) -> str:
    return " ".join(_MARKER.sub("", text).split())


def split_sentences(text: str) -> list[str]:
    """Answer sentences; a citation marker that follows the full stop stays with its sentence."""
    text = text.strip()
    if not text:
        return []
    out: list[str] = []
    for s, e in sentence_spans(text):
        piece = text[s:e].strip()
        lead = _LEADING_MARKERS.match(piece)
        if lead and out:
            out[-1] = f"{out[-1]} {lead.group(0).strip()}"
            piece = piece[lead.end():].strip()
        if piece and not re.fullmatch(r"[.;,\s]*", piece):
            out.append(piece)
        elif piece and out:
            out[-1] += piece
    return out


def is_abstention(text: str) -> bool:
    """Whether the model said the sources do not answer."""
    t = text.lower()
    return ABSTAIN_TEXT.lower()[:40] in t or bool(re.search(
        r"(sources|documents) (do not|don't|does not) (contain|answer|provide|mention)", t))


@dataclass
class Support:
    score: float
    quote: str
    start: int  # offset of the quote within the chunk text
    end: int
    issue: str | None = None  # why the score was cut, in words for the reader (a changed word or number)


# A sentence counts as a near-copy of a source sentence when this share of its words lines up with it, in order.
NEAR_COPY = 0.6


def _tokens(text: str) -> list[str]:
    return [_stem(w.lower()) for w in _WORD.findall(text)]


def _is_content(token: str) -> bool:
    return token.isdigit() or (len(token) > 2 and token not in _STOP) or bool(_NUMBER.fullmatch(token))


def substitution(claim: str, source_sentences: list[str], chunk_words: set[str]) -> tuple[int, str] | None:
    """How a near-copy changes the source sentence it copies, or None.

    The copied sentence is the one most of the claim's words line up with, in order (at least NEAR_COPY of them);
    a claim that copies one sentence exactly is never judged against a look-alike sentence. The change reported is
    the first place where the claim puts a content word (or number) found elsewhere in the chunk but not in that
    sentence, where the sentence has a content word the claim has fewer of. Words the claim adds or leaves out, and
    words from outside the chunk (a paraphrase's own), are not substitutions. Returns (sentence index, reason)."""
    a = _tokens(claim)
    if not a:
        return None
    best = None
    for i, sentence in enumerate(source_sentences):
        b = _tokens(sentence)
        matcher = SequenceMatcher(None, a, b, autojunk=False)
        matched = sum(block.size for block in matcher.get_matching_blocks())
        if b and (best is None or matched > best[0]):
            best = (matched, i, b, matcher)
    if best is None or best[0] < NEAR_COPY * len(a):
        return None
    _, i, b, matcher = best
    in_sentence, claim_counts, sentence_counts = set(b), Counter(a), Counter(b)
    for op, i1, i2, j1, j2 in matcher.get_opcodes():
        if op != "replace":
            continue
        borrowed = [w for w in a[i1:i2] if _is_content(w) and w not in in_sentence and w in chunk_words]
        # dropped: the claim has fewer of it than the sentence ("the recording ... the recording" with one replaced)
        dropped = [w for w in b[j1:j2] if _is_content(w) and claim_counts[w] < sentence_counts[w]]
        if borrowed and dropped:
            # the replaced words nearest the claim's own sit at the end of the source's side ("in the case of ...
            # the controller" -> "the processor")
            said = " ".join(_surface(claim, w) for w in borrowed)
            meant = " ".join(_surface(source_sentences[i], w) for w in dropped[-len(borrowed):])
            return i, f"it says '{said}' where the source says '{meant}'"
    return None


def _surface(text: str, token: str) -> str:
    """The word of `text` whose stemmed form is `token`, as written."""
    return next((w for w in _WORD.findall(text) if _stem(w.lower()) == token), token)


class Verifier:
    """Scores answer sentences against source chunks; thresholds come from Settings (calibrated on dev data)."""

    def __init__(self, embedder: Embedder, support_threshold: float = 0.55):
        self.embedder = embedder
        self.threshold = support_threshold
        self._cache: dict[str, tuple[list[tuple[int, int]], np.ndarray]] = {}

    def _source_sentences(self, chunk_id: str, text: str) -> tuple[list[tuple[int, int]], np.ndarray]:
        if chunk_id not in self._cache:
            spans = [sp for sp in sentence_spans(text) if text[sp[0]:sp[1]].strip()] or [(0, len(text))]
            self._cache[chunk_id] = (spans, self.embedder.encode([text[s:e] for s, e in spans]))
        return self._cache[chunk_id]

    def support(self, sentence: str, sentence_vec: np.ndarray, source: Retrieved) -> Support:
        """How well one source supports one sentence (0..1) and the source sentence that does it best."""
        chunk = source.chunk
        text = neutralise(chunk.text)  # instructions planted in a document never count as support
        claim = strip_markers(sentence)
        words = content_words(claim)
        lexical = len(words & content_words(text)) / len(words) if words else 0.0
        spans, vecs = self._source_sentences(chunk.chunk_id, text)
        sims = vecs @ sentence_vec
        best = int(np.argmax(sims))
        score = 0.5 * lexical + 0.5 * max(0.0, float(sims[best]))
        missing = numbers(claim) - numbers(text)
        if missing:
            score *= 0.5
        s, e = spans[best]
        changed = substitution(claim, [text[a:b] for a, b in spans], set(_tokens(text)))
        issue = None
        if changed is not None:
            i, issue = changed
            s, e = spans[i]  # the quote is the sentence it changed, so the reader sees both
            score *= 0.5
        return Support(score=score, quote=text[s:e].strip(), start=s, end=e, issue=issue)

    def verify(self, answer: str, sources: list[Retrieved]) -> tuple[list[Sentence], dict[int, Support]]:
        """Verdicts for every sentence of an answer against numbered sources (1-based, as in the prompt).

        Returns the sentences and, per cited source number, its best supporting quote."""
        texts = split_sentences(answer)
        if not texts:
            return [], {}
        vecs = self.embedder.encode([strip_markers(t) for t in texts])
        sentences: list[Sentence] = []
        quotes: dict[int, Support] = {}
        for text, vec in zip(texts, vecs, strict=True):
            cited = valid_markers(text, len(sources))
            sentence = Sentence(text=text, citations=cited)
            if cited:
                supports = {n: self.support(text, vec, sources[n - 1]) for n in cited}
                best_n = max(supports, key=lambda n: supports[n].score)
                sentence.support_score = round(supports[best_n].score, 4)
                sentence.supported = supports[best_n].score >= self.threshold
                sentence.issue = None if sentence.supported else supports[best_n].issue
                for n, sup in supports.items():
                    if n not in quotes or sup.score > quotes[n].score:
                        quotes[n] = sup
            elif sources and len(content_words(strip_markers(text))) >= 2:
                supports = {n: self.support(text, vec, src) for n, src in enumerate(sources, start=1)}
                best_n = max(supports, key=lambda n: supports[n].score)
                sentence.support_score = round(supports[best_n].score, 4)
                if supports[best_n].score >= self.threshold:
                    sentence.supported = True
                    sentence.citations = [best_n]
                    sentence.attached = [best_n]
                    if best_n not in quotes or supports[best_n].score > quotes[best_n].score:
                        quotes[best_n] = supports[best_n]
            sentences.append(sentence)
        return sentences, quotes


def make_citation(n: int, source: Retrieved, support: Support | None) -> Citation:
    """A user-facing citation for source n; the quote is the supporting sentence when known."""
    chunk = source.chunk
    quote, start, end = (support.quote, support.start, support.end) if support else (chunk.text.strip()[:300], 0,
                                                                                       len(chunk.text))
    return Citation(
        n=n, document_id=chunk.document_id, file=chunk.source_file, title=chunk.title, page=chunk.page,
        clause=clause_at(chunk, start), quote=" ".join(quote.split()), score=round(float(source.score), 6),
        chunk_id=chunk.chunk_id, page_label=chunk.page_label, passage_id=chunk.passage_id,
        content_hash=chunk.content_hash, version=chunk.version, char_start=chunk.char_start + start,
        char_end=chunk.char_start + end,
    )
