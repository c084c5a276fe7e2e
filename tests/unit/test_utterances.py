"""The STT agent's per-utterance state (pure logic)."""

from __future__ import annotations

from babelstream.utterances import Final, Interim, UtteranceAssembler
from schemas.records import AudioEvent, AudioEventKind

CHUNK = bytes(16000)  # 500 ms at 16 kHz PCM16


def chunk(seq: int, created: int = 0, sid: str = "s", idx: int = 0) -> AudioEvent:
    return AudioEvent(sid, idx, seq, AudioEventKind.CHUNK, CHUNK, seq * 500, created_at_ms=created)


def end(seq: int, sid: str = "s", idx: int = 0) -> AudioEvent:
    return AudioEvent(sid, idx, seq, AudioEventKind.END, b"", seq * 500, end_reason="silence")


def test_interims_at_cadence_and_final_with_all_audio() -> None:
    a = UtteranceAssembler(interim_interval_ms=1000, interim_max_lag_ms=2000)
    actions = [a.add(chunk(i, created=1000), now_ms=1500) for i in range(5)]
    assert [type(x).__name__ if x else None for x in actions] == [None, "Interim", None, "Interim", None]
    assert isinstance(actions[3], Interim) and actions[3].revision == 2
    fin = a.add(end(5), now_ms=1500)
    assert isinstance(fin, Final) and fin.utterance.audio_ms == 2500 and len(fin.utterance.audio()) == 40000
    assert a.open == {}


def test_lagging_audio_gets_no_interims() -> None:
    a = UtteranceAssembler(interim_interval_ms=500, interim_max_lag_ms=2000)
    assert all(a.add(chunk(i, created=0), now_ms=10_000) is None for i in range(4))


def test_redelivered_events_are_ignored_and_gaps_counted() -> None:
    a = UtteranceAssembler(interim_interval_ms=0)
    for seq in (0, 1, 0, 1, 3):
        a.add(chunk(seq), now_ms=0)
    u = a.open["s:0"]
    assert u.audio_ms == 1500 and u.gaps == 1 and u.next_seq == 4


def test_abandoned_and_revoked_utterances() -> None:
    a = UtteranceAssembler(abandon_after_ms=10_000)
    a.add(chunk(0, created=0, sid="a"), now_ms=0, partition=1)
    a.add(chunk(0, created=0, sid="b"), now_ms=9_000, partition=2)
    future = 10 * 24 * 3600 * 1000  # a record stamped 10 days ahead ends nothing: the worker's clock rules
    a.add(chunk(0, created=future, sid="c"), now_ms=9_500, partition=2)
    assert a.abandoned(clock_ms=9_600) == []
    stale = a.abandoned(clock_ms=15_000)
    assert [f.utterance.session_id for f in stale] == ["a"] and stale[0].utterance.end_reason == "abandoned"
    assert [u.session_id for u in a.drop_partitions({2})] == ["b", "c"] and a.open == {}
