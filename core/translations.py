"""Translating the results that wait together, sans I/O (the translation agent runs it in a thread).

Each final and each chosen interim is translated into every target its session asked for. A target's
route (``TranslationRouter.route``) is a text model for the pair, or goes through the English the STT
worker decoded from the speech (Whisper) and on with a text model from English; when English itself is
the target that English is the translation, and the STT worker already sent it. Texts of one language
pair go to the backend in one call; if that call fails, each text is tried alone, so one bad text fails
only its own result: an ERROR naming its target for a final, nothing for an interim.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from dataclasses import dataclass, field, replace

from core.engines.translate import WHISPER, TranslationRouter, UnsupportedPair
from schemas.errors import BabelstreamError
from schemas.langs import UnknownLanguage, normalize_lang
from schemas.records import ErrorInfo, Result, ResultKind, Translation, now_ms

log = logging.getLogger(__name__)


class SpeechTranslationMissing(BabelstreamError, RuntimeError):
    """The route goes through Whisper's English, and the result carries none."""


@dataclass(frozen=True)
class Planned:
    source: str  # the language of ``text``
    target: str
    text: str
    before: str | None  # what already made ``text`` (Whisper), or None for the result's own text


@dataclass
class TranslatedBatch:
    results: list[Result] = field(default_factory=list)  # translations, and errors of finals
    calls: list[tuple[int, float]] = field(default_factory=list)  # (texts, seconds) of each backend call


def wants_translation(r: Result) -> bool:
    """A final or an interim with text, of a session that asked for a translation."""
    return (
        r.kind in (ResultKind.FINAL, ResultKind.REALTIME) and r.translate and bool(r.targets) and bool(r.text.strip())
    )


def whispers_english(r: Result) -> bool:
    """The final carries the English Whisper decoded from its speech (the STT worker's choice)."""
    t = r.translation
    return t is not None and t.backend == WHISPER and t.target_lang == "en" and bool(t.text.strip())


def plan(router: TranslationRouter, r: Result, target_lang: str) -> Planned | None:
    """What to translate for one of the result's targets; None when Whisper's English is the translation
    (the STT worker sent it: the record says so, whatever routes this worker would choose)."""
    source, target = normalize_lang(r.language), normalize_lang(target_lang)
    if source is None or target is None:
        raise UnsupportedPair("source or target language unknown")
    if target == "en" and whispers_english(r):
        return None
    route = router.route(source, target)
    if route is None:
        raise router.unsupported(source, target)
    if not route.speech:
        return Planned(source, target, r.text, None)
    if r.translation is None or not r.translation.text.strip():
        raise SpeechTranslationMissing(f"no English from the speech of {r.utterance_id} ({route.name})")
    return None if target == "en" else Planned("en", target, r.translation.text, WHISPER)


def failed(r: Result, target: str, code: str, message: str) -> Result:
    """The ERROR of one target's translation of a final (``target_lang`` says which)."""
    return replace(
        r,
        target_lang=target,
        seq=0,
        segments=[],
        created_at_ms=now_ms(),
        kind=ResultKind.ERROR,
        processing_ms=0,
        error=ErrorInfo(code, message[:500]),
    )


def translated(r: Result, p: Planned, text: str, backend: str, elapsed_ms: int) -> Result:
    """The result's identity, text and timings with its translation: a final's is a TRANSLATION, an
    interim's stays a REALTIME (of the same revision) that carries it."""
    kind = ResultKind.TRANSLATION if r.kind is ResultKind.FINAL else ResultKind.REALTIME
    route = backend if p.before is None else f"{p.before}+{backend}"
    return replace(
        r,
        seq=0 if kind is ResultKind.TRANSLATION else r.seq,
        segments=[],
        created_at_ms=now_ms(),
        kind=kind,
        processing_ms=elapsed_ms,
        translation=Translation(normalize_lang(r.language) or "", p.target, text, route),
    )


def translate_results(router: TranslationRouter, results: list[Result]) -> TranslatedBatch:
    """Translations (or errors, for finals) of ``results`` into each of their targets: one backend call
    per language pair."""
    out = TranslatedBatch()
    pairs: dict[tuple[str, str], list[tuple[Result, Planned]]] = defaultdict(list)
    for r in results:
        for target in r.targets:
            try:
                p = plan(router, r, target)
            except (UnsupportedPair, UnknownLanguage) as e:
                if r.kind is ResultKind.FINAL:  # an interim without a route is simply not translated
                    out.results.append(failed(r, target, "unsupported_pair", str(e)))
                continue
            except SpeechTranslationMissing as e:
                if r.kind is ResultKind.FINAL:
                    out.results.append(failed(r, target, "translation_failed", str(e)))
                continue
            if p is not None:
                pairs[p.source, p.target].append((r, p))
    for (source, target), items in pairs.items():
        _translate_pair(router, items, source, target, out)
    return out


def _translate_pair(
    router: TranslationRouter, items: list[tuple[Result, Planned]], source: str, target: str, out: TranslatedBatch
) -> None:
    t0 = time.perf_counter()
    try:
        texts, backend = router.translate_batch([p.text for _, p in items], source, target)
        if len(texts) != len(items):
            raise RuntimeError(f"the backend returned {len(texts)} texts for {len(items)}")
    except Exception as e:
        if len(items) > 1:
            log.exception("translation %s->%s of %d texts failed: each again alone", source, target, len(items))
            for item in items:
                _translate_pair(router, [item], source, target, out)
            return
        r, p = items[0]
        if r.kind is ResultKind.FINAL:
            out.results.append(failed(r, p.target, "translation_failed", f"{source}->{target}: {e}"))
        return
    elapsed_s = time.perf_counter() - t0
    out.calls.append((len(items), elapsed_s))
    out.results += [
        translated(r, p, text, backend, int(elapsed_s * 1000)) for (r, p), text in zip(items, texts, strict=True)
    ]
