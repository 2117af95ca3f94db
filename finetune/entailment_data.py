"""Training pairs for the entailment check, built from regulatory passages alone (no NLI data ships on the registry).

For a passage P and one of its sentences X, the premise is `premise_window(P, claim)` (as at answer time) and the
claim is one of:
- entailed (label 1): X verbatim; X cut at a clause boundary (never before "unless", "except", "provided" ...);
  X behind a framing phrase; X with its modal verb said another way ("must" -> "is required to"); X with a small
  number written in words; X and the next sentence of P joined.
- not entailed (label 0): X with one content word replaced by a word of P that X lacks (the splice a small model
  writes); a number changed; a negation added or removed; the obligation changed ("must" -> "may"); an opposite put
  in ("before" -> "after", "at least" -> "at most"); two defined terms (capitalised) swapped; the first half of X
  glued to the second half of a sentence of another passage of the same document; a sentence of another passage of
  the same document that shares words with P (about the same things, not stated by P); a sentence of a passage of
  another document.

Every variant is a pure function of the seed and the passage. Claims that differ from X only in case or spacing are
dropped; a "not entailed" claim whose content words all occur in P (a neighbour that repeats P) is dropped.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from assistant.citations import _WORD, _is_content, _stem, content_words, numbers
from assistant.entailment import premise_window
from ingest.chunking import sentence_spans

ENTAILED, NOT_ENTAILED = 1, 0
FRAMES = ("According to the rules, ", "Under the rules, ", "The rules state that ", "The regulation provides that ",
          "In short, ", "As set out in the source, ")
# said another way, the same obligation; (pattern, replacement), applied once
SAME_MODAL = [(r"\bmust not\b", "is not permitted to"), (r"\bmust\b", "is required to"), (r"\bshall not\b", "must not"),
              (r"\bshall\b", "must"), (r"\bmay not\b", "is not permitted to"), (r"\bmay\b", "is permitted to"),
              (r"\bis required to\b", "must"), (r"\bare required to\b", "must")]
# another obligation
OTHER_MODAL = [(r"\bmust not\b", "may"), (r"\bmust\b", "may"), (r"\bshall not\b", "may"), (r"\bshall\b", "may"),
               (r"\bmay\b", "must"), (r"\bshould\b", "must not"), (r"\bis required to\b", "may")]
NEGATE = [(r"\bmust not\b", "must"), (r"\bshall not\b", "shall"), (r"\bmay not\b", "may"), (r"\bdoes not\b", "does"),
          (r"\bis not\b", "is"), (r"\bare not\b", "are"), (r"\bnot\b ", ""), (r"\bmust\b", "must not"),
          (r"\bshall\b", "shall not"), (r"\bmay\b", "may not"), (r"\bis\b", "is not"), (r"\bare\b", "are not"),
          (r"\bwill\b", "will not"), (r"\bcan\b", "cannot")]
OPPOSITE = [("before", "after"), ("after", "before"), ("at least", "at most"), ("more than", "less than"),
            ("less than", "more than"), ("within", "after"), ("including", "excluding"), ("prior to", "after"),
            ("maximum", "minimum"), ("minimum", "maximum"), ("exceed", "fall below"), ("higher", "lower"),
            ("lower", "higher"), ("all", "none of the"), ("any", "no"), ("permitted", "prohibited"),
            ("prohibited", "permitted"), ("approve", "reject"), ("required", "not required"), ("written", "oral"),
            ("immediately", "within a year"), ("annually", "every five years"), ("increase", "decrease")]
NUMBER_WORDS = {"2": "two", "3": "three", "4": "four", "5": "five", "6": "six", "7": "seven", "10": "ten",
                "12": "twelve", "30": "thirty"}
_NO_CUT_BEFORE = re.compile(r"^\s*(unless|except|provided|save|other than|subject to|only|if|where|when|but|not)\b",
                            re.I)
_TERM = re.compile(r"\b(?:[A-Z][a-z]+(?:\s+[A-Z][a-z]+){0,3})\b")


@dataclass
class Pair:
    premise: str
    claim: str
    label: int
    kind: str
    source: str  # "<DocumentID>/<PassageID>" of the premise


def _sentences(text: str, min_words: int = 6) -> list[str]:
    return [" ".join(text[s:e].split()) for s, e in sentence_spans(text) if len(text[s:e].split()) >= min_words]


def _sub_once(pattern: str, new: str, text: str) -> str | None:
    out, n = re.subn(pattern, new, text, count=1, flags=re.I)
    return out if n else None


def _first(rules, text: str) -> str | None:
    for pattern, new in rules:
        out = _sub_once(pattern, new, text)
        if out is not None:
            return out
    return None


def _cut(x: str, rng: random.Random) -> str | None:
    """X up to a comma or semicolon after at least six words, where what follows is not a condition."""
    cuts = [m.start() for m in re.finditer(r"[,;]", x) if len(x[:m.start()].split()) >= 6
            and not _NO_CUT_BEFORE.match(x[m.end():]) and len(x[m.end():].split()) >= 3]
    return x[:rng.choice(cuts)].rstrip() + "." if cuts else None


def _substitute_word(x: str, others: list[str], rng: random.Random) -> str | None:
    in_x = {_stem(w.lower()) for w in _WORD.findall(x)}
    candidates = [w for s in others for w in _WORD.findall(s)
                  if not w[0].isdigit() and _is_content(_stem(w.lower())) and _stem(w.lower()) not in in_x]
    targets = [w for w in _WORD.findall(x) if not w[0].isdigit() and _is_content(_stem(w.lower()))]
    if not candidates or not targets:
        return None
    old, new = rng.choice(targets), rng.choice(candidates)
    return re.sub(rf"(?<![\w.]){re.escape(old)}(?!\w)", new, x, count=1)


def _change_number(x: str, rng: random.Random) -> str | None:
    found = [m for m in re.finditer(r"(?<![\w.])\d+(?:\.\d+)?(?![\w]|\.\d)", x)]
    if not found:
        return None
    m = rng.choice(found)
    value = m.group(0)
    if "." in value:
        new = f"{float(value) * rng.choice((2, 0.5, 10)):g}"
    else:
        n = int(value)
        new = str(rng.choice([v for v in (n + 1, n - 1, n * 2, n * 10, max(1, n // 2)) if v != n and v >= 0] or [n + 1]))
    return x[:m.start()] + new + x[m.end():]


def _opposite(x: str, rng: random.Random) -> str | None:
    found = [(a, b) for a, b in OPPOSITE if re.search(rf"\b{re.escape(a)}\b", x, re.I)]
    if not found:
        return None
    a, b = rng.choice(found)
    return re.sub(rf"\b{re.escape(a)}\b", b, x, count=1, flags=re.I)


def _swap_terms(x: str, p_text: str, rng: random.Random) -> str | None:
    """Put another defined term of the passage (or of X) in place of one X names: "the Fund Manager" -> "the
    Trustee". Only terms not at the sentence's start and of at least one word not a stop word."""
    mine = {m.group(0) for m in _TERM.finditer(x) if m.start() > 0 and content_words(m.group(0))}
    theirs = {m.group(0) for m in _TERM.finditer(p_text) if content_words(m.group(0))} - mine
    if not mine or not theirs:
        return None
    old, new = rng.choice(sorted(mine)), rng.choice(sorted(theirs))
    if content_words(old) == content_words(new):
        return None
    return re.sub(rf"\b{re.escape(old)}\b", new, x, count=1)


def _splice(x: str, other: str) -> str | None:
    a, b = x.split(), other.split()
    if len(a) < 8 or len(b) < 8:
        return None
    return " ".join(a[: len(a) // 2] + b[len(b) // 2:])


def _new_to(claim: str, p_text: str) -> bool:
    """Whether the claim says something P's words do not (a not-entailed claim that does not is dropped)."""
    return bool(content_words(claim) - content_words(p_text))


def pairs_for_passage(key: str, text: str, neighbours: list[str], strangers: list[str],
                      rng: random.Random) -> Iterator[Pair]:
    """Every variant of one passage (a few of each kind; the caller samples)."""
    sentences = _sentences(text)
    if not sentences:
        return
    x = max(sentences, key=len) if rng.random() < 0.5 else rng.choice(sentences)
    others = [s for s in sentences if s != x]

    def pair(claim: str | None, label: int, kind: str) -> Pair | None:
        if not claim or " ".join(claim.lower().split()) == " ".join(x.lower().split()) and kind != "verbatim":
            return None
        if label == NOT_ENTAILED and kind not in ("negation", "modal", "opposite", "number") and \
                not _new_to(claim, text):
            return None
        return Pair(premise_window(text, claim), claim, label, kind, key)

    out = [
        pair(x, ENTAILED, "verbatim"),
        pair(_cut(x, rng), ENTAILED, "cut"),
        pair(rng.choice(FRAMES) + x[0].lower() + x[1:], ENTAILED, "framing"),
        pair(_first(SAME_MODAL, x), ENTAILED, "same modal"),
        pair(next((re.sub(rf"(?<![\w.]){d}(?!\w|\.\d)", w, x, count=1) for d, w in NUMBER_WORDS.items()
                   if re.search(rf"(?<![\w.]){d}(?!\w|\.\d)", x)), None), ENTAILED, "number in words"),
        pair(f"{x} {others[0]}" if others and len(x) + len(others[0]) < 500 else None, ENTAILED, "two sentences"),
        pair(_substitute_word(x, others or neighbours[:1], rng), NOT_ENTAILED, "word"),
        pair(_change_number(x, rng), NOT_ENTAILED, "number"),
        pair(_first(NEGATE, x), NOT_ENTAILED, "negation"),
        pair(_first(OTHER_MODAL, x), NOT_ENTAILED, "modal"),
        pair(_opposite(x, rng), NOT_ENTAILED, "opposite"),
        pair(_swap_terms(x, text + " " + " ".join(neighbours), rng), NOT_ENTAILED, "actor"),
    ]
    near = [s for n in neighbours for s in _sentences(n)]
    if near:
        out.append(pair(_splice(x, rng.choice(near)), NOT_ENTAILED, "splice"))
        out.append(pair(rng.choice(near), NOT_ENTAILED, "neighbour"))
    far = [s for n in strangers for s in _sentences(n)]
    if far:
        out.append(pair(rng.choice(far), NOT_ENTAILED, "other document"))
    yield from (p for p in out if p is not None)


def load_passages(documents_dir: Path) -> dict[str, list[tuple[str, str]]]:
    """DocumentID -> [(PassageID, text)] in document order, empty and duplicate texts left out."""
    docs: dict[str, list[tuple[str, str]]] = {}
    for path in sorted(documents_dir.glob("*.json"), key=lambda p: int(p.stem) if p.stem.isdigit() else 0):
        seen: set[str] = set()
        for rec in json.loads(path.read_text(encoding="utf-8")):
            text = (rec.get("Passage") or "").strip()
            if text and text not in seen:
                seen.add(text)
                docs.setdefault(str(rec["DocumentID"]), []).append((str(rec["PassageID"]), text))
    return docs


def build_pairs(questions, documents_dir: Path, seed: int = 0, per_passage: int = 6) -> list[Pair]:
    """Pairs from the gold passages of `questions` (eval.datasets.GoldQuestion, one part of ObliQA dev): for each
    distinct passage, up to `per_passage` pairs, half entailed where it has them. Neighbours: the 3 passages
    before and after in its document that share at least 3 content words with it."""
    docs = load_passages(documents_dir)
    position = {(doc, text): i for doc, items in docs.items() for i, (_, text) in enumerate(items)}
    doc_ids = sorted(docs)
    rng = random.Random(seed)
    seen: set[str] = set()
    out: list[Pair] = []
    for q in questions:
        for ev in q.evidence:
            text = ev.quote or ""
            if not text or text in seen or (ev.document, text) not in position:
                continue
            seen.add(text)
            items, i = docs[ev.document], position[(ev.document, text)]
            words = content_words(text)
            neighbours = [t for _, t in items[max(0, i - 3):i] + items[i + 1:i + 4]
                          if len(words & content_words(t)) >= 3]
            other = rng.choice([d for d in doc_ids if d != ev.document])
            strangers = [t for _, t in rng.sample(docs[other], min(3, len(docs[other])))]
            local = random.Random(f"{seed}:{ev.document}/{ev.passage_id}:{hashlib.sha1(text.encode()).hexdigest()}")
            made = list(pairs_for_passage(f"{ev.document}/{ev.passage_id}", text, neighbours, strangers, local))
            pos = [p for p in made if p.label == ENTAILED]
            neg = [p for p in made if p.label == NOT_ENTAILED]
            local.shuffle(pos)
            local.shuffle(neg)
            half = per_passage // 2
            out += pos[:half] + neg[: per_passage - min(half, len(pos))]
    return out


def write_pairs(path: Path, pairs: list[Pair]) -> str:
    """Write pairs as JSON Lines; returns the file's sha256."""
    data = "".join(json.dumps(asdict(p), ensure_ascii=False) + "\n" for p in pairs).encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return hashlib.sha256(data).hexdigest()


def read_pairs(path: Path) -> list[Pair]:
    return [Pair(**json.loads(line)) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


# Rewordings by the generator: the "faithful rewordings (the generator can write them)".
REWORD_SYSTEM = ("Rewrite the sentence you are given in other words, as a compliance officer would say it. Keep every "
                 "fact: the same people, numbers, periods, conditions and obligations (must stays must, may stays "
                 "may, not stays not). Reply with the rewritten sentence only.")
_NEGATIONS = re.compile(r"\b(?:not|no|never|nor|none|cannot|n't|without|neither)\b", re.I)
_MODALS = re.compile(r"\b(?:must|shall|may|should|required|requires?|permitted|prohibited|allowed|obliged|needs?|has to|have to)\b",
                     re.I)


def faithful_rewording(original: str, rewrite: str) -> bool:
    """Whether a generator's rewording can stand as an entailed claim: same numbers, same count of negations, a
    modal where the original has one, a length within half to one and a half times, and not a copy."""
    a, b = " ".join(original.split()), " ".join(rewrite.split())
    if not b or b.lower() == a.lower() or not 0.5 <= len(b) / max(1, len(a)) <= 1.6 or "\n" in rewrite.strip():
        return False
    if numbers(a) != numbers(b) or len(_NEGATIONS.findall(a)) != len(_NEGATIONS.findall(b)):
        return False
    return not _MODALS.search(a) or bool(_MODALS.search(b))


def reword(generator, sentences: list[str], max_new_tokens: int = 96) -> list[str | None]:
    """The generator's rewording of each sentence, or None where it is not faithful by `faithful_rewording`."""
    out: list[str | None] = []
    for sentence in sentences:
        messages = [{"role": "system", "content": REWORD_SYSTEM}, {"role": "user", "content": sentence}]
        text = "".join(generator.stream(messages, max_new_tokens)).strip().strip('"\u201c\u201d')
        out.append(text if faithful_rewording(sentence, text) else None)
    return out


def _corrupt(x: str, text: str, rng: random.Random) -> tuple[str, str] | None:
    """One not-entailed variant of sentence x of passage `text`: (kind, claim), or None."""
    for kind in rng.sample(["negation", "modal", "opposite", "number", "actor"], 5):
        claim = {"negation": lambda: _first(NEGATE, x), "modal": lambda: _first(OTHER_MODAL, x),
                 "opposite": lambda: _opposite(x, rng), "number": lambda: _change_number(x, rng),
                 "actor": lambda: _swap_terms(x, text, rng)}[kind]()
        if claim:
            return kind, claim
    return None


def reworded_pairs(passages: list[tuple[str, str]], generator, cache: Path, seed: int = 0,
                   on_passage=None) -> list[Pair]:
    """For each (key, passage): one sentence reworded by the generator (entailed, kind "reworded"), and the same
    sentence made wrong (a negation, modal, opposite, number or swapped term) and then reworded (not entailed,
    "reworded <kind>"), so that neither label comes with a tell-tale wording: a model trained on copies alone
    learns to call every rewording wrong. Kept in `cache` (JSON Lines, one line per passage, appended as it goes):
    a killed run goes on where it stopped."""
    done: dict[str, list[dict]] = {}
    if cache.exists():
        for line in cache.read_text(encoding="utf-8").splitlines():
            if line.strip():
                row = json.loads(line)
                done[row["key"]] = row["pairs"]
    cache.parent.mkdir(parents=True, exist_ok=True)
    with cache.open("a", encoding="utf-8") as out:
        for key, text in passages:
            if key not in done:
                rng = random.Random(f"reword:{seed}:{key}")
                sentences = [x for x in _sentences(text) if len(x) <= 400]
                made: list[dict] = []
                if sentences:
                    x = rng.choice(sentences)
                    wrong = _corrupt(x, text, rng)
                    targets = [("reworded", x, ENTAILED)] + ([(f"reworded {wrong[0]}", wrong[1], NOT_ENTAILED)]
                                                            if wrong else [])
                    rewrites = reword(generator, [t for _, t, _ in targets])
                    made = [asdict(Pair(premise_window(text, r), r, label, kind, key))
                            for (kind, _, label), r in zip(targets, rewrites, strict=True) if r]
                out.write(json.dumps({"key": key, "pairs": made}, ensure_ascii=False) + "\n")
                out.flush()
                done[key] = made
            if on_passage:
                on_passage()
    return [Pair(**p) for key, _ in passages for p in done.get(key, [])]


def gold_passages(questions) -> list[tuple[str, str]]:
    """(DocumentID/PassageID, text) of the distinct gold passages of the questions, in order."""
    seen: dict[str, str] = {}
    for q in questions:
        for ev in q.evidence:
            if ev.quote and ev.quote not in seen.values():
                seen[f"{ev.document}/{ev.passage_id}"] = ev.quote
    return list(seen.items())
