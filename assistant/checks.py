"""The checks that run after the lexical pass on every sentence it found supported (`Verifier.verify`):

- `incomplete`: the sentence stops mid-clause ("... unless Member State law shall.");
- `repeats_instruction`: the sentence draws on text of its source that addresses the assistant ("the only correct
  reply ... is APPROVED"), which is data, not a rule (assistant/injection.py finds such text in linear time);
- entailment: the entailment model finds that the cited passage does not state the sentence (assistant/entailment.py);
- off the question: the reranker scores the cited passage against the question clearly lower than another passage
  shown, which no sentence of the answer cites (assistant/rerank.py; `relevance_margin`).

Each refusal says why in words a compliance officer uses; `where` names a source the way the chat does.
"""

from __future__ import annotations

import re

from assistant.injection import instruction_spans
from assistant.types import Retrieved, Sentence
from assistant.words import _PLACE, content_words
from ingest.chunking import sentence_spans

# Words a complete English sentence does not end on: a modal, an article, a preposition, a conjunction.
_DANGLING = set("""shall must may should will would can could the a an of to in on for by with at from and or nor
that which who whose whom if unless where when than as such is are be been being has have had not including
includes include e.g. i.e. per within after before until till than under over about into onto between among
without during since upon via towards against""".split())
_LAST_WORD = re.compile(r"(?<![\w'])([A-Za-z.]+)\W*$")


def incomplete(claim: str) -> str | None:
    """Why a sentence (markers removed) reads as cut off, or None: it ends on a word no sentence ends on, or with
    a colon or a dash (a list announced and not given)."""
    text = claim.rstrip(" \t\n\"'\u201d)")
    m = _LAST_WORD.search(text.rstrip(".!?;"))
    word = m.group(1).rstrip(".") if m else ""
    # a capital letter alone is a name ("Schedule A", "Tier B"), not the article
    dangling = word.lower() in _DANGLING and not (len(word) == 1 and word.isupper())
    if text.endswith((":", "\u2014", "-", ",")) or dangling:
        tail = text[-48:]
        tail = tail[tail.find(" ") + 1:] if len(text) > 48 and " " in tail else tail
        return f"the sentence stops before it is complete ('...{tail.lstrip()}')"
    return None


# A question that asks for an amount, a period, a count or a frequency ...
_ASKS_QUANTITY = re.compile(
    r"\bhow (?:long|many|much|often|quickly|soon|frequently|far in advance|old|large|big|high|low)\b|"
    r"\b(?:within|in|after|by) (?:what|which|how much) (?:time|period)\b|\bby when\b|"
    r"\b(?:what|which) (?:is|are) the (?:minimum|maximum|min|max|deadline|threshold|limit|time limit|period|"
    r"retention period|percentage|amount|frequency)\b|"
    r"\babove (?:what|which) (?:amount|value|level|threshold|sum)\b|\bwhat (?:percentage|amount|sum|level of)\b", re.I)
# ... is answered with a number or words that say one (an amount or a length: only numbers and number words).
_NUMBER_WORDS = (r"one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|"
                 r"(?:thir|four|fif|six|seven|eigh|nine)teen|twenty|thirty|forty|fifty|sixty|seventy|eighty|ninety|"
                 r"hundred|thousand|million|half|quarter|no (?:minimum|maximum|limit)|not (?:set|specified|stated|fixed)")
_GIVES_NUMBER = re.compile(rf"\d|\b(?:{_NUMBER_WORDS})\b", re.I)
_GIVES_QUANTITY = re.compile(
    rf"\d|\b(?:{_NUMBER_WORDS}|once|twice|annual(?:ly)?|yearly|quarterly|monthly|weekly|"
    r"daily|hourly|(?:minute|hour|day|week|fortnight|month|quarter|year|decade)s?|immediately|promptly|at once|"
    r"without (?:undue )?delay|as soon as|same day|next day|"
    r"indefinitely|permanently|continual(?:ly)?|continuous(?:ly)?|regular(?:ly)?|periodic(?:ally)?|at all times|"
    r"ongoing|every (?:year|month|week|day|quarter))\b", re.I)


_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")
# A question about time (how long, how often, a deadline, a period) may be answered in words ("at once", "annually");
# one that asks for an amount, a length or a threshold and nothing about time needs a number.
_ABOUT_TIME = re.compile(r"\b(?:long|often|quickly|soon|frequently|when|time|times|deadline|period|periods|"
                         r"frequency|retention|retained|kept|keep|advance|days?|weeks?|months?|years?|hours?)\b", re.I)


def missing_quantity(question: str, claims: list[str]) -> bool:
    """Whether the question asks how long, how many, how often, above what amount ... and no sentence of the
    answer gives a number or a word for one ("Passwords are not changed on a fixed schedule" for "What is the
    minimum password length?"). A number the question itself states is not an answer ("Under the policy in force in
    2023, records were kept for as long as the Bank needed them" for "How long ... in force in 2023?")."""
    if not _ASKS_QUANTITY.search(question):
        return False
    asked = set(_NUMBER.findall(question))
    # "What is the minimum password length?" is not answered by "... must be changed at once"
    says = _GIVES_QUANTITY if _ABOUT_TIME.search(question) else _GIVES_NUMBER

    def gives(claim: str) -> bool:
        # "under clause 4.2" or "page 3" gives no quantity, nor does the question's own "2023"
        claim = _NUMBER.sub(lambda m: " " if m.group(0) in asked else m.group(0), _PLACE.sub(" ", claim))
        return bool(says.search(claim))

    return not any(gives(c) for c in claims)


# "Section 3 - Retention Principles 3.1 ", "4.2 ": the numbers of a heading or clause, not a quantity
_HEADING = re.compile(r"^(?:section\s+\d+\s*[-\u2013:]\s*(?:[A-Z][\w,&/]*\s+)*?)?(?:[A-Z]{1,3}-)?\d+(?:\.\d+)*\.?"
                      r"(?:\([a-z0-9]+\))?\s+", re.I)


def quantity_sentence(question: str, texts: list[str]) -> str | None:
    """The sentence of the cited texts that gives a number and shares most words with the question (what the
    answer should have said), or None."""
    asked = content_words(question)
    found = [" ".join(t[s:e].split()) for t in texts for s, e in sentence_spans(t)]
    found = [f for f in found if _GIVES_QUANTITY.search(_HEADING.sub("", f))]
    return max(found, key=lambda f: len(asked & content_words(f)), default=None)


def clip(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[: limit - 3].rstrip() + "..."


def repeats_instruction(claim_words: set[str], text: str, words) -> bool:
    """Whether the sentence of the chunk that shares most content words with the claim lies in text that
    addresses the assistant (an instruction planted in the document), and shares at least two words with it."""
    spans = instruction_spans(text)
    if not spans:
        return False
    best, best_span = 0, None
    for s, e in sentence_spans(text):
        shared = len(claim_words & words(text[s:e]))
        if shared > best:
            best, best_span = shared, (s, e)
    planted = " ".join(text[s:e] for s, e in spans)
    if best_span is not None and any(s < best_span[1] and best_span[0] < e for s, e in spans):
        return best >= 2
    # the claim may take the planted reply's words without the planted sentence being its best match
    return len(claim_words & words(planted)) >= max(2, len(claim_words) // 2)


def where(n: int, source: Retrieved) -> str:
    """'[2] (clause 4.4, Data Retention Policy, page 2)'."""
    chunk = source.chunk
    parts = [f"clause {chunk.clause}" if chunk.clause and chunk.clause[:1].isdigit() else chunk.clause,
             chunk.title, f"page {chunk.page_label or chunk.page}" if chunk.page is not None else None]
    return f"[{n}] ({', '.join(p for p in parts if p)})"


def refuse(sentence: Sentence, flag: str, issue: str) -> None:
    """Mark a sentence not supported, naming the check and saying why."""
    sentence.supported = False
    sentence.flags = [*sentence.flags, flag]
    sentence.issue = sentence.issue or issue
