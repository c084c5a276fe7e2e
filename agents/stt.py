"""STT Faust agent: audio chunks in, REALTIME and FINAL results out.

Decode -> assemble (``babelstream.utterances``) -> hand the wanted decodes to the scheduler
(``babelstream.scheduler``: finals first, newest interim per utterance, fair across sessions, no repeated
language detection). The agent keeps consuming while one decoder loop transcribes in a thread and sends.
Events are acked only once the FINAL of their utterance is stored, so the committed offset of a
partition never passes an unfinished utterance: when a worker dies, the partition's new owner re-reads
the whole utterance and finishes it. Delivery is at-least-once: an utterance finished just before a
failover may get a second FINAL with the same ``utterance_id`` (the idempotency key); the gateway
forwards only the first.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, TypeVar

from prometheus_client import Counter, Gauge, Histogram

from babelstream.acks import InOrderAcks
from babelstream.engines.stt import SttEngine, Transcription
from babelstream.scheduler import DecodeScheduler, Job, LanguageMemory
from babelstream.utterances import (
    Discard,
    Final,
    Interim,
    Speculate,
    Utterance,
    UtteranceAssembler,
    utterance_result,
)
from schemas.records import ErrorInfo, Result, ResultKind, now_ms
from streams.app import StreamApp
from streams.topics import session_key

log = logging.getLogger(__name__)

UTTERANCES = Counter("babelstream_stt_utterances_total", "Final transcripts produced", ["reason"])
INTERIMS = Counter("babelstream_stt_interims_total", "Interim transcripts produced")
ERRORS = Counter("babelstream_stt_errors_total", "Events or utterances that failed", ["code"])
AUDIO_S = Counter("babelstream_stt_audio_seconds_total", "Seconds of audio transcribed in finals")
PROCESSING_S = Histogram("babelstream_stt_processing_seconds", "Engine time per decode", ["kind"])
OPEN = Gauge("babelstream_stt_open_utterances", "Utterances being assembled")
QUEUED = Gauge("babelstream_stt_queued_decodes", "Decodes waiting in the scheduler")
SPECULATION = Counter("babelstream_stt_speculative_finals_total", "Finals decoded at a pause", ["outcome"])
MAX_GUESSES = 1000  # per-utterance notes kept for utterances that may never end here (revoked, abandoned)
FINAL_RETRY_S = 1.0
V = TypeVar("V")


def remember(notes: OrderedDict[str, V], key: str, value: V) -> None:
    """Keep a per-utterance note, forgetting the oldest beyond MAX_GUESSES."""
    notes[key] = value
    notes.move_to_end(key)
    while len(notes) > MAX_GUESSES:
        notes.popitem(last=False)


@dataclass(frozen=True)
class Guess:
    """A final decoded at a pause, kept until the utterance's END says whether speech went on."""

    transcription: Transcription
    speech_end_ms: int | None
    from_ms: int


def register_stt_agent(sa: StreamApp, engine: SttEngine) -> None:
    app, s, codecs = sa.app, sa.settings, sa.codecs
    dead_letters = sa.dead_letters("stt")
    assembler = UtteranceAssembler(
        s.interim_interval_ms, s.interim_max_lag_ms, abandon_after_ms=int(s.max_utterance_s * 1000) * 4
    )
    scheduler = DecodeScheduler(interim_max_wait_ms=s.interim_max_wait_ms, interim_settle_ms=s.interim_settle_ms)
    languages = LanguageMemory()
    work = asyncio.Event()  # set when the scheduler has something
    guesses: OrderedDict[str, Guess] = OrderedDict()  # speculative decodes by utterance id, newest last
    acks: InOrderAcks[Any] = InOrderAcks()  # the committed offset never passes an unfinished utterance
    paused_at_ms: OrderedDict[str, int] = OrderedDict()  # utterance id -> its audio length at its last pause
    silence_tail_ms = max(0, s.silence_ms - s.pause_ms) + s.chunk_ms  # audio that may follow a pause before END

    def ack(event: Any) -> None:
        for ready in acks.done(event.message.partition, event.message.offset):
            ready.ack()

    async def send(result: Result) -> None:
        fut = await sa.results_out_topic.send(key=session_key(result.session_id), value=codecs.result.encode(result))
        await fut  # delivered (acks=all) before the source events are acked

    def given_language(u: Utterance) -> str | None:
        return u.source_lang or s.stt_language

    async def decode(u: Utterance, audio: Any, final: bool) -> Transcription:
        """One engine call in a thread, in the utterance's language if known, with the client's vocabulary;
        a detected language is remembered for the utterance's later decodes."""
        given = given_language(u)
        t = await asyncio.to_thread(
            engine.transcribe, audio, language=languages.language_for(u, given), final=final, vocabulary=u.vocabulary
        )
        if not given:
            languages.observe(u, t.language, t.language_probability, final=False)
        return t

    async def interim(job: Job) -> None:
        u = job.utterance
        audio, _ = u.speech(-1, s.normalize_audio)
        t = await decode(u, audio, final=False)
        PROCESSING_S.labels("interim").observe(t.processing_ms / 1000)
        INTERIMS.inc()
        await send(utterance_result(u, ResultKind.REALTIME, engine.name, sa.results_version, t, revision=job.revision))

    async def speculate(job: Job) -> None:
        """Decode the utterance as it stands at a pause, exactly as its final would be decoded."""
        u = job.utterance
        audio, from_ms = u.speech(s.trim_margin_ms, s.normalize_audio)
        t = await decode(u, audio, final=True)
        remember(guesses, u.utterance_id, Guess(t, job.speech_end_ms, from_ms))

    async def finalize(u: Utterance) -> None:
        guess = guesses.pop(u.utterance_id, None)
        paused_at_ms.pop(u.utterance_id, None)
        try:
            if guess is not None and guess.speech_end_ms is not None and guess.speech_end_ms == u.speech_end_ms:
                SPECULATION.labels("hit").inc()  # no speech after the pause: that decode is the final
                t, from_ms = guess.transcription, guess.from_ms
            else:
                if guess is not None:
                    SPECULATION.labels("miss").inc()  # speech went on after the pause
                audio, from_ms = u.speech(s.trim_margin_ms, s.normalize_audio)
                t = await decode(u, audio, final=True)
        except Exception as e:
            log.exception("transcription of %s failed", u.utterance_id)
            ERRORS.labels("stt_failed").inc()
            await send(
                utterance_result(
                    u, ResultKind.ERROR, engine.name, sa.results_version, error=ErrorInfo("stt_failed", str(e)[:500])
                )
            )
        else:
            if not given_language(u):  # one more final in this language: the session's streak grows
                languages.observe(u, t.language, t.language_probability, final=True)
            PROCESSING_S.labels("final").observe(t.processing_ms / 1000)
            UTTERANCES.labels(u.end_reason or "end").inc()
            AUDIO_S.inc(u.audio_ms / 1000)
            await send(
                utterance_result(u, ResultKind.FINAL, engine.name, sa.results_version, t, decoded_from_ms=from_ms)
            )
        for event in u.tags:
            ack(event)

    @app.task
    async def decoder() -> None:
        """The one decode loop of this worker: whatever the scheduler says is most worth doing next."""
        while True:
            clock_ms = now_ms()
            job = scheduler.next(clock_ms)
            QUEUED.set(len(scheduler))
            if job is None:
                work.clear()
                settles_at_ms = scheduler.settles_at_ms()
                wait_s = None if settles_at_ms is None else max(0.0, settles_at_ms - clock_ms) / 1000
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(work.wait(), wait_s)
                continue
            try:
                if job.kind == "final":
                    await finalize(job.utterance)
                elif job.kind == "speculative":
                    await speculate(job)
                else:
                    await interim(job)
            except Exception:  # sending failed (Kafka unavailable): a final is tried again, its events unacked
                log.exception("decode of %s failed", job.key)
                ERRORS.labels("decode_failed").inc()
                if job.kind == "final":
                    await asyncio.sleep(FINAL_RETRY_S)
                    scheduler.submit_final(job.utterance, now_ms())

    def want(action: Final | Speculate | Interim) -> None:
        clock_ms = now_ms()
        if isinstance(action, Final):
            scheduler.submit_final(action.utterance, clock_ms)
        elif isinstance(action, Speculate):
            remember(paused_at_ms, action.utterance.utterance_id, action.utterance.audio_ms)
            scheduler.submit_speculative(action.utterance, action.speech_end_ms, clock_ms)
        else:
            u = action.utterance
            paused = paused_at_ms.get(u.utterance_id)
            if paused is not None and u.audio_ms - paused <= silence_tail_ms:
                return  # only the silence that will end the utterance came since the pause: nothing to say
            scheduler.submit_interim(u, action.revision, clock_ms)  # speech went on after the pause
        work.set()

    @app.agent(sa.audio_topic, name="stt")
    async def stt(stream: Any) -> None:
        async for event in stream.noack().events():
            acks.consumed(event.message.partition, event.message.offset, event)
            ev = await dead_letters.decode(codecs.audio, event.message)
            if ev is None:
                ERRORS.labels("bad_event").inc()
                ack(event)
                continue
            clock_ms = now_ms()
            action = assembler.add(ev, clock_ms, partition=event.message.partition, tag=event)
            for stale in assembler.abandoned(clock_ms):
                want(stale)
            if isinstance(action, Interim | Speculate | Final):
                want(action)
            elif isinstance(action, Discard):
                ERRORS.labels(action.reason).inc()
                ack(event)
            OPEN.set(len(assembler.open))

    @app.on_partitions_revoked.connect
    async def on_revoked(sender: Any, revoked: Any, **kwargs: Any) -> None:
        lost = {tp.partition for tp in revoked if tp.topic == sa.topics.audio.name}
        dropped = assembler.drop_partitions(lost)
        scheduler.drop_partitions(lost)
        acks.drop_partitions(lost)
        if dropped:
            log.info("partitions %s revoked: %d open utterances left to their new owner", lost, len(dropped))
