"""The words of a text as the verifier counts them: content words (crudely stemmed, numbers kept), numbers, the
[n] citation markers, and the pages and clauses a sentence names. A leaf of the answering core: the verifier, its
second-pass checks, the entailment gate, the evaluation and the training data all count words the same way."""

from __future__ import annotations

import re

_MARKER = re.compile(r"\[(\d{1,2}(?:\s*[,;]\s*\d{1,2})*)\]")
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
    words = {w.lower() for w in set(_WORD.findall(text))}  # each distinct word once: a long text is mostly repeats
    return {_stem(w) for w in words if w not in _STOP and (len(w) > 2 or w.isdigit())}


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


# "page 2", "clause 4.2", "Article 33", "section 3.1.(b)", "Rule 2.4.1": where a sentence says its text is.
_CLAUSE_KINDS = r"clauses?|articles?|art\.|sections?|paragraphs?|para\.|rules?"
_PLACE = re.compile(rf"\b(pages?|p\.|{_CLAUSE_KINDS})\s*(\d[\w.()\-]*[\w)]|\d|[ivxlc]+\b)", re.I)
def places(text: str) -> list[tuple[str, str]]:
    """The pages and clauses a text names: [("page", "2"), ("clause", "4.2"), ("article", "33")]."""
    return [(m.group(1).lower(), m.group(2)) for m in _PLACE.finditer(strip_markers(text))]
