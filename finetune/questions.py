"""Gold questions for a corpus that has none: the configured generator writes a question for a sampled chunk, the
chunk becomes its gold evidence, and a question is kept only when our retriever finds its chunk in the top k.

With the default 135M model the questions are short and often generic; see docs/finetuning.md for what to expect
and why a larger generator (on a GPU) gives better data.
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
from pathlib import Path

from tqdm import tqdm

from assistant.generation import load_generator
from assistant.retrieval import Retriever
from ingest.pipeline import Library

QUESTION_SYSTEM = "You write exam questions about compliance documents."
QUESTION_PROMPT = ("Text:\n{text}\n\nWrite one question that this text answers. The question must name the topic "
                   "so it can be understood without the text. Reply with the question only.")
MIN_WORDS, MAX_WORDS = 5, 40


def clean_question(raw: str) -> str | None:
    """The first question in the generator's output, or None when there is no usable question."""
    text = raw.strip().strip('"').strip()
    text = re.sub(r"^(?:(?:the|here is (?:a|the)|my) )?(?:question|q)(?: is)?\s*[:.)-]\s*", "", text, flags=re.I)
    first = text.split("\n")[0].strip()
    if "?" in first:
        first = first[: first.index("?") + 1]
    else:
        return None
    words = first.split()
    if not MIN_WORDS <= len(words) <= MAX_WORDS:
        return None
    return first


def _pick(chunk_ids: list[str], n: int | None, seed: int) -> list[str]:
    ranked = sorted(chunk_ids, key=lambda c: hashlib.sha256(f"{seed}\x00{c}".encode()).hexdigest())
    return ranked[:n] if n else ranked


# With one clause per chunk, a policy's rules are often one sentence of 80-200 characters ("4.2 Customer records ...
# are retained for 7 years ..."): a floor of 200 characters left half of the sample manual's chunks, and most of the
# clauses its gold questions ask about, without a single training question. Below 80 are headings and fragments.
MIN_CHARS = 80
_CONTENTS = re.compile(r"\.{5,}|(?:\. ){5,}")  # dot leaders: a table of contents, not a rule to ask about


def question_chunks(rows, min_chars: int = MIN_CHARS) -> list[tuple[str, str]]:
    """(chunk id, text) of the chunks worth a question: at least `min_chars` long, not a table of contents."""
    return [(cid, text) for cid, _key, text in rows if len(text.strip()) >= min_chars and not _CONTENTS.search(text)]


def generate_gold(library: Library, out: Path, *, limit: int | None = 50, seed: int = 0, k: int | None = None,
                  min_chars: int = MIN_CHARS, generator=None, progress: bool = True) -> dict:
    """Write gold JSONL questions for up to `limit` sampled chunks (of at least `min_chars`, no table of contents) to
    `out`. Returns counts: tried, generated (a question came out), kept (it retrieves its chunk in the top k)."""
    if generator is None:
        generator = load_generator(library.settings, adapter=None)
    k = k or library.settings.top_k
    retriever = Retriever(library)
    rows = question_chunks(library.catalog.all_chunk_rows(), min_chars)
    chosen = _pick([cid for cid, _ in rows], limit, seed)
    chunks = library.catalog.chunks(chosen)
    tried = generated = kept = 0
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", encoding="utf-8") as f:
        for cid in tqdm(chosen, desc="questions", file=sys.stderr, disable=not progress):
            chunk = chunks.get(cid)
            if chunk is None:
                continue
            tried += 1
            text = " ".join(chunk.text.split())[:900]
            messages = [{"role": "system", "content": QUESTION_SYSTEM},
                        {"role": "user", "content": QUESTION_PROMPT.format(text=text)}]
            question = clean_question(generator.generate(messages, 48))
            if question is None:
                continue
            generated += 1
            found = [r.chunk.chunk_id for r in retriever.retrieve(question, k)]
            if cid not in found:
                continue
            kept += 1
            evidence = {"document": chunk.document_id, "page": chunk.page, "passage_id": chunk.passage_id,
                        "quote": text[:200]}
            f.write(json.dumps({"id": f"gen-{cid}", "question": question, "answerable": True,
                                "answer": None, "evidence": [evidence]}, ensure_ascii=False) + "\n")
    return {"out": str(out), "tried": tried, "generated": generated, "kept": kept, "k": k}
