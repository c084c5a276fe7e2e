"""An utterance its connection left inside speech: where it is cut, and how the session's next utterance
takes its last words (pure logic; the same through a real broker and a killed gateway: test_trust.py)."""

from __future__ import annotations

import numpy as np

from core.audio.resample import float_to_pcm16
from core.audio.seam import seam_cut_ms
from core.engines.stt import Transcription
from core.settings import load_settings
from core.transcriber import Transcriber
from core.utterances import DecodeFinal, UtteranceAssembler
from schemas.records import TAKEOVER_SEQ, AudioEvent, AudioEventKind, ResultKind

RNG = np.random.default_rng(7)


def speech(*parts_ms: int) -> np.ndarray:
    """Alternating words (noise) and gaps (near silence) of the given lengths, words first."""
    out = []
    for i, ms in enumerate(parts_ms):
        level = 0.3 if i % 2 == 0 else 0.001
        out.append(RNG.standard_normal(ms * 16).astype(np.float32) * level)
    return np.concatenate(out)


def test_a_cut_word_is_kept_for_the_next_utterance_from_the_last_gap_before_it() -> None:
    audio = speech(1500, 200, 700, 150, 400)  # cut 400 ms into a word; gaps at 1.5-1.7 s and 2.4-2.55 s
    keep = seam_cut_ms(audio)
    assert keep is not None and 2400 <= keep <= 2550


def test_an_utterance_that_ends_quietly_lost_no_word() -> None:
    assert seam_cut_ms(speech(1500, 200, 700, 300)) is None


def test_with_no_gap_near_the_cut_or_too_little_before_it_everything_is_carried() -> None:
    assert seam_cut_ms(speech(5000)) == 0  # one long word: no quiet moment in the last 3 s
    assert seam_cut_ms(speech(500, 200, 2000)) == 0  # the only gap leaves under a second
    assert seam_cut_ms(np.zeros(100, np.float32)) == 0  # next to nothing


PCM_MS = 16 * 2  # PCM16 bytes per ms


def ev(kind: AudioEventKind, idx: int, seq: int, pcm: bytes = b"", offset_ms: int = 0, **kw: object) -> AudioEvent:
    return AudioEvent("s", idx, seq, kind, pcm, offset_ms, utterance_id=f"s:{idx}", **kw)  # type: ignore[arg-type]


def left_inside_speech(a: UtteranceAssembler, reason: str = "takeover") -> bytes:
    """Utterance 0 with a word cut at its end, closed by a takeover (the resumed connection starts at 3000 ms
    of session audio) or by its own connection's disconnect."""
    pcm = float_to_pcm16(speech(1500, 200, 700, 150, 400))
    assert a.add(ev(AudioEventKind.CHUNK, 0, 0, pcm[: 1000 * PCM_MS]), now_ms=0) is None
    assert a.add(ev(AudioEventKind.CHUNK, 0, 1, pcm[1000 * PCM_MS :], 1000), now_ms=0) is None
    seq = TAKEOVER_SEQ if reason == "takeover" else 2
    held = a.add(ev(AudioEventKind.END, 0, seq, offset_ms=3000, end_reason=reason), now_ms=100)
    assert held is None and a.open == {} and "s" in a.seams  # held: does the speaker go on?
    return pcm


def test_speech_that_goes_on_after_the_resume_begins_with_the_cut_words() -> None:
    for reason in ("takeover", "disconnect"):
        a = UtteranceAssembler(interim_interval_ms=0, seam_wait_ms=5000, join_within_ms=600)
        pcm = left_inside_speech(a, reason)
        rest = float_to_pcm16(speech(300, 400))
        released = a.add(ev(AudioEventKind.CHUNK, 1, 0, rest, 3000, speech_start_ms=0), now_ms=900)
        assert isinstance(released, DecodeFinal) and released.utterance.utterance_index == 0
        head = released.utterance
        assert 2400 <= head.audio_ms <= 2550 and head.end_reason == reason
        nxt = a.open["s:1"]
        assert nxt.carried_ms + head.audio_ms == 2950 and nxt.audio_ms == nxt.carried_ms + 700
        assert b"".join(head.chunks) + b"".join(nxt.chunks) == pcm + rest  # nothing lost, nothing twice
        assert nxt.start_ms == 3000 - nxt.carried_ms
        end = a.add(ev(AudioEventKind.END, 1, 1, offset_ms=3700, speech_start_ms=0, speech_end_ms=300), now_ms=1000)
        assert isinstance(end, DecodeFinal) and end.utterance is nxt
        assert (nxt.speech_start_ms, nxt.speech_end_ms) == (0, nxt.carried_ms + 300)  # the carried words are speech


def test_a_speaker_who_paused_after_the_resume_gets_the_cut_utterance_whole() -> None:
    a = UtteranceAssembler(interim_interval_ms=0, seam_wait_ms=5000, join_within_ms=600)
    pcm = left_inside_speech(a)
    later = ev(AudioEventKind.CHUNK, 1, 0, bytes(500 * PCM_MS), 3000, speech_start_ms=800)  # speech 800 ms in
    released = a.add(later, now_ms=900)
    assert isinstance(released, DecodeFinal) and b"".join(released.utterance.chunks) == pcm
    assert a.open["s:1"].carried_ms == 0 and a.open["s:1"].audio_ms == 500


def test_a_session_that_does_not_go_on_gets_the_cut_utterance_whole_after_the_wait() -> None:
    a = UtteranceAssembler(interim_interval_ms=0, seam_wait_ms=5000, join_within_ms=600)
    pcm = left_inside_speech(a)
    other = AudioEvent("t", 0, 0, AudioEventKind.CHUNK, bytes(500 * PCM_MS), 0)
    assert a.add(other, now_ms=200) is None and "s" in a.seams  # another session's audio releases nothing
    assert a.abandoned(clock_ms=5000) == []
    [released] = a.abandoned(clock_ms=5100)
    assert b"".join(released.utterance.chunks) == pcm and a.seams == {}


def test_without_a_wait_or_when_the_partition_moves_nothing_is_held() -> None:
    a = UtteranceAssembler(interim_interval_ms=0, seam_wait_ms=0)
    a.add(ev(AudioEventKind.CHUNK, 0, 0, float_to_pcm16(speech(2000))), now_ms=0)
    assert isinstance(a.add(ev(AudioEventKind.END, 0, TAKEOVER_SEQ, end_reason="takeover"), now_ms=0), DecodeFinal)
    b = UtteranceAssembler(interim_interval_ms=0, seam_wait_ms=5000)
    left_inside_speech(b)
    assert [u.utterance_id for u in b.drop_partitions({-1})] == ["s:0"] and b.seams == {}  # its new owner holds it


def test_a_cut_utterance_whose_speech_was_all_carried_is_an_empty_final_not_decoded() -> None:
    tx: Transcriber[str] = Transcriber(load_settings(interim_settle_ms=0), "test-model", "live")
    word = float_to_pcm16(speech(2500))  # no gap: all of it goes to the next utterance
    tx.on_event(ev(AudioEventKind.CHUNK, 0, 0, word), 0, 0, "c0", 0)
    tx.on_event(ev(AudioEventKind.END, 0, TAKEOVER_SEQ, offset_ms=3000, end_reason="takeover"), 0, 1, "t", 10)
    tx.on_event(ev(AudioEventKind.CHUNK, 1, 0, bytes(500 * PCM_MS), 3000, speech_start_ms=0), 0, 2, "c1", 20)
    batch = tx.next_batch(10_000)
    assert batch is not None and batch.decodes == [] and list(batch.reused) == ["s:0"]
    [send] = tx.finish(batch, [])
    assert send.results[0].kind is ResultKind.FINAL and send.results[0].text == ""
    assert tx.sent(send) == ["c0", "t"]  # its events are done; the next utterance's wait for its final
    assert tx.assembler.open["s:1"].audio_ms == 3000
    tx.on_event(ev(AudioEventKind.END, 1, 1, offset_ms=3500, speech_start_ms=0, speech_end_ms=500), 0, 3, "e1", 30)
    batch = tx.next_batch(20_000)
    assert batch is not None and [len(d.request.audio) for d in batch.decodes] == [3000 * 16]
    [send] = tx.finish(batch, [Transcription("the whole word", "en", 0.99)])
    assert send.results[0].text == "the whole word" and tx.sent(send) == ["c1", "e1"]
