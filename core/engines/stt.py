"""Speech-to-text engines. Pure compute: numpy audio in, text out; callers run them in a thread."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from schemas.records import AUDIO_SAMPLE_RATE_HZ


@dataclass(frozen=True, slots=True)
class TimedText:
    start_ms: int
    end_ms: int
    text: str


@dataclass(frozen=True, slots=True)
class Transcription:
    text: str
    language: str | None
    language_probability: float | None
    segments: list[TimedText] = field(default_factory=list)
    processing_ms: int = 0
    english: str | None = None  # the speech translated to English, when asked for and not spoken in English
    timed: bool = True  # segments carry the model's times; False: one segment over all the audio decoded


@dataclass(frozen=True, slots=True)
class Vocabulary:
    """What the client told us to expect: ``prompt`` (domain text, names, spelling: Whisper's initial
    prompt) and ``hotwords`` (words to favour)."""

    prompt: str | None = None
    hotwords: str | None = None

    def __bool__(self) -> bool:
        return bool(self.prompt or self.hotwords)


NO_VOCABULARY = Vocabulary()


def looks_degenerate(text: str) -> bool:
    """Whisper stuck in a loop (a prompt, hotwords or a short window can do that): a word three times
    running, a run of six words said twice, or few distinct words in a longer text."""
    words = [w.strip(".,!?;:").lower() for w in text.split()]
    if any(a == b == c for a, b, c in zip(words, words[1:], words[2:], strict=False)):
        return True
    runs = [tuple(words[i : i + 6]) for i in range(len(words) - 5)]
    if len(set(runs)) < len(runs):
        return True
    return len(words) >= 8 and len(set(words)) / len(words) < 0.35


@dataclass(frozen=True, slots=True)
class DecodeRequest:
    """One decode: ``final`` (beam search, timestamps, temperature fallback) or an interim (greedy);
    ``language`` None detects it; ``context`` is what the session said before (Whisper's previous text);
    ``encoder_pad_ms`` overrides the engine's encoder window for this decode; ``english_unless`` asks
    for Whisper's own translation of the speech to English as well (``task=translate``, on the same
    encoder output), unless the language found is one of these (None: no translation)."""

    audio: np.ndarray
    language: str | None
    final: bool
    vocabulary: Vocabulary = NO_VOCABULARY
    context: str | None = None
    encoder_pad_ms: int | None = None  # this decode's encoder window (see the engine); None: the engine's own
    english_unless: frozenset[str] | None = None  # also translate the speech to English, unless spoken in these


class SttEngine(Protocol):
    name: str

    def transcribe(
        self, audio: np.ndarray, *, language: str | None, final: bool, vocabulary: Vocabulary = NO_VOCABULARY
    ) -> Transcription: ...

    def transcribe_batch(self, requests: Sequence[DecodeRequest]) -> list[Transcription]:
        """One transcription per request, in order; the engine may decode them together."""
        ...


class NullEngine:
    """Returns a fixed text at once: measures the pipeline's own overhead in benchmarks and tests."""

    name = "null"

    def transcribe(
        self, audio: np.ndarray, *, language: str | None, final: bool, vocabulary: Vocabulary = NO_VOCABULARY
    ) -> Transcription:
        seconds = len(audio) / AUDIO_SAMPLE_RATE_HZ
        text = f"{'final' if final else 'interim'} {seconds:.2f} seconds"
        return Transcription(text, language or "en", 1.0, [TimedText(0, int(seconds * 1000), text)], 0)

    def transcribe_batch(self, requests: Sequence[DecodeRequest]) -> list[Transcription]:
        return [self.transcribe(r.audio, language=r.language, final=r.final) for r in requests]
