"""Translation Faust agent: FINAL results that ask for translations in, a TRANSLATION (or ERROR) per
target language out, with the same session and utterance id so clients pair it with its text; interims
(REALTIME) get their translations too, throttled (``core.interim_translations``), as REALTIME
records that carry them.

Results waiting together are translated together, in a thread (``core.translations``: routes,
one backend call per language pair, a failed call retried text by text).

A second agent back-fills broadcasts' languages (``core.backfill``): on each record of the audiences
topic (a gateway's viewers of a broadcast, by language; all of a broadcast's in its session's partition,
so one worker reads them in order) it reads the session's results from the log, from where it last
looked, and translates the finals no translation into a watched language will reach.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from prometheus_client import Counter, Histogram

from core.backfill import Scanned, untranslated, watched
from core.engines.translate import TranslationRouter
from core.interim_translations import InterimThrottle
from core.translations import translate_results, wants_translation
from schemas.records import Audience, Result, ResultKind, now_ms
from streams.app import StreamApp
from streams.deadletter import DeadLetters
from streams.endpoint import KafkaEndpoint
from streams.reader import read_session_positions
from streams.topics import session_key

log = logging.getLogger(__name__)

TRANSLATIONS = Counter("babelstream_translations_total", "Translations produced", ["backend", "kind", "target"])
ERRORS = Counter("babelstream_translation_errors_total", "Translations that failed", ["code"])
PROCESSING_S = Histogram("babelstream_translation_seconds", "Backend time per call (one language pair)")
BACKFILLED = Counter(
    "babelstream_backfill_translations_total", "Earlier finals translated for a new language", ["target"]
)
BATCH = Histogram("babelstream_translation_batch_size", "Texts per backend call", buckets=(1, 2, 4, 8, 16, 32, 64))


def register_translate_agent(sa: StreamApp, router: TranslationRouter) -> None:
    _register_live(sa, router)
    if sa.results_version == "live":  # a replay re-translates what it re-transcribes, and has no viewers
        _register_backfill(sa, router)


async def _send(sa: StreamApp, results: list[Result]) -> None:
    for out in results:
        if out.error is not None:
            ERRORS.labels(out.error.code).inc()
        elif (t := out.translation) is not None:
            TRANSLATIONS.labels(t.backend, out.kind.value.lower(), t.target_lang).inc()
        fut = await sa.results_out_topic.send(key=session_key(out.session_id), value=sa.codecs.result.encode(out))
        await fut


def _register_backfill(sa: StreamApp, router: TranslationRouter) -> None:
    dead_letters = sa.dead_letters("backfill")
    scanned = Scanned()
    kafka = KafkaEndpoint.from_settings(sa.settings)
    log_only = DeadLetters("backfill", None)  # the live consumers dead-letter a bad result
    grace_ms = int(sa.settings.broadcast_lang_grace_s * 1000)

    @sa.app.agent(sa.audiences_topic, name="backfill")
    async def backfill(stream: Any) -> None:
        async for event in stream.events():
            if event.message.value is None:
                continue  # a gateway's viewers of a broadcast are gone
            audience = await dead_letters.decode(sa.codecs.audience, event.message)
            if audience is None:
                continue
            try:
                await fill(audience)
            except Exception:  # Kafka away a moment, say: the next record of the broadcast looks again
                log.exception("back-fill of session %s failed", audience.session_id)

    async def fill(audience: Audience) -> None:
        sid, langs = audience.session_id, watched(audience, now_ms(), grace_ms, sa.settings.max_broadcast_langs)
        if not langs:
            return
        start = scanned.start(sid, langs)
        topic = sa.topics.results.name
        stored = await read_session_positions(kafka, topic, sa.codecs, sid, log_only, from_offset=start)
        upto = stored[-1][0] + 1 if stored else start
        wanted = [r for lang in langs for r in untranslated(stored, lang)]
        if wanted:
            done = await asyncio.to_thread(translate_results, router, wanted)
            for out in done.results:
                if out.translation is not None:
                    BACKFILLED.labels(out.translation.target_lang).inc()
            await _send(sa, done.results)
        for lang in langs:
            scanned.done(sid, lang, upto)


def _register_live(sa: StreamApp, router: TranslationRouter) -> None:
    codecs, s = sa.codecs, sa.settings
    dead_letters = sa.dead_letters("translate")
    throttle = InterimThrottle(s.interim_translation_interval_ms)

    @sa.app.agent(sa.results_topic, name="translate")
    async def translate(stream: Any) -> None:
        async for events in stream.take_events(s.translation_batch_size, within=s.translation_batch_wait_ms / 1000):
            batch = []
            for event in events:
                r = await dead_letters.decode(codecs.result, event.message)
                if r is not None and wants_translation(r):
                    batch.append(r)
            finals = [r for r in batch if r.kind is ResultKind.FINAL]
            interims = throttle.select(batch, now_ms())
            if not finals and not interims:
                continue
            done = await asyncio.to_thread(translate_results, router, finals + interims)
            for texts, seconds in done.calls:
                BATCH.observe(texts)
                PROCESSING_S.observe(seconds)
            for out in done.results:
                if out.error is not None:
                    ERRORS.labels(out.error.code).inc()
                elif out.translation is not None:
                    TRANSLATIONS.labels(
                        out.translation.backend, out.kind.value.lower(), out.translation.target_lang
                    ).inc()
                fut = await sa.results_out_topic.send(key=session_key(out.session_id), value=codecs.result.encode(out))
                await fut
