"""Daily monitoring numbers from a hand-made audit trail, and the real matplotlib plot."""

import struct

from assistant.app.audit import AuditLog
from assistant.app.monitoring import DayStats, daily_stats, p95, plot_daily
from assistant.types import Answer, Sentence


def answer(time: str, total_ms: float, *, abstained: bool = False, supported=(True,), adapter=None) -> dict:
    return {"time": time, "user": "u", "action": "answer", "abstained": abstained, "adapter": adapter,
            "sentences": [{"text": "s", "supported": s, "support_score": 0.5, "citations": [1]} for s in supported],
            "timings": {"retrieval_ms": 5.0, "total_ms": total_ms}}


TRAIL = [
    answer("2025-05-01T09:00:00+00:00", 100, supported=(True, False)),
    answer("2025-05-01T10:00:00+00:00", 300, supported=(True, True)),
    answer("2025-05-01T11:00:00+00:00", 200, abstained=True, supported=(False, False)),  # not shown: not counted
    answer("2025-05-01T23:59:59.999+00:00", 400, abstained=True, supported=()),
    {"time": "2025-05-02T08:00:00+00:00", "user": "ed", "action": "document.upload", "ok": True},
    {"time": "2025-05-02T08:01:00+00:00", "user": "ed", "action": "document.delete", "ok": False},
    {"time": "2025-05-02T08:02:00+00:00", "user": "admin", "action": "user.add", "name": "x"},
    *[answer(f"2025-05-03T{h:02d}:00:00+00:00", 10.0 * h, adapter="/srv/comply/adapters/retention-v1",
             supported=(h % 4 != 0,)) for h in range(1, 21)],
]


def test_daily_stats_from_a_hand_made_trail():
    days = daily_stats(TRAIL)
    assert [d.date for d in days] == ["2025-05-01", "2025-05-02", "2025-05-03"]
    first, second, third = days
    assert first == DayStats(date="2025-05-01", questions=4, abstention_rate=0.5, unsupported_sentence_share=0.25,
                             latency_p95_ms=400.0, adapters=["base"], document_changes=0,
                             flagged_answer_share=0.5)  # 1 of the 2 answers shown has an unsupported sentence
    assert second == DayStats(date="2025-05-02", questions=0, abstention_rate=None, unsupported_sentence_share=None,
                              latency_p95_ms=None, adapters=[], document_changes=1, flagged_answer_share=None)
    assert third.questions == 20 and third.abstention_rate == 0.0
    assert third.unsupported_sentence_share == 5 / 20  # hours 4, 8, 12, 16, 20
    assert third.latency_p95_ms == 190.0  # nearest rank: the 19th of 20 values 10..200
    assert third.adapters == ["retention-v1"]
    assert third.flagged_answer_share == 5 / 20


def test_answers_flagged_per_day_from_the_audited_flags(tmp_path):
    log = AuditLog(tmp_path / "audit.jsonl")

    def ask(*sentences: Sentence, abstained: bool = False) -> None:
        log.record_answer("u", Answer(question="q?", answer=" ".join(s.text for s in sentences), abstained=abstained,
                                      sentences=list(sentences), citations=[], model="m", adapter=None,
                                      timings={"total_ms": 10.0}), index_generation=1)

    ask(Sentence("Records are kept for 7 years [1].", [1], True, 0.9, entailment=0.97))
    ask(Sentence("Records are kept for 7 years [1].", [1], True, 0.9, entailment=0.97),
        Sentence("Email is kept for 5 years [1].", [1], False, 0.8, flags=["entailment"], entailment=0.03))
    ask(Sentence("Ignore it [1].", [1], False, 0.7, flags=["instruction"]), abstained=True)  # not shown
    records = log.records(action="answer")
    assert {"flags": ["entailment"], "entailment": 0.03}.items() <= records[1]["sentences"][1].items()
    [day] = daily_stats(records)
    assert (day.questions, day.flagged_answer_share, day.unsupported_sentence_share) == (3, 0.5, 1 / 3)


def test_p95_nearest_rank():
    assert p95([]) is None
    assert p95([7.0]) == 7.0
    assert p95(list(range(1, 101))) == 95


def test_stats_from_a_real_trail_and_plot(tmp_path):
    log = AuditLog(tmp_path / "audit.jsonl")
    for r in TRAIL:
        log.append(r["user"], r["action"], **{k: v for k, v in r.items() if k not in ("time", "user", "action")})
    days = daily_stats(log.records())
    assert len(days) == 1 and days[0].questions == 24  # every record was written today

    png = plot_daily(daily_stats(TRAIL), tmp_path / "plots" / "daily.png")
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert struct.unpack(">II", data[16:24]) == (1000, 600)
    empty = plot_daily([], tmp_path / "empty.png")
    assert empty.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
