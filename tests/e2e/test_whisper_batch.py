"""The batched engine on real speech with the real model: a batch gives each item the text it gets alone,
the full window gives faster-whisper's own text, long audio and silence are handled."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import soxr

from core.audio.resample import pcm16_to_float
from core.engines.models import resolve_whisper_model
from core.engines.stt import DecodeRequest, Vocabulary
from core.engines.whisper import WhisperEngine
from tests.audio import asterisk_es, librivox, wer

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def engine() -> WhisperEngine:
    return WhisperEngine(resolve_whisper_model("base", None), cpu_threads=2)


def clip(name: str) -> tuple[np.ndarray, str]:
    pcm, _, ref = librivox(f"sense_and_sensibility_01_austen_64kb-{name}")
    return pcm16_to_float(pcm), ref


def test_a_batch_of_sessions_gives_each_the_text_it_gets_alone(engine: WhisperEngine) -> None:
    (en, en_ref), (en2, en2_ref) = clip("0870"), clip("0920")
    pcm, rate, es_ref = asterisk_es("vm-intro")
    es = soxr.resample(pcm16_to_float(pcm), rate, 16000).astype(np.float32)
    requests = [
        DecodeRequest(en, None, final=True),  # language detected from the shared encoder pass
        DecodeRequest(es, "es", final=True),
        DecodeRequest(en2, "en", final=True, vocabulary=Vocabulary(prompt="Dashwood, Norland.")),  # longer prompt
        DecodeRequest(en2, "en", final=False),  # an interim: greedy, in its own batch
    ]
    together = engine.transcribe_batch(requests)
    alone = [engine.transcribe_batch([r])[0] for r in requests]
    assert [t.text for t in together] == [t.text for t in alone]
    assert together[0].language == "en" and together[0].language_probability > 0.9
    assert together[1].language == "es"
    for t, ref in zip(together, [en_ref, es_ref, en2_ref, en2_ref], strict=True):
        assert wer(ref, t.text) < 0.25, t.text
    assert together[0].segments and together[0].segments[-1].end_ms <= len(en) // 16


def test_the_full_window_gives_faster_whispers_own_text(engine: WhisperEngine) -> None:
    full = WhisperEngine(resolve_whisper_model("base", None), cpu_threads=2, encoder_pad_ms=-1)
    for name in ("0870", "0890", "0920"):
        audio, _ = clip(name)
        segments, _ = engine.model.transcribe(audio, language="en", beam_size=5, condition_on_previous_text=False)
        theirs = " ".join(s.text.strip() for s in segments)
        assert full.transcribe(audio, language="en", final=True).text == theirs


def test_silence_and_long_audio(engine: WhisperEngine) -> None:
    hiss = (np.random.default_rng(0).standard_normal(16000 * 3) * 0.01).astype(np.float32)
    assert engine.transcribe(hiss, language="en", final=True).text == ""  # Whisper's no-speech test
    assert engine.transcribe(hiss, language="en", final=False).text == ""
    a, ra = clip("0870")
    b, rb = clip("0890")
    long = np.concatenate([a, np.zeros(16000 * 10, np.float32), b, np.zeros(16000 * 10, np.float32), a])
    t = engine.transcribe(long, language=None, final=True)  # over 30 s: faster-whisper's own windows
    assert wer(f"{ra} {rb} {ra}", t.text) < 0.15, t.text


def test_finals_without_timestamps_are_one_segment_each(engine: WhisperEngine) -> None:
    """FINAL_TIMESTAMPS=false (finals batch on GPUs): the same words, one segment per final."""
    plain = WhisperEngine(resolve_whisper_model("base", None), cpu_threads=2, final_timestamps=False)
    (a, ra), (b, rb) = clip("0870"), clip("0890")
    two = np.concatenate([a, np.zeros(16000, np.float32), b])  # two sentences: Whisper cuts two segments
    with_stamps = engine.transcribe(two, language="en", final=True)
    assert len(with_stamps.segments) >= 2, with_stamps.segments  # else this test could not tell
    together = plain.transcribe_batch([DecodeRequest(two, "en", final=True), DecodeRequest(a, None, final=True)])
    for t, audio, ref in zip(together, (two, a), (f"{ra} {rb}", ra), strict=True):
        assert wer(ref, t.text) < 0.1, t.text
        assert not t.timed
        assert [(s.start_ms, s.text) for s in t.segments] == [(0, t.text)]
        assert len(audio) // 16 - 20 <= t.segments[0].end_ms <= len(audio) // 16
    assert together[1].language == "en"
    assert plain.transcribe_batch([DecodeRequest(a, None, final=True)])[0].text == together[1].text  # as alone
    assert with_stamps.timed


class DetectionSpy:
    """The CTranslate2 model, with the encoder outputs language detection was given written down."""

    def __init__(self, model: Any) -> None:
        self.model, self.shapes = model, []

    def detect_language(self, encoded: Any) -> Any:
        self.shapes.append(tuple(encoded.shape))
        return self.model.detect_language(encoded)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.model, name)


def test_language_is_detected_from_the_whole_30_s_window_whatever_the_decode_window(engine: WhisperEngine) -> None:
    """Whisper was trained on 30 s windows: detection from a shorter one flips with the CPU's rounding
    (Spanish read as Arabic on one machine), so it must see the whole window (1500 encoder positions)
    for interims and finals, whatever window the decode itself gets."""
    pcm, rate, _ = asterisk_es("vm-intro")
    es = soxr.resample(pcm16_to_float(pcm), rate, 16000).astype(np.float32)
    en, _ = clip("0870")
    spy = DetectionSpy(engine.model.model)
    engine.model.model = spy
    try:
        got = engine.transcribe_batch(
            [
                DecodeRequest(es[: 16000 * 2], None, final=False),  # a first interim: 2 s
                DecodeRequest(es, None, final=True),
                DecodeRequest(en, None, final=True, encoder_pad_ms=0),  # the busy window, as tight as it gets
                DecodeRequest(en, "en", final=True),  # a language known: no detection at all
            ]
        )
    finally:
        engine.model.model = spy.model
    assert spy.shapes and all(shape[1] == 1500 for shape in spy.shapes), spy.shapes
    assert sum(shape[0] for shape in spy.shapes) == 3  # one detection per item without a language
    assert [t.language for t in got[1:]] == ["es", "en", "en"]
