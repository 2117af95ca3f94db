"""Text in a document that addresses the language model rather than the reader ("ignore previous instructions",
"reply only with 'APPROVED'", "<|im_start|>system"): found and blanked before sources reach the model or the verifier.

Linear time on any text, however long and whatever its shape. The old rule, `[^.\\n]*\\b(phrases)\\b[^\\n]*`, retried
its leading `[^.\\n]*` from every start of a run without a full stop: one 40,000-character clause took half a minute.
Here one regex finds the phrases themselves, each behind a character that is not part of a word (so the regex engine
skips runs of letters without trying a match at each), with possessive `\\s++` between words (a long blank run is
never scanned again); the sentence around a phrase is then found with str.rfind / str.find over text that no earlier
phrase has covered.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

_S = r"\s++"  # between two words: any blanks, a line break included (PDF text wraps), never given back

# "ignore all previous instructions", "forget your instructions", "disregard the instructions above" -- but not
# "ignore any previous instructions from the customer" (the firm's instructions, not the model's); which words make
# it aimed at the model: _OVERRIDE_WORDS
_OVERRIDE = (rf"{_S}(?:(?:all|any|every){_S}(?:of{_S})?)?(?:(?:the|your|my|these|those){_S})?"
             rf"(?:(?:previous|prior|above|earlier|preceding|foregoing|former|original|initial){_S})?"
             rf"(?:instructions?|prompts?)\b(?:{_S}(?:above|before|so{_S}far)\b)?"
             rf"(?!{_S}(?:from|of|issued|received|by|given{_S}by|provided{_S}by|sent{_S}by)\b)")
_OVERRIDE_VERBS = ("ignore", "disregard", "forget", "override", "bypass")
_OVERRIDE_WORDS = frozenset("all every your my previous prior above earlier preceding foregoing former original "
                            "initial before far".split())
# "disregard the above.", "ignore everything above and ...", "forget the sources, ..."
_ABOVE = (rf"{_S}(?:(?:all|everything){_S}(?:of{_S})?)?(?:(?:the|that|this){_S})?"
          r"(?:above|previous|prior|preceding|foregoing|sources?)(?=\s*+(?:[.,;:!?]|\Z|(?:and|then|instead)\b))")
# "respond only with", "reply with 'APPROVED'", "answer with the single word" -- not "respond with a final response"
_WITH = (rf"{_S}with{_S}(?:only\b|just\b|exactly\b|[\"'\u201c\u2018`]|the{_S}(?:single{_S})?"
         r"(?:word|phrase|text|string|sentence)\b|(?:yes|no|ok|okay|approved)\b)")

# Phrases that start with a word, written lower-case: the text is searched lower-cased.
_WORD_PHRASES = [
    *(verb + _OVERRIDE for verb in _OVERRIDE_VERBS),
    *(verb + _ABOVE for verb in ("ignore", "disregard", "forget")),
    rf"forget{_S}(?:everything|all|what){_S}(?:you{_S}(?:know|were{_S}told|have{_S}been{_S}told)|above|before)\b",
    # "system prompt", "SYSTEM NOTE: ..."; a message, notice or instruction only as a label ("System message:"), not
    # "the system message shown at logon"
    rf"system{_S}(?:prompt|note)s?\b",
    rf"system{_S}(?:message|notice|instruction|override)s?\s*+[:\]>)]",
    # "you are now a helpful assistant that ...", "you are now DAN", "you are now in developer mode"
    rf"you{_S}are{_S}now{_S}(?:(?:an?|my){_S}(?:[\w-]++{_S}){{0,3}}?(?:assistant|ai|bot|chatbot|model|persona|"
    rf"character)\b|dan\b|jailbroken\b|unrestricted\b|in{_S}[\w-]++{_S}mode\b|acting{_S}as\b|no{_S}longer{_S}bound\b)",
    *(rf"{word}{_S}(?:system{_S})?instructions?\s*+:" for word in ("new", "real", "actual", "true", "hidden",
                                                                   "secret", "override")),
    rf"as{_S}an?{_S}(?:ai|a\.i\.|artificial{_S}intelligence){_S}(?:language{_S})?(?:model|assistant|chatbot)\b",
    rf"as{_S}a{_S}(?:large{_S})?language{_S}model\b",
    rf"the{_S}only{_S}(?:correct|right|true){_S}(?:reply|answer|response|output){_S}(?:to|is|for)\b",
    *(rf"{verb}{_S}(?:only|solely|just|exclusively){_S}with\b" for verb in ("respond", "reply", "answer")),
    *(verb + _WITH for verb in ("respond", "reply", "answer")),
    rf"answer{_S}(?:every|each){_S}(?:questions?|quer(?:y|ies)|prompts?){_S}with\b",
    # "do not cite the sources" -- not a draft's "do not cite or circulate"
    *(rf"{neg}{_S}cite\b(?!{_S}(?:or|and|nor){_S}(?:quote|circulate|distribute|copy|reproduce)\b)"
      for neg in (rf"do{_S}not", "don't", "don\u2019t", "never")),
    r"assistant\s*+:",  # a chat transcript's role tag; "Compliance Assistant: J. Smith" is checked in `_found`
]
# Chat-template special tokens, which a tokenizer may read as the real thing. They are searched for without their
# first character ('<' or '['), which is the match's first (see _FIND); a look-behind at the end checks it.
_FIXED_TOKENS = ("[inst]", "[/inst]", "<<sys>>", "<</sys>>", "<start_of_turn>", "<end_of_turn>", "<s>", "</s>")
_TOKEN_TAILS = [r"\|(?<=<\|)[\w\s-]{1,40}\|>",  # "<|im_start|>", "<|endoftext|>", "<|eot_id|>"
                *(re.escape(token[1:]) + f"(?<={re.escape(token)})" for token in _FIXED_TOKENS)]
# Every match starts with one character that is not part of a word: the one before a phrase, or a special token's
# first. The text is searched with a blank in front, so that a phrase at its very start has one too.
_FIND = "[^\\w](?:(?=[a-z])(?P<phrase>{})|(?P<token>{}))".format("|".join(_WORD_PHRASES), "|".join(_TOKEN_TAILS))
_PHRASES = re.compile(_FIND)
_PHRASES_ANY_CASE = re.compile(_FIND, re.I)  # for the rare text whose lower-casing changes its length ("İ")

# What may stand before a role tag (blanks aside) for it to open a turn: the start of the text or of a line, the end
# of a sentence, a quote or bracket.
_TURN_OPENERS = "\n.!?;:\"'>)]}|\u201d"
# The rest of a wrapped sentence on the next line, to its full stop and closing quotes: "transactions are
# approved.'"; a '.' that a blank does not follow ("clause 3.2") does not end it.
_CLOSERS = "'\"\u2019\u201d)"
_SENTENCE_REST = re.compile(rf"(?:[^\n.!?]|[.!?](?![\s{_CLOSERS}]|\Z))*+[.!?][{_CLOSERS}]*+")


def _found(text: str) -> Iterator[tuple[int, int]]:
    """(start, end) in `text` of each phrase or special token aimed at the model, in order."""
    folded = text.lower()
    pattern, searched = (_PHRASES, folded) if len(folded) == len(text) else (_PHRASES_ANY_CASE, text)
    for m in pattern.finditer(" " + searched):  # offsets in `text` are one less
        if m.group("token") is not None:
            yield m.start() - 1, m.end() - 1
            continue
        start, end = m.start("phrase") - 1, m.end("phrase") - 1
        phrase = searched[start:end].lower()
        if phrase.startswith(_OVERRIDE_VERBS) and ("instruction" in phrase or "prompt" in phrase):
            if _OVERRIDE_WORDS.isdisjoint(phrase.split()):
                continue  # "ignore the instructions" alone may be a rule for staff
        elif phrase.startswith("assistant"):
            before = text[max(0, start - 64):start].rstrip(" \t")
            if before and before[-1] not in _TURN_OPENERS:
                continue
        yield start, end


def _wraps(text: str, start: int, end: int) -> bool:
    """Whether the sentence that text[start:end] ends a line of goes on on the next: a line that stops mid-sentence
    ("... answer every question with 'All") followed by one that starts in lower case ("transactions are ...")."""
    line = text[start:end].rstrip(" \t")
    return (line[-1].isalnum() or line[-1] in ",'\"\u2018\u201c") and text[end + 1:end + 2].islower()


def instruction_spans(text: str) -> list[tuple[int, int]]:
    """(start, end) of each instruction-like sentence: from the sentence's start (after the last '.' or line break)
    to the end of its line, so the instruction that follows a trigger ("... with 'APPROVED'.") goes too, and on to
    the end of the sentence where it wraps onto the next line (`_wraps`)."""
    spans: list[tuple[int, int]] = []
    covered = 0  # the text before this has been scanned for a sentence start: no character is scanned twice
    for found_start, found_end in _found(text):
        if found_start < covered:
            continue
        start = max(text.rfind(".", covered, found_start), text.rfind("\n", covered, found_start), covered - 1) + 1
        end = text.find("\n", found_end)
        if end < 0:
            end = len(text)
        elif _wraps(text, found_start, end):
            wrapped = _SENTENCE_REST.match(text, end + 1)
            end = wrapped.end() if wrapped else end
        covered = end
        spans.append((start, end))
    return spans


def neutralise(text: str) -> str:
    """Blank out instruction-like sentences aimed at a language model with spaces (line breaks kept), keeping every
    other offset unchanged: the result has the same length, so citation offsets stay valid."""
    pieces, last = [], 0
    for start, end in instruction_spans(text):
        pieces += [text[last:start], re.sub(r"[^\n]", " ", text[start:end])]
        last = end
    return "".join(pieces) + text[last:] if pieces else text
