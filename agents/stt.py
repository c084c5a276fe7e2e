"""STT Faust agent: audio chunks in, REALTIME and FINAL results out.

The shell over ``core.transcriber`` (what to decode, what to send, what to ack, all decided
there): each event goes to the transcriber; one decoder loop takes its batches, runs them in the engine
in a thread, sends what comes out and acks what it may. Events are acked only once the FINAL of their
utterance is stored, so the committed offset of a partition never passes an unfinished utterance: when
a worker dies, the partition's new owner re-reads the whole utterance and finishes it. Delivery is
at-least-once: an utterance finished just before a failover may get a second FINAL with the same
``utterance_id`` (the idempotency key); the gateway forwards only the first.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from prometheus_client import Counter, Gauge, Histogram

from core.engines.stt import DecodeRequest, SttEngine, Transcription
from core.engines.translate import TranslationRouter
from core.transcriber import Batch, Send, Transcriber
from schemas.records import now_ms
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
FINAL_RETRY_S = 1.0


def register_stt_agent(sa: StreamApp, engine: SttEngine, router: TranslationRouter | None = None) -> None:
    """``router``: the translation routes, when this worker translates speech to English itself (Whisper's
    ``task=translate``) for sessions whose target has no text model from their language."""
    app, codecs = sa.app, sa.codecs
    dead_letters = sa.dead_letters("stt")
    tx: Transcriber[Any] = Transcriber(sa.settings, engine.name, sa.results_version, router)
    work = asyncio.Event()  # set when the transcriber may have something to decode

    async def transcribe(requests: list[DecodeRequest]) -> list[Transcription | Exception]:
        """One engine call in a thread for the whole batch; if it fails, each request alone (one bad
        request must not fail the others)."""
        try:
            return list(await asyncio.to_thread(engine.transcribe_batch, requests))
        except Exception as e:
            if len(requests) == 1:
                return [e]
        return [(await transcribe([r]))[0] for r in requests]

    async def decode(batch: Batch) -> list[Transcription | Exception]:
        if batch.behind:
            BEHIND.inc()
        SPECULATION.labels("hit").inc(len(batch.reused))  # no speech after the pause: that decode is the final
        SPECULATION.labels("miss").inc(batch.misses)  # speech went on after the pause
        if not batch.decodes:
            return []
        BATCH.observe(len(batch.decodes))
        DECODING.set(len(batch.decodes))
        try:
            results = await transcribe([d.request for d in batch.decodes])
        finally:
            DECODING.set(0)
        for d, t in zip(batch.decodes, results, strict=True):
            if isinstance(t, Transcription):
                PROCESSING_S.labels(d.job.kind).observe(t.processing_ms / 1000)
        return results

    async def deliver(send: Send[Any]) -> None:
        """Send one decode's results (each delivered, acks=all) and then ack the events they finish."""
        for result in send.results:
            fut = await sa.results_out_topic.send(
                key=session_key(result.session_id), value=codecs.result.encode(result)
            )
            await fut
        u = send.job.utterance
        if send.job.kind == "interim":
            INTERIMS.inc()
        elif send.failed is not None:
            log.error("transcription of %s failed: %r", u.utterance_id, send.failed)
            ERRORS.labels("stt_failed").inc()
        else:
            UTTERANCES.labels(u.end_reason or "end").inc()
            AUDIO_S.inc(u.audio_ms / 1000)
            if send.speech_translated:
                SPEECH_TRANSLATIONS.inc()
        for event in tx.sent(send):
            event.ack()

    @app.task
    async def decoder() -> None:
        """The one decode loop of this worker: whatever the transcriber says is most worth doing next, as
        one batch."""
        while True:
            clock_ms = now_ms()
            batch = tx.next_batch(clock_ms)
            QUEUED.set(tx.queued)
            if batch is None:
                work.clear()
                wake_ms = tx.wake_at_ms(clock_ms)
                wait_s = None if wake_ms is None else max(0.0, wake_ms - clock_ms) / 1000
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(work.wait(), wait_s)
                continue
            try:
                sends = tx.finish(batch, await decode(batch))
            except Exception as e:  # preparing the batch failed: each final reports it (ERROR), as engine failures do
                log.exception("a batch of %d decodes failed", len(batch.jobs))
                sends = tx.finish(batch, [e] * len(batch.decodes))
            retry = []
            for send in sends:
                try:
                    await deliver(send)
                except Exception:  # sending failed (Kafka unavailable): a final is tried again, its events unacked
                    log.exception("sending the result of %s failed", send.job.key)
                    ERRORS.labels("decode_failed").inc()
                    if send.job.kind == "final":
                        retry.append(send.job)
            if retry:
                await asyncio.sleep(FINAL_RETRY_S)
                for job in retry:
                    tx.retry(job, now_ms())
                work.set()

    @app.agent(sa.audio_topic, name="stt")
    async def stt(stream: Any) -> None:
        async for event in stream.noack().events():
            ev = await dead_letters.decode(codecs.audio, event.message)
            outcome = tx.on_event(ev, event.message.partition, event.message.offset, event, now_ms())
            if outcome.problem is not None:
                ERRORS.labels(outcome.problem).inc()
            for done in outcome.acks:
                done.ack()
            if outcome.wanted:
                work.set()
            OPEN.set(tx.open_utterances)

    @app.timer(tx.timer_interval_s)
    async def finalise_abandoned() -> None:
        """An utterance whose gateway went away with no takeover is finalised with what it has once nothing
        came for it for ``abandon_after_ms``, whether or not other events arrive on its partition (on an
        idle one its events would stay unacked and the lag above 0, keeping an autoscaler up); one left
        inside speech, once its session did not go on within ``seam_wait_ms``."""
        tx.on_timer(now_ms())
        work.set()
        OPEN.set(tx.open_utterances)

    @app.on_partitions_revoked.connect  # type: ignore[arg-type]  # faust's stubs: a keyword-only signal arg
    async def on_revoked(sender: Any, revoked: Any, **kwargs: Any) -> None:
        lost = {tp.partition for tp in revoked if tp.topic == sa.topics.audio.name}
        dropped = tx.revoke(lost)
        if dropped:
            log.info("partitions %s revoked: %d open utterances left to their new owner", lost, len(dropped))
