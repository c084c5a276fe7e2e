"""Translation Faust agent: FINAL results that ask for a translation in, TRANSLATION (or ERROR) out, with
the same session and utterance id so clients pair it with its text; interims (REALTIME) get their
translation too, throttled (``babelstream.interim_translations``), as a REALTIME record that carries it.

Results waiting together are translated together: one backend call per language pair. A final's route
(``TranslationRouter.route``) is a text model for the pair, or goes through the English the STT worker
decoded from the speech (Whisper) and on with a text model from English; when English was the target,
the STT worker sent the translation itself.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from dataclasses import replace
from typing import Any

from prometheus_client import Counter, Histogram

from babelstream.engines.translate import WHISPER, TranslationRouter, UnsupportedPair
from babelstream.interim_translations import InterimThrottle
from schemas.langs import UnknownLanguage, normalize_lang
from schemas.records import ErrorInfo, Result, ResultKind, Translation, now_ms
from streams.app import StreamApp
from streams.topics import session_key

log = logging.getLogger(__name__)

TRANSLATIONS = Counter("babelstream_translations_total", "Translations produced", ["backend", "kind"])
ERRORS = Counter("babelstream_translation_errors_total", "Translations that failed", ["code"])
PROCESSING_S = Histogram("babelstream_translation_seconds", "Backend time per call (one language pair)")
BATCH = Histogram("babelstream_translation_batch_size", "Texts per backend call", buckets=(1, 2, 4, 8, 16, 32, 64))


class SpeechTranslationMissing(RuntimeError):
    """The route goes through Whisper's English, and the result carries none."""


def register_translate_agent(sa: StreamApp, router: TranslationRouter) -> None:
    codecs, s = sa.codecs, sa.settings
    dead_letters = sa.dead_letters("translate")
    throttle = InterimThrottle(s.interim_translation_interval_ms)

    def plan(r: Result) -> tuple[str, str, str, str | None]:
        """(source language, target, the text to translate, what already made that text): the result's
        own text, or the English Whisper made from its speech (a route through the speech)."""
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

    def failed(r: Result, code: str, message: str) -> Result:
        ERRORS.labels(code).inc()
        return replace(
            r,
            seq=0,
            segments=[],
            created_at_ms=now_ms(),
            kind=ResultKind.ERROR,
            processing_ms=0,
            error=ErrorInfo(code, message[:500]),
        )

    def translated(r: Result, text: str, before: str | None, backend: str, target: str, elapsed_ms: int) -> Result:
        # the result's identity, text and timings; a final becomes a TRANSLATION, an interim stays one
        kind = ResultKind.TRANSLATION if r.kind is ResultKind.FINAL else ResultKind.REALTIME
        route = backend if before is None else f"{before}+{backend}"
        TRANSLATIONS.labels(route, kind.value.lower()).inc()
        source = normalize_lang(r.language) or ""
        return replace(
            r,
            seq=0 if kind is ResultKind.TRANSLATION else r.seq,
            segments=[],
            created_at_ms=now_ms(),
            kind=kind,
            processing_ms=elapsed_ms,
            translation=Translation(source, target, text, route),
        )

    async def translate_pair(items: list[tuple[Result, str, str | None]], source: str, target: str) -> list[Result]:
        """One backend call for the texts of a language pair; if it fails, each text alone (one bad text
        fails only its own result: an ERROR for a final, nothing for an interim)."""
        BATCH.observe(len(items))
        t0 = time.perf_counter()
        try:
            texts, backend = await asyncio.to_thread(router.translate_batch, [t for _, t, _ in items], source, target)
        except Exception as e:
            if len(items) > 1:
                log.exception("translation %s->%s of %d texts failed: each again alone", source, target, len(items))
                return [out for item in items for out in await translate_pair([item], source, target)]
            r = items[0][0]
            return [failed(r, "translation_failed", str(e))] if r.kind is ResultKind.FINAL else []
        elapsed_ms = int((time.perf_counter() - t0) * 1000)
        PROCESSING_S.observe(elapsed_ms / 1000)
        return [
            translated(r, text, before, backend, target, elapsed_ms)
            for (r, _, before), text in zip(items, texts, strict=True)
        ]

    async def translate_all(results: list[Result]) -> list[Result]:
        """Translations (or errors, for finals) of ``results``: one backend call per language pair."""
        out: list[Result] = []
        pairs: dict[tuple[str, str], list[tuple[Result, str, str | None]]] = defaultdict(list)
        for r in results:
            try:
                source, target, text, before = plan(r)
            except (UnsupportedPair, UnknownLanguage) as e:
                if r.kind is ResultKind.FINAL:  # an interim without a route is simply not translated
                    out.append(failed(r, "unsupported_pair", str(e)))
                continue
            except SpeechTranslationMissing as e:
                if r.kind is ResultKind.FINAL:
                    out.append(failed(r, "translation_failed", str(e)))
                continue
            pairs[source, target].append((r, text, before))
        for (source, target), items in pairs.items():
            out += await translate_pair(items, source, target)
        return out

    def wants_translation(r: Result) -> bool:
        """A final or an interim of a session that asked for a translation (which interims: the throttle)."""
        return (
            r.kind in (ResultKind.FINAL, ResultKind.REALTIME)
            and r.translate
            and bool(r.target_lang)
            and bool(r.text.strip())
        )

    def done_by_stt(r: Result) -> bool:
        """Whisper's English was the target: the STT worker sent the translation itself."""
        try:
            return r.translation is not None and r.translation.target_lang == normalize_lang(r.target_lang)
        except UnknownLanguage:
            return False

    @sa.app.agent(sa.results_topic, name="translate")
    async def translate(stream: Any) -> None:
        async for events in stream.take_events(s.translation_batch_size, within=s.translation_batch_wait_ms / 1000):
            batch = []
            for event in events:
                r = await dead_letters.decode(codecs.result, event.message)
                if r is not None and wants_translation(r):
                    batch.append(r)
            finals = [r for r in batch if r.kind is ResultKind.FINAL and not done_by_stt(r)]
            interims = throttle.select(batch, now_ms())
            for out in await translate_all(finals + interims):
                fut = await sa.results_out_topic.send(key=session_key(out.session_id), value=codecs.result.encode(out))
                await fut
