"""Resampling and dual VAD on real and synthetic speech with known speech boundaries."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from core.audio.pipeline import SpeechPipeline
from core.audio.resample import AudioFormatError, StreamResampler, pcm16_to_float
from core.audio.segmenter import Chunk, End, SegmenterConfig
from core.audio.vad import DualVad, SileroVad, find_silero_model
from core.settings import load_settings
from tests.audio import asterisk_es, espeak, librivox, silence


def pipeline(rate: int, **kw: object) -> SpeechPipeline:
    s = load_settings(**kw)
    return SpeechPipeline(DualVad.from_settings(s), SegmenterConfig.from_settings(s), rate)


def feed_in_pieces(p: SpeechPipeline, pcm: bytes, piece: int = 3217) -> list:
    ev: list = []
    for i in range(0, len(pcm), piece):  # odd piece size: frames straddle WebSocket messages
        ev += p.feed(pcm[i : i + piece])
    return ev + p.flush("disconnect")


def test_resampler_streaming_matches_rate_and_frequency() -> None:
    rate = 44100
    t = np.arange(rate * 2) / rate
    stereo = np.stack([np.sin(2 * np.pi * 440 * t), np.sin(2 * np.pi * 440 * t)], axis=1) * 0.5
    data = stereo.astype("<f4").tobytes()
    r = StreamResampler(rate, channels=2, encoding="pcm_f32le")
    out = b"".join(r.process(data[i : i + 1001]) for i in range(0, len(data), 1001)) + r.flush()
    x = pcm16_to_float(out)
    assert abs(len(x) - 32000) <= 2
    spectrum = np.abs(np.fft.rfft(x))
    assert abs(np.argmax(spectrum) * 16000 / len(x) - 440) < 2


def test_resampler_rejects_bad_formats() -> None:
    with pytest.raises(AudioFormatError):
        StreamResampler(16000, encoding="mp3")  # type: ignore[arg-type]
    r = StreamResampler(16000, encoding="pcm_f32le")
    with pytest.raises(AudioFormatError):
        r.process(np.array([np.nan] * 4, "<f4").tobytes())


def test_silero_model_is_found_and_scores_speech() -> None:
    assert find_silero_model().is_file()
    pcm, _, _ = librivox()
    vad = SileroVad()
    probs = [vad.process(pcm16_to_float(pcm[i : i + 1024])) for i in range(0, len(pcm), 1024)]
    assert max(probs) > 0.9
    vad.reset()
    assert vad.process(np.zeros(16000, np.float32)) < 0.2


def test_librivox_clip_is_one_utterance_with_boundaries(tmp_path: Path) -> None:
    pcm, rate, _ = librivox()
    assert rate == 16000
    audio = silence(2000) + pcm + silence(2000)
    ev = feed_in_pieces(pipeline(rate, silence_ms=800), audio)
    ends = [e for e in ev if isinstance(e, End)]
    chunks = [e for e in ev if isinstance(e, Chunk)]
    assert len(ends) == 1 and ends[0].reason == "silence"
    clip_ms = len(pcm) // 32
    # starts within the 1 s pre-speech buffer before the clip; ends within silence_ms + margin after it
    assert 1000 - 50 <= chunks[0].offset_ms <= 2000
    assert 2000 + clip_ms - 500 <= ends[0].offset_ms <= 2000 + clip_ms + 800 + 300


def test_espeak_two_sentences_give_two_utterances(tmp_path: Path) -> None:
    a = espeak("The quick brown fox jumps over the lazy dog.", tmp_path)
    b = espeak("Kafka keeps every session in order.", tmp_path)
    audio = silence(1500) + a + silence(1500) + b + silence(1500)
    ev = feed_in_pieces(pipeline(16000), audio)
    ends = [e for e in ev if isinstance(e, End)]
    assert [e.reason for e in ends] == ["silence", "silence"]
    starts = {}
    for e in ev:
        if isinstance(e, Chunk) and e.seq == 0:
            starts[e.utterance_index] = e.offset_ms
    a_ms, b_ms = len(a) // 32, len(b) // 32
    b_start = 1500 + a_ms + 1500
    assert 500 - 50 <= starts[0] <= 1500  # pre-roll reaches back up to 1 s before the speech onset
    assert b_start - 1000 - 50 <= starts[1] <= b_start
    assert 1500 + a_ms <= ends[0].offset_ms <= 1500 + a_ms + 600 + 400
    assert b_start + b_ms <= ends[1].offset_ms <= b_start + b_ms + 600 + 400


def test_8khz_spanish_clip_is_resampled_and_segmented() -> None:
    pcm, rate, _ = asterisk_es("vm-intro")
    assert rate == 8000
    ev = feed_in_pieces(pipeline(rate), silence(1000, 8000) + pcm + silence(1500, 8000))
    chunks = [e for e in ev if isinstance(e, Chunk)]
    speech_ms = sum(len(c.pcm) for c in chunks) // 32
    assert len([e for e in ev if isinstance(e, End)]) >= 1
    assert speech_ms >= 0.7 * len(pcm) // 16  # most of the clip (8 kHz: 16 bytes per ms) is kept


@pytest.mark.parametrize("vote", ["both", "any", "webrtc", "silero"])
def test_every_vote_mode_finds_speech_and_ignores_silence(vote: str) -> None:
    pcm, rate, _ = librivox("sense_and_sensibility_01_austen_64kb-0880")
    p = pipeline(rate, vad_vote=vote)
    ev = feed_in_pieces(p, silence(3000))
    assert ev == [] and p.speech_frames == 0
    ev = feed_in_pieces(p, pcm + silence(1000))
    assert any(isinstance(e, End) for e in ev)


@pytest.mark.parametrize("frame_ms", [10, 20, 30])
def test_every_webrtc_frame_size_segments_speech(frame_ms: int) -> None:
    pcm, rate, _ = librivox("sense_and_sensibility_01_austen_64kb-0880")
    p = pipeline(rate, vad_frame_ms=frame_ms, chunk_ms=300)
    ev = feed_in_pieces(p, silence(1000) + pcm + silence(1500))
    assert len([e for e in ev if isinstance(e, End)]) == 1 and p.vad.frame_bytes == 32 * frame_ms
