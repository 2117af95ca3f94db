"""The time a question names for the documents it asks about ("under the policy in force in 2023", "as at 1 March
2024", "the 2023 version of"): retrieval then searches the versions in force then, not only today's.

Only a date tied to the documents counts: a phrase that says in force / in effect / effective / applicable / valid,
"as of" / "as at", or "the <year> version|edition". A year alone ("the 2017 regulations", "complaints received in
2023") names no version and changes nothing. An explicit as-of date (the chat's box, the API's `as_of`) always wins.
Linear-time patterns (no nested repetition) over the question only."""

from __future__ import annotations

import calendar
import datetime
import re
from dataclasses import dataclass

_MONTHS = {m.lower(): i for i, m in enumerate(calendar.month_name) if m}
_MONTHS.update({m.lower(): i for i, m in enumerate(calendar.month_abbr) if m})
_MONTH = r"(?:" + "|".join(sorted(_MONTHS, key=len, reverse=True)) + r")\.?"
_DAY = r"\d{1,2}(?:st|nd|rd|th)?"
_WHEN = (rf"(?P<iso>\d{{4}}-\d{{2}}-\d{{2}})"
         rf"|(?P<dmy>{_DAY}\s+{_MONTH}\s*,?\s+\d{{4}})"
         rf"|(?P<mdy>{_MONTH}\s+{_DAY}\s*,?\s+\d{{4}})"
         rf"|(?P<my>{_MONTH}\s+\d{{4}})"
         rf"|(?P<y>\d{{4}})")
_LEAD = (r"\b(?:(?:was|were|is|are|been)\s+)?(?:in\s+force|in\s+effect|effective|applicable|valid|that\s+applied)"
         r"\s+(?:in|on|at|during|from|as\s+(?:of|at))?\s*"
         r"|\bas\s+(?:of|at)\s+")
_NAMED = re.compile(rf"(?:{_LEAD})(?:{_WHEN})\b", re.IGNORECASE)
_VERSION = re.compile(r"\b(?:the\s+)?(?P<y>\d{4})\s+(?:version|edition|issue)\b", re.IGNORECASE)


@dataclass(frozen=True)
class Period:
    """The days a question names: one day, a month or a year (ISO dates, inclusive), and its words."""

    start: str
    end: str
    words: str

    def record(self) -> dict:
        """The answer's `in_force` field."""
        return {"from": self.start, "to": self.end, "words": self.words}


def describe(in_force: dict) -> str:
    """An answer's `in_force` in words: "2023-01-01 to 2023-12-31", or the one day."""
    return in_force["from"] if in_force["from"] == in_force["to"] else f"{in_force['from']} to {in_force['to']}"


def named_period(question: str) -> Period | None:
    """The period the question names for its documents, or None (none named, or not a real date)."""
    for m in _NAMED.finditer(question or ""):
        period = _period(m)
        if period is not None:
            return period
    m = _VERSION.search(question or "")
    return _period(m) if m else None


def _period(m: re.Match) -> Period | None:
    words = " ".join(m.group(0).split())
    g = m.groupdict()
    try:
        if g.get("iso"):
            day = datetime.date.fromisoformat(g["iso"])
            return _checked(day, day, words)
        if g.get("dmy") or g.get("mdy"):
            text = (g.get("dmy") or g["mdy"]).replace(",", " ").replace(".", " ")
            parts = text.split()
            day_part, month_part = (parts[0], parts[1]) if g.get("dmy") else (parts[1], parts[0])
            day = datetime.date(int(parts[-1]), _MONTHS[month_part.lower()], int(re.sub(r"\D", "", day_part)))
            return _checked(day, day, words)
        if g.get("my"):
            month_part, year = g["my"].replace(".", " ").split()
            year_n, month = int(year), _MONTHS[month_part.lower()]
            last = calendar.monthrange(year_n, month)[1]
            return _checked(datetime.date(year_n, month, 1), datetime.date(year_n, month, last), words)
        if g.get("y"):
            year_n = int(g["y"])
            return _checked(datetime.date(year_n, 1, 1), datetime.date(year_n, 12, 31), words)
    except (ValueError, KeyError):
        return None
    return None


def _checked(start: datetime.date, end: datetime.date, words: str) -> Period | None:
    # a four-digit number outside these years is a count or an id ("valid for 1000 users"), not a date
    if not 1900 <= start.year <= 2199:
        return None
    return Period(start.isoformat(), end.isoformat(), words)


__all__ = ["Period", "describe", "named_period"]
