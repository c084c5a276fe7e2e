"""Translation Faust agent: FINAL results that ask for a translation in, TRANSLATION (or ERROR) out,
with the same session and utterance id so clients pair it with its text."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import replace
from typing import Any

from prometheus_client import Counter, Histogram

from babelstream.engines.translate import WHISPER, TranslationRouter, UnsupportedPair
from schemas.langs import UnknownLanguage, normalize_lang
from schemas.records import ErrorInfo, Result, ResultKind, Translation, now_ms
from streams.app import StreamApp
from streams.topics import session_key

log = logging.getLogger(__name__)

TRANSLATIONS = Counter("babelstream_translations_total", "Translations produced", ["backend"])
ERRORS = Counter("babelstream_translation_errors_total", "Translations that failed", ["code"])
PROCESSING_S = Histogram("babelstream_translation_seconds", "Backend time per translation")


class SpeechTranslationMissing(RuntimeError):
    """The route goes through Whisper's English, and the final carries none."""


def register_translate_agent(sa: StreamApp, router: TranslationRouter) -> None:
    codecs = sa.codecs
    dead_letters = sa.dead_letters("translate")

    def plan(r: Result) -> tuple[str, str, str, str | None]:
        """(source language, target, the text to translate, what already made that text): the final's own
        text, or the English Whisper made from its speech (a route through the speech)."""
        source, target = normalize_lang(r.language), normalize_lang(r.target_lang)
        if source is None or target is None:
            raise UnsupportedPair("source or target language unknown")
        route = router.route(source, target)
        if route is None:
            raise router.unsupported(source, target)
        if not route.speech:
            return source, target, r.text, None
        if r.translation is None or not r.translation.text.strip():
            raise SpeechTranslationMissing(f"no English from the speech of {r.utterance_id} ({route.name})")
        return "en", target, r.translation.text, WHISPER

    async def translate_one(r: Result) -> Result:
        # the FINAL's identity, text and timings; its own kind, segments and timestamps are replaced
        common: dict[str, Any] = dict(seq=0, segments=[], created_at_ms=now_ms())
        try:
            source, target, text, before = plan(r)
            t0 = time.perf_counter()
            out = await asyncio.to_thread(router.translate, text, source, target)
        except (UnsupportedPair, UnknownLanguage) as e:
            ERRORS.labels("unsupported_pair").inc()
            return replace(
                r, **common, kind=ResultKind.ERROR, processing_ms=0, error=ErrorInfo("unsupported_pair", str(e))
            )
        except Exception as e:
            log.exception("translation of %s failed", r.utterance_id)
            ERRORS.labels("translation_failed").inc()
            err = ErrorInfo("translation_failed", str(e)[:500])
            return replace(r, **common, kind=ResultKind.ERROR, processing_ms=0, error=err)
        elapsed = time.perf_counter() - t0
        backend = out.backend if before is None else f"{before}+{out.backend}"
        PROCESSING_S.observe(elapsed)
        TRANSLATIONS.labels(backend).inc()
        return replace(
            r,
            **common,
            processing_ms=int(elapsed * 1000),
            kind=ResultKind.TRANSLATION,
            translation=Translation(normalize_lang(r.language) or source, target, out.text, backend),
        )

    def done_by_stt(r: Result) -> bool:
        """Whisper's English was the target: the STT worker sent the translation itself."""
        try:
            return r.translation is not None and r.translation.target_lang == normalize_lang(r.target_lang)
        except UnknownLanguage:
            return False

    @sa.app.agent(sa.results_topic, name="translate")
    async def translate(stream: Any) -> None:
        async for event in stream.events():
            r = await dead_letters.decode(codecs.result, event.message)
            if r is None:
                continue
            if r.kind is not ResultKind.FINAL or not r.translate or not r.target_lang or not r.text.strip():
                continue
            if done_by_stt(r):
                continue
            out = await translate_one(r)
            fut = await sa.results_out_topic.send(key=session_key(out.session_id), value=codecs.result.encode(out))
            await fut
