"""The labelled verification set (`data/verification/labelled.jsonl`): answer sentences over the sources a retriever
would show, each labelled supported or wrong by hand, with the kind of error or of faithful wording it is.

One item per line: `id`, `question`, `sources` (2-4, numbered from 1 as in the prompt: `document`, `page`, `clause`,
`text` as comply's ingest chunks it, and optionally `title` and `clauses`, the chunk's `[offset, clause]` starts),
`sentence` (with [n] markers), `label`, `kind`, `note`. How it was written: docs/evaluation.md.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from assistant.citations import parse_markers
from assistant.types import Retrieved
from ingest.types import Chunk, ComplyError

PATH = Path(__file__).resolve().parent.parent / "data" / "verification" / "labelled.jsonl"

# the wrong kinds: each a way an answer sentence can misstate or mis-cite its source
WRONG_KINDS = ("word_substituted", "number_changed", "negation", "modal_changed", "actor_swapped", "splice",
               "neighbour_clause", "off_question", "other_question", "wrong_source", "truncated", "instruction")
# the faithful kinds: each a way of stating what the cited source says
SUPPORTED_KINDS = ("verbatim", "paraphrase", "framing", "partial", "multi_cite")
MIN_PER_KIND = 15
MIN_ITEMS = 300
MIN_SUPPORTED_SHARE = 0.40
ACCEPTANCE_IDS = ("accept-email-retention", "accept-password-length", "accept-gdpr-consent", "accept-approved")


@dataclass
class Source:
    """A numbered source as shown with the item."""

    document: str
    text: str
    page: int | None = None
    clause: str | None = None
    title: str | None = None
    clauses: list[list] | None = None


@dataclass
class Item:
    """One labelled answer sentence."""

    id: str
    question: str
    sources: list[Source]
    sentence: str
    label: str  # "supported" | "wrong"
    kind: str
    note: str

    @property
    def wrong(self) -> bool:
        return self.label == "wrong"


class InvalidItem(ComplyError, ValueError):
    """An item that breaks the schema, with its id and the reason."""


def _item(raw: dict) -> Item:
    item_id = raw.get("id", "?")
    missing = {"id", "question", "sources", "sentence", "label", "kind", "note"} - set(raw)
    if missing:
        raise InvalidItem(f"{item_id}: missing {sorted(missing)}")
    item = Item(**{**raw, "sources": [Source(**s) for s in raw["sources"]]})
    if item.label not in ("supported", "wrong"):
        raise InvalidItem(f"{item_id}: label {item.label!r}")
    if item.kind not in (WRONG_KINDS if item.wrong else SUPPORTED_KINDS):
        raise InvalidItem(f"{item_id}: kind {item.kind!r} is not a {item.label} kind")
    if not 2 <= len(item.sources) <= 4:
        raise InvalidItem(f"{item_id}: {len(item.sources)} sources, not 2-4")
    cited = parse_markers(item.sentence)
    if not cited or any(not 1 <= n <= len(item.sources) for n in cited):
        raise InvalidItem(f"{item_id}: cites {cited} of {len(item.sources)} sources")
    return item


def load_items(path: Path = PATH) -> list[Item]:
    """Every item of the file, validated one by one (InvalidItem on the first bad one, or on a repeated id)."""
    items, seen = [], set()
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            item = _item(json.loads(line))
            if item.id in seen:
                raise InvalidItem(f"{item.id}: duplicate id")
            seen.add(item.id)
            items.append(item)
    return items


def to_retrieved(item: Item) -> list[Retrieved]:
    """The item's sources as the verifier receives them: Chunks built from the stored texts, in shown order. The
    chunk id is a hash of document and text, so the verifier's per-chunk cache never mixes two texts."""
    out = []
    for i, s in enumerate(item.sources):
        digest = hashlib.sha1(f"{s.document}\0{s.text}".encode()).hexdigest()[:16]
        chunk = Chunk(chunk_id=f"verification#{digest}", document_id=Path(s.document).stem, version=1,
                      title=s.title or Path(s.document).stem, source_file=s.document, text=s.text, seq=i,
                      page=s.page, clause=s.clause, char_end=len(s.text),
                      extra={"clauses": s.clauses} if s.clauses else {})
        out.append(Retrieved(chunk=chunk, score=1.0 / (i + 1)))
    return out
