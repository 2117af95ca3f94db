"""Personal data scrubbing for training examples: e-mail addresses, phone numbers, IBANs and account numbers,
national id numbers (US SSN, UK National Insurance number). Each match becomes a typed placeholder such as
`[EMAIL]`, and the number of replacements per kind goes into the adapter card.

The patterns are deliberately conservative: regulation text is full of numbers (clause ids, amounts, dates,
percentages) that must survive, so a pattern needs a shape that those do not have.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass

PATTERNS: dict[str, str] = {
    "EMAIL": r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}\b",
    "IBAN": r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,4})?\b",
    "SSN": r"\b(?!000|666|9\d\d)\d{3}-(?!00)\d{2}-(?!0000)\d{4}\b",
    "UK_NINO": r"\b(?!BG|GB|NK|KN|TN|NT|ZZ)[A-CEGHJ-PR-TW-Z][A-CEGHJ-NPR-TW-Z] ?\d{2} ?\d{2} ?\d{2} ?[A-D]\b",
    "PHONE": r"(?<![\w.(])(?:(?:\+\d{1,3}[ .-]?)?\(\d{1,4}\)[ .-]?\d{3,4}[ .-]?\d{3,4}"
             r"|(?:\+\d{1,3}[ .-]?)?\d{2,4}[ .-]\d{3,4}[ .-]\d{3,4}|\+\d{7,14})(?![\w.])",
    "ACCOUNT": r"(?i)\b(?:account|acct|a/c)(?:\s+(?:number|no\.?|#))?[:\s#]*\d{6,18}\b",
}
DEFAULT_KINDS = tuple(PATTERNS)


@dataclass
class Scrubber:
    """Replaces personal data with `[KIND]` placeholders; `kinds` picks the patterns, `extra` adds named ones."""

    kinds: tuple[str, ...] = DEFAULT_KINDS
    extra: dict[str, str] | None = None

    def __post_init__(self) -> None:
        unknown = [k for k in self.kinds if k not in PATTERNS]
        if unknown:
            raise ValueError(f"unknown PII kind(s) {', '.join(unknown)} (known: {', '.join(PATTERNS)})")
        # Order matters: an IBAN or e-mail must be taken whole before the phone pattern sees its digits.
        self._compiled = [(k, re.compile(PATTERNS[k])) for k in self.kinds]
        self._compiled += [(k, re.compile(p)) for k, p in (self.extra or {}).items()]
        self.counts: Counter[str] = Counter()

    def scrub(self, text: str) -> str:
        """The text with every match replaced by its placeholder; counts accumulate in `self.counts`."""
        for kind, pattern in self._compiled:
            text, n = pattern.subn(f"[{kind}]", text)
            if n:
                self.counts[kind] += n
        return text

    def scrub_messages(self, messages: list[dict]) -> list[dict]:
        """A copy of chat messages with every content scrubbed."""
        return [{**m, "content": self.scrub(m["content"])} for m in messages]


def scrub(text: str, kinds: tuple[str, ...] = DEFAULT_KINDS) -> tuple[str, dict[str, int]]:
    """Scrub one text; returns the text and the replacement counts per kind."""
    s = Scrubber(kinds)
    return s.scrub(text), dict(s.counts)
