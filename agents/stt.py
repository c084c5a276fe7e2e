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
from dataclasses import dataclass, replace
from typing import Any, TypeVar

from prometheus_client import Counter, Gauge, Histogram

from babelstream.acks import InOrderAcks
from babelstream.engines.stt import DecodeRequest, SttEngine, Transcription
from babelstream.engines.translate import WHISPER, TranslationRouter
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
from schemas.langs import UnknownLanguage, normalize_lang
from schemas.records import ErrorInfo, Result, ResultKind, Translation, now_ms
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
DECODING = Gauge("babelstream_stt_decoding", "Decodes in the engine now (one batch)")
SPEECH_TRANSLATIONS = Counter("babelstream_stt_speech_translations_total", "Translations to English by Whisper")
BEHIND = Counter("babelstream_stt_busy_batches_total", "Batches of finals decoded the cheaper way: others waited")
BATCH = Histogram("babelstream_stt_batch_size", "Decodes run together", buckets=(1, 2, 4, 8, 16, 32))
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


def register_stt_agent(sa: StreamApp, engine: SttEngine, router: TranslationRouter | None = None) -> None:
    """``router``: the translation routes, when this worker translates speech to English itself (Whisper's
    ``task=translate``) for sessions whose target has no text model from their language."""
    app, s, codecs = sa.app, sa.settings, sa.codecs
    dead_letters = sa.dead_letters("stt")
    assembler = UtteranceAssembler(
        s.interim_interval_ms, s.interim_max_lag_ms, abandon_after_ms=int(s.max_utterance_s * 1000) * 4
    )
    scheduler = DecodeScheduler(
        interim_max_wait_ms=s.interim_max_wait_ms,
        interim_settle_ms=s.interim_settle_ms,
        max_batch_size=s.max_batch_size,
        batch_wait_ms=s.batch_wait_ms,
    )
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

    def request(job: Job, behind: bool) -> tuple[DecodeRequest, int]:
        """What the engine decodes for ``job`` (in the utterance's language if known, with the client's
        vocabulary; a final or a guess at one decodes the speech range if TRIM_MARGIN_MS asks; a final
        while other finals wait, ``behind``, the cheaper BUSY_ENCODER_PAD_MS window), and where that audio
        starts in the utterance."""
        u = job.utterance
        final = job.kind != "interim"  # a final, or a guess at one
        audio, from_ms = u.speech(s.trim_margin_ms if final else -1, s.normalize_audio)
        language = languages.language_for(u, given_language(u), final=final)
        pad_ms = s.busy_encoder_pad_ms if behind and job.kind == "final" and s.busy_encoder_pad_ms >= 0 else None
        english = english_unless(u) if final else None
        return DecodeRequest(
            audio, language, final, u.vocabulary, encoder_pad_ms=pad_ms, english_unless=english
        ), from_ms

    def targets(u: Utterance) -> list[str]:
        """The languages the session wants this utterance in (unknown ones: the translation worker reports)."""
        if not u.translate:
            return []
        out = []
        for lang in u.targets:
            try:
                code = normalize_lang(lang)
            except UnknownLanguage:
                continue
            if code:
                out.append(code)
        return out

    def english_unless(u: Utterance) -> frozenset[str] | None:
        """For a session that wants translations: the languages its speech needs no Whisper English for
        (to reach every target English leads to)."""
        if router is None or not router.speech_to_english:
            return None
        useful = [to for to in targets(u) if to == "en" or router.route("en", to) is not None]
        if not useful:
            return None  # English would lead nowhere
        return frozenset.intersection(*(router.english_unless(to) for to in useful))

    def speech_route(language: str, to: str) -> bool:
        route = router.route(language, to) if router is not None else None
        return route is not None and route.speech

    def speech_translation(u: Utterance, t: Transcription) -> Translation | None:
        """Whisper's English for this final, when a target's route goes through the speech."""
        try:
            language = normalize_lang(t.language)
        except UnknownLanguage:
            return None
        if not t.english or not language or not any(speech_route(language, to) for to in targets(u)):
            return None
        return Translation(language, "en", t.english, WHISPER)

    async def transcribe(requests: list[DecodeRequest]) -> list[Transcription | Exception]:
        """One engine call in a thread for the whole batch; if it fails, each request alone (one bad
        request must not fail the others)."""
        try:
            return list(await asyncio.to_thread(engine.transcribe_batch, requests))
        except Exception as e:
            if len(requests) == 1:
                return [e]
        return [(await transcribe([r]))[0] for r in requests]

    async def decode(jobs: list[Job]) -> dict[str, tuple[Transcription | Exception, int]]:
        """The transcription of each job (or why it failed) and where its audio starts; a final whose
        guess at its pause still holds is not decoded again."""
        done: dict[str, tuple[Transcription | Exception, int]] = {}
        todo: list[tuple[Job, DecodeRequest, int]] = []
        behind = bool(scheduler.finals)  # more finals wait behind these: decode them the cheaper way
        if behind:
            BEHIND.inc()
        for job in jobs:
            if job.kind == "final":
                paused_at_ms.pop(job.key, None)
                guess = guesses.pop(job.key, None)
                if (
                    guess is not None
                    and guess.speech_end_ms is not None
                    and guess.speech_end_ms == job.utterance.speech_end_ms
                ):
                    SPECULATION.labels("hit").inc()  # no speech after the pause: that decode is the final
                    done[job.key] = (guess.transcription, guess.from_ms)
                    continue
                if guess is not None:
                    SPECULATION.labels("miss").inc()  # speech went on after the pause
            todo.append((job, *request(job, behind)))
        if todo:
            BATCH.observe(len(todo))
        DECODING.set(len(todo))
        try:
            results = await transcribe([r for _, r, _ in todo]) if todo else []
        finally:
            DECODING.set(0)
        for (job, req, from_ms), t in zip(todo, results, strict=True):
            if isinstance(t, Transcription):
                PROCESSING_S.labels(job.kind).observe(t.processing_ms / 1000)
                if req.language is None:  # a language detected from the whole utterance is kept for it
                    languages.observe(job.utterance, t.language, t.language_probability, whole=req.final)
            done[job.key] = (t, from_ms)
        return done

    async def complete(job: Job, t: Transcription | Exception, from_ms: int) -> None:
        """Send what a decode gave: a REALTIME, a guess kept for END, or the FINAL (or ERROR) whose events
        are then acked."""
        u = job.utterance
        if job.kind == "speculative":
            if isinstance(t, Transcription):
                remember(guesses, u.utterance_id, Guess(t, job.speech_end_ms, from_ms))
            return
        if job.kind == "interim":
            if isinstance(t, Transcription):
                INTERIMS.inc()
                await send(
                    utterance_result(u, ResultKind.REALTIME, engine.name, sa.results_version, t, revision=job.revision)
                )
            return
        if isinstance(t, Exception):
            log.error("transcription of %s failed: %r", u.utterance_id, t)
            ERRORS.labels("stt_failed").inc()
            error = ErrorInfo("stt_failed", str(t)[:500])
            await send(utterance_result(u, ResultKind.ERROR, engine.name, sa.results_version, error=error))
        else:
            if not given_language(u):  # one more final in this language: the session's streak grows
                languages.finished(u, t.language, t.language_probability)
            UTTERANCES.labels(u.end_reason or "end").inc()
            AUDIO_S.inc(u.audio_ms / 1000)
            final = utterance_result(u, ResultKind.FINAL, engine.name, sa.results_version, t, decoded_from_ms=from_ms)
            final.translation = speech_translation(u, t)  # the translation worker goes on from it (a pivot)
            await send(final)
            if final.translation is not None and "en" in targets(u):
                # English was a target: this is its translation (the translation worker goes by the record
                # and does not translate into English again, whatever routes it would choose)
                SPEECH_TRANSLATIONS.inc()
                await send(replace(final, kind=ResultKind.TRANSLATION, segments=[], created_at_ms=now_ms()))
        for event in u.tags:
            ack(event)

    @app.task
    async def decoder() -> None:
        """The one decode loop of this worker: whatever the scheduler says is most worth doing next, as
        one batch."""
        while True:
            clock_ms = now_ms()
            jobs = scheduler.next_batch(clock_ms)
            QUEUED.set(len(scheduler))
            if not jobs:
                work.clear()
                wake_ms = scheduler.wake_at_ms(clock_ms)
                wait_s = None if wake_ms is None else max(0.0, wake_ms - clock_ms) / 1000
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(work.wait(), wait_s)
                continue
            try:
                done = await decode(jobs)
            except Exception as e:  # preparing the batch failed: each final reports it (ERROR), as engine failures do
                log.exception("preparing a batch of %d decodes failed", len(jobs))
                done = {job.key: (e, 0) for job in jobs}
            retry = []
            for job in jobs:
                try:
                    await complete(job, *done[job.key])
                except Exception:  # sending failed (Kafka unavailable): a final is tried again, its events unacked
                    log.exception("sending the result of %s failed", job.key)
                    ERRORS.labels("decode_failed").inc()
                    if job.kind == "final":
                        retry.append(job)
            if retry:
                await asyncio.sleep(FINAL_RETRY_S)
                for job in retry:
                    scheduler.submit_final(job.utterance, now_ms())
                work.set()

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
            if isinstance(action, Interim | Speculate | Final):
                want(action)
            elif isinstance(action, Discard):
                ERRORS.labels(action.reason).inc()
                ack(event)
            OPEN.set(len(assembler.open))

    @app.timer(max(1.0, assembler.abandon_after_ms / 4000))
    async def finalise_abandoned() -> None:
        """An utterance whose gateway went away with no takeover is finalised with what it has once nothing
        came for it for ``abandon_after_ms``, whether or not other events arrive on its partition (on an
        idle one its events would stay unacked and the lag above 0, keeping an autoscaler up)."""
        for stale in assembler.abandoned(now_ms()):
            want(stale)
        OPEN.set(len(assembler.open))

    @app.on_partitions_revoked.connect
    async def on_revoked(sender: Any, revoked: Any, **kwargs: Any) -> None:
        lost = {tp.partition for tp in revoked if tp.topic == sa.topics.audio.name}
        dropped = assembler.drop_partitions(lost)
        scheduler.drop_partitions(lost)
        acks.drop_partitions(lost)
        if dropped:
            log.info("partitions %s revoked: %d open utterances left to their new owner", lost, len(dropped))
