"""Translation Faust agent: FINAL results that ask for translations in, a TRANSLATION (or ERROR) per
target language out, with the same session and utterance id so clients pair it with its text; interims
(REALTIME) get their translations too, throttled (``core.interim_translations``), as REALTIME
records that carry them.

Results waiting together are translated together, in a thread (``core.translations``: routes,
one backend call per language pair, a failed call retried text by text).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from prometheus_client import Counter, Histogram

from core.engines.translate import TranslationRouter
from core.interim_translations import InterimThrottle
from core.translations import translate_results, wants_translation
from schemas.records import ResultKind, now_ms
from streams.app import StreamApp
from streams.topics import session_key

log = logging.getLogger(__name__)

TRANSLATIONS = Counter("babelstream_translations_total", "Translations produced", ["backend", "kind", "target"])
ERRORS = Counter("babelstream_translation_errors_total", "Translations that failed", ["code"])
PROCESSING_S = Histogram("babelstream_translation_seconds", "Backend time per call (one language pair)")
BATCH = Histogram("babelstream_translation_batch_size", "Texts per backend call", buckets=(1, 2, 4, 8, 16, 32, 64))


def register_translate_agent(sa: StreamApp, router: TranslationRouter) -> None:
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
