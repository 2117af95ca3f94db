"""Citations and their verification: parse [n] markers, check every sentence against the sources it cites,
attach a citation the model left out when a source clearly supports the sentence, and decide abstention.

A sentence's support score against one source is 0.5 * lexical + 0.5 * semantic:
- lexical: share of the sentence's content words (stemmed, numbers kept) that occur in the source chunk;
- semantic: cosine similarity between the sentence and the best-matching source sentence (the same embedding
  model as retrieval).
A number in the sentence that is absent from the source halves the score: a wrong deadline or amount must not pass.
So does a changed word in a near-copy (`substitution`): a sentence that follows one source sentence word for word,
except that it puts a word taken from elsewhere in the chunk where the source sentence has another ("the processor
shall ... notify the supervisory authority" from a sentence about the controller, beside one about the processor),
and a page or clause the sentence names that is not where the cited source is (`misplaced`).

A lead-in that only says where a quote comes from ("According to [1], Complaints Handling Policy, page 2, clause
4.2:", the model copying a source's header from the prompt) claims nothing: it is not shown or scored, and the
sentences after it that cite nothing are checked against the sources it names first. Its page and clause are not
trusted: the citation shown is built from the source the quote was found in.
"""

from __future__ import annotations

import re
from collections import Counter, OrderedDict
from dataclasses import dataclass
from difflib import SequenceMatcher

import numpy as np

from assistant import checks
from assistant.entailment import load_entailment, premise_window
from assistant.prompt import ABSTAIN_REPLIES, neutralise
from assistant.rerank import load_relevance_model
from assistant.types import Citation, Retrieved, Sentence
from assistant.words import (
    _CLAUSE_KINDS,
    _NUMBER,
    _PLACE,
    _STOP,
    _WORD,
    _stem,
    content_words,
    numbers,
    parse_markers,
    places,
    strip_markers,
    valid_markers,
)
from ingest.chunking import clause_at, sentence_spans
from ingest.embedding import Embedder

_LEADING_MARKERS = re.compile(r"^(?:\[\d{1,2}(?:\s*[,;]\s*\d{1,2})*\]\s*)+\.?")
def split_sentences(text: str) -> list[str]:
    """Answer sentences; a citation marker that follows the full stop stays with its sentence.

    An answer that opens with a marker numbers its sentences in front ("[1] The firm must ... [2] It must ..."):
    there a marker that opens a sentence is that sentence's, not the one before it."""
    text = text.strip()
    if not text:
        return []
    in_front = bool(_LEADING_MARKERS.match(text))
    out: list[str] = []
    for s, e in sentence_spans(text):
        piece = text[s:e].strip()
        lead = _LEADING_MARKERS.match(piece)
        if lead and out and not in_front:
            out[-1] = f"{out[-1]} {lead.group(0).strip()}"
            piece = piece[lead.end():].strip()
        if piece and not re.fullmatch(r"[.;,\s]*", piece):
            out.append(piece)
        elif piece and out:
            out[-1] += piece
    return out


_PAGE_KINDS = ("page", "pages", "p.")
_LEAD_WORDS = content_words("according as stated set out see source sources under provided by per")


# "This is stated in clause 7.6.4 of the document.": a sentence that only says where the answer is, without a marker
_POINTER_WORDS = _LEAD_WORDS | content_words("specified outlined mentioned described found given document documents "
                                             "text guidance regulation regulations")


def is_pointer(text: str, title_words: set[str]) -> bool:
    """A sentence without a marker that only points at where the answer is ("This is stated in clause 4.2 of the
    document."): it claims nothing, so it is neither shown nor scored (its clause would be shown unchecked)."""
    if parse_markers(text) or not places(text) and not content_words(text) & _POINTER_WORDS:
        return False
    return not content_words(_PLACE.sub(" ", text)) - _POINTER_WORDS - title_words


def is_lead_in(text: str, title_words: set[str]) -> bool:
    """A sentence that cites a source and only says where it is: markers, lead words ("according to"), words of
    the sources' titles (`title_words`, as `content_words` gives them), pages and clauses, and nothing else."""
    if not parse_markers(text):
        return False
    return not content_words(_PLACE.sub(" ", strip_markers(text))) - _LEAD_WORDS - title_words


def _clause_key(clause: str) -> str:
    """'Article 33' -> '33', '3.1.(b)' -> '3.1(b)', '4.2.' -> '4.2': clause ids compared without their kind."""
    key = re.sub(rf"^({_CLAUSE_KINDS})\s*", "", clause.strip().lower())
    return key.replace(".(", "(").rstrip(".")


def _same_clause(named: str, clause: str) -> bool:
    """A clause named in a sentence is the source's clause, a part of it or the clause it is part of (3.1 and
    3.1.(b))."""
    a, b = _clause_key(named), _clause_key(clause)
    if a == b:
        return True
    short, long = sorted((a, b), key=len)
    return long.startswith(short) and long[len(short)] in ".("


def misplaced(claim: str, source: Retrieved) -> str | None:
    """A page or clause the claim names that the cited source is not (nor mentions): "it names clause 4.4, but the
    source is clause 4.1". Pages are checked only where the source has them, clauses only where its clauses were
    recognised; a reference that the source's own text makes ("as required by Rule 2.4.1") is not a mismatch."""
    chunk = source.chunk
    clauses = [c for c in [chunk.clause, *(cid for _, cid in chunk.extra.get("clauses", []))] if c]
    text = chunk.text.lower()
    for kind, named in places(claim):
        if kind in _PAGE_KINDS:
            pages = {str(chunk.page)} | ({chunk.page_label.lower()} if chunk.page_label else set())
            if chunk.page is not None and named.lower() not in pages and f"page {named.lower()}" not in text:
                return f"it names page {named}, but the source is page {chunk.page_label or chunk.page}"
        elif clauses and not any(_same_clause(named, c) for c in clauses) and named.lower() not in text:
            return f"it names {kind} {named}, but the source is {' and '.join(map(_clause_name, clauses))}"
    return None


def _clause_name(clause: str) -> str:
    """'4.1' -> 'clause 4.1'; 'Article 33', 'AC-2' as they are."""
    return f"clause {clause}" if clause[:1].isdigit() else clause


def is_abstention(text: str) -> bool:
    """Whether the model said the sources do not answer (in any prompt version's words)."""
    t = text.lower()
    # the long reply anywhere (version 1); the short one only as the answer's opening, where it cannot be a clause
    return (ABSTAIN_REPLIES[1].lower()[:40] in t or t.lstrip(" \"'").startswith(ABSTAIN_REPLIES[2].lower()[:-1])
            or bool(re.search(r"(sources|documents) (do not|don't|does not) (contain|answer|provide|mention)", t)))


@dataclass
class Support:
    score: float
    quote: str
    start: int  # offset of the quote within the chunk text
    end: int
    issue: str | None = None  # why the score was cut, in words for the reader (a changed word or number)
    flags: tuple[str, ...] = ()  # the checks that cut it: "changed", "misplaced" (Sentence.flags)


# A sentence counts as a near-copy of a source sentence when this share of its words lines up with it, in order.
NEAR_COPY = 0.6


def _tokens(text: str) -> list[str]:
    words = [w.lower() for w in _WORD.findall(text)]
    stems = {w: _stem(w) for w in set(words)}  # each distinct word once: a long text is mostly repeats
    return [stems[w] for w in words]


def _is_content(token: str) -> bool:
    return token.isdigit() or (len(token) > 2 and token not in _STOP) or bool(_NUMBER.fullmatch(token))


def _best_alignment(a: list[str], source_sentences: list[str]):
    """(tokens aligned in order, sentence index, its tokens, the matcher) of the source sentence most of the claim's
    tokens `a` line up with, or None."""
    if not a:
        return None
    best = None
    for i, sentence in enumerate(source_sentences):
        b = _tokens(sentence)
        matcher = SequenceMatcher(None, a, b, autojunk=False)
        matched = sum(block.size for block in matcher.get_matching_blocks())
        if b and (best is None or matched > best[0]):
            best = (matched, i, b, matcher)
    return best


def words_off_copy(claim: str, sentences: list[str]) -> int:
    """How many of the claim's words do not line up, in order, with the one of `sentences` that most of them do
    (0: a copy of it)."""
    a = _tokens(claim)
    best = _best_alignment(a, sentences)
    return len(a) - (best[0] if best else 0)


def substitution(claim: str, source_sentences: list[str], chunk_words: set[str]) -> tuple[int, str] | None:
    """How a near-copy changes the source sentence it copies, or None.

    The copied sentence is the one most of the claim's words line up with, in order (at least NEAR_COPY of them);
    a claim that copies one sentence exactly is never judged against a look-alike sentence. The change reported is
    the first place where the claim puts a content word (or number) found elsewhere in the chunk but not in that
    sentence, where the sentence has a content word the claim has fewer of. Words the claim adds or leaves out, and
    words from outside the chunk (a paraphrase's own), are not substitutions. Returns (sentence index, reason)."""
    a = _tokens(claim)
    best = _best_alignment(a, source_sentences)
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

    def __init__(self, embedder: Embedder, support_threshold: float = 0.55, realign_margin: float | None = 0.15,
                 *, entailment=None, entailment_threshold: float | None = None, relevance=None,
                 relevance_margin: float = 3.0, answer_margin: float | None = None, entailment_max_new_words: int | None = 3,
                 rule_checks: bool = False):
        """`entailment` (assistant.entailment.Entailment) and `relevance` (assistant.rerank.Reranker) are the
        model-based checks (None: not run); `rule_checks` turns on the cheap rules that come with them (a sentence
        cut off, a planted instruction repeated). `build_verifier` makes one from Settings."""
        self.embedder = embedder
        self.threshold = support_threshold
        self.realign_margin = realign_margin
        self.entailment = entailment
        self.entailment_threshold = (entailment_threshold if entailment_threshold is not None
                                     else getattr(entailment, "threshold", 0.5))
        self.entailment_max_new_words = 10**6 if entailment_max_new_words is None else entailment_max_new_words
        self.relevance = relevance
        self.relevance_margin = relevance_margin
        self.answer_margin = answer_margin
        self.rule_checks = rule_checks
        # the sentences and vectors of recently checked chunks, the oldest dropped past CACHE_CHUNKS: a server that
        # answers for months over a large library must not keep one entry per chunk it ever cited
        self._cache: OrderedDict[str, tuple[list[tuple[int, int]], np.ndarray]] = OrderedDict()

    CACHE_CHUNKS = 2048

    def _source_sentences(self, chunk_id: str, text: str) -> tuple[list[tuple[int, int]], np.ndarray]:
        if chunk_id in self._cache:
            self._cache.move_to_end(chunk_id)
            return self._cache[chunk_id]
        spans = [sp for sp in sentence_spans(text) if text[sp[0]:sp[1]].strip()] or [(0, len(text))]
        entry = self._cache[chunk_id] = (spans, self.embedder.encode([text[s:e] for s, e in spans]))
        while len(self._cache) > self.CACHE_CHUNKS:
            self._cache.popitem(last=False)
        return entry

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
        missing = numbers(_PLACE.sub(" ", claim)) - numbers(text)  # pages and clauses: checked by `misplaced`
        if missing:
            score *= 0.5
        s, e = spans[best]
        changed = substitution(claim, [text[a:b] for a, b in spans], set(_tokens(text)))
        issue, flags = None, []
        if changed is not None:
            i, issue = changed
            s, e = spans[i]  # the quote is the sentence it changed, so the reader sees both
            score *= 0.5
            flags.append("changed")
        wrong_place = misplaced(claim, source)
        if wrong_place is not None:
            issue = issue or wrong_place
            score *= 0.5
            flags.append("misplaced")
        return Support(score=score, quote=text[s:e].strip(), start=s, end=e, issue=issue, flags=tuple(flags))

    def _better_source(self, cited_score: float, cited: list[int], n_sources: int, support) -> int | None:
        """The uncited source that supports a sentence clearly better than every source it cites (by at least
        `realign_margin` and above the threshold), else None. Models mis-number sources: the sentence copies source
        1 and cites [3]."""
        if self.realign_margin is None:
            return None
        others = [n for n in range(1, n_sources + 1) if n not in cited]
        if not others:
            return None
        best = max(others, key=lambda n: support(n).score)
        score = support(best).score
        return best if score >= self.threshold and score >= cited_score + self.realign_margin else None

    def verify(self, answer: str, sources: list[Retrieved],
               question: str | None = None) -> tuple[list[Sentence], dict[int, Support]]:
        """Verdicts for every sentence of an answer against numbered sources (1-based, as in the prompt).
        `question`, when given, lets the model-based checks ask whether a cited source addresses it.

        Returns the sentences and, per cited source number, its best supporting quote."""
        title_words = set().union(*(content_words(src.chunk.title or "") for src in sources))
        texts, named_by = [], []  # each claim, and the sources a lead-in before it named
        lead: list[int] = []
        for text in split_sentences(answer):
            if is_lead_in(text, title_words):
                lead = valid_markers(text, len(sources))
                continue
            if is_pointer(text, title_words):
                continue
            lead = lead if not parse_markers(text) else []  # a sentence with its own citation ends the lead-in
            texts.append(text)
            named_by.append(lead)
        if not texts:
            return [], {}
        vecs = self.embedder.encode([strip_markers(t) for t in texts])
        sentences: list[Sentence] = []
        quotes: dict[int, Support] = {}
        for text, vec, lead in zip(texts, vecs, named_by, strict=True):
            scored: dict[int, Support] = {}  # this sentence against source n, each scored once

            def support(n: int, text=text, vec=vec, scored=scored) -> Support:
                if n not in scored:
                    scored[n] = self.support(text, vec, sources[n - 1])
                return scored[n]

            cited = valid_markers(text, len(sources))
            sentence = Sentence(text=text, citations=cited)
            if not cited and lead:
                best_n = max(lead, key=lambda n: support(n).score)
                if support(best_n).score >= self.threshold:  # the model's own citation, moved from its lead-in
                    cited = [best_n]
                    sentence = Sentence(text=f"{text} [{best_n}]", citations=cited)
            if cited:
                supports = {n: support(n) for n in cited}
                best_n = max(supports, key=lambda n: supports[n].score)
                # a sentence that changes what its source says is wrong, not mis-numbered: it is never moved
                moved = None if supports[best_n].issue else self._better_source(supports[best_n].score, cited,
                                                                                 len(sources), support)
                if moved is not None:  # the sentence is in a source it does not cite: cite that one instead
                    sentence = Sentence(text=f"{_unmarked(text)} [{moved}]", citations=[moved],
                                        corrected=cited)
                    supports, best_n = {moved: support(moved)}, moved
                sentence.support_score = round(supports[best_n].score, 4)
                sentence.supported = supports[best_n].score >= self.threshold
                sentence.issue = None if sentence.supported else supports[best_n].issue
                if not sentence.supported:
                    sentence.flags = ["support", *supports[best_n].flags]
                if sentence.supported:  # a cited source that does not support the sentence is not shown as if it did
                    kept = [n for n in sentence.citations if supports[n].score >= self.threshold]
                    if kept != sentence.citations:  # nor is its marker: "... [1][3]" -> "... [1]"
                        sentence.text = f"{_unmarked(sentence.text)} " + "".join(f"[{n}]" for n in kept)
                    sentence.citations = kept
                    supports = {n: supports[n] for n in kept}
                for n, sup in supports.items():
                    if n not in quotes or sup.score > quotes[n].score:
                        quotes[n] = sup
            elif sources and len(content_words(strip_markers(text))) >= 2:
                supports = {n: support(n) for n in range(1, len(sources) + 1)}
                best_n = max(supports, key=lambda n: supports[n].score)
                sentence.support_score = round(supports[best_n].score, 4)
                if supports[best_n].score >= self.threshold:
                    sentence.supported = True
                    sentence.citations = [best_n]
                    sentence.attached = [best_n]
                    if best_n not in quotes or supports[best_n].score > quotes[best_n].score:
                        quotes[best_n] = supports[best_n]
                else:
                    sentence.flags = ["support"]
            sentences.append(sentence)
        self._second_pass(question, sentences, sources)
        return sentences, quotes

    def _second_pass(self, question: str | None, sentences: list[Sentence], sources: list[Retrieved]) -> None:
        """The rules and models that run on the sentences the lexical pass found supported (assistant/checks.py),
        cheapest first; each refuses a sentence with a flag and a reason."""
        if self.rule_checks:
            self._rules(question, sentences, sources)
        if self.entailment is not None:
            self._entailed(sentences, sources)
        if self.relevance is not None and question:
            if self.answer_margin is not None:
                self._answers_question(question, sentences, sources)
            self._cites_the_best_source(question, sentences, sources)

    def _rules(self, question: str | None, sentences: list[Sentence], sources: list[Retrieved]) -> None:
        for sentence in sentences:
            if not sentence.supported:
                continue
            claim = strip_markers(sentence.text)
            cut = checks.incomplete(claim)
            if cut:
                checks.refuse(sentence, "incomplete", cut)
                continue
            words = content_words(claim)
            # the model's own citations too: a copied instruction scores low against its blanked source, and the
            # sentence may then have been moved to a source that shares its words
            planted = next((n for n in dict.fromkeys(sentence.citations + sentence.corrected)
                            if checks.repeats_instruction(words, sources[n - 1].chunk.text, content_words)), None)
            if planted is not None:
                checks.refuse(sentence, "instruction", "it repeats a line of the document that is addressed to an AI "
                              f"assistant, not a rule for staff (source {checks.where(planted, sources[planted - 1])})")
        supported = [s for s in sentences if s.supported]
        claims = [strip_markers(s.text) for s in supported]
        if question and claims and checks.missing_quantity(question, claims):
            cited = [neutralise(sources[n - 1].chunk.text) for s in supported for n in s.citations]
            says = checks.quantity_sentence(question, cited)
            reason = "the question asks for a number, period or frequency, and the answer gives none" + (
                f"; the cited passage says '{checks.clip(says)}'" if says else "")
            for sentence in supported:
                checks.refuse(sentence, "off_question", reason)

    def _entailed(self, sentences: list[Sentence], sources: list[Retrieved]) -> None:
        todo = [s for s in sentences if s.supported]
        pairs, owners = [], []
        for i, sentence in enumerate(todo):
            claim = strip_markers(sentence.text)
            texts = [neutralise(sources[n - 1].chunk.text) for n in sentence.citations]
            # the sentence spans the lexical pass cached for these chunks (keyed by chunk id, of the same text)
            spans = [self._source_sentences(sources[n - 1].chunk.chunk_id, t)[0]
                     for n, t in zip(sentence.citations, texts, strict=True)]
            off = min(words_off_copy(claim, [t[a:b] for a, b in sp]) for t, sp in zip(texts, spans, strict=True))
            if off > self.entailment_max_new_words:
                continue  # a rewording: outside what the model was trained to judge (docs/architecture.md)
            for text in texts:
                pairs.append((premise_window(text, claim), claim))
                owners.append(i)
        best: list[float | None] = [None] * len(todo)
        for i, p in zip(owners, self.entailment.probs(pairs), strict=True):
            best[i] = max(best[i] or 0.0, p)
        for sentence, p in zip(todo, best, strict=True):
            if p is None:
                continue
            sentence.entailment = round(p, 4)
            if p < self.entailment_threshold:
                cited = " and ".join(checks.where(n, sources[n - 1]) for n in sentence.citations)
                checks.refuse(sentence, "entailment", f"the cited passage {cited} does not state this")

    def _answers_question(self, question: str, sentences: list[Sentence], sources: list[Retrieved]) -> None:
        """Flag every supported sentence when none of them answers the question while a sentence of the passages
        they cite does, by more than `answer_margin` reranker logits."""
        supported = [s for s in sentences if s.supported]
        if not supported:
            return
        claims = [strip_markers(s.text) for s in supported]
        pool: list[str] = []
        for n in sorted({n for s in supported for n in s.citations}):
            text = neutralise(sources[n - 1].chunk.text)
            pool += [" ".join(text[a:b].split()) for a, b in sentence_spans(text) if len(text[a:b].split()) >= 4]
        pool = [p for p in dict.fromkeys(pool) if p not in claims][:24]
        if not pool:
            return
        scores = self.relevance.score(question, claims + pool)
        said, best = max(scores[:len(claims)]), max(range(len(pool)), key=lambda i: scores[len(claims) + i])
        if scores[len(claims) + best] - said > self.answer_margin:
            for sentence in supported:
                checks.refuse(sentence, "off_question", "it does not answer the question; the cited passage says "
                                                        f"'{checks.clip(pool[best])}'")

    def _cites_the_best_source(self, question: str, sentences: list[Sentence], sources: list[Retrieved]) -> None:
        """Flag a sentence whose cited source addresses the question more than `relevance_margin` reranker logits
        worse than another source shown, when no supported sentence cites that one."""
        if len(sources) < 2 or not any(s.supported for s in sentences):
            return
        scores = [s.rerank_score for s in sources]
        if any(x is None for x in scores):
            scores = self.relevance.score(question, [s.chunk.text for s in sources])
        top = max(range(1, len(sources) + 1), key=lambda n: scores[n - 1])
        if top in {n for s in sentences if s.supported for n in s.citations}:
            return  # the answer draws on the passage that addresses the question best
        for sentence in sentences:
            if not sentence.supported or not sentence.citations:
                continue
            mine = max(sentence.citations, key=lambda n: scores[n - 1])
            if scores[top - 1] - scores[mine - 1] > self.relevance_margin:
                checks.refuse(sentence, "off_question",
                              f"source {checks.where(top, sources[top - 1])} addresses the question much more "
                              f"closely than the cited source {checks.where(mine, sources[mine - 1])}")


def build_verifier(settings, embedder: Embedder) -> Verifier:
    """The verifier the settings ask for: the lexical pass always; the rules of the second pass (`answer_rules`);
    the entailment and relevance checks when on and their models are installed."""
    entailment = load_entailment(settings)
    relevance = load_relevance_model(settings)
    return Verifier(embedder, settings.support_threshold, settings.citation_realign_margin, entailment=entailment,
                    entailment_threshold=settings.entailment_threshold, relevance=relevance,
                    relevance_margin=settings.relevance_margin, answer_margin=settings.answer_margin,
                    entailment_max_new_words=settings.entailment_max_new_words,
                    rule_checks=settings.answer_rules)


def _unmarked(text: str) -> str:
    """A sentence without its markers, punctuation closed up: "receipt [3]." -> "receipt."."""
    return re.sub(r"\s+([.,;:!?])", r"\1", strip_markers(text))


def clip(text: str, limit: int) -> str:
    """`text` in at most `limit` characters, cut after a whole word with an ellipsis when it is longer."""
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    cut = text[:limit + 1].rsplit(" ", 1)[0] if " " in text[:limit + 1] else text[:limit]
    return cut.rstrip(" ,;:-\u2013") + "…"


def make_citation(n: int, source: Retrieved, support: Support | None) -> Citation:
    """A user-facing citation for source n; the quote is the supporting sentence when known."""
    chunk = source.chunk
    quote, start, end = (support.quote, support.start, support.end) if support else (clip(chunk.text, 300), 0,
                                                                                       len(chunk.text))
    return Citation(
        n=n, document_id=chunk.document_id, file=chunk.source_file, title=chunk.title, page=chunk.page,
        clause=clause_at(chunk, start), quote=" ".join(quote.split()), score=round(float(source.score), 6),
        chunk_id=chunk.chunk_id, page_label=chunk.page_label, passage_id=chunk.passage_id,
        content_hash=chunk.content_hash, version=chunk.version, char_start=chunk.char_start + start,
        char_end=chunk.char_start + end,
        rerank_score=None if source.rerank_score is None else round(float(source.rerank_score), 4),
    )
