"""The STT agent's per-utterance state (pure logic)."""

from __future__ import annotations

import numpy as np

from core.engines.stt import TimedText, Transcription
from core.utterances import (
    DecodeFinal,
    DecodeInterim,
    Discard,
    Speculate,
    Utterance,
    UtteranceAssembler,
    utterance_result,
)
from schemas.records import TAKEOVER_SEQ, AudioEvent, AudioEventKind, ResultKind

CHUNK = bytes(16000)  # 500 ms at 16 kHz PCM16


def chunk(seq: int, created: int = 0, sid: str = "s", idx: int = 0) -> AudioEvent:
    return AudioEvent(sid, idx, seq, AudioEventKind.CHUNK, CHUNK, seq * 500, created_at_ms=created)


def end(seq: int, sid: str = "s", idx: int = 0) -> AudioEvent:
    return AudioEvent(sid, idx, seq, AudioEventKind.END, b"", seq * 500, end_reason="silence")


def test_interims_at_cadence_and_final_with_all_audio() -> None:
    a = UtteranceAssembler(interim_interval_ms=1000, interim_max_lag_ms=2000)
    actions = [a.add(chunk(i, created=1000), now_ms=1500) for i in range(5)]
    assert [type(x).__name__ if x else None for x in actions] == [None, "DecodeInterim", None, "DecodeInterim", None]
    assert isinstance(actions[3], DecodeInterim) and actions[3].revision == 2
    fin = a.add(end(5), now_ms=1500)
    assert isinstance(fin, DecodeFinal) and fin.utterance.audio_ms == 2500 and len(fin.utterance.audio()) == 40000
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


def takeover(sid: str = "s", idx: int = 0) -> AudioEvent:
    return AudioEvent(sid, idx, TAKEOVER_SEQ, AudioEventKind.END, b"", 0, end_reason="takeover")


def test_takeover_end_closes_an_open_utterance_and_its_late_audio_is_discarded() -> None:
    a = UtteranceAssembler(interim_interval_ms=0)
    for seq in range(3):
        a.add(chunk(seq), now_ms=0, tag=f"e{seq}")
    fin = a.add(takeover(), now_ms=0, tag="t")
    assert isinstance(fin, DecodeFinal) and fin.utterance.audio_ms == 1500 and fin.utterance.end_reason == "takeover"
    assert fin.utterance.tags == ["e0", "e1", "e2", "t"] and fin.utterance.gaps == 0
    late = [a.add(chunk(3), now_ms=0), a.add(end(4), now_ms=0)]  # the old connection's tail, after the takeover
    assert late == [Discard("taken_over"), Discard("taken_over")] and a.open == {}


def test_takeover_end_after_a_normal_end_changes_nothing() -> None:
    a = UtteranceAssembler(interim_interval_ms=0)
    a.add(chunk(0), now_ms=0)
    assert isinstance(a.add(end(1), now_ms=0), DecodeFinal)
    assert a.add(takeover(), now_ms=0) == Discard("already_ended") and a.open == {}
    assert isinstance(a.add(chunk(0, idx=1), now_ms=0), type(None))  # the session's next utterance is unaffected


def test_finals_can_decode_just_the_speech_the_gateway_heard() -> None:
    a = UtteranceAssembler(interim_interval_ms=0)
    for seq in range(4):  # 2000 ms
        a.add(chunk(seq), now_ms=0)
    closing = AudioEvent("s", 0, 4, AudioEventKind.END, b"", 2000, speech_start_ms=900, speech_end_ms=1400)
    fin = a.add(closing, now_ms=0)
    assert isinstance(fin, DecodeFinal)
    u = fin.utterance
    audio, from_ms = u.speech(200)
    assert from_ms == 700 and len(audio) == (1600 - 700) * 16
    assert len(u.speech(-1)[0]) == 2000 * 16  # negative margin: the whole utterance
    t = Transcription("hi", "en", 1.0, [TimedText(100, 500, "hi")])
    r = utterance_result(u, ResultKind.FINAL, "m", "live", t, decoded_from_ms=from_ms)
    assert (r.segments[0].start_ms, r.segments[0].end_ms) == (800, 1200)  # session time, not decode time


def test_a_pause_asks_for_a_speculative_final_and_keeps_its_event_for_the_ack() -> None:
    a = UtteranceAssembler(interim_interval_ms=0)
    a.add(chunk(0), now_ms=0, tag="c0")
    pause = AudioEvent("s", 0, 1, AudioEventKind.PAUSE, b"", 500, speech_start_ms=100, speech_end_ms=400)
    spec = a.add(pause, now_ms=0, tag="p")
    assert isinstance(spec, Speculate) and spec.speech_end_ms == 400 and spec.utterance.tags == ["c0", "p"]
    assert a.open["s:0"].speech_end_ms == 400  # still open: speech may resume


def test_sessions_that_want_no_interims_get_no_interim_decodes() -> None:
    a = UtteranceAssembler(interim_interval_ms=500, interim_max_lag_ms=10_000)
    quiet = [
        a.add(AudioEvent("s", 0, i, AudioEventKind.CHUNK, CHUNK, i * 500, created_at_ms=0, realtime=False), now_ms=0)
        for i in range(4)
    ]
    assert quiet == [None] * 4  # realtime=false: the worker spends nothing on interims for it
    assert isinstance(a.add(chunk(0, sid="t"), now_ms=0), DecodeInterim)


def test_quiet_utterances_can_be_peak_normalised() -> None:
    a = UtteranceAssembler(interim_interval_ms=0)
    quiet = (np.full(8000, 300, "<i2")).tobytes()  # 500 ms at about -40 dBFS
    a.add(AudioEvent("s", 0, 0, AudioEventKind.CHUNK, quiet, 0), now_ms=0)
    fin = a.add(end(1), now_ms=0)
    assert isinstance(fin, DecodeFinal)
    loud, _ = fin.utterance.speech(-1, normalize=True)
    assert abs(float(np.max(np.abs(loud))) - 0.95) < 1e-3
    assert float(np.max(np.abs(fin.utterance.speech(-1)[0]))) < 0.01  # off by default
    silent = Utterance("x", 0, "x:0", 0, None, None, False, chunks=[bytes(3200)])
    assert float(np.max(np.abs(silent.speech(-1, normalize=True)[0]))) == 0.0  # silence is not blown up


def test_a_final_without_model_times_spans_the_speech_the_gateway_heard() -> None:
    """FINAL_TIMESTAMPS=false: the engine's one segment covers all the audio decoded (pre-roll and the
    closing silence too); the result's segment is the VAD's speech range instead. Timed ones are kept."""
    a = UtteranceAssembler(interim_interval_ms=0)
    for seq in range(4):  # 2000 ms, from 0 ms of session time
        a.add(chunk(seq), now_ms=0)
    closing = AudioEvent("s", 0, 4, AudioEventKind.END, b"", 2000, speech_start_ms=900, speech_end_ms=1400)
    fin = a.add(closing, now_ms=0)
    assert isinstance(fin, DecodeFinal)
    whole = [TimedText(0, 2000, "hi")]
    untimed = utterance_result(
        fin.utterance, ResultKind.FINAL, "m", "live", Transcription("hi", "en", 1.0, whole, timed=False)
    )
    assert [(s.start_ms, s.end_ms, s.text) for s in untimed.segments] == [(900, 1400, "hi")]
    timed = utterance_result(fin.utterance, ResultKind.FINAL, "m", "live", Transcription("hi", "en", 1.0, whole))
    assert [(s.start_ms, s.end_ms) for s in timed.segments] == [(0, 2000)]
