"""Answer correctness: is the shown answer right, judged against the gold reference answer (`answer` in the gold
format) by the entailment model in both directions. Definition: docs/evaluation.md#answer-correctness.

- precision side, `entailed`: every answer sentence must follow from the gold answer; a wrong claim fails it.
- recall side, `covers`: the gold answer's sentences must follow from the answer; a partial answer misses some.

Both pass at the entailment model's threshold: correct = entailed >= threshold and covers >= threshold.

An abstention on an answerable question is not correct; on an unanswerable question an abstention is correct and
an answer is not (neither needs the model). A question without a gold answer is not scored.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from assistant.citations import content_words, strip_markers
from assistant.entailment import load_entailment, premise_window
from eval.datasets import GoldQuestion
from ingest.chunking import sentence_spans
from ingest.settings import Settings

_SPACE_BEFORE_STOP = re.compile(r"\s+(?=[.,;:!?])")


@dataclass(frozen=True)
class Correctness:
    """One question's verdict. `entailed`: min over answer sentences of P(gold answer entails it); `covers`: mean
    over gold sentences of P(answer entails it); both None without an answer to score. `correct` is None when the
    question cannot be scored (an answerable question without gold answer)."""

    correct: bool | None
    entailed: float | None = None
    covers: float | None = None


def sentences(text: str) -> list[str]:
    """The sentences of a text with citation markers removed; those without a content word ("No.", "Yes.") are
    dropped: alone they state nothing the model can check, and the sentence after them says it."""
    out = []
    for start, end in sentence_spans(text or ""):
        sentence = _SPACE_BEFORE_STOP.sub("", strip_markers(text[start:end]))
        if content_words(sentence):
            out.append(sentence)
    return out


def premise(text: str, claim: str) -> str:
    """What a claim is checked against: the part of `text` around the claim. (The question is not put in front:
    the shipped model, trained on passages alone, reads any text it was not trained on as not entailed.)"""
    return premise_window(text, claim)


def judge(entailment, threshold: float, *, question: str, answerable: bool, gold_answer: str | None,
          abstained: bool, answer: str | None) -> Correctness:
    """The verdict on one answer (`answer` as shown, markers included; ignored when `abstained`)."""
    if not answerable:
        return Correctness(correct=bool(abstained))
    if not (gold_answer or "").strip():
        return Correctness(correct=None)
    claims = [] if abstained else sentences(answer or "")
    if not claims:
        return Correctness(correct=False)
    gold = sentences(gold_answer) or [gold_answer.strip()]
    answer_text = " ".join(claims)
    pairs = [(premise(gold_answer, c), c) for c in claims]
    pairs += [(premise(answer_text, g), g) for g in gold]
    probs = entailment.probs(pairs)
    entailed = min(probs[:len(claims)])
    covers = sum(probs[len(claims):]) / len(gold)
    return Correctness(correct=entailed >= threshold and covers >= threshold, entailed=round(entailed, 4),
                       covers=round(covers, 4))


@dataclass(frozen=True)
class Judge:
    """The entailment model and threshold that score answers against gold answers."""

    entailment: object  # assistant.entailment.Entailment
    threshold: float

    def __call__(self, question: GoldQuestion, *, abstained: bool, answer: str | None) -> Correctness:
        """The verdict on the answer shown for a gold question."""
        return judge(self.entailment, self.threshold, question=question.question, answerable=question.answerable,
                     gold_answer=question.answer, abstained=abstained, answer=answer)


def load_judge(settings: Settings) -> Judge | None:
    """The settings' entailment model (whether or not the verifier runs it) at its threshold (`entailment_threshold`,
    else the model card's); None when the default model is not installed."""
    entailment = load_entailment(settings.model_copy(update={"entailment_check": True}))
    if entailment is None:
        return None
    threshold = settings.entailment_threshold
    return Judge(entailment, entailment.threshold if threshold is None else threshold)
