"""Clause-aware chunking: break at article/section/clause boundaries first, then at sentences within a token budget.

A chunk never crosses a page (so it cites one page), never mixes two documents, and its text is exactly
`page.text[char_start:char_end]`, so the UI can highlight it. A chunk is bounded in characters as well as tokens (the
embedding tokenizer counts a run of letters over 100 characters as one token: a 20 MB "word" was one chunk); within
that bound, passage records stay one chunk each.
Sentence spans come from llama-index's bundled Punkt tokenizer; its node parsers are not used for the rest because
they neither keep character spans on the page nor know clause boundaries (see docs/architecture.md).
"""

from __future__ import annotations

import hashlib
import re
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from ingest.types import Chunk, SourceDocument, display_name, doc_key

# Lines that open a new clause. Order matters: the first match wins. Annexes are often lettered ("Annex A - ...",
# clauses "A.1", "A.1.(a)"); a lone letter needs a separator after it, as "Annex A, such as" may be wrapped prose.
# An article heading is "Article 2", "Article 2 Material scope" or "Article 2 - ...", not a wrapped line of prose that
# begins with a reference ("Article 2(2) applies ...", "Article 6 of Directive ...").
_ARTICLE = re.compile(r"^(?:Article|ARTICLE|Art\.)\s+(\d+[a-z]?)\b(?=\s*$|\s*[-\u2013:.]|\s+[A-Z])")
# EU acts: after "Whereas:" and before the first article, "(85) A personal data breach ..." opens recital 85
_WHEREAS = re.compile(r"^(?:Whereas|WHEREAS)\s*:?\s*$")
_RECITAL = re.compile(r"^\((\d{1,3})\)\s+\S")
_HEADING = re.compile(r"^(PART|Part|CHAPTER|Chapter|TITLE|Title|SECTION|Section|ANNEX|Annex|APPENDIX|Appendix|"
                      r"SCHEDULE|Schedule)\s+([0-9]+[A-Z]?\b|[IVXLC]+\b|[A-Z](?=\s*$|\s*[-\u2013:.]\s))")
_DOTTED = re.compile(r"^((?:[A-Z]\.(?:\d{1,3}\.)*|(?:\d{1,3}\.)+)\d{1,3}(?:\.?\([a-zA-Z0-9]{1,4}\))*)\.?(?=\s+\S)")
_DOTTED_SUB = re.compile(r"^((?:[A-Z]\.)?\d{1,3}(?:\.\d{1,3})*\.\([a-zA-Z0-9]{1,4}\)(?:\([a-zA-Z0-9]{1,4}\))*)(?=\s+\S)")
_CONTROL = re.compile(r"^([A-Z]{2,3}-\d{1,3}(?:\(\d{1,2}\))?)(?=\s|$)")
_MARKDOWN = re.compile(r"^(#{1,6})\s+(.+)$")
_CONTENTS_ENTRY = re.compile(r"(?:\.\s?){4,}\s*[0-9ivxlcIVXLC]{0,6}$")  # "Section 2 - Scope ........ 4"
_LEVELS = {"part": 0, "title": 0, "chapter": 1, "annex": 1, "appendix": 1, "schedule": 1, "section": 2}

TokenCounter = Callable[[list[str]], list[int]]


@dataclass
class _Block:
    page_index: int
    start: int
    end: int
    clause: str | None
    heading_path: list[str]
    is_heading: bool = False


@dataclass
class _Draft:
    page_index: int
    start: int
    end: int
    clause: str | None
    heading_path: list[str] = field(default_factory=list)
    tokens: int = 0
    is_heading: bool = False
    passage: bool = False
    clause_starts: list[tuple[int, str]] = field(default_factory=list)  # (page offset, clause) of merged clauses
    heading_at: int | None = None  # page offset of a heading merged after the draft's own text
    hard_split: bool = False  # starts inside a run without blanks that `_cut_runs` cut


def recognise_clause(line: str) -> tuple[str | None, int | None, str | None]:
    """Return (clause id, heading level or None, heading text) for a line that opens a clause, else Nones."""
    line = line.strip()
    if _CONTENTS_ENTRY.search(line):  # a table of contents names a heading; it does not open it
        return None, None, None
    m = _MARKDOWN.match(line)
    if m:
        text = m.group(2).strip()
        inner, _, _ = recognise_clause(text)
        return inner, len(m.group(1)) - 1, text
    m = _ARTICLE.match(line)
    if m:
        return f"Article {m.group(1)}", 3, line[:120]
    m = _HEADING.match(line)
    if m:
        word = m.group(1).lower()
        return f"{m.group(1).title()} {m.group(2)}", _LEVELS.get(word, 2), line[:120]
    m = _DOTTED_SUB.match(line) or _DOTTED.match(line)
    if m:
        return m.group(1), None, None
    m = _CONTROL.match(line)
    if m:
        return m.group(1), None, None
    return None, None, None


def chunk_document(doc: SourceDocument, document_id: str, version: int, count_tokens: TokenCounter,
                   budget: int = 256, min_tokens: int = 24, max_chars: int = 4000) -> list[Chunk]:
    """Split a document into citation-ready chunks of at most `budget` tokens (where sentences allow) and at most
    `max_chars` characters (always: a longer run without blanks is cut, and a chunk that starts inside one is marked
    `extra["hard_split"]`)."""
    if doc.kind == "passages":
        drafts = [_Draft(i, 0, len(p.text), p.passage_id, passage=True) for i, p in enumerate(doc.pages)
                  if p.text.strip()]
    else:
        drafts = [_Draft(b.page_index, b.start, b.end, b.clause, b.heading_path, is_heading=b.is_heading)
                  for b in _blocks(doc)]
    drafts = _cut_runs(doc, drafts, max_chars)  # first: the tokenizer counts a long run as one token
    _count(doc, drafts, count_tokens)
    drafts = _split_oversized(doc, drafts, count_tokens, budget)
    drafts = _merge_small(drafts, budget, min_tokens, max_chars)
    drafts = _bound_chars(doc, drafts, max_chars, count_tokens, budget)
    return [_to_chunk(doc, d, document_id, version, seq) for seq, d in enumerate(drafts)]


def _count(doc: SourceDocument, drafts: list[_Draft], count_tokens: TokenCounter) -> None:
    texts = [doc.pages[d.page_index].text[d.start:d.end] for d in drafts]
    for d, n in zip(drafts, count_tokens(texts) if texts else [], strict=True):
        d.tokens = n


def _blocks(doc: SourceDocument) -> list[_Block]:
    boilerplate = _boilerplate_lines(doc)
    headings: dict[int, str] = {}
    clause: str | None = None
    recitals = False  # between an EU act's "Whereas:" and its first article
    blocks: list[_Block] = []
    for pi, page in enumerate(doc.pages):
        current: _Block | None = None
        offset = 0
        for li, raw in enumerate(page.text.split("\n")):
            start, offset = offset, offset + len(raw) + 1
            line = raw.strip()
            if not line or (pi, li) in boilerplate:
                continue
            line_start = start + (len(raw) - len(raw.lstrip()))
            line_end = start + len(raw.rstrip())
            if _CONTENTS_ENTRY.search(line):  # its own block, outside any clause; the heading comes later
                clause = None
                current = _Block(pi, line_start, line_end, None, [headings[k] for k in sorted(headings)])
                blocks.append(current)
                continue
            cid, level, heading = recognise_clause(line)
            recitals = (recitals or bool(_WHEREAS.match(line))) and not (cid or "").startswith("Article")
            recital = _RECITAL.match(line) if recitals and cid is None and level is None else None
            if recital:
                cid = f"Recital {recital.group(1)}"
            if cid is not None or level is not None:
                if level is not None:
                    headings = {k: v for k, v in headings.items() if k < level}
                    headings[level] = heading
                clause = cid if cid is not None else clause
                if level is not None and cid is None:
                    clause = None
                current = _Block(pi, line_start, line_end, clause, [headings[k] for k in sorted(headings)],
                                 is_heading=level is not None)
                blocks.append(current)
            elif current is None:
                current = _Block(pi, line_start, line_end, clause, [headings[k] for k in sorted(headings)])
                blocks.append(current)
            else:
                current.end = line_end
                current.is_heading = False
    return blocks


def _boilerplate_lines(doc: SourceDocument) -> set[tuple[int, int]]:
    """(page index, line index) of running headers and footers: a line of at most 200 characters (a firm's header,
    "Bank plc | Policy title NCB-COM-001 Version 4.2", runs past 100) in the same place (one of the first or
    last three non-blank lines of its page) on at least half of 3+ pages, either the same text on each or text that
    differs only in a number that counts with the page ("Page 3 of 9"). A line that varies otherwise ("Fee: 100",
    "Fee: 200") is content. Nothing is dropped when that would leave no text at all."""
    if doc.kind != "pdf" or len(doc.pages) < 3:
        return set()
    places: dict[tuple[int, str], list[tuple[int, int, str]]] = defaultdict(list)  # (place, shape) -> occurrences
    for pi, page in enumerate(doc.pages):
        lines = [(li, ln.strip()) for li, ln in enumerate(page.text.split("\n")) if ln.strip()]
        edge = {place: lines[place] for place in (0, 1, 2, -3, -2, -1) if -len(lines) <= place < len(lines)}
        for place, (li, text) in edge.items():
            if len(text) <= 200 and _normalise(text):
                places[(place, _normalise(text))].append((pi, li, " ".join(text.split())))
    needed = max(3, len(doc.pages) // 2)
    drop: set[tuple[int, int]] = set()
    for found in places.values():
        pages = {pi for pi, _, _ in found}
        if len(pages) >= needed and _constant_or_page_number(doc, found):
            drop.update((pi, li) for pi, li, _ in found)
    kept = sum(1 for pi, page in enumerate(doc.pages) for li, ln in enumerate(page.text.split("\n"))
               if ln.strip() and (pi, li) not in drop)
    return drop if kept else set()


def _constant_or_page_number(doc: SourceDocument, found: list[tuple[int, int, str]]) -> bool:
    """Whether the lines are all the same text, or differ only in numbers that each keep a fixed distance from the
    page's number (a page counter, whatever page the count starts on)."""
    numbers = [[int(n) for n in re.findall(r"\d+", text)] for _, _, text in found]
    for position in range(len(numbers[0])):
        values = [row[position] for row in numbers]
        if len(set(values)) == 1:
            continue
        offsets = {value - (doc.pages[pi].number or pi + 1) for value, (pi, _, _) in zip(values, found, strict=True)}
        if len(offsets) != 1:
            return False
    return True


def _normalise(line: str) -> str:
    return re.sub(r"\d+", "#", " ".join(line.split()).lower())


def _cut_runs(doc: SourceDocument, drafts: list[_Draft], max_chars: int) -> list[_Draft]:
    """Drafts with no run of text without blanks longer than `max_chars`: such a run is cut every `max_chars`
    characters (a hard split), and the text before and after it is kept as drafts of its own."""
    long_run = re.compile(rf"(?<!\S)\S{{{max_chars + 1},}}")  # from a run's first character only: linear
    out: list[_Draft] = []
    for d in drafts:
        text = doc.pages[d.page_index].text
        runs = [m.span() for m in long_run.finditer(text, d.start, d.end)] if d.end - d.start > max_chars else []
        start = d.start
        for run_start, run_end in runs:
            before = start + len(text[start:run_start].rstrip())
            if before > start:
                out.append(replace(d, start=start, end=before, is_heading=d.is_heading and start == d.start))
            out.extend(replace(d, start=s, end=min(s + max_chars, run_end), is_heading=False,
                               hard_split=s > run_start) for s in range(run_start, run_end, max_chars))
            start = _BLANKS.match(text, run_end, d.end).end()
        if start < d.end:
            out.append(replace(d, start=start, is_heading=d.is_heading and start == d.start))
    return out


def _bound_chars(doc: SourceDocument, drafts: list[_Draft], max_chars: int, count_tokens: TokenCounter,
                 budget: int) -> list[_Draft]:
    """Drafts of at most `max_chars` characters. Within the token budget a draft is longer only where its words are
    long (a run of letters over 100 characters counts as one token): it is cut after its last sentence end in the
    second half of the bound, else at its last blank. Its pieces are counted again and split if over budget."""
    out: list[_Draft] = []
    for d in drafts:
        if d.end - d.start <= max_chars:
            out.append(d)
            continue
        text, start, pieces = doc.pages[d.page_index].text, d.start, []
        while start < d.end:
            cut = d.end if d.end - start <= max_chars else _cut_point(text, start, start + max_chars)
            end = start + len(text[start:cut].rstrip())
            if end > start:
                # one clause throughout: `_merge_small` never makes a draft longer than the bound
                pieces.append(_Draft(d.page_index, start, end, d.clause, d.heading_path, passage=d.passage,
                                     hard_split=d.hard_split and start == d.start))
            start = _BLANKS.match(text, cut, d.end).end()
        _count(doc, pieces, count_tokens)
        out.extend(_split_oversized(doc, pieces, count_tokens, budget))
    return out


_BLANKS = re.compile(r"\s*+")
_SENTENCE_ENDS = (".\n", ". ", "!\n", "! ", "?\n", "? ", ";\n", "; ", "\n")


def _cut_point(text: str, start: int, limit: int) -> int:
    """Where a piece of text[start:] that must end by `limit` ends: after a sentence end, else at a blank, looked for
    in the second half of the piece and then in the first; at `limit` if there is neither (`_cut_runs` leaves no run
    long enough). Each rfind reads at most the bound, once per piece: linear in the text."""
    half = start + (limit - start) // 2
    for lo, hi in ((half, limit), (start + 1, half)):
        sentence = max(text.rfind(mark, lo, hi) + 1 for mark in _SENTENCE_ENDS)  # after the '.', or at the '\n'
        if sentence > 0:
            return sentence
        blank = max(text.rfind(blank, lo, hi) for blank in (" ", "\t", "\u00a0", "\u3000"))
        if blank > 0:
            return blank
    return limit


def _split_oversized(doc: SourceDocument, drafts: list[_Draft], count_tokens: TokenCounter,
                     budget: int) -> list[_Draft]:
    out: list[_Draft] = []
    for d in drafts:
        if d.tokens <= budget:
            out.append(d)
            continue
        text = doc.pages[d.page_index].text
        spans = [(d.start + s, d.start + e) for s, e in sentence_spans(text[d.start:d.end])]
        counts = count_tokens([text[s:e] for s, e in spans])
        pieces: list[tuple[int, int, int]] = []
        for (s, e), n in zip(spans, counts, strict=True):
            if n > budget:  # one sentence over budget: fall back to words
                pieces.extend(_split_long_sentence(text, s, e, budget, count_tokens))
            else:
                pieces.append((s, e, n))
        group: _Draft | None = None
        for s, e, n in pieces:
            if group is not None and group.tokens + n <= budget:
                group.end, group.tokens = e, group.tokens + n
                continue
            group = _Draft(d.page_index, s, e, d.clause, d.heading_path, n, passage=d.passage,
                           hard_split=d.hard_split and s == d.start)
            out.append(group)
    return out


def _split_long_sentence(text: str, start: int, end: int, budget: int,
                         count_tokens: TokenCounter) -> list[tuple[int, int, int]]:
    # Pack whole words up to the budget, counting each word's tokens: a share of the sentence's count per word
    # overshoots on uneven text such as dot leaders in a table of contents. A word over budget is cut by characters.
    words: list[tuple[int, int]] = []
    for m in re.finditer(r"\S+", text[start:end]):
        s, e = m.start() + start, m.end() + start
        words.extend((i, min(i + budget, e)) for i in range(s, e, budget))
    out: list[tuple[int, int, int]] = []
    for (s, e), n in zip(words, count_tokens([text[s:e] for s, e in words]), strict=True):
        if out and out[-1][2] + n <= budget:
            out[-1] = (out[-1][0], e, out[-1][2] + n)
        else:
            out.append((s, e, n))
    return out


def _merge_small(drafts: list[_Draft], budget: int, min_tokens: int, max_chars: int) -> list[_Draft]:
    """Fold headings and fragments into their neighbour on the same page; passages are never merged, and a short
    clause is not carried over a heading into the next section (it stays a chunk of its own)."""
    out: list[_Draft] = []
    for d in drafts:
        prev = out[-1] if out else None
        if (prev is not None and not d.passage and not prev.passage and prev.page_index == d.page_index
                and (prev.tokens < min_tokens or prev.is_heading) and prev.tokens + d.tokens <= budget
                and not (d.is_heading and not prev.is_heading and prev.clause is not None)
                and d.end - prev.start <= max_chars):
            had_clause = prev.clause is not None
            prev.end, prev.tokens = d.end, prev.tokens + d.tokens
            # a heading takes the clause it introduces; a short clause keeps its own id (the chunk starts there)
            # and the clauses merged after it are kept with their offsets, so a citation names the exact one
            if d.clause is not None and prev.is_heading and prev.heading_at is not None:
                # clause text, then a heading, then this clause: from the heading on, this clause is in force
                kept = [cs for cs in prev.clause_starts or [(prev.start, prev.clause)] if cs[0] < prev.heading_at]
                prev.clause_starts = kept + [(prev.heading_at, d.clause)]
            elif d.clause is not None and (prev.is_heading or prev.clause is None):
                prev.clause, prev.heading_path = d.clause, d.heading_path
                prev.clause_starts = [(prev.start, d.clause)]
            elif d.clause is not None and d.clause != prev.clause:
                prev.clause_starts = (prev.clause_starts or [(prev.start, prev.clause)]) + [(d.start, d.clause)]
            prev.heading_at = d.start if d.is_heading and had_clause else None
            prev.is_heading = d.is_heading
            continue
        out.append(d)
    return out


def _to_chunk(doc: SourceDocument, d: _Draft, document_id: str, version: int, seq: int) -> Chunk:
    page = doc.pages[d.page_index]
    text = page.text[d.start:d.end]
    extra = dict(page.extra)
    if len(d.clause_starts) > 1:
        extra["clauses"] = [[start - d.start, clause] for start, clause in d.clause_starts]
    if d.hard_split:
        extra["hard_split"] = True
    return Chunk(
        chunk_id=f"{doc_key(document_id, version)}#{seq:05d}",
        document_id=document_id,
        version=version,
        title=doc.title,
        source_file=display_name(doc.path.name),
        text=text,
        seq=seq,
        page=page.number,
        page_label=page.label,
        char_start=d.start,
        char_end=d.end,
        clause=d.clause,
        heading_path=list(d.heading_path),
        passage_id=page.passage_id,
        content_hash=hashlib.sha256(text.encode("utf-8")).hexdigest(),
        extra=extra,
    )


def clause_at(chunk: Chunk, offset: int) -> str | None:
    """The clause in force at a character offset of the chunk's text (chunks of several short clauses record
    where each one starts)."""
    clause = chunk.clause
    for start, cid in chunk.extra.get("clauses", []):
        if start <= offset:
            clause = cid
    return clause


def sentence_spans(text: str) -> list[tuple[int, int]]:
    """Sentence (start, end) offsets in `text`, from llama-index's bundled Punkt model; newlines between list
    items also end a sentence."""
    from llama_index.core.utils import globals_helper  # lazy: llama_index takes ~2 s to import

    spans = []
    for s, e in globals_helper.punkt_tokenizer.span_tokenize(text):
        sub = text[s:e]
        pos = 0
        for part in re.split(r"(?<=[.;:])\s*\n", sub):
            idx = sub.find(part, pos)
            if part.strip():
                ps = s + idx + (len(part) - len(part.lstrip()))
                spans.append((ps, s + idx + len(part.rstrip())))
            pos = idx + len(part)
    return spans
