"""The STT worker's decisions, sans I/O: what is decoded, what is sent, what is acked, and when."""

from __future__ import annotations

from core.engines.stt import Transcription
from core.settings import load_settings
from core.transcriber import Batch, Transcriber
from schemas.records import AudioEvent, AudioEventKind, ResultKind

SECOND = b"\x01\x00" * 16000  # one second of 16 kHz PCM16


def transcriber(**settings: object) -> Transcriber[str]:
    s = load_settings(**{"interim_settle_ms": 0, "interim_interval_ms": 1000, **settings})
    return Transcriber(s, "test-model", "live")


class Feed:
    """Events of one session into the transcriber, each with an offset and a handle named after it."""

    offsets: dict[tuple[int, int], int] = {}  # next offset per (transcriber, partition): feeds share them

    def __init__(self, tx: Transcriber[str], session: str = "s", partition: int = 0) -> None:
        self.tx, self.session, self.partition = tx, session, partition
        self.seq: dict[int, int] = {}

    @property
    def offset(self) -> int:
        return self.offsets.get((id(self.tx), self.partition), 0)

    @offset.setter
    def offset(self, value: int) -> None:
        self.offsets[id(self.tx), self.partition] = value

    def send(
        self, kind: AudioEventKind, index: int = 0, pcm: bytes = SECOND, clock_ms: int = 0, **kw: object
    ) -> list[str]:
        seq = self.seq.get(index, 0)
        self.seq[index] = seq + 1
        ev = AudioEvent(self.session, index, seq, kind, pcm if kind is AudioEventKind.CHUNK else b"", seq * 1000, **kw)
        handle = f"{self.session}@{self.offset}"
        out = self.tx.on_event(ev, self.partition, self.offset, handle, clock_ms)
        self.offset += 1
        return out.acks


def heard(text: str, language: str = "en") -> Transcription:
    return Transcription(text, language, 0.99)


def run(tx: Transcriber[str], batch: Batch, text: str = "hello") -> list:
    return tx.finish(batch, [heard(text) for _ in batch.decodes])


def test_events_are_acked_only_once_their_final_is_sent_and_in_order() -> None:
    tx = transcriber(max_batch_size=4)
    a, b = Feed(tx, "a"), Feed(tx, "b")  # one partition, interleaved
    assert a.send(AudioEventKind.CHUNK) == [] and b.send(AudioEventKind.CHUNK) == []
    a.send(AudioEventKind.END, speech_end_ms=900)
    b.send(AudioEventKind.END, speech_end_ms=900)
    batch = tx.next_batch(10_000)
    assert batch is not None and [d.job.kind for d in batch.decodes] == ["final", "final"]
    sends = run(tx, batch)
    assert [[r.kind for r in s.results] for s in sends] == [[ResultKind.FINAL], [ResultKind.FINAL]]
    b_send = next(s for s in sends if s.job.utterance.session_id == "b")
    a_send = next(s for s in sends if s.job.utterance.session_id == "a")
    assert tx.sent(b_send) == []  # b's events are behind a's on the partition: nothing may commit yet
    assert tx.sent(a_send) == ["a@0", "b@1", "a@2", "b@3"]


def test_a_bad_event_is_acked_at_once_unless_an_unfinished_utterance_is_before_it() -> None:
    tx = transcriber()
    assert tx.on_event(None, 0, 0, "bad@0", 0).acks == ["bad@0"]
    assert tx.on_event(None, 0, 0, "bad@0", 0).problem == "bad_event"
    Feed(tx, "a", partition=1).send(AudioEventKind.CHUNK)  # offset 0 of partition 1
    assert tx.on_event(None, 1, 1, "bad@1", 0).acks == []  # held behind a's open utterance


def test_a_final_whose_guess_at_the_pause_held_is_not_decoded_again() -> None:
    tx = transcriber()
    f = Feed(tx)
    f.send(AudioEventKind.CHUNK)
    f.send(AudioEventKind.PAUSE, speech_start_ms=0, speech_end_ms=900)
    guess = tx.next_batch(10_000)
    assert guess is not None and [d.job.kind for d in guess.decodes] == ["speculative"]
    assert run(tx, guess, "the guess") == []  # nothing is sent for a guess
    f.send(AudioEventKind.END, speech_start_ms=0, speech_end_ms=900)  # no speech after the pause
    final = tx.next_batch(10_000)
    assert final is not None and final.decodes == [] and list(final.reused) == [final.jobs[0].key]
    [send] = tx.finish(final, [])
    assert send.results[0].kind is ResultKind.FINAL and send.results[0].text == "the guess"


def test_a_guess_is_wasted_when_speech_went_on_after_the_pause() -> None:
    tx = transcriber()
    f = Feed(tx)
    f.send(AudioEventKind.CHUNK)
    f.send(AudioEventKind.PAUSE, speech_start_ms=0, speech_end_ms=900)
    run(tx, tx.next_batch(10_000))  # type: ignore[arg-type]
    f.send(AudioEventKind.CHUNK)
    f.send(AudioEventKind.END, speech_start_ms=0, speech_end_ms=1900)
    while (batch := tx.next_batch(20_000)) is not None and batch.jobs[0].kind != "final":
        run(tx, batch)
    assert batch is not None and batch.misses == 1 and [d.job.kind for d in batch.decodes] == ["final"]


def test_after_a_pause_only_more_speech_than_the_ending_silence_wants_an_interim() -> None:
    tx = transcriber(silence_ms=600, pause_ms=250, chunk_ms=500, interim_interval_ms=500)  # tail: 350 + 500 ms
    f = Feed(tx)
    half = SECOND[: len(SECOND) // 2]
    f.send(AudioEventKind.CHUNK)
    f.send(AudioEventKind.PAUSE, speech_start_ms=0, speech_end_ms=900)
    while (batch := tx.next_batch(0)) is not None:  # the interim, then the guess at the pause
        run(tx, batch)
    f.send(AudioEventKind.CHUNK, pcm=half)  # an interim is due by the interval, but this may be the tail
    assert tx.next_batch(0) is None  # 0.5 s after the pause: the silence that will end it, no interim
    f.send(AudioEventKind.CHUNK, pcm=half)  # 1 s after the pause: speech went on
    batch = tx.next_batch(0)
    assert batch is not None and [d.job.kind for d in batch.decodes] == ["interim"]


def test_a_final_while_others_wait_gets_the_cheaper_window_and_a_failed_send_is_retried() -> None:
    tx = transcriber(max_batch_size=1, busy_encoder_pad_ms=1000)
    for sid in ("a", "b"):
        f = Feed(tx, sid)
        f.send(AudioEventKind.CHUNK)
        f.send(AudioEventKind.END, speech_end_ms=900)
    first = tx.next_batch(10_000)
    assert first is not None and first.behind and first.decodes[0].request.encoder_pad_ms == 1000
    [send] = run(tx, first)
    tx.retry(send.job, 10_001)  # its send failed: decoded again, its events still unacked
    second = tx.next_batch(10_002)
    assert second is not None and second.decodes[0].request.encoder_pad_ms == 1000  # a's retry waits behind
    run(tx, second)
    again = tx.next_batch(10_003)
    assert again is not None and again.jobs[0].key == send.job.key
    assert again.decodes[0].request.encoder_pad_ms is None  # alone now: the usual window
    [resent] = run(tx, again)
    assert tx.sent(resent) == ["a@0", "a@1"]


def test_a_failed_decode_is_an_error_result_that_still_acks() -> None:
    tx = transcriber()
    f = Feed(tx)
    f.send(AudioEventKind.CHUNK)
    f.send(AudioEventKind.END, speech_end_ms=900)
    batch = tx.next_batch(10_000)
    assert batch is not None
    [send] = tx.finish(batch, [RuntimeError("out of memory")])
    assert send.results[0].kind is ResultKind.ERROR and send.results[0].error is not None
    assert send.results[0].error.code == "stt_failed" and tx.sent(send) == ["s@0", "s@1"]


def test_a_detected_language_is_kept_for_the_utterance_and_the_session() -> None:
    tx = transcriber()
    for index in range(4):
        f = Feed(tx)
        f.send(AudioEventKind.CHUNK, index=index)
        f.send(AudioEventKind.END, index=index, speech_end_ms=900)
        batch = tx.next_batch(10_000 * (index + 1))
        assert batch is not None
        language = batch.decodes[0].request.language
        assert language == (None if index < 1 else "es"), index  # stable after one confident final
        tx.finish(batch, [Transcription("hola", "es", 0.95)])
